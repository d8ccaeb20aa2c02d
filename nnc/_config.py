"""show_config: versions, the BLAS nnc's kernels call, OpenMP and thread counts, for bug reports.

nnc's GEMMs go through ``scipy.linalg.cython_blas``, so "the BLAS in use" is SciPy's BLAS (NumPy may
load a second one).  threadpoolctl is optional: with it, every loaded BLAS / OpenMP runtime is
listed with its thread count; without it, the BLAS names come from ``numpy.show_config`` /
``scipy.show_config`` (build-time information, best effort).
"""
import importlib
import os
import platform
import sys


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


def config_info():
    """The facts ``show_config`` prints, as a dict (for programs and tests).

    Keys: ``"python"``, ``"platform"``, ``"versions"`` (name → version or None), ``"openmp"``
    (``openmp_enabled``, ``omp_max_threads``), ``"blas"`` (list of dicts, one per loaded BLAS when
    threadpoolctl is installed, else the build-time names), ``"threadpools"`` (threadpoolctl's full
    list or None), ``"env"`` (thread-related environment variables that are set).
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
            "env": env}


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
    if info["env"]:
        lines += ["", "Environment:"]
        lines += [f"    {k}={v}" for k, v in info["env"].items()]
    print("\n".join(lines), file=out)
