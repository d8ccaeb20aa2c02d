"""ONNX export of nnc models (``nnc.to_onnx``) and skl2onnx converters (``nnc.register_skl2onnx``).

Modules: ``_graph.py`` the graph builder and its two destinations (a standalone model, a
skl2onnx container); ``_layers.py`` the registry with one exporter per layer class; ``_heads.py``
the estimators' output heads; ``_export.py`` ``to_onnx`` itself; ``_skl2onnx.py`` the converters
registered with skl2onnx.  Every module imports without onnx installed (the optional
dependencies are imported when an export runs), and ``import nnc`` imports none of them.
"""

_EXTRA_HINT = 'install the optional ONNX dependencies with: pip install "nnc[onnx]"'


def require(module):
    """Import an optional dependency of the ONNX export, or ImportError naming the extra."""
    import importlib
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise ImportError(f"nnc's ONNX export needs the '{module}' package, which is not "
                          f"installed; {_EXTRA_HINT}") from exc


def to_onnx(model, path=None, *, opset=None):
    require("onnx")
    from nnc._onnx._export import to_onnx as _to_onnx
    return _to_onnx(model, path, opset=opset)


def register_skl2onnx():
    require("onnx")
    require("skl2onnx")
    from nnc._onnx._skl2onnx import register
    register()
