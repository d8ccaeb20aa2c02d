"""Recurrent kernels: SimpleRNN, LSTM and GRU, forward and backward through time.

Dimensions: N samples, T time steps, F input features, U units, D = F + U, G = gates * U
pre-activation rows (SimpleRNN G = U; LSTM G = 4U, blocks i, f, g, o; GRU G = 3U, blocks r, z, n).

Layout.  The layer input X is batch-major (N, T, F); every history below is FEATURE-major (one row
per feature / unit / gate, then time, then sample), so that
  * the input projection of all T steps is one GEMM, P (G, T*N) = W_x^T Z[:F], and the weight
    gradients are one GEMM, [dW_x; dW_h] = Z[:, :T] dP^T (both over all T*N columns);
  * the per-step products put W_h on the side OpenBLAS packs fastest: forward
    P[:, s] += W_h^T h_{s-1} with W_h^T stored (G, U), backward dh = W_h dP[:, s].
Measured against the batch-major layout at N = 64, U = 128, F = 28 (float32, one thread): the
per-step GEMMs are 13% (forward) and 7% (backward) faster, the weight-gradient GEMM 8% faster.

    Z    (D, T+1, N)  rows [x (F) | h (U)]: Z[:F, s] = x_s (X reordered once per forward),
                      Z[F:, s] = h_{s-1} written by the gate kernels (h_{-1} = 0; slot T holds the
                      last state, its x part is unused).  x and h share the columns so ONE GEMM
                      Z[:, :T] dP^T gives dW_x and dW_h when the two gradient views are adjacent in
                      memory (the network's layout): dP is packed once and the thin F-row product
                      disappears (~10% of the weight-gradient time at F = 28, U = 128).
    P    (G, T, N)    forward: pre-activations, then the activated gates (written back in place);
                      backward: d(pre-activations) (the gate history is CONSUMED by backward)
    C    (U, T+1, N)  LSTM cell states, C[:, 0] = c_0 = 0;   TC (U, T, N) = tanh(c_t)
    HH   (G, N)       GRU scratch: W_h^T h_{s-1} of the current step
    HN   (U, T, N)    GRU history of W_hn^T h_{s-1} + b_hn (dr needs it)
    Q    (G, T, N)    GRU d(hidden pre-activations): equals P except in the n block (dn * r)
    WhT  (G, U)       W_h^T, transposed once per forward
    acc  (G, N)       bias-gradient accumulator (GRU: (2G, N), x then h biases): summing the rows
                      of dP over n inside each step would be a scalar reduction
    dXf  (F, T, N)    input gradient before it is reordered into dX (N, T, F)

Forward: P = W_x^T Z[:F] (ONE GEMM); per step s one GEMM P[:, s] += W_h^T h_{s-1} (GRU: HH) and a
fused gate kernel (bias, nonlinearities, cell update); the step-0 product is skipped (h_{-1} = 0).
Backward: per step a fused kernel turns the gates of step s into d(pre-activations) in place, the
bias gradients are accumulated, and one GEMM dh = W_h dP[:, s] carries the gradient to step s-1.
At the end [dW_x; dW_h] = Z[:, :T] dP^T is one GEMM (two when the gradient views are not adjacent,
and for the GRU, whose dW_h needs Q), dXf = W_x dP one GEMM, reordered into dX.

Memory.  Histories may have padded rows (row strides lp for the T-slot arrays P, TC, HN, Q and lz
for the T+1-slot ones Z, C; the layer makes them span an odd number of cache lines).  A step
touches one (rows, N) column block of every history, i.e. G separate rows that were written long
before (they come back from L3), so the gate kernels prefetch the rows of unit j + 2 while they
work on unit j (measured: backward gate kernels ~25% faster at N = 64, U = 128).

Outputs.  Y (N, Ty, U) receives h_t for every step (Ty = T, return_sequences) or the last state
(Ty = 1); Y and dY are addressed through element strides (sn, st) with a contiguous last axis, so
Bidirectional passes halves of its concatenated buffer.  reverse=True processes time backwards
(step s reads X[:, T-1-s] and writes Y[:, T-1-s]); the kernels do the reversal in their copies.

Nonlinearities: float64 uses libm exp/tanh.  float32 uses a branch-free exp (_expf_fast) written
so that gcc vectorises the gate loops at the baseline ISA (SSE2): libm's expf/tanhf calls stay
scalar and made the LSTM forward gates cost more than the step's GEMM.  _recurrent_avx2.pyx
compiles this same source for AVX2 + FMA (8 lanes, fused multiply-adds); nnc.layers._recurrent
imports it when cpu_has_avx2_fma() (measured: LSTM forward + backward at batch 64 7% faster, GRU
4%; the GEMMs are OpenBLAS's own, dispatched at run time either way).  Every float32 constant is
typed (a bare 1 in `1 - x` makes Cython emit 1.0 and the loop compute in double), and loops that
write several arrays are split (gcc gives up on more than ~10 run-time alias checks).
Gradients overwrite dW_x, dW_h and the biases.  All sizes are validated by the Python twins.
"""
from libc.math cimport exp, tanh
from libc.stdint cimport int32_t, uint32_t
from libc.string cimport memcpy, memset

from nnc._kernels._blas cimport floating, blas_int, _gemm, NoTrans, Trans_
from nnc._kernels._sizes cimport _checked_mul, _checked_add

cdef extern from *:
    """
    #if defined(__GNUC__) || defined(__clang__)
    #define NNC_PREFETCH(p) __builtin_prefetch((const void *)(p))
    #else
    #define NNC_PREFETCH(p) ((void)(p))
    #endif
    static int nnc_cpu_has_avx2_fma(void) {
    #if defined(__GNUC__) && !defined(__clang__) && (defined(__x86_64__) || defined(__i386__))
        __builtin_cpu_init();
        return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    #else
        return 0;
    #endif
    }
    """
    void NNC_PREFETCH(const void* p) noexcept nogil
    int nnc_cpu_has_avx2_fma() noexcept nogil


def cpu_has_avx2_fma():
    """True when the CPU (and OS) support AVX2 and FMA, so _recurrent_avx2 may be imported."""
    return bool(nnc_cpu_has_avx2_fma())


cdef union _F32Bits:
    float f
    int32_t i
    uint32_t u


cdef inline float _expf_fast(float x) noexcept nogil:
    """exp(x) in float32 as 2^k 2^f, k = round(x log2 e), |f| <= 1/2, branch-free so that gcc
    vectorises the loops calling it.  Relative error < 4e-7 for |x| < 10 (rounding of x log2 e
    grows it to ~3e-6 near |x| = 87); |x| is clamped to 87 (inf too), NaN propagates."""
    cdef _F32Bits u, s
    cdef float y, kf, f, p
    cdef int32_t ax, sign, clamp
    # clamp on the bit pattern: integer compares if-convert, float compares do not under gcc's
    # default -ftrapping-math (the loop would stay scalar)
    u.f = x
    ax = u.i & 0x7fffffff
    sign = u.i ^ ax
    clamp = (ax > 0x42ae0000) & (ax <= 0x7f800000)      # 87 < |x| <= inf; NaN is left alone
    ax = 0x42ae0000 if clamp else ax
    u.i = ax | sign
    y = u.f * <float>1.44269504088896341
    s.f = y + <float>12582912.0                           # 1.5 * 2^23: mantissa holds round(y)
    kf = s.f - <float>12582912.0
    f = y - kf
    # 2^f on [-1/2, 1/2]: near-minimax degree 5 (relative error 9e-8, 1.6 ulp in float Horner)
    p = <float>1.3264727080e-03
    p = p * f + <float>9.6715128622e-03
    p = p * f + <float>5.5507337456e-02
    p = p * f + <float>2.4022242082e-01
    p = p * f + <float>6.9314697760e-01
    p = p * f + <float>1.0
    s.u = (s.u - <uint32_t>0x4B3FFF81) << 23              # bits of 2^k: (k + 127) << 23
    return p * s.f


cdef inline floating _sigm(floating x) noexcept nogil:
    """1 / (1 + exp(-x))."""
    if floating is float:
        return <float>1.0 / (<float>1.0 + _expf_fast(-x))
    else:
        return 1.0 / (1.0 + exp(-x))


cdef inline floating _tanh(floating x) noexcept nogil:
    """tanh(x); float32 as 1 - 2 / (exp(2x) + 1) (absolute error ~1e-7)."""
    if floating is float:
        return <float>1.0 - <float>2.0 / (_expf_fast(<float>2.0 * x) + <float>1.0)
    else:
        return tanh(x)


# ---------------------------------------------------------------- shared helpers

cdef inline Py_ssize_t _tsrc(Py_ssize_t s, Py_ssize_t T, bint reverse) noexcept nogil:
    """Original time index of processing step s."""
    return T - 1 - s if reverse else s


cdef void _fill_z(const floating* X, floating* Z, Py_ssize_t lz, Py_ssize_t N, Py_ssize_t T,
                  Py_ssize_t F, Py_ssize_t U, bint reverse) noexcept nogil:
    """Z[f, s, n] = X[n, tsrc(s), f] for s < T;  Z[F:, 0, :] = h_{-1} = 0 (rows at stride lz)."""
    cdef Py_ssize_t s, n, t, f
    cdef const floating* x
    cdef floating* z
    for s in range(T):
        t = _tsrc(s, T, reverse)
        for n in range(N):
            x = X + (n * T + t) * F
            z = Z + s * N + n
            for f in range(F):
                z[f * lz] = x[f]
    for f in range(F, F + U):
        memset(Z + f * lz, 0, N * sizeof(floating))


cdef void _from_feature_major(const floating* dXf, floating* dX, Py_ssize_t N, Py_ssize_t T,
                              Py_ssize_t F, bint reverse) noexcept nogil:
    """dX[n, tsrc(s), f] = dXf[f, s, n]."""
    cdef Py_ssize_t s, n, t, f
    cdef Py_ssize_t TN = T * N
    cdef floating* x
    cdef const floating* d
    for s in range(T):
        t = _tsrc(s, T, reverse)
        for n in range(N):
            x = dX + (n * T + t) * F
            d = dXf + s * N + n
            for f in range(F):
                x[f] = d[f * TN]


cdef void _transpose(const floating* A, floating* AT, Py_ssize_t rows,
                     Py_ssize_t cols) noexcept nogil:
    """AT (cols, rows) = A (rows, cols)^T, in 32 x 32 tiles."""
    cdef Py_ssize_t i0, j0, i, j, i1, j1
    for i0 in range(0, rows, 32):
        i1 = min(i0 + 32, rows)
        for j0 in range(0, cols, 32):
            j1 = min(j0 + 32, cols)
            for i in range(i0, i1):
                for j in range(j0, j1):
                    AT[j * rows + i] = A[i * cols + j]


cdef void _write_output(const floating* Hs, Py_ssize_t lh, floating* Y, Py_ssize_t y_sn,
                        Py_ssize_t y_st, Py_ssize_t Ty, Py_ssize_t s, Py_ssize_t N, Py_ssize_t T,
                        Py_ssize_t U, bint reverse) noexcept nogil:
    """Y[n, tsrc(s), j] (Ty == T) or Y[n, 0, j] (last step) = Hs[j * lh + n]."""
    cdef Py_ssize_t n, j
    cdef floating* dst
    cdef floating* y
    if Ty == T and T > 1:
        dst = Y + _tsrc(s, T, reverse) * y_st
    elif s == T - 1:
        dst = Y
    else:
        return
    for n in range(N):
        y = dst + n * y_sn
        for j in range(U):
            y[j] = Hs[j * lh + n]


cdef void _add_dy(floating* dh, const floating* dY, Py_ssize_t dy_sn, Py_ssize_t dy_st,
                  Py_ssize_t Ty, Py_ssize_t s, Py_ssize_t N, Py_ssize_t T, Py_ssize_t U,
                  bint reverse) noexcept nogil:
    """dh[j, n] += dY[n, tsrc(s), j] (Ty == T) or dY[n, 0, j] (last step)."""
    cdef Py_ssize_t n, j
    cdef const floating* src
    cdef const floating* g
    if Ty == T and T > 1:
        src = dY + _tsrc(s, T, reverse) * dy_st
    elif s == T - 1:
        src = dY
    else:
        return
    for n in range(N):
        g = src + n * dy_sn
        for j in range(U):
            dh[j * N + n] += g[j]


cdef void _prefetch_rows(const floating* A, Py_ssize_t ld, Py_ssize_t rows,
                         Py_ssize_t N) noexcept nogil:
    """Prefetch hint for the (rows, N) block at A with row stride ld (one hint per 64 bytes)."""
    cdef Py_ssize_t r, k
    cdef Py_ssize_t step = 64 // sizeof(floating)
    for r in range(rows):
        for k in range((N + step - 1) // step):
            NNC_PREFETCH(A + r * ld + k * step)


cdef inline void _add_row(floating* a, const floating* p, Py_ssize_t N) noexcept nogil:
    """a[:N] += p[:N] (bias-gradient accumulation while the row is still in L1)."""
    cdef Py_ssize_t n
    for n in range(N):
        a[n] += p[n]


cdef void _row_sums(const floating* acc, floating* out, Py_ssize_t rows,
                    Py_ssize_t N) noexcept nogil:
    """out[r] = sum(acc[r, :])."""
    cdef Py_ssize_t r, n
    cdef floating t
    for r in range(rows):
        t = 0
        for n in range(N):
            t += acc[r * N + n]
        out[r] = t


cdef void _final_grads(const floating* Z, const floating* W_x, const floating* dPx,
                       const floating* dPh, floating* dW_x, floating* dW_h, floating* dXf,
                       floating* dX, Py_ssize_t N, Py_ssize_t T, Py_ssize_t F, Py_ssize_t U,
                       Py_ssize_t G, Py_ssize_t lp, Py_ssize_t lz, bint joint,
                       bint reverse) noexcept nogil:
    """dW_x = Z[:F] dPx^T, dW_h = Z[F:, 1:T] dPh[:, 1:T]^T, dXf = W_x dPx -> dX (dX != NULL).

    joint: dPh == dPx and dW_h starts right after dW_x, so [dW_x; dW_h] = Z[:, :T] dPx^T is one
    GEMM (the columns of step 0 meet h_{-1} = 0).  Row strides: lp (dPx, dPh), lz (Z)."""
    cdef Py_ssize_t i
    cdef Py_ssize_t D = F + U
    cdef Py_ssize_t TN = T * N
    if joint:
        _gemm(NoTrans, Trans_, <blas_int>D, <blas_int>G, <blas_int>TN, <floating>1.0,
              Z, <blas_int>lz, dPx, <blas_int>lp, <floating>0.0, dW_x, <blas_int>G)
    else:
        _gemm(NoTrans, Trans_, <blas_int>F, <blas_int>G, <blas_int>TN, <floating>1.0,
              Z, <blas_int>lz, dPx, <blas_int>lp, <floating>0.0, dW_x, <blas_int>G)
        if T > 1:
            _gemm(NoTrans, Trans_, <blas_int>U, <blas_int>G, <blas_int>(TN - N), <floating>1.0,
                  Z + F * lz + N, <blas_int>lz, dPh + N, <blas_int>lp, <floating>0.0, dW_h,
                  <blas_int>G)
        else:
            for i in range(U * G):
                dW_h[i] = 0
    if dX != NULL:
        _gemm(NoTrans, NoTrans, <blas_int>F, <blas_int>TN, <blas_int>G, <floating>1.0,
              W_x, <blas_int>G, dPx, <blas_int>lp, <floating>0.0, dXf, <blas_int>TN)
        _from_feature_major(dXf, dX, N, T, F, reverse)


cdef void _input_projection(const floating* X, const floating* W_x, const floating* W_h,
                            floating* Z, floating* P, floating* WhT, Py_ssize_t N, Py_ssize_t T,
                            Py_ssize_t F, Py_ssize_t U, Py_ssize_t G, Py_ssize_t lp, Py_ssize_t lz,
                            bint reverse) noexcept nogil:
    """Fill Z from X, P = W_x^T Z[:F] over all steps, WhT = W_h^T."""
    _fill_z(X, Z, lz, N, T, F, U, reverse)
    _gemm(Trans_, NoTrans, <blas_int>G, <blas_int>(T * N), <blas_int>F, <floating>1.0,
          W_x, <blas_int>G, Z, <blas_int>lz, <floating>0.0, P, <blas_int>lp)
    _transpose(W_h, WhT, U, G)


# ---------------------------------------------------------------- SimpleRNN

cdef void _rnn_cell_forward(const floating* Ps, Py_ssize_t lp, const floating* b, floating* Hs,
                            Py_ssize_t lh, Py_ssize_t N, Py_ssize_t U) noexcept nogil:
    """h[j] = tanh(a[j] + b[j]) for one step; rows of N at strides lp (a) and lh (h)."""
    cdef Py_ssize_t n, j
    cdef const floating* a
    cdef floating* h
    cdef floating bj
    for j in range(U):
        a = Ps + j * lp
        h = Hs + j * lh
        bj = b[j]
        for n in range(N):
            h[n] = _tanh(a[n] + bj)


cdef void _rnn_cell_backward(floating* Ps, Py_ssize_t lp, const floating* Hs, Py_ssize_t lh,
                             const floating* dh, floating* acc, Py_ssize_t N,
                             Py_ssize_t U) noexcept nogil:
    """dP[j] = dh[j] (1 - h[j]^2);  acc (U, N) += dP."""
    cdef Py_ssize_t n, j
    cdef floating* d
    cdef const floating* h
    cdef const floating* g
    cdef floating one = 1
    for j in range(U):
        d = Ps + j * lp
        h = Hs + j * lh
        g = dh + j * N
        if j + 2 < U:
            _prefetch_rows(d + 2 * lp, lp, 1, N)
            _prefetch_rows(h + 2 * lh, lh, 1, N)
        for n in range(N):
            d[n] = g[n] * (one - h[n] * h[n])
        _add_row(acc + j * N, d, N)


cdef void _rnn_forward(const floating* X, const floating* W_x, const floating* W_h,
                       const floating* b, floating* Z, floating* P, floating* WhT,
                       floating* Y, Py_ssize_t y_sn, Py_ssize_t y_st, Py_ssize_t Ty,
                       Py_ssize_t N, Py_ssize_t T, Py_ssize_t F, Py_ssize_t U,
                       Py_ssize_t lp, Py_ssize_t lz, bint reverse) noexcept nogil:
    """h_t = tanh(x_t W_x + h_{t-1} W_h + b); writes Z, P (pre-activations), WhT, Y."""
    cdef Py_ssize_t s
    cdef floating* Zh = Z + F * lz
    _input_projection(X, W_x, W_h, Z, P, WhT, N, T, F, U, U, lp, lz, reverse)
    for s in range(T):
        if s > 0:
            _gemm(NoTrans, NoTrans, <blas_int>U, <blas_int>N, <blas_int>U, <floating>1.0,
                  WhT, <blas_int>U, Zh + s * N, <blas_int>lz, <floating>1.0, P + s * N,
                  <blas_int>lp)
        _rnn_cell_forward(P + s * N, lp, b, Zh + (s + 1) * N, lz, N, U)
        _write_output(Zh + (s + 1) * N, lz, Y, y_sn, y_st, Ty, s, N, T, U, reverse)


cdef void _rnn_backward(const floating* Z, const floating* W_x, const floating* W_h,
                        floating* P, const floating* dY, Py_ssize_t dy_sn, Py_ssize_t dy_st,
                        Py_ssize_t Ty, floating* dW_x, floating* dW_h, floating* db, floating* dh,
                        floating* acc, floating* dXf, floating* dX, Py_ssize_t N, Py_ssize_t T,
                        Py_ssize_t F, Py_ssize_t U, Py_ssize_t lp, Py_ssize_t lz, bint joint,
                        bint reverse) noexcept nogil:
    """Backward through time; P is overwritten with dPre; dh (U, N), acc (U, N) scratch."""
    cdef Py_ssize_t s
    cdef const floating* Zh = Z + F * lz
    memset(dh, 0, U * N * sizeof(floating))
    memset(acc, 0, U * N * sizeof(floating))
    for s in range(T - 1, -1, -1):
        _add_dy(dh, dY, dy_sn, dy_st, Ty, s, N, T, U, reverse)
        _rnn_cell_backward(P + s * N, lp, Zh + (s + 1) * N, lz, dh, acc, N, U)
        if s > 0:
            _gemm(NoTrans, NoTrans, <blas_int>U, <blas_int>N, <blas_int>U, <floating>1.0,
                  W_h, <blas_int>U, P + s * N, <blas_int>lp, <floating>0.0, dh, <blas_int>N)
    _row_sums(acc, db, U, N)
    _final_grads(Z, W_x, P, P, dW_x, dW_h, dXf, dX, N, T, F, U, U, lp, lz, joint, reverse)


# ---------------------------------------------------------------- LSTM

cdef void _lstm_cell_forward(floating* Ps, Py_ssize_t lp, const floating* b, const floating* Cp,
                             floating* Cs, Py_ssize_t lc, floating* TCs, Py_ssize_t ltc,
                             floating* Hs, Py_ssize_t lh, Py_ssize_t N,
                             Py_ssize_t U) noexcept nogil:
    """One step. Rows of Ps: a -> [i, f, g, o] in place; c = f c_prev + i g; h = o tanh(c).
    Row j of gate k is at Ps + (k U + j) lp; of c_prev / c at stride lc, tanh(c) ltc, h lh."""
    cdef Py_ssize_t n, j
    cdef floating* ig
    cdef floating* fg
    cdef floating* gg
    cdef floating* og
    cdef const floating* cp
    cdef floating* c
    cdef floating* tc
    cdef floating* h
    cdef floating bi, bf, bg, bo, tv
    for j in range(U):
        ig = Ps + j * lp
        fg = ig + U * lp
        gg = ig + 2 * U * lp
        og = ig + 3 * U * lp
        if j + 2 < U:
            _prefetch_rows(ig + 2 * lp, U * lp, 4, N)
            _prefetch_rows(Cp + (j + 2) * lc, lc, 1, N)
        bi = b[j]
        bf = b[U + j]
        bg = b[2 * U + j]
        bo = b[3 * U + j]
        for n in range(N):
            ig[n] = _sigm(ig[n] + bi)
        for n in range(N):
            fg[n] = _sigm(fg[n] + bf)
        for n in range(N):
            gg[n] = _tanh(gg[n] + bg)
        for n in range(N):
            og[n] = _sigm(og[n] + bo)
        cp = Cp + j * lc
        c = Cs + j * lc
        tc = TCs + j * ltc
        h = Hs + j * lh
        for n in range(N):
            c[n] = fg[n] * cp[n] + ig[n] * gg[n]
        for n in range(N):
            tv = _tanh(c[n])
            tc[n] = tv
            h[n] = og[n] * tv


cdef void _lstm_cell_backward(floating* Ps, Py_ssize_t lp, const floating* Cp, Py_ssize_t lc,
                              const floating* TCs, Py_ssize_t ltc, const floating* dh, floating* dc,
                              floating* acc, Py_ssize_t N, Py_ssize_t U) noexcept nogil:
    """One step. Rows of Ps: [i, f, g, o] -> d[a_i, a_f, a_g, a_o] in place; dc <- dc_t * f;
    acc (4U, N) += the new rows.  dh, dc (U, N).  Several short loops per row, each writing one
    or two arrays (vectorised)."""
    cdef Py_ssize_t n, j
    cdef floating* ig
    cdef floating* fg
    cdef floating* gg
    cdef floating* og
    cdef const floating* cp
    cdef const floating* tc
    cdef const floating* dhr
    cdef floating* dcr
    cdef floating iv, fv, gv, ov, tv, dcv
    cdef floating one = 1
    for j in range(U):
        ig = Ps + j * lp
        fg = ig + U * lp
        gg = ig + 2 * U * lp
        og = ig + 3 * U * lp
        cp = Cp + j * lc
        tc = TCs + j * ltc
        dhr = dh + j * N
        dcr = dc + j * N
        if j + 2 < U:                   # the rows of unit j + 2 (gate history comes from L3)
            _prefetch_rows(ig + 2 * lp, U * lp, 4, N)
            _prefetch_rows(cp + 2 * lc, lc, 1, N)
            _prefetch_rows(tc + 2 * ltc, ltc, 1, N)
        for n in range(N):              # dc_t = dc_{t+1} f_{t+1} + dh o (1 - tanh(c)^2)
            tv = tc[n]
            dcr[n] = dcr[n] + dhr[n] * og[n] * (one - tv * tv)
        for n in range(N):              # d a_o = dh tanh(c) o (1 - o)
            ov = og[n]
            og[n] = dhr[n] * tc[n] * ov * (one - ov)
        for n in range(N):              # d a_i = dc g i (1 - i);  d a_g = dc i (1 - g^2)
            iv = ig[n]
            gv = gg[n]
            dcv = dcr[n]
            ig[n] = dcv * gv * iv * (one - iv)
            gg[n] = dcv * iv * (one - gv * gv)
        for n in range(N):              # d a_f = dc c_prev f (1 - f);  dc <- dc f
            fv = fg[n]
            dcv = dcr[n]
            fg[n] = dcv * cp[n] * fv * (one - fv)
            dcr[n] = dcv * fv
        _add_row(acc + j * N, ig, N)
        _add_row(acc + (U + j) * N, fg, N)
        _add_row(acc + (2 * U + j) * N, gg, N)
        _add_row(acc + (3 * U + j) * N, og, N)


cdef void _lstm_forward(const floating* X, const floating* W_x, const floating* W_h,
                        const floating* b, floating* Z, floating* P, floating* C, floating* TC,
                        floating* WhT, floating* Y, Py_ssize_t y_sn, Py_ssize_t y_st,
                        Py_ssize_t Ty, Py_ssize_t N, Py_ssize_t T, Py_ssize_t F, Py_ssize_t U,
                        Py_ssize_t lp, Py_ssize_t lz, bint reverse) noexcept nogil:
    """LSTM forward; writes Z, P (gates), C, TC, WhT, Y."""
    cdef Py_ssize_t s, j
    cdef Py_ssize_t G = 4 * U
    cdef floating* Zh = Z + F * lz
    _input_projection(X, W_x, W_h, Z, P, WhT, N, T, F, U, G, lp, lz, reverse)
    for j in range(U):
        memset(C + j * lz, 0, N * sizeof(floating))
    for s in range(T):
        if s > 0:
            _gemm(NoTrans, NoTrans, <blas_int>G, <blas_int>N, <blas_int>U, <floating>1.0,
                  WhT, <blas_int>U, Zh + s * N, <blas_int>lz, <floating>1.0, P + s * N,
                  <blas_int>lp)
        _lstm_cell_forward(P + s * N, lp, b, C + s * N, C + (s + 1) * N, lz, TC + s * N, lp,
                           Zh + (s + 1) * N, lz, N, U)
        _write_output(Zh + (s + 1) * N, lz, Y, y_sn, y_st, Ty, s, N, T, U, reverse)


cdef void _lstm_backward(const floating* Z, const floating* W_x, const floating* W_h,
                         floating* P, const floating* C, const floating* TC,
                         const floating* dY, Py_ssize_t dy_sn, Py_ssize_t dy_st, Py_ssize_t Ty,
                         floating* dW_x, floating* dW_h, floating* db, floating* dh,
                         floating* dc, floating* acc, floating* dXf, floating* dX,
                         Py_ssize_t N, Py_ssize_t T, Py_ssize_t F, Py_ssize_t U,
                         Py_ssize_t lp, Py_ssize_t lz, bint joint, bint reverse) noexcept nogil:
    """Backward through time; P (gates) is overwritten with dPre; dh, dc (U, N), acc (4U, N)
    scratch."""
    cdef Py_ssize_t s
    cdef Py_ssize_t G = 4 * U
    memset(dh, 0, U * N * sizeof(floating))
    memset(dc, 0, U * N * sizeof(floating))
    memset(acc, 0, G * N * sizeof(floating))
    for s in range(T - 1, -1, -1):
        _add_dy(dh, dY, dy_sn, dy_st, Ty, s, N, T, U, reverse)
        _lstm_cell_backward(P + s * N, lp, C + s * N, lz, TC + s * N, lp, dh, dc, acc, N, U)
        if s > 0:
            _gemm(NoTrans, NoTrans, <blas_int>U, <blas_int>N, <blas_int>G, <floating>1.0,
                  W_h, <blas_int>G, P + s * N, <blas_int>lp, <floating>0.0, dh, <blas_int>N)
    _row_sums(acc, db, G, N)
    _final_grads(Z, W_x, P, P, dW_x, dW_h, dXf, dX, N, T, F, U, G, lp, lz, joint, reverse)


# ---------------------------------------------------------------- GRU

cdef void _gru_cell_forward(floating* Ps, Py_ssize_t lp, const floating* HH, const floating* b_x,
                            const floating* b_h, const floating* Hp, floating* Hs, Py_ssize_t lh,
                            floating* HNs, Py_ssize_t lhn, Py_ssize_t N,
                            Py_ssize_t U) noexcept nogil:
    """One step. Rows of Ps (x projections) -> [r, z, n] in place; HH (3U, N) = W_h^T h_prev.
    r, z = sig(ax + b_x + ah + b_h); hn = ah_n + b_hn; n = tanh(ax_n + b_xn + r hn);
    h = (1 - z) n + z h_prev  (h_prev, h rows at stride lh; hn rows at stride lhn)."""
    cdef Py_ssize_t n, j
    cdef floating* p
    cdef const floating* hh
    cdef const floating* rg
    cdef const floating* zg
    cdef floating* ng
    cdef floating* hn
    cdef floating* h
    cdef const floating* hp
    cdef floating c, zv
    cdef floating one = 1
    for j in range(2 * U):                      # r, z
        p = Ps + j * lp
        hh = HH + j * N
        if j + 2 < 2 * U:
            _prefetch_rows(p + 2 * lp, lp, 1, N)
        c = b_x[j] + b_h[j]
        for n in range(N):
            p[n] = _sigm(p[n] + hh[n] + c)
    for j in range(U):
        rg = Ps + j * lp
        zg = Ps + (U + j) * lp
        ng = Ps + (2 * U + j) * lp
        hh = HH + (2 * U + j) * N
        hn = HNs + j * lhn
        h = Hs + j * lh
        hp = Hp + j * lh
        if j + 2 < U:
            _prefetch_rows(ng + 2 * lp, lp, 1, N)
            _prefetch_rows(hp + 2 * lh, lh, 1, N)
        c = b_h[2 * U + j]
        for n in range(N):
            hn[n] = hh[n] + c
        c = b_x[2 * U + j]
        for n in range(N):
            ng[n] = _tanh(ng[n] + c + rg[n] * hn[n])
        for n in range(N):
            zv = zg[n]
            h[n] = (one - zv) * ng[n] + zv * hp[n]


cdef void _gru_cell_backward(floating* Ps, floating* Qs, Py_ssize_t lp, const floating* HNs,
                             Py_ssize_t lhn, const floating* Hp, Py_ssize_t lh, floating* dh,
                             floating* acc, Py_ssize_t N, Py_ssize_t U) noexcept nogil:
    """One step. Rows of Ps: [r, z, n] -> d[ax_r, ax_z, ax_n]; rows of Qs (same stride lp)
    <- d[ah_r, ah_z, ah_n]; dh (U, N) <- dh * z (the direct path to h_prev);
    acc (6U, N) += [new P rows; new Q rows]."""
    cdef Py_ssize_t n, j
    cdef floating* rg
    cdef floating* zg
    cdef floating* ng
    cdef floating* qr
    cdef floating* qz
    cdef floating* qn
    cdef const floating* hn
    cdef const floating* hp
    cdef floating* dhr
    cdef floating rv, zv, nv, dhv, dan
    cdef floating one = 1
    for j in range(U):
        rg = Ps + j * lp
        zg = Ps + (U + j) * lp
        ng = Ps + (2 * U + j) * lp
        qr = Qs + j * lp
        qz = Qs + (U + j) * lp
        qn = Qs + (2 * U + j) * lp
        hn = HNs + j * lhn
        hp = Hp + j * lh
        dhr = dh + j * N
        if j + 2 < U:                   # the rows of unit j + 2 (histories come from L3)
            _prefetch_rows(rg + 2 * lp, U * lp, 3, N)
            _prefetch_rows(qr + 2 * lp, U * lp, 3, N)
            _prefetch_rows(hn + 2 * lhn, lhn, 1, N)
            _prefetch_rows(hp + 2 * lh, lh, 1, N)
        for n in range(N):              # d a_z = dh (h_prev - n) z (1 - z)
            zv = zg[n]
            qz[n] = dhr[n] * (hp[n] - ng[n]) * zv * (one - zv)
        for n in range(N):              # d a_n = dh (1 - z) (1 - n^2);  dh <- dh z
            zv = zg[n]
            nv = ng[n]
            dhv = dhr[n]
            ng[n] = dhv * (one - zv) * (one - nv * nv)
            dhr[n] = dhv * zv
            zg[n] = qz[n]
        for n in range(N):              # d a_r = d a_n hn r (1 - r);  d ah_n = d a_n r
            rv = rg[n]
            dan = ng[n]
            dhv = dan * hn[n] * rv * (one - rv)
            qr[n] = dhv
            rg[n] = dhv
            qn[n] = dan * rv
        _add_row(acc + j * N, rg, N)
        _add_row(acc + (U + j) * N, zg, N)
        _add_row(acc + (2 * U + j) * N, ng, N)
        _add_row(acc + (3 * U + j) * N, qr, N)
        _add_row(acc + (4 * U + j) * N, qz, N)
        _add_row(acc + (5 * U + j) * N, qn, N)


cdef void _gru_forward(const floating* X, const floating* W_x, const floating* W_h,
                       const floating* b_x, const floating* b_h, floating* Z, floating* P,
                       floating* HH, floating* HN, floating* WhT,
                       floating* Y, Py_ssize_t y_sn, Py_ssize_t y_st, Py_ssize_t Ty,
                       Py_ssize_t N, Py_ssize_t T, Py_ssize_t F, Py_ssize_t U,
                       Py_ssize_t lp, Py_ssize_t lz, bint reverse) noexcept nogil:
    """GRU forward; writes Z, P (gates), HH (scratch), HN, WhT, Y."""
    cdef Py_ssize_t s
    cdef Py_ssize_t G = 3 * U
    cdef floating* Zh = Z + F * lz
    _input_projection(X, W_x, W_h, Z, P, WhT, N, T, F, U, G, lp, lz, reverse)
    memset(HH, 0, G * N * sizeof(floating))
    for s in range(T):
        if s > 0:
            _gemm(NoTrans, NoTrans, <blas_int>G, <blas_int>N, <blas_int>U, <floating>1.0,
                  WhT, <blas_int>U, Zh + s * N, <blas_int>lz, <floating>0.0, HH, <blas_int>N)
        _gru_cell_forward(P + s * N, lp, HH, b_x, b_h, Zh + s * N, Zh + (s + 1) * N, lz,
                          HN + s * N, lp, N, U)
        _write_output(Zh + (s + 1) * N, lz, Y, y_sn, y_st, Ty, s, N, T, U, reverse)


cdef void _gru_backward(const floating* Z, const floating* W_x, const floating* W_h,
                        floating* P, floating* Q, const floating* HN,
                        const floating* dY, Py_ssize_t dy_sn, Py_ssize_t dy_st, Py_ssize_t Ty,
                        floating* dW_x, floating* dW_h, floating* db_x, floating* db_h,
                        floating* dh, floating* acc, floating* dXf, floating* dX,
                        Py_ssize_t N, Py_ssize_t T, Py_ssize_t F, Py_ssize_t U,
                        Py_ssize_t lp, Py_ssize_t lz, bint reverse) noexcept nogil:
    """Backward through time; P (gates) -> dPre_x, Q <- dPre_h; dh (U, N), acc (6U, N) scratch."""
    cdef Py_ssize_t s
    cdef Py_ssize_t G = 3 * U
    cdef const floating* Zh = Z + F * lz
    memset(dh, 0, U * N * sizeof(floating))
    memset(acc, 0, 2 * G * N * sizeof(floating))
    for s in range(T - 1, -1, -1):
        _add_dy(dh, dY, dy_sn, dy_st, Ty, s, N, T, U, reverse)
        _gru_cell_backward(P + s * N, Q + s * N, lp, HN + s * N, lp, Zh + s * N, lz, dh, acc,
                           N, U)
        if s > 0:
            _gemm(NoTrans, NoTrans, <blas_int>U, <blas_int>N, <blas_int>G, <floating>1.0,
                  W_h, <blas_int>G, Q + s * N, <blas_int>lp, <floating>1.0, dh, <blas_int>N)
    _row_sums(acc, db_x, G, N)
    _row_sums(acc + G * N, db_h, G, N)
    _final_grads(Z, W_x, P, Q, dW_x, dW_h, dXf, dX, N, T, F, U, G, lp, lz, False, reverse)


# ---------------------------------------------------------------- Python twins (validation)

cdef _expect(str name, tuple got, tuple want):
    if got != want:
        raise ValueError(f"{name} must have shape {want}, got {got}")


cdef Py_ssize_t _check_weights(const floating[:, ::1] W_x, const floating[:, ::1] W_h,
                               Py_ssize_t N, Py_ssize_t T, Py_ssize_t F,
                               Py_ssize_t gates) except -1:
    """U from W_h (U, gates*U), after checking every size and W_x (F, gates*U)."""
    cdef Py_ssize_t U = W_h.shape[0]
    if N < 1 or T < 1 or F < 1 or U < 1:
        raise ValueError(f"empty dimension: N={N}, T={T}, F={F}, U={U}")
    if (_checked_mul(_checked_add(T, 1, "T + 1"), N, "(T + 1) * N") > 2147483647
            or _checked_mul(gates, U, "gates * U") > 2147483647
            or _checked_add(F, U, "F + U") > 2147483647):
        raise ValueError("dimensions too large for 32-bit BLAS")
    _expect("W_x", (W_x.shape[0], W_x.shape[1]), (F, gates * U))
    _expect("W_h", (W_h.shape[0], W_h.shape[1]), (U, gates * U))
    return U


cdef Py_ssize_t _row_stride(list views, Py_ssize_t slots, Py_ssize_t N,
                            Py_ssize_t itemsize) except -1:
    """Common row stride (in elements) of feature-major histories.

    views: [(name, shape, strides, rows)], each a (rows, slots, N) view whose last two axes are
    C-contiguous and whose rows are at least slots*N elements apart (rows may be padded, so that
    the row stride is not a multiple of a large power of two); all share one row stride."""
    cdef Py_ssize_t ld = -1, this
    for name, shape, strides, rows in views:
        _expect(name, shape, (rows, slots, N))
        if (N > 1 and strides[2] != itemsize) or (slots > 1 and strides[1] != N * itemsize):
            raise ValueError(f"{name}: the last two axes must be C-contiguous")
        if rows == 1:
            continue
        if strides[0] % itemsize or strides[0] < _checked_mul(
                _checked_mul(slots, N, "history row length"), itemsize, "history row bytes"):
            raise ValueError(f"{name}: rows must be at least {slots * N} elements apart")
        this = strides[0] // itemsize
        if this > 2147483647:
            raise ValueError(f"{name}: row stride too large for 32-bit BLAS")
        if ld == -1:
            ld = this
        elif this != ld:
            raise ValueError(f"{name}: every (rows, {slots}, N) history must share one row stride")
    return slots * N if ld == -1 else ld


cdef tuple _out_strides(str name, Py_ssize_t s0, Py_ssize_t s1, Py_ssize_t s2,
                        Py_ssize_t itemsize):
    """Element strides (sn, st) of a (N, Ty, U) view whose last axis must be contiguous."""
    if s2 != itemsize or s0 % itemsize or s1 % itemsize:
        raise ValueError(f"{name} must have a contiguous last axis and aligned strides")
    return s0 // itemsize, s1 // itemsize


cdef Py_ssize_t _check_y(str name, Py_ssize_t N, Py_ssize_t T, Py_ssize_t U,
                         Py_ssize_t a, Py_ssize_t b, Py_ssize_t c) except -1:
    """Validate a (N, Ty, U) output / output-gradient shape, Ty in {T, 1}; return Ty."""
    if a != N or c != U or (b != T and b != 1):
        raise ValueError(f"{name} must have shape ({N}, {T}, {U}) or ({N}, 1, {U}), "
                         f"got ({a}, {b}, {c})")
    return b


cdef bint _check_dx(floating[:, :, ::1] dXf_out, floating[:, :, ::1] dX_out,
                    Py_ssize_t N, Py_ssize_t T, Py_ssize_t F) except -1:
    """Validate the optional input-gradient buffers; True when the input gradient is wanted."""
    if dX_out is None:
        return False
    if dXf_out is None:
        raise ValueError("dXf_out (F, T, N) scratch is required with dX_out")
    _expect("dX_out", (dX_out.shape[0], dX_out.shape[1], dX_out.shape[2]), (N, T, F))
    _expect("dXf_out", (dXf_out.shape[0], dXf_out.shape[1], dXf_out.shape[2]), (F, T, N))
    return True


cdef tuple _mv(str name, const floating[:, :, :] A):
    """(name, shape, strides) of a 3-D history view."""
    return (name, (A.shape[0], A.shape[1], A.shape[2]), (A.strides[0], A.strides[1], A.strides[2]))


cdef tuple _back_sizes(const floating[:, :, :] Z, const floating[:, :, :] P,
                       const floating[:, ::1] W_x, const floating[:, ::1] W_h, Py_ssize_t gates):
    """(N, T, F, U, lz) of a backward call from P (G, T, N) and W_x (F, G); Z checked."""
    cdef Py_ssize_t T = P.shape[1], N = P.shape[2], F = W_x.shape[0], U, lz
    U = _check_weights(W_x, W_h, N, T, F, gates)
    lz = _row_stride([_mv("Z", Z) + (F + U,)], T + 1, N, sizeof(floating))
    return N, T, F, U, lz


def rnn_forward(const floating[:, :, ::1] X, const floating[:, ::1] W_x,
                const floating[:, ::1] W_h, const floating[::1] b,
                floating[:, :, :] Z_out, floating[:, :, :] P_out, floating[:, ::1] WhT_out,
                floating[:, :, :] Y_out, bint reverse=False):
    """SimpleRNN forward: h_t = tanh(x_t W_x + h_{t-1} W_h + b), h_0 = 0.

    X (N, T, F); W_x (F, U); W_h (U, U); b (U,); Z_out (F+U, T+1, N) inputs and states;
    P_out (U, T, N); WhT_out (U, U) scratch; Y_out (N, T, U) (all states) or (N, 1, U) (last
    state), last axis contiguous.  Histories: last two axes C-contiguous, rows may be padded.
    """
    cdef Py_ssize_t N = X.shape[0], T = X.shape[1], F = X.shape[2]
    cdef Py_ssize_t U, Ty, y_sn, y_st, lp, lz
    U = _check_weights(W_x, W_h, N, T, F, 1)
    _expect("b", (b.shape[0],), (U,))
    lz = _row_stride([_mv("Z_out", Z_out) + (F + U,)], T + 1, N, sizeof(floating))
    lp = _row_stride([_mv("P_out", P_out) + (U,)], T, N, sizeof(floating))
    _expect("WhT_out", (WhT_out.shape[0], WhT_out.shape[1]), (U, U))
    Ty = _check_y("Y_out", N, T, U, Y_out.shape[0], Y_out.shape[1], Y_out.shape[2])
    y_sn, y_st = _out_strides("Y_out", Y_out.strides[0], Y_out.strides[1], Y_out.strides[2],
                              sizeof(floating))
    with nogil:
        _rnn_forward(&X[0, 0, 0], &W_x[0, 0], &W_h[0, 0], &b[0], &Z_out[0, 0, 0],
                     &P_out[0, 0, 0], &WhT_out[0, 0], &Y_out[0, 0, 0], y_sn, y_st, Ty,
                     N, T, F, U, lp, lz, reverse)


def rnn_backward(const floating[:, :, :] Z, const floating[:, ::1] W_x,
                 const floating[:, ::1] W_h, floating[:, :, :] P_out,
                 const floating[:, :, :] dY, floating[:, ::1] dW_x_out,
                 floating[:, ::1] dW_h_out, floating[::1] db_out, floating[:, ::1] dh_out,
                 floating[:, ::1] acc_out, floating[:, :, ::1] dXf_out=None,
                 floating[:, :, ::1] dX_out=None, bint reverse=False):
    """SimpleRNN backward through time (gradient of sum <dY, Y>); overwrites the gradients.

    Z (F+U, T+1, N) from forward; P_out (U, T, N) receives d(pre-activations); dY (N, T, U) or
    (N, 1, U); dh_out, acc_out (U, N) scratch; dX_out (N, T, F) with its scratch dXf_out
    (F, T, N) when the input gradient is wanted.
    """
    cdef Py_ssize_t N, T, F, U, Ty, dy_sn, dy_st, lp, lz
    cdef bint joint
    cdef floating* dXf_ptr = NULL
    cdef floating* dX_ptr = NULL
    N, T, F, U, lz = _back_sizes(Z, P_out, W_x, W_h, 1)
    lp = _row_stride([_mv("P_out", P_out) + (U,)], T, N, sizeof(floating))
    Ty = _check_y("dY", N, T, U, dY.shape[0], dY.shape[1], dY.shape[2])
    dy_sn, dy_st = _out_strides("dY", dY.strides[0], dY.strides[1], dY.strides[2],
                                sizeof(floating))
    _expect("dW_x_out", (dW_x_out.shape[0], dW_x_out.shape[1]), (F, U))
    _expect("dW_h_out", (dW_h_out.shape[0], dW_h_out.shape[1]), (U, U))
    _expect("db_out", (db_out.shape[0],), (U,))
    _expect("dh_out", (dh_out.shape[0], dh_out.shape[1]), (U, N))
    _expect("acc_out", (acc_out.shape[0], acc_out.shape[1]), (U, N))
    if _check_dx(dXf_out, dX_out, N, T, F):
        dXf_ptr = &dXf_out[0, 0, 0]
        dX_ptr = &dX_out[0, 0, 0]
    joint = &dW_h_out[0, 0] == &dW_x_out[0, 0] + F * U
    with nogil:
        _rnn_backward(&Z[0, 0, 0], &W_x[0, 0], &W_h[0, 0], &P_out[0, 0, 0], &dY[0, 0, 0],
                      dy_sn, dy_st, Ty, &dW_x_out[0, 0], &dW_h_out[0, 0], &db_out[0],
                      &dh_out[0, 0], &acc_out[0, 0], dXf_ptr, dX_ptr, N, T, F, U, lp, lz, joint,
                      reverse)


def lstm_forward(const floating[:, :, ::1] X, const floating[:, ::1] W_x,
                 const floating[:, ::1] W_h, const floating[::1] b,
                 floating[:, :, :] Z_out, floating[:, :, :] P_out, floating[:, :, :] C_out,
                 floating[:, :, :] TC_out, floating[:, ::1] WhT_out, floating[:, :, :] Y_out,
                 bint reverse=False):
    """LSTM forward, gates [i, f, g, o]: c_t = f c_{t-1} + i g, h_t = o tanh(c_t), h_0 = c_0 = 0.

    X (N, T, F); W_x (F, 4U); W_h (U, 4U); b (4U,); Z_out (F+U, T+1, N) inputs and states;
    P_out (4U, T, N) gates; C_out (U, T+1, N); TC_out (U, T, N) tanh(c); WhT_out (4U, U)
    scratch; Y_out (N, T, U) or (N, 1, U), last axis contiguous.  Histories: last two axes
    C-contiguous, rows may be padded (Z and C share a row stride, as do P and TC).
    """
    cdef Py_ssize_t N = X.shape[0], T = X.shape[1], F = X.shape[2]
    cdef Py_ssize_t U, Ty, y_sn, y_st, lp, lz
    U = _check_weights(W_x, W_h, N, T, F, 4)
    _expect("b", (b.shape[0],), (4 * U,))
    lz = _row_stride([_mv("Z_out", Z_out) + (F + U,), _mv("C_out", C_out) + (U,)], T + 1, N,
                     sizeof(floating))
    lp = _row_stride([_mv("P_out", P_out) + (4 * U,), _mv("TC_out", TC_out) + (U,)], T, N,
                     sizeof(floating))
    _expect("WhT_out", (WhT_out.shape[0], WhT_out.shape[1]), (4 * U, U))
    Ty = _check_y("Y_out", N, T, U, Y_out.shape[0], Y_out.shape[1], Y_out.shape[2])
    y_sn, y_st = _out_strides("Y_out", Y_out.strides[0], Y_out.strides[1], Y_out.strides[2],
                              sizeof(floating))
    with nogil:
        _lstm_forward(&X[0, 0, 0], &W_x[0, 0], &W_h[0, 0], &b[0], &Z_out[0, 0, 0],
                      &P_out[0, 0, 0], &C_out[0, 0, 0], &TC_out[0, 0, 0], &WhT_out[0, 0],
                      &Y_out[0, 0, 0], y_sn, y_st, Ty, N, T, F, U, lp, lz, reverse)


def lstm_backward(const floating[:, :, :] Z, const floating[:, ::1] W_x,
                  const floating[:, ::1] W_h, floating[:, :, :] P_out,
                  const floating[:, :, :] C, const floating[:, :, :] TC,
                  const floating[:, :, :] dY, floating[:, ::1] dW_x_out,
                  floating[:, ::1] dW_h_out, floating[::1] db_out, floating[:, ::1] dh_out,
                  floating[:, ::1] dc_out, floating[:, ::1] acc_out,
                  floating[:, :, ::1] dXf_out=None, floating[:, :, ::1] dX_out=None,
                  bint reverse=False):
    """LSTM backward through time (gradient of sum <dY, Y>); overwrites the gradients.

    Z, C, TC as written by lstm_forward; P_out (4U, T, N) holds the gates on entry and
    d(pre-activations) on return; dY (N, T, U) or (N, 1, U); dh_out, dc_out (U, N) and
    acc_out (4U, N) scratch; dX_out (N, T, F) with its scratch dXf_out (F, T, N) when the input
    gradient is wanted.
    """
    cdef Py_ssize_t N, T, F, U, Ty, dy_sn, dy_st, lp, lz
    cdef bint joint
    cdef floating* dXf_ptr = NULL
    cdef floating* dX_ptr = NULL
    N, T, F, U, lz = _back_sizes(Z, P_out, W_x, W_h, 4)
    if _row_stride([_mv("C", C) + (U,)], T + 1, N, sizeof(floating)) != lz and U > 1:
        raise ValueError("C must share Z's row stride")
    lp = _row_stride([_mv("P_out", P_out) + (4 * U,), _mv("TC", TC) + (U,)], T, N,
                     sizeof(floating))
    Ty = _check_y("dY", N, T, U, dY.shape[0], dY.shape[1], dY.shape[2])
    dy_sn, dy_st = _out_strides("dY", dY.strides[0], dY.strides[1], dY.strides[2],
                                sizeof(floating))
    _expect("dW_x_out", (dW_x_out.shape[0], dW_x_out.shape[1]), (F, 4 * U))
    _expect("dW_h_out", (dW_h_out.shape[0], dW_h_out.shape[1]), (U, 4 * U))
    _expect("db_out", (db_out.shape[0],), (4 * U,))
    _expect("dh_out", (dh_out.shape[0], dh_out.shape[1]), (U, N))
    _expect("dc_out", (dc_out.shape[0], dc_out.shape[1]), (U, N))
    _expect("acc_out", (acc_out.shape[0], acc_out.shape[1]), (4 * U, N))
    if _check_dx(dXf_out, dX_out, N, T, F):
        dXf_ptr = &dXf_out[0, 0, 0]
        dX_ptr = &dX_out[0, 0, 0]
    joint = &dW_h_out[0, 0] == &dW_x_out[0, 0] + F * 4 * U
    with nogil:
        _lstm_backward(&Z[0, 0, 0], &W_x[0, 0], &W_h[0, 0], &P_out[0, 0, 0], &C[0, 0, 0],
                       &TC[0, 0, 0], &dY[0, 0, 0], dy_sn, dy_st, Ty, &dW_x_out[0, 0],
                       &dW_h_out[0, 0], &db_out[0], &dh_out[0, 0], &dc_out[0, 0],
                       &acc_out[0, 0], dXf_ptr, dX_ptr, N, T, F, U, lp, lz, joint, reverse)


def gru_forward(const floating[:, :, ::1] X, const floating[:, ::1] W_x,
                const floating[:, ::1] W_h, const floating[::1] b_x, const floating[::1] b_h,
                floating[:, :, :] Z_out, floating[:, :, :] P_out, floating[:, ::1] HH_out,
                floating[:, :, :] HN_out, floating[:, ::1] WhT_out, floating[:, :, :] Y_out,
                bint reverse=False):
    """GRU forward, gates [r, z, n]: n = tanh(x W_xn + b_xn + r (h W_hn + b_hn)),
    h_t = (1 - z) n + z h_{t-1}, h_0 = 0.

    X (N, T, F); W_x (F, 3U); W_h (U, 3U); b_x, b_h (3U,); Z_out (F+U, T+1, N) inputs and states;
    P_out (3U, T, N) gates; HH_out (3U, N) scratch; HN_out (U, T, N) h_{t-1} W_hn + b_hn;
    WhT_out (3U, U) scratch; Y_out (N, T, U) or (N, 1, U), last axis contiguous.  Histories:
    last two axes C-contiguous, rows may be padded (P and HN share a row stride).
    """
    cdef Py_ssize_t N = X.shape[0], T = X.shape[1], F = X.shape[2]
    cdef Py_ssize_t U, Ty, y_sn, y_st, lp, lz
    U = _check_weights(W_x, W_h, N, T, F, 3)
    _expect("b_x", (b_x.shape[0],), (3 * U,))
    _expect("b_h", (b_h.shape[0],), (3 * U,))
    lz = _row_stride([_mv("Z_out", Z_out) + (F + U,)], T + 1, N, sizeof(floating))
    lp = _row_stride([_mv("P_out", P_out) + (3 * U,), _mv("HN_out", HN_out) + (U,)], T, N,
                     sizeof(floating))
    _expect("HH_out", (HH_out.shape[0], HH_out.shape[1]), (3 * U, N))
    _expect("WhT_out", (WhT_out.shape[0], WhT_out.shape[1]), (3 * U, U))
    Ty = _check_y("Y_out", N, T, U, Y_out.shape[0], Y_out.shape[1], Y_out.shape[2])
    y_sn, y_st = _out_strides("Y_out", Y_out.strides[0], Y_out.strides[1], Y_out.strides[2],
                              sizeof(floating))
    with nogil:
        _gru_forward(&X[0, 0, 0], &W_x[0, 0], &W_h[0, 0], &b_x[0], &b_h[0], &Z_out[0, 0, 0],
                     &P_out[0, 0, 0], &HH_out[0, 0], &HN_out[0, 0, 0], &WhT_out[0, 0],
                     &Y_out[0, 0, 0], y_sn, y_st, Ty, N, T, F, U, lp, lz, reverse)


def gru_backward(const floating[:, :, :] Z, const floating[:, ::1] W_x,
                 const floating[:, ::1] W_h, floating[:, :, :] P_out, floating[:, :, :] Q_out,
                 const floating[:, :, :] HN, const floating[:, :, :] dY,
                 floating[:, ::1] dW_x_out, floating[:, ::1] dW_h_out, floating[::1] db_x_out,
                 floating[::1] db_h_out, floating[:, ::1] dh_out, floating[:, ::1] acc_out,
                 floating[:, :, ::1] dXf_out=None, floating[:, :, ::1] dX_out=None,
                 bint reverse=False):
    """GRU backward through time (gradient of sum <dY, Y>); overwrites the gradients.

    Z, HN as written by gru_forward; P_out (3U, T, N) holds the gates on entry and
    d(input pre-activations) on return; Q_out (3U, T, N) receives d(hidden pre-activations)
    (P, Q and HN share a row stride); dY (N, T, U) or (N, 1, U); dh_out (U, N) and acc_out
    (6U, N) scratch; dX_out (N, T, F) with its scratch dXf_out (F, T, N) when the input gradient
    is wanted.
    """
    cdef Py_ssize_t N, T, F, U, Ty, dy_sn, dy_st, lp, lz
    cdef floating* dXf_ptr = NULL
    cdef floating* dX_ptr = NULL
    N, T, F, U, lz = _back_sizes(Z, P_out, W_x, W_h, 3)
    lp = _row_stride([_mv("P_out", P_out) + (3 * U,), _mv("Q_out", Q_out) + (3 * U,),
                      _mv("HN", HN) + (U,)], T, N, sizeof(floating))
    Ty = _check_y("dY", N, T, U, dY.shape[0], dY.shape[1], dY.shape[2])
    dy_sn, dy_st = _out_strides("dY", dY.strides[0], dY.strides[1], dY.strides[2],
                                sizeof(floating))
    _expect("dW_x_out", (dW_x_out.shape[0], dW_x_out.shape[1]), (F, 3 * U))
    _expect("dW_h_out", (dW_h_out.shape[0], dW_h_out.shape[1]), (U, 3 * U))
    _expect("db_x_out", (db_x_out.shape[0],), (3 * U,))
    _expect("db_h_out", (db_h_out.shape[0],), (3 * U,))
    _expect("dh_out", (dh_out.shape[0], dh_out.shape[1]), (U, N))
    _expect("acc_out", (acc_out.shape[0], acc_out.shape[1]), (6 * U, N))
    if _check_dx(dXf_out, dX_out, N, T, F):
        dXf_ptr = &dXf_out[0, 0, 0]
        dX_ptr = &dX_out[0, 0, 0]
    with nogil:
        _gru_backward(&Z[0, 0, 0], &W_x[0, 0], &W_h[0, 0], &P_out[0, 0, 0], &Q_out[0, 0, 0],
                      &HN[0, 0, 0], &dY[0, 0, 0], dy_sn, dy_st, Ty, &dW_x_out[0, 0],
                      &dW_h_out[0, 0], &db_x_out[0], &db_h_out[0], &dh_out[0, 0],
                      &acc_out[0, 0], dXf_ptr, dX_ptr, N, T, F, U, lp, lz, reverse)
