# Overflow-checked size arithmetic for the kernels' Python entry points.
#
# C arithmetic on Py_ssize_t wraps silently: a product of user-given sizes (a kernel size, a padding,
# a plan entry, or the dimensions of a zero-size array such as np.empty((2**62, 0))) can wrap into a
# small number that then matches a small buffer, and the kernel reads or writes far outside it.  Every
# entry point computes such sums and products with these helpers, which raise ValueError (naming the
# quantity) before any allocation or pointer arithmetic.  Products of the dimensions of ONE existing
# non-empty array need no check (NumPy guarantees they fit).  They hold the GIL (they may raise).
from cpython.pyport cimport PY_SSIZE_T_MAX


cdef inline Py_ssize_t _checked_mul(Py_ssize_t a, Py_ssize_t b, str what) except -1:
    """a * b for sizes a, b >= 0, or ValueError when one is negative or the product overflows."""
    if a < 0 or b < 0:
        raise ValueError(f"{what}: sizes must be >= 0, got {a} and {b}")
    if a != 0 and b > PY_SSIZE_T_MAX // a:
        raise ValueError(f"{what}: {a} * {b} overflows (the largest size is {PY_SSIZE_T_MAX})")
    return a * b


cdef inline Py_ssize_t _checked_add(Py_ssize_t a, Py_ssize_t b, str what) except -1:
    """a + b for sizes a, b >= 0, or ValueError when one is negative or the sum overflows."""
    if a < 0 or b < 0:
        raise ValueError(f"{what}: sizes must be >= 0, got {a} and {b}")
    if a > PY_SSIZE_T_MAX - b:
        raise ValueError(f"{what}: {a} + {b} overflows (the largest size is {PY_SSIZE_T_MAX})")
    return a + b


cdef inline Py_ssize_t _checked_prod(tuple sizes, str what) except -1:
    """The product of a tuple of sizes >= 0, or ValueError when it overflows."""
    cdef Py_ssize_t out = 1, s
    for s in sizes:
        out = _checked_mul(out, s, what)
    return out
