"""Python-visible OpenMP facts, for show_config() and nnc._threads."""
from nnc._kernels._openmp cimport NNC_HAVE_OPENMP, _omp_max_threads


def openmp_enabled():
    """True when the kernels were compiled with OpenMP."""
    return bool(NNC_HAVE_OPENMP)


def omp_max_threads():
    """omp_get_max_threads() of the calling thread (1 without OpenMP); honours OMP_NUM_THREADS
    and threadpoolctl limits."""
    return _omp_max_threads()
