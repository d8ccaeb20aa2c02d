"""The ONNX export's contract around its registry and API (most of it needs no onnx).

Every public layer class has an exporter and a parity case; importing nnc imports no onnx; a
missing onnx names the extra; layers without an exporter, unbuilt networks, unfitted or foreign
models and bad opsets give clear errors; ``path`` writes the same model.
"""
import subprocess
import sys

import numpy as np
import pytest

import nnc
import nnc.layers as L
from nnc import Sequential
from nnc._onnx import _layers
from nnc.layers._base import Layer

from tests.onnx._cases import CASES


def _public_layer_classes():
    return [getattr(L, name) for name in L.__all__
            if isinstance(getattr(L, name), type) and issubclass(getattr(L, name), Layer)
            and getattr(L, name) is not Layer]


def test_every_public_layer_has_an_exporter():
    missing = [cls.__name__ for cls in _public_layer_classes()
               if cls not in _layers.registered_classes()]
    assert not missing, (f"layers without an ONNX exporter: {missing}; add one in "
                         "nnc/_onnx/_layers.py (see its docstring)")


def test_every_public_layer_has_a_parity_case():
    covered = set()
    for make, _, _ in CASES.values():
        for layer in make():
            covered.add(type(layer))
            if isinstance(layer, L.Bidirectional):
                covered.add(type(layer.forward_layer))
    missing = [cls.__name__ for cls in _public_layer_classes() if cls not in covered]
    assert not missing, f"add ONNX parity cases to tests/onnx/_cases.py for: {missing}"


def test_a_layer_without_exporter_is_named():
    class MyDense(L.Dense):
        pass

    net = Sequential([L.Dense(3), MyDense(2)], input_shape=(4,))
    with pytest.raises(TypeError, match=r"cannot export MyDense \(layer 1\)"):
        _layers.get_exporter(net.layers[1], 1)


def test_importing_nnc_does_not_import_onnx():
    code = ("import sys, nnc; nnc.to_onnx; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in "
            "('onnx', 'onnxruntime', 'skl2onnx') or m.startswith('nnc._onnx')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "[]"


@pytest.mark.parametrize("call", ["to_onnx", "register_skl2onnx"])
def test_missing_onnx_names_the_extra(monkeypatch, call):
    monkeypatch.setitem(sys.modules, "onnx", None)      # import onnx -> ImportError
    net = Sequential([L.Dense(2)], input_shape=(3,))
    with pytest.raises(ImportError, match=r'pip install "nnc\[onnx\]"'):
        nnc.to_onnx(net) if call == "to_onnx" else nnc.register_skl2onnx()


# ------------------------------------------------------------------ with onnx installed
def test_bad_models_and_opsets():
    onnx = pytest.importorskip("onnx")
    with pytest.raises(ValueError, match="not built"):
        nnc.to_onnx(Sequential([L.Dense(2)]))
    from nnc._compat import NotFittedError
    with pytest.raises(NotFittedError):
        nnc.to_onnx(nnc.MLPClassifier())
    with pytest.raises(TypeError, match="fitted nnc estimator or a built nnc.Sequential"):
        nnc.to_onnx(object())
    net = Sequential([L.Dense(2)], input_shape=(3,))
    with pytest.raises(ValueError, match="opset 12 is too old"):
        nnc.to_onnx(net, opset=12)
    with pytest.raises(TypeError, match="opset must be an int"):
        nnc.to_onnx(net, opset="17")
    with pytest.raises(ValueError, match="newer than the installed onnx"):
        nnc.to_onnx(net, opset=onnx.defs.onnx_opset_version() + 1)
    with pytest.raises(TypeError, match=r"cannot export .*MyTanh \(layer 1\)"):
        class MyTanh(L.Tanh):
            pass
        nnc.to_onnx(Sequential([L.Dense(2), MyTanh()], input_shape=(3,)))


@pytest.mark.parametrize("opset", [None, 13, 21])
def test_opsets_and_path(tmp_path, opset):
    onnx = pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    net = Sequential([L.Conv1D(2, 3), L.Flatten(), L.Dense(3)], loss="softmax_cross_entropy",
                     input_shape=(2, 6), dtype="float32", random_state=0)
    path = tmp_path / "model.onnx"
    model = nnc.to_onnx(net, path, opset=opset)
    assert [o.version for o in model.opset_import] == [17 if opset is None else opset]
    assert model.producer_name == "nnc"
    loaded = onnx.load(str(path))
    assert loaded.SerializeToString() == model.SerializeToString()
    onnx.checker.check_model(str(path), full_check=True)
    X = np.random.RandomState(0).standard_normal((4, 2, 6)).astype(np.float32)
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    np.testing.assert_allclose(sess.run(None, {"X": X})[0], net.predict(X), rtol=1e-5,
                               atol=1e-5)
    assert [p.name for p in tmp_path.iterdir()] == ["model.onnx"]   # no temporary file left


def test_a_first_layer_declares_the_input_dtype(monkeypatch):
    """Layers reading integer ids (embeddings) type the graph input through ``input_dtype``."""
    onnx = pytest.importorskip("onnx")

    class FloatIds(L.Identity):
        """Stand-in for an id-reading first layer: its exporter casts the ids to the dtype."""

    def export(g, layer, x):
        return g.op("Cast", [x], "ids_as_float",
                    to=onnx.helper.np_dtype_to_tensor_dtype(g.dtype))

    monkeypatch.setitem(_layers._EXPORTERS, FloatIds,
                        _layers.LayerExporter(export, lambda layer, dtype: np.int64))
    net = Sequential([FloatIds(), L.Dense(2)], input_shape=(3,), random_state=0)
    model = nnc.to_onnx(net)
    onnx.checker.check_model(model, full_check=True)
    assert model.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.INT64
    ort = pytest.importorskip("onnxruntime")
    ids = np.array([[0, 1, 2], [3, 4, 5]], dtype=np.int64)
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    np.testing.assert_allclose(sess.run(None, {"X": ids})[0], net.predict(ids.astype(float)),
                               rtol=1e-12)
