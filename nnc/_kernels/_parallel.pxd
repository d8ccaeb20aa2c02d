# The thread policy's C side: how many threads one piece of work may use (see _parallel.pyx for
# the design note and nnc/_threads.py for the decisions and their measurements).
#
# Use in a kernel: describe the piece as nt jobs (structs with a static share [lo, hi) of the
# items each), then run them (never call BLAS inside a job):
#
#     cdef MyJob jobs[MAX_JOBS]
#     nt = _par_begin(n_threads, WORK_POOL, <double>elements)   # 1 below the kind's threshold
#     for t in range(nt):
#         jobs[t] = ...; jobs[t].lo = _chunk_lo(n, nt, t); jobs[t].hi = _chunk_lo(n, nt, t + 1)
#     _par_run(nt, _my_job, jobs, sizeof(MyJob))                # nt == 1: _my_job(jobs)
#     _par_end(nt)
#
# The verbatim C below holds only macros (atomics, thread-local storage), so every module that
# cimports this file gets them; the policy's state lives once, in _parallel.pyx.

cdef extern from *:
    """
    #ifndef NNC_PARALLEL_MACROS
    #define NNC_PARALLEL_MACROS
    #if defined(_MSC_VER)
    #include <intrin.h>
    #define NNC_TLS __declspec(thread)
    #define NNC_ADD(p, v) (_InterlockedExchangeAdd((volatile long*)(p), (long)(v)) + (long)(v))
    #define NNC_TRYLOCK(p) (_InterlockedCompareExchange((volatile long*)(p), 1, 0) == 0)
    #define NNC_UNLOCK(p) ((void)_InterlockedExchange((volatile long*)(p), 0))
    #define NNC_RELAX() _mm_pause()
    #else
    #define NNC_TLS __thread
    #define NNC_ADD(p, v) __atomic_add_fetch((p), (long)(v), __ATOMIC_ACQ_REL)
    #define NNC_TRYLOCK(p) (__atomic_exchange_n((p), 1L, __ATOMIC_ACQUIRE) == 0L)
    #define NNC_UNLOCK(p) __atomic_store_n((p), 0L, __ATOMIC_RELEASE)
    #if defined(__x86_64__) || defined(__i386__)
    #define NNC_RELAX() __builtin_ia32_pause()
    #else
    #define NNC_RELAX() ((void)0)
    #endif
    #endif
    #if defined(_MSC_VER)
    #define NNC_LOAD_ACQ(p) (_ReadWriteBarrier(), *(volatile long*)(p))
    #define NNC_STORE_REL(p, v) (_ReadWriteBarrier(), *(volatile long*)(p) = (v))
    #else
    #define NNC_LOAD_ACQ(p) __atomic_load_n((p), __ATOMIC_ACQUIRE)
    #define NNC_STORE_REL(p, v) __atomic_store_n((p), (v), __ATOMIC_RELEASE)
    #endif
    #endif
    """

# Most jobs one piece is split into (_par_begin never returns more).
cdef enum:
    MAX_JOBS = 64

# Kinds of work, each with its own measured threshold (units in brackets).
cdef enum:
    WORK_GEMM = 0          # a BLAS product [m n k multiply-adds]
    WORK_IM2COL = 1        # im2col / col2im / grid copies [elements written]
    WORK_POOL = 2          # pooling passes [input elements]
    WORK_ELEMENTWISE = 3   # dropout, BLAS level 1 [elements]
    WORK_OPTIM = 4         # fused optimizer step [parameters]
    N_WORK_KINDS = 5

# Threads for one piece of `work` of `kind`: 1 below the kind's threshold or when cap <= 1, else
# min(cap, the thread's config cap, omp_get_max_threads() (not for GEMM: the BLAS setting is its
# cap), the CPUs nnc may use, the governor (other processes' load, how far apart the cores are)),
# divided among the pieces already running in parallel in this process; 1 in a forked child.
# A result > 1 registers the piece: pass it to _par_end when the piece is done.
cdef int _par_begin(int cap, int kind, double work) noexcept nogil
cdef void _par_end(int n_threads) noexcept nogil

# Run jobs[0 .. n_threads) (job t at (char*)jobs + t * stride) at the same time, one per thread,
# each under the caller's floating-point control word; returns when all are done.  The threads
# are the BLAS's own pool when it lends one (OpenBLAS: nnc's loops and its GEMMs then share one
# set of workers, see nnc/_threads.py), else an OpenMP team; n_threads == 1 calls fn(jobs).
ctypedef void (*job_fn)(void* job) noexcept nogil
cdef void _par_run(int n_threads, job_fn fn, void* jobs, size_t stride) noexcept nogil


cdef inline Py_ssize_t _chunk_lo(Py_ssize_t n, int nt, int t) noexcept nogil:
    """Start of job t's static share when n items go to nt jobs (job t: [lo(t), lo(t + 1)))."""
    cdef Py_ssize_t chunk = (n + nt - 1) // nt
    cdef Py_ssize_t lo = chunk * t
    return lo if lo < n else n
