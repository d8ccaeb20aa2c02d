"""2-D max and average pooling (no padding, floor output size as PyTorch), NCHW.

Dimensions: N samples, C channels, H, W input height / width, KH, KW window, SH, SW strides,
OH = (H - KH) // SH + 1, OW = (W - KW) // SW + 1.  A "plane" is one (n, c) pair: the loops run
in parallel over the N C planes (static shares, each plane independent) with the thread count
the thread policy gives for the pass's size (WORK_POOL, see nnc/_threads.py; serial below it).  Measured (float32, 1 thread, 64x8x26x26, 2x2): max forward
103 µs (a branchy scalar scan took 1.3 ms; PyTorch 2.13 takes ~1.9 ms), backward 75 µs.

Buffers (C-contiguous, caller supplied):
  maxpool2d_forward   writes Y_out (N, C, OH, OW) and argmax_out (N, C, OH, OW) int32: the flat
                      index ih W + iw, within its plane, of the first maximum of each window (a NaN
                      wins, as in PyTorch: the last NaN of the window).
  maxpool2d_backward  writes dX_out (N, C, H, W): zeroed, then dY scattered through argmax
                      (overlapping windows, stride < window, accumulate).
  avgpool2d_forward   writes Y_out: the window means.
  avgpool2d_backward  writes dX_out: zeroed, then dY / (KH KW) spread over each window.
"""
from libc.string cimport memset

from nnc._kernels._blas cimport floating
from nnc._kernels._parallel cimport (_par_begin, _par_end, _par_run, _chunk_lo, MAX_JOBS,
                                     WORK_POOL)
from nnc._kernels._sizes cimport _checked_mul


cdef inline int _threads_for(int n_threads, Py_ssize_t n_items, Py_ssize_t work) noexcept nogil:
    """Threads for a pass over n_items independent planes reading `work` elements: the thread
    policy's answer for WORK_POOL (1 below its threshold; see nnc/_threads.py), at most one per
    plane.  Pass the result to _par_end when the pass is done."""
    if n_items < 2:
        return 1
    return _par_begin(n_threads if n_threads < n_items else <int>n_items, WORK_POOL,
                      <double>work)


cdef inline Py_ssize_t _takes(floating v, floating best) noexcept nogil:
    """1 if v replaces the running maximum (strictly greater, or NaN: PyTorch's rule, so NaN
    propagates), else 0."""
    return (v > best) | (v != v)


# Branch-free maxima: the winner is tracked as an index (integer select / arithmetic) and its value
# reloaded from the plane, never selected as a float.  GCC turns float selects into branches
# (no SSE2 blend), which mispredicted on every other comparison with random activations: the
# 2x2 layer of the benchmark (64x8x26x26) took 1.3 ms per forward; branch-free it takes ~0.1 ms.

cdef void _maxpool_plane(const floating* X, floating* Y, int* arg, Py_ssize_t H, Py_ssize_t W,
                         Py_ssize_t KH, Py_ssize_t KW, Py_ssize_t SH, Py_ssize_t SW,
                         Py_ssize_t OH, Py_ssize_t OW) noexcept nogil:
    """Y[oh, ow] = max of the window, arg[oh, ow] = its flat index in the plane."""
    cdef Py_ssize_t oh, ow, kh, kw, base, idx, best_i, t
    for oh in range(OH):
        for ow in range(OW):
            base = oh * SH * W + ow * SW
            best_i = base
            for kh in range(KH):
                for kw in range(KW):
                    idx = base + kh * W + kw
                    t = _takes(X[idx], X[best_i])
                    best_i += (-t) & (idx - best_i)
            Y[oh * OW + ow] = X[best_i]
            arg[oh * OW + ow] = <int>best_i


cdef void _maxpool2x2_plane(const floating* X, floating* Y, int* arg, Py_ssize_t W,
                            Py_ssize_t OH, Py_ssize_t OW) noexcept nogil:
    """The 2x2 stride-2 case of _maxpool_plane, in segments of up to 32 outputs: the pair maxima
    of each input row, then of the two rows.  Rows before columns, earlier element on ties: the
    same winner as the row-major scan.  Each of the three loops has affine accesses into local
    arrays and vectorizes (SSE2 compare + and/andnot selects); ~10x the speed of the scalar
    version on the benchmark's 64x8x26x26 layer."""
    cdef Py_ssize_t oh, s, o, n
    cdef floating m0[32]
    cdef floating m1[32]
    cdef int i0[32]
    cdef int i1[32]
    cdef const floating* p0
    cdef const floating* p1
    cdef floating a, b
    cdef int t, base
    for oh in range(OH):
        s = 0
        while s < OW:
            n = OW - s if OW - s < 32 else 32
            p0 = X + 2 * oh * W + 2 * s
            p1 = p0 + W
            for o in range(n):
                a = p0[2 * o]
                b = p0[2 * o + 1]
                t = (b > a) | (b != b)
                m0[o] = b if t else a
                i0[o] = t
            for o in range(n):
                a = p1[2 * o]
                b = p1[2 * o + 1]
                t = (b > a) | (b != b)
                m1[o] = b if t else a
                i1[o] = t
            base = <int>(2 * oh * W + 2 * s)
            for o in range(n):
                t = (m1[o] > m0[o]) | (m1[o] != m1[o])
                Y[oh * OW + s + o] = m1[o] if t else m0[o]
                arg[oh * OW + s + o] = base + 2 * <int>o + (<int>W + i1[o] if t else i0[o])
            s += n


# ---------------------------------------------------------------- passes over planes as jobs
# Each pass runs as up to MAX_JOBS jobs, each a static share of the N C planes, through the
# thread policy's _par_run (1 job below the policy's WORK_POOL threshold).  Planes are
# independent, so any split gives the same bytes.

cdef enum:
    OP_MAX_FWD = 0
    OP_MAX_BWD = 1
    OP_AVG_FWD = 2
    OP_AVG_BWD = 3


cdef struct PlaneJob:
    int op
    bint dbl
    const void* src         # X (forward) or dY (backward)
    const int* arg_in       # max backward: the argmax indices
    void* dst               # Y (forward) or dX (backward)
    int* arg_out            # max forward: the argmax indices
    Py_ssize_t lo, hi       # planes [lo, hi)
    Py_ssize_t H, W, KH, KW, SH, SW, OH, OW


cdef void _plane_rows(PlaneJob* j, floating tag) noexcept nogil:
    """Planes [j.lo, j.hi) of pass j.op (`tag` only selects the floating type)."""
    cdef const floating* src = <const floating*>j.src
    cdef floating* dst = <floating*>j.dst
    cdef Py_ssize_t i, HW = j.H * j.W, P = j.OH * j.OW
    for i in range(j.lo, j.hi):
        if j.op == OP_MAX_FWD:
            _maxpool_one(src, dst, j.arg_out, i, j.H, j.W, j.KH, j.KW, j.SH, j.SW, j.OH, j.OW)
        elif j.op == OP_MAX_BWD:
            _maxpool_back_plane(src + i * P, j.arg_in + i * P, dst + i * HW, HW, P)
        elif j.op == OP_AVG_FWD:
            _avgpool_plane(src + i * HW, dst + i * P, j.W, j.KH, j.KW, j.SH, j.SW, j.OH, j.OW)
        else:
            _avgpool_back_plane(src + i * P, dst + i * HW, j.H, j.W, j.KH, j.KW, j.SH, j.SW,
                                j.OH, j.OW)


cdef void _plane_job(void* p) noexcept nogil:
    cdef PlaneJob* j = <PlaneJob*>p
    if j.dbl:
        _plane_rows(j, <double>0)
    else:
        _plane_rows(j, <float>0)


cdef void _per_plane(int op, const floating* src, const int* arg_in, floating* dst, int* arg_out,
                     Py_ssize_t NC, Py_ssize_t H, Py_ssize_t W, Py_ssize_t KH, Py_ssize_t KW,
                     Py_ssize_t SH, Py_ssize_t SW, Py_ssize_t OH, Py_ssize_t OW,
                     int n_threads) noexcept nogil:
    """Pass `op` over NC planes of H W inputs, split into as many jobs as the thread policy
    gives for the NC H W elements it reads."""
    cdef PlaneJob jobs[MAX_JOBS]
    cdef int nt, t
    if NC <= 0:
        return
    nt = _threads_for(n_threads, NC, NC * H * W)
    for t in range(nt):
        jobs[t].op = op
        jobs[t].dbl = floating is double
        jobs[t].src = src
        jobs[t].arg_in = arg_in
        jobs[t].dst = dst
        jobs[t].arg_out = arg_out
        jobs[t].lo = _chunk_lo(NC, nt, t)
        jobs[t].hi = _chunk_lo(NC, nt, t + 1)
        jobs[t].H = H
        jobs[t].W = W
        jobs[t].KH = KH
        jobs[t].KW = KW
        jobs[t].SH = SH
        jobs[t].SW = SW
        jobs[t].OH = OH
        jobs[t].OW = OW
    _par_run(nt, _plane_job, jobs, sizeof(PlaneJob))
    _par_end(nt)


cdef void _maxpool2d_forward(const floating* X, floating* Y, int* arg, Py_ssize_t NC,
                             Py_ssize_t H, Py_ssize_t W, Py_ssize_t KH, Py_ssize_t KW,
                             Py_ssize_t SH, Py_ssize_t SW, Py_ssize_t OH, Py_ssize_t OW,
                             int n_threads) noexcept nogil:
    _per_plane(OP_MAX_FWD, X, NULL, Y, arg, NC, H, W, KH, KW, SH, SW, OH, OW, n_threads)


cdef inline void _maxpool_one(const floating* X, floating* Y, int* arg, Py_ssize_t i,
                              Py_ssize_t H, Py_ssize_t W, Py_ssize_t KH, Py_ssize_t KW,
                              Py_ssize_t SH, Py_ssize_t SW, Py_ssize_t OH,
                              Py_ssize_t OW) noexcept nogil:
    """Plane i: the unrolled 2x2 stride-2 kernel when it applies, else the generic one."""
    if KH == 2 and KW == 2 and SH == 2 and SW == 2:
        _maxpool2x2_plane(X + i * H * W, Y + i * OH * OW, arg + i * OH * OW, W, OH, OW)
    else:
        _maxpool_plane(X + i * H * W, Y + i * OH * OW, arg + i * OH * OW, H, W, KH, KW, SH, SW,
                       OH, OW)


cdef void _maxpool2d_backward(const floating* dY, const int* arg, floating* dX, Py_ssize_t NC,
                              Py_ssize_t HW, Py_ssize_t P, int n_threads) noexcept nogil:
    """dX = 0; dX[plane, arg[plane, p]] += dY[plane, p]  (arg values checked by the caller)."""
    # planes of HW inputs and P outputs: (H, W) = (HW, 1) and (OH, OW) = (P, 1) carry the sizes
    _per_plane(OP_MAX_BWD, dY, arg, dX, NULL, NC, HW, 1, 1, 1, 1, 1, P, 1, n_threads)


cdef inline void _maxpool_back_plane(const floating* dY, const int* arg, floating* dX,
                                     Py_ssize_t HW, Py_ssize_t P) noexcept nogil:
    cdef Py_ssize_t p
    memset(dX, 0, HW * sizeof(floating))
    for p in range(P):
        dX[arg[p]] += dY[p]


cdef void _avgpool2d_forward(const floating* X, floating* Y, Py_ssize_t NC, Py_ssize_t H,
                             Py_ssize_t W, Py_ssize_t KH, Py_ssize_t KW, Py_ssize_t SH,
                             Py_ssize_t SW, Py_ssize_t OH, Py_ssize_t OW,
                             int n_threads) noexcept nogil:
    """Y[plane, oh, ow] = mean of the window."""
    _per_plane(OP_AVG_FWD, X, NULL, Y, NULL, NC, H, W, KH, KW, SH, SW, OH, OW, n_threads)


cdef inline void _avgpool_plane(const floating* X, floating* Y, Py_ssize_t W, Py_ssize_t KH,
                                Py_ssize_t KW, Py_ssize_t SH, Py_ssize_t SW, Py_ssize_t OH,
                                Py_ssize_t OW) noexcept nogil:
    """Window offsets outermost, output columns innermost: the inner loop is a (strided) vector
    add over a whole output row (64x8x26x26, 2x2: 292 -> 162 µs against summing each window on
    its own; on 11x11 planes, whose 5-wide rows are too short to gain, 89 -> 116 µs)."""
    cdef Py_ssize_t oh, ow, kh, kw
    cdef floating scale = <floating>1.0 / <floating>(KH * KW)
    cdef floating* y
    cdef const floating* x
    for oh in range(OH):
        y = Y + oh * OW
        for ow in range(OW):
            y[ow] = 0
        for kh in range(KH):
            for kw in range(KW):
                x = X + (oh * SH + kh) * W + kw
                for ow in range(OW):
                    y[ow] = y[ow] + x[ow * SW]
        for ow in range(OW):
            y[ow] = y[ow] * scale


cdef void _avgpool2d_backward(const floating* dY, floating* dX, Py_ssize_t NC, Py_ssize_t H,
                              Py_ssize_t W, Py_ssize_t KH, Py_ssize_t KW, Py_ssize_t SH,
                              Py_ssize_t SW, Py_ssize_t OH, Py_ssize_t OW,
                              int n_threads) noexcept nogil:
    """dX = 0; dX[window(oh, ow)] += dY[oh, ow] / (KH KW)."""
    _per_plane(OP_AVG_BWD, dY, NULL, dX, NULL, NC, H, W, KH, KW, SH, SW, OH, OW, n_threads)


cdef inline void _avgpool_back_plane(const floating* dY, floating* dX, Py_ssize_t H, Py_ssize_t W,
                                     Py_ssize_t KH, Py_ssize_t KW, Py_ssize_t SH, Py_ssize_t SW,
                                     Py_ssize_t OH, Py_ssize_t OW) noexcept nogil:
    """Loop order as in _avgpool_plane; within one (kh, kw) the output columns hit distinct
    inputs, so overlapping windows (stride < pool) still accumulate correctly."""
    cdef Py_ssize_t oh, ow, kh, kw
    cdef floating scale = <floating>1.0 / <floating>(KH * KW)
    cdef const floating* g
    cdef floating* x
    memset(dX, 0, H * W * sizeof(floating))
    for oh in range(OH):
        g = dY + oh * OW
        for kh in range(KH):
            for kw in range(KW):
                x = dX + (oh * SH + kh) * W + kw
                for ow in range(OW):
                    x[ow * SW] += g[ow] * scale


# ---------------------------------------------------------------- validation

def pool_output_size(Py_ssize_t size, Py_ssize_t kernel, Py_ssize_t stride):
    """(size - kernel) // stride + 1, or raise ValueError on illegal geometry."""
    if kernel < 1 or stride < 1 or size < 1:
        raise ValueError(f"illegal pooling geometry: size={size}, pool={kernel}, stride={stride} "
                         "(all must be >= 1)")
    if kernel > size:
        raise ValueError(f"pool size {kernel} is larger than the input {size}")
    return (size - kernel) // stride + 1


cdef tuple _check_pool(Py_ssize_t* X_shape, Py_ssize_t* Y_shape, Py_ssize_t KH, Py_ssize_t KW,
                       Py_ssize_t SH, Py_ssize_t SW, int n_threads, str who):
    """Validate shapes; return (OH, OW)."""
    cdef Py_ssize_t OH, OW, HW
    if n_threads < 1:
        raise ValueError(f"{who}: n_threads must be >= 1, got {n_threads}")
    try:
        OH = pool_output_size(X_shape[2], KH, SH)
        OW = pool_output_size(X_shape[3], KW, SW)
    except ValueError as exc:
        raise ValueError(f"{who}: {exc}") from None
    expected = (X_shape[0], X_shape[1], OH, OW)
    got = (Y_shape[0], Y_shape[1], Y_shape[2], Y_shape[3])
    if got != expected:
        raise ValueError(f"{who}: output/gradient has shape {got}, expected {expected}")
    try:       # (strings formatted only on the error path)
        HW = _checked_mul(X_shape[2], X_shape[3], "plane size H*W")
        _checked_mul(X_shape[0], X_shape[1], "planes N*C")
    except ValueError as exc:
        raise ValueError(f"{who}: {exc}") from None
    if HW > 2147483647:
        raise ValueError(f"{who}: planes larger than 2**31 elements are not supported")
    return OH, OW


# ---------------------------------------------------------------- Python twins

def maxpool2d_forward(const floating[:, :, :, ::1] X, floating[:, :, :, ::1] Y_out,
                      int[:, :, :, ::1] argmax_out, Py_ssize_t KH, Py_ssize_t KW,
                      Py_ssize_t SH, Py_ssize_t SW, int n_threads=1):
    """Y_out = max over each KH x KW window (stride SH, SW); argmax_out = flat in-plane index."""
    cdef Py_ssize_t OH, OW
    OH, OW = _check_pool(X.shape, Y_out.shape, KH, KW, SH, SW, n_threads, "maxpool2d_forward")
    if (argmax_out.shape[0], argmax_out.shape[1], argmax_out.shape[2], argmax_out.shape[3]) != \
            (Y_out.shape[0], Y_out.shape[1], Y_out.shape[2], Y_out.shape[3]):
        raise ValueError("maxpool2d_forward: argmax_out must have the shape of Y_out")
    if X.shape[0] == 0 or X.shape[1] == 0:
        return
    with nogil:
        _maxpool2d_forward(&X[0, 0, 0, 0], &Y_out[0, 0, 0, 0], &argmax_out[0, 0, 0, 0],
                           X.shape[0] * X.shape[1], X.shape[2], X.shape[3], KH, KW, SH, SW,
                           OH, OW, n_threads)


def maxpool2d_backward(const floating[:, :, :, ::1] dY, const int[:, :, :, ::1] argmax,
                       floating[:, :, :, ::1] dX_out, int n_threads=1):
    """dX_out = 0, then dX_out[n, c].flat[argmax[n, c, oh, ow]] += dY[n, c, oh, ow]."""
    cdef Py_ssize_t NC, HW, P, i, n_bad = 0
    cdef unsigned int uHW
    cdef const int* a
    NC = _checked_mul(dX_out.shape[0], dX_out.shape[1], "maxpool2d_backward: planes N*C")
    HW = _checked_mul(dX_out.shape[2], dX_out.shape[3], "maxpool2d_backward: plane size H*W")
    P = _checked_mul(dY.shape[2], dY.shape[3], "maxpool2d_backward: output plane size")
    if n_threads < 1:
        raise ValueError(f"maxpool2d_backward: n_threads must be >= 1, got {n_threads}")
    if (dY.shape[0], dY.shape[1]) != (dX_out.shape[0], dX_out.shape[1]) or \
            (argmax.shape[0], argmax.shape[1], argmax.shape[2], argmax.shape[3]) != \
            (dY.shape[0], dY.shape[1], dY.shape[2], dY.shape[3]):
        raise ValueError("maxpool2d_backward: dY, argmax and dX_out have inconsistent shapes")
    if NC == 0 or HW == 0:
        return
    if P > HW:
        raise ValueError("maxpool2d_backward: dY has more pixels per plane than dX_out")
    if P > 0:
        # the indices decide where we write: check them all before touching dX_out
        if HW > 2147483647:
            raise ValueError("maxpool2d_backward: planes larger than 2**31 elements")
        _checked_mul(NC, P, "maxpool2d_backward: argmax entries")
        a = &argmax[0, 0, 0, 0]
        uHW = <unsigned int>HW
        with nogil:
            for i in range(NC * P):
                n_bad += <unsigned int>a[i] >= uHW
        if n_bad:
            raise ValueError(f"maxpool2d_backward: {n_bad} argmax entries outside [0, {HW})")
    with nogil:
        if P == 0:
            memset(&dX_out[0, 0, 0, 0], 0, NC * HW * sizeof(floating))
        else:
            _maxpool2d_backward(&dY[0, 0, 0, 0], &argmax[0, 0, 0, 0], &dX_out[0, 0, 0, 0], NC, HW,
                                P, n_threads)


def avgpool2d_forward(const floating[:, :, :, ::1] X, floating[:, :, :, ::1] Y_out,
                      Py_ssize_t KH, Py_ssize_t KW, Py_ssize_t SH, Py_ssize_t SW, int n_threads=1):
    """Y_out = mean over each KH x KW window (stride SH, SW)."""
    cdef Py_ssize_t OH, OW
    OH, OW = _check_pool(X.shape, Y_out.shape, KH, KW, SH, SW, n_threads, "avgpool2d_forward")
    if X.shape[0] == 0 or X.shape[1] == 0:
        return
    with nogil:
        _avgpool2d_forward(&X[0, 0, 0, 0], &Y_out[0, 0, 0, 0], X.shape[0] * X.shape[1],
                           X.shape[2], X.shape[3], KH, KW, SH, SW, OH, OW, n_threads)


def avgpool2d_backward(const floating[:, :, :, ::1] dY, floating[:, :, :, ::1] dX_out,
                       Py_ssize_t KH, Py_ssize_t KW, Py_ssize_t SH, Py_ssize_t SW, int n_threads=1):
    """dX_out = 0, then dY / (KH KW) added over each window."""
    cdef Py_ssize_t OH, OW
    OH, OW = _check_pool(dX_out.shape, dY.shape, KH, KW, SH, SW, n_threads, "avgpool2d_backward")
    if dX_out.shape[0] == 0 or dX_out.shape[1] == 0:
        return
    with nogil:
        _avgpool2d_backward(&dY[0, 0, 0, 0], &dX_out[0, 0, 0, 0], dX_out.shape[0] * dX_out.shape[1],
                            dX_out.shape[2], dX_out.shape[3], KH, KW, SH, SW, OH, OW, n_threads)
