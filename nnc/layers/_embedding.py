"""Embedding: integer token ids (n, *S) -> rows of a learned table (n, *S, dim).

Compute lives in nnc._kernels._embedding (row gather forward, row scatter backward); the class owns
the output workspace and keeps a reference to the ids for backward.  The layer declares
``input_kind = "ids"``: it must be first in a network, and the network and the estimators validate
X as int64 token ids in [0, n_tokens) (``nnc._validation.check_ids``) without converting it to
floats.  Ids have no gradient: backward fills the table's gradient and returns None.
"""
import numpy as np

from nnc.layers._base import Layer, ParamSpec, _check_positive_int
from nnc._kernels import _embedding
from nnc._threads import n_threads


class Embedding(Layer):
    """A learned vector per token id (``torch.nn.Embedding``).

    Input: integer ids of shape (n, T) (any sample shape S), each in [0, n_tokens); output
    (n, T, dim): ``W[ids]``.  Estimators and ``Sequential`` take X as an integer array (float
    arrays holding whole numbers are accepted too; other values raise ValueError, as do ids
    outside the range).  The layer must be the first of the network.

    Parameters
    ----------
    n_tokens : int
        Size of the vocabulary (rows of the table).
    dim : int
        Length of each vector.
    padding_idx : int or None, default=None
        An id whose vector starts at zero and gets no gradient (so it stays as it is: a padding
        token contributes nothing learned), as in PyTorch.  On (n, T) sequences it also marks
        the padded positions: the output carries the sequence mask ids != padding_idx, which
        attention layers (padded keys are never attended to) and masked poolings read (see
        "Sequence masks" in nnc/layers/_base.py).

    Notes
    -----
    The table W (n_tokens, dim) is initialised from N(0, 1) (PyTorch's default) and is not
    L2-decayed.  Backward writes the gradient of every row: zero for the ids absent from the
    batch, the sum over the batch's occurrences of an id otherwise.
    """

    input_kind = "ids"
    output_reusable = True

    def __init__(self, n_tokens, dim, padding_idx=None):
        super().__init__()
        self.n_tokens = _check_positive_int(n_tokens, "n_tokens")
        self.dim = _check_positive_int(dim, "dim")
        if padding_idx is not None:
            if not isinstance(padding_idx, (int, np.integer)) or isinstance(padding_idx, bool):
                raise TypeError(f"padding_idx must be an int or None, got {padding_idx!r}")
            if not 0 <= padding_idx < self.n_tokens:
                raise ValueError(f"padding_idx must be in [0, n_tokens={self.n_tokens}), got "
                                 f"{padding_idx}")
            padding_idx = int(padding_idx)
        self.padding_idx = padding_idx

    def build(self, input_shape, dtype):
        super().build(input_shape, dtype)
        self.output_shape = self.input_shape + (self.dim,)
        return self.output_shape

    def param_specs(self):
        return [ParamSpec("W", (self.n_tokens, self.dim), False)]

    def init_params(self, rng):
        W = self.params[0]
        W[...] = rng.standard_normal(W.shape)
        if self.padding_idx is not None:
            W[self.padding_idx] = 0

    @property
    def mask_source(self):
        """True when the layer marks padded positions of (n, T) sequences (``padding_idx``)."""
        return (self.padding_idx is not None and self.input_shape is not None
                and len(self.input_shape) == 1)

    def allocate(self, batch_size):
        super().allocate(batch_size)
        self._ws_out = np.empty((batch_size,) + self.output_shape, dtype=self.dtype)
        self._ws_mask = (np.empty((batch_size,) + self.input_shape, dtype=np.bool_)
                         if self.mask_source else None)

    def _forward(self, X, training):
        n = X.shape[0]
        ids = X.reshape(-1)
        Y = self._ws_out[:n]
        _embedding.embedding_forward(ids, self.params[0], Y.reshape(-1, self.dim),
                                     n_threads())
        self._cache_ids = ids
        if self._ws_mask is not None:       # the sequence mask: True at the real tokens
            self._cache_mask_out = np.not_equal(X, self.padding_idx, out=self._ws_mask[:n])
        return Y

    def _output_mask(self, mask):
        return self.__dict__.get("_cache_mask_out") if self.mask_source else None

    def _backward(self, dY, need_dX):
        ids = self._cache_ids
        _embedding.embedding_backward(ids, dY.reshape(-1, self.dim), self.grads[0],
                                      -1 if self.padding_idx is None else self.padding_idx,
                                      n_threads())
        return None

    def get_config(self):
        return {"n_tokens": self.n_tokens, "dim": self.dim, "padding_idx": self.padding_idx}
