"""Fused loss kernels: the loss and the gradient of the logits from one call, one visit per row.

Dimensions: N samples, K outputs (logits).  Z (N, K) logits, Y (N, K) float targets (mse, bce,
poisson), labels (N,) int32 class indices (softmax cross-entropy), sw (N,) sample weights or NULL.

``_loss_gradient`` returns the sample-weighted MEAN of the per-sample losses,
sum_i w_i loss_i / sw_sum, accumulated in double, and writes dZ_out[i] = w_i dloss_i/dz_i / sw_sum
(w_i = 1 and sw_sum = N without weights).  Per-sample losses sum over the K outputs:

* mse      0.5 sum_k (z - y)^2                               grad z - y
* bce      sum_k softplus(z) - y z  (sigmoid link)           grad sigmoid(z) - y
* softmax  logsumexp(z) - z[label]                           grad softmax(z) - onehot(label)
* poisson  sum_k xlogy(y, y) - y z - y + exp(z)  (exp link)  grad exp(z) - y

Stability: bce uses max(z, 0) - y z + log1p(exp(-|z|)) written as ((1-y) z or -y z) + log1p(e)
with one exp per element; softmax subtracts the row maximum; per-element terms are summed in
double.  Poisson clips the exponent: exp(min(z, EXP_CLIP)) with EXP_CLIP = 80 for float32
(exp(80) ~ 5.5e34 < FLT_MAX) and 700 for float64 (exp(700) ~ 1e304 < DBL_MAX), in the loss, its
gradient and the ``exp`` link alike, so |z| = 1e4 gives finite numbers in both dtypes.  Only the
double accumulation of many ~1e304 terms can still reach inf.  Softmax takes its exp from
_fastmath's vectorised array kernel (within 1 ulp of the C library's); bce and poisson call the C
library's exp per element (their loops also call log1p / log, which stay scalar anyway).

dZ_out may alias Z (each element / row is read before it is written).  Labels are NOT checked by
the cdef kernel: callers validate them (the ``loss_gradient`` twin and ``nnc.losses`` do).

Links for predictions, in place: ``_softmax_inplace`` (N, K) rows, ``_exp_inplace`` (clipped as
above); the logistic link is ``_activations._activation_forward(ACT_LOGISTIC, ...)``.  Every link
maps finite logits to finite predictions, and infinite logits to their limits (softmax: a row whose
maximum is +inf shares the mass among its +inf entries instead of computing inf - inf = NaN);
only NaN logits give NaN.
No OpenMP: at N*K ~ 1e5 the whole call costs well under a millisecond, less than one GEMM of the
last layer, so threads would not pay for their barrier.
"""
from libc.math cimport exp, expf, log, logf, log1p, log1pf, isfinite, isinf

from nnc._kernels._fastmath cimport _exp_array

# Python-visible codes (mirror the enum in _losses.pxd)
MSE = LOSS_MSE
BCE = LOSS_BCE
SOFTMAX_CE = LOSS_SOFTMAX_CE
POISSON = LOSS_POISSON
EXP_CLIP_FLOAT32 = 80.0
EXP_CLIP_FLOAT64 = 700.0


cdef inline floating _exp(floating x) noexcept nogil:
    if floating is float:
        return expf(x)
    else:
        return exp(x)


cdef inline floating _log(floating x) noexcept nogil:
    if floating is float:
        return logf(x)
    else:
        return log(x)


cdef inline floating _log1p(floating x) noexcept nogil:
    if floating is float:
        return log1pf(x)
    else:
        return log1p(x)


cdef inline floating _exp_clipped(floating x) noexcept nogil:
    """exp(min(x, EXP_CLIP)) in the type's own precision."""
    if floating is float:
        if x > <float>80.0:
            x = <float>80.0
        return expf(x)
    else:
        if x > 700.0:
            x = 700.0
        return exp(x)


# ---------------------------------------------------------------- one row each: loss, dz

cdef inline double _row_mse(const floating* z, const floating* y, floating* dz, floating scale,
                            Py_ssize_t K) noexcept nogil:
    cdef Py_ssize_t k
    cdef floating d
    cdef double acc = 0.0
    for k in range(K):
        d = z[k] - y[k]
        acc += <double>d * <double>d
        dz[k] = scale * d
    return 0.5 * acc


cdef inline double _row_bce(const floating* z, const floating* y, floating* dz, floating scale,
                            Py_ssize_t K) noexcept nogil:
    cdef Py_ssize_t k
    cdef floating zk, yk, e, lin, p
    cdef double acc = 0.0
    for k in range(K):
        zk = z[k]
        yk = y[k]
        if zk > 0:
            e = _exp(-zk)
            lin = (1 - yk) * zk          # max(z, 0) - y z
            p = 1 / (1 + e)
        else:
            e = _exp(zk)
            lin = -yk * zk
            p = e / (1 + e)
        acc += <double>lin + <double>_log1p(e)
        dz[k] = scale * (p - yk)
    return acc


cdef inline double _row_softmax_ce(const floating* z, int label, floating* dz, floating scale,
                                   Py_ssize_t K) noexcept nogil:
    cdef Py_ssize_t k
    cdef floating zmax = z[0], zl = z[label], inv
    cdef double s = 0.0
    for k in range(1, K):
        if z[k] > zmax:
            zmax = z[k]
    for k in range(K):
        dz[k] = z[k] - zmax
    _exp_array(dz, K)                # vectorised exp (_fastmath)
    for k in range(K):
        s += dz[k]
    inv = <floating>(scale / s)      # s >= 1 (the max term is 1)
    for k in range(K):
        dz[k] = dz[k] * inv
    dz[label] -= scale
    return (<double>zmax - <double>zl) + log(s)


cdef inline double _row_poisson(const floating* z, const floating* y, floating* dz,
                                floating scale, Py_ssize_t K) noexcept nogil:
    cdef Py_ssize_t k
    cdef floating zk, yk, e
    cdef double acc = 0.0, xlogy
    for k in range(K):
        zk = z[k]
        yk = y[k]
        e = _exp_clipped(zk)
        xlogy = <double>yk * <double>_log(yk) if yk > 0 else 0.0
        acc += xlogy - <double>yk * <double>zk - <double>yk + <double>e
        dz[k] = scale * (e - yk)
    return acc


cdef double _loss_gradient(int loss, const floating* Z, const floating* Y, const int* labels,
                           const floating* sw, double sw_sum, floating* dZ_out,
                           Py_ssize_t N, Py_ssize_t K) noexcept nogil:
    """Return sum_i w_i loss_i / sw_sum; dZ_out[i] = w_i dloss_i/dz / sw_sum (one visit per row)."""
    cdef Py_ssize_t i
    cdef double total = 0.0, row, w = 1.0
    cdef floating scale = <floating>(1.0 / sw_sum)
    for i in range(N):
        if sw != NULL:
            w = sw[i]
            scale = <floating>(w / sw_sum)
        if loss == LOSS_MSE:
            row = _row_mse(Z + i * K, Y + i * K, dZ_out + i * K, scale, K)
        elif loss == LOSS_BCE:
            row = _row_bce(Z + i * K, Y + i * K, dZ_out + i * K, scale, K)
        elif loss == LOSS_SOFTMAX_CE:
            row = _row_softmax_ce(Z + i * K, labels[i], dZ_out + i * K, scale, K)
        else:
            row = _row_poisson(Z + i * K, Y + i * K, dZ_out + i * K, scale, K)
        if w != 0.0:                     # a zero weight never turns an inf loss into NaN
            total += w * row
    return total / sw_sum


# ---------------------------------------------------------------- links (predictions)

cdef void _softmax_inplace(floating* Z, Py_ssize_t N, Py_ssize_t K) noexcept nogil:
    """Each row of Z (N, K) <- softmax(row), max-subtracted.

    Rows with infinite logits get the limit instead of NaN (z - zmax would be inf - inf):
    a row whose maximum is +inf splits the mass evenly over its +inf entries, a row of -inf
    only is uniform.  Finite rows never produce NaN: z - zmax <= 0 (at worst -inf, exp -> 0) and
    the sum is >= 1.  Only NaN logits give NaN."""
    cdef Py_ssize_t i, k
    cdef floating* z
    cdef floating zmax, inv
    cdef double s
    for i in range(N):
        z = Z + i * K
        zmax = z[0]
        for k in range(1, K):
            if z[k] > zmax:
                zmax = z[k]
        if isinf(zmax):
            _softmax_limit(z, K, zmax > 0)
            continue
        for k in range(K):
            z[k] = z[k] - zmax
        _exp_array(z, K)
        s = 0.0
        for k in range(K):
            s += z[k]
        inv = <floating>(1.0 / s)
        for k in range(K):
            z[k] = z[k] * inv


cdef void _softmax_limit(floating* z, Py_ssize_t K, bint plus_inf) noexcept nogil:
    """z <- the softmax limit of a row whose maximum is +inf (plus_inf) or -inf (then every
    entry is -inf, or NaN: NaN stays NaN)."""
    cdef Py_ssize_t k, count = 0
    cdef floating share
    if plus_inf:
        for k in range(K):
            if isinf(z[k]) and z[k] > 0:
                count += 1
        share = <floating>(1.0 / <double>count)
        for k in range(K):
            if z[k] != z[k]:
                continue
            z[k] = share if (isinf(z[k]) and z[k] > 0) else 0
    else:
        share = <floating>(1.0 / <double>K)
        for k in range(K):
            if z[k] == z[k]:
                z[k] = share


cdef void _exp_inplace(floating* Z, Py_ssize_t n) noexcept nogil:
    """Z <- exp(min(Z, EXP_CLIP)) element-wise."""
    cdef Py_ssize_t i
    for i in range(n):
        Z[i] = _exp_clipped(Z[i])


# ---------------------------------------------------------------- Python twins

def loss_gradient(int loss, const floating[:, ::1] Z, const floating[:, ::1] Y,
                  const int[::1] labels, const floating[::1] sample_weight,
                  floating[:, ::1] dZ_out):
    """Weighted mean loss (float); dZ_out <- its gradient w.r.t. the logits Z (N, K).

    Y (N, K) targets for MSE/BCE/POISSON (labels None); labels (N,) int32 in [0, K) for
    SOFTMAX_CE (Y None or ignored); sample_weight None or (N,) with a positive finite sum.
    Every shape and every label is checked here, so the kernel never reads out of bounds."""
    cdef Py_ssize_t N = Z.shape[0], K = Z.shape[1], i
    cdef double sw_sum = 0.0, result
    cdef const floating* Y_ptr = NULL
    cdef const int* lab_ptr = NULL
    cdef const floating* sw_ptr = NULL
    cdef int lab
    if loss < LOSS_MSE or loss > LOSS_POISSON:
        raise ValueError(f"loss_gradient: unknown loss code {loss}")
    if N == 0 or K == 0:
        raise ValueError(f"loss_gradient: Z must be non-empty, got shape ({N}, {K})")
    if dZ_out is None or dZ_out.shape[0] != N or dZ_out.shape[1] != K:
        raise ValueError(f"loss_gradient: dZ_out must have shape ({N}, {K})")
    if loss == LOSS_SOFTMAX_CE:
        if labels is None:
            raise ValueError("loss_gradient: softmax cross-entropy needs integer labels")
        if labels.shape[0] != N:
            raise ValueError(f"loss_gradient: labels must have shape ({N},), "
                             f"got ({labels.shape[0]},)")
        for i in range(N):
            lab = labels[i]
            if lab < 0 or lab >= K:
                raise ValueError(f"loss_gradient: label {lab} at row {i} is outside [0, {K})")
        lab_ptr = &labels[0]
    else:
        if Y is None:
            raise ValueError("loss_gradient: this loss needs float targets Y")
        if Y.shape[0] != N or Y.shape[1] != K:
            raise ValueError(f"loss_gradient: Y must have shape ({N}, {K}), "
                             f"got ({Y.shape[0]}, {Y.shape[1]})")
        Y_ptr = &Y[0, 0]
    if sample_weight is None:
        sw_sum = <double>N
    else:
        if sample_weight.shape[0] != N:
            raise ValueError(f"loss_gradient: sample_weight must have shape ({N},), "
                             f"got ({sample_weight.shape[0]},)")
        for i in range(N):
            sw_sum += sample_weight[i]
        if not (sw_sum > 0.0 and isfinite(sw_sum)):
            raise ValueError(f"loss_gradient: sample_weight must have a positive finite sum, "
                             f"got {sw_sum}")
        sw_ptr = &sample_weight[0]
    with nogil:
        result = _loss_gradient(loss, &Z[0, 0], Y_ptr, lab_ptr, sw_ptr, sw_sum, &dZ_out[0, 0],
                                N, K)
    return result


def softmax_forward(floating[:, ::1] Z_out):
    """Z_out (N, K) <- row-wise softmax of itself."""
    if Z_out.shape[0] == 0 or Z_out.shape[1] == 0:
        return
    with nogil:
        _softmax_inplace(&Z_out[0, 0], Z_out.shape[0], Z_out.shape[1])


def exp_forward(floating[::1] Z_out):
    """Z_out <- exp(min(Z_out, EXP_CLIP)) in place (flattened view of any C-contiguous array)."""
    if Z_out.shape[0] == 0:
        return
    with nogil:
        _exp_inplace(&Z_out[0], Z_out.shape[0])
