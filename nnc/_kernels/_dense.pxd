from nnc._kernels._blas cimport floating

cdef void _dense_forward(const floating* X, const floating* W, const floating* b,
                         floating* Y_out, Py_ssize_t N, Py_ssize_t F, Py_ssize_t U) noexcept nogil
cdef void _dense_backward(const floating* X, const floating* W, const floating* dY,
                          floating* dW_out, floating* db_out, floating* dX_out,
                          Py_ssize_t N, Py_ssize_t F, Py_ssize_t U) noexcept nogil
