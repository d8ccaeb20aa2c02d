"""Validation you can see (X_val / y_val, validation_loss_curve_), diverging fits as scikit-learn,
the NeuralNet estimators' learning-rate schedules and class_weight."""
import io
import warnings

import numpy as np
import pytest

import nnc
from nnc import MLPClassifier, MLPRegressor, NeuralNetClassifier, NeuralNetRegressor
from nnc._compat import ConvergenceWarning
from nnc._estimators._base import NonFiniteLossError
from nnc.layers import Dense, Dropout, ReLU


def _data(n=90, seed=0):
    rng = np.random.RandomState(seed)
    X = rng.randn(n, 4)
    return X, (X[:, 0] + X[:, 1] > 0).astype(int)


def _log_loss(P, y, sw=None):
    return float(np.average(-np.log(P[np.arange(len(y)), y]), weights=sw))


# ---------------------------------------------------------------- X_val / y_val
@pytest.mark.parametrize("layers", [[Dense(8), ReLU()], [Dense(8), ReLU(), Dropout(0.2)]],
                         ids=["compiled", "python-loop"])
def test_validation_loss_curve_is_the_loss_on_the_validation_set(layers):
    X, y = _data()
    y3 = (X[:, 0] > 0.5).astype(int) + (X[:, 1] > 0).astype(int)          # three classes
    swv = np.linspace(1.0, 2.0, 30)
    est = NeuralNetClassifier(layers, max_epochs=5, learning_rate=0.01, dtype="float64",
                              random_state=0)
    est.fit(X[:60], y3[:60], X_val=X[60:], y_val=y3[60:], sample_weight_val=swv)
    assert len(est.validation_loss_curve_) == len(est.validation_scores_) == 5
    P = est.predict_proba(X[60:])
    assert est.validation_loss_curve_[-1] == pytest.approx(_log_loss(P, y3[60:], swv),
                                                           rel=1e-12)
    assert est.validation_scores_[-1] == pytest.approx(est.score(X[60:], y3[60:], swv))
    assert est.best_validation_score_ == max(est.validation_scores_)
    assert est.t_ == 5 * 60                      # nothing split off: X_val is the validation


def test_a_watched_validation_set_does_not_change_training():
    X, y = _data()
    yr = X @ np.array([1.0, -2.0, 0.5, 0.0])
    kw = dict(layers=[Dense(6), ReLU()], max_epochs=4, random_state=0, alpha=0.01)
    plain = NeuralNetRegressor(**kw).fit(X, yr)
    watched = NeuralNetRegressor(**kw).fit(X, yr, X_val=X[:20], y_val=yr[:20])
    np.testing.assert_array_equal(plain.network_.params, watched.network_.params)
    assert plain.loss_curve_ == watched.loss_curve_ and plain.validation_scores_ is None
    # the data term only: 0.5 * mean squared error (no alpha penalty), in float32
    Z = watched.predict(X[:20]).astype(np.float64)
    assert watched.validation_loss_curve_[-1] == pytest.approx(
        0.5 * np.mean((Z - yr[:20]) ** 2), rel=1e-5)
    with pytest.raises(ValueError, match="y_val was not provided"):
        NeuralNetRegressor(**kw).fit(X, yr, X_val=X)
    with pytest.raises(ValueError, match="sample shape"):
        NeuralNetRegressor(**kw).fit(X, yr, X_val=X[:, :3], y_val=yr)
    with pytest.raises(ValueError, match="classes not in y"):
        NeuralNetClassifier(max_epochs=1).fit(X, y, X_val=X[:5], y_val=[0, 1, 2, 0, 1])
    with pytest.raises(ValueError, match="inconsistent numbers of samples"):
        NeuralNetRegressor(**kw).fit(X, yr, X_val=X[:5], y_val=yr[:4])


def test_early_stopping_on_a_given_validation_set():
    X, y = _data()
    est = NeuralNetClassifier([Dense(8), ReLU()], max_epochs=200, learning_rate=0.05,
                              early_stopping=True, n_iter_no_change=3, random_state=0)
    est.fit(X[:60], y[:60], X_val=X[60:], y_val=y[60:])
    assert est.n_iter_ < 200 and est.t_ == est.n_iter_ * 60
    assert est.score(X[60:], y[60:]) == est.best_validation_score_   # best weights restored


def test_mlp_validation_loss_curve_with_early_stopping():
    X, y = _data()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        est = MLPClassifier((6,), max_iter=6, early_stopping=True, random_state=0).fit(X, y)
        plain = MLPClassifier((6,), max_iter=6, random_state=0).fit(X, y)
    assert len(est.validation_loss_curve_) == len(est.loss_curve_) == 6
    assert all(np.isfinite(est.validation_loss_curve_))
    assert plain.validation_loss_curve_ is None
    # curves continue over warm starts and survive a model file
    est.set_params(warm_start=True, max_iter=2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        est.fit(X, y)
    assert len(est.validation_loss_curve_) == 8
    buf = io.BytesIO()
    nnc.save(est, buf)
    assert nnc.load(io.BytesIO(buf.getvalue())).validation_loss_curve_ == \
        est.validation_loss_curve_


# ---------------------------------------------------------------- diverging fits
def _diverging(**kw):
    # scikit-learn's test_mlp_diverging_loss: identity network, SGD with lr=1
    from sklearn.datasets import load_iris
    X, y = load_iris(return_X_y=True)
    params = dict(hidden_layer_sizes=100, activation="identity", solver="sgd", alpha=0.0001,
                  learning_rate="constant", learning_rate_init=1, shuffle=True, max_iter=20,
                  n_iter_no_change=10, random_state=0)
    params.update(kw)
    return MLPRegressor(**params), X, y


def test_diverging_fit_with_early_stopping_keeps_the_best_weights():
    pytest.importorskip("sklearn")
    est, X, y = _diverging(early_stopping=True)
    with pytest.warns(ConvergenceWarning, match="non-finite|became"):
        est.fit(X, y)
    assert str(est.validation_scores_[-1]) == str(np.nan)               # as scikit-learn
    assert isinstance(est.validation_scores_[-1], float)
    assert not np.isfinite(est.loss_curve_[-1]) and not np.isfinite(est.loss_)
    assert np.isnan(est.validation_loss_curve_[-1])
    assert np.isfinite(est.network_.params).all() and np.isfinite(est.predict(X)).all()
    best = int(np.nanargmax(est.validation_scores_))
    assert est.best_validation_score_ == est.validation_scores_[best]
    buf = io.BytesIO()                          # the record loads back
    nnc.save(est, buf)
    again = nnc.load(io.BytesIO(buf.getvalue()))
    np.testing.assert_array_equal(again.predict(X), est.predict(X))


def test_diverging_fit_without_early_stopping_raises_and_keeps_the_previous_model():
    pytest.importorskip("sklearn")
    est, X, y = _diverging(learning_rate_init=0.001, max_iter=5)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        est.fit(X, y)
    net, params = est.network_, est.network_.params.copy()
    est.set_params(learning_rate_init=1.0, max_iter=20)
    with pytest.raises(NonFiniteLossError):
        est.fit(X, y)
    assert est.network_ is net
    np.testing.assert_array_equal(est.network_.params, params)


# ---------------------------------------------------------------- NeuralNet schedules
def test_neural_net_invscaling_as_the_mlp_formula():
    X, y = _data()
    est = NeuralNetClassifier([Dense(4)], learning_rate=0.1, max_epochs=3,
                              learning_rate_schedule="invscaling", power_t=0.25,
                              optimizer="adam", random_state=0).fit(X, y)
    assert est._optimizer.learning_rate == pytest.approx(0.1 / (est.t_ + 1) ** 0.25,
                                                         rel=1e-15)
    est = NeuralNetClassifier([Dense(4)], max_epochs=3, learning_rate_schedule="invscaling",
                              optimizer=nnc.optimizers.SGD(learning_rate=0.2),
                              random_state=0).fit(X, y)
    assert est._optimizer.learning_rate == pytest.approx(0.2 / (est.t_ + 1) ** 0.5, rel=1e-15)


def test_neural_net_adaptive_divides_by_five_then_stops():
    X, y = _data()
    # tol so large that no epoch counts as an improvement: the rule fires every 2 epochs
    est = NeuralNetClassifier([Dense(4)], learning_rate=1e-3, max_epochs=100, tol=1e9,
                              n_iter_no_change=1, learning_rate_schedule="adaptive",
                              random_state=0).fit(X, y)
    # 1e-3 / 5**k reaches <= 1e-6 at k = 5 (3.2e-7); the next firing stops the fit
    assert est._optimizer.learning_rate == pytest.approx(1e-3 / 5 ** 5, rel=1e-12)
    assert est.n_iter_ == 3 + 2 * 5
    with pytest.raises(ValueError, match="learning_rate_schedule"):
        NeuralNetClassifier(learning_rate_schedule="step").fit(X, y)


def test_neural_net_class_weight_is_sample_weight():
    X, y = _data()
    kw = dict(layers=[Dense(5), ReLU()], max_epochs=3, random_state=0, dtype="float64")
    weighted = NeuralNetClassifier(class_weight={0: 3.0, 1: 0.5}, **kw).fit(X, y)
    by_sample = NeuralNetClassifier(**kw).fit(X, y, sample_weight=np.where(y == 0, 3.0, 0.5))
    np.testing.assert_allclose(weighted.network_.params, by_sample.network_.params,
                               rtol=1e-12, atol=1e-14)
    balanced = NeuralNetClassifier(class_weight="balanced", **kw).fit(X, y)
    counts = np.bincount(y)
    sw = (len(y) / (2 * counts))[y]
    ref = NeuralNetClassifier(**kw).fit(X, y, sample_weight=sw)
    np.testing.assert_allclose(balanced.network_.params, ref.network_.params, rtol=1e-12,
                               atol=1e-14)
    with pytest.raises(ValueError, match="class_weight"):
        NeuralNetClassifier(class_weight="heavy").fit(X, y)
