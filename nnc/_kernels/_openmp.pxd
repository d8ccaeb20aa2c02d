# OpenMP helpers with no-op fallbacks.  Whether the kernels have OpenMP is decided by the C
# compiler (_OPENMP is defined under -fopenmp / /openmp, which setup.py adds when the compiler
# accepts it), so a plain C macro picks the real call or the fallback: no Cython compile-time IF.
cdef extern from *:
    """
    #ifdef _OPENMP
    #include <omp.h>
    #define NNC_HAVE_OPENMP 1
    #define nnc_omp_max_threads() omp_get_max_threads()
    #define nnc_omp_thread_num() omp_get_thread_num()
    #else
    #define NNC_HAVE_OPENMP 0
    #define nnc_omp_max_threads() 1
    #define nnc_omp_thread_num() 0
    #endif
    """
    const int NNC_HAVE_OPENMP
    int nnc_omp_max_threads() noexcept nogil
    int nnc_omp_thread_num() noexcept nogil


cdef inline int _omp_max_threads() noexcept nogil:
    """omp_get_max_threads() of the calling thread (1 without OpenMP)."""
    return nnc_omp_max_threads()


cdef inline int _omp_thread_num() noexcept nogil:
    """omp_get_thread_num() (0 without OpenMP)."""
    return nnc_omp_thread_num()
