"""Every estimator kind runs in ONNX Runtime with its own predict / predict_proba.

Short fits on small random problems (the weights only need to be trained, not good); labels
must equal ``predict`` exactly (string, int, bool, float classes; the multilabel indicator) and
probabilities / values equal ``predict_proba`` / ``predict`` to 1e-5 (float32) / 1e-10 (float64).
"""
import warnings

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

import nnc                                                       # noqa: E402
from nnc import (MLPClassifier, MLPRegressor, NeuralNetClassifier,  # noqa: E402
                 NeuralNetRegressor)
from nnc.layers import (GRU, LSTM, AvgPool2D, Bidirectional, Conv2D, Dense,  # noqa: E402
                        Flatten, MaxPool2D, ReLU)

TOL = {np.dtype(np.float32): 1e-5, np.dtype(np.float64): 1e-10}


def run_onnx(model, X):
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    names = [o.name for o in sess.get_outputs()]
    return dict(zip(names, sess.run(None, {"X": X})))


def fit_quietly(est, X, y):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")       # ConvergenceWarning of the short fits
        return est.fit(X, y)


def check_classifier(est, X):
    model = nnc.to_onnx(est)
    onnx.checker.check_model(model, full_check=True)
    assert [o.name for o in model.graph.output] == ["label", "probabilities"]
    X = X.astype(est.network_.dtype)
    out = run_onnx(model, X)
    expected_label = est.predict(X)
    label = out["label"]
    if label.dtype == object:
        label = label.astype(str)
    assert label.shape == expected_label.shape
    np.testing.assert_array_equal(label, expected_label)
    proba = est.predict_proba(X)
    assert out["probabilities"].dtype == proba.dtype
    tol = TOL[proba.dtype]
    np.testing.assert_allclose(out["probabilities"], proba, rtol=tol, atol=tol)
    return out


def check_regressor(est, X):
    model = nnc.to_onnx(est)
    onnx.checker.check_model(model, full_check=True)
    assert [o.name for o in model.graph.output] == ["variable"]
    X = X.astype(est.network_.dtype)
    out = run_onnx(model, X)["variable"]
    expected = est.predict(X)
    assert out.shape == expected.shape and out.dtype == expected.dtype
    tol = TOL[expected.dtype]
    np.testing.assert_allclose(out, expected, rtol=tol, atol=tol)


def tabular(n=60, f=5, seed=0):
    rng = np.random.RandomState(seed)
    return rng.standard_normal((n, f))


@pytest.fixture(params=["float32", "float64"])
def dtype(request):
    return request.param


@pytest.mark.parametrize("classes", [
    np.array(["cat", "dog"]), np.array(["ant", "bee", "cow", "doe"]), np.array([3, 7, 11]),
    np.array([False, True]), np.array([-1.0, 2.0, 4.0])], ids=["str2", "str4", "int", "bool",
                                                              "float"])
def test_mlp_classifier(classes, dtype):
    X = tabular()
    y = classes[np.random.RandomState(1).randint(0, classes.size, X.shape[0])]
    clf = fit_quietly(MLPClassifier((8,), max_iter=30, random_state=0, dtype=dtype), X, y)
    out = check_classifier(clf, X)
    if classes.dtype.kind == "U":
        assert out["label"].dtype == object        # ONNX strings
        assert set(out["label"]) <= set(classes)


def test_mlp_classifier_multilabel(dtype):
    X = tabular()
    Y = (np.random.RandomState(1).rand(X.shape[0], 3) > 0.5).astype(int)
    clf = fit_quietly(MLPClassifier((8,), activation="tanh", max_iter=30, random_state=0,
                                    dtype=dtype), X, Y)
    out = check_classifier(clf, X)
    assert out["label"].dtype == np.int64 and out["label"].shape == (X.shape[0], 3)


@pytest.mark.parametrize("loss, n_outputs", [("squared_error", 1), ("squared_error", 3),
                                             ("poisson", 2)])
def test_mlp_regressor(loss, n_outputs, dtype):
    X = tabular()
    y = np.abs(np.random.RandomState(1).standard_normal((X.shape[0], n_outputs)))
    y = y.ravel() if n_outputs == 1 else y
    reg = fit_quietly(MLPRegressor(loss, hidden_layer_sizes=(8, 4), activation="logistic",
                                   max_iter=30, random_state=0, dtype=dtype), X, y)
    check_regressor(reg, X)


def test_mlp_uses_assigned_coefs(dtype):
    """predict copies user-assigned coefs_ into the network first; so does the export."""
    X, y = tabular(), np.arange(60) % 2
    clf = fit_quietly(MLPClassifier((4,), max_iter=5, random_state=0, dtype=dtype), X, y)
    clf.coefs_ = [np.ones_like(c) * 0.1 for c in clf.coefs_]
    check_classifier(clf, X)


def test_neural_net_classifier_cnn(dtype):
    X = np.random.RandomState(0).standard_normal((40, 1, 6, 6))
    y = np.array(["a", "b", "c"])[np.arange(40) % 3]
    clf = fit_quietly(NeuralNetClassifier(
        [Conv2D(3, 3, padding=1), ReLU(), MaxPool2D(2), Conv2D(2, 2), AvgPool2D(2), Flatten(),
         Dense(6), ReLU()], input_shape=(1, 6, 6), max_epochs=2, random_state=0, dtype=dtype),
        X, y)
    check_classifier(clf, X)


@pytest.mark.parametrize("loss", ["auto", "binary_cross_entropy"])
def test_neural_net_classifier_recurrent(loss, dtype):
    """'auto' = softmax on 3 classes; 'binary_cross_entropy' = one-vs-rest, normalised."""
    X = np.random.RandomState(0).standard_normal((40, 5, 3))
    y = np.arange(40) % 3
    clf = fit_quietly(NeuralNetClassifier(
        [LSTM(4, return_sequences=True), Bidirectional(GRU(3), merge="ave")], max_epochs=2,
        random_state=0, dtype=dtype, loss=loss), X, y)
    assert clf._target_mode == ("softmax" if loss == "auto" else "ovr")
    check_classifier(clf, X)


def test_neural_net_classifier_binary_softmax_and_one_class(dtype):
    X = tabular()
    clf = fit_quietly(NeuralNetClassifier([Dense(4), ReLU()], max_epochs=2, random_state=0,
                                          dtype=dtype, loss="softmax_cross_entropy"),
                      X, np.arange(60) % 2)
    check_classifier(clf, X)
    one = fit_quietly(NeuralNetClassifier([Dense(4)], max_epochs=1, random_state=0,
                                          dtype=dtype), X, np.full(60, "only"))
    out = check_classifier(one, X)
    assert out["probabilities"].shape == (60, 1)


@pytest.mark.parametrize("loss, n_outputs", [("poisson", 1), ("poisson", 2), ("mse", 2)])
def test_neural_net_regressor(loss, n_outputs, dtype):
    X = np.random.RandomState(0).standard_normal((40, 1, 5, 5))
    y = np.random.RandomState(1).poisson(2.0, (40, n_outputs)).astype(float)
    y = y.ravel() if n_outputs == 1 else y
    reg = fit_quietly(NeuralNetRegressor([Conv2D(2, 2), ReLU(), Flatten(), Dense(4), ReLU()],
                                         input_shape=(1, 5, 5), loss=loss, max_epochs=2,
                                         random_state=0, dtype=dtype), X, y)
    check_regressor(reg, X)


def test_estimator_input_is_typed_like_the_model(dtype):
    reg = fit_quietly(MLPRegressor(hidden_layer_sizes=(3,), max_iter=5, random_state=0,
                                   dtype=dtype), tabular(), np.arange(60.0))
    (inp,) = nnc.to_onnx(reg).graph.input
    assert inp.name == "X"
    expected = onnx.TensorProto.FLOAT if dtype == "float32" else onnx.TensorProto.DOUBLE
    assert inp.type.tensor_type.elem_type == expected
    dims = inp.type.tensor_type.shape.dim
    assert dims[0].dim_param == "N" and dims[1].dim_value == 5


class _Frame:
    """The two things nnc reads from a DataFrame: string column names and the values."""

    def __init__(self, values):
        self.values = values
        self.columns = [f"f{i}" for i in range(values.shape[1])]

    def __array__(self, dtype=None, copy=None):
        return self.values if dtype is None else self.values.astype(dtype)


def test_exported_without_feature_name_warnings(recwarn):
    X = _Frame(tabular())
    clf = fit_quietly(MLPClassifier((4,), max_iter=5, random_state=0), X, np.arange(60) % 2)
    recwarn.clear()
    nnc.to_onnx(clf)
    assert not [w for w in recwarn if issubclass(w.category, UserWarning)]
