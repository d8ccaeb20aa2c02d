"""Fused float/double BLAS wrappers (row-major) over SciPy's cython_blas, with Python twins.

Row-major C = alpha * op(A) @ op(B) + beta * C is computed as the column-major product
C^T = op(B)^T op(A)^T, i.e. by calling ?gemm with A and B swapped.  Nothing links a BLAS:
scipy exports the function pointers of the BLAS it ships.
Dimensions: C (m, n), op(A) (m, k), op(B) (k, n); lda/ldb/ldc are row strides in elements.

Threads: the BLAS's thread count is nnc's decision (nnc/_threads.py has the policy and its
measurements).  When nnc._threads found the thread API of the BLAS SciPy calls (SciPy's bundled
OpenBLAS: ``scipy_openblas_get/set_num_threads``, or an unprefixed OpenBLAS) it hands the two
function pointers to ``set_thread_api``; then each product above the BLAS's own serial size asks
``_par_begin(WORK_GEMM, m n k)`` for its thread count and runs with exactly that many threads,
never more than the BLAS was set to when no nnc product held it (OMP_NUM_THREADS,
OPENBLAS_NUM_THREADS, threadpoolctl and joblib limits all land there).  OpenBLAS's count is one
process-wide number (its ``openblas_set_num_threads_local`` also sets the global count; checked
on 0.3.30), so a product sets it under a spin lock, counts itself as a holder, and the last
holder puts the caller's setting back: between nnc's products, and after nnc returns, SciPy and
everyone else in the process see their own setting.  Products at most ``serial_mnk`` m n k
(OpenBLAS runs those on the calling thread whatever its setting: MNK <= 65536 * 4 in its
interface/gemm.c) and level-1 calls at most 10,000 long are called directly, with no lock.
Without the API (MKL, Accelerate, reference BLAS) the BLAS keeps its own setting (show_config
says so).  BLAS is never called inside a parallel job (_parallel._par_run).
"""
from libc.limits cimport INT_MAX
from libc.string cimport memset

from scipy.linalg.cython_blas cimport sgemm, dgemm, sgemv, dgemv, saxpy, daxpy, sdot, ddot

from nnc._kernels._parallel cimport _par_begin, _par_end, WORK_GEMM, WORK_ELEMENTWISE

cdef extern from *:
    """
    #if !defined(_WIN32)
    #include <pthread.h>
    #endif
    typedef int (*nnc_blas_get_t)(void);
    typedef void (*nnc_blas_set_t)(int);
    static nnc_blas_get_t nnc_blas_get = NULL;
    static nnc_blas_set_t nnc_blas_set = NULL;
    static long nnc_blas_lock = 0;
    static int nnc_blas_user = 1;       /* the caller's setting, captured by the first holder */
    static int nnc_blas_holders = 0;    /* products running with a count nnc chose */
    static double nnc_blas_serial_mnk = 262144.0;   /* OpenBLAS: MNK <= 65536 * 4 is serial */
    static double nnc_blas_serial_l1 = 10000.0;     /* OpenBLAS: level 1 with n <= 10000 */

    static void nnc_blas_acquire_lock(void) {
        while (!NNC_TRYLOCK(&nnc_blas_lock)) NNC_RELAX();
    }

    /* hold the BLAS at min(want, caller's setting) threads until nnc_blas_release */
    static void nnc_blas_hold(int want) {
        int g, t;
        nnc_blas_acquire_lock();
        g = nnc_blas_get();
        if (nnc_blas_holders == 0) nnc_blas_user = g;
        t = want < nnc_blas_user ? want : nnc_blas_user;
        if (t < 1) t = 1;
        if (g != t) nnc_blas_set(t);
        nnc_blas_holders++;
        NNC_UNLOCK(&nnc_blas_lock);
    }

    static void nnc_blas_release(void) {
        nnc_blas_acquire_lock();
        if (--nnc_blas_holders <= 0) {
            nnc_blas_holders = 0;
            if (nnc_blas_get() != nnc_blas_user) nnc_blas_set(nnc_blas_user);
        }
        NNC_UNLOCK(&nnc_blas_lock);
    }

    #if !defined(_WIN32)
    static void nnc_blas_atfork_child(void) {
        nnc_blas_lock = 0;
        nnc_blas_holders = 0;
    }
    #endif

    static int nnc_blas_init(void) {
    #if !defined(_WIN32)
        return pthread_atfork(NULL, NULL, nnc_blas_atfork_child);
    #else
        return 0;
    #endif
    }
    """
    ctypedef int (*nnc_blas_get_t)() noexcept nogil
    ctypedef void (*nnc_blas_set_t)(int) noexcept nogil
    nnc_blas_get_t nnc_blas_get
    nnc_blas_set_t nnc_blas_set
    int nnc_blas_holders, nnc_blas_user
    double nnc_blas_serial_mnk, nnc_blas_serial_l1
    void nnc_blas_hold(int want) noexcept nogil
    void nnc_blas_release() noexcept nogil
    int nnc_blas_init() noexcept nogil

if nnc_blas_init() != 0:
    raise ImportError("nnc._kernels._blas: pthread_atfork failed")


cdef inline int _blas_before(double work, bint level1) noexcept nogil:
    """Thread count for a BLAS call of `work` (m n k; n for level 1): the policy's answer with
    the caller's BLAS setting as the cap, held in the BLAS for the call when the setting differs.
    Returns a token for _blas_after: 0 no decision (no thread API, or small enough that the BLAS
    runs it serially anyway), n > 0 decided without a hold, -n held at n."""
    cdef int nt, cap
    if nnc_blas_set == NULL or work <= (nnc_blas_serial_l1 if level1 else nnc_blas_serial_mnk):
        return 0
    cap = nnc_blas_get() if nnc_blas_holders == 0 else nnc_blas_user
    nt = _par_begin(cap, WORK_ELEMENTWISE if level1 else WORK_GEMM, work)
    if nt == 1 and nnc_blas_get() == 1:
        return 1            # the BLAS is serial already: nothing to hold
    nnc_blas_hold(nt)
    return -nt


cdef inline void _blas_after(int token) noexcept nogil:
    if token < 0:
        nnc_blas_release()
        _par_end(-token)
    elif token > 1:
        _par_end(token)


cdef void _gemv_row(Trans ta, Trans tb, blas_int n, blas_int k, floating alpha,
                    const floating* A, blas_int lda, const floating* B, blas_int ldb,
                    floating beta, floating* C) noexcept nogil:
    """_gemm for one output row (m = 1: a one-row predict) as a GEMV, which packs nothing:
    one-row MLP predict 8.95-9.0 us against 9.2-9.3 us by GEMM (`python
    benchmarks/bench_mlp.py --workloads predict --libs nnc`, 1 thread, two runs each).
    c (n) = alpha * op(B)^T a + beta * c, a = op(A)'s row (stride lda when A is transposed).
    beta = 0 never reads c (it may hold NaN garbage): c is zeroed first."""
    cdef char tr = b'N' if tb == NoTrans else b'T'
    cdef blas_int rows = n if tb == NoTrans else k      # B as the column-major matrix BLAS sees
    cdef blas_int cols = k if tb == NoTrans else n
    cdef blas_int inca = lda if ta == Trans_ else 1
    cdef blas_int one = 1
    cdef int token
    if beta == 0:
        memset(C, 0, <size_t>n * sizeof(floating))
    token = _blas_before(<double>n * <double>k, False)
    if floating is float:
        sgemv(&tr, &rows, &cols, &alpha, <float*>B, &ldb, <float*>A, &inca, &beta, C, &one)
    else:
        dgemv(&tr, &rows, &cols, &alpha, <double*>B, &ldb, <double*>A, &inca, &beta, C, &one)
    _blas_after(token)


cdef void _gemm(Trans ta, Trans tb, blas_int m, blas_int n, blas_int k,
                floating alpha, const floating* A, blas_int lda,
                const floating* B, blas_int ldb,
                floating beta, floating* C, blas_int ldc) noexcept nogil:
    """C (m,n) = alpha * op(A) (m,k) @ op(B) (k,n) + beta * C, all row-major."""
    cdef char ta_c = b'T' if ta == Trans_ else b'N'
    cdef char tb_c = b'T' if tb == Trans_ else b'N'
    cdef int token
    if m <= 0 or n <= 0:
        return
    if m == 1 and k > 0:
        _gemv_row(ta, tb, n, k, alpha, A, lda, B, ldb, beta, C)
        return
    token = _blas_before(<double>m * <double>n * <double>k, False)
    if floating is float:
        sgemm(&tb_c, &ta_c, &n, &m, &k, &alpha, <float*>B, &ldb, <float*>A, &lda, &beta, C, &ldc)
    else:
        dgemm(&tb_c, &ta_c, &n, &m, &k, &alpha, <double*>B, &ldb, <double*>A, &lda, &beta, C, &ldc)
    _blas_after(token)


cdef void _axpy(blas_int n, floating alpha, const floating* x, floating* y) noexcept nogil:
    """y += alpha * x."""
    cdef blas_int one = 1
    cdef int token = _blas_before(<double>n, True)
    if floating is float:
        saxpy(&n, &alpha, <float*>x, &one, y, &one)
    else:
        daxpy(&n, &alpha, <double*>x, &one, y, &one)
    _blas_after(token)


cdef floating _dot(blas_int n, const floating* x, const floating* y) noexcept nogil:
    """sum(x * y)."""
    cdef blas_int one = 1
    cdef floating r
    cdef int token = _blas_before(<double>n, True)
    if floating is float:
        r = sdot(&n, <float*>x, &one, <float*>y, &one)
    else:
        r = ddot(&n, <double*>x, &one, <double*>y, &one)
    _blas_after(token)
    return r


# ---------------------------------------------------------------- Python twins (tests)

def gemm_memview(bint trans_a, bint trans_b, double alpha, const floating[:, ::1] A,
                 const floating[:, ::1] B, double beta, floating[:, ::1] C_out):
    """C_out = alpha * op(A) @ op(B) + beta * C_out (shapes checked here)."""
    cdef Py_ssize_t m = A.shape[1] if trans_a else A.shape[0]
    cdef Py_ssize_t k = A.shape[0] if trans_a else A.shape[1]
    cdef Py_ssize_t kb = B.shape[1] if trans_b else B.shape[0]
    cdef Py_ssize_t n = B.shape[0] if trans_b else B.shape[1]
    if k != kb or C_out.shape[0] != m or C_out.shape[1] != n:
        raise ValueError("gemm: incompatible shapes")
    if k == 0:
        raise ValueError("gemm: inner dimension must be positive")
    with nogil:
        _gemm(Trans_ if trans_a else NoTrans, Trans_ if trans_b else NoTrans,
              <blas_int>m, <blas_int>n, <blas_int>k, <floating>alpha, &A[0, 0],
              <blas_int>A.shape[1], &B[0, 0], <blas_int>B.shape[1], <floating>beta, &C_out[0, 0],
              <blas_int>C_out.shape[1])


# ---------------------------------------------------------------- thread control (nnc._threads)

def set_thread_api(size_t get_addr, size_t set_addr):
    """Hand over the BLAS's ``int get_num_threads(void)`` and ``void set_num_threads(int)``
    (addresses found by nnc._threads; 0, 0 switches the control off)."""
    global nnc_blas_get, nnc_blas_set
    if (get_addr == 0) != (set_addr == 0):
        raise ValueError("set_thread_api: give both functions or neither")
    if nnc_blas_holders:
        raise RuntimeError("set_thread_api: a BLAS call is running")
    nnc_blas_set = NULL
    nnc_blas_get = <nnc_blas_get_t>get_addr
    nnc_blas_set = <nnc_blas_set_t>set_addr


def thread_api():
    """True when nnc sets the BLAS's thread count per product."""
    return nnc_blas_set != NULL


def blas_threads():
    """The BLAS's thread setting now (None without the thread API)."""
    if nnc_blas_get == NULL:
        return None
    return nnc_blas_get()


def planned_threads(double m, double n, double k, bint level1=False):
    """Threads a product of m n k multiply-adds (a level-1 call of n elements when level1) issued
    now from this thread would run with: min(the policy's count, the caller's BLAS setting);
    0 when nnc leaves the call to the BLAS (no thread API, or small enough that OpenBLAS runs it
    on the calling thread by itself)."""
    cdef double work = n if level1 else m * n * k
    if nnc_blas_set == NULL or work <= (nnc_blas_serial_l1 if level1 else nnc_blas_serial_mnk):
        return 0
    from nnc._kernels._parallel import threads_for
    cap = nnc_blas_get() if nnc_blas_holders == 0 else nnc_blas_user
    return threads_for("elementwise" if level1 else "gemm", work, cap)


def serial_sizes():
    """(m n k, level-1 n) at or below which the BLAS runs serially by itself (no hold)."""
    return nnc_blas_serial_mnk, nnc_blas_serial_l1


def set_serial_sizes(double mnk, double l1):
    """Change serial_sizes (tests only); returns the old pair."""
    global nnc_blas_serial_mnk, nnc_blas_serial_l1
    old = (nnc_blas_serial_mnk, nnc_blas_serial_l1)
    nnc_blas_serial_mnk = mnk
    nnc_blas_serial_l1 = l1
    return old
