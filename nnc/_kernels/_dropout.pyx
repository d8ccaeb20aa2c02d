"""Inverted dropout: one pass that turns uniforms into a scaled keep-mask and applies it.

All arrays are flat (any C-contiguous shape, n elements).  The uniforms U come from the layer's
own NumPy generator (``Generator.random(out=...)`` into a preallocated buffer), so the kernel holds
no random state.
  dropout_forward   writes mask_out = [U >= rate] / (1 - rate) and Y_out = X * mask_out
                    (mask_out may be U itself, Y_out may be X itself: element-wise, same index).
  dropout_backward  writes dX_out = dY * mask (dX_out may be dY itself).
Threads: static shares of the n elements, as many as the thread policy gives for n
(WORK_ELEMENTWISE, see nnc/_threads.py; one below its threshold).
"""
from nnc._kernels._blas cimport floating
from nnc._kernels._parallel cimport (_par_begin, _par_end, _par_run, _chunk_lo, MAX_JOBS,
                                     WORK_ELEMENTWISE)


cdef struct DropJob:
    bint forward
    bint dbl
    const void* X           # forward: X; backward: dY
    const void* U           # forward: the uniforms; backward: the mask
    void* mask              # forward: the mask written
    void* Y                 # forward: Y; backward: dX
    double rate, scale
    Py_ssize_t lo, hi       # elements [lo, hi)


cdef void _drop_rows(DropJob* j, floating tag) noexcept nogil:
    """Elements [j.lo, j.hi) (`tag` only selects the floating type)."""
    cdef const floating* X = <const floating*>j.X
    cdef const floating* U = <const floating*>j.U
    cdef floating* mask = <floating*>j.mask
    cdef floating* Y = <floating*>j.Y
    cdef floating rate = <floating>j.rate
    cdef floating scale = <floating>j.scale
    cdef floating m
    cdef Py_ssize_t i
    if j.forward:
        for i in range(j.lo, j.hi):
            m = scale if U[i] >= rate else 0
            mask[i] = m
            Y[i] = X[i] * m
    else:
        for i in range(j.lo, j.hi):
            Y[i] = X[i] * U[i]


cdef void _drop_job(void* p) noexcept nogil:
    cdef DropJob* j = <DropJob*>p
    if j.dbl:
        _drop_rows(j, <double>0)
    else:
        _drop_rows(j, <float>0)


cdef void _dropout_run(bint forward, const floating* X, const floating* U, double rate,
                       double scale, floating* mask, floating* Y, Py_ssize_t n,
                       int n_threads) noexcept nogil:
    """n elements split into as many jobs as the thread policy gives (WORK_ELEMENTWISE)."""
    cdef DropJob jobs[MAX_JOBS]
    cdef int nt = _par_begin(n_threads, WORK_ELEMENTWISE, <double>n), t
    for t in range(nt):
        jobs[t].forward = forward
        jobs[t].dbl = floating is double
        jobs[t].X = X
        jobs[t].U = U
        jobs[t].mask = mask
        jobs[t].Y = Y
        jobs[t].rate = rate
        jobs[t].scale = scale
        jobs[t].lo = _chunk_lo(n, nt, t)
        jobs[t].hi = _chunk_lo(n, nt, t + 1)
    _par_run(nt, _drop_job, jobs, sizeof(DropJob))
    _par_end(nt)


cdef void _dropout_forward(const floating* X, const floating* U, floating rate, floating scale,
                           floating* mask, floating* Y, Py_ssize_t n, int n_threads) noexcept nogil:
    """mask = [U >= rate] * scale;  Y = X * mask."""
    _dropout_run(True, X, U, <double>rate, <double>scale, mask, Y, n, n_threads)


cdef void _dropout_backward(const floating* dY, const floating* mask, floating* dX, Py_ssize_t n,
                            int n_threads) noexcept nogil:
    """dX = dY * mask."""
    _dropout_run(False, dY, mask, 0.0, 0.0, <floating*>NULL, dX, n, n_threads)


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
