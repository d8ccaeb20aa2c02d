# Fused loss + logit-gradient kernels and prediction links (see _losses.pyx for the design note).
from nnc._kernels._blas cimport floating

cdef enum LossKind:
    LOSS_MSE = 0
    LOSS_BCE = 1
    LOSS_SOFTMAX_CE = 2
    LOSS_POISSON = 3

# Returns sum_i sw_i * loss_i / sw_sum (double) and writes dZ_out = sw_i * dloss_i/dz / sw_sum.
# Y (N, K) targets for mse/bce/poisson (NULL for softmax CE); labels (N,) int32 in [0, K) for
# softmax CE only (NOT checked here: the caller validates); sw NULL means unit weights.
cdef double _loss_gradient(int loss, const floating* Z, const floating* Y, const int* labels,
                           const floating* sw, double sw_sum, floating* dZ_out,
                           Py_ssize_t N, Py_ssize_t K) noexcept nogil

cdef void _softmax_inplace(floating* Z, Py_ssize_t N, Py_ssize_t K) noexcept nogil
cdef void _exp_inplace(floating* Z, Py_ssize_t n) noexcept nogil
