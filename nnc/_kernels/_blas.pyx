"""Fused float/double BLAS wrappers (row-major) over SciPy's cython_blas, with Python twins.

Row-major C = alpha * op(A) @ op(B) + beta * C is computed as the column-major product
C^T = op(B)^T op(A)^T, i.e. by calling ?gemm with A and B swapped.  Nothing links a BLAS:
scipy exports the function pointers of the BLAS it ships.
Dimensions: C (m, n), op(A) (m, k), op(B) (k, n); lda/ldb/ldc are row strides in elements.
"""
from scipy.linalg.cython_blas cimport sgemm, dgemm, saxpy, daxpy, sdot, ddot


cdef void _gemm(Trans ta, Trans tb, blas_int m, blas_int n, blas_int k,
                floating alpha, const floating* A, blas_int lda,
                const floating* B, blas_int ldb,
                floating beta, floating* C, blas_int ldc) noexcept nogil:
    """C (m,n) = alpha * op(A) (m,k) @ op(B) (k,n) + beta * C, all row-major."""
    cdef char ta_c = b'T' if ta == Trans_ else b'N'
    cdef char tb_c = b'T' if tb == Trans_ else b'N'
    if m <= 0 or n <= 0:
        return
    if floating is float:
        sgemm(&tb_c, &ta_c, &n, &m, &k, &alpha, <float*>B, &ldb, <float*>A, &lda, &beta, C, &ldc)
    else:
        dgemm(&tb_c, &ta_c, &n, &m, &k, &alpha, <double*>B, &ldb, <double*>A, &lda, &beta, C, &ldc)


cdef void _axpy(blas_int n, floating alpha, const floating* x, floating* y) noexcept nogil:
    """y += alpha * x."""
    cdef blas_int one = 1
    if floating is float:
        saxpy(&n, &alpha, <float*>x, &one, y, &one)
    else:
        daxpy(&n, &alpha, <double*>x, &one, y, &one)


cdef floating _dot(blas_int n, const floating* x, const floating* y) noexcept nogil:
    """sum(x * y)."""
    cdef blas_int one = 1
    if floating is float:
        return sdot(&n, <float*>x, &one, <float*>y, &one)
    else:
        return ddot(&n, <double*>x, &one, <double*>y, &one)


# ---------------------------------------------------------------- Python twins (tests)

def gemm_memview(bint trans_a, bint trans_b, double alpha, const floating[:, ::1] A,
                 const floating[:, ::1] B, double beta, floating[:, ::1] C_out):
    """C_out = alpha * op(A) @ op(B) + beta * C_out (shapes checked here)."""
    cdef Py_ssize_t m = A.shape[1] if trans_a else A.shape[0]
    cdef Py_ssize_t k = A.shape[0] if trans_a else A.shape[1]
    cdef Py_ssize_t kb = B.shape[1] if trans_b else B.shape[0]
    cdef Py_ssize_t n = B.shape[0] if trans_b else B.shape[1]
    if k != kb or C_out.shape[0] != m or C_out.shape[1] != n:
        raise ValueError("gemm: incompatible shapes")
    if k == 0:
        raise ValueError("gemm: inner dimension must be positive")
    with nogil:
        _gemm(Trans_ if trans_a else NoTrans, Trans_ if trans_b else NoTrans,
              <blas_int>m, <blas_int>n, <blas_int>k, <floating>alpha, &A[0, 0],
              <blas_int>A.shape[1], &B[0, 0], <blas_int>B.shape[1], <floating>beta, &C_out[0, 0],
              <blas_int>C_out.shape[1])
