# Sums over a contiguous run of values, accumulated in double in independent lanes: gcc
# vectorises the lanes (one running sum would be a serial chain of dependent adds, and gcc may not
# reorder floating-point sums itself), and double accumulation keeps float32 data's sums exact to
# ~1e-16 relative for any realistic length.  Used by the normalization and pooling kernels.
from nnc._kernels._blas cimport floating


cdef inline double _sum(const floating* x, Py_ssize_t n) noexcept nogil:
    """sum(x[:n]) in double, eight lanes."""
    cdef double a0 = 0, a1 = 0, a2 = 0, a3 = 0, a4 = 0, a5 = 0, a6 = 0, a7 = 0
    cdef Py_ssize_t j = 0
    while j + 8 <= n:
        a0 += x[j]
        a1 += x[j + 1]
        a2 += x[j + 2]
        a3 += x[j + 3]
        a4 += x[j + 4]
        a5 += x[j + 5]
        a6 += x[j + 6]
        a7 += x[j + 7]
        j += 8
    while j < n:
        a0 += x[j]
        j += 1
    return ((a0 + a1) + (a2 + a3)) + ((a4 + a5) + (a6 + a7))


cdef inline double _sum_sq_dev(const floating* x, Py_ssize_t n, double m) noexcept nogil:
    """sum((x[:n] - m)^2) in double, eight lanes."""
    cdef double a0 = 0, a1 = 0, a2 = 0, a3 = 0, a4 = 0, a5 = 0, a6 = 0, a7 = 0
    cdef double d0, d1, d2, d3, d4, d5, d6, d7
    cdef Py_ssize_t j = 0
    while j + 8 <= n:
        d0 = x[j] - m
        d1 = x[j + 1] - m
        d2 = x[j + 2] - m
        d3 = x[j + 3] - m
        d4 = x[j + 4] - m
        d5 = x[j + 5] - m
        d6 = x[j + 6] - m
        d7 = x[j + 7] - m
        a0 += d0 * d0
        a1 += d1 * d1
        a2 += d2 * d2
        a3 += d3 * d3
        a4 += d4 * d4
        a5 += d5 * d5
        a6 += d6 * d6
        a7 += d7 * d7
        j += 8
    while j < n:
        d0 = x[j] - m
        a0 += d0 * d0
        j += 1
    return ((a0 + a1) + (a2 + a3)) + ((a4 + a5) + (a6 + a7))


cdef inline void _sum_and_sq(const floating* x, Py_ssize_t n, double k, double* s,
                             double* q) noexcept nogil:
    """s += sum(x - k), q += sum((x - k)^2) over x[:n], in double (four lanes each)."""
    cdef double s0 = 0, s1 = 0, s2 = 0, s3 = 0, q0 = 0, q1 = 0, q2 = 0, q3 = 0
    cdef double d0, d1, d2, d3
    cdef Py_ssize_t j = 0
    while j + 4 <= n:
        d0 = x[j] - k
        d1 = x[j + 1] - k
        d2 = x[j + 2] - k
        d3 = x[j + 3] - k
        s0 += d0
        s1 += d1
        s2 += d2
        s3 += d3
        q0 += d0 * d0
        q1 += d1 * d1
        q2 += d2 * d2
        q3 += d3 * d3
        j += 4
    while j < n:
        d0 = x[j] - k
        s0 += d0
        q0 += d0 * d0
        j += 1
    s[0] += (s0 + s1) + (s2 + s3)
    q[0] += (q0 + q1) + (q2 + q3)


cdef inline void _dot_and_sum(const floating* g, const floating* x, Py_ssize_t n, double m,
                              double* s, double* p) noexcept nogil:
    """s += sum(g), p += sum(g (x - m)) over [:n], in double (four lanes each)."""
    cdef double s0 = 0, s1 = 0, s2 = 0, s3 = 0, p0 = 0, p1 = 0, p2 = 0, p3 = 0
    cdef Py_ssize_t j = 0
    while j + 4 <= n:
        s0 += g[j]
        s1 += g[j + 1]
        s2 += g[j + 2]
        s3 += g[j + 3]
        p0 += g[j] * (x[j] - m)
        p1 += g[j + 1] * (x[j + 1] - m)
        p2 += g[j + 2] * (x[j + 2] - m)
        p3 += g[j + 3] * (x[j + 3] - m)
        j += 4
    while j < n:
        s0 += g[j]
        p0 += g[j] * (x[j] - m)
        j += 1
    s[0] += (s0 + s1) + (s2 + s3)
    p[0] += (p0 + p1) + (p2 + p3)



# The LayerNorm row kernels take their two sums of a row in two loops with one sum each, not one
# loop with two: gcc 12 vectorises neither of two sums of float32 values widened to double in one
# loop (it does one), and the two loops do not depend on each other, so the core overlaps them.

cdef inline double _sum_prod(const floating* a, const floating* b, Py_ssize_t n) noexcept nogil:
    """sum(a[:n] b[:n]) in double, each product rounded to the data type, eight lanes."""
    cdef double s0 = 0, s1 = 0, s2 = 0, s3 = 0, s4 = 0, s5 = 0, s6 = 0, s7 = 0
    cdef Py_ssize_t j = 0
    while j + 8 <= n:
        s0 += <floating>(a[j] * b[j])
        s1 += <floating>(a[j + 1] * b[j + 1])
        s2 += <floating>(a[j + 2] * b[j + 2])
        s3 += <floating>(a[j + 3] * b[j + 3])
        s4 += <floating>(a[j + 4] * b[j + 4])
        s5 += <floating>(a[j + 5] * b[j + 5])
        s6 += <floating>(a[j + 6] * b[j + 6])
        s7 += <floating>(a[j + 7] * b[j + 7])
        j += 8
    while j < n:
        s0 += <floating>(a[j] * b[j])
        j += 1
    return ((s0 + s1) + (s2 + s3)) + ((s4 + s5) + (s6 + s7))


cdef inline double _sum_prod_dev(const floating* a, const floating* b, const floating* x,
                                 Py_ssize_t n, double m) noexcept nogil:
    """sum(a b (x - m)) over [:n] in double, a b rounded to the data type, eight lanes."""
    cdef double s0 = 0, s1 = 0, s2 = 0, s3 = 0, s4 = 0, s5 = 0, s6 = 0, s7 = 0
    cdef Py_ssize_t j = 0
    while j + 8 <= n:
        s0 += <floating>(a[j] * b[j]) * (x[j] - m)
        s1 += <floating>(a[j + 1] * b[j + 1]) * (x[j + 1] - m)
        s2 += <floating>(a[j + 2] * b[j + 2]) * (x[j + 2] - m)
        s3 += <floating>(a[j + 3] * b[j + 3]) * (x[j + 3] - m)
        s4 += <floating>(a[j + 4] * b[j + 4]) * (x[j + 4] - m)
        s5 += <floating>(a[j + 5] * b[j + 5]) * (x[j + 5] - m)
        s6 += <floating>(a[j + 6] * b[j + 6]) * (x[j + 6] - m)
        s7 += <floating>(a[j + 7] * b[j + 7]) * (x[j + 7] - m)
        j += 8
    while j < n:
        s0 += <floating>(a[j] * b[j]) * (x[j] - m)
        j += 1
    return ((s0 + s1) + (s2 + s3)) + ((s4 + s5) + (s6 + s7))
