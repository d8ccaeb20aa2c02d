"""Embedding lookup: rows of a table gathered by integer ids, and their gradient scattered back.

Dimensions: N ids (samples x positions, flattened), V rows in the table (n_tokens), D values
per row.  Ids are int64.

Buffers (C-contiguous, caller supplied):
  embedding_forward   Y_out[i] = W[ids[i]]                    (N, D) <- (V, D) by ids (N,)
  embedding_backward  dW_out = 0, then dW_out[ids[i]] += dY[i] for every i with
                      ids[i] != padding_idx (duplicates accumulate, in the order of i)

Both twins check every id against [0, V) before any row is read or written, so no id can reach
outside the table (the network also checks them, with a message naming the bad value; this is the
kernel's own guarantee).

Zeroing.  The layer protocol overwrites parameter gradients, so backward clears its gradient
slice: all V D values, not only the rows the batch touches.  Clearing only the touched rows would
rely on nothing else writing the gradient buffer between two backward calls, and an in-place
allreduce of the flat gradient buffer (data-parallel training), an assignment to
``Sequential.grads`` or another layer sharing the buffer's slice all do.  Measured (float32, 1
thread, V = 20000, D = 64, N = 64 x 50 ids; ``python benchmarks/bench_layers.py``): see the
README's layer table; the clear is a memset of V D values, split between threads with the rows.

Threads: forward splits the ids into static chunks; backward splits the table's ROWS (thread t
owns rows [lo_t, hi_t), scans every id and adds only those in its range), so no two threads write
one row and the result is bit-identical for any thread count.  The thread count is the thread
policy's for the pass's element count (WORK_ELEMENTWISE, see nnc/_threads.py; serial below its
threshold).
"""
from libc.stdint cimport int64_t, uint64_t
from libc.string cimport memcpy, memset

from nnc._kernels._blas cimport floating
from nnc._kernels._parallel cimport (_par_begin, _par_end, _par_run, MAX_JOBS,
                                     WORK_ELEMENTWISE)


cdef inline int _threads_for(int n_threads, Py_ssize_t n_items, Py_ssize_t work) noexcept nogil:
    """The thread policy's count (at most one per item) for a pass touching `work` elements;
    pass it to _par_end when done."""
    if n_items < 2 or n_threads < 2:
        return 1
    return _par_begin(n_threads if n_threads < n_items else <int>n_items, WORK_ELEMENTWISE,
                      <double>work)


cdef struct EmbJob:
    bint forward, dbl
    const int64_t* ids
    const void* src         # W (forward) or dY (backward)
    void* dst               # Y (forward) or dW (backward)
    Py_ssize_t lo, hi       # ids (forward) or table rows (backward)
    Py_ssize_t N, D
    int64_t pad


cdef void _emb_rows(EmbJob* j, floating tag) noexcept nogil:
    if j.forward:
        _gather_rows(j.ids, <const floating*>j.src, <floating*>j.dst, j.lo, j.hi, j.D)
    else:
        _scatter_rows(j.ids, <const floating*>j.src, <floating*>j.dst, j.N, j.D, j.lo, j.hi,
                      j.pad)


cdef void _emb_job(void* p) noexcept nogil:
    cdef EmbJob* j = <EmbJob*>p
    if j.dbl:
        _emb_rows(j, <double>0)
    else:
        _emb_rows(j, <float>0)


cdef void _emb_run(bint forward, const int64_t* ids, const floating* src, floating* dst,
                   Py_ssize_t n_items, Py_ssize_t N, Py_ssize_t D, int64_t pad,
                   int nt) noexcept nogil:
    """nt jobs, static shares of range(n_items); then _par_end(nt)."""
    cdef EmbJob jobs[MAX_JOBS]
    cdef int t
    for t in range(nt):
        jobs[t].forward = forward
        jobs[t].dbl = floating is double
        jobs[t].ids = ids
        jobs[t].src = src
        jobs[t].dst = dst
        jobs[t].lo = _lo(n_items, nt, t)
        jobs[t].hi = _lo(n_items, nt, t + 1)
        jobs[t].N = N
        jobs[t].D = D
        jobs[t].pad = pad
    _par_run(nt, _emb_job, jobs, sizeof(EmbJob))
    _par_end(nt)


cdef inline Py_ssize_t _lo(Py_ssize_t n, int nt, int t) noexcept nogil:
    return (n * t) // nt


cdef void _gather_rows(const int64_t* ids, const floating* W, floating* Y, Py_ssize_t i0,
                       Py_ssize_t i1, Py_ssize_t D) noexcept nogil:
    cdef Py_ssize_t i
    for i in range(i0, i1):
        memcpy(Y + i * D, W + ids[i] * D, D * sizeof(floating))


cdef void _embedding_forward(const int64_t* ids, const floating* W, floating* Y, Py_ssize_t N,
                             Py_ssize_t D, int n_threads) noexcept nogil:
    """Y[i] = W[ids[i]] (ids checked by the caller)."""
    _emb_run(True, ids, W, Y, N, N, D, -1, _threads_for(n_threads, N, N * D))


cdef void _scatter_rows(const int64_t* ids, const floating* dY, floating* dW, Py_ssize_t N,
                        Py_ssize_t D, int64_t v0, int64_t v1, int64_t pad) noexcept nogil:
    """Rows [v0, v1) of dW: cleared, then dY[i] added for every id in the range (not pad)."""
    cdef Py_ssize_t i, j
    cdef int64_t v
    cdef floating* row
    cdef const floating* g
    memset(dW + v0 * D, 0, (v1 - v0) * D * sizeof(floating))
    for i in range(N):
        v = ids[i]
        if v < v0 or v >= v1 or v == pad:
            continue
        row = dW + v * D
        g = dY + i * D
        for j in range(D):
            row[j] += g[j]


cdef void _embedding_backward(const int64_t* ids, const floating* dY, floating* dW, Py_ssize_t N,
                              Py_ssize_t V, Py_ssize_t D, int64_t pad,
                              int n_threads) noexcept nogil:
    """dW = 0; dW[ids[i]] += dY[i] for ids[i] != pad (ids checked by the caller)."""
    _emb_run(False, ids, dY, dW, V, N, D, pad, _threads_for(n_threads, V, (N + V) * D))


cdef Py_ssize_t _count_out_of_range(const int64_t* ids, Py_ssize_t N, Py_ssize_t V) noexcept nogil:
    """How many ids lie outside [0, V) (unsigned compare: negatives wrap above V)."""
    cdef Py_ssize_t i, bad = 0
    cdef uint64_t uV = <uint64_t>V
    for i in range(N):
        bad += <uint64_t>ids[i] >= uV
    return bad


# ---------------------------------------------------------------- Python twins

cdef _check_ids(const int64_t[::1] ids, Py_ssize_t V, str who):
    cdef Py_ssize_t bad
    if ids.shape[0] == 0:
        return
    with nogil:
        bad = _count_out_of_range(&ids[0], ids.shape[0], V)
    if bad:
        raise ValueError(f"{who}: {bad} id(s) outside [0, {V}) (the table has {V} rows)")


def embedding_forward(const int64_t[::1] ids, const floating[:, ::1] W, floating[:, ::1] Y_out,
                      int n_threads=1):
    """Y_out[i] = W[ids[i]] for the N ids (flattened); every id must lie in [0, V)."""
    cdef Py_ssize_t N = ids.shape[0], V = W.shape[0], D = W.shape[1]
    if n_threads < 1:
        raise ValueError(f"embedding_forward: n_threads must be >= 1, got {n_threads}")
    if (Y_out.shape[0], Y_out.shape[1]) != (N, D):
        raise ValueError(f"embedding_forward: Y_out has shape {(Y_out.shape[0], Y_out.shape[1])}"
                         f", expected {(N, D)}")
    _check_ids(ids, V, "embedding_forward")
    if N == 0 or D == 0:
        return
    with nogil:
        _embedding_forward(&ids[0], &W[0, 0], &Y_out[0, 0], N, D, n_threads)


def embedding_backward(const int64_t[::1] ids, const floating[:, ::1] dY,
                       floating[:, ::1] dW_out, Py_ssize_t padding_idx=-1, int n_threads=1):
    """dW_out = 0, then dW_out[ids[i]] += dY[i] for every i whose id is not padding_idx (-1:
    none); every id must lie in [0, V)."""
    cdef Py_ssize_t N = ids.shape[0], V = dW_out.shape[0], D = dW_out.shape[1]
    if n_threads < 1:
        raise ValueError(f"embedding_backward: n_threads must be >= 1, got {n_threads}")
    if (dY.shape[0], dY.shape[1]) != (N, D):
        raise ValueError(f"embedding_backward: dY has shape {(dY.shape[0], dY.shape[1])}, "
                         f"expected {(N, D)}")
    if padding_idx < -1 or padding_idx >= V:
        raise ValueError(f"embedding_backward: padding_idx must be -1 or in [0, {V}), "
                         f"got {padding_idx}")
    _check_ids(ids, V, "embedding_backward")
    if V == 0 or D == 0:
        return
    with nogil:
        _embedding_backward(&ids[0] if N else NULL, &dY[0, 0] if N else NULL, &dW_out[0, 0], N,
                            V, D, padding_idx, n_threads)
