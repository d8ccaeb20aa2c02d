"""Every layer, alone and in small stacks, runs in ONNX Runtime with nnc's predictions.

Random weights (biases too) go in through ``set_weights``; ORT's output must equal
``Sequential.predict`` to 1e-5 in float32 and 1e-10 in float64, and the model must pass
``onnx.checker.check_model(full_check=True)``.  float32 uses ONNX's own Conv / AveragePool /
RNN / LSTM / GRU operators, float64 the exact decompositions (ONNX Runtime has no double
kernels for those); the decompositions also run in float32 against the same predictions.
"""
import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

import nnc                                          # noqa: E402
from nnc import Sequential                          # noqa: E402
from nnc._onnx._export import to_onnx as _to_onnx   # noqa: E402
from nnc._onnx._graph import NO_DOUBLE_KERNEL       # noqa: E402

from tests.onnx._cases import CASES, DECOMPOSED     # noqa: E402

TOL = {np.dtype(np.float32): 1e-5, np.dtype(np.float64): 1e-10}


def run_onnx(model, X):
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return sess.run(None, {"X": X})


def random_network(case, dtype, seed=0):
    """The case's network with random weights (biases too; BatchNorm's running variances drawn
    positive)."""
    make, shape, loss = CASES[case]
    net = Sequential(make(), loss=loss, input_shape=shape, dtype=dtype, random_state=seed)
    rng = np.random.RandomState(seed + 1)
    net.set_weights([[rng.uniform(0.4, 1.6, spec.shape) if spec.name == "running_var" else
                      rng.uniform(-0.6, 0.6, spec.shape) for spec in layer.param_specs()]
                     for layer in net.layers if layer.param_specs()])
    return net


def random_input(net, n, seed):
    """n samples for `net`: standard normal floats, or token ids when the first layer reads
    them."""
    rng = np.random.RandomState(seed)
    if net.input_kind == "ids":
        return rng.randint(0, net.layers[0].n_tokens, (n,) + net.input_shape).astype(np.int64)
    return rng.standard_normal((n,) + net.input_shape).astype(net.dtype)


def _routes():
    for case in sorted(CASES):
        layers = CASES[case][0]()
        yield case, "float64", False
        yield case, "float32", False
        if any(isinstance(layer, DECOMPOSED) for layer in layers):
            yield case, "float32", True


@pytest.mark.parametrize("case, dtype, decompose", list(_routes()))
def test_layer_parity(case, dtype, decompose):
    net = random_network(case, dtype)
    X = random_input(net, 6, 2)
    model = _to_onnx(net, _force_decompose=decompose)
    onnx.checker.check_model(model, full_check=True)
    (out,) = run_onnx(model, X)
    expected = net.predict(X)
    assert out.dtype == expected.dtype and out.shape == expected.shape
    tol = TOL[np.dtype(dtype)]
    np.testing.assert_allclose(out, expected, rtol=tol, atol=tol)
    ops = {node.op_type for node in model.graph.node}
    if dtype == "float64" or decompose:
        # exact decompositions, and never a float32 round trip in a float64 model
        assert not ops & NO_DOUBLE_KERNEL, ops
    if dtype == "float64":
        assert "Cast" not in ops
        assert all(t.data_type != onnx.TensorProto.FLOAT for t in model.graph.initializer)


@pytest.mark.parametrize("cls, op", [("LSTM", "LSTM"), ("GRU", "GRU"), ("SimpleRNN", "RNN")])
def test_float32_recurrent_layers_use_the_onnx_operator(cls, op):
    """The gate reordering is what is exercised: the native operator must be in the graph."""
    model = nnc.to_onnx(random_network(f"bi_{cls.lower()}_concat_seq1", "float32"))
    nodes = [n for n in model.graph.node if n.op_type == op]
    assert len(nodes) == 1
    attrs = {a.name: onnx.helper.get_attribute_value(a) for a in nodes[0].attribute}
    assert attrs["direction"] == b"bidirectional"
    if op == "GRU":
        assert attrs["linear_before_reset"] == 1


def test_bigger_batch_than_exported_with_and_one_row():
    net = random_network("rnn_stack", "float32")
    model = nnc.to_onnx(net)
    for n in (1, 300):
        X = np.random.RandomState(n).standard_normal((n,) + net.input_shape).astype(np.float32)
        np.testing.assert_allclose(run_onnx(model, X)[0], net.predict(X), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("case", ["global_avg_masked_stack", "global_max_masked_stack"])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_masked_global_pools_with_padded_tails_and_empty_rows(case, dtype):
    """The masked pools' export on padded tails, padding inside and all-padding rows (0 pooled,
    as nnc)."""
    net = random_network(case, dtype)
    X = np.array([[1, 2, 0, 0], [0, 0, 0, 0], [2, 0, 1, 0], [1, 1, 1, 2], [0, 0, 0, 2]])
    model = nnc.to_onnx(net)
    (out,) = run_onnx(model, X)
    tol = TOL[np.dtype(dtype)]
    np.testing.assert_allclose(out, net.predict(X), rtol=tol, atol=tol)
    assert "Where" in {node.op_type for node in model.graph.node}
