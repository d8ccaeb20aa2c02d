"""MLPClassifier / MLPRegressor against scikit-learn's: same initial weights, same losses, same
solutions, comparable accuracy.  Skipped without scikit-learn."""
import warnings

import numpy as np
import pytest

sklearn = pytest.importorskip("sklearn")
from sklearn import neural_network as sk  # noqa: E402
from sklearn.datasets import (load_breast_cancer, load_diabetes, load_digits,  # noqa: E402
                              load_wine, make_multilabel_classification)
from sklearn.model_selection import train_test_split  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402

import nnc  # noqa: E402


@pytest.fixture(scope="module")
def digits():
    X, y = load_digits(return_X_y=True)
    return X[:400] / 16.0, y[:400]


def _fit_both(nnc_cls, sk_cls, X, y, **params):
    a, b = nnc_cls(**params), sk_cls(**params)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        a.fit(X, y)
        b.fit(X, y)
    return a, b


def _rel(a, b):
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    return float(np.max(np.abs(a - b) / np.maximum(np.abs(b), 1e-300)))


def test_initial_weights_identical(digits):
    X, y = digits
    for activation in ("relu", "logistic"):
        a, b = _fit_both(nnc.MLPClassifier, sk.MLPClassifier, X, y, hidden_layer_sizes=(7, 5),
                         activation=activation, solver="sgd", learning_rate_init=1e-12,
                         momentum=0.0, max_iter=1, random_state=3, alpha=0.0)
        # one step with a vanishing learning rate: the weights are the initial ones
        for ca, cb in zip(a.coefs_ + a.intercepts_, b.coefs_ + b.intercepts_):
            np.testing.assert_allclose(ca, cb, rtol=0, atol=1e-10)


SGD_CASES = {
    "momentum": dict(solver="sgd", momentum=0.9, nesterovs_momentum=False,
                     learning_rate_init=0.05),
    "nesterov": dict(solver="sgd", momentum=0.9, nesterovs_momentum=True,
                     learning_rate_init=0.05),
    "plain": dict(solver="sgd", momentum=0.0, learning_rate_init=0.1),
    "invscaling": dict(solver="sgd", learning_rate="invscaling", learning_rate_init=0.2,
                       power_t=0.3),
    "adam": dict(solver="adam", learning_rate_init=0.01),
}


@pytest.mark.parametrize("case", sorted(SGD_CASES))
@pytest.mark.parametrize("shuffle", [False, True])
def test_classifier_loss_curve_matches(digits, case, shuffle):
    X, y = digits
    a, b = _fit_both(nnc.MLPClassifier, sk.MLPClassifier, X, y, hidden_layer_sizes=(20, 10),
                     max_iter=5, batch_size=64, alpha=1e-3, random_state=0, shuffle=shuffle,
                     **SGD_CASES[case])
    assert len(a.loss_curve_) == len(b.loss_curve_) == 5
    assert _rel(a.loss_curve_, b.loss_curve_) < 1e-8
    for ca, cb in zip(a.coefs_ + a.intercepts_, b.coefs_ + b.intercepts_):
        np.testing.assert_allclose(ca, cb, rtol=1e-7, atol=1e-9)
    assert a.n_iter_ == b.n_iter_ and a.t_ == b.t_
    assert a.best_loss_ == pytest.approx(b.best_loss_, rel=1e-8)


@pytest.mark.parametrize("activation", ["identity", "logistic", "tanh", "relu"])
def test_binary_and_multilabel_loss_curve_matches(activation):
    X, Y = make_multilabel_classification(n_samples=120, n_features=8, n_classes=4,
                                          random_state=0)
    X = X / X.max()
    for y in (Y, Y[:, 0]):
        a, b = _fit_both(nnc.MLPClassifier, sk.MLPClassifier, X, y, hidden_layer_sizes=(9,),
                         activation=activation, solver="sgd", learning_rate_init=0.1,
                         max_iter=5, batch_size=32, random_state=1)
        assert _rel(a.loss_curve_, b.loss_curve_) < 1e-8
        np.testing.assert_array_equal(a.predict(X), b.predict(X))
        np.testing.assert_allclose(a.predict_proba(X), b.predict_proba(X), rtol=1e-7)


@pytest.mark.parametrize("case", ["nesterov", "adam", "invscaling"])
def test_regressor_loss_curve_matches(case):
    rng = np.random.RandomState(0)
    X = rng.randn(150, 6)
    Y = np.c_[X[:, 0] - 2 * X[:, 1], np.sin(X[:, 2]), X[:, 3] * X[:, 4]]
    for y in (Y, Y[:, 0]):
        params = dict(SGD_CASES[case], learning_rate_init=0.01)
        a, b = _fit_both(nnc.MLPRegressor, sk.MLPRegressor, X, y, hidden_layer_sizes=(16,),
                         max_iter=5, batch_size=40, random_state=2, **params)
        assert _rel(a.loss_curve_, b.loss_curve_) < 1e-8
        np.testing.assert_allclose(a.predict(X), b.predict(X), rtol=1e-7, atol=1e-10)


def test_poisson_loss_curve_matches():
    rng = np.random.RandomState(0)
    X = rng.rand(100, 3)
    y = rng.poisson(np.exp(X @ np.array([0.5, -0.3, 1.0])))
    a, b = _fit_both(nnc.MLPRegressor, sk.MLPRegressor, X, y, loss="poisson",
                     hidden_layer_sizes=(5,), solver="sgd", learning_rate_init=0.01,
                     max_iter=5, random_state=0)
    assert a.out_activation_ == b.out_activation_ == "exp"
    assert _rel(a.loss_curve_, b.loss_curve_) < 1e-8


def test_sample_weight_and_early_stopping_match(digits):
    X, y = digits
    sw = np.random.RandomState(0).uniform(0.5, 2, X.shape[0])
    for yy in (y, (y > 4).astype(int)):   # multiclass: random split; binary: stratified split
        params = dict(hidden_layer_sizes=(15,), solver="adam", learning_rate_init=0.01,
                      max_iter=8, early_stopping=True, validation_fraction=0.2, random_state=4,
                      n_iter_no_change=3)
        a, b = nnc.MLPClassifier(**params), sk.MLPClassifier(**params)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            a.fit(X, yy, sample_weight=sw)
            b.fit(X, yy, sample_weight=sw)
        assert _rel(a.loss_curve_, b.loss_curve_) < 1e-8
        np.testing.assert_allclose(a.validation_scores_, b.validation_scores_, rtol=1e-12)
        assert a.best_validation_score_ == b.best_validation_score_
        assert a.best_loss_ is None and b.best_loss_ is None
        assert a.n_iter_ == b.n_iter_
        # the best weights are restored, as scikit-learn does
        for ca, cb in zip(a.coefs_, b.coefs_):
            np.testing.assert_allclose(ca, cb, rtol=1e-7, atol=1e-9)


def test_stopping_rule_and_adaptive_rate_match():
    X = np.array([[3.0, 2], [1, 6], [0, 1], [2, 2]])
    y = [1, 0, 0, 1]
    for lr in ("constant", "adaptive"):
        a, b = _fit_both(nnc.MLPClassifier, sk.MLPClassifier, X, y, tol=0.5, max_iter=3000,
                         solver="sgd", learning_rate=lr, random_state=0)
        assert a.n_iter_ == b.n_iter_ < 3000
        assert _rel(a.loss_curve_, b.loss_curve_) < 1e-7
        assert a._optimizer.learning_rate == pytest.approx(b._optimizer.learning_rate)


@pytest.mark.parametrize("activation", ["logistic", "relu"])
def test_lbfgs_matches(digits, activation):
    X, y = digits
    a, b = _fit_both(nnc.MLPClassifier, sk.MLPClassifier, X[:150], y[:150],
                     hidden_layer_sizes=(10,), activation=activation, solver="lbfgs",
                     max_iter=30, random_state=0)
    assert a.n_iter_ == b.n_iter_
    assert a.loss_ == pytest.approx(b.loss_, rel=1e-7)
    for ca, cb in zip(a.coefs_ + a.intercepts_, b.coefs_ + b.intercepts_):
        np.testing.assert_allclose(ca, cb, rtol=1e-5, atol=1e-7)
    assert not hasattr(a, "loss_curve_") and not hasattr(b, "loss_curve_")


def test_lbfgs_regressor_multioutput_matches():
    rng = np.random.RandomState(1)
    X = rng.randn(80, 4)
    Y = np.c_[X[:, 0] * X[:, 1], X[:, 2] - X[:, 3]]
    a, b = _fit_both(nnc.MLPRegressor, sk.MLPRegressor, X, Y, hidden_layer_sizes=(8,),
                     solver="lbfgs", max_iter=25, random_state=0)
    assert a.loss_ == pytest.approx(b.loss_, rel=1e-7)
    np.testing.assert_allclose(a.predict(X), b.predict(X), rtol=1e-5, atol=1e-7)


def test_user_assigned_weights_continue_like_sklearn(digits):
    """Weights assigned to coefs_ / intercepts_ are trained from (STYLE 2.10)."""
    X, y = digits
    a, b = _fit_both(nnc.MLPClassifier, sk.MLPClassifier, X, y, hidden_layer_sizes=(6,),
                     solver="sgd", max_iter=2, random_state=0, warm_start=True)
    rng = np.random.RandomState(5)
    new_coefs = [rng.uniform(-0.3, 0.3, c.shape) for c in b.coefs_]
    new_ints = [rng.uniform(-0.3, 0.3, c.shape) for c in b.intercepts_]
    for est in (a, b):
        est.coefs_ = [c.copy() for c in new_coefs]
        est.intercepts_ = [c.copy() for c in new_ints]
        est.partial_fit(X, y)
    np.testing.assert_allclose(a.loss_curve_, b.loss_curve_, rtol=1e-8)
    for ca, cb in zip(a.coefs_, b.coefs_):
        np.testing.assert_allclose(ca, cb, rtol=1e-7, atol=1e-9)
    # after the copy-back coefs_ are views of the buffer again
    assert np.shares_memory(a.coefs_[0], a.network_.params)


def test_worked_example_of_sklearn_test_fit():
    """One SGD step, checked against hand-computed numbers (sklearn's test_fit)."""
    X = np.array([[0.6, 0.8, 0.7]])
    y = np.array([0])
    mlp = nnc.MLPClassifier(solver="sgd", learning_rate_init=0.1, alpha=0.1,
                            activation="logistic", random_state=1, max_iter=1,
                            hidden_layer_sizes=2, momentum=0)
    mlp.coefs_ = [np.array([[0.1, 0.2], [0.3, 0.1], [0.5, 0]]), np.array([[0.1], [0.2]])]
    mlp.intercepts_ = [np.array([0.1, 0.1]), np.array([1.0])]
    mlp.partial_fit(X, y, classes=[0, 1])
    np.testing.assert_allclose(mlp.coefs_[0], [[0.098, 0.195756], [0.2956664, 0.096008],
                                               [0.4939998, -0.002244]], atol=1e-3)
    np.testing.assert_allclose(mlp.coefs_[1], [[0.04706], [0.154089]], atol=1e-3)
    np.testing.assert_allclose(mlp.intercepts_[0], [0.098333, 0.09626], atol=1e-3)
    np.testing.assert_allclose(mlp.intercepts_[1], [0.9235], atol=1e-3)
    assert mlp.predict_proba(X)[0, 1] == pytest.approx(0.739, abs=1e-3)


def _scaled_split(loader):
    X, y = loader(return_X_y=True)
    Xtr, Xte, ytr, yte = train_test_split(X, y, test_size=0.3, random_state=0)
    scaler = StandardScaler().fit(Xtr)
    return scaler.transform(Xtr), scaler.transform(Xte), ytr, yte


@pytest.mark.parametrize("loader", [load_digits, load_breast_cancer, load_wine])
@pytest.mark.parametrize("solver", ["adam", "lbfgs"])
def test_accuracy_close_to_sklearn(loader, solver):
    Xtr, Xte, ytr, yte = _scaled_split(loader)
    a, b = _fit_both(nnc.MLPClassifier, sk.MLPClassifier, Xtr, ytr, hidden_layer_sizes=(50,),
                     solver=solver, max_iter=60, random_state=0)
    assert abs(a.score(Xte, yte) - b.score(Xte, yte)) <= 0.02
    assert a.score(Xte, yte) > 0.85


@pytest.mark.parametrize("params", [dict(solver="adam", learning_rate_init=0.05, max_iter=200),
                                    dict(solver="lbfgs", alpha=10.0, max_iter=100)],
                         ids=["adam", "lbfgs"])
def test_diabetes_r2_close_to_sklearn(params):
    Xtr, Xte, ytr, yte = _scaled_split(load_diabetes)
    a, b = _fit_both(nnc.MLPRegressor, sk.MLPRegressor, Xtr, ytr, hidden_layer_sizes=(10,),
                     random_state=0, **params)
    assert abs(a.score(Xte, yte) - b.score(Xte, yte)) <= 0.05
    assert a.score(Xte, yte) > 0.25
