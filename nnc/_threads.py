"""nnc's thread policy: how many threads one nnc call, and each piece of its work, may use.

Every parallel piece of nnc work asks one question -- ``_parallel._par_begin(cap, kind, work)``
(C, nogil; nnc/_kernels/_parallel.pyx) -- and gets one thread below its kind's threshold and
the *budget* above it.  The pieces are the kernels' per-sample / per-plane / per-element passes
and every BLAS product nnc issues (``_blas._gemm``).  This module sets the policy up at import
(CPUs, the BLAS's thread API and pool) and answers for Python (``n_threads()`` for the layers'
kernel calls, ``budget()`` and ``info()`` for show_config).  The numbers below were measured on
the project's 2-vCPU AMD EPYC (Zen 4) KVM guest, float32, quiet machine, with the commands
given; rerun them to re-measure.

Budget (per piece) = min(the caller's cap, the thread's ``nnc.set_config(n_threads=...)``,
omp_get_max_threads() for nnc's own passes / the BLAS's setting for products (OMP_NUM_THREADS,
OPENBLAS_NUM_THREADS, threadpoolctl and joblib/loky limits all land there), the CPUs in
``os.sched_getaffinity(0)`` and the cgroup CPU quota, the governor), divided among the pieces
already running in parallel in this process (eight threads predicting at once share the CPUs
instead of starting sixteen workers); 1 in a forked child; never more than 64.

Thresholds (``python benchmarks/bench_thresholds.py``; gain = 1-thread time / 2-thread time,
"hot" back to back, "cold" after 2 ms of sleep; the threshold is the smallest size whose gain is
clearly above 1 both ways):

* GEMM, m n k multiply-adds: 2^21.  1.0M: 1.15-1.24 hot / 1.13-1.23 cold; 2.1-2.2M: 1.39-1.57 /
  1.39-1.47; 4.2M: 1.58-1.71 / 1.5-1.7; 25.7M: 1.89 / 1.86.  At or below 262,144 OpenBLAS runs a
  product on the calling thread whatever its setting (MNK <= 65536 * 4, interface/gemm.c), so
  those are called with no decision at all.
* im2col / col2im / grid copies, elements written: 2^15 (18K: 1.50 / 1.32; 147K: 1.91 / 1.83).
* pooling, input elements: 2^16 (33K: 1.10 / 1.01; 87K: 1.27 / 1.35; 346K: 1.42 / 1.36).
* element-wise (dropout; BLAS level 1 such as the L2 dot), elements: 2^16 (16K: 0.95 / 0.84;
  65K: 1.76 / 1.55).
* fused optimizer step, parameters: 2^16 (65K Adam: 1.89 / 1.57; 262K: 1.90 / 1.96).  The old
  2^20 guarded against stalls on a loaded machine; the governor does that now.

One pool of workers.  SciPy's OpenBLAS keeps its own pthread pool; nnc's passes used to run on a
second one (GNU OpenMP).  After a parallel piece each pool's workers spin: an OpenBLAS worker
~104 ms of CPU (8 NOPs per poll for 2^28 TSC cycles; OpenBLAS 0.3.30), a libgomp worker ~8 ms
(GOMP_SPINCOUNT's default) -- ``bench_thresholds.py --only spin``.  With both pools busy, three
spinning threads share two cores: an Adam step of 262K parameters right after a 2-thread GEMM
took 7.2 ms (median; the GEMM 2.2 ms) on OpenMP against 0.080 ms (GEMM 0.287 ms) with the step's
jobs on OpenBLAS's own pool, 0.156 ms serially (``--only mixed``).  So when the BLAS lends its
pool (OpenBLAS's exported ``gotoblas_pthread`` / ``blas_num_threads``), nnc's passes run their
jobs there (``_parallel._par_run``) and OpenMP is only the fallback (other BLAS libraries, a pool
smaller than the budget).  No wait-policy variable is set: GOMP_SPINCOUNT / OMP_WAIT_POLICY only
act before the OpenMP runtime starts and would change every other library's OpenMP in the
process, and a passive wait made a 2-thread 524K-parameter Adam step on OpenMP 233 us instead of
157 (``OMP_WAIT_POLICY=passive ... --only optim --openmp``); OpenBLAS's spin cannot be
changed after load (``thread_timeout`` is internal).  Its cost is bounded instead: under load the
governor keeps every piece serial, so nothing wakes the pool.

BLAS threads.  OpenBLAS's thread count is one process-wide number -- its
``openblas_set_num_threads_local`` also sets the global count (checked on 0.3.30) -- and setting
a count up to the pool's size is one store.  ``_blas._gemm`` sets it per product under a spin
lock, counts the products holding it, and the last one puts the caller's setting back: between
nnc's products and after nnc returns, SciPy and everyone else in the process see their own
setting; what nnc uses is never above what the setting was when no nnc product held it.  Without
the API (MKL, Accelerate, reference BLAS) products run with the BLAS's own setting, and
show_config says so.

The governor (``_parallel.pyx``) closes a window of >= 0.1 s whenever a thread asks for
threads after one (no background thread: it costs ~120 us per window, median, 0.1% of the time;
``--only governor``) and measures:

* other processes' CPU use, from /proc/stat (busy jiffies of our CPUs, steal included) minus this
  process's CPU time: above 0.25 of a CPU the budget drops to 1 at once; it rises again after two
  quiet windows (one, for the first window after a start or a pause).  Quiet, the reading was 0 (median), 0.09 (90th percentile), 0.15 (max) CPUs.
  With a busy-loop process on one core every workload's default-thread fit stays within a few
  percent of its one-thread time (``python benchmarks/bench_threads.py``).
* how far apart two of our threads are: 256 hand-overs of one cache line between the caller and
  a pool worker (~10-35 us).  On this VM the host now and then places the two vCPUs on distant
  cores for seconds to minutes at a time: a hand-over then takes ~158-170 ns instead of ~30-55
  ns, and synchronised 2-thread work suffers -- on 2 threads the dense fit of ``--only
  topology`` took 1.25x its one-thread time (median; up to 1.6x) against 0.61x while the cores
  were near; epochs of the benchmark's workloads on 2 threads took 1.44x (MLP), 1.80x
  (bench_cnn's CNN), 0.95x (CNN 32/64), but 0.70x (LSTM(256)) and 0.85x (LSTM(128)) of their
  one-thread time while far (``python benchmarks/bench_threads.py --phases 50 --workloads
  mnist,cnn,cnn32,lstm,lstm256``).  So above 100 ns (until a probe is back under 80 ns) the
  governor runs everything serially, and after 2 s of that it starts a trial: four windows --
  serial, parallel, serial, parallel -- compare the work done per second (every candidate
  piece's size weighted by its serial cost; a training loop's mix is steady), and the winner
  (parallel only if it did 10% more) runs until the next trial 5 s later (the gap doubles up to
  40 s while serial keeps winning by 10%: the trials' parallel windows cost what they lose).
  Measured with ``--phases 40`` (medians of the rounds; policy / one thread): near -- MLP 0.64,
  CNN 0.84, CNN 32/64 0.63, LSTM(128) 0.63, GRU(128) 0.65, LSTM(256) 0.61, MNIST-1D CNN 0.87
  (what 2 threads give); far -- 1.01, 1.04, 1.00, 0.99, 0.96, 0.72, 1.00, where 2 threads
  took 1.46, 1.89, 0.99, 0.91, 1.02, 0.72, 0.96.

With no window in the last second it starts again from 1 thread and the cores count as far until
probed, so the first ~0.2 s of work after a pause runs serially (never a loss).  The probe and
the trial can be switched off (``_parallel.set_probe(False)``) where the probe misleads.  On systems
without /proc/stat (macOS, Windows) there is no governor: the budget is the static one;
``nnc.set_config(n_threads=1)`` is the answer on a loaded machine there.

Forks: a forked child runs everything serially (pthread_atfork in _parallel and _blas): GNU
OpenMP's pool does not survive fork() (a parallel region in the child of a parent that ran one
hangs), and a child of a process pool must not add threads to its siblings'.  OpenBLAS's own
pool re-creates itself in the child.
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
