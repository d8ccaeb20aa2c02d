"""The gradient allreduce of data-parallel training, callable from compiled loops without the GIL.

Why: the compiled whole-epoch loop of dense networks (``_mlp.train_epoch_synced``) runs every
batch without the GIL; in data-parallel training each batch ends with one allreduce of the flat
gradient buffer (plus two trailing slots, see ``nnc/_distributed.py``).  Going back to Python for
it (``comm.Allreduce`` of mpi4py) would cost a GIL round trip and a few Python calls per batch;
here the loop calls a C function pointer instead.

How, without MPI headers at build time: nnc never links MPI.  ``MPIAllreduce`` is given, at run
time, the address of the MPI library's ``MPI_Allreduce`` (looked up by ``nnc/_distributed.py``
through the handle of mpi4py's extension module, whose dependencies include libmpi) and the
handle values of the communicator, of MPI_FLOAT / MPI_DOUBLE and of MPI_SUM, and the value of
MPI_IN_PLACE (mpi4py's ``MPI._handleof`` and ``int(MPI.IN_PLACE)``).  The only ABI facts used
are the two kinds of handle an MPI library has: ``int`` (MPICH and its derivatives: Intel MPI,
MVAPICH, Cray MPICH) or a pointer (Open MPI, and the MPI 5 standard ABI); the caller says which
from ``MPI._sizeof(MPI.Comm)``.  ``PyAllreduce`` is the portable fallback: it takes the GIL and
calls a Python function (mpi4py's ``Allreduce``) on the bound NumPy buffer; it also serves any
communicator the direct route cannot (and lets the two be measured against each other:
``python benchmarks/bench_distributed.py``).

Errors: the function returns MPI's error code (communicators under mpi4py return errors instead
of aborting); the loop then stops and Python raises.  ``n_calls`` counts completed calls, so a
watchdog thread can see progress.
"""
from libc.stdint cimport intptr_t
from libc.limits cimport INT_MAX

import numpy as np

cimport numpy as cnp

cnp.import_array()

# MPI_Allreduce(sendbuf, recvbuf, count, datatype, op, comm) for the two kinds of handle
ctypedef int (*mpi_allreduce_int_t)(const void*, void*, int, int, int, int) noexcept nogil
ctypedef int (*mpi_allreduce_ptr_t)(const void*, void*, int, void*, void*, void*) noexcept nogil

cdef enum:
    HANDLES_INT_ = 0        # MPICH-style int handles
    HANDLES_POINTER_ = 1    # Open MPI / MPI 5 ABI pointer handles
    PY_ERROR_ = -1          # PyAllreduce: the Python function raised (kept in ``.error``)
    WRONG_BUFFER_ = -3      # PyAllreduce: called on a buffer other than the bound one

HANDLES_INT = HANDLES_INT_
HANDLES_POINTER = HANDLES_POINTER_
PY_ERROR = PY_ERROR_


cdef class Allreduce:
    """Base: a C function pointer and its context (see _comm.pxd)."""

    def __cinit__(self):
        self.fn = NULL
        self.ctx = NULL
        self.n_calls = 0

    def __call__(self, cnp.ndarray buf):
        """In-place SUM of the C-contiguous float32 / float64 vector `buf` (the Python twin)."""
        cdef int rc
        cdef void* ptr
        cdef Py_ssize_t n
        cdef int is_double
        if self.fn == NULL:
            raise ValueError("Allreduce: no function bound")
        if (cnp.PyArray_NDIM(buf) != 1 or not cnp.PyArray_IS_C_CONTIGUOUS(buf)
                or not cnp.PyArray_ISWRITEABLE(buf)
                or cnp.PyArray_TYPE(buf) not in (cnp.NPY_FLOAT32, cnp.NPY_FLOAT64)):
            raise ValueError("Allreduce: buf must be a writeable C-contiguous float32/float64 "
                             "vector")
        n = cnp.PyArray_DIM(buf, 0)
        if n > INT_MAX:
            raise ValueError(f"Allreduce: {n} values exceed MPI's int count")
        ptr = cnp.PyArray_DATA(buf)
        is_double = cnp.PyArray_TYPE(buf) == cnp.NPY_FLOAT64
        with nogil:
            rc = self.fn(self.ctx, ptr, n, is_double)
        self._check(rc)
        return buf

    def _check(self, int rc):
        """Raise for a non-zero code returned by fn."""
        if rc != 0:
            raise RuntimeError(f"MPI_Allreduce failed with error code {rc}")


# ---------------------------------------------------------------- MPI, called directly

ctypedef struct MPIContext:
    void* fn              # MPI_Allreduce
    int kind              # HANDLES_INT / HANDLES_POINTER
    intptr_t comm
    intptr_t dt_float
    intptr_t dt_double
    intptr_t op_sum
    intptr_t in_place
    long long* n_calls


cdef int _mpi_allreduce(void* ctx, void* buf, Py_ssize_t count, int is_double) noexcept nogil:
    cdef MPIContext* c = <MPIContext*>ctx
    cdef intptr_t dt = c.dt_double if is_double else c.dt_float
    cdef int rc
    if count > INT_MAX:
        return -2
    if c.kind == HANDLES_INT_:
        rc = (<mpi_allreduce_int_t>c.fn)(<const void*>c.in_place, buf, <int>count, <int>dt,
                                         <int>c.op_sum, <int>c.comm)
    else:
        rc = (<mpi_allreduce_ptr_t>c.fn)(<const void*>c.in_place, buf, <int>count, <void*>dt,
                                         <void*>c.op_sum, <void*>c.comm)
    if rc == 0:
        c.n_calls[0] += 1
    return rc


cdef class MPIAllreduce(Allreduce):
    """MPI_Allreduce(MPI_IN_PLACE, buf, count, MPI_FLOAT / MPI_DOUBLE, MPI_SUM, comm), called
    through its address.

    Parameters (all integers, from nnc/_distributed.py): ``fn`` the address of MPI_Allreduce,
    ``kind`` HANDLES_INT or HANDLES_POINTER, the handle values ``comm``, ``dt_float``,
    ``dt_double``, ``op_sum``, and ``in_place`` (the value of MPI_IN_PLACE).  ``owner`` is kept
    alive with this object (the mpi4py communicator whose handle is used)."""
    cdef MPIContext c
    cdef readonly object owner

    def __init__(self, fn, kind, comm, dt_float, dt_double, op_sum, in_place, owner=None):
        if not fn:
            raise ValueError("MPIAllreduce: the address of MPI_Allreduce is NULL")
        if kind not in (HANDLES_INT, HANDLES_POINTER):
            raise ValueError(f"MPIAllreduce: kind must be {HANDLES_INT} (int handles) or "
                             f"{HANDLES_POINTER} (pointer handles), got {kind!r}")
        self.c.fn = <void*><intptr_t>fn
        self.c.kind = kind
        self.c.comm = <intptr_t>comm
        self.c.dt_float = <intptr_t>dt_float
        self.c.dt_double = <intptr_t>dt_double
        self.c.op_sum = <intptr_t>op_sum
        self.c.in_place = <intptr_t>in_place
        self.c.n_calls = &self.n_calls
        self.owner = owner
        self.fn = _mpi_allreduce
        self.ctx = &self.c


# ---------------------------------------------------------------- a Python function, with the GIL

cdef int _py_allreduce(void* ctx, void* buf, Py_ssize_t count, int is_double) noexcept nogil:
    with gil:
        return (<PyAllreduce>ctx)._run(buf, count, is_double)


cdef class PyAllreduce(Allreduce):
    """Calls ``func(array)`` (an in-place SUM over the ranks of the bound vector, e.g. mpi4py's
    ``lambda a: comm.Allreduce(MPI.IN_PLACE, a)``) with the GIL taken.

    ``bind(array)`` names the buffer the compiled loop will pass; a call on any other pointer or
    length is refused (code -3).  An exception raised by func is kept in ``error`` (code -1)."""
    cdef readonly object func
    cdef readonly object array
    cdef readonly object error
    cdef void* data
    cdef Py_ssize_t size

    def __init__(self, func):
        if not callable(func):
            raise TypeError("PyAllreduce: func must be callable")
        self.func = func
        self.array = None
        self.error = None
        self.data = NULL
        self.size = 0
        self.fn = _py_allreduce
        self.ctx = <void*>self

    def bind(self, cnp.ndarray array):
        """The buffer (a writeable C-contiguous float32 / float64 vector) calls will reduce."""
        if (cnp.PyArray_NDIM(array) != 1 or not cnp.PyArray_IS_C_CONTIGUOUS(array)
                or not cnp.PyArray_ISWRITEABLE(array)
                or cnp.PyArray_TYPE(array) not in (cnp.NPY_FLOAT32, cnp.NPY_FLOAT64)):
            raise ValueError("PyAllreduce.bind: array must be a writeable C-contiguous "
                             "float32/float64 vector")
        self.array = array
        self.data = cnp.PyArray_DATA(array)
        self.size = cnp.PyArray_DIM(array, 0)
        return self

    def __call__(self, cnp.ndarray buf):
        self.bind(buf)
        return Allreduce.__call__(self, buf)

    cdef int _run(self, void* buf, Py_ssize_t count, int is_double):
        if self.array is None or buf != self.data or count != self.size or (
                is_double != (self.array.dtype == np.float64)):
            return WRONG_BUFFER_
        try:
            self.func(self.array)
        except BaseException as exc:       # noqa: B036 - handed back to Python by the caller
            self.error = exc
            return PY_ERROR_
        self.n_calls += 1
        return 0

    def _check(self, int rc):
        if rc == PY_ERROR_ and self.error is not None:
            exc, self.error = self.error, None
            raise exc
        if rc == WRONG_BUFFER_:
            raise ValueError("PyAllreduce: called on a buffer other than the bound one")
        Allreduce._check(self, rc)
