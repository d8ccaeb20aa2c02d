"""nnc's configuration: ``set_config`` / ``get_config`` / ``config_context`` (scikit-learn's
pattern, per thread) and ``show_config`` (versions, the BLAS nnc's kernels call, OpenMP, and the
thread policy's view, for bug reports).

Configuration keys (``get_config()`` returns them as a dict):

* ``n_threads``: at most this many threads per nnc call made from this thread (``None``: no cap
  beyond the thread policy's, see nnc/_threads.py; any positive int, clamped to the CPUs nnc
  may use);
* ``fast_path``: use the compiled whole-epoch loop and one-call forward pass for dense networks
  (nnc/_mlp_fast.py); ``NNC_DISABLE_FAST_PATH=1`` in the environment sets the initial value to
  False (read once, when nnc is imported).

As in scikit-learn, the values live per thread: ``set_config`` and ``config_context`` change the
calling thread's configuration; every other thread (and every thread started later) starts from
the defaults.  The hot paths read them as one attribute of a ``threading.local`` (~50 ns, as
cheap as the environment lookup it replaced).

``show_config``: nnc's GEMMs go through ``scipy.linalg.cython_blas``, so "the BLAS in use" is
SciPy's BLAS (NumPy may load a second one).  threadpoolctl is optional: with it, every loaded BLAS
/ OpenMP runtime is listed with its thread count; without it, the BLAS names come from
``numpy.show_config`` / ``scipy.show_config`` (build-time information, best effort).
"""
import contextlib
import importlib
import numbers
import os
import platform
import sys
import threading

from nnc._kernels import _parallel

__all__ = ["set_config", "get_config", "config_context", "show_config", "config_info"]

_FAST_PATH_DEFAULT = os.environ.get("NNC_DISABLE_FAST_PATH", "0") in ("", "0")
_UNCHANGED = object()
_INT_MAX = 2 ** 31 - 1


class _ThreadConfig(threading.local):
    """The calling thread's configuration (each thread starts from the defaults)."""

    def __init__(self):
        self.n_threads = None
        self.fast_path = _FAST_PATH_DEFAULT


#: read by the hot paths (``_LOCAL.fast_path``) and by nnc._threads
_LOCAL = _ThreadConfig()


def get_config():
    """The calling thread's nnc configuration.

    Returns
    -------
    config : dict
        ``{"n_threads": int or None, "fast_path": bool}`` (see ``set_config``).
    """
    return {"n_threads": _LOCAL.n_threads, "fast_path": _LOCAL.fast_path}


def _check_n_threads(n_threads):
    if n_threads is None:
        return None
    if isinstance(n_threads, bool) or not isinstance(n_threads, numbers.Integral):
        raise TypeError(f"n_threads must be None or a positive int, got "
                        f"{type(n_threads).__name__} {n_threads!r}")
    if n_threads < 1:
        raise ValueError(f"n_threads must be None or a positive int, got {n_threads}")
    return int(n_threads)


def set_config(n_threads=_UNCHANGED, fast_path=_UNCHANGED):
    """Set nnc's configuration for the calling thread (scikit-learn's ``set_config`` pattern).

    Parameters
    ----------
    n_threads : int or None, optional
        At most this many threads for each nnc call made from this thread: OpenMP regions of the
        kernels and the BLAS products nnc issues.  ``None`` removes the cap (the default: the
        thread policy of nnc/_threads.py decides from the size of each piece of work, the CPUs
        nnc may use, ``OMP_NUM_THREADS`` / threadpoolctl limits and the machine's load).  Values
        above the CPU count are clamped.
    fast_path : bool, optional
        Use the compiled whole-epoch training loop and forward pass for dense networks.

    Arguments left out keep their current value.

    Examples
    --------
    >>> import nnc
    >>> nnc.set_config(n_threads=1)
    >>> nnc.get_config()["n_threads"]
    1
    >>> nnc.set_config(n_threads=None)
    """
    if n_threads is not _UNCHANGED:
        n_threads = _check_n_threads(n_threads)
    if fast_path is not _UNCHANGED and not isinstance(fast_path, (bool, int)):
        raise TypeError(f"fast_path must be a bool, got {type(fast_path).__name__}")
    if n_threads is not _UNCHANGED:
        _LOCAL.n_threads = n_threads
        _parallel.set_local_cap(0 if n_threads is None else min(n_threads, _INT_MAX))
    if fast_path is not _UNCHANGED:
        _LOCAL.fast_path = bool(fast_path)


@contextlib.contextmanager
def config_context(n_threads=_UNCHANGED, fast_path=_UNCHANGED):
    """Temporarily change nnc's configuration for the calling thread.

    Parameters are those of ``set_config``; the previous values come back when the block exits
    (also on an exception).

    Examples
    --------
    >>> import nnc
    >>> with nnc.config_context(n_threads=1):
    ...     nnc.get_config()["n_threads"]
    1
    """
    old = get_config()
    set_config(n_threads=n_threads, fast_path=fast_path)
    try:
        yield
    finally:
        set_config(**old)


def _module_version(name):
    """The module's __version__, or None when it is not importable."""
    try:
        mod = importlib.import_module(name)
    except Exception:  # any failure (ImportError, broken install) means "not available"
        return None
    return getattr(mod, "__version__", "unknown")


def _build_blas(module_name):
    """BLAS name and version recorded when `module_name` (numpy or scipy) was built, or None."""
    try:
        mod = importlib.import_module(module_name)
        info = mod.show_config(mode="dicts")
        blas = info["Build Dependencies"]["blas"]
    except Exception:  # old numpy/scipy without mode='dicts', or an unexpected layout
        return None
    name = blas.get("name", "unknown")
    version = blas.get("version")
    return f"{name} {version}" if version else str(name)


def _is_scipy_path(path):
    """True when a library path lies in SciPy's bundled-libraries folder (scipy.libs, .dylibs)."""
    parts = os.path.normpath(path or "").split(os.sep)
    return any(part == "scipy" or part.startswith("scipy.") for part in parts[:-1])


def _threadpool_info():
    """threadpoolctl's list of loaded BLAS / OpenMP libraries, or None without threadpoolctl."""
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return None
    # make sure SciPy's BLAS (the one nnc calls) and nnc's OpenMP runtime are loaded
    try:
        import scipy.linalg.cython_blas  # noqa: F401
        import nnc._kernels._blas  # noqa: F401
        import nnc._kernels._openmp_helpers  # noqa: F401
    except ImportError:  # pragma: no cover - broken install; report what is loaded
        pass
    try:
        return threadpool_info()
    except Exception:  # pragma: no cover - threadpoolctl failing must not break show_config
        return None


def _openmp_info():
    try:
        from nnc._kernels import _openmp_helpers
    except ImportError as exc:
        return {"openmp_enabled": None, "omp_max_threads": None, "error": str(exc)}
    return {"openmp_enabled": bool(_openmp_helpers.openmp_enabled()),
            "omp_max_threads": int(_openmp_helpers.omp_max_threads())}


def _threads_info():
    try:
        from nnc import _threads
        return _threads.info()
    except Exception as exc:  # pragma: no cover - show_config must not fail
        return {"error": str(exc)}


def config_info():
    """The facts ``show_config`` prints, as a dict (for programs and tests).

    Keys: ``"python"``, ``"platform"``, ``"versions"`` (name → version or None), ``"openmp"``
    (``openmp_enabled``, ``omp_max_threads``), ``"blas"`` (list of dicts, one per loaded BLAS when
    threadpoolctl is installed, else the build-time names), ``"threadpools"`` (threadpoolctl's full
    list or None), ``"env"`` (thread-related environment variables that are set), ``"threads"``
    (the thread policy's view: ``nnc._threads.info()``), ``"config"`` (``get_config()``).
    """
    from nnc._version import __version__
    versions = {"nnc": __version__}
    for name in ("numpy", "scipy", "Cython", "threadpoolctl", "sklearn", "matplotlib"):
        versions[name] = _module_version(name)
    pools = _threadpool_info()
    if pools is not None:
        blas = [{"source": "threadpoolctl",
                 "internal_api": p.get("internal_api"),
                 "version": p.get("version"),
                 "num_threads": p.get("num_threads"),
                 "threading_layer": p.get("threading_layer"),
                 "architecture": p.get("architecture"),
                 "filepath": p.get("filepath"),
                 "used_by_nnc": _is_scipy_path(p.get("filepath"))}
                for p in pools if p.get("user_api") == "blas"]
    else:
        blas = []
        for module_name in ("scipy", "numpy"):
            name = _build_blas(module_name)
            if name is not None:
                blas.append({"source": f"{module_name}.show_config", "internal_api": name,
                             "used_by_nnc": module_name == "scipy"})
    env = {k: os.environ[k] for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
           if k in os.environ}
    return {"python": sys.version.replace("\n", " "),
            "executable": sys.executable,
            "platform": platform.platform(),
            "cpu_count": os.cpu_count(),
            "versions": versions,
            "openmp": _openmp_info(),
            "blas": blas,
            "threadpools": pools,
            "env": env,
            "threads": _threads_info(),
            "config": get_config()}


def show_config(file=None):
    """Print nnc's configuration: versions, BLAS, OpenMP and thread counts.

    Parameters
    ----------
    file : writable text stream, default sys.stdout

    Examples
    --------
    >>> import nnc
    >>> nnc.show_config()  # doctest: +SKIP
    """
    info = config_info()
    out = sys.stdout if file is None else file
    lines = ["System:",
             f"    python: {info['python']}",
             f"executable: {info['executable']}",
             f"   machine: {info['platform']} ({info['cpu_count']} CPUs)",
             "",
             "Python dependencies:"]
    for name, version in info["versions"].items():
        lines.append(f"{name:>13}: {version if version is not None else 'not installed'}")
    omp = info["openmp"]
    lines += ["", "OpenMP:",
              f"      enabled: {omp['openmp_enabled']}",
              f"  max threads: {omp['omp_max_threads']}"]
    if omp.get("error"):
        lines.append(f"        error: {omp['error']}")
    lines += ["", "BLAS (nnc's kernels call SciPy's BLAS through scipy.linalg.cython_blas):"]
    if not info["blas"]:
        lines.append("    unknown (install threadpoolctl for details)")
    for entry in info["blas"]:
        tag = "  <- used by nnc" if entry.get("used_by_nnc") else ""
        if entry["source"] == "threadpoolctl":
            lines.append(f"    {entry['internal_api']} {entry['version']} "
                         f"({entry['threading_layer']}, {entry['architecture']}), "
                         f"num_threads={entry['num_threads']}{tag}")
            lines.append(f"        {entry['filepath']}")
        else:
            lines.append(f"    {entry['internal_api']} (from {entry['source']}; install "
                         f"threadpoolctl for thread counts){tag}")
    if info["threadpools"] is not None:
        others = [p for p in info["threadpools"] if p.get("user_api") != "blas"]
        if others:
            lines += ["", "Other thread pools (threadpoolctl):"]
            for p in others:
                lines.append(f"    {p.get('user_api')}: {p.get('internal_api')} "
                             f"{p.get('version')}, num_threads={p.get('num_threads')}")
                lines.append(f"        {p.get('filepath')}")
    lines += ["", "Threads (nnc's policy, nnc/_threads.py; this thread's view):"]
    lines += _threads_lines(info["threads"], info["config"])
    if info["env"]:
        lines += ["", "Environment:"]
        lines += [f"    {k}={v}" for k, v in info["env"].items()]
    print("\n".join(lines), file=out)


def _threads_lines(t, config):
    if "error" in t:
        return [f"        error: {t['error']}"]
    gov = t["governor"]
    if not gov["available"]:
        gov_text = "unavailable (needs Linux /proc/stat): the budget ignores other processes"
    elif not gov["on"]:
        gov_text = "switched off"
    elif gov["others"] is None:
        gov_text = f"budget {gov['budget']} (no recent window: starts from 1 thread)"
    else:
        gov_text = (f"budget {gov['budget']}: other processes used {gov['others']:.2f} CPUs "
                    f"in the last {gov['window']:.1f} s window")
        if gov["latency_ns"] is not None:
            gov_text += (f"; cores {gov['latency_ns']:.0f} ns apart"
                         + (" (far: serial)" if gov["far"] else ""))
    if t["blas_control"]:
        blas_text = (f"set per product by nnc ({t['blas_api']}; the caller's setting now: "
                     f"{t['blas_threads']})")
    else:
        blas_text = ("the BLAS's own setting (no OpenBLAS thread API found in the BLAS SciPy "
                     "calls)")
    thr = t["thresholds"]
    lines = [f"       budget: {t['budget']} thread(s) for work above the thresholds"
             + ("  (forked child: serial)" if t["forked_child"] else ""),
             f"    n_threads: {config['n_threads']} (nnc.set_config / config_context)",
             f"         CPUs: {t['cpus']} usable ({t['affinity_cpus']} in the affinity set)",
             f"     governor: {gov_text}",
             f" BLAS threads: {blas_text}"]
    if t.get("blas_library"):
        lines.append(f"               {t['blas_library']}")
    where = {"blas pool": "the BLAS's thread pool (one set of workers for loops and GEMMs)",
             "openmp": "an OpenMP team", "serial": "the calling thread only (no OpenMP)"}
    lines.append(f" loop threads: {where.get(t['loops_run_on'], t['loops_run_on'])}")
    lines.append("   thresholds: " + ", ".join(
        f"{k} {v:,.0f}" for k, v in thr.items()) + "  (1 thread below)")
    lines.append(f"    fast path: {config['fast_path']}")
    return lines
