"""Convolution layers (NCHW): Conv2D and Conv1D.  Weights [W (F, C, KH, KW), b (F,)].

Compute lives in nnc._kernels._conv (im2col + one GEMM per sample); these classes own the views and
the workspaces: output Y (batch, F, OH, OW), input gradient dX (batch, C, H, W) and the im2col
columns and GEMM scratch of Nc samples (shapes from ``_conv.conv2d_workspace_shapes``).  Those two
are bounded by ``Conv2D.workspace_bytes``: the batch is processed in chunks of Nc samples, Nc fixed
in ``allocate``.  When a whole batch fits in one chunk
the columns computed by forward are reused by backward; otherwise backward recomputes them chunk by
chunk from the cached input.
"""
import math

import numpy as np

from nnc.layers._base import Layer, ParamSpec, _as_pair, _check_positive_int
from nnc._kernels import _conv
from nnc._threads import n_threads
from nnc._validation import channels_last_hint


class Conv2D(Layer):
    """2-D convolution (cross-correlation, as ``torch.nn.Conv2d``) on (C, H, W) samples.

    Parameters
    ----------
    filters : int
        Number of output channels F.
    kernel_size : int or (int, int)
        Window (KH, KW).
    stride : int or (int, int), default=1
    padding : int or (int, int), default=0
        Zeros added on both sides of each spatial axis.

    Notes
    -----
    Output shape (F, OH, OW) with OH = (H + 2 PH - KH) // SH + 1 (likewise OW).  Weights are
    Glorot-uniform with fan_in = C KH KW and fan_out = F KH KW; biases start at zero.
    """

    #: the next layer may overwrite Y in place: backward needs X (or the columns), W and dY only
    output_reusable = True
    #: byte budget of the im2col workspace; batches whose columns exceed it run in chunks
    workspace_bytes = 32 * 2**20

    def __init__(self, filters, kernel_size, stride=1, padding=0):
        super().__init__()
        self.filters = _check_positive_int(filters, "filters")
        self.kernel_size = _as_pair(kernel_size, "kernel_size")
        self.stride = _as_pair(stride, "stride")
        self.padding = _as_pair(padding, "padding", allow_zero=True)
        self._set_geometry(self.kernel_size, self.stride, self.padding)

    def _set_geometry(self, kernel, stride, padding):
        (self._KH, self._KW), (self._SH, self._SW), (self._PH, self._PW) = kernel, stride, padding

    # -- shapes ----------------------------------------------------------------------------------
    def _input_4d(self, input_shape):
        """Per-sample (C, H, W) of the kernel call; validates the layer's input rank."""
        if len(input_shape) != 3:
            raise ValueError(f"{type(self).__name__} expects (C, H, W) samples, got sample shape "
                             f"{input_shape}")
        return tuple(input_shape)

    def _output_shape(self, F, OH, OW):
        return (F, OH, OW)

    def build(self, input_shape, dtype):
        super().build(input_shape, dtype)
        C, H, W = self._in3 = self._input_4d(self.input_shape)
        try:
            OH = _conv.conv_output_size(H, self._KH, self._SH, self._PH)
            OW = _conv.conv_output_size(W, self._KW, self._SW, self._PW)
        except ValueError as exc:
            raise ValueError(f"{type(self).__name__} on input {self.input_shape}: {exc}"
                             f"{channels_last_hint(self.input_shape)}") from None
        self._out3 = (self.filters, OH, OW)
        self.output_shape = self._output_shape(self.filters, OH, OW)
        return self.output_shape

    def _weight_shape(self):
        return (self.filters, self._in3[0], self._KH, self._KW)

    def param_specs(self):
        return [ParamSpec("W", self._weight_shape(), True), ParamSpec("b", (self.filters,), False)]

    def bind(self, params, grads):
        super().bind(params, grads)
        shape4 = (self.filters, self._in3[0], self._KH, self._KW)
        self._W4 = self.params[0].reshape(shape4)
        self._dW4 = self.grads[0].reshape(shape4)

    def init_params(self, rng):
        C, KK = self._in3[0], self._KH * self._KW
        bound = np.sqrt(6.0 / (C * KK + self.filters * KK))
        self.params[0][...] = rng.uniform(-bound, bound, self._weight_shape())
        self.params[1][...] = 0

    def allocate(self, batch_size):
        super().allocate(batch_size)
        C, H, W = self._in3
        F, OH, OW = self._out3
        cols, tmp = _conv.conv2d_workspace_shapes(1, C, H, W, F, self._KH, self._KW, self._SH,
                                                  self._SW, self._PH, self._PW)
        per_sample = (math.prod(cols[1:]) + math.prod(tmp[1:])) * self.dtype.itemsize
        self._chunk = int(max(1, min(batch_size, self.workspace_bytes // per_sample)))
        self._ws_cols = np.empty((self._chunk,) + cols[1:], dtype=self.dtype)
        self._ws_tmp = np.empty((self._chunk,) + tmp[1:], dtype=self.dtype)
        self._ws_out = np.empty((batch_size, F, OH, OW), dtype=self.dtype)
        self._ws_dX = np.empty((batch_size, C, H, W), dtype=self.dtype)
        self._cache_cols_ready = False

    # -- computation -----------------------------------------------------------------------------
    def _forward(self, X, training):
        n = X.shape[0]
        X4 = X.reshape((n,) + self._in3)
        Y4 = self._ws_out[:n]
        _conv.conv2d_forward(X4, self._W4, self.params[1], self._ws_cols, self._ws_tmp, Y4,
                             self._SH, self._SW, self._PH, self._PW, n_threads())
        self._cache_X = X4
        self._cache_cols_ready = n <= self._chunk
        return Y4.reshape((n,) + self.output_shape)

    def _backward(self, dY, need_dX):
        n = dY.shape[0]
        X4 = self._cache_X
        if X4.shape[0] != n:
            raise ValueError(f"{type(self).__name__}.backward: dY has {n} samples, the last "
                             f"forward had {X4.shape[0]}")
        dX4 = self._ws_dX[:n] if need_dX else None
        _conv.conv2d_backward(X4, self._W4, dY.reshape((n,) + self._out3), self._ws_cols,
                              self._ws_tmp, self._dW4, self.grads[1], dX4, self._SH, self._SW,
                              self._PH, self._PW, self._cache_cols_ready, n_threads())
        if need_dX:
            self._cache_cols_ready = False  # the columns now hold d(cols)
            return dX4.reshape((n,) + self.input_shape)
        return None

    def _workspace_attrs(self):
        # the reshaped weight views are rebuilt by bind() when the network is restored
        return super()._workspace_attrs() + ["_W4", "_dW4"]

    def get_config(self):
        return {"filters": self.filters, "kernel_size": list(self.kernel_size),
                "stride": list(self.stride), "padding": list(self.padding)}


class Conv1D(Conv2D):
    """1-D convolution (as ``torch.nn.Conv1d``) on (C, L) samples: Conv2D with a (1, k) kernel.

    Parameters
    ----------
    filters : int
    kernel_size : int
    stride : int, default=1
    padding : int, default=0

    Notes
    -----
    Output shape (F, OL), OL = (L + 2 padding - kernel_size) // stride + 1.  Weights W (F, C, k).
    """

    def __init__(self, filters, kernel_size, stride=1, padding=0):
        Layer.__init__(self)
        self.filters = _check_positive_int(filters, "filters")
        self.kernel_size = _check_positive_int(kernel_size, "kernel_size")
        self.stride = _check_positive_int(stride, "stride")
        if not isinstance(padding, (int, np.integer)) or isinstance(padding, bool):
            raise TypeError(f"padding must be an int, got {type(padding).__name__}")
        if padding < 0:
            raise ValueError(f"padding must be >= 0, got {padding}")
        self.padding = int(padding)
        self._set_geometry((1, self.kernel_size), (1, self.stride), (0, self.padding))

    def _input_4d(self, input_shape):
        if len(input_shape) != 2:
            raise ValueError(f"Conv1D expects (C, L) samples, got sample shape {input_shape}")
        C, L = input_shape
        return (C, 1, L)

    def _output_shape(self, F, OH, OW):
        return (F, OW)

    def _weight_shape(self):
        return (self.filters, self._in3[0], self.kernel_size)

    def get_config(self):
        return {"filters": self.filters, "kernel_size": self.kernel_size, "stride": self.stride,
                "padding": self.padding}
