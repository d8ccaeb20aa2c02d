"""Fully connected layer kernels: Y = X W + b and its backward pass, one GEMM per product.

Dimensions: N samples, F input features, U output units.  X (N, F), W (F, U), b (U,), Y (N, U).
All arrays C-contiguous; outputs go to caller-supplied buffers (``*_out``); gradients overwrite.
"""
from nnc._kernels._blas cimport floating, blas_int, _gemm, NoTrans, Trans_


cdef void _dense_forward(const floating* X, const floating* W, const floating* b,
                         floating* Y_out, Py_ssize_t N, Py_ssize_t F, Py_ssize_t U) noexcept nogil:
    """Y_out = X @ W + b."""
    cdef Py_ssize_t i, j
    cdef floating* row
    for i in range(N):
        row = Y_out + i * U
        for j in range(U):
            row[j] = b[j]
    if F > 0:
        _gemm(NoTrans, NoTrans, <blas_int>N, <blas_int>U, <blas_int>F, <floating>1.0,
              X, <blas_int>F, W, <blas_int>U, <floating>1.0, Y_out, <blas_int>U)


cdef void _dense_backward(const floating* X, const floating* W, const floating* dY,
                          floating* dW_out, floating* db_out, floating* dX_out,
                          Py_ssize_t N, Py_ssize_t F, Py_ssize_t U) noexcept nogil:
    """dW = X^T dY; db = sum_rows dY; dX = dY W^T (skipped when dX_out is NULL)."""
    cdef Py_ssize_t i, j
    cdef const floating* row
    for j in range(U):
        db_out[j] = 0
    for i in range(N):
        row = dY + i * U
        for j in range(U):
            db_out[j] += row[j]
    if F > 0:
        _gemm(Trans_, NoTrans, <blas_int>F, <blas_int>U, <blas_int>N, <floating>1.0,
              X, <blas_int>F, dY, <blas_int>U, <floating>0.0, dW_out, <blas_int>U)
        if dX_out != NULL:
            _gemm(NoTrans, Trans_, <blas_int>N, <blas_int>F, <blas_int>U, <floating>1.0,
                  dY, <blas_int>U, W, <blas_int>U, <floating>0.0, dX_out, <blas_int>F)


# ---------------------------------------------------------------- Python twins

def dense_forward(const floating[:, ::1] X, const floating[:, ::1] W, const floating[::1] b,
                  floating[:, ::1] Y_out):
    """Y_out = X @ W + b (shapes validated)."""
    cdef Py_ssize_t N = X.shape[0], F = X.shape[1], U = W.shape[1]
    if W.shape[0] != F or b.shape[0] != U or Y_out.shape[0] != N or Y_out.shape[1] != U:
        raise ValueError("dense_forward: incompatible shapes")
    if N == 0 or U == 0:
        return
    with nogil:
        _dense_forward(&X[0, 0] if F > 0 else <floating*>NULL, &W[0, 0] if F > 0 else <floating*>NULL,
                       &b[0], &Y_out[0, 0], N, F, U)


def dense_backward(const floating[:, ::1] X, const floating[:, ::1] W, const floating[:, ::1] dY,
                   floating[:, ::1] dW_out, floating[::1] db_out, floating[:, ::1] dX_out=None):
    """dW_out = X^T dY, db_out = sum(dY, 0), dX_out = dY W^T (when given)."""
    cdef Py_ssize_t N = X.shape[0], F = X.shape[1], U = W.shape[1]
    if (W.shape[0] != F or dY.shape[0] != N or dY.shape[1] != U or dW_out.shape[0] != F
            or dW_out.shape[1] != U or db_out.shape[0] != U):
        raise ValueError("dense_backward: incompatible shapes")
    if dX_out is not None and (dX_out.shape[0] != N or dX_out.shape[1] != F):
        raise ValueError("dense_backward: dX_out has the wrong shape")
    if N == 0 or F == 0 or U == 0:
        raise ValueError("dense_backward: empty dimension")
    cdef floating* dX_ptr = NULL
    if dX_out is not None:
        dX_ptr = &dX_out[0, 0]
    with nogil:
        _dense_backward(&X[0, 0], &W[0, 0], &dY[0, 0], &dW_out[0, 0], &db_out[0], dX_ptr, N, F, U)
