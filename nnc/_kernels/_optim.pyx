"""Fused optimizer kernels: one pass over the whole flat parameter buffer per step.

Dimension: n, the length of the flat buffers.  p (n,) parameters (updated in place), g (n,)
gradients (read only: the L2 term is fused, never written back), s1/s2 (n,) optimizer state
(updated in place).  The decayed tensors (weights) come first: for i < n_decay the effective
gradient is g[i] + decay * p[i] with decay = alpha / (batch sample-weight sum), set by the caller;
biases (i >= n_decay) are not penalised.  Formulas (scikit-learn's _stochastic_optimizers):

* SGD      v = mu v - lr g;  p += v          (nesterov: p += mu v - lr g with the NEW v);
           momentum 0: p -= lr g and s1 is not touched (may be NULL)
* AdaGrad  s1 += g^2;  p -= lr g / (sqrt(s1) + eps)
* RMSprop  s1 = rho s1 + (1 - rho) g^2;  p -= lr g / (sqrt(s1) + eps)
* Adam     t += 1;  m = b1 m + (1 - b1) g;  v = b2 v + (1 - b2) g^2;
           p -= lr_t m / (sqrt(v) + eps),  lr_t = lr sqrt(1 - b2^t) / (1 - b1^t)

``_optimizer_step`` reads an ``OptimConfig`` (see _optim.pxd), increments cfg.t (the number of
steps taken, for every kind) and, for Adam, computes lr_t from the new t itself (scalar work once
per call), so a compiled epoch loop only updates cfg.decay per batch.  Scalars are computed in
double once per call, then cast to the kernel's type: float32 buffers are updated entirely in
float32 arithmetic.

Build note: sqrt vectorises only without errno semantics; with -fno-math-errno (set by
setup.py) AdaGrad/RMSprop/Adam run 2x (float64) to 3.5x (float32) faster: Adam on 1e4
elements 38 -> 20 us (float64), 25 -> 7 us (float32), measured on the 2-core box.

``_clip_grad_norm`` computes the global L2 norm of g in double and rescales g in place to
max_norm when the norm exceeds it; it returns the norm before clipping (NaN/inf left as is).

Threads: the buffer is split into as many static chunks (jobs run by _parallel._par_run) as
the thread policy gives for n parameters, with cfg.n_threads as the caller's cap (WORK_OPTIM;
one chunk below its threshold, see nnc/_threads.py for the measurement).
"""
from libc.math cimport sqrt, sqrtf, pow

from nnc._kernels._parallel cimport (_par_begin, _par_end, _par_run, _chunk_lo, MAX_JOBS,
                                     WORK_OPTIM)

SGD = OPT_SGD
ADAGRAD = OPT_ADAGRAD
RMSPROP = OPT_RMSPROP
ADAM = OPT_ADAM

def _set_parallel_min(Py_ssize_t n):
    """Change the threading threshold (tests and benchmarks only); returns the old value.
    The threshold is the thread policy's WORK_OPTIM one (nnc/_threads.py has its measurement)."""
    from nnc._kernels import _parallel
    return int(_parallel.set_threshold("optim", max(n, 1)))

# Field names of OptimConfig, in order (``optimizer_step`` takes a dict with exactly these keys).
CONFIG_FIELDS = ("kind", "lr", "momentum", "beta2", "eps", "nesterov", "alpha", "decay",
                 "n_decay", "t", "n_threads")


cdef inline floating _sqrt(floating x) noexcept nogil:
    if floating is float:
        return sqrtf(x)
    else:
        return sqrt(x)


# ---------------------------------------------------------------- one chunk [lo, hi) each
# Each loop is split at n_decay, so the inner bodies have no branch and vectorise.

cdef void _sgd_chunk(floating* p, const floating* g, floating* v, Py_ssize_t lo, Py_ssize_t hi,
                     Py_ssize_t n_decay, floating lr, floating mu, floating decay,
                     bint nesterov) noexcept nogil:
    cdef Py_ssize_t i, mid = min(max(n_decay, lo), hi)
    cdef floating ge, vi
    if mu == 0:
        for i in range(lo, mid):
            p[i] = p[i] - lr * (g[i] + decay * p[i])
        for i in range(mid, hi):
            p[i] = p[i] - lr * g[i]
    elif nesterov:
        for i in range(lo, mid):
            ge = g[i] + decay * p[i]
            vi = mu * v[i] - lr * ge
            v[i] = vi
            p[i] = p[i] + (mu * vi - lr * ge)
        for i in range(mid, hi):
            ge = g[i]
            vi = mu * v[i] - lr * ge
            v[i] = vi
            p[i] = p[i] + (mu * vi - lr * ge)
    else:
        for i in range(lo, mid):
            vi = mu * v[i] - lr * (g[i] + decay * p[i])
            v[i] = vi
            p[i] = p[i] + vi
        for i in range(mid, hi):
            vi = mu * v[i] - lr * g[i]
            v[i] = vi
            p[i] = p[i] + vi


cdef void _adagrad_chunk(floating* p, const floating* g, floating* G, Py_ssize_t lo,
                         Py_ssize_t hi, Py_ssize_t n_decay, floating lr, floating eps,
                         floating decay) noexcept nogil:
    cdef Py_ssize_t i, mid = min(max(n_decay, lo), hi)
    cdef floating ge, Gi
    for i in range(lo, mid):
        ge = g[i] + decay * p[i]
        Gi = G[i] + ge * ge
        G[i] = Gi
        p[i] = p[i] - lr * ge / (_sqrt(Gi) + eps)
    for i in range(mid, hi):
        ge = g[i]
        Gi = G[i] + ge * ge
        G[i] = Gi
        p[i] = p[i] - lr * ge / (_sqrt(Gi) + eps)


cdef void _rmsprop_chunk(floating* p, const floating* g, floating* s, Py_ssize_t lo,
                         Py_ssize_t hi, Py_ssize_t n_decay, floating lr, floating rho,
                         floating one_m_rho, floating eps, floating decay) noexcept nogil:
    cdef Py_ssize_t i, mid = min(max(n_decay, lo), hi)
    cdef floating ge, si
    for i in range(lo, mid):
        ge = g[i] + decay * p[i]
        si = rho * s[i] + one_m_rho * (ge * ge)
        s[i] = si
        p[i] = p[i] - lr * ge / (_sqrt(si) + eps)
    for i in range(mid, hi):
        ge = g[i]
        si = rho * s[i] + one_m_rho * (ge * ge)
        s[i] = si
        p[i] = p[i] - lr * ge / (_sqrt(si) + eps)


cdef void _adam_chunk(floating* p, const floating* g, floating* m, floating* v, Py_ssize_t lo,
                      Py_ssize_t hi, Py_ssize_t n_decay, floating lr_t, floating b1,
                      floating one_m_b1, floating b2, floating one_m_b2, floating eps,
                      floating decay) noexcept nogil:
    cdef Py_ssize_t i, mid = min(max(n_decay, lo), hi)
    cdef floating ge, mi, vi
    for i in range(lo, mid):
        ge = g[i] + decay * p[i]
        mi = b1 * m[i] + one_m_b1 * ge
        vi = b2 * v[i] + one_m_b2 * (ge * ge)
        m[i] = mi
        v[i] = vi
        p[i] = p[i] - lr_t * mi / (_sqrt(vi) + eps)
    for i in range(mid, hi):
        ge = g[i]
        mi = b1 * m[i] + one_m_b1 * ge
        vi = b2 * v[i] + one_m_b2 * (ge * ge)
        m[i] = mi
        v[i] = vi
        p[i] = p[i] - lr_t * mi / (_sqrt(vi) + eps)


cdef inline void _step_chunk(int kind, floating* p, const floating* g, floating* s1,
                             floating* s2, Py_ssize_t lo, Py_ssize_t hi, Py_ssize_t n_decay,
                             floating lr, floating a, floating one_m_a, floating b2,
                             floating one_m_b2, floating eps, floating decay,
                             bint nesterov) noexcept nogil:
    if kind == OPT_SGD:
        _sgd_chunk(p, g, s1, lo, hi, n_decay, lr, a, decay, nesterov)
    elif kind == OPT_ADAGRAD:
        _adagrad_chunk(p, g, s1, lo, hi, n_decay, lr, eps, decay)
    elif kind == OPT_RMSPROP:
        _rmsprop_chunk(p, g, s1, lo, hi, n_decay, lr, a, one_m_a, eps, decay)
    else:
        _adam_chunk(p, g, s1, s2, lo, hi, n_decay, lr, a, one_m_a, b2, one_m_b2, eps, decay)


cdef struct StepJob:
    int kind
    bint dbl
    bint nesterov
    void* p
    const void* g
    void* s1
    void* s2
    Py_ssize_t lo, hi, n_decay
    double lr, a, one_m_a, b2, one_m_b2, eps, decay


cdef void _step_rows(StepJob* j, floating tag) noexcept nogil:
    """Elements [j.lo, j.hi) of one step (`tag` only selects the floating type); the scalars
    are cast once to the kernel's type, as in a serial step."""
    _step_chunk(j.kind, <floating*>j.p, <const floating*>j.g, <floating*>j.s1,
                <floating*>j.s2, j.lo, j.hi, j.n_decay, <floating>j.lr, <floating>j.a,
                <floating>j.one_m_a, <floating>j.b2, <floating>j.one_m_b2, <floating>j.eps,
                <floating>j.decay, j.nesterov)


cdef void _step_job(void* p) noexcept nogil:
    cdef StepJob* j = <StepJob*>p
    if j.dbl:
        _step_rows(j, <double>0)
    else:
        _step_rows(j, <float>0)


cdef void _optimizer_step(OptimConfig* cfg, floating* p, const floating* g, floating* s1,
                          floating* s2, Py_ssize_t n) noexcept nogil:
    """One fused step of cfg.kind over p[0:n] (see the module docstring); cfg.t += 1."""
    cdef double lr = cfg.lr
    cdef Py_ssize_t n_decay = min(max(cfg.n_decay, 0), n)
    cdef StepJob jobs[MAX_JOBS]
    cdef int nt, t
    cfg.t += 1                           # steps taken, for every kind; only Adam reads it
    if cfg.kind == OPT_ADAM:
        lr = cfg.lr * sqrt(1.0 - pow(cfg.beta2, <double>cfg.t)) / (1.0 - pow(cfg.momentum,
                                                                          <double>cfg.t))
    if n <= 0:
        return
    nt = _par_begin(cfg.n_threads, WORK_OPTIM, <double>n)
    for t in range(nt):
        jobs[t].kind = cfg.kind
        jobs[t].dbl = floating is double
        jobs[t].nesterov = cfg.nesterov != 0
        jobs[t].p = p
        jobs[t].g = g
        jobs[t].s1 = s1
        jobs[t].s2 = s2
        jobs[t].lo = _chunk_lo(n, nt, t)
        jobs[t].hi = _chunk_lo(n, nt, t + 1)
        jobs[t].n_decay = n_decay
        jobs[t].lr = lr
        jobs[t].a = cfg.momentum
        jobs[t].one_m_a = 1.0 - cfg.momentum
        jobs[t].b2 = cfg.beta2
        jobs[t].one_m_b2 = 1.0 - cfg.beta2
        jobs[t].eps = cfg.eps
        jobs[t].decay = cfg.decay
    _par_run(nt, _step_job, jobs, sizeof(StepJob))
    _par_end(nt)


cdef double _clip_grad_norm(floating* g, Py_ssize_t n, double max_norm) noexcept nogil:
    """norm = ||g||_2 (double); g *= max_norm / norm when norm > max_norm; return norm."""
    cdef Py_ssize_t i
    cdef double acc = 0.0, norm
    cdef floating scale
    for i in range(n):
        acc += <double>g[i] * <double>g[i]
    norm = sqrt(acc)
    if norm > max_norm:
        scale = <floating>(max_norm / norm)
        for i in range(n):
            g[i] = g[i] * scale
    return norm


# ---------------------------------------------------------------- Python twins

def optimizer_step(dict config, floating[::1] p_out, const floating[::1] g,
                   floating[::1] s1_out, floating[::1] s2_out):
    """One fused step in place on p_out (and the state s1_out, s2_out); returns the new t.

    config: dict with exactly the OptimConfig fields (CONFIG_FIELDS).  s1_out: SGD velocity
    (None allowed when momentum == 0), AdaGrad/RMSprop accumulator, Adam m; s2_out: Adam v
    (None otherwise).  All buffers must have p_out's length; 0 <= n_decay <= n."""
    cdef OptimConfig cfg
    cdef Py_ssize_t n = p_out.shape[0]
    cdef floating* s1_ptr = NULL
    cdef floating* s2_ptr = NULL
    if len(config) != len(CONFIG_FIELDS):
        raise ValueError(f"optimizer_step: config needs exactly the keys {CONFIG_FIELDS}")
    cfg = config
    if cfg.kind < OPT_SGD or cfg.kind > OPT_ADAM:
        raise ValueError(f"optimizer_step: unknown optimizer kind {cfg.kind}")
    if g.shape[0] != n:
        raise ValueError(f"optimizer_step: grads have length {g.shape[0]}, params {n}")
    if cfg.n_decay < 0 or cfg.n_decay > n:
        raise ValueError(f"optimizer_step: n_decay={cfg.n_decay} is outside [0, {n}]")
    if cfg.t < 0:
        raise ValueError(f"optimizer_step: t must be >= 0, got {cfg.t}")
    if cfg.kind == OPT_ADAM and (cfg.momentum >= 1.0 or cfg.momentum < 0.0):
        raise ValueError("optimizer_step: Adam needs 0 <= beta_1 < 1")
    if cfg.n_threads < 1:
        cfg.n_threads = 1
    if not (cfg.kind == OPT_SGD and cfg.momentum == 0.0):
        if s1_out is None or s1_out.shape[0] != n:
            raise ValueError(f"optimizer_step: state s1_out must have length {n}")
    if cfg.kind == OPT_ADAM:
        if s2_out is None or s2_out.shape[0] != n:
            raise ValueError(f"optimizer_step: state s2_out must have length {n}")
    if n == 0:
        return cfg.t + 1
    if s1_out is not None and s1_out.shape[0] == n:
        s1_ptr = &s1_out[0]
    if s2_out is not None and s2_out.shape[0] == n:
        s2_ptr = &s2_out[0]
    with nogil:
        _optimizer_step(&cfg, &p_out[0], &g[0], s1_ptr, s2_ptr, n)
    return cfg.t


def clip_grad_norm(floating[::1] g_out, double max_norm):
    """Rescale g_out in place to L2 norm max_norm when its norm is larger; return the norm."""
    if not (max_norm > 0.0):
        raise ValueError(f"clip_grad_norm: max_norm must be positive, got {max_norm}")
    if g_out.shape[0] == 0:
        return 0.0
    cdef double norm
    with nogil:
        norm = _clip_grad_norm(&g_out[0], g_out.shape[0], max_norm)
    return norm
