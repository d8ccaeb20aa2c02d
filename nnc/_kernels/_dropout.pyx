"""Inverted dropout: one pass that turns uniforms into a scaled keep-mask and applies it.

All arrays are flat (any C-contiguous shape, n elements).  The uniforms U come from the layer's
own NumPy generator (``Generator.random(out=...)`` into a preallocated buffer), so the kernel holds
no random state.
  dropout_forward   writes mask_out = [U >= rate] / (1 - rate) and Y_out = X * mask_out
                    (mask_out may be U itself, Y_out may be X itself: element-wise, same index).
  dropout_backward  writes dX_out = dY * mask (dX_out may be dY itself).
Threads: prange with the count the thread policy gives for n elements (WORK_ELEMENTWISE, see
nnc/_threads.py; serial below its threshold).
"""
from cython.parallel cimport prange

from nnc._kernels._blas cimport floating
from nnc._kernels._parallel cimport _par_begin, _par_end, WORK_ELEMENTWISE


cdef void _dropout_forward(const floating* X, const floating* U, floating rate, floating scale,
                           floating* mask, floating* Y, Py_ssize_t n, int n_threads) noexcept nogil:
    """mask = [U >= rate] * scale;  Y = X * mask."""
    cdef Py_ssize_t i
    cdef floating m
    n_threads = _par_begin(n_threads, WORK_ELEMENTWISE, <double>n)
    if n_threads > 1:
        for i in prange(n, schedule="static", num_threads=n_threads):
            m = scale if U[i] >= rate else 0
            mask[i] = m
            Y[i] = X[i] * m
    else:
        for i in range(n):
            m = scale if U[i] >= rate else 0
            mask[i] = m
            Y[i] = X[i] * m
    _par_end(n_threads)


cdef void _dropout_backward(const floating* dY, const floating* mask, floating* dX, Py_ssize_t n,
                            int n_threads) noexcept nogil:
    """dX = dY * mask."""
    cdef Py_ssize_t i
    n_threads = _par_begin(n_threads, WORK_ELEMENTWISE, <double>n)
    if n_threads > 1:
        for i in prange(n, schedule="static", num_threads=n_threads):
            dX[i] = dY[i] * mask[i]
    else:
        for i in range(n):
            dX[i] = dY[i] * mask[i]
    _par_end(n_threads)


# ---------------------------------------------------------------- Python twins

def dropout_forward(const floating[::1] X, const floating[::1] U, double rate,
                    floating[::1] mask_out, floating[::1] Y_out, int n_threads=1):
    """mask_out = [U >= rate] / (1 - rate);  Y_out = X * mask_out  (flat arrays of equal length)."""
    cdef Py_ssize_t n = X.shape[0]
    if not 0.0 <= rate < 1.0:
        raise ValueError(f"dropout_forward: rate must be in [0, 1), got {rate}")
    if n_threads < 1:
        raise ValueError(f"dropout_forward: n_threads must be >= 1, got {n_threads}")
    if U.shape[0] != n or mask_out.shape[0] != n or Y_out.shape[0] != n:
        raise ValueError("dropout_forward: X, U, mask_out and Y_out must have the same length")
    if n == 0:
        return
    with nogil:
        _dropout_forward(&X[0], &U[0], <floating>rate, <floating>(1.0 / (1.0 - rate)),
                         &mask_out[0], &Y_out[0], n, n_threads)


def dropout_backward(const floating[::1] dY, const floating[::1] mask, floating[::1] dX_out,
                     int n_threads=1):
    """dX_out = dY * mask  (flat arrays of equal length)."""
    cdef Py_ssize_t n = dY.shape[0]
    if n_threads < 1:
        raise ValueError(f"dropout_backward: n_threads must be >= 1, got {n_threads}")
    if mask.shape[0] != n or dX_out.shape[0] != n:
        raise ValueError("dropout_backward: dY, mask and dX_out must have the same length")
    if n == 0:
        return
    with nogil:
        _dropout_backward(&dY[0], &mask[0], &dX_out[0], n, n_threads)
