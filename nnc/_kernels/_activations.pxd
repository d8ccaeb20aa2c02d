from nnc._kernels._blas cimport floating

cdef enum Activation:
    ACT_IDENTITY = 0
    ACT_LOGISTIC = 1
    ACT_TANH = 2
    ACT_RELU = 3
    ACT_LEAKY_RELU = 4

cdef void _activation_forward(int act, floating* Z, Py_ssize_t n, floating slope) noexcept nogil
cdef void _activation_backward(int act, const floating* Y, floating* dZ, Py_ssize_t n,
                               floating slope) noexcept nogil
