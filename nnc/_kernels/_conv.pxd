# Convolution kernels (see _conv.pyx for the buffer layouts).
from nnc._kernels._blas cimport floating

cdef void _im2col(const floating* X, floating* cols, Py_ssize_t N,
                  Py_ssize_t C, Py_ssize_t H, Py_ssize_t W, Py_ssize_t KH, Py_ssize_t KW,
                  Py_ssize_t SH, Py_ssize_t SW, Py_ssize_t PH, Py_ssize_t PW,
                  Py_ssize_t OH, Py_ssize_t OW, int n_threads) noexcept nogil
cdef void _col2im(const floating* cols, floating* dX, Py_ssize_t N,
                  Py_ssize_t C, Py_ssize_t H, Py_ssize_t W, Py_ssize_t KH, Py_ssize_t KW,
                  Py_ssize_t SH, Py_ssize_t SW, Py_ssize_t PH, Py_ssize_t PW,
                  Py_ssize_t OH, Py_ssize_t OW, int n_threads) noexcept nogil
cdef void _conv2d_forward(const floating* X, const floating* Wt, const floating* b,
                          floating* cols, floating* tmp, floating* Y,
                          Py_ssize_t N, Py_ssize_t Nc, Py_ssize_t C, Py_ssize_t H, Py_ssize_t W,
                          Py_ssize_t F, Py_ssize_t KH, Py_ssize_t KW, Py_ssize_t SH, Py_ssize_t SW,
                          Py_ssize_t PH, Py_ssize_t PW, Py_ssize_t OH, Py_ssize_t OW,
                          int n_threads) noexcept nogil
cdef void _conv2d_backward(const floating* X, const floating* Wt, const floating* dY,
                           floating* cols, floating* tmp, floating* dW, floating* db,
                           floating* dX, bint cols_ready,
                           Py_ssize_t N, Py_ssize_t Nc, Py_ssize_t C, Py_ssize_t H, Py_ssize_t W,
                           Py_ssize_t F, Py_ssize_t KH, Py_ssize_t KW, Py_ssize_t SH, Py_ssize_t SW,
                           Py_ssize_t PH, Py_ssize_t PW, Py_ssize_t OH, Py_ssize_t OW,
                           int n_threads) noexcept nogil
