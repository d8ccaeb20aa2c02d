"""Activation layers.  They compute derivatives from their outputs (nnc._kernels._activations), so
they can run in place on the previous layer's output buffer; the network decides (``inplace``)."""
import numpy as np

from nnc.layers._base import Layer
from nnc._kernels import _activations as _k


class _Activation(Layer):
    inplace_capable = True
    keeps_mask = True
    _code = _k.IDENTITY

    def _slope(self):
        return 0.0

    def allocate(self, batch_size):
        super().allocate(batch_size)
        self._ws_out = None if self.inplace else np.empty((batch_size,) + self.output_shape,
                                                          dtype=self.dtype)

    def _forward(self, X, training):
        n = X.shape[0]
        if self.inplace:
            Y = X
        else:
            Y = self._ws_out[:n]
            Y[...] = X
        _k.activation_forward(self._code, Y.reshape(-1), self._slope())
        self._cache_Y = Y
        return Y

    def _backward(self, dY, need_dX):
        if not need_dX:
            return None
        _k.activation_backward(self._code, self._cache_Y.reshape(-1), dY.reshape(-1), self._slope())
        return dY


class Identity(_Activation):
    """f(x) = x."""
    _code = _k.IDENTITY


class Sigmoid(_Activation):
    """Logistic function f(x) = 1 / (1 + exp(-x)); f' = y (1 - y)."""
    _code = _k.LOGISTIC


class Tanh(_Activation):
    """f(x) = tanh(x); f' = 1 - y^2."""
    _code = _k.TANH


class ReLU(_Activation):
    """f(x) = max(x, 0)."""
    _code = _k.RELU


class LeakyReLU(_Activation):
    """f(x) = x for x > 0, negative_slope * x otherwise.

    Parameters
    ----------
    negative_slope : float in (0, 1), default=0.01
        Slope for negative inputs.
    """
    _code = _k.LEAKY_RELU

    def __init__(self, negative_slope=0.01):
        super().__init__()
        if not isinstance(negative_slope, (int, float)) or isinstance(negative_slope, bool):
            raise TypeError(f"negative_slope must be a float, got {type(negative_slope).__name__}")
        if not 0 < negative_slope < 1:
            raise ValueError(f"negative_slope must be in (0, 1), got {negative_slope}")
        self.negative_slope = float(negative_slope)

    def _slope(self):
        return self.negative_slope

    def get_config(self):
        return {"negative_slope": self.negative_slope}


#: activation names used by the estimators (scikit-learn's names, plus leaky_relu)
ACTIVATIONS = {"identity": Identity, "logistic": Sigmoid, "tanh": Tanh, "relu": ReLU,
               "leaky_relu": LeakyReLU}
