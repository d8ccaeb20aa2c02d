"""nnc's thread policy: how many threads one nnc call, and each piece of its work, may use.

MEASUREMENTS_PLACEHOLDER
"""
import ctypes
import math
import os
import sys

from nnc._config import _LOCAL
from nnc._kernels import _blas, _parallel
from nnc._kernels._openmp_helpers import omp_max_threads, openmp_enabled

__all__ = ["n_threads", "budget", "info"]


# ---------------------------------------------------------------------- CPUs nnc may use

def _cgroup_cpu_limit():
    """CPUs allowed by the cgroup's CPU quota (v2 cpu.max, v1 cfs quota), or None."""
    paths = []
    try:
        with open("/proc/self/cgroup") as fh:
            for line in fh:
                parts = line.strip().split(":", 2)
                if len(parts) == 3 and parts[0] == "0" and parts[1] == "":
                    paths.append(os.path.join("/sys/fs/cgroup", parts[2].lstrip("/"), "cpu.max"))
    except OSError:
        return None
    paths.append("/sys/fs/cgroup/cpu.max")
    for path in paths:
        try:
            with open(path) as fh:
                quota, period = fh.read().split()[:2]
        except (OSError, ValueError):
            continue
        if quota == "max":
            return None
        try:
            return max(1.0, float(quota) / float(period))
        except (ValueError, ZeroDivisionError):
            return None
    try:
        with open("/sys/fs/cgroup/cpu/cpu.cfs_quota_us") as fh:
            quota = float(fh.read())
        with open("/sys/fs/cgroup/cpu/cpu.cfs_period_us") as fh:
            period = float(fh.read())
    except (OSError, ValueError):
        return None
    return max(1.0, quota / period) if quota > 0 and period > 0 else None


def _cpus():
    """(CPUs nnc may use, ids of the CPUs in the affinity set)."""
    try:
        ids = sorted(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        ids = list(range(os.cpu_count() or 1))
    n = max(1, len(ids))
    limit = _cgroup_cpu_limit() if sys.platform.startswith("linux") else None
    if limit is not None:
        n = max(1, min(n, int(math.ceil(limit - 1e-9))))
    return n, ids


# ---------------------------------------------------------------------- the BLAS's thread API

#: (get, set) symbol pairs, most specific first: SciPy's bundled OpenBLAS (scipy-openblas32
#: prefixes its symbols), then an unprefixed OpenBLAS that SciPy was linked against
_BLAS_API_NAMES = (("scipy_openblas_get_num_threads", "scipy_openblas_set_num_threads"),
                   ("openblas_get_num_threads", "openblas_set_num_threads"))


def _library_path(address):
    """File of the shared library holding `address` (POSIX dladdr), or None."""
    class _DlInfo(ctypes.Structure):
        _fields_ = [("dli_fname", ctypes.c_char_p), ("dli_fbase", ctypes.c_void_p),
                    ("dli_sname", ctypes.c_char_p), ("dli_saddr", ctypes.c_void_p)]
    try:
        dladdr = ctypes.CDLL(None).dladdr
    except (OSError, AttributeError, TypeError):
        return None
    dladdr.argtypes = [ctypes.c_void_p, ctypes.POINTER(_DlInfo)]
    dladdr.restype = ctypes.c_int
    found = _DlInfo()
    if not dladdr(ctypes.c_void_p(address), ctypes.byref(found)) or not found.dli_fname:
        return None
    return os.path.realpath(os.fsdecode(found.dli_fname))


def _blas_handles():
    """ctypes handles through which the BLAS SciPy's cython_blas calls can be searched."""
    import scipy.linalg.cython_blas as cython_blas
    handles = []
    if os.name == "posix":
        # dlsym on the module's handle searches its dependencies too: exactly the BLAS that
        # cython_blas's function pointers call (RTLD_NOLOAD: it is loaded already)
        try:
            handles.append(ctypes.CDLL(cython_blas.__file__,
                                       mode=os.RTLD_NOLOAD | os.RTLD_LAZY))
        except (OSError, AttributeError):
            pass
    # wheels bundle their BLAS next to the package (scipy.libs, scipy/.dylibs); on Windows a
    # module's handle does not search its dependencies, so look there by name
    scipy_dir = os.path.dirname(os.path.dirname(os.path.dirname(cython_blas.__file__)))
    pkg_dir = os.path.dirname(os.path.dirname(cython_blas.__file__))
    for folder in (os.path.join(scipy_dir, "scipy.libs"), os.path.join(pkg_dir, ".dylibs"),
                   os.path.join(pkg_dir, ".libs")):
        try:
            names = sorted(os.listdir(folder))
        except OSError:
            continue
        for name in names:
            low = name.lower()
            if "openblas" in low and (low.endswith((".so", ".dylib", ".dll")) or ".so." in low):
                path = os.path.join(folder, name)
                mode = (os.RTLD_NOLOAD | os.RTLD_LAZY) if os.name == "posix" else 0
                try:
                    handles.append(ctypes.CDLL(path, mode=mode))
                except OSError:
                    pass
    return handles


def _find_pool(handle, library):
    """(gotoblas_pthread address, &blas_num_threads) of OpenBLAS's thread pool in `handle`, or
    None; both must live in `library` (the BLAS whose thread API was found)."""
    try:
        run_addr = ctypes.cast(handle.gotoblas_pthread, ctypes.c_void_p).value
        size_addr = ctypes.addressof(ctypes.c_int.in_dll(handle, "blas_num_threads"))
    except (AttributeError, ValueError):
        return None
    if not run_addr or not size_addr or library is None:
        return None
    if _library_path(run_addr) != library or _library_path(size_addr) != library:
        return None
    return run_addr, size_addr


def _find_blas_thread_api():
    """{get, set, name, library, pool} for the BLAS SciPy calls: the addresses of its
    get/set_num_threads, the symbol name, its file, and (run, size) addresses of its thread pool
    (OpenBLAS's gotoblas_pthread / blas_num_threads, or None); None without a thread API (MKL,
    Accelerate, reference BLAS: no control)."""
    try:
        handles = _blas_handles()
    except ImportError:  # pragma: no cover - SciPy always has cython_blas
        return None
    for handle in handles:
        for get_name, set_name in _BLAS_API_NAMES:
            try:
                get_fn = getattr(handle, get_name)
                set_fn = getattr(handle, set_name)
            except AttributeError:
                continue
            get_addr = ctypes.cast(get_fn, ctypes.c_void_p).value
            set_addr = ctypes.cast(set_fn, ctypes.c_void_p).value
            if get_addr and set_addr:
                library = _library_path(get_addr)
                return {"get": get_addr, "set": set_addr, "name": set_name,
                        "library": library, "pool": _find_pool(handle, library)}
    return None


# ---------------------------------------------------------------------- set up at import

_HW, _CPU_IDS = _cpus()
_parallel.set_cpus(_HW, _CPU_IDS)
_BLAS_API = _find_blas_thread_api()
if _BLAS_API is not None:
    _blas.set_thread_api(_BLAS_API["get"], _BLAS_API["set"])
    if _BLAS_API["pool"] is not None:
        _parallel.set_pool(*_BLAS_API["pool"])


# ---------------------------------------------------------------------- the policy's answers

def n_threads():
    """Thread cap for the kernels called now from this thread: the config's ``n_threads``
    (None: no cap) clamped to the CPUs nnc may use.  Each kernel applies the rest of the policy
    (size thresholds, OpenMP / BLAS limits, the load governor) per piece of work."""
    cap = _LOCAL.n_threads
    return _HW if cap is None or cap > _HW else cap


def budget():
    """Threads a piece of work above every threshold would get now from this thread: the
    config's n_threads, omp_get_max_threads(), the CPUs nnc may use and the load governor
    (1 in a forked child)."""
    return _parallel.budget(n_threads())


def info():
    """The policy's view, as a dict (show_config prints it)."""
    gov = _parallel.governor_state()
    blas_threads = _blas.blas_threads()
    hw, ncpu = _parallel.cpus()
    return {
        "budget": budget(),
        "config_n_threads": _LOCAL.n_threads,
        "cpus": hw,
        "affinity_cpus": ncpu,
        "openmp": bool(openmp_enabled()),
        "omp_max_threads": int(omp_max_threads()),
        "forked_child": _parallel.forked(),
        "governor": gov,
        "blas_control": _BLAS_API is not None,
        "blas_api": None if _BLAS_API is None else _BLAS_API["name"],
        "blas_library": None if _BLAS_API is None else _BLAS_API["library"],
        "blas_threads": blas_threads,
        "loops_run_on": _parallel.pool(),
        "thresholds": _parallel.thresholds(),
    }
