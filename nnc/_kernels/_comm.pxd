# The per-step gradient allreduce of data-parallel training, as a C function pointer that the
# compiled epoch (_mlp.pyx) calls without the GIL (see _comm.pyx for the design note).

# In-place SUM of `count` values of `buf` (float32 when is_double == 0, else float64) over every
# rank; returns 0 on success (anything else is an error code: the loop stops, Python raises).
ctypedef int (*allreduce_fn)(void* ctx, void* buf, Py_ssize_t count, int is_double) noexcept nogil


cdef class Allreduce:
    # what the compiled loop calls: fn(ctx, buf, count, is_double)
    cdef allreduce_fn fn
    cdef void* ctx
    # completed calls, read by a watchdog in another thread (progress = this number moving)
    cdef public long long n_calls
