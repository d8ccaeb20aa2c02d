"""Build script: the one list of compiled modules and the one place compiler directives are set.

Every ``nnc/_kernels/*.pyx`` is an extension module.  Environment switches:

* ``NNC_DEBUG=1``     bounds, wraparound, initialized and None checks back on (the debug CI pass);
* ``NNC_NO_OPENMP=1`` build without OpenMP (nnc's own parallel passes then run serially, BLAS
  products still get the policy's threads; ``_openmp.pxd`` / ``_parallel.pyx`` have fallbacks);
* ``NNC_ONLY=_conv,_pool`` (developers) build only the named kernel modules, for quick rebuilds.
"""
import os
import sys
import glob
import tempfile
import subprocess

import numpy as np
from setuptools import setup, Extension
from setuptools.command.build_ext import build_ext
from Cython.Build import cythonize

DEBUG = os.environ.get("NNC_DEBUG", "0") not in ("", "0")


def _openmp_flags():
    """Return (compile_args, link_args) for OpenMP when the compiler accepts them, else empty lists."""
    if os.environ.get("NNC_NO_OPENMP", "0") not in ("", "0"):
        return [], []
    if sys.platform == "win32":
        return ["/openmp"], []
    cc = os.environ.get("CC", "cc")
    with tempfile.TemporaryDirectory() as tmp:
        src = os.path.join(tmp, "omp.c")
        with open(src, "w") as fh:
            fh.write("#include <omp.h>\nint main(void){return omp_get_max_threads() > 0 ? 0 : 1;}\n")
        try:
            ok = subprocess.run([cc, "-fopenmp", src, "-o", os.path.join(tmp, "omp")],
                                capture_output=True).returncode == 0
        except OSError:
            ok = False
    return (["-fopenmp"], ["-fopenmp"]) if ok else ([], [])


omp_compile, omp_link = _openmp_flags()
if sys.platform == "win32":
    opt = ["/Od"] if DEBUG else ["/O2"]
else:
    # the bounds-checked build stays optimised so the whole suite still runs in minutes
    # -fno-math-errno lets sqrt vectorise (nothing in nnc reads errno): one AdaGrad, RMSprop or
    # Adam step over 1e4 parameters takes 6.7 us in float32 and 19.5 us in float64, against 24 us
    # and 38 us when built without the flag (1 thread, AMD EPYC; the optimizer table of
    # `python benchmarks/bench_elementwise.py`, run once per build).
    opt = (["-O1", "-g0"] if DEBUG else ["-O3", "-g0"]) + ["-fno-math-errno"]

directives = {
    "language_level": 3,
    "boundscheck": DEBUG,
    "wraparound": DEBUG,
    "initializedcheck": DEBUG,
    "nonecheck": DEBUG,
    "cdivision": True,
    "embedsignature": True,
}

extensions = [
    Extension(
        "nnc._kernels." + os.path.splitext(os.path.basename(path))[0],
        [path],
        include_dirs=[np.get_include()],
        define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_9_API_VERSION")],
        extra_compile_args=opt + omp_compile,
        extra_link_args=omp_link,
    )
    for path in sorted(glob.glob(os.path.join("nnc", "_kernels", "*.pyx")))
]
if os.environ.get("NNC_ONLY"):
    _only = set(os.environ["NNC_ONLY"].split(","))
    extensions = [e for e in extensions if e.name.rsplit(".", 1)[1] in _only]

class parallel_build_ext(build_ext):
    """Compile the extension modules in parallel by default (a full build: ~120 s → ~65 s on 2 cores)."""

    def finalize_options(self):
        super().finalize_options()
        if self.parallel is None:
            self.parallel = os.cpu_count() or 1


# cythonize regenerates a .c only when its .pyx is newer, so switching between the normal and the
# bounds-checked build must force it; the last mode is remembered in build/nnc_build_mode.
_MODE_FILE = os.path.join("build", "nnc_build_mode")
_mode = "debug" if DEBUG else "release"
try:
    with open(_MODE_FILE) as fh:
        _force = fh.read().strip() != _mode
except OSError:
    _force = True
os.makedirs("build", exist_ok=True)
with open(_MODE_FILE, "w") as fh:
    fh.write(_mode)

setup(
    cmdclass={"build_ext": parallel_build_ext},
    ext_modules=cythonize(
        extensions,
        compiler_directives=directives,
        nthreads=os.cpu_count() or 1,
        force=_force,
    ),
)
