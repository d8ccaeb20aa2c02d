"""What scikit-learn rejects, nnc rejects (same exception kind); harmless input variants (Fortran
order, strides, lists, ints, bools, float16) give the same fit as the C-contiguous float array."""
import warnings

import numpy as np
import pytest

from nnc import MLPClassifier, MLPRegressor, NeuralNetClassifier, NeuralNetRegressor
from nnc._compat import ConvergenceWarning, NotFittedError

ESTIMATORS = {
    "mlp-clf": lambda: MLPClassifier(hidden_layer_sizes=(5,), max_iter=3, random_state=0),
    "mlp-reg": lambda: MLPRegressor(hidden_layer_sizes=(5,), max_iter=3, random_state=0),
    "nn-clf": lambda: NeuralNetClassifier(max_epochs=2, random_state=0),
    "nn-reg": lambda: NeuralNetRegressor(max_epochs=2, random_state=0),
}


@pytest.fixture(autouse=True)
def _quiet():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        yield


@pytest.fixture(params=sorted(ESTIMATORS))
def est(request):
    return ESTIMATORS[request.param]()


def _data(n=40, f=4):
    rng = np.random.RandomState(0)
    X = rng.randint(0, 5, (n, f)).astype(np.float64)
    y = (X[:, 0] > 2).astype(int)
    return X, y


def test_unfitted(est):
    with pytest.raises(NotFittedError, match="not fitted yet"):
        est.predict(np.zeros((2, 4)))


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_X(est, bad):
    X, y = _data()
    X[3, 1] = bad
    with pytest.raises(ValueError, match="NaN|infinity"):
        est.fit(X, y)
    X[3, 1] = 0
    est.fit(X, y)
    X[0, 0] = bad
    with pytest.raises(ValueError, match="NaN|infinity"):
        est.predict(X)


def test_non_finite_y(est):
    X, y = _data()
    for bad in (np.nan, np.inf):
        yy = y.astype(float)
        yy[0] = bad
        with pytest.raises(ValueError, match="Input y contains"):
            est.fit(X, yy)


def test_wrong_n_features(est):
    X, y = _data()
    est.fit(X, y)
    with pytest.raises(ValueError, match=f"X has 3 features, but {type(est).__name__} is "
                                         "expecting 4 features as input"):
        est.predict(X[:, :3])
    with pytest.raises(ValueError, match="X has 5 features"):
        est.partial_fit(np.c_[X, X[:, 0]], y)


def test_shapes_and_sizes(est):
    X, y = _data()
    with pytest.raises(ValueError, match="0 sample"):
        est.fit(X[:0], y[:0])
    with pytest.raises(ValueError, match="0 feature"):
        est.fit(X[:, :0], y)
    with pytest.raises(ValueError, match="Expected 2D array, got 1D array"):
        est.fit(X[:, 0], y)
    with pytest.raises(ValueError, match="inconsistent numbers of samples"):
        est.fit(X, y[:-1])
    with pytest.raises(ValueError, match="requires y to be passed"):
        est.fit(X, None)
    est.fit(X, y)
    with pytest.raises(ValueError, match="Expected 2D array, got 1D array"):
        est.predict(X[0])


def test_complex_and_non_numeric(est):
    X, y = _data()
    with pytest.raises(ValueError, match="Complex data not supported"):
        est.fit(X + 1j, y)
    with pytest.raises(ValueError, match="Complex data not supported"):
        est.fit(X, y + 1j)
    with pytest.raises(ValueError):
        est.fit(np.array([["a", "b"], ["c", "d"]]), [0, 1])
    Xo = X.astype(object)
    Xo[0, 0] = {"a": 1}
    with pytest.raises(TypeError, match="argument must be a string.* number"):
        est.fit(Xo, y)


def test_sample_weight_errors(est):
    X, y = _data()
    with pytest.raises(ValueError):
        est.fit(X, y, sample_weight=np.ones(len(y) - 1))
    with pytest.raises(ValueError):
        est.fit(X, y, sample_weight=np.ones((len(y), 2)))
    with pytest.raises(ValueError, match="[Nn]egative"):
        est.fit(X, y, sample_weight=-np.ones(len(y)))
    with pytest.raises(ValueError, match="zero"):
        est.fit(X, y, sample_weight=np.zeros(len(y)))


def test_classifier_target_errors():
    X, y = _data()
    for clf in (MLPClassifier(max_iter=2), NeuralNetClassifier(max_epochs=2)):
        with pytest.raises(ValueError, match="Unknown label type: continuous"):
            clf.fit(X, y + 0.5)
        with pytest.raises(ValueError, match="Unknown label type"):
            clf.fit(X, np.c_[y, y + 2])          # multiclass-multioutput
    clf = MLPClassifier(solver="sgd")
    clf.partial_fit(X, y, classes=[0, 1])
    with pytest.raises(ValueError, match="classes not in"):
        clf.partial_fit(X, y + 1)
    with pytest.raises(ValueError, match="classes must be passed"):
        MLPClassifier(solver="sgd").partial_fit(X, y)
    with pytest.raises(ValueError, match="early_stopping"):
        MLPClassifier(solver="sgd", early_stopping=True).partial_fit(X, y, classes=[0, 1])
    with pytest.raises(ValueError, match="poisson targets must be non-negative"):
        MLPRegressor(loss="poisson", max_iter=2).fit(X, y - 1.0)


@pytest.mark.parametrize("name, value, exc", [
    ("hidden_layer_sizes", (0,), ValueError), ("hidden_layer_sizes", "a", TypeError),
    ("activation", "softplus", ValueError), ("solver", "newton", ValueError),
    ("alpha", -1.0, ValueError), ("batch_size", 0, ValueError), ("batch_size", "big", ValueError),
    ("learning_rate", "cyclic", ValueError), ("learning_rate_init", 0.0, ValueError),
    ("max_iter", 0, ValueError), ("max_iter", 2.5, TypeError), ("shuffle", "yes", TypeError),
    ("momentum", 1.5, ValueError), ("validation_fraction", 1.0, ValueError),
    ("beta_1", 1.0, ValueError), ("epsilon", 0.0, ValueError), ("n_iter_no_change", 0, ValueError),
    ("max_fun", 0, ValueError), ("dtype", "int32", ValueError),
    ("class_weight", "auto", ValueError),
    ("random_state", "seed", TypeError), ("tol", -1.0, ValueError),
])
def test_mlp_bad_params(name, value, exc):
    X, y = _data()
    with pytest.raises(exc, match=name):
        MLPClassifier(**{name: value}).fit(X, y)


@pytest.mark.parametrize("name, value, exc", [
    ("layers", "dense", TypeError), ("layers", [object()], TypeError),
    ("input_shape", (0, 4), ValueError), ("optimizer", "lbfgs", ValueError),
    ("optimizer", 3, TypeError), ("learning_rate", -1.0, ValueError),
    ("batch_size", 0, ValueError), ("max_epochs", 0, ValueError), ("loss", "hinge", ValueError),
    ("clip_grad_norm", 0.0, ValueError), ("dtype", "float16", ValueError),
])
def test_neural_net_bad_params(name, value, exc):
    X, y = _data()
    with pytest.raises(exc):
        NeuralNetClassifier(**{name: value}).fit(X, y)


def test_neural_net_shape_errors():
    X, y = _data(f=6)
    with pytest.raises(ValueError, match="input_shape"):
        NeuralNetClassifier(input_shape=(2, 2)).fit(X, y)
    with pytest.raises(ValueError, match="Flatten"):
        NeuralNetClassifier(input_shape=(2, 3)).fit(X, y)   # Dense on 2-D samples
    with pytest.raises(ValueError, match="multilabel"):
        NeuralNetClassifier(loss="softmax_cross_entropy").fit(X, np.c_[y, 1 - y])


def _variants(X):
    Xf = np.asfortranarray(X)
    wide = np.zeros((X.shape[0] * 2, X.shape[1] * 3))
    wide[::2, ::3] = X
    return {"fortran": Xf, "strided": wide[::2, ::3], "list": X.tolist(),
            "int": X.astype(np.int64), "float16": X.astype(np.float16),
            "readonly": np.array(X, copy=True).view()}


@pytest.mark.parametrize("name", ["mlp-clf", "mlp-reg", "nn-clf", "nn-reg"])
def test_input_variants_give_identical_fits(name):
    X, y = _data(60)
    ref = ESTIMATORS[name]().fit(X, y)
    variants = _variants(X)
    variants["readonly"].setflags(write=False)
    bool_X = X > 2
    ref_bool = ESTIMATORS[name]().fit(bool_X.astype(np.float64), y)
    for key, Xv in list(variants.items()) + [("bool", bool_X)]:
        est = ESTIMATORS[name]().fit(Xv, y)
        base = ref_bool if key == "bool" else ref
        np.testing.assert_array_equal(est.network_.params, base.network_.params, err_msg=key)
        np.testing.assert_array_equal(est.predict(Xv), base.predict(np.asarray(Xv, float)),
                                      err_msg=key)


def test_feature_names():
    class Frame:
        """The smallest DataFrame look-alike: columns + __array__."""

        def __init__(self, data, columns):
            self.data, self.columns = np.asarray(data), list(columns)

        def __array__(self, dtype=None, copy=None):
            return self.data if dtype is None else self.data.astype(dtype)

    X, y = _data()
    cols = ["a", "b", "c", "d"]
    clf = MLPClassifier(max_iter=2).fit(Frame(X, cols), y)
    np.testing.assert_array_equal(clf.feature_names_in_, cols)
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        clf.predict(Frame(X, cols))
    with pytest.warns(UserWarning, match="does not have valid feature names"):
        clf.predict(X)
    with pytest.raises(ValueError, match="must be in the same order"):
        clf.predict(Frame(X, cols[::-1]))
    with pytest.raises(ValueError, match="unseen at fit time"):
        clf.predict(Frame(X, ["a", "b", "c", "z"]))
    with pytest.raises(TypeError, match="only supported if all input features have string"):
        MLPClassifier().fit(Frame(X, ["a", 1, "c", "d"]), y)
    plain = MLPClassifier(max_iter=2).fit(X, y)
    assert not hasattr(plain, "feature_names_in_")
    with pytest.warns(UserWarning, match="fitted without feature names"):
        plain.predict(Frame(X, cols))
