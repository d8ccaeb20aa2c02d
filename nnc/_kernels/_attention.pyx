"""Multi-head self-attention: forward and backward of

    Y = concat_h(softmax(Q_h K_h^T / sqrt(E) + mask) V_h) W_out^T + b_out,
    [Q | K | V] = X W_in^T + b_in

Dimensions: N samples, T positions, D model width, H heads, E = D / H head width.  X (N, T, D) is
batch-first; W_in (3D, D) and W_out (D, D) are in PyTorch's (out, in) layout (torch's
``in_proj_weight`` and ``out_proj.weight`` as they are); b_in (3D,), b_out (D,).

Layout.  The input projection of every position of every sample is ONE GEMM into QKV (N, T, 3D):
row (i, t) holds [q | k | v] and head h's q is columns h E .. (h+1) E, so a head's Q, K and V are
(T, E) matrices with row stride 3D that BLAS reads where they are (no reordering copy).  Each
(sample, head) pair then runs its own small products:

    S = Q K^T / sqrt(E)           (T, T), straight into its slab of P
    P = masked softmax(S)         rows: max-subtracted, one vectorised exp over the slab
    C[:, head] = P V              (T, E), written into the head's columns of C (N, T, D)

and the output projection is one GEMM, Y = C W_out^T + b_out over all N T rows.  Backward mirrors
it: dC = dY W_out (one GEMM), per pair dV = P^T dO, dP = dO V^T, the softmax backward fused in
one pass over the slab, dS = P * (dP - rowsum(P * dP)) / sqrt(E), dQ = dS K, dK = dS^T Q (all
written into dQKV's columns), then dW_in = dQKV^T X, dX = dQKV W_in (one GEMM each).

Per-pair products versus one batched scheme: at N = 64, T = 64, D = 64, H = 4 (float32, one
thread) the 256 pairs' products are ~0.5 us of call overhead each against ~2-5 us of work; a
strided "one GEMM per head over all samples" would compute the N^2 cross-sample blocks and throw
N - 1 of every N away.  (The measured split is in benchmarks/bench_layers.py's attention rows.)

Masks.  ``kmask`` (N, T) uint8, 1 = a real position (a key other positions may attend to), NULL =
every key is real; ``causal``: position t attends to keys j <= t only.  Masked scores become
-inf before the exp, so their probabilities are exactly 0.  A query row with no key it may attend
to (every key padded) gets probabilities 0 and so a context of 0 (PyTorch gives NaN there).
Masks are not needed in backward: P is 0 where they masked, so dS is 0 there too.

Dropout on the attention probabilities (training): ``M`` (N, H, T, T) holds uniforms on entry
(the layer draws them from its own generator) and is turned into the scaled keep-mask
[u >= rate] / (1 - rate) in place; the dropped probabilities P * M are formed in a (T, T) scratch
slab for the P V product, and again in backward for dV.

Inference (``keep`` false) stores nothing for backward: P is one (T, T) scratch slab, and QKV / C
hold a block of NB samples, processed NB at a time (so predicting on 4096 rows needs no
(4096, H, T, T) buffer).  The exp is _fastmath's vectorised kernel (within 1 ulp of the C
library).  All sizes are validated by the Python twins.
"""
from libc.math cimport sqrt, INFINITY
from libc.string cimport memset, memcpy

from nnc._kernels._blas cimport floating, blas_int, _gemm, NoTrans, Trans_
from nnc._kernels._fastmath cimport _exp_array


# ---------------------------------------------------------------- pieces

cdef void _bias_rows(floating* Y, const floating* b, Py_ssize_t rows,
                     Py_ssize_t cols) noexcept nogil:
    """Every row of Y (rows, cols) <- b."""
    cdef Py_ssize_t r
    for r in range(rows):
        memcpy(Y + r * cols, b, cols * sizeof(floating))


cdef void _col_sums(const floating* A, floating* out, Py_ssize_t rows,
                    Py_ssize_t cols) noexcept nogil:
    """out (cols,) <- sum over the rows of A (rows, cols)."""
    cdef Py_ssize_t r, c
    cdef const floating* a
    for c in range(cols):
        out[c] = 0
    for r in range(rows):
        a = A + r * cols
        for c in range(cols):
            out[c] += a[c]


cdef void _masked_softmax(floating* S, Py_ssize_t T, const unsigned char* valid,
                          bint causal) noexcept nogil:
    """Each row t of S (T, T) <- softmax over the keys j it may attend to (valid[j] != 0, and
    j <= t when causal), 0 elsewhere; a row with no such key becomes 0."""
    cdef Py_ssize_t t, j, jend
    cdef floating m, s, inv
    cdef floating* row
    cdef bint any_key
    for t in range(T):
        row = S + t * T
        jend = t + 1 if causal else T
        any_key = False
        m = -INFINITY
        for j in range(jend):
            if (valid == NULL or valid[j]) and row[j] > m:
                m = row[j]
                any_key = True
        if not any_key:       # nothing to attend to: exp(-inf) = 0 below
            for j in range(T):
                row[j] = -INFINITY
            continue
        if valid == NULL:
            for j in range(jend):
                row[j] = row[j] - m
        else:
            for j in range(jend):
                row[j] = row[j] - m if valid[j] else -INFINITY
        for j in range(jend, T):
            row[j] = -INFINITY
    _exp_array(S, T * T)                  # vectorised exp of the whole slab (_fastmath)
    for t in range(T):
        row = S + t * T
        s = 0
        jend = t + 1 if causal else T
        for j in range(jend):
            s = s + row[j]
        if s > 0:
            inv = 1 / s
            for j in range(jend):
                row[j] = row[j] * inv


cdef void _softmax_backward(const floating* P, floating* G, Py_ssize_t T, floating scale,
                            bint causal) noexcept nogil:
    """G (T, T) holds dP on entry, scale * dS on return: dS = P * (dP - rowsum(P * dP))."""
    cdef Py_ssize_t t, j, jend
    cdef floating s
    cdef const floating* p
    cdef floating* g
    for t in range(T):
        p = P + t * T
        g = G + t * T
        jend = t + 1 if causal else T
        s = 0
        for j in range(jend):
            s = s + p[j] * g[j]
        for j in range(jend):
            g[j] = scale * p[j] * (g[j] - s)
        for j in range(jend, T):
            g[j] = 0


cdef void _keep_mask(floating* M, const floating* P, floating* Pd, Py_ssize_t n, floating rate,
                     floating inv_keep) noexcept nogil:
    """M <- [M >= rate] * inv_keep (uniforms in, scaled keep-mask out);  Pd <- P * M."""
    cdef Py_ssize_t k
    cdef floating m
    for k in range(n):
        m = inv_keep if M[k] >= rate else 0
        M[k] = m
        Pd[k] = P[k] * m


cdef void _mul(const floating* A, const floating* B, floating* out, Py_ssize_t n) noexcept nogil:
    cdef Py_ssize_t k
    for k in range(n):
        out[k] = A[k] * B[k]


# ---------------------------------------------------------------- forward

cdef void _heads_forward(const floating* QKV, floating* P, floating* M, floating* Pd,
                         floating* C, const unsigned char* kmask, Py_ssize_t nb,
                         Py_ssize_t T, Py_ssize_t D, Py_ssize_t H, bint causal, bint keep,
                         floating rate) noexcept nogil:
    """Attention of nb samples from their QKV (nb, T, 3D) into C (nb, T, D).  keep: P (nb, H, T,
    T) receives every slab (and M, when not NULL, the dropout masks); else P is one scratch slab.
    kmask: the nb samples' (nb, T) rows, or NULL."""
    cdef Py_ssize_t E = D // H, D3 = 3 * D, TT = T * T
    cdef Py_ssize_t i, h
    cdef floating scale = <floating>(1.0 / sqrt(<double>E))
    cdef floating inv_keep = <floating>(1.0 / (1.0 - <double>rate))
    cdef const floating* q
    cdef floating* S
    cdef const floating* A
    for i in range(nb):
        for h in range(H):
            q = QKV + i * T * D3 + h * E
            S = P + (i * H + h) * TT if keep else P
            _gemm(NoTrans, Trans_, <blas_int>T, <blas_int>T, <blas_int>E, scale,
                  q, <blas_int>D3, q + D, <blas_int>D3, <floating>0.0, S, <blas_int>T)
            _masked_softmax(S, T, kmask if kmask == NULL else kmask + i * T, causal)
            A = S
            if M != NULL:
                _keep_mask(M + (i * H + h) * TT, S, Pd, TT, rate, inv_keep)
                A = Pd
            _gemm(NoTrans, NoTrans, <blas_int>T, <blas_int>E, <blas_int>T, <floating>1.0,
                  A, <blas_int>T, q + 2 * D, <blas_int>D3, <floating>0.0,
                  C + i * T * D + h * E, <blas_int>D)


cdef void _mha_forward(const floating* X, const floating* W_in, const floating* b_in,
                       const floating* W_out, const floating* b_out,
                       const unsigned char* kmask, bint causal, Py_ssize_t H, floating rate,
                       floating* M, floating* QKV, floating* P, floating* Pd, floating* C,
                       floating* Y, Py_ssize_t N, Py_ssize_t NB, Py_ssize_t T, Py_ssize_t D,
                       bint keep) noexcept nogil:
    """Y (N, T, D) <- attention of X (N, T, D); NB samples per block (keep: NB = N, and QKV, P,
    C, M keep everything backward needs)."""
    cdef Py_ssize_t i0 = 0, nb, rows
    while i0 < N:
        nb = min(NB, N - i0)
        rows = nb * T
        _bias_rows(QKV, b_in, rows, 3 * D)
        _gemm(NoTrans, Trans_, <blas_int>rows, <blas_int>(3 * D), <blas_int>D, <floating>1.0,
              X + i0 * T * D, <blas_int>D, W_in, <blas_int>D, <floating>1.0, QKV,
              <blas_int>(3 * D))
        _heads_forward(QKV, P, M, Pd, C, kmask if kmask == NULL else kmask + i0 * T, nb, T, D,
                       H, causal, keep, rate)
        _bias_rows(Y + i0 * T * D, b_out, rows, D)
        _gemm(NoTrans, Trans_, <blas_int>rows, <blas_int>D, <blas_int>D, <floating>1.0,
              C, <blas_int>D, W_out, <blas_int>D, <floating>1.0, Y + i0 * T * D, <blas_int>D)
        i0 += nb


# ---------------------------------------------------------------- backward

cdef void _mha_backward(const floating* X, const floating* W_in, const floating* W_out,
                        const floating* QKV, const floating* P, const floating* M,
                        const floating* C, const floating* dY, bint causal, Py_ssize_t H,
                        floating* dW_in, floating* db_in, floating* dW_out, floating* db_out,
                        floating* dC, floating* dQKV, floating* G, floating* Pd, floating* dX,
                        Py_ssize_t N, Py_ssize_t T, Py_ssize_t D) noexcept nogil:
    """Gradients of sum <dY, Y> (overwritten); dX (N, T, D) skipped when NULL.  G, Pd: (T, T)
    scratch slabs."""
    cdef Py_ssize_t E = D // H, D3 = 3 * D, TT = T * T, NT = N * T
    cdef Py_ssize_t i, h
    cdef floating scale = <floating>(1.0 / sqrt(<double>E))
    cdef const floating* q
    cdef const floating* S
    cdef const floating* A
    cdef const floating* dO
    cdef floating* dq
    # output projection: dW_out = dY^T C, db_out = colsum dY, dC = dY W_out
    _col_sums(dY, db_out, NT, D)
    _gemm(Trans_, NoTrans, <blas_int>D, <blas_int>D, <blas_int>NT, <floating>1.0, dY,
          <blas_int>D, C, <blas_int>D, <floating>0.0, dW_out, <blas_int>D)
    _gemm(NoTrans, NoTrans, <blas_int>NT, <blas_int>D, <blas_int>D, <floating>1.0, dY,
          <blas_int>D, W_out, <blas_int>D, <floating>0.0, dC, <blas_int>D)
    for i in range(N):
        for h in range(H):
            q = QKV + i * T * D3 + h * E
            dq = dQKV + i * T * D3 + h * E
            S = P + (i * H + h) * TT
            dO = dC + i * T * D + h * E
            A = S
            if M != NULL:
                _mul(S, M + (i * H + h) * TT, Pd, TT)
                A = Pd
            # dV = (P M)^T dO
            _gemm(Trans_, NoTrans, <blas_int>T, <blas_int>E, <blas_int>T, <floating>1.0,
                  A, <blas_int>T, dO, <blas_int>D, <floating>0.0, dq + 2 * D, <blas_int>D3)
            # d(P M) = dO V^T, then dP = d(P M) * M
            _gemm(NoTrans, Trans_, <blas_int>T, <blas_int>T, <blas_int>E, <floating>1.0,
                  dO, <blas_int>D, q + 2 * D, <blas_int>D3, <floating>0.0, G, <blas_int>T)
            if M != NULL:
                _mul(G, M + (i * H + h) * TT, G, TT)
            _softmax_backward(S, G, T, scale, causal)
            # dQ = dS K, dK = dS^T Q (the 1/sqrt(E) is in G)
            _gemm(NoTrans, NoTrans, <blas_int>T, <blas_int>E, <blas_int>T, <floating>1.0,
                  G, <blas_int>T, q + D, <blas_int>D3, <floating>0.0, dq, <blas_int>D3)
            _gemm(Trans_, NoTrans, <blas_int>T, <blas_int>E, <blas_int>T, <floating>1.0,
                  G, <blas_int>T, q, <blas_int>D3, <floating>0.0, dq + D, <blas_int>D3)
    # input projection: dW_in = dQKV^T X, db_in = colsum dQKV, dX = dQKV W_in
    _col_sums(dQKV, db_in, NT, D3)
    _gemm(Trans_, NoTrans, <blas_int>D3, <blas_int>D, <blas_int>NT, <floating>1.0, dQKV,
          <blas_int>D3, X, <blas_int>D, <floating>0.0, dW_in, <blas_int>D)
    if dX != NULL:
        _gemm(NoTrans, NoTrans, <blas_int>NT, <blas_int>D, <blas_int>D3, <floating>1.0, dQKV,
              <blas_int>D3, W_in, <blas_int>D, <floating>0.0, dX, <blas_int>D)


# ---------------------------------------------------------------- Python twins

cdef _expect(str what, tuple got, tuple want):
    if got != want:
        raise ValueError(f"attention: {what} must have shape {want}, got {got}")


cdef Py_ssize_t _check_common(const floating[:, :, ::1] X, const floating[:, ::1] W_in,
                              const floating[:, ::1] W_out, int n_heads) except -1:
    """D after checking X (N, T, D) non-empty, W_in (3D, D), W_out (D, D), H | D."""
    cdef Py_ssize_t N = X.shape[0], T = X.shape[1], D = X.shape[2]
    if N < 1 or T < 1 or D < 1:
        raise ValueError(f"attention: X must be a non-empty (N, T, D) array, got "
                         f"({N}, {T}, {D})")
    if n_heads < 1 or D % n_heads != 0:
        raise ValueError(f"attention: n_heads ({n_heads}) must divide the width D ({D})")
    if 3 * D > 2**31 - 1 or N * T > 2**31 - 1 or T * T > 2**31 - 1:
        raise ValueError("attention: sizes above the 32-bit BLAS limit")
    _expect("W_in", (W_in.shape[0], W_in.shape[1]), (3 * D, D))
    _expect("W_out", (W_out.shape[0], W_out.shape[1]), (D, D))
    return D


def mha_forward(const floating[:, :, ::1] X, const floating[:, ::1] W_in,
                const floating[::1] b_in, const floating[:, ::1] W_out,
                const floating[::1] b_out, const unsigned char[:, ::1] kmask, bint causal,
                int n_heads, bint keep, floating[:, :, ::1] QKV_out, floating[:, :, :, ::1] P_out,
                floating[:, :, ::1] C_out, floating[:, ::1] Pd_out, floating[:, :, ::1] Y_out,
                floating[:, :, :, ::1] M_out=None, double rate=0.0):
    """Y_out (N, T, D) <- multi-head self-attention of X (N, T, D) (see the module docstring).

    kmask: None or (N, T) uint8 (1 = real key); Pd_out (T, T) scratch.  keep (training form):
    P_out (N, H, T, T), QKV_out (N, T, 3D), C_out (N, T, D) keep what mha_backward reads, and
    M_out (N, H, T, T) with uniforms in [0, 1) turns them into the dropout keep-mask (rate in
    [0, 1)).  keep false (inference form): P_out (1, 1, T, T), QKV_out (NB, T, 3D) and C_out
    (NB, T, D) blocks of any NB >= 1, M_out None.
    """
    cdef Py_ssize_t N = X.shape[0], T = X.shape[1]
    cdef Py_ssize_t D = _check_common(X, W_in, W_out, n_heads)
    cdef Py_ssize_t H = n_heads, NB = QKV_out.shape[0]
    cdef floating* M_ptr = NULL
    cdef const unsigned char* k_ptr = NULL
    _expect("b_in", (b_in.shape[0],), (3 * D,))
    _expect("b_out", (b_out.shape[0],), (D,))
    _expect("Y_out", (Y_out.shape[0], Y_out.shape[1], Y_out.shape[2]), (N, T, D))
    _expect("Pd_out", (Pd_out.shape[0], Pd_out.shape[1]), (T, T))
    if keep:
        _expect("P_out", (P_out.shape[0], P_out.shape[1], P_out.shape[2], P_out.shape[3]),
                (N, H, T, T))
        _expect("QKV_out", (QKV_out.shape[0], QKV_out.shape[1], QKV_out.shape[2]), (N, T, 3 * D))
        _expect("C_out", (C_out.shape[0], C_out.shape[1], C_out.shape[2]), (N, T, D))
        NB = N
    else:
        _expect("P_out", (P_out.shape[0], P_out.shape[1], P_out.shape[2], P_out.shape[3]),
                (1, 1, T, T))
        if NB < 1:
            raise ValueError("attention: QKV_out must hold at least one sample")
        _expect("QKV_out", (QKV_out.shape[0], QKV_out.shape[1], QKV_out.shape[2]), (NB, T, 3 * D))
        _expect("C_out", (C_out.shape[0], C_out.shape[1], C_out.shape[2]), (NB, T, D))
    if kmask is not None:
        _expect("kmask", (kmask.shape[0], kmask.shape[1]), (N, T))
        k_ptr = &kmask[0, 0]
    if M_out is not None:
        if not keep:
            raise ValueError("attention: dropout (M_out) needs the training form (P_out of "
                             "shape (N, H, T, T))")
        if not 0.0 <= rate < 1.0:
            raise ValueError(f"attention: rate must be in [0, 1), got {rate}")
        _expect("M_out", (M_out.shape[0], M_out.shape[1], M_out.shape[2], M_out.shape[3]),
                (N, H, T, T))
        M_ptr = &M_out[0, 0, 0, 0]
    with nogil:
        _mha_forward(&X[0, 0, 0], &W_in[0, 0], &b_in[0], &W_out[0, 0], &b_out[0], k_ptr, causal,
                     H, <floating>rate, M_ptr, &QKV_out[0, 0, 0], &P_out[0, 0, 0, 0],
                     &Pd_out[0, 0], &C_out[0, 0, 0], &Y_out[0, 0, 0], N, NB, T, D, keep)


def mha_backward(const floating[:, :, ::1] X, const floating[:, ::1] W_in,
                 const floating[:, ::1] W_out, const floating[:, :, ::1] QKV,
                 const floating[:, :, :, ::1] P, const floating[:, :, ::1] C,
                 const floating[:, :, ::1] dY, bint causal, int n_heads,
                 floating[:, ::1] dW_in_out, floating[::1] db_in_out,
                 floating[:, ::1] dW_out_out, floating[::1] db_out_out,
                 floating[:, :, ::1] dC_out, floating[:, :, ::1] dQKV_out,
                 floating[:, :, ::1] scratch_out, const floating[:, :, :, ::1] M=None,
                 floating[:, :, ::1] dX_out=None):
    """Gradients of sum <dY, Y> for the Y mha_forward computed in training form from X:
    overwrites dW_in (3D, D), db_in (3D,), dW_out (D, D), db_out (D,) and dX_out (N, T, D) when
    given.  QKV, P, C (and M with dropout) as mha_forward left them; dC_out (N, T, D) and
    dQKV_out (N, T, 3D) workspaces, scratch_out (2, T, T)."""
    cdef Py_ssize_t N = X.shape[0], T = X.shape[1]
    cdef Py_ssize_t D = _check_common(X, W_in, W_out, n_heads)
    cdef Py_ssize_t H = n_heads
    cdef const floating* M_ptr = NULL
    cdef floating* dX_ptr = NULL
    _expect("QKV", (QKV.shape[0], QKV.shape[1], QKV.shape[2]), (N, T, 3 * D))
    _expect("P", (P.shape[0], P.shape[1], P.shape[2], P.shape[3]), (N, H, T, T))
    _expect("C", (C.shape[0], C.shape[1], C.shape[2]), (N, T, D))
    _expect("dY", (dY.shape[0], dY.shape[1], dY.shape[2]), (N, T, D))
    _expect("dW_in_out", (dW_in_out.shape[0], dW_in_out.shape[1]), (3 * D, D))
    _expect("db_in_out", (db_in_out.shape[0],), (3 * D,))
    _expect("dW_out_out", (dW_out_out.shape[0], dW_out_out.shape[1]), (D, D))
    _expect("db_out_out", (db_out_out.shape[0],), (D,))
    _expect("dC_out", (dC_out.shape[0], dC_out.shape[1], dC_out.shape[2]), (N, T, D))
    _expect("dQKV_out", (dQKV_out.shape[0], dQKV_out.shape[1], dQKV_out.shape[2]),
                (N, T, 3 * D))
    _expect("scratch_out", (scratch_out.shape[0], scratch_out.shape[1], scratch_out.shape[2]),
                (2, T, T))
    if M is not None:
        _expect("M", (M.shape[0], M.shape[1], M.shape[2], M.shape[3]), (N, H, T, T))
        M_ptr = &M[0, 0, 0, 0]
    if dX_out is not None:
        _expect("dX_out", (dX_out.shape[0], dX_out.shape[1], dX_out.shape[2]), (N, T, D))
        dX_ptr = &dX_out[0, 0, 0]
    with nogil:
        _mha_backward(&X[0, 0, 0], &W_in[0, 0], &W_out[0, 0], &QKV[0, 0, 0], &P[0, 0, 0, 0],
                      M_ptr, &C[0, 0, 0], &dY[0, 0, 0], causal, H, &dW_in_out[0, 0],
                      &db_in_out[0], &dW_out_out[0, 0], &db_out_out[0], &dC_out[0, 0, 0],
                      &dQKV_out[0, 0, 0], &scratch_out[0, 0, 0], &scratch_out[1, 0, 0], dX_ptr,
                      N, T, D)


# ---------------------------------------------------------------- positional encodings

cdef void _add_positions(const floating* X, const floating* E, floating* Y, Py_ssize_t N,
                         Py_ssize_t TD) noexcept nogil:
    """Y[i] = X[i] + E for each of the N samples (TD values each); Y may be X."""
    cdef Py_ssize_t i, k
    cdef const floating* x
    cdef floating* y
    for i in range(N):
        x = X + i * TD
        y = Y + i * TD
        for k in range(TD):
            y[k] = x[k] + E[k]


def add_positions(const floating[:, :, ::1] X, const floating[:, ::1] E,
                  floating[:, :, ::1] Y_out):
    """Y_out (N, T, D) = X (N, T, D) + E (T, D) (Y_out may be X: in place)."""
    cdef Py_ssize_t N = X.shape[0], T = X.shape[1], D = X.shape[2]
    _expect("E", (E.shape[0], E.shape[1]), (T, D))
    _expect("Y_out", (Y_out.shape[0], Y_out.shape[1], Y_out.shape[2]), (N, T, D))
    if N == 0 or T == 0 or D == 0:
        return
    with nogil:
        _add_positions(&X[0, 0, 0], &E[0, 0], &Y_out[0, 0, 0], N, T * D)


def sum_positions(const floating[:, :, ::1] dY, floating[:, ::1] dE_out):
    """dE_out (T, D) = sum over the N samples of dY (N, T, D)."""
    cdef Py_ssize_t N = dY.shape[0], T = dY.shape[1], D = dY.shape[2]
    _expect("dE_out", (dE_out.shape[0], dE_out.shape[1]), (T, D))
    if T == 0 or D == 0:
        return
    if N == 0:                       # no samples: a zero sum (and no &dY[0, 0, 0] to take)
        dE_out[:, :] = 0
        return
    with nogil:
        _col_sums(&dY[0, 0, 0], &dE_out[0, 0], N, T * D)
