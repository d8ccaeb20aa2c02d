"""skl2onnx converts scikit-learn pipelines that hold nnc estimators (after
``nnc.register_skl2onnx()``), with the estimators' own predictions."""
import warnings

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
skl2onnx = pytest.importorskip("skl2onnx")
pytest.importorskip("sklearn")

from sklearn.pipeline import Pipeline                     # noqa: E402
from sklearn.preprocessing import StandardScaler          # noqa: E402

import nnc                                                # noqa: E402
from nnc.layers import Conv2D, Flatten, GRU, ReLU        # noqa: E402


@pytest.fixture(scope="module", autouse=True)
def registered():
    nnc.register_skl2onnx()
    nnc.register_skl2onnx()           # idempotent


def fit(est, X, y):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return est.fit(X, y)


def run(model, X):
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return dict(zip([o.name for o in sess.get_outputs()],
                    sess.run(None, {sess.get_inputs()[0].name: X})))


def data(n=50, f=64, seed=0):
    return np.random.RandomState(seed).standard_normal((n, f)) * 3 + 1


@pytest.mark.parametrize("model_dtype", ["float32", "float64"])
@pytest.mark.parametrize("input_dtype", [np.float32, np.float64])
def test_pipeline_with_mlp_classifier(model_dtype, input_dtype):
    X = data().astype(input_dtype)
    y = np.array(["low", "mid", "high"])[np.arange(50) % 3]
    pipe = fit(Pipeline([("scale", StandardScaler()),
                         ("mlp", nnc.MLPClassifier((8,), max_iter=20, random_state=0,
                                                   dtype=model_dtype))]), X, y)
    model = skl2onnx.to_onnx(pipe, X[:1], options={"zipmap": False})
    onnx.checker.check_model(model, full_check=True)
    out = run(model, X)
    np.testing.assert_array_equal(out["label"].astype(str), pipe.predict(X))
    # skl2onnx types the probabilities after the pipeline's input; the scaler runs in the
    # input type, so a float32 pipeline feeds a float64 model slightly different numbers
    tol = 1e-4 if input_dtype == np.float32 else (1e-5 if model_dtype == "float32" else 1e-10)
    assert out["probabilities"].dtype == input_dtype
    np.testing.assert_allclose(out["probabilities"], pipe.predict_proba(X), rtol=tol, atol=tol)


def test_pipeline_default_zipmap():
    X = data()
    y = np.arange(50) % 2
    pipe = fit(Pipeline([("scale", StandardScaler()),
                         ("mlp", nnc.MLPClassifier((4,), max_iter=20, random_state=0))]), X, y)
    model = skl2onnx.to_onnx(pipe, X[:1].astype(np.float32))
    out = run(model, X.astype(np.float32))
    (label_name, proba_name) = out
    np.testing.assert_array_equal(out[label_name], pipe.predict(X.astype(np.float32)))
    expected = pipe.predict_proba(X.astype(np.float32))
    got = np.array([[row[c] for c in (0, 1)] for row in out[proba_name]])
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)


def test_pipeline_with_neural_net_cnn_and_regressors():
    X = data()
    y = np.arange(50) % 3
    cnn = fit(Pipeline([("scale", StandardScaler()), (
        "cnn", nnc.NeuralNetClassifier([Conv2D(2, 3), ReLU(), Flatten()], input_shape=(1, 8, 8),
                                       max_epochs=2, random_state=0, dtype="float64"))]), X, y)
    out = run(skl2onnx.to_onnx(cnn, X[:1], options={"zipmap": False}), X)
    np.testing.assert_array_equal(out["label"], cnn.predict(X))
    np.testing.assert_allclose(out["probabilities"], cnn.predict_proba(X), rtol=1e-10,
                               atol=1e-10)

    rnn = fit(Pipeline([("scale", StandardScaler()), (
        "rnn", nnc.NeuralNetRegressor([GRU(3)], input_shape=(8, 8), max_epochs=2,
                                      random_state=0, dtype="float64"))]), X, y * 1.0)
    out = run(skl2onnx.to_onnx(rnn, X[:1]), X)
    (values,) = out.values()
    np.testing.assert_allclose(values, rnn.predict(X), rtol=1e-10, atol=1e-10)

    Y = np.c_[y, -y] * 1.0
    mlp = fit(Pipeline([("scale", StandardScaler()), (
        "mlp", nnc.MLPRegressor(hidden_layer_sizes=(5,), max_iter=20, random_state=0,
                                dtype="float32"))]), X, Y)
    (values,) = run(skl2onnx.to_onnx(mlp, X[:1]), X).values()
    assert values.shape == (50, 2) and values.dtype == np.float64
    np.testing.assert_allclose(values, mlp.predict(X), rtol=1e-5, atol=1e-5)
