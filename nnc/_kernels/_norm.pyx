"""Normalization kernels: LayerNorm over the trailing values of each row, BatchNorm over the
samples and positions of each channel.  Forward saves the statistics backward needs (mean, rstd);
backward is one fused pass pair per row / channel.

Dimensions: R rows, D values normalised together (LayerNorm: R = samples x leading positions,
D = prod(normalized_shape)).  N samples, C channels, S positions per channel (BatchNorm: S = 1 for
(N, F), L for (N, C, L), H W for (N, C, H, W)); M = N S values per channel.

Numerics.  Sums of a row / channel are accumulated in double whatever the data type, in
independent lanes (nnc/_kernels/_lanes.pxd: gcc vectorises the lanes; one running sum would be a
serial dependency chain), so float32 statistics are as good as float64 ones for any realistic
size.  LayerNorm takes two independent sums over its row (cache resident): the plain sum (the
mean) and the sum of squares shifted by the row's first value k, var = E[(x-k)^2] - (mean-k)^2;
as k is one of the row's values, (mean-k)^2 <= D var, so cancellation costs at most a factor D
of double rounding (1e-14 relative for D = 64).  BatchNorm
makes ONE pass over each channel (values shifted by the channel's first value, so the one-pass
variance E[(x-K)^2] - E[x-K]^2 loses nothing to cancellation unless the mean lies many standard
deviations from a data value), then one pass to normalise.  Element-wise passes compute in the
data type: y = (x - mean) * (gamma rstd) + beta (centring first keeps large means exact).

LayerNorm speed.  Its rows are short (64 values is typical), so each row's latency counts: the
row kernels are compiled per CPU target (gcc target_clones: AVX-512, AVX2 + FMA, baseline SSE2;
the loader picks one, as in _fastmath.pyx), the forward's two sums do not wait on each other,
and backward takes its two row sums (of g = dy gamma and of g (x - mean)) in two independent
loops, then writes dx in one pass; dgamma / dbeta are column sums over the job's rows.  One loop
per sum because gcc 12 leaves a loop with two sums of float32 values widened to double scalar.
Measured on (4096, 64) float32, 1 thread, AMD EPYC (Zen 4, AVX-512 clone), µs per call:
forward 216 -> 133, backward 327 -> 174 (before: two dependent passes in the forward, four
passes in the backward, baseline SSE2 code only).  A 16-lane version of the sums was slower
(gcc kept its 32 accumulators scalar and spilled them).  Layer step against PyTorch:
``python benchmarks/bench_layers.py --only LayerNorm --repeat 30 --number 50``.

Buffers (C-contiguous, caller supplied; gamma / beta are ones / zeros for non-affine layers):
  layernorm_forward   X (R, D) -> Y_out (R, D), mean_out, rstd_out (R,)
  layernorm_backward  dY, X, mean, rstd, gamma -> dX_out (R, D) (unless need_dX is False),
                      dgamma_out, dbeta_out (D,) (sums over rows); acc_ws (n_threads, 2, D):
                      per-thread partial sums when the rows are split between threads
  batchnorm_forward   X (N, C, S) -> Y_out; training: batch statistics into mean_out / rstd_out
                      (C,) and the running statistics updated in place with `momentum`
                      (running = (1 - momentum) running + momentum batch, the variance unbiased:
                      M / (M - 1); with M = 1 the running variance is left as it is); prediction:
                      mean_out / rstd_out from the running statistics.  acc_ws: (2, C) doubles
  batchnorm_backward  dY, X, mean, rstd, gamma -> dX_out, dgamma_out, dbeta_out (C,) and the
                      gradients of the running statistics (C,): zero after a training forward
                      (the output does not depend on them), the derivatives of the prediction
                      output otherwise.  coef_ws: (3, C) in the data type, acc_ws (2, C) doubles.

Threads: LayerNorm splits rows, BatchNorm channels (or, for S = 1, column blocks) into one static
share per job, with the thread count the thread policy gives for the pass's element count
(WORK_ELEMENTWISE, see nnc/_threads.py; serial below its threshold).
"""
from libc.math cimport sqrt
from libc.string cimport memset

from nnc._kernels._blas cimport floating
from nnc._kernels._parallel cimport (_par_begin, _par_end, _par_run, MAX_JOBS,
                                     WORK_ELEMENTWISE)
from nnc._kernels._lanes cimport (_sum, _sum_sq_dev, _sum_and_sq, _dot_and_sum, _sum_prod,
                                  _sum_prod_dev)

cdef inline int _threads_for(int n_threads, Py_ssize_t n_items, Py_ssize_t work) noexcept nogil:
    """The thread policy's count (at most one per item) for a pass touching `work` elements
    (WORK_ELEMENTWISE; 1 below its threshold).  Pass the result to _par_end when done."""
    if n_items < 2 or n_threads < 2:
        return 1
    return _par_begin(n_threads if n_threads < n_items else <int>n_items, WORK_ELEMENTWISE,
                      <double>work)


# ---------------------------------------------------------------- passes as jobs
# One struct describes a job of any of the four passes (a static share [lo, hi) of the rows or
# channels); _par_run runs nt of them at once (nt == 1: on the calling thread).

cdef enum:
    LN_FWD = 0
    LN_BWD = 1
    BN_FWD = 2
    BN_BWD = 3


cdef struct NormJob:
    int op
    bint dbl
    const void* X
    const void* dY
    const void* gamma
    const void* beta
    const void* mean
    const void* rstd
    void* Y              # Y (forward) or dX (backward)
    void* dgamma
    void* dbeta
    void* mean_out
    void* rstd_out
    void* rm             # running mean / var (BN forward) or their gradients (BN backward)
    void* rv
    void* coef
    double* acc
    Py_ssize_t lo, hi, N, C, S, D
    bint flag            # BN: training (forward) / batch_stats (backward)
    bint need_dX
    double momentum, eps


cdef void _norm_rows(NormJob* j, floating tag) noexcept nogil:
    """Job j (`tag` only selects the floating type)."""
    if j.op == LN_FWD:
        _ln_forward_rows(<const floating*>j.X, <floating*>j.Y, <const floating*>j.gamma,
                         <const floating*>j.beta, <floating*>j.mean_out, <floating*>j.rstd_out,
                         j.lo, j.hi, j.D, j.eps)
    elif j.op == LN_BWD:
        _ln_backward_rows(<const floating*>j.dY, <const floating*>j.X, <const floating*>j.mean,
                          <const floating*>j.rstd, <const floating*>j.gamma, <floating*>j.Y,
                          <floating*>j.dgamma, <floating*>j.dbeta, j.lo, j.hi, j.D, j.need_dX)
    elif j.op == BN_FWD:
        if j.S == 1:
            _bn_forward_cols(<const floating*>j.X, <floating*>j.Y, <const floating*>j.gamma,
                             <const floating*>j.beta, <floating*>j.rm, <floating*>j.rv,
                             <floating*>j.mean_out, <floating*>j.rstd_out, j.acc, j.lo, j.hi,
                             j.N, j.C, j.flag, j.momentum, j.eps)
        else:
            _bn_forward_channels(<const floating*>j.X, <floating*>j.Y, <const floating*>j.gamma,
                                 <const floating*>j.beta, <floating*>j.rm, <floating*>j.rv,
                                 <floating*>j.mean_out, <floating*>j.rstd_out, j.lo, j.hi, j.N,
                                 j.C, j.S, j.flag, j.momentum, j.eps)
    elif j.S == 1:
        _bn_backward_cols(<const floating*>j.dY, <const floating*>j.X, <const floating*>j.mean,
                          <const floating*>j.rstd, <const floating*>j.gamma, <floating*>j.Y,
                          <floating*>j.dgamma, <floating*>j.dbeta, <floating*>j.rm,
                          <floating*>j.rv, <floating*>j.coef, j.acc, j.lo, j.hi, j.N, j.C,
                          j.flag, j.need_dX)
    else:
        _bn_backward_channels(<const floating*>j.dY, <const floating*>j.X,
                              <const floating*>j.mean, <const floating*>j.rstd,
                              <const floating*>j.gamma, <floating*>j.Y, <floating*>j.dgamma,
                              <floating*>j.dbeta, <floating*>j.rm, <floating*>j.rv, j.lo, j.hi,
                              j.N, j.C, j.S, j.flag, j.need_dX)


cdef void _norm_job(void* p) noexcept nogil:
    cdef NormJob* j = <NormJob*>p
    if j.dbl:
        _norm_rows(j, <double>0)
    else:
        _norm_rows(j, <float>0)


cdef void _run_norm_jobs(NormJob* proto, NormJob* jobs, Py_ssize_t n_items, int nt,
                         floating tag) noexcept nogil:
    """jobs[t] = proto with the static share t of range(n_items); run them; _par_end(nt)."""
    cdef int t
    proto.dbl = floating is double
    for t in range(nt):
        jobs[t] = proto[0]
        jobs[t].lo = _lo(n_items, nt, t)
        jobs[t].hi = _lo(n_items, nt, t + 1)
        if proto.op == LN_BWD and nt > 1:
            # per-job partial sums of dgamma / dbeta in the (threads, 2, D) scratch (coef)
            jobs[t].dgamma = <floating*>proto.coef + 2 * t * proto.D
            jobs[t].dbeta = <floating*>proto.coef + (2 * t + 1) * proto.D
    _par_run(nt, _norm_job, jobs, sizeof(NormJob))
    _par_end(nt)


cdef inline Py_ssize_t _lo(Py_ssize_t n, int nt, int t) noexcept nogil:
    """Start of chunk t of nt static chunks of range(n)."""
    return (n * t) // nt


# ---------------------------------------------------------------- LayerNorm

cdef inline void _ln_forward_rows_impl(const floating* X, floating* Y, const floating* gamma,
                                       const floating* beta, floating* mean_out,
                                       floating* rstd_out, Py_ssize_t r0, Py_ssize_t r1,
                                       Py_ssize_t D, double eps) noexcept nogil:
    """Rows [r0, r1): mean, rstd (two independent sums in double, see the design note), then
    y = (x - mean) (rstd gamma) + beta."""
    cdef Py_ssize_t r, j
    cdef double k, mean, var, inv_D = 1.0 / <double>D
    cdef floating m, s
    cdef const floating* x
    cdef floating* y
    for r in range(r0, r1):
        x = X + r * D
        y = Y + r * D
        # the two sums do not depend on each other (the second is shifted by the row's first
        # value, not by the mean), so their chains of adds overlap
        k = x[0]
        mean = _sum(x, D) * inv_D
        var = _sum_sq_dev(x, D, k) * inv_D - (mean - k) * (mean - k)
        if var < 0:
            var = 0
        m = <floating>mean
        s = <floating>(1.0 / sqrt(var + eps))
        mean_out[r] = m
        rstd_out[r] = s
        for j in range(D):
            y[j] = (x[j] - m) * (s * gamma[j]) + beta[j]


cdef inline void _ln_backward_rows_impl(const floating* dY, const floating* X,
                                        const floating* mean, const floating* rstd,
                                        const floating* gamma, floating* dX, floating* dgamma,
                                        floating* dbeta, Py_ssize_t r0, Py_ssize_t r1,
                                        Py_ssize_t D, bint need_dX) noexcept nogil:
    """Rows [r0, r1): dgamma += dy xhat, dbeta += dy (into the caller's accumulators), and
    dx = rstd (g - mean(g) - xhat mean(g xhat)) with g = dy gamma, xhat = (x - mean) rstd."""
    cdef Py_ssize_t r, j
    cdef double sg, sgx, inv_D = 1.0 / <double>D
    cdef floating m, s, k2, k3
    cdef const floating* x
    cdef const floating* dy
    cdef floating* dx
    for r in range(r0, r1):
        x = X + r * D
        dy = dY + r * D
        m = mean[r]
        s = rstd[r]
        for j in range(D):
            dgamma[j] += dy[j] * ((x[j] - m) * s)
            dbeta[j] += dy[j]
        if not need_dX:
            continue
        dx = dX + r * D
        sg = _sum_prod(dy, gamma, D)
        sgx = _sum_prod_dev(dy, gamma, x, D, <double>m)
        # dx = s g - s^3 (x - m) sgx / D - s sg / D
        k2 = <floating>(-(<double>s * s * s) * sgx * inv_D)
        k3 = <floating>(-<double>s * sg * inv_D)
        for j in range(D):
            dx[j] = s * (dy[j] * gamma[j]) + k2 * (x[j] - m) + k3


# The row kernels per data type, one clone per CPU target (gcc >= 12, x86-64 Linux; an ifunc
# resolver picks at load time; CFLAGS=-DNNC_NO_CLONES keeps the baseline only); flatten inlines
# the fused implementation and the lane sums into each clone.
cdef extern from *:
    """
    #if defined(__GNUC__) && !defined(__clang__) && __GNUC__ >= 12 && defined(__x86_64__) \
        && defined(__linux__) && !defined(NNC_NO_CLONES)
    #define NNC_NORM_CLONES __attribute__((flatten, \
        target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
    #elif defined(__GNUC__)
    #define NNC_NORM_CLONES __attribute__((flatten))
    #else
    #define NNC_NORM_CLONES
    #endif
    static void nnc_ln_forward_rows_s(const float *, float *, const float *, const float *,
        float *, float *, Py_ssize_t, Py_ssize_t, Py_ssize_t, double) NNC_NORM_CLONES;
    static void nnc_ln_forward_rows_d(const double *, double *, const double *, const double *,
        double *, double *, Py_ssize_t, Py_ssize_t, Py_ssize_t, double) NNC_NORM_CLONES;
    static void nnc_ln_backward_rows_s(const float *, const float *, const float *,
        const float *, const float *, float *, float *, float *, Py_ssize_t, Py_ssize_t,
        Py_ssize_t, int) NNC_NORM_CLONES;
    static void nnc_ln_backward_rows_d(const double *, const double *, const double *,
        const double *, const double *, double *, double *, double *, Py_ssize_t, Py_ssize_t,
        Py_ssize_t, int) NNC_NORM_CLONES;
    """


cdef void _ln_forward_rows_s "nnc_ln_forward_rows_s"(
        const float* X, float* Y, const float* gamma, const float* beta, float* mean_out,
        float* rstd_out, Py_ssize_t r0, Py_ssize_t r1, Py_ssize_t D, double eps) noexcept nogil:
    _ln_forward_rows_impl(X, Y, gamma, beta, mean_out, rstd_out, r0, r1, D, eps)


cdef void _ln_forward_rows_d "nnc_ln_forward_rows_d"(
        const double* X, double* Y, const double* gamma, const double* beta, double* mean_out,
        double* rstd_out, Py_ssize_t r0, Py_ssize_t r1, Py_ssize_t D, double eps) noexcept nogil:
    _ln_forward_rows_impl(X, Y, gamma, beta, mean_out, rstd_out, r0, r1, D, eps)


cdef void _ln_backward_rows_s "nnc_ln_backward_rows_s"(
        const float* dY, const float* X, const float* mean, const float* rstd,
        const float* gamma, float* dX, float* dgamma, float* dbeta, Py_ssize_t r0,
        Py_ssize_t r1, Py_ssize_t D, bint need_dX) noexcept nogil:
    _ln_backward_rows_impl(dY, X, mean, rstd, gamma, dX, dgamma, dbeta, r0, r1, D, need_dX)


cdef void _ln_backward_rows_d "nnc_ln_backward_rows_d"(
        const double* dY, const double* X, const double* mean, const double* rstd,
        const double* gamma, double* dX, double* dgamma, double* dbeta, Py_ssize_t r0,
        Py_ssize_t r1, Py_ssize_t D, bint need_dX) noexcept nogil:
    _ln_backward_rows_impl(dY, X, mean, rstd, gamma, dX, dgamma, dbeta, r0, r1, D, need_dX)


cdef inline void _ln_forward_rows(const floating* X, floating* Y, const floating* gamma,
                                  const floating* beta, floating* mean_out, floating* rstd_out,
                                  Py_ssize_t r0, Py_ssize_t r1, Py_ssize_t D,
                                  double eps) noexcept nogil:
    if floating is float:
        _ln_forward_rows_s(X, Y, gamma, beta, mean_out, rstd_out, r0, r1, D, eps)
    else:
        _ln_forward_rows_d(X, Y, gamma, beta, mean_out, rstd_out, r0, r1, D, eps)


cdef inline void _ln_backward_rows(const floating* dY, const floating* X, const floating* mean,
                                   const floating* rstd, const floating* gamma, floating* dX,
                                   floating* dgamma, floating* dbeta, Py_ssize_t r0,
                                   Py_ssize_t r1, Py_ssize_t D, bint need_dX) noexcept nogil:
    if floating is float:
        _ln_backward_rows_s(dY, X, mean, rstd, gamma, dX, dgamma, dbeta, r0, r1, D, need_dX)
    else:
        _ln_backward_rows_d(dY, X, mean, rstd, gamma, dX, dgamma, dbeta, r0, r1, D, need_dX)


cdef void _layernorm_forward(const floating* X, floating* Y, const floating* gamma,
                             const floating* beta, floating* mean_out, floating* rstd_out,
                             Py_ssize_t R, Py_ssize_t D, double eps, int n_threads) noexcept nogil:
    cdef NormJob proto
    cdef NormJob jobs[MAX_JOBS]
    proto.op = LN_FWD
    proto.X = X
    proto.Y = Y
    proto.gamma = gamma
    proto.beta = beta
    proto.mean_out = mean_out
    proto.rstd_out = rstd_out
    proto.D = D
    proto.eps = eps
    _run_norm_jobs(&proto, jobs, R, _threads_for(n_threads, R, R * D), <floating>0)


cdef void _layernorm_backward(const floating* dY, const floating* X, const floating* mean,
                              const floating* rstd, const floating* gamma, floating* dX,
                              floating* dgamma, floating* dbeta, floating* acc, Py_ssize_t R,
                              Py_ssize_t D, bint need_dX, int n_threads,
                              int acc_rows) noexcept nogil:
    """acc: (acc_rows, 2, D) per-thread partial sums of dgamma / dbeta when rows are split."""
    cdef int t, nt = _threads_for(n_threads if n_threads < acc_rows else acc_rows, R, R * D)
    cdef Py_ssize_t j
    cdef NormJob proto
    cdef NormJob jobs[MAX_JOBS]
    memset(dgamma, 0, D * sizeof(floating))
    memset(dbeta, 0, D * sizeof(floating))
    if nt > 1:
        memset(acc, 0, nt * 2 * D * sizeof(floating))
    proto.op = LN_BWD
    proto.dY = dY
    proto.X = X
    proto.mean = mean
    proto.rstd = rstd
    proto.gamma = gamma
    proto.Y = dX
    proto.dgamma = dgamma
    proto.dbeta = dbeta
    proto.coef = acc
    proto.D = D
    proto.need_dX = need_dX
    _run_norm_jobs(&proto, jobs, R, nt, <floating>0)
    if nt > 1:
        for t in range(nt):
            for j in range(D):
                dgamma[j] += acc[2 * t * D + j]
                dbeta[j] += acc[(2 * t + 1) * D + j]


# ---------------------------------------------------------------- BatchNorm, S > 1 (per channel)

cdef inline void _bn_channel_moments(const floating* X, Py_ssize_t c, Py_ssize_t N,
                                     Py_ssize_t C, Py_ssize_t S, double* mean,
                                     double* var) noexcept nogil:
    """Mean and biased variance of channel c: one shifted pass in double."""
    cdef Py_ssize_t n
    cdef double k = X[c * S], s = 0, q = 0, M = <double>(N * S), ms
    for n in range(N):
        _sum_and_sq(X + (n * C + c) * S, S, k, &s, &q)
    ms = s / M
    mean[0] = k + ms
    var[0] = q / M - ms * ms
    if var[0] < 0:
        var[0] = 0


cdef inline void _bn_running(floating* running_mean, floating* running_var, Py_ssize_t c,
                             double mean, double var, Py_ssize_t M, double momentum) noexcept nogil:
    """running = (1 - momentum) running + momentum batch (unbiased variance; none for M = 1)."""
    running_mean[c] = <floating>((1.0 - momentum) * running_mean[c] + momentum * mean)
    if M > 1:
        running_var[c] = <floating>((1.0 - momentum) * running_var[c]
                                    + momentum * var * (<double>M / <double>(M - 1)))


cdef void _bn_forward_channels(const floating* X, floating* Y, const floating* gamma,
                               const floating* beta, floating* running_mean,
                               floating* running_var, floating* mean_out, floating* rstd_out,
                               Py_ssize_t c0, Py_ssize_t c1, Py_ssize_t N, Py_ssize_t C,
                               Py_ssize_t S, bint training, double momentum,
                               double eps) noexcept nogil:
    cdef Py_ssize_t c, n, j
    cdef double mean, var
    cdef floating m, a, b
    cdef const floating* x
    cdef floating* y
    for c in range(c0, c1):
        if training:
            _bn_channel_moments(X, c, N, C, S, &mean, &var)
            _bn_running(running_mean, running_var, c, mean, var, N * S, momentum)
        else:
            mean = running_mean[c]
            var = running_var[c]
        m = <floating>mean
        mean_out[c] = m
        rstd_out[c] = <floating>(1.0 / sqrt(var + eps))
        a = gamma[c] * rstd_out[c]
        b = beta[c]
        for n in range(N):
            x = X + (n * C + c) * S
            y = Y + (n * C + c) * S
            for j in range(S):
                y[j] = (x[j] - m) * a + b


cdef void _bn_backward_channels(const floating* dY, const floating* X, const floating* mean,
                                const floating* rstd, const floating* gamma, floating* dX,
                                floating* dgamma, floating* dbeta, floating* drm, floating* drv,
                                Py_ssize_t c0, Py_ssize_t c1, Py_ssize_t N, Py_ssize_t C,
                                Py_ssize_t S, bint batch_stats, bint need_dX) noexcept nogil:
    cdef Py_ssize_t c, n, j
    cdef double sdy, sdyx, M = <double>(N * S)
    cdef floating m, s, k1, k2, k3
    cdef const floating* x
    cdef const floating* dy
    cdef floating* dx
    for c in range(c0, c1):
        m = mean[c]
        s = rstd[c]
        sdy = 0
        sdyx = 0
        for n in range(N):
            _dot_and_sum(dY + (n * C + c) * S, X + (n * C + c) * S, S, m, &sdy, &sdyx)
        _bn_channel_grads(c, sdy, sdyx, M, s, gamma[c], dgamma, dbeta, drm, drv, batch_stats,
                          &k1, &k2, &k3)
        if not need_dX:
            continue
        for n in range(N):
            x = X + (n * C + c) * S
            dy = dY + (n * C + c) * S
            dx = dX + (n * C + c) * S
            for j in range(S):
                dx[j] = k1 * dy[j] + k2 * (x[j] - m) + k3


cdef inline void _bn_channel_grads(Py_ssize_t c, double sdy, double sdyx, double M, floating s,
                                   floating gamma, floating* dgamma, floating* dbeta,
                                   floating* drm, floating* drv, bint batch_stats, floating* k1,
                                   floating* k2, floating* k3) noexcept nogil:
    """Parameter gradients of channel c from sdy = sum(dy), sdyx = sum(dy (x - mean)), and the
    coefficients of dx = k1 dy + k2 (x - mean) + k3."""
    cdef double ds = <double>s, dg = <double>gamma
    dgamma[c] = <floating>(sdyx * ds)
    dbeta[c] = <floating>sdy
    k1[0] = <floating>(dg * ds)
    if batch_stats:
        # dx = gamma rstd (dy - mean(dy) - xhat mean(dy xhat))
        k2[0] = <floating>(-dg * ds * ds * ds * sdyx / M)
        k3[0] = <floating>(-dg * ds * sdy / M)
        drm[c] = 0
        drv[c] = 0
    else:
        # prediction: y = (x - rm) gamma / sqrt(rv + eps) + beta
        k2[0] = 0
        k3[0] = 0
        drm[c] = <floating>(-dg * ds * sdy)
        drv[c] = <floating>(-0.5 * dg * ds * ds * ds * sdyx)


# ---------------------------------------------------------------- BatchNorm, S == 1 (columns)

cdef void _bn_forward_cols(const floating* X, floating* Y, const floating* gamma,
                           const floating* beta, floating* running_mean, floating* running_var,
                           floating* mean_out, floating* rstd_out, double* acc, Py_ssize_t c0,
                           Py_ssize_t c1, Py_ssize_t N, Py_ssize_t C, bint training,
                           double momentum, double eps) noexcept nogil:
    """(N, C) input, columns [c0, c1): a pass over the rows accumulates the shifted sums of every
    column of the block at once (contiguous, vectorised), then a pass normalises."""
    cdef Py_ssize_t c, n
    cdef double d, ms, var
    cdef double* s = acc
    cdef double* q = acc + C
    cdef const floating* x
    cdef floating* y
    if training:
        for c in range(c0, c1):
            s[c] = 0
            q[c] = 0
        for n in range(N):
            x = X + n * C
            for c in range(c0, c1):
                d = <double>x[c] - <double>X[c]
                s[c] += d
                q[c] += d * d
        for c in range(c0, c1):
            ms = s[c] / <double>N
            var = q[c] / <double>N - ms * ms
            if var < 0:
                var = 0
            _bn_running(running_mean, running_var, c, X[c] + ms, var, N, momentum)
            mean_out[c] = <floating>(X[c] + ms)
            rstd_out[c] = <floating>(1.0 / sqrt(var + eps))
    else:
        for c in range(c0, c1):
            mean_out[c] = running_mean[c]
            rstd_out[c] = <floating>(1.0 / sqrt(<double>running_var[c] + eps))
    for n in range(N):
        x = X + n * C
        y = Y + n * C
        for c in range(c0, c1):
            y[c] = (x[c] - mean_out[c]) * (gamma[c] * rstd_out[c]) + beta[c]


cdef void _bn_backward_cols(const floating* dY, const floating* X, const floating* mean,
                            const floating* rstd, const floating* gamma, floating* dX,
                            floating* dgamma, floating* dbeta, floating* drm, floating* drv,
                            floating* coef, double* acc, Py_ssize_t c0, Py_ssize_t c1,
                            Py_ssize_t N, Py_ssize_t C, bint batch_stats,
                            bint need_dX) noexcept nogil:
    cdef Py_ssize_t c, n
    cdef double g
    cdef double* sdy = acc
    cdef double* sdyx = acc + C
    cdef floating* k1 = coef
    cdef floating* k2 = coef + C
    cdef floating* k3 = coef + 2 * C
    cdef const floating* x
    cdef const floating* dy
    cdef floating* dx
    for c in range(c0, c1):
        sdy[c] = 0
        sdyx[c] = 0
    for n in range(N):
        x = X + n * C
        dy = dY + n * C
        for c in range(c0, c1):
            g = dy[c]
            sdy[c] += g
            sdyx[c] += g * (<double>x[c] - <double>mean[c])
    for c in range(c0, c1):
        _bn_channel_grads(c, sdy[c], sdyx[c], <double>N, rstd[c], gamma[c], dgamma, dbeta, drm,
                          drv, batch_stats, k1 + c, k2 + c, k3 + c)
    if not need_dX:
        return
    for n in range(N):
        x = X + n * C
        dy = dY + n * C
        dx = dX + n * C
        for c in range(c0, c1):
            dx[c] = k1[c] * dy[c] + k2[c] * (x[c] - mean[c]) + k3[c]


# ---------------------------------------------------------------- BatchNorm dispatch

cdef void _batchnorm_forward(const floating* X, floating* Y, const floating* gamma,
                             const floating* beta, floating* running_mean, floating* running_var,
                             floating* mean_out, floating* rstd_out, double* acc, Py_ssize_t N,
                             Py_ssize_t C, Py_ssize_t S, bint training, double momentum,
                             double eps, int n_threads) noexcept nogil:
    cdef NormJob proto
    cdef NormJob jobs[MAX_JOBS]
    proto.op = BN_FWD
    proto.X = X
    proto.Y = Y
    proto.gamma = gamma
    proto.beta = beta
    proto.rm = running_mean
    proto.rv = running_var
    proto.mean_out = mean_out
    proto.rstd_out = rstd_out
    proto.acc = acc
    proto.N = N
    proto.C = C
    proto.S = S
    proto.flag = training
    proto.momentum = momentum
    proto.eps = eps
    _run_norm_jobs(&proto, jobs, C, _threads_for(n_threads, C, N * C * S), <floating>0)


cdef void _batchnorm_backward(const floating* dY, const floating* X, const floating* mean,
                              const floating* rstd, const floating* gamma, floating* dX,
                              floating* dgamma, floating* dbeta, floating* drm, floating* drv,
                              floating* coef, double* acc, Py_ssize_t N, Py_ssize_t C,
                              Py_ssize_t S, bint batch_stats, bint need_dX,
                              int n_threads) noexcept nogil:
    cdef NormJob proto
    cdef NormJob jobs[MAX_JOBS]
    proto.op = BN_BWD
    proto.dY = dY
    proto.X = X
    proto.mean = mean
    proto.rstd = rstd
    proto.gamma = gamma
    proto.Y = dX
    proto.dgamma = dgamma
    proto.dbeta = dbeta
    proto.rm = drm
    proto.rv = drv
    proto.coef = coef
    proto.acc = acc
    proto.N = N
    proto.C = C
    proto.S = S
    proto.flag = batch_stats
    proto.need_dX = need_dX
    _run_norm_jobs(&proto, jobs, C, _threads_for(n_threads, C, N * C * S), <floating>0)


# ---------------------------------------------------------------- Python twins

cdef _check_threads(int n_threads, str who):
    if n_threads < 1:
        raise ValueError(f"{who}: n_threads must be >= 1, got {n_threads}")


cdef _check_eps(double eps, str who):
    if not eps > 0:       # also refuses NaN
        raise ValueError(f"{who}: eps must be > 0, got {eps}")


def layernorm_forward(const floating[:, ::1] X, floating[:, ::1] Y_out,
                      const floating[::1] gamma, const floating[::1] beta,
                      floating[::1] mean_out, floating[::1] rstd_out, double eps,
                      int n_threads=1):
    """Per row r of X (R, D): Y_out[r] = (X[r] - mean) / sqrt(var + eps) * gamma + beta
    (biased variance); mean_out[r], rstd_out[r] = mean, 1 / sqrt(var + eps)."""
    cdef Py_ssize_t R = X.shape[0], D = X.shape[1]
    _check_threads(n_threads, "layernorm_forward")
    _check_eps(eps, "layernorm_forward")
    if (Y_out.shape[0], Y_out.shape[1]) != (R, D):
        raise ValueError(f"layernorm_forward: Y_out has shape {(Y_out.shape[0], Y_out.shape[1])},"
                         f" expected {(R, D)}")
    if gamma.shape[0] != D or beta.shape[0] != D:
        raise ValueError(f"layernorm_forward: gamma and beta must have length {D}")
    if mean_out.shape[0] != R or rstd_out.shape[0] != R:
        raise ValueError(f"layernorm_forward: mean_out and rstd_out must have length {R}")
    if R == 0 or D == 0:
        return
    with nogil:
        _layernorm_forward(&X[0, 0], &Y_out[0, 0], &gamma[0], &beta[0], &mean_out[0],
                           &rstd_out[0], R, D, eps, n_threads)


def layernorm_backward(const floating[:, ::1] dY, const floating[:, ::1] X,
                       const floating[::1] mean, const floating[::1] rstd,
                       const floating[::1] gamma, floating[:, ::1] dX_out,
                       floating[::1] dgamma_out, floating[::1] dbeta_out,
                       floating[:, :, ::1] acc_ws, bint need_dX=True, int n_threads=1):
    """dgamma_out = sum_r dY xhat, dbeta_out = sum_r dY; dX_out (unless not need_dX) =
    rstd (g - mean(g) - xhat mean(g xhat)), g = dY gamma, xhat = (X - mean) rstd.  acc_ws:
    (threads, 2, D) scratch (at most acc_ws.shape[0] threads are used)."""
    cdef Py_ssize_t R = X.shape[0], D = X.shape[1]
    _check_threads(n_threads, "layernorm_backward")
    if (dY.shape[0], dY.shape[1]) != (R, D) or (need_dX and (dX_out.shape[0],
                                                             dX_out.shape[1]) != (R, D)):
        raise ValueError(f"layernorm_backward: dY and dX_out must have the shape of X {(R, D)}")
    if mean.shape[0] != R or rstd.shape[0] != R:
        raise ValueError(f"layernorm_backward: mean and rstd must have length {R}")
    if gamma.shape[0] != D or dgamma_out.shape[0] != D or dbeta_out.shape[0] != D:
        raise ValueError(f"layernorm_backward: gamma, dgamma_out and dbeta_out must have "
                         f"length {D}")
    if acc_ws.shape[0] < 1 or acc_ws.shape[1] != 2 or acc_ws.shape[2] != D:
        raise ValueError(f"layernorm_backward: acc_ws must have shape (threads >= 1, 2, {D})")
    if D == 0:
        return
    if R == 0:
        dgamma_out[:] = 0
        dbeta_out[:] = 0
        return
    with nogil:
        _layernorm_backward(&dY[0, 0], &X[0, 0], &mean[0], &rstd[0], &gamma[0],
                            &dX_out[0, 0] if need_dX else NULL, &dgamma_out[0], &dbeta_out[0],
                            &acc_ws[0, 0, 0], R, D, need_dX, n_threads, <int>acc_ws.shape[0])


cdef _check_bn(Py_ssize_t* X_shape, Py_ssize_t* other_shape, str who, str other):
    if (other_shape[0], other_shape[1], other_shape[2]) != (X_shape[0], X_shape[1], X_shape[2]):
        raise ValueError(f"{who}: {other} has shape {(other_shape[0], other_shape[1], other_shape[2])}"
                         f", expected the shape of X {(X_shape[0], X_shape[1], X_shape[2])}")


def batchnorm_forward(const floating[:, :, ::1] X, floating[:, :, ::1] Y_out,
                      const floating[::1] gamma, const floating[::1] beta,
                      floating[::1] running_mean, floating[::1] running_var,
                      floating[::1] mean_out, floating[::1] rstd_out, double[:, ::1] acc_ws,
                      bint training, double momentum, double eps, int n_threads=1):
    """X (N, C, S).  training: mean_out, rstd_out = batch mean, 1 / sqrt(biased var + eps) per
    channel, running statistics updated in place; else mean_out, rstd_out from the running
    statistics.  Y_out = (X - mean_out) rstd_out gamma + beta."""
    cdef Py_ssize_t N = X.shape[0], C = X.shape[1], S = X.shape[2]
    _check_threads(n_threads, "batchnorm_forward")
    _check_eps(eps, "batchnorm_forward")
    if not 0.0 <= momentum <= 1.0:
        raise ValueError(f"batchnorm_forward: momentum must be in [0, 1], got {momentum}")
    _check_bn(X.shape, Y_out.shape, "batchnorm_forward", "Y_out")
    for name, v in (("gamma", gamma.shape[0]), ("beta", beta.shape[0]),
                    ("running_mean", running_mean.shape[0]),
                    ("running_var", running_var.shape[0]), ("mean_out", mean_out.shape[0]),
                    ("rstd_out", rstd_out.shape[0])):
        if v != C:
            raise ValueError(f"batchnorm_forward: {name} has length {v}, expected C = {C}")
    if acc_ws.shape[0] != 2 or acc_ws.shape[1] != C:
        raise ValueError(f"batchnorm_forward: acc_ws must have shape (2, {C})")
    if C == 0:
        return
    if N == 0 or S == 0:
        if training:
            raise ValueError("batchnorm_forward: no values per channel to take statistics of")
        return
    with nogil:
        _batchnorm_forward(&X[0, 0, 0], &Y_out[0, 0, 0], &gamma[0], &beta[0], &running_mean[0],
                           &running_var[0], &mean_out[0], &rstd_out[0], &acc_ws[0, 0], N, C, S,
                           training, momentum, eps, n_threads)


def batchnorm_backward(const floating[:, :, ::1] dY, const floating[:, :, ::1] X,
                       const floating[::1] mean, const floating[::1] rstd,
                       const floating[::1] gamma, floating[:, :, ::1] dX_out,
                       floating[::1] dgamma_out, floating[::1] dbeta_out,
                       floating[::1] drunning_mean_out, floating[::1] drunning_var_out,
                       floating[:, ::1] coef_ws, double[:, ::1] acc_ws, bint batch_stats,
                       bint need_dX=True, int n_threads=1):
    """Gradients of sum(Y * dY) for Y = (X - mean) rstd gamma + beta.  batch_stats: mean / rstd
    were the batch's (dX includes their dependence on X; the running statistics get zero);
    otherwise the running statistics' (dX = gamma rstd dY; their gradients are filled in)."""
    cdef Py_ssize_t N = X.shape[0], C = X.shape[1], S = X.shape[2]
    _check_threads(n_threads, "batchnorm_backward")
    _check_bn(X.shape, dY.shape, "batchnorm_backward", "dY")
    if need_dX:
        _check_bn(X.shape, dX_out.shape, "batchnorm_backward", "dX_out")
    for name, v in (("mean", mean.shape[0]), ("rstd", rstd.shape[0]), ("gamma", gamma.shape[0]),
                    ("dgamma_out", dgamma_out.shape[0]), ("dbeta_out", dbeta_out.shape[0]),
                    ("drunning_mean_out", drunning_mean_out.shape[0]),
                    ("drunning_var_out", drunning_var_out.shape[0])):
        if v != C:
            raise ValueError(f"batchnorm_backward: {name} has length {v}, expected C = {C}")
    if coef_ws.shape[0] != 3 or coef_ws.shape[1] != C or acc_ws.shape[0] != 2 or \
            acc_ws.shape[1] != C:
        raise ValueError(f"batchnorm_backward: coef_ws must have shape (3, {C}) and acc_ws "
                         f"(2, {C})")
    if C == 0:
        return
    if N == 0 or S == 0:
        raise ValueError("batchnorm_backward: no values per channel")
    with nogil:
        _batchnorm_backward(&dY[0, 0, 0], &X[0, 0, 0], &mean[0], &rstd[0], &gamma[0],
                            &dX_out[0, 0, 0] if need_dX else NULL, &dgamma_out[0],
                            &dbeta_out[0], &drunning_mean_out[0], &drunning_var_out[0],
                            &coef_ws[0, 0], &acc_ws[0, 0], N, C, S, batch_stats, need_dX,
                            n_threads)
