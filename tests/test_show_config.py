"""nnc.show_config() and nnc.__version__."""
import io
import re
import sys

import numpy as np
import pytest
import scipy

import nnc
from nnc import _config
from nnc._kernels import _openmp_helpers


def _shown(**kw):
    buf = io.StringIO()
    nnc.show_config(file=buf, **kw)
    return buf.getvalue()


def test_version_is_single_sourced():
    from nnc._version import __version__
    assert nnc.__version__ == __version__
    assert re.fullmatch(r"\d+\.\d+\.\d+([ab]\d+|rc\d+|\.dev\d+)?", nnc.__version__)
    tomllib = pytest.importorskip("tomllib")
    import os
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    with open(os.path.join(root, "pyproject.toml"), "rb") as fh:
        project = tomllib.load(fh)
    assert "version" in project["project"]["dynamic"]
    assert project["tool"]["setuptools"]["dynamic"]["version"] == \
        {"attr": "nnc._version.__version__"}


def test_show_config_prints_versions_blas_and_threads(capsys):
    nnc.show_config()
    out = capsys.readouterr().out
    assert f"nnc: {nnc.__version__}" in out
    assert f"numpy: {np.__version__}" in out
    assert f"scipy: {scipy.__version__}" in out
    assert f"python: {sys.version.split()[0]}" in out
    assert "OpenMP:" in out and "BLAS" in out
    assert f"enabled: {_openmp_helpers.openmp_enabled()}" in out
    assert f"max threads: {_openmp_helpers.omp_max_threads()}" in out


def test_show_config_file_argument_and_info_dict():
    out = _shown()
    assert out.startswith("System:")
    info = _config.config_info()
    assert info["versions"]["nnc"] == nnc.__version__
    assert info["openmp"]["openmp_enabled"] is bool(_openmp_helpers.openmp_enabled())
    assert info["openmp"]["omp_max_threads"] >= 1
    assert isinstance(info["blas"], list)


def test_with_threadpoolctl_lists_scipy_blas():
    pytest.importorskip("threadpoolctl")
    info = _config.config_info()
    assert info["threadpools"] is not None
    assert info["blas"], "threadpoolctl found no BLAS although scipy.linalg is loaded"
    assert all(entry["source"] == "threadpoolctl" for entry in info["blas"])
    assert all(entry["num_threads"] >= 1 for entry in info["blas"])
    out = _shown()
    assert "num_threads=" in out


def test_without_threadpoolctl_falls_back_to_build_info(monkeypatch):
    monkeypatch.setitem(sys.modules, "threadpoolctl", None)  # import now raises ImportError
    info = _config.config_info()
    assert info["threadpools"] is None
    assert info["versions"]["threadpoolctl"] is None
    assert all(entry["source"].endswith(".show_config") for entry in info["blas"])
    out = _shown()
    assert "threadpoolctl: not installed" in out
    assert "Other thread pools" not in out


def test_without_cython(monkeypatch):
    monkeypatch.setitem(sys.modules, "Cython", None)
    out = _shown()
    assert "Cython: not installed" in out


def test_environment_variables_shown(monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert "OMP_NUM_THREADS=1" in _shown()


def test_scipy_path_detection():
    assert _config._is_scipy_path("/x/site-packages/scipy.libs/libscipy_openblas-1.so")
    assert _config._is_scipy_path("/x/site-packages/scipy/.dylibs/libopenblas.dylib")
    assert not _config._is_scipy_path("/x/site-packages/numpy.libs/libscipy_openblas64_.so")
    assert not _config._is_scipy_path(None)
