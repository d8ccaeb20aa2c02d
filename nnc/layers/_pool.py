"""Pooling layers (NCHW, no padding, floor output size as PyTorch): MaxPool2D and AvgPool2D.

Compute lives in nnc._kernels._pool; these classes own the workspaces: output Y (batch, C, OH, OW),
input gradient dX (batch, C, H, W) and, for max pooling, the argmax indices (batch, C, OH, OW) int32
saved by forward and scattered through by backward.
"""
import numpy as np

from nnc.layers._base import Layer, _as_pair
from nnc._kernels import _pool
from nnc._threads import n_threads
from nnc._validation import channels_last_hint


class _Pool2D(Layer):
    #: backward needs only dY (and the argmax indices), so the next layer may overwrite Y
    output_reusable = True

    def __init__(self, pool_size, stride=None):
        super().__init__()
        self.pool_size = _as_pair(pool_size, "pool_size")
        self.stride = self.pool_size if stride is None else _as_pair(stride, "stride")
        self._stride_given = stride is not None

    def build(self, input_shape, dtype):
        super().build(input_shape, dtype)
        if len(self.input_shape) != 3:
            raise ValueError(f"{type(self).__name__} expects (C, H, W) samples, got sample shape "
                             f"{self.input_shape}")
        C, H, W = self.input_shape
        try:
            OH = _pool.pool_output_size(H, self.pool_size[0], self.stride[0])
            OW = _pool.pool_output_size(W, self.pool_size[1], self.stride[1])
        except ValueError as exc:
            raise ValueError(f"{type(self).__name__} on input {self.input_shape}: {exc}"
                             f"{channels_last_hint(self.input_shape)}") from None
        self.output_shape = (C, OH, OW)
        return self.output_shape

    def allocate(self, batch_size):
        super().allocate(batch_size)
        self._ws_out = np.empty((batch_size,) + self.output_shape, dtype=self.dtype)
        self._ws_dX = np.empty((batch_size,) + self.input_shape, dtype=self.dtype)

    def get_config(self):
        return {"pool_size": list(self.pool_size),
                "stride": list(self.stride) if self._stride_given else None}


class MaxPool2D(_Pool2D):
    """Max pooling over (KH, KW) windows.

    Parameters
    ----------
    pool_size : int or (int, int)
    stride : int, (int, int) or None, default=None
        None: equal to pool_size.  Overlapping windows (stride < pool_size) are allowed; their
        gradients accumulate.  Ties go to the first maximum in row-major window order.
    """

    def allocate(self, batch_size):
        super().allocate(batch_size)
        self._ws_argmax = np.empty((batch_size,) + self.output_shape, dtype=np.intc)

    def _forward(self, X, training):
        n = X.shape[0]
        Y = self._ws_out[:n]
        _pool.maxpool2d_forward(X, Y, self._ws_argmax[:n], *self.pool_size, *self.stride,
                                n_threads())
        return Y

    def _backward(self, dY, need_dX):
        if not need_dX:
            return None
        n = dY.shape[0]
        dX = self._ws_dX[:n]
        _pool.maxpool2d_backward(dY, self._ws_argmax[:n], dX, n_threads())
        return dX


class AvgPool2D(_Pool2D):
    """Average pooling over (KH, KW) windows (every window lies inside the input).

    Parameters
    ----------
    pool_size : int or (int, int)
    stride : int, (int, int) or None, default=None
        None: equal to pool_size.
    """

    def _forward(self, X, training):
        n = X.shape[0]
        Y = self._ws_out[:n]
        _pool.avgpool2d_forward(X, Y, *self.pool_size, *self.stride, n_threads())
        return Y

    def _backward(self, dY, need_dX):
        if not need_dX:
            return None
        n = dY.shape[0]
        dX = self._ws_dX[:n]
        _pool.avgpool2d_backward(dY, dX, *self.pool_size, *self.stride, n_threads())
        return dX
