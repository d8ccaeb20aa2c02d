"""Python-visible OpenMP facts, for show_config() and for resolving kernel thread counts."""
from nnc._kernels._openmp cimport _omp_max_threads


def openmp_enabled():
    """True when the kernels were compiled with OpenMP."""
    IF NNC_HAVE_OPENMP:
        return True
    ELSE:
        return False


def omp_max_threads():
    """omp_get_max_threads() (1 without OpenMP); honours OMP_NUM_THREADS and threadpoolctl."""
    return _omp_max_threads()
