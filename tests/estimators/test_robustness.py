"""KeyboardInterrupt, atomic fits (a failing fit leaves the previous model untouched),
non-finite losses, pickling, and the estimators without scikit-learn installed."""
import pickle
import textwrap
import warnings

import numpy as np
import pytest

from nnc import MLPClassifier, MLPRegressor, NeuralNetClassifier, NeuralNetRegressor, Sequential
from nnc._compat import ConvergenceWarning
from nnc._estimators._base import NonFiniteLossError
from tests._snippets import run_snippet


@pytest.fixture(autouse=True)
def _quiet():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        yield


def _data(n=80, seed=0):
    rng = np.random.RandomState(seed)
    X = rng.randn(n, 3)
    return X, (X[:, 0] + X[:, 1] > 0).astype(int)


def _interrupt_after(monkeypatch, n_calls):
    real = Sequential.train_epoch
    calls = {"n": 0}

    def fake(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] > n_calls:
            raise KeyboardInterrupt
        return real(self, *args, **kwargs)

    monkeypatch.setattr(Sequential, "train_epoch", fake)
    return calls


@pytest.mark.parametrize("make", [
    lambda: MLPClassifier(max_iter=50, random_state=0),
    lambda: MLPClassifier(max_iter=50, random_state=0, early_stopping=True),
    lambda: NeuralNetRegressor(max_epochs=50, random_state=0),
], ids=["mlp", "mlp-early-stopping", "nn-reg"])
def test_keyboard_interrupt_keeps_a_usable_model(monkeypatch, make):
    X, y = _data()
    _interrupt_after(monkeypatch, 2)
    est = make()
    with pytest.warns(UserWarning, match="Training interrupted by user"):
        est.fit(X, y)
    assert est.n_iter_ == 2 and len(est.loss_curve_) == 2
    pred = est.predict(X)
    assert pred.shape == (len(X),) and np.isfinite(est.network_.params).all()
    if est.early_stopping:   # best weights so far restored
        np.testing.assert_array_equal(est.network_.params, est._best_params)


def test_keyboard_interrupt_in_lbfgs(monkeypatch):
    X, y = _data()
    real = Sequential._batch_loss_gradient
    calls = {"n": 0}

    def fake(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] > 5:
            raise KeyboardInterrupt
        return real(self, *args, **kwargs)

    monkeypatch.setattr(Sequential, "_batch_loss_gradient", fake)
    est = MLPClassifier(solver="lbfgs", random_state=0)
    with pytest.warns(UserWarning, match="interrupted"):
        est.fit(X, y)
    assert np.isfinite(est.loss_) and est.predict(X).shape == (len(X),)


def _snapshot(est):
    return (est.network_, est.network_.params.copy(), est.n_iter_, list(est.loss_curve_),
            est.t_, est.predict_proba(est._X_probe))


def _assert_unchanged(est, snap):
    net, params, n_iter, curve, t, proba = snap
    assert est.network_ is net
    np.testing.assert_array_equal(est.network_.params, params)
    assert est.n_iter_ == n_iter and est.loss_curve_ == curve and est.t_ == t
    np.testing.assert_array_equal(est.predict_proba(est._X_probe), proba)


@pytest.mark.parametrize("warm_start", [False, True])
def test_failed_refit_leaves_previous_model(warm_start):
    X, y = _data()
    est = MLPClassifier(max_iter=5, random_state=0, warm_start=warm_start).fit(X, y)
    est._X_probe = X
    snap = _snapshot(est)
    bad = X.copy()
    bad[0, 0] = np.nan
    cases = [(bad, y), (X, y[:-1]), (X, y + 0.5), (X, y, -np.ones(len(y)))]
    if warm_start:
        cases.append((X[:, :2], y))   # a fresh fit may change n_features, a warm one may not
    for args in cases:
        with pytest.raises(ValueError):
            est.fit(*args)
        _assert_unchanged(est, snap)
    with pytest.raises(ValueError):
        est.partial_fit(X, np.where(y == 1, 5, y))
    _assert_unchanged(est, snap)
    # user-assigned weights of a wrong shape are rejected before anything changes
    est.coefs_ = [c[:1] for c in est.coefs_]
    with pytest.raises(ValueError, match="shape"):
        est.partial_fit(X, y)
    np.testing.assert_array_equal(est.network_.params, snap[1])


@pytest.mark.parametrize("warm_start", [False, True])
def test_non_finite_loss_raises_and_keeps_previous_weights(warm_start):
    X, y = _data()
    reg = MLPRegressor(max_iter=5, random_state=0, warm_start=warm_start).fit(X, y)
    reg._X_probe = X
    net, params, n_iter = reg.network_, reg.network_.params.copy(), reg.n_iter_
    # finite input whose forward pass overflows (scikit-learn's test_nonfinite_params)
    huge = np.finfo(np.float64).max * np.random.RandomState(0).uniform(size=X.shape)
    with pytest.raises(NonFiniteLossError, match="non-finite") as info:
        reg.fit(huge, y)
    assert isinstance(info.value, ValueError) and isinstance(info.value, FloatingPointError)
    assert reg.network_ is net and reg.n_iter_ == n_iter
    np.testing.assert_array_equal(reg.network_.params, params)
    # training that diverges after a few epochs: partial_fit keeps the last good epoch
    div = MLPRegressor(solver="sgd", learning_rate_init=10.0, random_state=0)
    div.partial_fit(X, y)
    net, params = div.network_, div.network_.params.copy()
    with pytest.raises(FloatingPointError, match="non-finite"):
        for _ in range(200):
            div.partial_fit(X, y * 1e3)
            net, params = div.network_, div.network_.params.copy()
    assert div.network_ is net
    np.testing.assert_array_equal(div.network_.params, params)   # the last good epoch's


def test_failure_during_training_restores_warm_start(monkeypatch):
    X, y = _data()
    est = NeuralNetClassifier(max_epochs=3, random_state=0, warm_start=True).fit(X, y)
    est._X_probe = X
    snap = _snapshot(est)
    calls = {"n": 0}
    real = Sequential.train_epoch

    def flaky(self, *args, **kwargs):
        calls["n"] += 1
        loss = real(self, *args, **kwargs)   # the weights move ...
        if calls["n"] == 2:
            raise RuntimeError("disk on fire")   # ... then something unrelated breaks
        return loss

    monkeypatch.setattr(Sequential, "train_epoch", flaky)
    with pytest.raises(RuntimeError, match="disk on fire"):
        est.fit(X, y)
    _assert_unchanged(est, snap)


@pytest.mark.parametrize("Est", [MLPClassifier, MLPRegressor, NeuralNetClassifier,
                                 NeuralNetRegressor])
def test_pickle_round_trip(Est):
    X, y = _data()
    est = Est(random_state=0).fit(X, y)
    again = pickle.loads(pickle.dumps(est))
    np.testing.assert_array_equal(again.predict(X), est.predict(X))
    np.testing.assert_array_equal(again.network_.params, est.network_.params)
    # both continue identically
    est.partial_fit(X, y)
    again.partial_fit(X, y)
    np.testing.assert_array_equal(again.network_.params, est.network_.params)


_NO_SKLEARN = textwrap.dedent("""
    import sys
    class _Block:
        def find_spec(self, name, path=None, target=None):
            if name == "sklearn" or name.startswith("sklearn."):
                raise ImportError("scikit-learn is blocked for this test")
    sys.meta_path.insert(0, _Block())
    import pickle, warnings
    import numpy as np
    import nnc
    from nnc._compat import SKLEARN_INSTALLED, NotFittedError, ConvergenceWarning
    assert not SKLEARN_INSTALLED and "sklearn" not in sys.modules
    warnings.simplefilter("ignore", ConvergenceWarning)
    rng = np.random.RandomState(0)
    X = rng.randn(120, 4)
    y = np.where(X[:, 0] + X[:, 1] > 0, "pos", "neg")
    for est in (nnc.MLPClassifier(max_iter=60, random_state=0),
                nnc.MLPClassifier(solver="lbfgs", random_state=0),
                nnc.MLPClassifier(early_stopping=True, max_iter=20, random_state=0),
                nnc.NeuralNetClassifier(max_epochs=20, learning_rate=0.01, random_state=0)):
        try:
            est.predict(X)
        except NotFittedError as exc:
            assert isinstance(exc, ValueError) and isinstance(exc, AttributeError)
        est.fit(X, y)
        assert est.score(X, y) > 0.8, (est, est.score(X, y))
        again = pickle.loads(pickle.dumps(est))
        assert (again.predict(X) == est.predict(X)).all()
    y_reg = X @ np.array([1.0, -1.0, 0.5, 0.0])
    for est in (nnc.MLPRegressor(max_iter=100, random_state=0),
                nnc.NeuralNetRegressor(max_epochs=30, learning_rate=0.01, random_state=0)):
        assert est.fit(X, y_reg).score(X, y_reg) > 0.9
    est = nnc.MLPClassifier(alpha=0.1)
    assert est.get_params()["alpha"] == 0.1
    assert est.set_params(alpha=0.2, hidden_layer_sizes=(3,)).alpha == 0.2
    assert repr(est) == "MLPClassifier(alpha=0.2, hidden_layer_sizes=(3,))", repr(est)
    assert not hasattr(nnc.MLPClassifier(solver="lbfgs"), "partial_fit")
    print("OK")
""")


def test_works_without_sklearn():
    out = run_snippet(_NO_SKLEARN, cwd=None)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.strip().endswith("OK")


@pytest.mark.parametrize("how", ["partial_fit", "warm_start"])
def test_step_that_overflows_the_outputs_keeps_previous_weights(how):
    """One SGD step on inputs scaled by 1e12 leaves finite float32 weights (~1e16) whose outputs
    overflow: detected at the end of the call, as fit detects it, and the previous weights (and
    Dropout's generator) are kept."""
    from nnc import layers as L
    rng = np.random.RandomState(0)
    X = rng.randn(40, 3).astype(np.float32)
    y = X[:, 0].copy()
    reg = NeuralNetRegressor(layers=[L.Dense(4), L.ReLU(), L.Dropout(0.1)], optimizer="sgd",
                             batch_size=64, max_epochs=1, random_state=0)
    reg.fit(X, y)
    params = reg.network_.params.copy()
    dropout = reg.network_.layers[2].state_dict()
    proba = reg.predict(X)
    with pytest.raises(NonFiniteLossError, match="outputs are not finite"):
        if how == "partial_fit":
            reg.partial_fit(X * 1e12, y)
        else:
            reg.set_params(warm_start=True).fit(X * 1e12, y)
    np.testing.assert_array_equal(reg.network_.params, params)
    assert reg.network_.layers[2].state_dict() == dropout
    np.testing.assert_array_equal(reg.predict(X), proba)
    assert np.isfinite(reg.predict(X * 1e12)).all()
    # a first partial_fit that overflows leaves the estimator unfitted
    fresh = NeuralNetRegressor(layers=[L.Dense(4), L.ReLU()], optimizer="sgd", batch_size=64,
                               random_state=0)
    with pytest.raises(NonFiniteLossError):
        fresh.partial_fit(X * 1e12, y)
    assert not hasattr(fresh, "network_")


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_one_vs_rest_probabilities_finite_when_every_sigmoid_underflows(dtype):
    """loss='binary_cross_entropy' on 3 classes (one logistic output per class): logits of -1e4
    make every sigmoid 0, and sigmoid / sum would be 0 / 0.  Probabilities stay finite, sum to
    1 and follow the logits; ordinary rows are unchanged."""
    X, y = _data(60)
    y3 = y + (X[:, 2] > 1)
    clf = NeuralNetClassifier(loss="binary_cross_entropy", max_epochs=2, random_state=0,
                              dtype=dtype).fit(X, y3)
    assert clf._target_mode == "ovr"
    normal = clf.predict_proba(X)
    P = clf.network_.predict(clf._validate_predict_X(X, clf.network_))
    np.testing.assert_allclose(normal, P / P.sum(axis=1, keepdims=True), rtol=1e-6)
    W, b = clf.network_.layers[-1].params
    W[...] = 0
    b[...] = [-1e4, -1e4 + 2, -1e4 + 1]       # sigmoid(b) == 0 in both dtypes
    proba = clf.predict_proba(X)
    assert proba.dtype == np.dtype(dtype) and np.isfinite(proba).all()
    np.testing.assert_allclose(proba.sum(axis=1), 1, rtol=1e-6)
    ref = np.exp([0.0, 2.0, 1.0]) / np.exp([0.0, 2.0, 1.0]).sum()   # sigmoid(z) ~ exp(z) there
    np.testing.assert_allclose(proba, np.tile(ref, (len(X), 1)), rtol=1e-5)
    assert (clf.predict(X) == clf.classes_[1]).all()
