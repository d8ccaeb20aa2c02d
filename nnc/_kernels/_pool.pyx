"""2-D max and average pooling (floor output size as PyTorch), NCHW, and global pooling.

Dimensions: N samples, C channels, H, W input height / width, KH, KW window, SH, SW strides,
PH, PW padding, OH = (H + 2 PH - KH) // SH + 1, OW = (W + 2 PW - KW) // SW + 1.  A "plane" is
one (n, c) pair: the loops run in parallel over the N C planes (static shares, each plane
independent) with the thread count the thread policy gives for the pass's size (WORK_POOL, see
nnc/_threads.py; serial below it).  Measured (float32, 1
thread, 64x8x26x26, 2x2): max forward 103 µs (a branchy scalar scan took 1.3 ms; PyTorch 2.13
takes ~1.9 ms), backward 75 µs.  Other windows scan up to 32 outputs of a row side
by side (_maxpool_row_seg): 3x3 stride 2 on 64x16x32x32 went from ~30 ms to ~4 ms per forward
(one scan per window was a chain of dependent loads and compares; both timed on a busy 2-core
machine, `benchmarks/bench_layers.py --only "MaxPool2D 3/2/1"` re-measures the layer).  1-D
pooling is the H = KH = 1 case.

Padding (PyTorch's rules: at most half the window, so every window holds an input value) is
handled by clipping each window to the input, never by a padded copy: max pooling then pads with
-inf; average pooling divides by KH KW (``count_include_pad``: zeros padded, PyTorch's default)
or by the number of input values in the window.  Unpadded pools take the original loops, so
their speed is unchanged.

Buffers (C-contiguous, caller supplied):
  maxpool2d_forward   writes Y_out (N, C, OH, OW) and argmax_out (N, C, OH, OW) int32: the flat
                      index ih W + iw, within its plane, of the first maximum of each window (a NaN
                      wins, as in PyTorch: the last NaN of the window).
  maxpool2d_backward  writes dX_out (N, C, H, W): zeroed, then dY scattered through argmax
                      (overlapping windows, stride < window, accumulate).
  avgpool2d_forward   writes Y_out: the window means.
  avgpool2d_backward  writes dX_out: zeroed, then dY / (window divisor) spread over each window.
  global_*pool_*      X (N, C, S) (channels first) or (N, S, C) (channels last) -> Y_out (N, C):
                      the mean / max over the S positions (max: argmax_out (N, C) int32, the
                      position s of the first maximum, NaN winning as above); backward spreads
                      dY / S over the positions or puts dY at the argmax.  Passes run in
                      parallel (the thread policy, as above) over the samples (channels last)
                      or the N C rows (channels first).  Channels last may take a padding mask
                      M (N, S) uint8 (1 = a real position): the mean / max over the real
                      positions only, backward giving the padded positions 0; a sample with no
                      real position pools to 0 with a zero gradient (its argmax is 0, a padded
                      position, which backward skips).  Without a mask the loops are the
                      unmasked ones, unchanged.
"""
from libc.string cimport memset

from nnc._kernels._blas cimport floating
from nnc._kernels._parallel cimport (_par_begin, _par_end, _par_run, _chunk_lo, MAX_JOBS,
                                     WORK_POOL)
from nnc._kernels._lanes cimport _sum
from nnc._kernels._sizes cimport _checked_mul

cdef inline int _threads_for(int n_threads, Py_ssize_t n_items, Py_ssize_t work) noexcept nogil:
    """Threads for a pass over n_items independent planes / rows / samples reading `work`
    elements: the thread policy's answer for WORK_POOL (1 below its threshold; see
    nnc/_threads.py), at most one per item.  Pass the result to _par_end when the pass is done."""
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


cdef void _maxpool_plane(const floating* X, floating* Y, int* arg, Py_ssize_t H, Py_ssize_t W,
                         Py_ssize_t KH, Py_ssize_t KW, Py_ssize_t SH, Py_ssize_t SW,
                         Py_ssize_t PH, Py_ssize_t PW, Py_ssize_t OH,
                         Py_ssize_t OW) noexcept nogil:
    """Y[oh, ow] = max of the window, arg[oh, ow] = its flat index in the plane.  Padded windows
    are clipped to the input (= -inf padding; PH <= KH / 2 and PW <= KW / 2 leave an input value
    in every window).  The columns whose windows lie inside the input (all of them without
    padding) run _maxpool_row_seg; the few at the edges the clipped scalar scan."""
    cdef Py_ssize_t oh, ow, hs, he, ws, we, lo, hi, s, n
    # interior columns [lo, hi): ow SW - PW >= 0 and ow SW - PW + KW <= W
    lo = (PW + SW - 1) // SW
    hi = (W - KW + PW) // SW + 1 if W - KW + PW >= 0 else 0
    hi = hi if hi < OW else OW
    lo = lo if lo < hi else hi
    for oh in range(OH):
        hs = oh * SH - PH
        he = hs + KH
        hs = hs if hs > 0 else 0
        he = he if he < H else H
        for ow in range(lo):
            _maxpool_clipped(X, Y, arg, oh, ow, hs, he, W, KW, SW, PW, OW)
        s = lo
        while s < hi:
            n = hi - s if hi - s < 32 else 32
            _maxpool_row_seg(X, Y + oh * OW + s, arg + oh * OW + s, hs * W + s * SW - PW,
                             he - hs, W, KW, SW, n)
            s += n
        for ow in range(hi, OW):
            _maxpool_clipped(X, Y, arg, oh, ow, hs, he, W, KW, SW, PW, OW)


cdef inline void _maxpool_clipped(const floating* X, floating* Y, int* arg, Py_ssize_t oh,
                                  Py_ssize_t ow, Py_ssize_t hs, Py_ssize_t he, Py_ssize_t W,
                                  Py_ssize_t KW, Py_ssize_t SW, Py_ssize_t PW,
                                  Py_ssize_t OW) noexcept nogil:
    """One output of a padded plane: the row-major scan of its window clipped to the input."""
    cdef Py_ssize_t h, w, ws, we, idx, best_i, t
    ws = ow * SW - PW
    we = ws + KW
    ws = ws if ws > 0 else 0
    we = we if we < W else W
    best_i = hs * W + ws
    for h in range(hs, he):
        for w in range(ws, we):
            idx = h * W + w
            t = _takes(X[idx], X[best_i])
            best_i += (-t) & (idx - best_i)
    Y[oh * OW + ow] = X[best_i]
    arg[oh * OW + ow] = <int>best_i


cdef inline void _maxpool_row_seg(const floating* X, floating* Y, int* arg, Py_ssize_t base,
                                  Py_ssize_t KH, Py_ssize_t W, Py_ssize_t KW, Py_ssize_t SW,
                                  Py_ssize_t n) noexcept nogil:
    """n <= 32 consecutive outputs of one output row whose KH x KW windows start at
    base + o SW (o < n) and lie inside the plane: the row-major scan of every window, run for the
    n windows side by side (independent running maxima instead of one chain of dependent loads
    and compares; same winner, NaN rule included)."""
    cdef floating m[32]
    cdef int bi[32]
    cdef Py_ssize_t o, kh, kw, off
    cdef floating v
    cdef int t
    for o in range(n):
        m[o] = X[base + o * SW]
        bi[o] = <int>(base + o * SW)
    for kh in range(KH):
        for kw in range(KW):
            if kh == 0 and kw == 0:
                continue
            off = base + kh * W + kw
            # constant strides let gcc vectorise the loads (stride 2: deinterleaving shuffles)
            if SW == 1:
                for o in range(n):
                    v = X[off + o]
                    t = (v > m[o]) | (v != v)
                    m[o] = v if t else m[o]
                    bi[o] = <int>(off + o) if t else bi[o]
            elif SW == 2:
                for o in range(n):
                    v = X[off + 2 * o]
                    t = (v > m[o]) | (v != v)
                    m[o] = v if t else m[o]
                    bi[o] = <int>(off + 2 * o) if t else bi[o]
            else:
                for o in range(n):
                    v = X[off + o * SW]
                    t = (v > m[o]) | (v != v)
                    m[o] = v if t else m[o]
                    bi[o] = <int>(off + o * SW) if t else bi[o]
    for o in range(n):
        Y[o] = m[o]
        arg[o] = bi[o]


cdef void _maxpool2d_forward(const floating* X, floating* Y, int* arg, Py_ssize_t NC,
                             Py_ssize_t H, Py_ssize_t W, Py_ssize_t KH, Py_ssize_t KW,
                             Py_ssize_t SH, Py_ssize_t SW, Py_ssize_t PH, Py_ssize_t PW,
                             Py_ssize_t OH, Py_ssize_t OW, int n_threads) noexcept nogil:
    _per_plane(OP_MAX_FWD, X, NULL, Y, arg, NC, H, W, KH, KW, SH, SW, PH, PW, OH, OW, False,
               n_threads)


cdef inline void _maxpool_one(const floating* X, floating* Y, int* arg, Py_ssize_t i,
                              Py_ssize_t H, Py_ssize_t W, Py_ssize_t KH, Py_ssize_t KW,
                              Py_ssize_t SH, Py_ssize_t SW, Py_ssize_t PH, Py_ssize_t PW,
                              Py_ssize_t OH, Py_ssize_t OW) noexcept nogil:
    """Plane i: the unrolled 2x2 stride-2 kernel when it applies, else the generic one."""
    if KH == 2 and KW == 2 and SH == 2 and SW == 2 and PH == 0 and PW == 0:
        _maxpool2x2_plane(X + i * H * W, Y + i * OH * OW, arg + i * OH * OW, W, OH, OW)
    else:
        _maxpool_plane(X + i * H * W, Y + i * OH * OW, arg + i * OH * OW, H, W, KH, KW, SH, SW,
                       PH, PW, OH, OW)


cdef void _maxpool2d_backward(const floating* dY, const int* arg, floating* dX, Py_ssize_t NC,
                              Py_ssize_t HW, Py_ssize_t P, int n_threads) noexcept nogil:
    """dX = 0; dX[plane, arg[plane, p]] += dY[plane, p]  (arg values checked by the caller)."""
    # planes of HW inputs and P outputs: (H, W) = (HW, 1) and (OH, OW) = (P, 1) carry the sizes
    _per_plane(OP_MAX_BWD, dY, arg, dX, NULL, NC, HW, 1, 1, 1, 1, 1, 0, 0, P, 1, False,
               n_threads)


cdef inline void _maxpool_back_plane(const floating* dY, const int* arg, floating* dX,
                                     Py_ssize_t HW, Py_ssize_t P) noexcept nogil:
    cdef Py_ssize_t p
    memset(dX, 0, HW * sizeof(floating))
    for p in range(P):
        dX[arg[p]] += dY[p]


cdef void _avgpool2d_forward(const floating* X, floating* Y, Py_ssize_t NC, Py_ssize_t H,
                             Py_ssize_t W, Py_ssize_t KH, Py_ssize_t KW, Py_ssize_t SH,
                             Py_ssize_t SW, Py_ssize_t PH, Py_ssize_t PW, Py_ssize_t OH,
                             Py_ssize_t OW, bint include_pad, int n_threads) noexcept nogil:
    """Y[plane, oh, ow] = mean of the window."""
    _per_plane(OP_AVG_FWD, X, NULL, Y, NULL, NC, H, W, KH, KW, SH, SW, PH, PW, OH, OW,
               include_pad, n_threads)


cdef inline void _avgpool_one(const floating* X, floating* Y, Py_ssize_t H, Py_ssize_t W,
                              Py_ssize_t KH, Py_ssize_t KW, Py_ssize_t SH, Py_ssize_t SW,
                              Py_ssize_t PH, Py_ssize_t PW, Py_ssize_t OH, Py_ssize_t OW,
                              bint include_pad) noexcept nogil:
    if PH or PW:
        _avgpool_plane_pad(X, Y, H, W, KH, KW, SH, SW, PH, PW, OH, OW, include_pad)
    else:
        _avgpool_plane(X, Y, W, KH, KW, SH, SW, OH, OW)


cdef inline Py_ssize_t _clip_lo(Py_ssize_t v) noexcept nogil:
    return v if v > 0 else 0


cdef inline Py_ssize_t _clip_hi(Py_ssize_t v, Py_ssize_t n) noexcept nogil:
    return v if v < n else n


cdef void _avgpool_plane_pad(const floating* X, floating* Y, Py_ssize_t H, Py_ssize_t W,
                             Py_ssize_t KH, Py_ssize_t KW, Py_ssize_t SH, Py_ssize_t SW,
                             Py_ssize_t PH, Py_ssize_t PW, Py_ssize_t OH, Py_ssize_t OW,
                             bint include_pad) noexcept nogil:
    """Window sums over the part inside the input, divided by KH KW (include_pad) or by the
    number of input values in the window."""
    cdef Py_ssize_t oh, ow, h, w, h0, hs, he, w0, ws, we
    cdef floating acc
    for oh in range(OH):
        h0 = oh * SH - PH
        hs = _clip_lo(h0)
        he = _clip_hi(h0 + KH, H)
        for ow in range(OW):
            w0 = ow * SW - PW
            ws = _clip_lo(w0)
            we = _clip_hi(w0 + KW, W)
            acc = 0
            for h in range(hs, he):
                for w in range(ws, we):
                    acc = acc + X[h * W + w]
            Y[oh * OW + ow] = acc / <floating>(KH * KW if include_pad else (he - hs) * (we - ws))


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
                              Py_ssize_t SW, Py_ssize_t PH, Py_ssize_t PW, Py_ssize_t OH,
                              Py_ssize_t OW, bint include_pad, int n_threads) noexcept nogil:
    """dX = 0; dX[window(oh, ow)] += dY[oh, ow] / (window divisor)."""
    _per_plane(OP_AVG_BWD, dY, NULL, dX, NULL, NC, H, W, KH, KW, SH, SW, PH, PW, OH, OW,
               include_pad, n_threads)


cdef inline void _avgpool_back_one(const floating* dY, floating* dX, Py_ssize_t H, Py_ssize_t W,
                                   Py_ssize_t KH, Py_ssize_t KW, Py_ssize_t SH, Py_ssize_t SW,
                                   Py_ssize_t PH, Py_ssize_t PW, Py_ssize_t OH, Py_ssize_t OW,
                                   bint include_pad) noexcept nogil:
    if PH or PW:
        _avgpool_back_plane_pad(dY, dX, H, W, KH, KW, SH, SW, PH, PW, OH, OW, include_pad)
    else:
        _avgpool_back_plane(dY, dX, H, W, KH, KW, SH, SW, OH, OW)


cdef void _avgpool_back_plane_pad(const floating* dY, floating* dX, Py_ssize_t H, Py_ssize_t W,
                                  Py_ssize_t KH, Py_ssize_t KW, Py_ssize_t SH, Py_ssize_t SW,
                                  Py_ssize_t PH, Py_ssize_t PW, Py_ssize_t OH, Py_ssize_t OW,
                                  bint include_pad) noexcept nogil:
    cdef Py_ssize_t oh, ow, h, w, h0, hs, he, w0, ws, we
    cdef floating g
    memset(dX, 0, H * W * sizeof(floating))
    for oh in range(OH):
        h0 = oh * SH - PH
        hs = _clip_lo(h0)
        he = _clip_hi(h0 + KH, H)
        for ow in range(OW):
            w0 = ow * SW - PW
            ws = _clip_lo(w0)
            we = _clip_hi(w0 + KW, W)
            g = dY[oh * OW + ow] / <floating>(KH * KW if include_pad else (he - hs) * (we - ws))
            for h in range(hs, he):
                for w in range(ws, we):
                    dX[h * W + w] += g


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


# ---------------------------------------------------------------- global pooling
# Channels first: rows r = (n, c) of S contiguous positions.  Channels last: per sample, S rows
# of C channels; the loops over c are contiguous (they vectorise) and the position of the max is
# tracked per channel with selects, as in _maxpool2x2_plane.

cdef void _gavg_cf_rows(const floating* X, floating* Y, Py_ssize_t r0, Py_ssize_t r1,
                        Py_ssize_t S) noexcept nogil:
    cdef Py_ssize_t r
    for r in range(r0, r1):
        Y[r] = <floating>(_sum(X + r * S, S) / <double>S)


cdef void _gmax_cf_rows(const floating* X, floating* Y, int* arg, Py_ssize_t r0, Py_ssize_t r1,
                        Py_ssize_t S) noexcept nogil:
    cdef Py_ssize_t r, j, best, t
    cdef const floating* x
    for r in range(r0, r1):
        x = X + r * S
        best = 0
        for j in range(1, S):
            t = _takes(x[j], x[best])
            best += (-t) & (j - best)
        Y[r] = x[best]
        arg[r] = <int>best


cdef void _gavg_cl_samples(const floating* X, floating* Y, Py_ssize_t n0, Py_ssize_t n1,
                           Py_ssize_t S, Py_ssize_t C) noexcept nogil:
    cdef Py_ssize_t n, s, c
    cdef floating scale = <floating>(1.0 / <double>S)
    cdef const floating* x
    cdef floating* y
    for n in range(n0, n1):
        y = Y + n * C
        x = X + n * S * C
        for c in range(C):
            y[c] = x[c]
        for s in range(1, S):
            x = X + (n * S + s) * C
            for c in range(C):
                y[c] = y[c] + x[c]
        for c in range(C):
            y[c] = y[c] * scale


cdef void _gmax_cl_samples(const floating* X, floating* Y, int* arg, Py_ssize_t n0,
                           Py_ssize_t n1, Py_ssize_t S, Py_ssize_t C) noexcept nogil:
    cdef Py_ssize_t n, s, c
    cdef int t, si
    cdef floating v
    cdef const floating* x
    cdef floating* y
    cdef int* a
    for n in range(n0, n1):
        y = Y + n * C
        a = arg + n * C
        x = X + n * S * C
        for c in range(C):
            y[c] = x[c]
            a[c] = 0
        for s in range(1, S):
            x = X + (n * S + s) * C
            si = <int>s
            for c in range(C):
                v = x[c]
                t = (v > y[c]) | (v != v)
                y[c] = v if t else y[c]
                a[c] = si if t else a[c]


# Masked channels last ((N, T, F) sequences with a padding mask M (N, T) uint8, 1 = a real
# position): only the real positions are pooled.  A sample with no real position gives 0 and a
# zero gradient (as the attention kernel's rows with no key).  The mask is read once per position
# (a branch per row of C values, not per value), so the inner loops over c stay those above.

cdef void _gavg_cl_masked(const floating* X, const unsigned char* M, floating* Y, Py_ssize_t n0,
                          Py_ssize_t n1, Py_ssize_t S, Py_ssize_t C) noexcept nogil:
    """Y[n] = sum of X[n, s] over the real positions s / their number (0 if none)."""
    cdef Py_ssize_t n, s, c, count
    cdef floating scale
    cdef const floating* x
    cdef const unsigned char* m
    cdef floating* y
    for n in range(n0, n1):
        y = Y + n * C
        m = M + n * S
        for c in range(C):
            y[c] = 0
        count = 0
        for s in range(S):
            if m[s]:
                count += 1
                x = X + (n * S + s) * C
                for c in range(C):
                    y[c] = y[c] + x[c]
        if count > 1:
            scale = <floating>(1.0 / <double>count)
            for c in range(C):
                y[c] = y[c] * scale


cdef void _gmax_cl_masked(const floating* X, const unsigned char* M, floating* Y, int* arg,
                          Py_ssize_t n0, Py_ssize_t n1, Py_ssize_t S, Py_ssize_t C) noexcept nogil:
    """Y[n] = max of X[n, s] over the real positions s, arg[n] = the first such s (a NaN wins:
    the last NaN); no real position: Y[n] = 0 and arg[n] = 0 (backward then gives 0, since
    position 0 is padding)."""
    cdef Py_ssize_t n, s, s0, c
    cdef int t, si
    cdef floating v
    cdef const floating* x
    cdef const unsigned char* m
    cdef floating* y
    cdef int* a
    for n in range(n0, n1):
        y = Y + n * C
        a = arg + n * C
        m = M + n * S
        s0 = 0
        while s0 < S and not m[s0]:
            s0 += 1
        if s0 == S:
            for c in range(C):
                y[c] = 0
                a[c] = 0
            continue
        x = X + (n * S + s0) * C
        si = <int>s0
        for c in range(C):
            y[c] = x[c]
            a[c] = si
        for s in range(s0 + 1, S):
            if not m[s]:
                continue
            x = X + (n * S + s) * C
            si = <int>s
            for c in range(C):
                v = x[c]
                t = (v > y[c]) | (v != v)
                y[c] = v if t else y[c]
                a[c] = si if t else a[c]


cdef void _global_back_cl_masked(const floating* dY, const int* arg, const unsigned char* M,
                                 floating* dX, Py_ssize_t n0, Py_ssize_t n1, Py_ssize_t S,
                                 Py_ssize_t C, bint is_max) noexcept nogil:
    """Samples [n0, n1): mean: dX[n, s] = dY[n] / (real positions) at the real positions, 0 at
    the padded ones; max: dY[n, c] at arg[n, c] when that position is real, 0 elsewhere."""
    cdef Py_ssize_t n, s, c, count
    cdef floating scale
    cdef const floating* dy
    cdef const unsigned char* m
    cdef floating* dx
    cdef const int* a
    for n in range(n0, n1):
        dy = dY + n * C
        m = M + n * S
        if is_max:
            memset(dX + n * S * C, 0, S * C * sizeof(floating))
            a = arg + n * C
            for c in range(C):
                if m[a[c]]:
                    dX[(n * S + a[c]) * C + c] = dy[c]
            continue
        count = 0
        for s in range(S):
            count += m[s] != 0
        scale = <floating>(1.0 / <double>count) if count > 0 else <floating>0
        for s in range(S):
            dx = dX + (n * S + s) * C
            if m[s]:
                for c in range(C):
                    dx[c] = dy[c] * scale
            else:
                memset(dx, 0, C * sizeof(floating))


cdef void _global_pool_forward(const floating* X, floating* Y, int* arg, Py_ssize_t N,
                               Py_ssize_t S, Py_ssize_t C, bint channels_last, bint is_max,
                               const unsigned char* mask, int n_threads) noexcept nogil:
    """Y (N, C) = mean / max over the S positions of X (the real ones only when `mask`, (N, S),
    is not NULL: channels last only)."""
    _global_jobs(True, X, NULL, Y, arg, N, S, C, channels_last, is_max, mask, n_threads)


cdef inline void _global_pool_chunk(const floating* X, floating* Y, int* arg, Py_ssize_t i0,
                                    Py_ssize_t i1, Py_ssize_t S, Py_ssize_t C, bint channels_last,
                                    bint is_max, const unsigned char* mask) noexcept nogil:
    if mask != NULL:
        if is_max:
            _gmax_cl_masked(X, mask, Y, arg, i0, i1, S, C)
        else:
            _gavg_cl_masked(X, mask, Y, i0, i1, S, C)
    elif channels_last:
        if is_max:
            _gmax_cl_samples(X, Y, arg, i0, i1, S, C)
        else:
            _gavg_cl_samples(X, Y, i0, i1, S, C)
    elif is_max:
        _gmax_cf_rows(X, Y, arg, i0, i1, S)
    else:
        _gavg_cf_rows(X, Y, i0, i1, S)


cdef void _global_back_chunk(const floating* dY, const int* arg, floating* dX, Py_ssize_t i0,
                             Py_ssize_t i1, Py_ssize_t S, Py_ssize_t C, bint channels_last,
                             bint is_max, const unsigned char* mask) noexcept nogil:
    """Items [i0, i1) (samples when channels last, else (n, c) rows): dX = dY / S over the
    positions, or dY at the argmax and 0 elsewhere (masked: _global_back_cl_masked)."""
    cdef Py_ssize_t i, s, c
    cdef floating scale = <floating>(1.0 / <double>S)
    cdef floating g
    cdef floating* dx
    cdef const floating* dy
    if mask != NULL:
        _global_back_cl_masked(dY, arg, mask, dX, i0, i1, S, C, is_max)
    elif channels_last:
        for i in range(i0, i1):
            dy = dY + i * C
            if is_max:
                memset(dX + i * S * C, 0, S * C * sizeof(floating))
                for c in range(C):
                    dX[(i * S + arg[i * C + c]) * C + c] = dy[c]
            else:
                for s in range(S):
                    dx = dX + (i * S + s) * C
                    for c in range(C):
                        dx[c] = dy[c] * scale
    else:
        for i in range(i0, i1):
            dx = dX + i * S
            if is_max:
                memset(dx, 0, S * sizeof(floating))
                dx[arg[i]] = dY[i]
            else:
                g = dY[i] * scale
                for s in range(S):
                    dx[s] = g


cdef void _global_pool_backward(const floating* dY, const int* arg, floating* dX, Py_ssize_t N,
                                Py_ssize_t S, Py_ssize_t C, bint channels_last, bint is_max,
                                const unsigned char* mask, int n_threads) noexcept nogil:
    _global_jobs(False, dY, arg, dX, NULL, N, S, C, channels_last, is_max, mask, n_threads)


# ---------------------------------------------------------------- passes as jobs
# Each pass runs as up to MAX_JOBS jobs, each a static share of the N C planes (window pools) or
# of the items (global pools: samples when channels last, else (n, c) rows), through the thread
# policy's _par_run (1 job below its WORK_POOL threshold).  Items are independent, so any split
# gives the same bytes.

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
    Py_ssize_t H, W, KH, KW, SH, SW, PH, PW, OH, OW
    bint include_pad


cdef void _plane_rows(PlaneJob* j, floating tag) noexcept nogil:
    """Planes [j.lo, j.hi) of pass j.op (`tag` only selects the floating type)."""
    cdef const floating* src = <const floating*>j.src
    cdef floating* dst = <floating*>j.dst
    cdef Py_ssize_t i, HW = j.H * j.W, P = j.OH * j.OW
    for i in range(j.lo, j.hi):
        if j.op == OP_MAX_FWD:
            _maxpool_one(src, dst, j.arg_out, i, j.H, j.W, j.KH, j.KW, j.SH, j.SW, j.PH, j.PW,
                         j.OH, j.OW)
        elif j.op == OP_MAX_BWD:
            _maxpool_back_plane(src + i * P, j.arg_in + i * P, dst + i * HW, HW, P)
        elif j.op == OP_AVG_FWD:
            _avgpool_one(src + i * HW, dst + i * P, j.H, j.W, j.KH, j.KW, j.SH, j.SW, j.PH, j.PW,
                         j.OH, j.OW, j.include_pad)
        else:
            _avgpool_back_one(src + i * P, dst + i * HW, j.H, j.W, j.KH, j.KW, j.SH, j.SW, j.PH,
                              j.PW, j.OH, j.OW, j.include_pad)


cdef void _plane_job(void* p) noexcept nogil:
    cdef PlaneJob* j = <PlaneJob*>p
    if j.dbl:
        _plane_rows(j, <double>0)
    else:
        _plane_rows(j, <float>0)


cdef void _per_plane(int op, const floating* src, const int* arg_in, floating* dst, int* arg_out,
                     Py_ssize_t NC, Py_ssize_t H, Py_ssize_t W, Py_ssize_t KH, Py_ssize_t KW,
                     Py_ssize_t SH, Py_ssize_t SW, Py_ssize_t PH, Py_ssize_t PW, Py_ssize_t OH,
                     Py_ssize_t OW, bint include_pad, int n_threads) noexcept nogil:
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
        jobs[t].PH = PH
        jobs[t].PW = PW
        jobs[t].OH = OH
        jobs[t].OW = OW
        jobs[t].include_pad = include_pad
    _par_run(nt, _plane_job, jobs, sizeof(PlaneJob))
    _par_end(nt)


cdef struct GlobalJob:
    bint forward, dbl, channels_last, is_max
    const void* src         # X (forward) or dY (backward)
    const int* arg_in       # max backward: the argmax indices
    void* dst               # Y (forward) or dX (backward)
    int* arg_out            # max forward: the argmax indices
    const unsigned char* mask   # (N, S) padding mask (channels last), or NULL
    Py_ssize_t lo, hi       # items [lo, hi)
    Py_ssize_t S, C


cdef void _global_items(GlobalJob* j, floating tag) noexcept nogil:
    if j.forward:
        _global_pool_chunk(<const floating*>j.src, <floating*>j.dst, j.arg_out, j.lo, j.hi, j.S,
                           j.C, j.channels_last, j.is_max, j.mask)
    else:
        _global_back_chunk(<const floating*>j.src, j.arg_in, <floating*>j.dst, j.lo, j.hi, j.S,
                           j.C, j.channels_last, j.is_max, j.mask)


cdef void _global_job(void* p) noexcept nogil:
    cdef GlobalJob* j = <GlobalJob*>p
    if j.dbl:
        _global_items(j, <double>0)
    else:
        _global_items(j, <float>0)


cdef void _global_jobs(bint forward, const floating* src, const int* arg_in, floating* dst,
                       int* arg_out, Py_ssize_t N, Py_ssize_t S, Py_ssize_t C,
                       bint channels_last, bint is_max, const unsigned char* mask,
                       int n_threads) noexcept nogil:
    """A global pass over N S C elements as jobs over the items (a mask needs channels last:
    the items are then the samples)."""
    cdef GlobalJob jobs[MAX_JOBS]
    cdef Py_ssize_t items = N if channels_last else N * C
    cdef int nt, t
    if items <= 0:
        return
    nt = _threads_for(n_threads, items, N * S * C)
    for t in range(nt):
        jobs[t].forward = forward
        jobs[t].dbl = floating is double
        jobs[t].channels_last = channels_last
        jobs[t].is_max = is_max
        jobs[t].src = src
        jobs[t].arg_in = arg_in
        jobs[t].dst = dst
        jobs[t].arg_out = arg_out
        jobs[t].mask = mask
        jobs[t].lo = _chunk_lo(items, nt, t)
        jobs[t].hi = _chunk_lo(items, nt, t + 1)
        jobs[t].S = S
        jobs[t].C = C
    _par_run(nt, _global_job, jobs, sizeof(GlobalJob))
    _par_end(nt)


# ---------------------------------------------------------------- validation

def pool_output_size(Py_ssize_t size, Py_ssize_t kernel, Py_ssize_t stride,
                     Py_ssize_t padding=0):
    """(size + 2 padding - kernel) // stride + 1, or raise ValueError on illegal geometry
    (padding at most kernel // 2, as PyTorch: every window then holds an input value)."""
    if kernel < 1 or stride < 1 or size < 1 or padding < 0:
        raise ValueError(f"illegal pooling geometry: size={size}, pool={kernel}, stride={stride}, "
                         f"padding={padding} (sizes must be >= 1, padding >= 0)")
    if padding > kernel // 2:
        raise ValueError(f"padding {padding} is more than half the pool size {kernel}")
    if kernel > size + 2 * padding:
        raise ValueError(f"pool size {kernel} is larger than the input {size}"
                         + (f" padded by {padding} on each side" if padding else ""))
    return (size + 2 * padding - kernel) // stride + 1


cdef tuple _check_pool(Py_ssize_t* X_shape, Py_ssize_t* Y_shape, Py_ssize_t KH, Py_ssize_t KW,
                       Py_ssize_t SH, Py_ssize_t SW, int n_threads, str who, Py_ssize_t PH=0,
                       Py_ssize_t PW=0):
    """Validate shapes; return (OH, OW)."""
    cdef Py_ssize_t OH, OW, HW
    if n_threads < 1:
        raise ValueError(f"{who}: n_threads must be >= 1, got {n_threads}")
    try:
        OH = pool_output_size(X_shape[2], KH, SH, PH)
        OW = pool_output_size(X_shape[3], KW, SW, PW)
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
                      Py_ssize_t SH, Py_ssize_t SW, int n_threads=1, Py_ssize_t PH=0,
                      Py_ssize_t PW=0):
    """Y_out = max over each KH x KW window (stride SH, SW; padding PH, PW with -inf);
    argmax_out = flat in-plane index of the input value."""
    cdef Py_ssize_t OH, OW
    OH, OW = _check_pool(X.shape, Y_out.shape, KH, KW, SH, SW, n_threads, "maxpool2d_forward",
                         PH, PW)
    if (argmax_out.shape[0], argmax_out.shape[1], argmax_out.shape[2], argmax_out.shape[3]) != \
            (Y_out.shape[0], Y_out.shape[1], Y_out.shape[2], Y_out.shape[3]):
        raise ValueError("maxpool2d_forward: argmax_out must have the shape of Y_out")
    if X.shape[0] == 0 or X.shape[1] == 0:
        return
    with nogil:
        _maxpool2d_forward(&X[0, 0, 0, 0], &Y_out[0, 0, 0, 0], &argmax_out[0, 0, 0, 0],
                           X.shape[0] * X.shape[1], X.shape[2], X.shape[3], KH, KW, SH, SW,
                           PH, PW, OH, OW, n_threads)


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
                      Py_ssize_t KH, Py_ssize_t KW, Py_ssize_t SH, Py_ssize_t SW, int n_threads=1,
                      Py_ssize_t PH=0, Py_ssize_t PW=0, bint count_include_pad=True):
    """Y_out = mean over each KH x KW window (stride SH, SW; padding PH, PW: the window sum over
    the input divided by KH KW when count_include_pad, else by the input values it holds)."""
    cdef Py_ssize_t OH, OW
    OH, OW = _check_pool(X.shape, Y_out.shape, KH, KW, SH, SW, n_threads, "avgpool2d_forward",
                         PH, PW)
    if X.shape[0] == 0 or X.shape[1] == 0:
        return
    with nogil:
        _avgpool2d_forward(&X[0, 0, 0, 0], &Y_out[0, 0, 0, 0], X.shape[0] * X.shape[1],
                           X.shape[2], X.shape[3], KH, KW, SH, SW, PH, PW, OH, OW,
                           count_include_pad, n_threads)


def avgpool2d_backward(const floating[:, :, :, ::1] dY, floating[:, :, :, ::1] dX_out,
                       Py_ssize_t KH, Py_ssize_t KW, Py_ssize_t SH, Py_ssize_t SW, int n_threads=1,
                       Py_ssize_t PH=0, Py_ssize_t PW=0, bint count_include_pad=True):
    """dX_out = 0, then dY / (the forward's divisor) added over each window's input values."""
    cdef Py_ssize_t OH, OW
    OH, OW = _check_pool(dX_out.shape, dY.shape, KH, KW, SH, SW, n_threads, "avgpool2d_backward",
                         PH, PW)
    if dX_out.shape[0] == 0 or dX_out.shape[1] == 0:
        return
    with nogil:
        _avgpool2d_backward(&dY[0, 0, 0, 0], &dX_out[0, 0, 0, 0], dX_out.shape[0] * dX_out.shape[1],
                            dX_out.shape[2], dX_out.shape[3], KH, KW, SH, SW, PH, PW, OH, OW,
                            count_include_pad, n_threads)


cdef tuple _global_dims(Py_ssize_t* X_shape, Py_ssize_t* Y_shape, bint channels_last,
                        int n_threads, str who):
    """(N, S, C) of X (N, C, S) or (N, S, C); Y must be (N, C)."""
    cdef Py_ssize_t N = X_shape[0], S, C
    if n_threads < 1:
        raise ValueError(f"{who}: n_threads must be >= 1, got {n_threads}")
    if channels_last:
        S, C = X_shape[1], X_shape[2]
    else:
        C, S = X_shape[1], X_shape[2]
    if (Y_shape[0], Y_shape[1]) != (N, C):
        raise ValueError(f"{who}: output/gradient has shape {(Y_shape[0], Y_shape[1])}, "
                         f"expected {(N, C)}")
    if S > 2147483647:
        raise ValueError(f"{who}: more than 2**31 positions to pool over")
    return N, S, C


cdef const unsigned char* _mask_ptr(const unsigned char[:, ::1] mask, Py_ssize_t N,
                                    Py_ssize_t S, bint channels_last, str who) except? NULL:
    """The padding mask's data, checked ((N, S) uint8, channels last only), or NULL for None."""
    if mask is None:
        return NULL
    if not channels_last:
        raise ValueError(f"{who}: a padding mask needs channels_last=True ((N, T, F) sequences)")
    if (mask.shape[0], mask.shape[1]) != (N, S):
        raise ValueError(f"{who}: mask has shape {(mask.shape[0], mask.shape[1])}, expected "
                         f"{(N, S)}")
    return &mask[0, 0]


def global_avgpool_forward(const floating[:, :, ::1] X, floating[:, ::1] Y_out,
                           bint channels_last=False, int n_threads=1,
                           const unsigned char[:, ::1] mask=None):
    """Y_out[n, c] = mean over the S positions of X (N, C, S), or (N, S, C) if channels_last;
    with mask (N, S) uint8 (channels last): over the positions s with mask[n, s] != 0 only, 0
    for a sample with none."""
    cdef Py_ssize_t N, S, C
    cdef const unsigned char* m
    N, S, C = _global_dims(X.shape, Y_out.shape, channels_last, n_threads,
                           "global_avgpool_forward")
    m = _mask_ptr(mask, N, S, channels_last, "global_avgpool_forward")
    if N == 0 or C == 0:
        return
    if S == 0:
        raise ValueError("global_avgpool_forward: no positions to pool over")
    with nogil:
        _global_pool_forward(&X[0, 0, 0], &Y_out[0, 0], NULL, N, S, C, channels_last, False,
                             m, n_threads)


def global_avgpool_backward(const floating[:, ::1] dY, floating[:, :, ::1] dX_out,
                            bint channels_last=False, int n_threads=1,
                            const unsigned char[:, ::1] mask=None):
    """dX_out = dY / S at every position; with mask (as forward): dY / (the sample's real
    positions) at its real positions and 0 at the padded ones (all 0 for a sample with none)."""
    cdef Py_ssize_t N, S, C
    cdef const unsigned char* m
    N, S, C = _global_dims(dX_out.shape, dY.shape, channels_last, n_threads,
                           "global_avgpool_backward")
    m = _mask_ptr(mask, N, S, channels_last, "global_avgpool_backward")
    if N == 0 or C == 0 or S == 0:
        return
    with nogil:
        _global_pool_backward(&dY[0, 0], NULL, &dX_out[0, 0, 0], N, S, C, channels_last, False,
                              m, n_threads)


def global_maxpool_forward(const floating[:, :, ::1] X, floating[:, ::1] Y_out,
                           int[:, ::1] argmax_out, bint channels_last=False, int n_threads=1,
                           const unsigned char[:, ::1] mask=None):
    """Y_out[n, c] = max over the S positions; argmax_out[n, c] = the position of the first
    maximum (a NaN wins: the last NaN).  With mask (N, S) uint8 (channels last): over the
    positions s with mask[n, s] != 0 only; a sample with none gets Y_out 0 and argmax_out 0."""
    cdef Py_ssize_t N, S, C
    cdef const unsigned char* m
    N, S, C = _global_dims(X.shape, Y_out.shape, channels_last, n_threads,
                           "global_maxpool_forward")
    if (argmax_out.shape[0], argmax_out.shape[1]) != (N, C):
        raise ValueError("global_maxpool_forward: argmax_out must have the shape of Y_out")
    m = _mask_ptr(mask, N, S, channels_last, "global_maxpool_forward")
    if N == 0 or C == 0:
        return
    if S == 0:
        raise ValueError("global_maxpool_forward: no positions to pool over")
    with nogil:
        _global_pool_forward(&X[0, 0, 0], &Y_out[0, 0], &argmax_out[0, 0], N, S, C,
                             channels_last, True, m, n_threads)


def global_maxpool_backward(const floating[:, ::1] dY, const int[:, ::1] argmax,
                            floating[:, :, ::1] dX_out, bint channels_last=False,
                            int n_threads=1, const unsigned char[:, ::1] mask=None):
    """dX_out = 0, then dY[n, c] at position argmax[n, c] (every index checked first); with
    mask (as forward): only where that position is real (so 0 for a sample with none)."""
    cdef Py_ssize_t N, S, C, i, n_bad = 0
    cdef unsigned int uS
    cdef const int* a
    cdef const unsigned char* m
    N, S, C = _global_dims(dX_out.shape, dY.shape, channels_last, n_threads,
                           "global_maxpool_backward")
    if (argmax.shape[0], argmax.shape[1]) != (N, C):
        raise ValueError("global_maxpool_backward: argmax must have the shape of dY")
    m = _mask_ptr(mask, N, S, channels_last, "global_maxpool_backward")
    if N == 0 or C == 0 or S == 0:
        return
    a = &argmax[0, 0]
    uS = <unsigned int>S
    with nogil:
        for i in range(N * C):
            n_bad += <unsigned int>a[i] >= uS
    if n_bad:
        raise ValueError(f"global_maxpool_backward: {n_bad} argmax entries outside [0, {S})")
    with nogil:
        _global_pool_backward(&dY[0, 0], a, &dX_out[0, 0, 0], N, S, C, channels_last, True,
                              m, n_threads)
