"""Branch-free exp, tanh and logistic over arrays, vectorised, with a stated maximum error.

Why: the C library's exp / tanh are scalar calls, so a loop that calls them cannot vectorise; with
tanh the activation pass cost more than the GEMMs around it.  Here each function is straight-line
arithmetic (a polynomial, 2^k from its bits, integer selects instead of branches), so gcc
vectorises the loops over an array; each array kernel is compiled three times (gcc's
``target_clones``: x86-64-v4 = AVX-512, x86-64-v3 = AVX2 + FMA, and the baseline SSE2) and the
loader picks the best the CPU runs.  Other compilers and platforms build the baseline only.

Measured (1 thread, AMD EPYC, 1e5 elements, ns per element; ``python
benchmarks/bench_elementwise.py``, the baseline from a CFLAGS=-DNNC_NO_CLONES build):
tanh float64 14.0 in the C library, 1.3 here (AVX-512 clone), 5.3 (baseline); float32 14.7, 0.36,
1.6.  exp float64 4.1, 1.4, 5.8 (the baseline loses to glibc's table-driven exp); float32 3.8,
0.41, 1.8.  NumPy's SIMD ufuncs on the same CPU: tanh 1.7 / 0.36, exp 0.8 / 0.45.

exp(x) = 2^k e^r with k = round(x / ln2), r = x - k ln2 in [-ln2/2, ln2/2] (ln2 in two parts, so
k ln2 is exact), e^r - 1 by its Taylor series (to r^13 in float64, r^7 in float32: truncation
below 2e-17 / 2e-8), 2^k from its bits in two halves (so subnormal results and inf come out right).
tanh(x) = -m / (m + 2), m = expm1(-2|x|) = 2^k (e^r - 1) + (2^k - 1) in (-1, 0], with the sign of
x: no cancellation near 0, no overflow for large |x|.  logistic(x) = (1 or e) / (1 + e),
e = exp(-|x|).  NaN propagates, +-inf give the limits, tanh(-0) = -0.

Maximum error against the C library (glibc 2.36), in units in the last place of its result:
exp 1 ulp, tanh 3 ulp, logistic 2 ulp, in float32 and float64 alike, for the baseline, AVX2 and
AVX-512 code; measured over every float32 and over 4e7 float64 spread over the whole range
(``python benchmarks/bench_elementwise.py --accuracy``).  tests/kernels/test_fastmath.py checks
the same bounds on 2^20 arguments per dtype, plus inf, NaN, -0, subnormals and the exp limits.

Python twins: ``exp_fast``, ``tanh_fast``, ``sigmoid_fast`` (in place, through the dispatched array
kernels), ``exp_libm`` / ``tanh_libm`` (the C library over the same loop: the reference and the
speed baseline) and ``simd_clone()`` (which clone this CPU runs).
"""
from libc.math cimport exp, expf, tanh, tanhf, fabs, fabsf
from libc.stdint cimport int32_t, uint32_t, uint64_t

cdef extern from *:
    """
    /* Function multiversioning (gcc >= 12 on x86-64 Linux): the array kernels below get one clone
       per target and an ifunc resolver that picks the best at load time.  Building with
       CFLAGS=-DNNC_NO_CLONES keeps the baseline only (to measure it on a newer CPU). */
    #if defined(__GNUC__) && !defined(__clang__) && __GNUC__ >= 12 && defined(__x86_64__) \
        && defined(__linux__) && !defined(NNC_NO_CLONES)
    #define NNC_CLONES \
        __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
    static const char *nnc_simd_clone(void) {
        __builtin_cpu_init();
        if (__builtin_cpu_supports("x86-64-v4")) return "x86-64-v4";
        if (__builtin_cpu_supports("x86-64-v3")) return "x86-64-v3";
        return "baseline";
    }
    #else
    #define NNC_CLONES
    static const char *nnc_simd_clone(void) { return "baseline"; }
    #endif
    /* the attribute on these prototypes carries over to the definitions Cython writes */
    static void nnc_exp_array_d(double *, Py_ssize_t) NNC_CLONES;
    static void nnc_exp_array_s(float *, Py_ssize_t) NNC_CLONES;
    static void nnc_tanh_array_d(double *, Py_ssize_t) NNC_CLONES;
    static void nnc_tanh_array_s(float *, Py_ssize_t) NNC_CLONES;
    static void nnc_sigmoid_array_d(double *, Py_ssize_t) NNC_CLONES;
    static void nnc_sigmoid_array_s(float *, Py_ssize_t) NNC_CLONES;
    """
    const char* nnc_simd_clone() noexcept nogil


cdef union _Bits64:
    double f
    uint64_t u


cdef union _Bits32:
    float f
    uint32_t u


# ---------------------------------------------------------------- float64

cdef inline double _expm1_poly_d(double r) noexcept nogil:
    """expm1(r) for |r| <= ln2 / 2: Taylor series to r^13 (truncation < 1.3e-17 relative)."""
    cdef double p = 1.6059043836821613e-10                 # 1/13!
    p = p * r + 2.08767569878681e-09                       # 1/12!
    p = p * r + 2.505210838544172e-08                      # 1/11!
    p = p * r + 2.755731922398589e-07                      # 1/10!
    p = p * r + 2.7557319223985893e-06                     # 1/9!
    p = p * r + 2.48015873015873e-05                       # 1/8!
    p = p * r + 0.0001984126984126984                      # 1/7!
    p = p * r + 0.001388888888888889                       # 1/6!
    p = p * r + 0.008333333333333333                       # 1/5!
    p = p * r + 0.041666666666666664                       # 1/4!
    p = p * r + 0.16666666666666666                        # 1/3!
    p = p * r + 0.5
    return r + (r * r) * p


cdef inline int _not_nan_d(int32_t hi, uint64_t ax) noexcept nogil:
    """1 unless |x| (bits ax, high word hi) is a NaN: integer tests, which gcc if-converts (float
    compares followed by arithmetic keep the loop scalar under its default -ftrapping-math)."""
    return (hi < 0x7FF00000) | ((hi == 0x7FF00000) & (<uint32_t>ax == 0))


cdef inline double _exp_d(double x) noexcept nogil:
    """exp(x) = 2^k e^r, k = round(x / ln2), r = x - k ln2 (two-part ln2, exact for |k| < 2^20).
    2^k is built from its bits in two halves, so results down to the smallest subnormal and up to
    inf come out right; x is clamped to [-746, 710] (exp is 0 / inf beyond), NaN propagates."""
    cdef _Bits64 u, s, s1, s2
    cdef uint64_t ax, sign, neg, lim, m
    cdef int32_t hi
    cdef double kf, k1f, r
    u.f = x
    ax = u.u & <uint64_t>0x7FFFFFFFFFFFFFFFULL
    sign = u.u ^ ax
    neg = <uint64_t>0 - (sign >> 63)                              # all ones for negative x
    lim = (<uint64_t>0x4087500000000000ULL & neg) | (<uint64_t>0x4086300000000000ULL & ~neg)
    hi = <int32_t>(ax >> 32)                                       # 746 or 710: low words are 0
    m = <uint64_t>0 - <uint64_t>((hi >= <int32_t>(lim >> 32)) & _not_nan_d(hi, ax))
    u.u = ((ax & ~m) | (lim & m)) | sign
    x = u.f
    # 1.5 * 2^52 = 6755399441055744: the sum's low mantissa bits hold round(x log2 e)
    s.f = x * 1.4426950408889634 + 6755399441055744.0
    kf = s.f - 6755399441055744.0
    r = (x - kf * 6.93147180369123816490e-01) - kf * 1.90821492927058770002e-10
    s1.f = kf * 0.5 + 6755399441055744.0                   # k = k1 + k2, both in [-538, 512]
    k1f = s1.f - 6755399441055744.0
    s2.f = (kf - k1f) + 6755399441055744.0
    s1.u = (s1.u - <uint64_t>0x4337FFFFFFFFFC01ULL) << 52 # bits of 2^k1: (k1 + 1023) << 52
    s2.u = (s2.u - <uint64_t>0x4337FFFFFFFFFC01ULL) << 52
    return ((1.0 + _expm1_poly_d(r)) * s1.f) * s2.f


cdef inline double _tanh_d(double x) noexcept nogil:
    """tanh(x) = -m / (m + 2), m = expm1(-2|x|) in (-1, 0], with the sign of x; |x| is clamped
    to 20 (tanh(20) rounds to 1), NaN propagates."""
    cdef _Bits64 a, s, t
    cdef uint64_t sign, m
    cdef int32_t hi
    cdef double y, kf, r, em
    a.f = x
    sign = a.u & <uint64_t>0x8000000000000000ULL
    a.u = a.u ^ sign
    hi = <int32_t>(a.u >> 32)
    m = <uint64_t>0 - <uint64_t>((hi >= 0x40340000) & _not_nan_d(hi, a.u))   # 20 <= |x| <= inf
    a.u = (a.u & ~m) | (<uint64_t>0x4034000000000000ULL & m)
    y = -2.0 * a.f
    s.f = y * 1.4426950408889634 + 6755399441055744.0
    kf = s.f - 6755399441055744.0                          # k in [-58, 0]
    r = (y - kf * 6.93147180369123816490e-01) - kf * 1.90821492927058770002e-10
    s.u = (s.u - <uint64_t>0x4337FFFFFFFFFC01ULL) << 52   # 2^k
    em = s.f * _expm1_poly_d(r) + (s.f - 1.0)              # 2^k (e^r - 1) + (2^k - 1), exact
    t.f = -em / (em + 2.0)
    t.u = (t.u & <uint64_t>0x7FFFFFFFFFFFFFFFULL) | sign   # -0 / 2 = -0: clear, then give x's sign
    return t.f


cdef inline double _sigmoid_d(double x) noexcept nogil:
    """1 / (1 + exp(-x)) as (1 or e) / (1 + e), e = exp(-|x|) <= 1: never overflows; the
    numerator is picked by the sign bit (an integer select, see _not_nan_d)."""
    cdef _Bits64 e, num
    cdef uint64_t neg
    num.f = x
    neg = <uint64_t>0 - (num.u >> 63)                      # all ones for negative x
    e.f = _exp_d(-fabs(x))
    num.u = (<uint64_t>0x3FF0000000000000ULL & ~neg) | (e.u & neg)
    return num.f / (1.0 + e.f)


# ---------------------------------------------------------------- float32

cdef inline float _expm1_poly_s(float r) noexcept nogil:
    """expm1(r) for |r| <= ln2 / 2 in float: Taylor series to r^7 (truncation < 2e-8 relative)."""
    cdef float p = <float>1.984126984126984e-04           # 1/7!
    p = p * r + <float>1.388888888888889e-03              # 1/6!
    p = p * r + <float>8.333333333333333e-03              # 1/5!
    p = p * r + <float>4.1666666666666664e-02             # 1/4!
    p = p * r + <float>0.16666666666666666                # 1/3!
    p = p * r + <float>0.5
    return r + (r * r) * p


cdef inline float _exp_s(float x) noexcept nogil:
    """exp(x) in float, as _exp_d: x clamped to [-104, 89], 2^k in two halves (k1, k2 in
    [-75, 65]) so subnormal results and inf come out right, NaN propagates."""
    cdef _Bits32 u, s, s1, s2
    cdef uint32_t sign, neg, lim, m
    cdef int32_t ax
    cdef float kf, k1f, r
    u.f = x
    ax = <int32_t>(u.u & <uint32_t>0x7FFFFFFFU)
    sign = u.u ^ <uint32_t>ax
    neg = <uint32_t>0 - (sign >> 31)
    lim = (<uint32_t>0x42D00000U & neg) | (<uint32_t>0x42B20000U & ~neg)      # 104, 89
    m = <uint32_t>0 - <uint32_t>((ax >= <int32_t>lim) & (ax <= 0x7F800000))
    u.u = ((<uint32_t>ax & ~m) | (lim & m)) | sign
    x = u.f
    s.f = x * <float>1.44269504088896341 + <float>12582912.0   # 1.5 * 2^23
    kf = s.f - <float>12582912.0
    r = (x - kf * <float>0.693359375) - kf * <float>-2.12194440054690583e-4
    s1.f = kf * <float>0.5 + <float>12582912.0
    k1f = s1.f - <float>12582912.0
    s2.f = (kf - k1f) + <float>12582912.0
    s1.u = (s1.u - <uint32_t>0x4B3FFF81U) << 23          # bits of 2^k1: (k1 + 127) << 23
    s2.u = (s2.u - <uint32_t>0x4B3FFF81U) << 23
    return ((<float>1.0 + _expm1_poly_s(r)) * s1.f) * s2.f


cdef inline float _tanh_s(float x) noexcept nogil:
    """tanh(x) in float, as _tanh_d: |x| clamped to 10 (tanhf(10) rounds to 1)."""
    cdef _Bits32 a, s, t
    cdef uint32_t sign, m
    cdef int32_t ax
    cdef float y, kf, r, em
    a.f = x
    sign = a.u & <uint32_t>0x80000000U
    ax = <int32_t>(a.u ^ sign)
    m = <uint32_t>0 - <uint32_t>((ax >= 0x41200000) & (ax <= 0x7F800000))  # 10 <= |x| <= inf
    a.u = (<uint32_t>ax & ~m) | (<uint32_t>0x41200000U & m)
    y = <float>-2.0 * a.f
    s.f = y * <float>1.44269504088896341 + <float>12582912.0
    kf = s.f - <float>12582912.0                          # k in [-29, 0]
    r = (y - kf * <float>0.693359375) - kf * <float>-2.12194440054690583e-4
    s.u = (s.u - <uint32_t>0x4B3FFF81U) << 23
    em = s.f * _expm1_poly_s(r) + (s.f - <float>1.0)
    t.f = -em / (em + <float>2.0)
    t.u = (t.u & <uint32_t>0x7FFFFFFFU) | sign
    return t.f


cdef inline float _sigmoid_s(float x) noexcept nogil:
    """1 / (1 + exp(-x)) in float, as _sigmoid_d."""
    cdef _Bits32 e, num
    cdef uint32_t neg
    num.f = x
    neg = <uint32_t>0 - (num.u >> 31)
    e.f = _exp_s(-fabsf(x))
    num.u = (<uint32_t>0x3F800000U & ~neg) | (e.u & neg)
    return num.f / (<float>1.0 + e.f)


# ---------------------------------------------------------------- array kernels (in place)

cdef void _exp_array_d(double* Z, Py_ssize_t n) noexcept nogil:
    cdef Py_ssize_t i
    for i in range(n):
        Z[i] = _exp_d(Z[i])


cdef void _exp_array_s(float* Z, Py_ssize_t n) noexcept nogil:
    cdef Py_ssize_t i
    for i in range(n):
        Z[i] = _exp_s(Z[i])


cdef void _tanh_array_d(double* Z, Py_ssize_t n) noexcept nogil:
    cdef Py_ssize_t i
    for i in range(n):
        Z[i] = _tanh_d(Z[i])


cdef void _tanh_array_s(float* Z, Py_ssize_t n) noexcept nogil:
    cdef Py_ssize_t i
    for i in range(n):
        Z[i] = _tanh_s(Z[i])


cdef void _sigmoid_array_d(double* Z, Py_ssize_t n) noexcept nogil:
    cdef Py_ssize_t i
    for i in range(n):
        Z[i] = _sigmoid_d(Z[i])


cdef void _sigmoid_array_s(float* Z, Py_ssize_t n) noexcept nogil:
    cdef Py_ssize_t i
    for i in range(n):
        Z[i] = _sigmoid_s(Z[i])


# ---------------------------------------------------------------- Python twins

def simd_clone():
    """Which clone of the array kernels this CPU runs: 'x86-64-v4', 'x86-64-v3' or 'baseline'."""
    return nnc_simd_clone().decode()


def exp_fast(floating[::1] Z_out):
    """Z_out <- exp(Z_out) in place (flattened view of any C-contiguous array)."""
    if Z_out.shape[0] == 0:
        return
    with nogil:
        _exp_array(&Z_out[0], Z_out.shape[0])


def tanh_fast(floating[::1] Z_out):
    """Z_out <- tanh(Z_out) in place."""
    if Z_out.shape[0] == 0:
        return
    with nogil:
        _tanh_array(&Z_out[0], Z_out.shape[0])


def sigmoid_fast(floating[::1] Z_out):
    """Z_out <- 1 / (1 + exp(-Z_out)) in place."""
    if Z_out.shape[0] == 0:
        return
    with nogil:
        _sigmoid_array(&Z_out[0], Z_out.shape[0])


def exp_libm(floating[::1] Z_out):
    """Z_out <- exp(Z_out) in place with the C library's exp / expf (reference, baseline)."""
    cdef Py_ssize_t i, n = Z_out.shape[0]
    cdef floating* Z
    if n == 0:
        return
    Z = &Z_out[0]
    with nogil:
        for i in range(n):
            if floating is float:
                Z[i] = expf(Z[i])
            else:
                Z[i] = exp(Z[i])


def tanh_libm(floating[::1] Z_out):
    """Z_out <- tanh(Z_out) in place with the C library's tanh / tanhf (reference, baseline)."""
    cdef Py_ssize_t i, n = Z_out.shape[0]
    cdef floating* Z
    if n == 0:
        return
    Z = &Z_out[0]
    with nogil:
        for i in range(n):
            if floating is float:
                Z[i] = tanhf(Z[i])
            else:
                Z[i] = tanh(Z[i])
