"""Dense (fully connected) layer: Y = X W + b.  Weights [W (in, out), b (out,)].

Compute lives in nnc._kernels._dense; this class owns the views and the workspaces
(output Y and input gradient dX, each (batch_size, ...)).  Samples of more than one axis
(sequences (T, F), ...) are transformed position by position along the last axis: the batch is
the (n * T, F) matrix it already is in memory, so that is still one GEMM (no copy).
"""
import numpy as np

from nnc.layers._base import Layer, ParamSpec, _check_positive_int
from nnc._kernels import _dense


class Dense(Layer):
    """Fully connected layer, applied to the last axis of each sample: (n, F) -> (n, units), and
    (n, ..., F) -> (n, ..., units) position by position (a position-wise layer on sequences).

    Parameters
    ----------
    units : int
        Number of outputs.
    init_factor : float or None
        Glorot-uniform bound is ``sqrt(init_factor / (fan_in + fan_out))`` (scikit-learn's MLP
        initialisation).  None: 2 when the next layer is Sigmoid, else 6 (set by Sequential).
    """

    #: the next layer may overwrite Y in place: backward needs only X, W and dY
    output_reusable = True

    def __init__(self, units, init_factor=None):
        super().__init__()
        self.units = _check_positive_int(units, "units")
        if init_factor is not None and not (isinstance(init_factor, (int, float))
                                            and init_factor > 0):
            raise ValueError(f"init_factor must be a positive number or None, got {init_factor!r}")
        self.init_factor = init_factor
        self._auto_factor = 6.0

    @property
    def keeps_mask(self):
        """On sequences the positions (and their mask) are kept."""
        return self.input_shape is not None and len(self.input_shape) > 1

    def build(self, input_shape, dtype):
        super().build(input_shape, dtype)
        self.output_shape = self.input_shape[:-1] + (self.units,)
        return self.output_shape

    def param_specs(self):
        F = self.input_shape[-1]
        return [ParamSpec("W", (F, self.units), True), ParamSpec("b", (self.units,), False)]

    def init_params(self, rng):
        F, U = self.input_shape[-1], self.units
        factor = self.init_factor if self.init_factor is not None else self._auto_factor
        bound = np.sqrt(factor / (F + U))
        # same draws, in the same order, as scikit-learn's MLP (_init_coef): W then b
        self.params[0][...] = rng.uniform(-bound, bound, (F, U))
        self.params[1][...] = rng.uniform(-bound, bound, U)

    def allocate(self, batch_size):
        super().allocate(batch_size)
        self._ws_out = np.empty((batch_size,) + self.output_shape, dtype=self.dtype)
        self._ws_dX = np.empty((batch_size,) + self.input_shape, dtype=self.dtype)

    def _forward(self, X, training):
        n = X.shape[0]
        Y = self._ws_out[:n]
        self._cache_X = X
        if X.ndim == 2:
            _dense.dense_forward(X, self.params[0], self.params[1], Y)
        else:       # positions are rows: (n * ..., F) views, no copy
            _dense.dense_forward(X.reshape(-1, X.shape[-1]), self.params[0], self.params[1],
                                 Y.reshape(-1, self.units))
        return Y

    def _backward(self, dY, need_dX):
        n = dY.shape[0]
        dX = self._ws_dX[:n] if need_dX else None
        X = self._cache_X
        if X.ndim == 2:
            _dense.dense_backward(X, self.params[0], dY, self.grads[0], self.grads[1], dX)
        else:
            F = X.shape[-1]
            _dense.dense_backward(X.reshape(-1, F), self.params[0], dY.reshape(-1, self.units),
                                  self.grads[0], self.grads[1],
                                  None if dX is None else dX.reshape(-1, F))
        return dX

    def get_config(self):
        return {"units": self.units, "init_factor": self.init_factor}
