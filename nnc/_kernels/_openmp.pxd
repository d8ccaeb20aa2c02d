# OpenMP helpers with no-op fallbacks when the build has no OpenMP (NNC_HAVE_OPENMP is a
# compile-time constant set by setup.py).
IF NNC_HAVE_OPENMP:
    cimport openmp

cdef inline int _omp_max_threads() noexcept nogil:
    IF NNC_HAVE_OPENMP:
        return openmp.omp_get_max_threads()
    ELSE:
        return 1

cdef inline int _omp_thread_num() noexcept nogil:
    IF NNC_HAVE_OPENMP:
        return openmp.omp_get_thread_num()
    ELSE:
        return 0
