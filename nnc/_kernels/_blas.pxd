# Fused float/double wrappers over scipy.linalg.cython_blas (nothing is linked: the
# function pointers are bound when scipy's module is imported).
# Row-major convention: all matrices are C-contiguous; _gemm swaps operands internally.

ctypedef fused floating:
    float
    double

# Integer alias for BLAS sizes (ready for an ILP64 BLAS: change in one place).
ctypedef int blas_int

cdef enum Trans:
    NoTrans = 0
    Trans_ = 1

cdef void _gemm(Trans ta, Trans tb, blas_int m, blas_int n, blas_int k,
                floating alpha, const floating* A, blas_int lda,
                const floating* B, blas_int ldb,
                floating beta, floating* C, blas_int ldc) noexcept nogil

cdef void _axpy(blas_int n, floating alpha, const floating* x, floating* y) noexcept nogil
cdef floating _dot(blas_int n, const floating* x, const floating* y) noexcept nogil
