"""Positional encodings for sequences (n, T, dim): Y = X + E[:T], position t's vector added to
every sample's row t.

``kind="learned"``: E (max_len, dim) is a parameter (not L2-decayed, initialised N(0, 0.02^2) as
in BERT / GPT-2); backward sums dY over the samples into dE[:T] (rows T.. get 0) and passes dY
on as dX.  ``kind="sinusoidal"``: E is the fixed table of "Attention is all you need",
E[t, 2k] = sin(t / 10000^(2k / dim)), E[t, 2k + 1] = cos(t / 10000^(2k / dim)), computed at
build; no parameters.  The add and the sum are in ``nnc._kernels._attention``; in place on the
previous layer's output when the network allows it.
"""
import numpy as np

from nnc._kernels import _attention as _K
from nnc.layers._base import Layer, ParamSpec, _check_positive_int

_KINDS = ("learned", "sinusoidal")


def sinusoidal_table(max_len, dim, dtype):
    """(max_len, dim) table: sin at even columns, cos at odd ones (frequencies 10000^(-2k/dim))."""
    pos = np.arange(max_len, dtype=np.float64)[:, None]
    freq = np.exp(-np.log(10000.0) * (np.arange(0, dim, 2, dtype=np.float64) / dim))
    table = np.zeros((max_len, dim), dtype=np.float64)
    table[:, 0::2] = np.sin(pos * freq)
    table[:, 1::2] = np.cos(pos * freq[:dim // 2])
    return table.astype(dtype)


class PositionalEmbedding(Layer):
    """Add a position vector to each position of a sequence: Y[:, t] = X[:, t] + E[t].

    Parameters
    ----------
    max_len : int
        Longest sequence (n_timesteps) the layer accepts.
    dim : int
        Width of each position (the last axis of (n, T, dim)).
    kind : {'learned', 'sinusoidal'}, default='learned'
        'learned': E (max_len, dim) is trained (not L2-decayed); 'sinusoidal': the fixed
        sin / cos table of Vaswani et al. (2017), no parameters.

    Notes
    -----
    Parameter tensor ('learned'): E (max_len, dim).  Sequences shorter than max_len use its
    first T rows.  The sequence mask (padded positions) passes through unchanged.
    """

    inplace_capable = True
    keeps_mask = True

    def __init__(self, max_len, dim, kind="learned"):
        super().__init__()
        self.max_len = _check_positive_int(max_len, "max_len")
        self.dim = _check_positive_int(dim, "dim")
        if not isinstance(kind, str) or kind not in _KINDS:
            raise ValueError(f"kind must be one of {_KINDS}, got {kind!r}")
        self.kind = kind

    @property
    def output_reusable(self):
        return bool(self.inplace)      # out of place the output is the layer's own buffer, too

    def get_config(self):
        return {"max_len": self.max_len, "dim": self.dim, "kind": self.kind}

    def build(self, input_shape, dtype):
        super().build(input_shape, dtype)
        if self.dtype not in (np.float32, np.float64):
            raise ValueError(f"PositionalEmbedding: dtype must be float32 or float64, got "
                             f"{self.dtype}")
        shape = self.input_shape
        if len(shape) != 2 or shape[1] != self.dim:
            raise ValueError(f"PositionalEmbedding expects sequences of per-sample shape "
                             f"(n_timesteps, {self.dim}), got {shape}")
        if shape[0] > self.max_len:
            raise ValueError(f"PositionalEmbedding: sequences of {shape[0]} positions, longer "
                             f"than max_len={self.max_len}")
        self._table = (sinusoidal_table(shape[0], self.dim, self.dtype)
                       if self.kind == "sinusoidal" else None)
        return self.output_shape

    def param_specs(self):
        if self.kind == "sinusoidal":
            return []
        return [ParamSpec("E", (self.max_len, self.dim), False)]

    def init_params(self, rng):
        if self.kind == "learned":
            self.params[0][...] = 0.02 * rng.standard_normal((self.max_len, self.dim))

    def allocate(self, batch_size):
        super().allocate(batch_size)
        self._ws_out = None if self.inplace else np.empty((self.batch_size,) + self.output_shape,
                                                          dtype=self.dtype)

    def _positions(self):
        T = self.input_shape[0]
        return self._table if self.kind == "sinusoidal" else self.params[0][:T]

    def _forward(self, X, training):
        Y = X if self.inplace else self._ws_out[:X.shape[0]]
        _K.add_positions(X, self._positions(), Y)
        return Y

    def _backward(self, dY, need_dX):
        if self.kind == "learned":
            T = self.input_shape[0]
            dE = self.grads[0]
            _K.sum_positions(dY, dE[:T])
            dE[T:] = 0
        return dY if need_dX else None
