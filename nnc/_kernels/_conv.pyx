"""2-D convolution (cross-correlation, as PyTorch) by im2col + GEMM, NCHW.

Dimensions: N samples, C input channels, H, W input height / width, F filters, KH, KW kernel
height / width, SH, SW strides, PH, PW zero padding, OH = (H + 2 PH - KH) // SH + 1, OW likewise,
CKK = C KH KW (rows of a sample's column matrix), P = OH OW (output pixels per sample), L the
columns per sample of the column matrix (P, or the grid length below).

Buffers (all C-contiguous, caller supplied; shapes from conv2d_workspace_shapes):
  X (N, C, H, W), Wt (F, C, KH, KW), b (F,), Y (N, F, OH, OW), dX like X, dW like Wt, db like b.
  cols (Nc, CKK, L): the column matrices of a chunk of Nc samples.  General path (L = P):
      cols[i, (c, kh, kw), oh OW + ow] = X[i, c, oh SH - PH + kh, ow SW - PW + kw], 0 outside the
      input (padding is handled by index tests, never by a padded copy).
  tmp (Nc, F, L): GEMM output / expanded dY of the grid path (L = 0 on the general path).

conv2d_forward  writes Y (and cols, tmp): per chunk, im2col (parallel over samples), then per sample
                Y[n] (F, P) = b + Wt (F, CKK) @ cols[n] (CKK, P): the GEMM writes NCHW directly.
conv2d_backward writes dW, db, dX (and overwrites cols, tmp): db = sum dY; per sample
                dW (+)= dY[n] @ cols[n]^T and cols[n] = Wt^T @ dY[n] (d cols), then col2im of the
                chunk (parallel over samples) into dX.
Grid path (stride 1, no padding, CKK > 2 F): the same with one contiguous copy per column-matrix
row on the full-width output grid; see the note above _is_grid.
The batch goes through in chunks of Nc = cols.shape[0] samples, so the workspaces are bounded
whatever N is (the layer picks Nc from a byte budget).  When Nc >= N the forward's cols are still
valid in backward (``cols_ready``) and im2col is not redone.

Measured choices (float32, 1 thread, batch 64, the benchmark's layers 1x28x28 -> 8x26x26 and
8x13x13 -> 16x11x11, see benchmarks/bench_cnn.py --profile):
* one GEMM per sample rather than one GEMM per chunk on a (CKK, Nc P) matrix plus an NCHW
  transpose: OpenBLAS ran the long-K weight-gradient product (8 x 9 x 43264) 6x slower than the
  64 per-sample ones (8 x 9 x 676), and the 8->16 layer's forward 1.3x slower;
* the per-sample GEMMs of the 8->16 layer run at ~75-80% of single-core sgemm peak, so what is
  left is data movement: hence the grid path (that layer's im2col ~170 -> 49 µs, col2im
  ~220 -> 85 µs, forward 366 -> 277 µs, backward ~650 -> 580 µs);
* db sums use eight independent accumulators (4x faster than a strict-order sum).
Threads: the im2col / col2im / grid passes run as jobs over static shares of the samples, as
many as the thread policy gives for their size (_parallel._par_run, see nnc/_threads.py); the
GEMMs get their thread count in _blas._gemm.
BLAS is never called inside a job.
"""
from libc.string cimport memset, memcpy
from nnc._kernels._blas cimport floating, blas_int, _gemm, NoTrans, Trans_
from nnc._kernels._parallel cimport (_par_begin, _par_end, _par_run, _chunk_lo, MAX_JOBS,
                                     WORK_IM2COL)
from nnc._kernels._sizes cimport _checked_mul, _checked_add

# largest value of a BLAS size / leading dimension (32-bit BLAS)
cdef Py_ssize_t _BLAS_MAX = 2147483647


cdef inline int _threads_for(int n_threads, Py_ssize_t n_items, Py_ssize_t work) noexcept nogil:
    """Threads for a pass over n_items independent samples writing `work` elements: the thread
    policy's answer for WORK_IM2COL (1 below its threshold; see nnc/_threads.py), at most one
    per sample.  Pass the result to _par_end when the pass is done."""
    if n_items < 2:
        return 1
    return _par_begin(n_threads if n_threads < n_items else <int>n_items, WORK_IM2COL,
                      <double>work)


cdef inline Py_ssize_t _ceil_div(Py_ssize_t a, Py_ssize_t b) noexcept nogil:
    """ceil(a / b) for a >= 0, b > 0."""
    return (a + b - 1) // b


cdef inline void _valid_range(Py_ssize_t k, Py_ssize_t P, Py_ssize_t S, Py_ssize_t L,
                              Py_ssize_t O, Py_ssize_t* lo, Py_ssize_t* hi) noexcept nogil:
    """[lo, hi): outputs o in [0, O) whose input index o S - P + k lies in [0, L)."""
    cdef Py_ssize_t a, b
    a = 0 if P - k <= 0 else _ceil_div(P - k, S)
    if L - 1 + P - k < 0:
        b = 0
    else:
        b = (L - 1 + P - k) // S + 1
    if b > O:
        b = O
    if a > b:
        a = b
    lo[0] = a
    hi[0] = b


cdef inline void _add_row(const floating* src, floating* dst, Py_ssize_t n) noexcept nogil:
    """dst[:n] += src[:n]."""
    cdef Py_ssize_t i
    for i in range(n):
        dst[i] += src[i]


cdef void _im2col_sample(const floating* X, floating* cols, Py_ssize_t ld,
                         Py_ssize_t C, Py_ssize_t H, Py_ssize_t W,
                         Py_ssize_t KH, Py_ssize_t KW, Py_ssize_t SH, Py_ssize_t SW,
                         Py_ssize_t PH, Py_ssize_t PW, Py_ssize_t OH, Py_ssize_t OW) noexcept nogil:
    """cols[(c, kh, kw), oh OW + ow] = X[c, oh SH - PH + kh, ow SW - PW + kw] (0 outside), one
    sample; cols has row stride ld."""
    cdef Py_ssize_t c, kh, kw, oh, ow, ih, lo = 0, hi = 0, oh_lo = 0, oh_hi = 0
    cdef floating* row
    cdef floating* dst
    cdef const floating* src
    for c in range(C):
        for kh in range(KH):
            _valid_range(kh, PH, SH, H, OH, &oh_lo, &oh_hi)
            for kw in range(KW):
                _valid_range(kw, PW, SW, W, OW, &lo, &hi)
                row = cols + ((c * KH + kh) * KW + kw) * ld
                if oh_lo > 0:
                    memset(row, 0, oh_lo * OW * sizeof(floating))
                if oh_hi < OH:
                    memset(row + oh_hi * OW, 0, (OH - oh_hi) * OW * sizeof(floating))
                for oh in range(oh_lo, oh_hi):
                    ih = oh * SH - PH + kh
                    dst = row + oh * OW
                    # src[ow * SW] = X[c, ih, ow SW - PW + kw]; only dereferenced for ow in [lo, hi)
                    src = X + (c * H + ih) * W + kw - PW
                    for ow in range(lo):
                        dst[ow] = 0
                    if SW == 1:   # memcpy: 20-30% faster than a loop on 11- to 26-wide rows
                        memcpy(dst + lo, src + lo, (hi - lo) * sizeof(floating))
                    else:
                        for ow in range(lo, hi):
                            dst[ow] = src[ow * SW]
                    for ow in range(hi, OW):
                        dst[ow] = 0


cdef void _col2im_sample(const floating* cols, floating* dX, Py_ssize_t ld,
                         Py_ssize_t C, Py_ssize_t H, Py_ssize_t W,
                         Py_ssize_t KH, Py_ssize_t KW, Py_ssize_t SH, Py_ssize_t SW,
                         Py_ssize_t PH, Py_ssize_t PW, Py_ssize_t OH, Py_ssize_t OW) noexcept nogil:
    """dX = 0; dX[c, oh SH - PH + kh, ow SW - PW + kw] += cols[(c, kh, kw), oh OW + ow] (adjoint of
    im2col), one sample."""
    cdef Py_ssize_t c, kh, kw, oh, ow, ih, lo = 0, hi = 0, oh_lo = 0, oh_hi = 0
    cdef const floating* src
    cdef floating* dst
    memset(dX, 0, C * H * W * sizeof(floating))
    for c in range(C):
        for kh in range(KH):
            _valid_range(kh, PH, SH, H, OH, &oh_lo, &oh_hi)
            for kw in range(KW):
                _valid_range(kw, PW, SW, W, OW, &lo, &hi)
                for oh in range(oh_lo, oh_hi):
                    ih = oh * SH - PH + kh
                    src = cols + ((c * KH + kh) * KW + kw) * ld + oh * OW
                    dst = dX + (c * H + ih) * W + kw - PW
                    if SW == 1:
                        _add_row(src + lo, dst + lo, hi - lo)
                    else:
                        for ow in range(lo, hi):
                            dst[ow * SW] += src[ow]


cdef void _im2col(const floating* X, floating* cols, Py_ssize_t N,
                  Py_ssize_t C, Py_ssize_t H, Py_ssize_t W, Py_ssize_t KH, Py_ssize_t KW,
                  Py_ssize_t SH, Py_ssize_t SW, Py_ssize_t PH, Py_ssize_t PW,
                  Py_ssize_t OH, Py_ssize_t OW, int n_threads) noexcept nogil:
    """im2col of N samples: sample n goes to the block cols[n] (CKK, P)."""
    _per_sample(OP_IM2COL, X, NULL, cols, N, C, H, W, 0, KH, KW, SH, SW, PH, PW, OH, OW,
                n_threads)


cdef void _col2im(const floating* cols, floating* dX, Py_ssize_t N,
                  Py_ssize_t C, Py_ssize_t H, Py_ssize_t W, Py_ssize_t KH, Py_ssize_t KW,
                  Py_ssize_t SH, Py_ssize_t SW, Py_ssize_t PH, Py_ssize_t PW,
                  Py_ssize_t OH, Py_ssize_t OW, int n_threads) noexcept nogil:
    """col2im of N samples (each sample's dX is overwritten; samples are independent)."""
    _per_sample(OP_COL2IM, cols, NULL, dX, N, C, H, W, 0, KH, KW, SH, SW, PH, PW, OH, OW,
                n_threads)


# ---------------------------------------------------------------- per-sample passes as jobs
# Every per-sample pass (im2col, col2im and the four grid passes) runs as up to MAX_JOBS jobs,
# each a static share of the samples, through the thread policy's _par_run (1 job below the
# policy's WORK_IM2COL threshold).  Samples are independent, so any split gives the same bytes.

cdef enum:
    OP_IM2COL = 0       # X -> cols (general)
    OP_COL2IM = 1       # cols -> dX (general)
    OP_GRID_IM2COL = 2  # X -> cols (grid)
    OP_GRID_COL2IM = 3  # cols -> dX (grid)
    OP_GRID_TO_OUT = 4  # tmp -> Y (+ b)
    OP_OUT_TO_GRID = 5  # dY -> tmp


cdef struct SampleJob:
    int op
    bint dbl
    const void* src
    const void* b
    void* dst
    Py_ssize_t lo, hi                      # samples [lo, hi)
    Py_ssize_t C, H, W, F, KH, KW, SH, SW, PH, PW, OH, OW


cdef void _sample_rows(SampleJob* j, floating tag) noexcept nogil:
    """Samples [j.lo, j.hi) of pass j.op (`tag` only selects the floating type)."""
    cdef const floating* src = <const floating*>j.src
    cdef const floating* b = <const floating*>j.b
    cdef floating* dst = <floating*>j.dst
    cdef Py_ssize_t i, C = j.C, H = j.H, W = j.W, F = j.F, KH = j.KH, KW = j.KW
    cdef Py_ssize_t OH = j.OH, OW = j.OW, P = j.OH * j.OW, CHW = j.C * j.H * j.W
    cdef Py_ssize_t CKK = j.C * j.KH * j.KW, L = (j.OH - 1) * j.W + j.OW
    for i in range(j.lo, j.hi):
        if j.op == OP_IM2COL:
            _im2col_sample(src + i * CHW, dst + i * CKK * P, P, C, H, W, KH, KW, j.SH, j.SW,
                           j.PH, j.PW, OH, OW)
        elif j.op == OP_COL2IM:
            _col2im_sample(src + i * CKK * P, dst + i * CHW, P, C, H, W, KH, KW, j.SH, j.SW,
                           j.PH, j.PW, OH, OW)
        elif j.op == OP_GRID_IM2COL:
            _im2col_grid_sample(src + i * CHW, dst + i * CKK * L, L, C, H, W, KH, KW)
        elif j.op == OP_GRID_COL2IM:
            _col2im_grid_sample(src + i * CKK * L, dst + i * CHW, L, C, H, W, KH, KW)
        elif j.op == OP_GRID_TO_OUT:
            _grid_to_out_sample(src + i * F * L, b, dst + i * F * P, F, L, W, OH, OW)
        else:
            _out_to_grid_sample(src + i * F * P, dst + i * F * L, F, L, W, OH, OW)


cdef void _sample_job(void* p) noexcept nogil:
    cdef SampleJob* j = <SampleJob*>p
    if j.dbl:
        _sample_rows(j, <double>0)
    else:
        _sample_rows(j, <float>0)


cdef void _per_sample(int op, const floating* src, const floating* b, floating* dst,
                      Py_ssize_t n, Py_ssize_t C, Py_ssize_t H, Py_ssize_t W, Py_ssize_t F,
                      Py_ssize_t KH, Py_ssize_t KW, Py_ssize_t SH, Py_ssize_t SW,
                      Py_ssize_t PH, Py_ssize_t PW, Py_ssize_t OH, Py_ssize_t OW,
                      int n_threads) noexcept nogil:
    """Pass `op` over n samples, split into as many jobs as the thread policy gives for the
    elements it writes."""
    cdef SampleJob jobs[MAX_JOBS]
    cdef Py_ssize_t work
    cdef int nt, t
    if n <= 0:
        return
    if op == OP_IM2COL or op == OP_COL2IM:
        work = n * C * KH * KW * OH * OW
    else:
        work = n * (C * KH * KW + F) * ((OH - 1) * W + OW)
    nt = _threads_for(n_threads, n, work)
    for t in range(nt):
        jobs[t].op = op
        jobs[t].dbl = floating is double
        jobs[t].src = src
        jobs[t].b = b
        jobs[t].dst = dst
        jobs[t].lo = _chunk_lo(n, nt, t)
        jobs[t].hi = _chunk_lo(n, nt, t + 1)
        jobs[t].C = C
        jobs[t].H = H
        jobs[t].W = W
        jobs[t].F = F
        jobs[t].KH = KH
        jobs[t].KW = KW
        jobs[t].SH = SH
        jobs[t].SW = SW
        jobs[t].PH = PH
        jobs[t].PW = PW
        jobs[t].OH = OH
        jobs[t].OW = OW
    _par_run(nt, _sample_job, jobs, sizeof(SampleJob))
    _par_end(nt)


cdef inline void _fill_bias(floating* Y, const floating* b, Py_ssize_t F,
                            Py_ssize_t P) noexcept nogil:
    """Y[f, p] = b[f] for one sample."""
    cdef Py_ssize_t f, p
    cdef floating bf
    for f in range(F):
        bf = b[f]
        for p in range(P):
            Y[f * P + p] = bf


# ---------------------------------------------------------------- stride-1 unpadded path
# With SH = SW = 1 and no padding (and C KH KW > 2 F, see _is_grid), sample n's output pixel
# (oh, ow) reads X[n, c].flat at q + kh W + kw with q = oh W + ow.  On the full-width grid q in
# [0, L), L = (OH - 1) W + OW, every column-matrix row is then ONE contiguous slice of an input
# plane (one memcpy instead of OH short copies), and col2im is one contiguous add per row.  The
# columns ow >= OW of the grid are junk: forward drops them when copying the GEMM output
# tmp (F, L) into Y, backward zeroes them in the expanded dY (so they add nothing to dW, and
# d cols is exactly 0 there).  The GEMMs grow by L / P (17% on the benchmark's 8x13x13 -> 16 layer)
# but its im2col + col2im drop from ~390 to ~135 µs per batch of 64.

cdef bint _is_grid(Py_ssize_t C, Py_ssize_t KH, Py_ssize_t KW, Py_ssize_t F, Py_ssize_t SH,
                   Py_ssize_t SW, Py_ssize_t PH, Py_ssize_t PW) noexcept nogil:
    """Take the grid path: stride 1, no padding, and more column rows than twice the filters (the
    grid saves ~2 CKK OH short copies per sample and costs ~2 F OH: the benchmark's 1->8 layer,
    CKK 9, ran its backward 60% slower on the grid, the 8->16 layer, CKK 72, 30% faster)."""
    # C KH KW > 2 F, written so that a huge F cannot overflow
    return SH == 1 and SW == 1 and PH == 0 and PW == 0 and (C * KH * KW - 1) // 2 >= F


cdef void _im2col_grid_sample(const floating* X, floating* cols, Py_ssize_t L, Py_ssize_t C,
                              Py_ssize_t H, Py_ssize_t W, Py_ssize_t KH,
                              Py_ssize_t KW) noexcept nogil:
    """cols[(c, kh, kw), q] = X[c].flat[kh W + kw + q] for q < L (reads stay inside X: the last
    row ends at (KH - 1) W + KW - 1 + L - 1 = H W - 1)."""
    cdef Py_ssize_t c, kh, kw
    for c in range(C):
        for kh in range(KH):
            for kw in range(KW):
                memcpy(cols + ((c * KH + kh) * KW + kw) * L, X + (c * H + kh) * W + kw,
                       L * sizeof(floating))


cdef void _col2im_grid_sample(const floating* cols, floating* dX, Py_ssize_t L, Py_ssize_t C,
                              Py_ssize_t H, Py_ssize_t W, Py_ssize_t KH,
                              Py_ssize_t KW) noexcept nogil:
    """dX = 0; dX[c].flat[kh W + kw + q] += cols[(c, kh, kw), q]."""
    cdef Py_ssize_t c, kh, kw
    memset(dX, 0, C * H * W * sizeof(floating))
    for c in range(C):
        for kh in range(KH):
            for kw in range(KW):
                _add_row(cols + ((c * KH + kh) * KW + kw) * L, dX + (c * H + kh) * W + kw, L)


cdef void _grid_to_out_sample(const floating* tmp, const floating* b, floating* Y, Py_ssize_t F,
                              Py_ssize_t L, Py_ssize_t W, Py_ssize_t OH,
                              Py_ssize_t OW) noexcept nogil:
    """Y[f, oh, ow] = tmp[f, oh W + ow] + b[f]."""
    cdef Py_ssize_t f, oh, ow
    cdef floating bf
    cdef const floating* src
    cdef floating* dst
    for f in range(F):
        bf = b[f]
        for oh in range(OH):
            src = tmp + f * L + oh * W
            dst = Y + (f * OH + oh) * OW
            for ow in range(OW):
                dst[ow] = src[ow] + bf


cdef void _out_to_grid_sample(const floating* dY, floating* tmp, Py_ssize_t F, Py_ssize_t L,
                              Py_ssize_t W, Py_ssize_t OH, Py_ssize_t OW) noexcept nogil:
    """tmp[f, oh W + ow] = dY[f, oh, ow], 0 in the junk columns ow in [OW, W)."""
    cdef Py_ssize_t f, oh, j
    cdef floating* row
    for f in range(F):
        row = tmp + f * L
        for oh in range(OH):
            memcpy(row + oh * W, dY + (f * OH + oh) * OW, OW * sizeof(floating))
            if oh < OH - 1:
                for j in range(OW, W):      # KW - 1 junk columns: a loop, not a memset call
                    row[oh * W + j] = 0


cdef inline void _grid_prepare(int op, const floating* src, const floating* b, floating* dst,
                               Py_ssize_t n, Py_ssize_t C, Py_ssize_t H, Py_ssize_t W,
                               Py_ssize_t F, Py_ssize_t KH, Py_ssize_t KW, Py_ssize_t OH,
                               Py_ssize_t OW, int n_threads) noexcept nogil:
    """One of the four per-sample grid passes over n samples: 0 im2col (X -> cols), 1 col2im
    (cols -> dX), 2 tmp -> Y (+ b), 3 dY -> tmp."""
    _per_sample(OP_GRID_IM2COL + op, src, b, dst, n, C, H, W, F, KH, KW, 1, 1, 0, 0, OH, OW,
                n_threads)


# ---------------------------------------------------------------- forward / backward drivers

cdef void _conv2d_forward(const floating* X, const floating* Wt, const floating* b,
                          floating* cols, floating* tmp, floating* Y,
                          Py_ssize_t N, Py_ssize_t Nc, Py_ssize_t C, Py_ssize_t H, Py_ssize_t W,
                          Py_ssize_t F, Py_ssize_t KH, Py_ssize_t KW, Py_ssize_t SH, Py_ssize_t SW,
                          Py_ssize_t PH, Py_ssize_t PW, Py_ssize_t OH, Py_ssize_t OW,
                          int n_threads) noexcept nogil:
    """Y = conv(X, Wt) + b, in chunks of Nc samples through cols (Nc, CKK, L) and, on the
    stride-1 unpadded path, tmp (Nc, F, L); L = P, or the grid length there."""
    cdef Py_ssize_t start = 0, n, i, P = OH * OW, CKK = C * KH * KW, CHW = C * H * W
    cdef bint grid = _is_grid(C, KH, KW, F, SH, SW, PH, PW)
    cdef Py_ssize_t L = (OH - 1) * W + OW if grid else P
    cdef floating* Yn
    while start < N:
        n = Nc if N - start > Nc else N - start
        if grid:
            _grid_prepare(0, X + start * CHW, b, cols, n, C, H, W, F, KH, KW, OH, OW, n_threads)
            for i in range(n):
                _gemm(NoTrans, NoTrans, <blas_int>F, <blas_int>L, <blas_int>CKK, <floating>1.0,
                      Wt, <blas_int>CKK, cols + i * CKK * L, <blas_int>L, <floating>0.0,
                      tmp + i * F * L, <blas_int>L)
            _grid_prepare(2, tmp, b, Y + start * F * P, n, C, H, W, F, KH, KW, OH, OW, n_threads)
        else:
            _im2col(X + start * CHW, cols, n, C, H, W, KH, KW, SH, SW, PH, PW, OH, OW, n_threads)
            for i in range(n):
                Yn = Y + (start + i) * F * P
                _fill_bias(Yn, b, F, P)
                _gemm(NoTrans, NoTrans, <blas_int>F, <blas_int>P, <blas_int>CKK, <floating>1.0,
                      Wt, <blas_int>CKK, cols + i * CKK * P, <blas_int>P, <floating>1.0, Yn,
                      <blas_int>P)
        start += n


cdef void _bias_grad(const floating* dY, floating* db, Py_ssize_t N, Py_ssize_t F,
                     Py_ssize_t P) noexcept nogil:
    """db[f] = sum_{n, p} dY[n, f, p].

    Eight independent partial sums per row (the compiler keeps them in one vector register: a
    strict-order scalar sum ran 4x slower on the benchmark shapes), rows summed in double."""
    cdef Py_ssize_t n, f, p, j, P8 = P - P % 8
    cdef floating acc[8]
    cdef const floating* row
    cdef double s
    for f in range(F):
        s = 0
        for n in range(N):
            row = dY + (n * F + f) * P
            for j in range(8):
                acc[j] = 0
            for p in range(0, P8, 8):
                for j in range(8):
                    acc[j] = acc[j] + row[p + j]
            for p in range(P8, P):
                s += row[p]
            for j in range(8):
                s += acc[j]
        db[f] = <floating>s


cdef void _conv2d_backward(const floating* X, const floating* Wt, const floating* dY,
                           floating* cols, floating* tmp, floating* dW, floating* db,
                           floating* dX, bint cols_ready,
                           Py_ssize_t N, Py_ssize_t Nc, Py_ssize_t C, Py_ssize_t H, Py_ssize_t W,
                           Py_ssize_t F, Py_ssize_t KH, Py_ssize_t KW, Py_ssize_t SH, Py_ssize_t SW,
                           Py_ssize_t PH, Py_ssize_t PW, Py_ssize_t OH, Py_ssize_t OW,
                           int n_threads) noexcept nogil:
    """dW = sum_n dY[n] cols[n]^T, db = sum dY, dX = col2im(Wt^T dY[n]) (skipped if dX is NULL).

    cols_ready: cols already holds the columns of all N samples (N <= Nc), left by the forward
    pass.  cols is overwritten (it receives d cols) when dX is computed; tmp (grid path) too."""
    cdef Py_ssize_t start = 0, n, i, P = OH * OW, CKK = C * KH * KW, CHW = C * H * W
    cdef bint grid = _is_grid(C, KH, KW, F, SH, SW, PH, PW)
    cdef Py_ssize_t L = (OH - 1) * W + OW if grid else P
    cdef floating beta
    cdef const floating* g
    cdef floating* cn
    _bias_grad(dY, db, N, F, P)
    while start < N:
        n = Nc if N - start > Nc else N - start
        if not cols_ready:
            if grid:
                _grid_prepare(0, X + start * CHW, NULL, cols, n, C, H, W, F, KH, KW, OH, OW,
                              n_threads)
            else:
                _im2col(X + start * CHW, cols, n, C, H, W, KH, KW, SH, SW, PH, PW, OH, OW,
                        n_threads)
        if grid:
            _grid_prepare(3, dY + start * F * P, NULL, tmp, n, C, H, W, F, KH, KW, OH, OW,
                          n_threads)
        for i in range(n):
            if grid:
                g = tmp + i * F * L
            else:
                g = dY + (start + i) * F * P
            cn = cols + i * CKK * L
            beta = 0.0 if start + i == 0 else 1.0
            _gemm(NoTrans, Trans_, <blas_int>F, <blas_int>CKK, <blas_int>L, <floating>1.0,
                  g, <blas_int>L, cn, <blas_int>L, beta, dW, <blas_int>CKK)
            if dX != NULL:
                _gemm(Trans_, NoTrans, <blas_int>CKK, <blas_int>L, <blas_int>F, <floating>1.0,
                      Wt, <blas_int>CKK, g, <blas_int>L, <floating>0.0, cn, <blas_int>L)
        if dX != NULL:
            if grid:
                _grid_prepare(1, cols, NULL, dX + start * CHW, n, C, H, W, F, KH, KW, OH, OW,
                              n_threads)
            else:
                _col2im(cols, dX + start * CHW, n, C, H, W, KH, KW, SH, SW, PH, PW, OH, OW,
                        n_threads)
        start += n


# ---------------------------------------------------------------- validation helpers

cdef Py_ssize_t _out_size(Py_ssize_t size, Py_ssize_t kernel, Py_ssize_t stride,
                          Py_ssize_t pad) except -1:
    """(size + 2 pad - kernel) // stride + 1, or ValueError on illegal geometry (also when
    size + 2 pad overflows)."""
    cdef Py_ssize_t padded
    if kernel < 1 or stride < 1 or pad < 0 or size < 1:
        raise ValueError(f"illegal geometry: size={size}, kernel={kernel}, stride={stride}, "
                         f"padding={pad} (need size, kernel, stride >= 1 and padding >= 0)")
    padded = _checked_add(size, _checked_mul(2, pad, "padding"), "padded input size")
    if kernel > padded:
        raise ValueError(f"kernel {kernel} is larger than the padded input {size} + 2*{pad}")
    return (padded - kernel) // stride + 1


def conv_output_size(Py_ssize_t size, Py_ssize_t kernel, Py_ssize_t stride, Py_ssize_t pad):
    """(size + 2 pad - kernel) // stride + 1, or raise ValueError on illegal geometry (also when
    size + 2 pad overflows)."""
    return _out_size(size, kernel, stride, pad)


cdef int _column_sizes(Py_ssize_t C, Py_ssize_t H, Py_ssize_t W, Py_ssize_t KH, Py_ssize_t KW,
                       Py_ssize_t SH, Py_ssize_t SW, Py_ssize_t PH, Py_ssize_t PW, bint grid,
                       str who, Py_ssize_t* OH, Py_ssize_t* OW, Py_ssize_t* CKK,
                       Py_ssize_t* L) except -1:
    """OH, OW, CKK = C KH KW and L = OH OW, or the grid length (OH - 1) W + OW when `grid`
    (stride 1, no padding), with every sum and product overflow-checked (ValueError prefixed by
    `who`; strings are formatted only on that error path)."""
    try:
        OH[0] = _out_size(H, KH, SH, PH)
        OW[0] = _out_size(W, KW, SW, PW)
        CKK[0] = _checked_mul(_checked_mul(C, KH, "column rows C*KH*KW"), KW,
                              "column rows C*KH*KW")
        if grid:
            L[0] = _checked_add(_checked_mul(OH[0] - 1, W, "grid length"), OW[0],
                                "grid length")
        else:
            L[0] = _checked_mul(OH[0], OW[0], "output pixels OH*OW")
        _checked_mul(CKK[0], L[0], "one sample's columns")
    except ValueError as exc:
        raise ValueError(f"{who}: {exc}") from None
    return 0


cdef inline tuple _shape4(Py_ssize_t* shape):
    return (shape[0], shape[1], shape[2], shape[3])


cdef tuple _workspace_shapes(Py_ssize_t Nc, Py_ssize_t C, Py_ssize_t H, Py_ssize_t W,
                             Py_ssize_t F, Py_ssize_t KH, Py_ssize_t KW, Py_ssize_t SH,
                             Py_ssize_t SW, Py_ssize_t PH, Py_ssize_t PW, str who):
    cdef Py_ssize_t OH = 0, OW = 0, CKK = 0, L = 0
    cdef bint grid
    if Nc < 1:
        raise ValueError(f"{who}: the chunk size Nc must be >= 1, got {Nc}")
    if F < 1 or C < 1:
        raise ValueError(f"{who}: filters F={F} and channels C={C} must be >= 1")
    _column_sizes(C, H, W, KH, KW, SH, SW, PH, PW, False, who, &OH, &OW, &CKK, &L)
    grid = _is_grid(C, KH, KW, F, SH, SW, PH, PW)
    if grid:
        _column_sizes(C, H, W, KH, KW, SH, SW, PH, PW, True, who, &OH, &OW, &CKK, &L)
    # whole workspaces must be representable (NumPy then decides whether they fit in memory)
    try:
        _checked_mul(Nc, _checked_mul(CKK, L, "cols"), "cols")
        _checked_mul(Nc, _checked_mul(F, L, "tmp"), "tmp")
    except ValueError as exc:
        raise ValueError(f"{who}: {exc}") from None
    if grid:
        return (Nc, CKK, L), (Nc, F, L)
    return (Nc, CKK, L), (Nc, F, 0)


def conv2d_workspace_shapes(Py_ssize_t Nc, Py_ssize_t C, Py_ssize_t H, Py_ssize_t W,
                            Py_ssize_t F, Py_ssize_t KH, Py_ssize_t KW, Py_ssize_t SH=1,
                            Py_ssize_t SW=1, Py_ssize_t PH=0, Py_ssize_t PW=0):
    """(cols shape, tmp shape) that conv2d_forward / conv2d_backward need for chunks of Nc samples.

    cols (Nc, C KH KW, L) and tmp (Nc, F, T): L = OH OW and T = 0 in general; on the grid path
    (stride 1, no padding, C KH KW > 2 F) L = T = (OH - 1) W + OW, the full-width output grid."""
    return _workspace_shapes(Nc, C, H, W, F, KH, KW, SH, SW, PH, PW, "conv2d_workspace_shapes")


cdef tuple _check_conv(tuple X_shape, tuple W_shape, Py_ssize_t SH, Py_ssize_t SW,
                       Py_ssize_t PH, Py_ssize_t PW, tuple Y_shape, tuple cols_shape,
                       tuple tmp_shape, int n_threads, str who):
    """Validate every shape of a conv2d twin call; return (OH, OW, Nc)."""
    cdef Py_ssize_t N = X_shape[0], C = X_shape[1], H = X_shape[2], W = X_shape[3]
    cdef Py_ssize_t F = W_shape[0], KH = W_shape[2], KW = W_shape[3]
    cdef Py_ssize_t OH = 0, OW = 0, CKK = 0, L = 0, Nc
    if n_threads < 1:
        raise ValueError(f"{who}: n_threads must be >= 1, got {n_threads}")
    if W_shape[1] != C:
        raise ValueError(f"{who}: weights have {W_shape[1]} input channels, X has {C}")
    if F < 1 or C < 1:
        raise ValueError(f"{who}: empty filter or channel dimension")
    _column_sizes(C, H, W, KH, KW, SH, SW, PH, PW, False, who, &OH, &OW, &CKK, &L)
    if Y_shape != (N, F, OH, OW):
        raise ValueError(f"{who}: output/gradient has shape {Y_shape}, expected {(N, F, OH, OW)}")
    Nc = cols_shape[0]
    if Nc < 1:
        raise ValueError(f"{who}: cols must hold at least one sample, got shape {cols_shape}")
    want_cols, want_tmp = _workspace_shapes(Nc, C, H, W, F, KH, KW, SH, SW, PH, PW, who)
    if cols_shape != want_cols or tmp_shape != want_tmp:
        raise ValueError(f"{who}: workspaces must have shapes cols {want_cols}, tmp {want_tmp} "
                         f"(see conv2d_workspace_shapes), got {cols_shape}, {tmp_shape}")
    if max(F, want_cols[1], want_cols[2]) > _BLAS_MAX:
        raise ValueError(f"{who}: dimensions too large for 32-bit BLAS sizes")
    return OH, OW, Nc


# ---------------------------------------------------------------- Python twins

def im2col(const floating[:, :, :, ::1] X, floating[:, :, ::1] cols_out, Py_ssize_t KH,
           Py_ssize_t KW, Py_ssize_t SH=1, Py_ssize_t SW=1, Py_ssize_t PH=0, Py_ssize_t PW=0,
           int n_threads=1):
    """General-path columns: cols_out (N, C KH KW, OH OW),
    cols_out[n, (c, kh, kw), oh OW + ow] = X[n, c, oh SH - PH + kh, ow SW - PW + kw] (0 in the
    padding)."""
    cdef Py_ssize_t N = X.shape[0], C = X.shape[1], H = X.shape[2], W = X.shape[3]
    cdef Py_ssize_t OH = 0, OW = 0, CKK = 0, P = 0
    if n_threads < 1:
        raise ValueError("im2col: n_threads must be >= 1")
    _column_sizes(C, H, W, KH, KW, SH, SW, PH, PW, False, "im2col", &OH, &OW, &CKK, &P)
    if (cols_out.shape[0], cols_out.shape[1], cols_out.shape[2]) != (N, CKK, P):
        raise ValueError(f"im2col: cols_out must have shape {(N, CKK, P)}, "
                         f"got {(cols_out.shape[0], cols_out.shape[1], cols_out.shape[2])}")
    if N == 0 or C == 0:
        return
    with nogil:
        _im2col(&X[0, 0, 0, 0], &cols_out[0, 0, 0], N, C, H, W, KH, KW, SH, SW, PH, PW, OH, OW,
                n_threads)


def col2im(const floating[:, :, ::1] cols, floating[:, :, :, ::1] dX_out, Py_ssize_t KH,
           Py_ssize_t KW, Py_ssize_t SH=1, Py_ssize_t SW=1, Py_ssize_t PH=0, Py_ssize_t PW=0,
           int n_threads=1):
    """Adjoint of im2col: dX_out (N, C, H, W) = the columns scattered back and summed
    (overwritten)."""
    cdef Py_ssize_t N = dX_out.shape[0], C = dX_out.shape[1], H = dX_out.shape[2]
    cdef Py_ssize_t W = dX_out.shape[3]
    cdef Py_ssize_t OH = 0, OW = 0, CKK = 0, P = 0
    if n_threads < 1:
        raise ValueError("col2im: n_threads must be >= 1")
    _column_sizes(C, H, W, KH, KW, SH, SW, PH, PW, False, "col2im", &OH, &OW, &CKK, &P)
    if (cols.shape[0], cols.shape[1], cols.shape[2]) != (N, CKK, P):
        raise ValueError(f"col2im: cols must have shape {(N, CKK, P)}, "
                         f"got {(cols.shape[0], cols.shape[1], cols.shape[2])}")
    if N == 0 or C == 0:
        return
    with nogil:
        _col2im(&cols[0, 0, 0], &dX_out[0, 0, 0, 0], N, C, H, W, KH, KW, SH, SW, PH, PW, OH, OW,
                n_threads)


def im2col_grid(const floating[:, :, :, ::1] X, floating[:, :, ::1] cols_out, Py_ssize_t KH,
                Py_ssize_t KW, int n_threads=1):
    """Stride-1 unpadded columns on the full-width grid: cols_out (N, C KH KW, L),
    cols_out[n, (c, kh, kw), q] = X[n, c].flat[kh W + kw + q], L = (OH - 1) W + OW."""
    cdef Py_ssize_t N = X.shape[0], C = X.shape[1], H = X.shape[2], W = X.shape[3]
    cdef Py_ssize_t OH = 0, OW = 0, CKK = 0, L = 0
    if n_threads < 1:
        raise ValueError("im2col_grid: n_threads must be >= 1")
    _column_sizes(C, H, W, KH, KW, 1, 1, 0, 0, True, "im2col_grid", &OH, &OW, &CKK, &L)
    want = (N, CKK, L)
    if (cols_out.shape[0], cols_out.shape[1], cols_out.shape[2]) != want:
        raise ValueError(f"im2col_grid: cols_out must have shape {want}, "
                         f"got {(cols_out.shape[0], cols_out.shape[1], cols_out.shape[2])}")
    if N == 0 or C == 0:
        return
    with nogil:
        _grid_prepare(0, &X[0, 0, 0, 0], NULL, &cols_out[0, 0, 0], N, C, H, W, 1, KH, KW, OH, OW,
                      n_threads)


def col2im_grid(const floating[:, :, ::1] cols, floating[:, :, :, ::1] dX_out, Py_ssize_t KH,
                Py_ssize_t KW, int n_threads=1):
    """Adjoint of im2col_grid: dX_out (N, C, H, W) overwritten with the scattered columns."""
    cdef Py_ssize_t N = dX_out.shape[0], C = dX_out.shape[1], H = dX_out.shape[2]
    cdef Py_ssize_t W = dX_out.shape[3]
    cdef Py_ssize_t OH = 0, OW = 0, CKK = 0, L = 0
    if n_threads < 1:
        raise ValueError("col2im_grid: n_threads must be >= 1")
    _column_sizes(C, H, W, KH, KW, 1, 1, 0, 0, True, "col2im_grid", &OH, &OW, &CKK, &L)
    want = (N, CKK, L)
    if (cols.shape[0], cols.shape[1], cols.shape[2]) != want:
        raise ValueError(f"col2im_grid: cols must have shape {want}, "
                         f"got {(cols.shape[0], cols.shape[1], cols.shape[2])}")
    if N == 0 or C == 0:
        return
    with nogil:
        _grid_prepare(1, &cols[0, 0, 0], NULL, &dX_out[0, 0, 0, 0], N, C, H, W, 1, KH, KW, OH, OW,
                      n_threads)


def conv2d_forward(const floating[:, :, :, ::1] X, const floating[:, :, :, ::1] Wt,
                   const floating[::1] b, floating[:, :, ::1] cols_out,
                   floating[:, :, ::1] tmp_ws, floating[:, :, :, ::1] Y_out, Py_ssize_t SH=1,
                   Py_ssize_t SW=1, Py_ssize_t PH=0, Py_ssize_t PW=0, int n_threads=1):
    """Y_out (N, F, OH, OW) = conv2d(X (N, C, H, W), Wt (F, C, KH, KW)) + b.

    cols_out / tmp_ws: workspaces shaped by conv2d_workspace_shapes(Nc, ...); their first axis
    fixes the chunk size Nc.  When Nc >= N, cols_out keeps the columns of X for
    conv2d_backward(..., cols_ready=True)."""
    cdef Py_ssize_t N = X.shape[0], C = X.shape[1], H = X.shape[2], W = X.shape[3]
    cdef Py_ssize_t F = Wt.shape[0], KH = Wt.shape[2], KW = Wt.shape[3]
    cdef Py_ssize_t OH, OW, Nc
    cdef floating* tmp_ptr = NULL
    OH, OW, Nc = _check_conv(_shape4(X.shape), _shape4(Wt.shape), SH, SW, PH, PW,
                             _shape4(Y_out.shape),
                             (cols_out.shape[0], cols_out.shape[1], cols_out.shape[2]),
                             (tmp_ws.shape[0], tmp_ws.shape[1], tmp_ws.shape[2]),
                             n_threads, "conv2d_forward")
    if b.shape[0] != F:
        raise ValueError(f"conv2d_forward: b has {b.shape[0]} entries, expected {F}")
    if N == 0:
        return
    if tmp_ws.shape[2] > 0:
        tmp_ptr = &tmp_ws[0, 0, 0]
    with nogil:
        _conv2d_forward(&X[0, 0, 0, 0], &Wt[0, 0, 0, 0], &b[0], &cols_out[0, 0, 0], tmp_ptr,
                        &Y_out[0, 0, 0, 0], N, Nc, C, H, W, F, KH, KW, SH, SW, PH, PW, OH, OW,
                        n_threads)


def conv2d_backward(const floating[:, :, :, ::1] X, const floating[:, :, :, ::1] Wt,
                    const floating[:, :, :, ::1] dY, floating[:, :, ::1] cols_ws,
                    floating[:, :, ::1] tmp_ws, floating[:, :, :, ::1] dW_out,
                    floating[::1] db_out, floating[:, :, :, ::1] dX_out=None, Py_ssize_t SH=1,
                    Py_ssize_t SW=1, Py_ssize_t PH=0, Py_ssize_t PW=0, bint cols_ready=False,
                    int n_threads=1):
    """dW_out = sum_n dY[n] cols(X[n])^T, db_out = sum dY, dX_out = col2im(Wt^T dY[n]) (if given).

    cols_ws / tmp_ws: workspaces as in conv2d_forward, overwritten.  cols_ready=True: cols_ws holds
    the columns of this X from conv2d_forward (needs Nc >= N), so im2col is not redone."""
    cdef Py_ssize_t N = X.shape[0], C = X.shape[1], H = X.shape[2], W = X.shape[3]
    cdef Py_ssize_t F = Wt.shape[0], KH = Wt.shape[2], KW = Wt.shape[3]
    cdef Py_ssize_t OH, OW, Nc
    cdef floating* dX_ptr = NULL
    cdef floating* tmp_ptr = NULL
    OH, OW, Nc = _check_conv(_shape4(X.shape), _shape4(Wt.shape), SH, SW, PH, PW,
                             _shape4(dY.shape),
                             (cols_ws.shape[0], cols_ws.shape[1], cols_ws.shape[2]),
                             (tmp_ws.shape[0], tmp_ws.shape[1], tmp_ws.shape[2]),
                             n_threads, "conv2d_backward")
    if _shape4(dW_out.shape) != _shape4(Wt.shape) or db_out.shape[0] != F:
        raise ValueError("conv2d_backward: dW_out / db_out do not match the weights")
    if dX_out is not None and _shape4(dX_out.shape) != _shape4(X.shape):
        raise ValueError(f"conv2d_backward: dX_out has shape {_shape4(dX_out.shape)}, "
                         f"expected {_shape4(X.shape)}")
    if cols_ready and Nc < N:
        raise ValueError("conv2d_backward: cols_ready needs every sample in one chunk (Nc >= N)")
    if N == 0:
        raise ValueError("conv2d_backward: empty batch")
    if dX_out is not None:
        dX_ptr = &dX_out[0, 0, 0, 0]
    if tmp_ws.shape[2] > 0:
        tmp_ptr = &tmp_ws[0, 0, 0]
    with nogil:
        _conv2d_backward(&X[0, 0, 0, 0], &Wt[0, 0, 0, 0], &dY[0, 0, 0, 0], &cols_ws[0, 0, 0],
                         tmp_ptr, &dW_out[0, 0, 0, 0], &db_out[0], dX_ptr, cols_ready,
                         N, Nc, C, H, W, F, KH, KW, SH, SW, PH, PW, OH, OW, n_threads)
