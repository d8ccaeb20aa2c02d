"""Pooling layers (floor output size as PyTorch): MaxPool2D / AvgPool2D on (C, H, W) samples,
MaxPool1D / AvgPool1D on (C, L) samples, and GlobalMaxPool / GlobalAvgPool over every position.

Compute lives in nnc._kernels._pool; these classes own the workspaces: output Y, input gradient
dX and, for max pooling, the argmax indices saved by forward and scattered through by backward.
1-D pools run the 2-D kernels on (C, 1, L) views (no copy).

Padding follows PyTorch: ``padding`` values on each side of every spatial axis, at most half the
pool size; max pooling pads with -inf (the padded values never win), average pooling follows
``count_include_pad`` (True, PyTorch's default: the padded zeros count in the mean; False: the
mean of the input values in the window only).  The padding is virtual (windows are clipped), and
unpadded pools run the same loops as before padding existed.

Global pooling and the channel axis.  nnc's images and Conv1D signals are channels first,
(C, H, W) and (C, L), while sequences from Embedding, the recurrent layers and attention are
(T, F), features last.  ``data_format`` says which a sample is: 'channels_first' pools over every
axis after the first (PyTorch's ``AdaptiveAvgPool`` to size 1), 'channels_last' over every axis
before the last (Keras's ``GlobalAveragePooling1D`` on sequences).  The default, None, is
'channels_first' for 3-D samples (C, H, W), the only image layout nnc has; for 2-D samples the
two readings are equally likely, so the layer asks (a ValueError at build names both choices)
rather than guess.

Sequence masks.  On (T, F) sequences pooled channels last, the global pools read the padding mask
of their input (layers/_base.py, "Sequence masks"; ``Embedding(padding_idx=...)`` makes it):
GlobalAvgPool averages the real positions only (the masked mean of transformer classifiers) and
GlobalMaxPool takes the maximum over them, so padding added after a sequence does not change its
pooled features.  A sample whose positions are all padding pools to 0, with a zero gradient.
The pools end the mask (their output has no positions).  Without a mask (and channels first, or
on (H, W, C) samples) nothing changes.
"""
import math

import numpy as np

from nnc.layers._base import Layer, _as_pair, _check_positive_int
from nnc._kernels import _pool
from nnc._threads import n_threads
from nnc._validation import channels_last_hint


def _check_padding(padding, pool, name="padding"):
    pad = _as_pair(padding, name, allow_zero=True)
    for p, k in zip(pad, pool):
        if p > k // 2:
            raise ValueError(f"{name} must be at most half the pool size (as PyTorch: every "
                             f"window must hold an input value), got {padding!r} for pool "
                             f"size {pool if pool[0] != 1 else pool[1]}")
    return pad


def _check_bool(value, name):
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be True or False, got {value!r}")
    return bool(value)


class _WindowPool(Layer):
    """Pools over KH x KW windows of (C, H, W) samples, or 1 x K windows of (C, L) samples
    (``_ndim`` = 1) viewed as (C, 1, L)."""

    #: backward needs only dY (and the argmax indices), so the next layer may overwrite Y
    output_reusable = True
    _ndim = 2

    def _setup(self, pool_size, stride, padding):
        if self._ndim == 1:
            k = _check_positive_int(pool_size, "pool_size")
            s = k if stride is None else _check_positive_int(stride, "stride")
            self.pool_size, self.stride = (1, k), (1, s)
            if not isinstance(padding, (int, np.integer)) or isinstance(padding, bool):
                raise TypeError(f"padding must be an int, got {padding!r}")
            self.padding = _check_padding((0, int(padding)), self.pool_size)
        else:
            self.pool_size = _as_pair(pool_size, "pool_size")
            self.stride = self.pool_size if stride is None else _as_pair(stride, "stride")
            self.padding = _check_padding(padding, self.pool_size)
        self._stride_given = stride is not None

    def build(self, input_shape, dtype):
        super().build(input_shape, dtype)
        name = type(self).__name__
        if len(self.input_shape) != self._ndim + 1:
            raise ValueError(f"{name} expects {'(C, L)' if self._ndim == 1 else '(C, H, W)'} "
                             f"samples, got sample shape {self.input_shape}")
        if self._ndim == 1:
            C, L = self.input_shape
            H, W = 1, L
        else:
            C, H, W = self.input_shape
        try:
            OH = _pool.pool_output_size(H, self.pool_size[0], self.stride[0], self.padding[0])
            OW = _pool.pool_output_size(W, self.pool_size[1], self.stride[1], self.padding[1])
        except ValueError as exc:
            raise ValueError(f"{name} on input {self.input_shape}: {exc}"
                             f"{channels_last_hint(self.input_shape)}") from None
        self._shape4 = (C, H, W)
        self._out4 = (C, OH, OW)
        self.output_shape = (C, OW) if self._ndim == 1 else (C, OH, OW)
        return self.output_shape

    def allocate(self, batch_size):
        super().allocate(batch_size)
        self._ws_out = np.empty((batch_size,) + self._out4, dtype=self.dtype)
        self._ws_dX = np.empty((batch_size,) + self._shape4, dtype=self.dtype)

    def _view4(self, A, shape):
        return A.reshape((A.shape[0],) + shape)

    def _result(self, A, n, shape):
        return A[:n].reshape((n,) + shape)

    def get_config(self):
        if self._ndim == 1:
            return {"pool_size": self.pool_size[1],
                    "stride": self.stride[1] if self._stride_given else None,
                    "padding": self.padding[1]}
        return {"pool_size": list(self.pool_size),
                "stride": list(self.stride) if self._stride_given else None,
                "padding": list(self.padding)}


class _MaxWindowPool(_WindowPool):
    def allocate(self, batch_size):
        super().allocate(batch_size)
        self._ws_argmax = np.empty((batch_size,) + self._out4, dtype=np.intc)

    def _forward(self, X, training):
        n = X.shape[0]
        Y = self._ws_out[:n]
        _pool.maxpool2d_forward(self._view4(X, self._shape4), Y, self._ws_argmax[:n],
                                *self.pool_size, *self.stride, n_threads(), *self.padding)
        return self._result(self._ws_out, n, self.output_shape)

    def _backward(self, dY, need_dX):
        if not need_dX:
            return None
        n = dY.shape[0]
        dX = self._ws_dX[:n]
        _pool.maxpool2d_backward(self._view4(dY, self._out4), self._ws_argmax[:n], dX,
                                 n_threads())
        return self._result(self._ws_dX, n, self.input_shape)


class _AvgWindowPool(_WindowPool):
    def _forward(self, X, training):
        n = X.shape[0]
        Y = self._ws_out[:n]
        _pool.avgpool2d_forward(self._view4(X, self._shape4), Y, *self.pool_size, *self.stride,
                                n_threads(), *self.padding, self.count_include_pad)
        return self._result(self._ws_out, n, self.output_shape)

    def _backward(self, dY, need_dX):
        if not need_dX:
            return None
        n = dY.shape[0]
        dX = self._ws_dX[:n]
        _pool.avgpool2d_backward(self._view4(dY, self._out4), dX, *self.pool_size, *self.stride,
                                 n_threads(), *self.padding, self.count_include_pad)
        return self._result(self._ws_dX, n, self.input_shape)

    def get_config(self):
        config = super().get_config()
        config["count_include_pad"] = self.count_include_pad
        return config


class MaxPool2D(_MaxWindowPool):
    """Max pooling over (KH, KW) windows of (C, H, W) samples.

    Parameters
    ----------
    pool_size : int or (int, int)
    stride : int, (int, int) or None, default=None
        None: equal to pool_size.  Overlapping windows (stride < pool_size) are allowed; their
        gradients accumulate.  Ties go to the first maximum in row-major window order.
    padding : int or (int, int), default=0
        Implicit -inf added on both sides of H and W (at most half the pool size, as PyTorch).
    """

    def __init__(self, pool_size, stride=None, padding=0):
        super().__init__()
        self._setup(pool_size, stride, padding)


class AvgPool2D(_AvgWindowPool):
    """Average pooling over (KH, KW) windows of (C, H, W) samples.

    Parameters
    ----------
    pool_size : int or (int, int)
    stride : int, (int, int) or None, default=None
        None: equal to pool_size.
    padding : int or (int, int), default=0
        Implicit zeros on both sides of H and W (at most half the pool size, as PyTorch).
    count_include_pad : bool, default=True
        PyTorch's switch: True divides every window sum by KH KW (the padded zeros count);
        False divides by the number of input values in the window.
    """

    def __init__(self, pool_size, stride=None, padding=0, count_include_pad=True):
        super().__init__()
        self._setup(pool_size, stride, padding)
        self.count_include_pad = _check_bool(count_include_pad, "count_include_pad")


class MaxPool1D(_MaxWindowPool):
    """Max pooling over windows of the length axis of (C, L) samples (``torch.nn.MaxPool1d``).

    Parameters
    ----------
    pool_size : int
    stride : int or None, default=None
        None: equal to pool_size.
    padding : int, default=0
        Implicit -inf on both ends (at most pool_size // 2).
    """

    _ndim = 1

    def __init__(self, pool_size, stride=None, padding=0):
        super().__init__()
        self._setup(pool_size, stride, padding)


class AvgPool1D(_AvgWindowPool):
    """Average pooling over windows of the length axis of (C, L) samples
    (``torch.nn.AvgPool1d``).

    Parameters
    ----------
    pool_size : int
    stride : int or None, default=None
        None: equal to pool_size.
    padding : int, default=0
        Implicit zeros on both ends (at most pool_size // 2).
    count_include_pad : bool, default=True
        As AvgPool2D.
    """

    _ndim = 1

    def __init__(self, pool_size, stride=None, padding=0, count_include_pad=True):
        super().__init__()
        self._setup(pool_size, stride, padding)
        self.count_include_pad = _check_bool(count_include_pad, "count_include_pad")


_FORMATS = ("channels_first", "channels_last")


class _GlobalPool(Layer):
    output_reusable = True
    _is_max = False

    @property
    def takes_mask(self):
        """True once built on (T, F) sequences pooled channels last: the padded positions are
        then left out (see the module docstring)."""
        return bool(self.__dict__.get("_channels_last")) and len(self.input_shape) == 2

    def set_mask(self, mask):
        self._check_built("set_mask")
        if not self.takes_mask:
            raise TypeError(f"{type(self).__name__} reads a sequence mask only on (T, F) samples "
                            f"with data_format='channels_last', not on {self.input_shape} "
                            f"samples pooled "
                            f"{'channels last' if self._channels_last else 'channels first'}")
        super().set_mask(mask)

    def __init__(self, data_format=None):
        super().__init__()
        if data_format is not None and data_format not in _FORMATS:
            raise ValueError(f"data_format must be None, 'channels_first' or 'channels_last', "
                             f"got {data_format!r}")
        self.data_format = data_format

    def build(self, input_shape, dtype):
        super().build(input_shape, dtype)
        shape = self.input_shape
        name = type(self).__name__
        if len(shape) < 2:
            raise ValueError(f"{name} needs samples with a channel axis and positions to pool "
                             f"over ((C, L), (T, F) or (C, H, W)), got sample shape {shape}")
        fmt = self.data_format
        if fmt is None:
            if len(shape) == 2:
                raise ValueError(
                    f"{name} on {shape} samples: say which axis holds the channels. "
                    f"data_format='channels_last' pools the {shape[0]} positions of (T, F) "
                    "sequences (Embedding, recurrent and attention outputs; Keras's "
                    f"GlobalAveragePooling1D); 'channels_first' pools the {shape[1]} positions "
                    "of (C, L) signals (Conv1D outputs; PyTorch's AdaptiveAvgPool1d(1))")
            fmt = "channels_first"
        self._channels_last = fmt == "channels_last"
        if self._channels_last:
            self._C, self._S = shape[-1], math.prod(shape[:-1])
            self._shape3 = (self._S, self._C)
        else:
            self._C, self._S = shape[0], math.prod(shape[1:])
            self._shape3 = (self._C, self._S)
        self.output_shape = (self._C,)
        return self.output_shape

    def allocate(self, batch_size):
        super().allocate(batch_size)
        self._ws_out = np.empty((batch_size, self._C), dtype=self.dtype)
        self._ws_dX = np.empty((batch_size,) + self.input_shape, dtype=self.dtype)
        if self._is_max:
            self._ws_argmax = np.empty((batch_size, self._C), dtype=np.intc)

    def _forward(self, X, training):
        n = X.shape[0]
        X3 = X.reshape((n,) + self._shape3)
        Y = self._ws_out[:n]
        mask = self._mask_rows(n) if self.takes_mask else None
        # the mask this forward used, as uint8 (no copy), for backward
        mask = self._cache_pool_mask = None if mask is None else mask.view(np.uint8)
        if self._is_max:
            _pool.global_maxpool_forward(X3, Y, self._ws_argmax[:n], self._channels_last,
                                         n_threads(), mask)
        else:
            _pool.global_avgpool_forward(X3, Y, self._channels_last, n_threads(), mask)
        return Y

    def _backward(self, dY, need_dX):
        if not need_dX:
            return None
        n = dY.shape[0]
        dX = self._ws_dX[:n]
        dX3 = dX.reshape((n,) + self._shape3)
        mask = self.__dict__.get("_cache_pool_mask")
        if mask is not None and mask.shape[0] != n:
            raise RuntimeError(f"{type(self).__name__}.backward: the last forward had "
                               f"{mask.shape[0]} masked samples, dY has {n}")
        if self._is_max:
            _pool.global_maxpool_backward(dY, self._ws_argmax[:n], dX3, self._channels_last,
                                          n_threads(), mask)
        else:
            _pool.global_avgpool_backward(dY, dX3, self._channels_last, n_threads(), mask)
        return dX

    def get_config(self):
        return {"data_format": self.data_format}


class GlobalAvgPool(_GlobalPool):
    """Mean over every position of each channel: (C, L), (T, F) or (C, H, W) samples -> (C,).

    Parameters
    ----------
    data_format : {None, 'channels_first', 'channels_last'}, default=None
        'channels_first': samples (C, ...) averaged over every axis after the first (Conv1D /
        Conv2D outputs; PyTorch's ``AdaptiveAvgPool2d(1)`` + flatten).  'channels_last':
        samples (..., C) averaged over every axis before the last ((T, F) sequences; Keras's
        ``GlobalAveragePooling1D``).  None: 'channels_first' for (C, H, W) samples; 2-D samples
        must say which (ValueError at build).

    Notes
    -----
    On (T, F) sequences with 'channels_last', a sequence mask (``Embedding(padding_idx=...)``
    upstream, or ``set_mask``) restricts the mean to the real positions (the masked mean of
    transformer classifiers, Keras's ``GlobalAveragePooling1D`` with a mask); a sample with no
    real position gives 0, with a zero gradient.
    """


class GlobalMaxPool(_GlobalPool):
    """Maximum over every position of each channel: (C, L), (T, F) or (C, H, W) -> (C,).
    The gradient goes to the first maximum (a NaN wins, as in PyTorch).

    Parameters
    ----------
    data_format : {None, 'channels_first', 'channels_last'}, default=None
        As GlobalAvgPool.

    Notes
    -----
    As GlobalAvgPool, a sequence mask on (T, F) samples pooled 'channels_last' restricts the
    maximum to the real positions; a sample with no real position gives 0, with a zero gradient.
    """

    _is_max = True
