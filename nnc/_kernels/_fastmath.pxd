# Vectorised exp, tanh and logistic over arrays, in place (design note and error bounds in
# _fastmath.pyx).  Each array kernel is dispatched at load time to the best SIMD clone the CPU runs.
from nnc._kernels._blas cimport floating

cdef void _exp_array_d "nnc_exp_array_d"(double* Z, Py_ssize_t n) noexcept nogil
cdef void _exp_array_s "nnc_exp_array_s"(float* Z, Py_ssize_t n) noexcept nogil
cdef void _tanh_array_d "nnc_tanh_array_d"(double* Z, Py_ssize_t n) noexcept nogil
cdef void _tanh_array_s "nnc_tanh_array_s"(float* Z, Py_ssize_t n) noexcept nogil
cdef void _sigmoid_array_d "nnc_sigmoid_array_d"(double* Z, Py_ssize_t n) noexcept nogil
cdef void _sigmoid_array_s "nnc_sigmoid_array_s"(float* Z, Py_ssize_t n) noexcept nogil


cdef inline void _exp_array(floating* Z, Py_ssize_t n) noexcept nogil:
    """Z <- exp(Z), n elements."""
    if floating is float:
        _exp_array_s(Z, n)
    else:
        _exp_array_d(Z, n)


cdef inline void _tanh_array(floating* Z, Py_ssize_t n) noexcept nogil:
    """Z <- tanh(Z), n elements."""
    if floating is float:
        _tanh_array_s(Z, n)
    else:
        _tanh_array_d(Z, n)


cdef inline void _sigmoid_array(floating* Z, Py_ssize_t n) noexcept nogil:
    """Z <- 1 / (1 + exp(-Z)), n elements."""
    if floating is float:
        _sigmoid_array_s(Z, n)
    else:
        _sigmoid_array_d(Z, n)
