"""The package imports in one direction: model files (nnc._io) sit above the estimators, the
estimators above the network, the network above layers / losses / optimizers and the kernels.

Each check imports modules in a fresh interpreter where the package object ``nnc`` exists but
``nnc/__init__.py`` has not run (it imports everything, which would hide the order), and where
the modules that must sit above are blocked (``sys.modules[name] = None`` makes importing them
an ImportError).  A module that imports a blocked module at module level fails to import, and
the test names it with the traceback; imports inside functions (``Sequential.save``) do not run.
"""
import json
import os
import subprocess
import sys

import nnc

_PKG_DIR = os.path.dirname(os.path.abspath(nnc.__file__))

_PROBE = r"""
import importlib, importlib.util, json, sys, traceback
sys.path.insert(0, {root!r})
spec = importlib.util.find_spec("nnc")
sys.modules["nnc"] = importlib.util.module_from_spec(spec)   # nnc/__init__.py does not run
for name in {blocked!r}:
    sys.modules[name] = None
failed = {{}}
for name in {modules!r}:
    try:
        importlib.import_module(name)
    except ImportError as exc:   # the chain of nnc's own modules that led to it
        frames = [f for f in traceback.extract_tb(exc.__traceback__)
                  if f.filename.startswith({pkg!r})]
        failed[name] = "".join(traceback.format_list(frames)) + repr(exc)
print(json.dumps(failed))
"""


def _modules():
    """Dotted names of nnc's Python modules and subpackages (not nnc itself)."""
    names = []
    for folder, dirs, files in os.walk(_PKG_DIR):
        dirs[:] = sorted(d for d in dirs if d != "__pycache__")
        rel = os.path.relpath(folder, os.path.dirname(_PKG_DIR)).split(os.sep)
        for f in sorted(files):
            if not f.endswith(".py"):
                continue
            parts = rel if f == "__init__.py" else rel + [f[:-3]]
            if parts != ["nnc"]:
                names.append(".".join(parts))
    return names


def _import_with_blocked(modules, blocked):
    code = _PROBE.format(root=os.path.dirname(_PKG_DIR), pkg=_PKG_DIR, blocked=list(blocked),
                         modules=list(modules))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


def _in(name, package):
    return name == package or name.startswith(package + ".")


def test_module_list_covers_the_package():
    names = _modules()
    for expected in ("nnc._io", "nnc._network", "nnc._estimators", "nnc._estimators._base",
                     "nnc.layers", "nnc.optimizers", "nnc.losses"):
        assert expected in names


def test_nothing_imports_model_files_at_module_level():
    modules = [m for m in _modules() if m != "nnc._io"]
    failed = _import_with_blocked(modules, ["nnc._io"])
    assert not failed, ("these modules import nnc._io at module level (model files must sit "
                        "above what they save; import it inside the function that saves):\n"
                        + "\n".join(f"{k}:\n{v}" for k, v in failed.items()))


def test_network_and_below_do_not_import_the_estimators():
    modules = [m for m in _modules() if not (_in(m, "nnc._io") or _in(m, "nnc._estimators"))]
    assert "nnc._network" in modules and "nnc.layers" in modules
    failed = _import_with_blocked(modules, ["nnc._io", "nnc._estimators"])
    assert not failed, ("these modules import the estimators at module level (the network, "
                        "layers, losses and optimizers sit below them):\n"
                        + "\n".join(f"{k}:\n{v}" for k, v in failed.items()))

