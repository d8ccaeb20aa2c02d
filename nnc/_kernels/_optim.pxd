# Fused optimizer steps over one flat parameter buffer (see _optim.pyx for the design note).
from nnc._kernels._blas cimport floating

cdef enum OptimKind:
    OPT_SGD = 0
    OPT_ADAGRAD = 1
    OPT_RMSPROP = 2
    OPT_ADAM = 3

# Hyperparameters of one step.  Scalars are stored in double and cast ONCE to the kernel's type
# before the loop (float32 kernels compute in float32).
cdef struct OptimConfig:
    int kind             # OptimKind
    double lr            # base learning rate (Adam: before bias correction)
    double momentum      # SGD momentum | RMSprop rho | Adam beta_1
    double beta2         # Adam beta_2 (unused otherwise)
    double eps           # AdaGrad / RMSprop / Adam epsilon
    int nesterov         # SGD only
    double alpha         # L2 strength (informational: compiled loops set decay = alpha / sw_sum)
    double decay         # L2 coefficient of this step: g_eff[i] = g[i] + decay * p[i], i < n_decay
    Py_ssize_t n_decay   # length of the decayed prefix (weights); biases follow, not penalised
    long long t          # steps taken so far; _optimizer_step increments it (Adam uses it)
    int n_threads        # OpenMP threads for very large buffers (resolved in Python; 1 = serial)

# One fused in-place update of p (n,) with gradient g; s1/s2 are the state arrays (n,):
# SGD s1 = velocity (may be NULL when momentum == 0), AdaGrad s1 = sum of g^2,
# RMSprop s1 = running mean of g^2, Adam s1 = m, s2 = v.  Increments cfg.t first; Adam then
# computes lr_t = lr sqrt(1 - beta2^t) / (1 - beta1^t) itself from the new t.
cdef void _optimizer_step(OptimConfig* cfg, floating* p, const floating* g, floating* s1,
                          floating* s2, Py_ssize_t n) noexcept nogil

# Global L2 norm of g (n,) (accumulated in double); g *= max_norm / norm when norm > max_norm.
cdef double _clip_grad_norm(floating* g, Py_ssize_t n, double max_norm) noexcept nogil
