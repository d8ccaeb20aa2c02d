# Pooling kernels (see _pool.pyx for the buffer layouts).  NC = N * C planes.
from nnc._kernels._blas cimport floating

cdef void _maxpool2d_forward(const floating* X, floating* Y, int* arg, Py_ssize_t NC,
                             Py_ssize_t H, Py_ssize_t W, Py_ssize_t KH, Py_ssize_t KW,
                             Py_ssize_t SH, Py_ssize_t SW, Py_ssize_t PH, Py_ssize_t PW,
                             Py_ssize_t OH, Py_ssize_t OW, int n_threads) noexcept nogil
cdef void _maxpool2d_backward(const floating* dY, const int* arg, floating* dX, Py_ssize_t NC,
                              Py_ssize_t HW, Py_ssize_t P, int n_threads) noexcept nogil
cdef void _avgpool2d_forward(const floating* X, floating* Y, Py_ssize_t NC, Py_ssize_t H,
                             Py_ssize_t W, Py_ssize_t KH, Py_ssize_t KW, Py_ssize_t SH,
                             Py_ssize_t SW, Py_ssize_t PH, Py_ssize_t PW, Py_ssize_t OH,
                             Py_ssize_t OW, bint include_pad, int n_threads) noexcept nogil
cdef void _avgpool2d_backward(const floating* dY, floating* dX, Py_ssize_t NC, Py_ssize_t H,
                              Py_ssize_t W, Py_ssize_t KH, Py_ssize_t KW, Py_ssize_t SH,
                              Py_ssize_t SW, Py_ssize_t PH, Py_ssize_t PW, Py_ssize_t OH,
                              Py_ssize_t OW, bint include_pad, int n_threads) noexcept nogil
cdef void _global_pool_forward(const floating* X, floating* Y, int* arg, Py_ssize_t N,
                               Py_ssize_t S, Py_ssize_t C, bint channels_last, bint is_max,
                               const unsigned char* mask, int n_threads) noexcept nogil
cdef void _global_pool_backward(const floating* dY, const int* arg, floating* dX, Py_ssize_t N,
                                Py_ssize_t S, Py_ssize_t C, bint channels_last, bint is_max,
                                const unsigned char* mask, int n_threads) noexcept nogil
