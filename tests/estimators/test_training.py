"""The estimators learn: XOR, spirals, digits, multilabel, string labels, class weights, CNNs,
warm starts and partial_fit; dtypes are kept; gradients of fitted estimators check out."""
import warnings

import numpy as np
import pytest

import nnc
from nnc import MLPClassifier, MLPRegressor, NeuralNetClassifier, NeuralNetRegressor
from nnc._compat import ConvergenceWarning
from nnc import layers as L
from nnc.optimizers import Adam


@pytest.fixture(autouse=True)
def _quiet():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        yield


def _digits(n=600):
    """Digits-like data without needing scikit-learn's loader: scikit-learn's when available."""
    try:
        from sklearn.datasets import load_digits
    except ImportError:
        pytest.skip("needs scikit-learn's bundled digits")
    X, y = load_digits(return_X_y=True)
    return X[:n] / 16.0, y[:n]


def _spirals(n=200, seed=0):
    rng = np.random.RandomState(seed)
    t = np.sqrt(rng.rand(n)) * 3 * np.pi
    X = np.r_[np.c_[t * np.cos(t), t * np.sin(t)], np.c_[-t * np.cos(t), -t * np.sin(t)]]
    X = X / 10 + 0.02 * rng.randn(2 * n, 2)
    return X, np.r_[np.zeros(n, int), np.ones(n, int)]


XOR_X = np.array([[0.0, 0], [0, 1], [1, 0], [1, 1]])
XOR_y = np.array([0, 1, 1, 0])


def test_xor():
    clf = MLPClassifier(hidden_layer_sizes=(8,), activation="tanh", solver="lbfgs",
                        random_state=0).fit(XOR_X, XOR_y)
    assert clf.score(XOR_X, XOR_y) == 1.0
    X = np.repeat(XOR_X, 25, axis=0)
    y = np.repeat(XOR_y, 25)
    net = NeuralNetClassifier(layers=[L.Dense(16), L.Tanh()], learning_rate=0.05,
                              max_epochs=150, batch_size=16, random_state=0).fit(X, y)
    assert net.score(XOR_X, XOR_y) == 1.0


@pytest.mark.parametrize("solver", ["adam", "sgd", "rmsprop", "adagrad"])
def test_spirals(solver):
    X, y = _spirals()
    lr = {"adam": 0.01, "sgd": 0.1, "rmsprop": 0.01, "adagrad": 0.1}[solver]
    clf = MLPClassifier(hidden_layer_sizes=(64, 64), solver=solver, learning_rate_init=lr,
                        max_iter=300, batch_size=32, random_state=0).fit(X, y)
    assert clf.score(X, y) > 0.95
    assert clf.loss_curve_[-1] < 0.5 * clf.loss_curve_[0]


def test_digits_mlp_and_neural_net():
    X, y = _digits(None)
    Xtr, ytr, Xte, yte = X[:1200], y[:1200], X[1200:], y[1200:]
    mlp = MLPClassifier(hidden_layer_sizes=(64,), max_iter=50, learning_rate_init=0.01,
                        random_state=0).fit(Xtr, ytr)
    assert mlp.score(Xte, yte) > 0.9
    net = NeuralNetClassifier(layers=[L.Dense(64), L.ReLU()], learning_rate=0.01,
                              max_epochs=20, random_state=0).fit(Xtr, ytr)
    assert net.score(Xte, yte) > 0.9
    assert net.predict_proba(Xte).shape == (len(yte), 10)
    np.testing.assert_allclose(net.predict_proba(Xte).sum(axis=1), 1, rtol=1e-5)


def test_regressors_learn():
    rng = np.random.RandomState(0)
    X = rng.uniform(-2, 2, (300, 3))
    y = np.sin(X[:, 0]) + X[:, 1] * X[:, 2]
    reg = MLPRegressor(hidden_layer_sizes=(32, 32), learning_rate_init=0.01, max_iter=200,
                       random_state=0).fit(X, y)
    assert reg.score(X, y) > 0.9
    assert reg.predict(X).shape == (300,)
    net = NeuralNetRegressor(layers=[L.Dense(32), L.Tanh(), L.Dense(32), L.Tanh()],
                             learning_rate=0.01, max_epochs=100, batch_size=32,
                             random_state=0).fit(X, np.c_[y, -y])
    assert net.score(X, np.c_[y, -y]) > 0.9
    assert net.predict(X).shape == (300, 2)
    counts = rng.poisson(np.exp(0.5 * X[:, 0]))
    pois = NeuralNetRegressor(loss="poisson", layers=[L.Dense(8), L.Tanh()], max_epochs=60,
                              learning_rate=0.01, random_state=0).fit(X, counts)
    assert pois.out_activation_ == "exp" and (pois.predict(X) > 0).all()


def test_multilabel():
    rng = np.random.RandomState(0)
    X = rng.randn(300, 6)
    Y = np.c_[X[:, 0] > 0, X[:, 1] + X[:, 2] > 0, X[:, 3] * X[:, 4] > 0].astype(int)
    for est in (MLPClassifier(hidden_layer_sizes=(32,), max_iter=300, learning_rate_init=0.01,
                              random_state=0),
                NeuralNetClassifier(layers=[L.Dense(32), L.ReLU()], learning_rate=0.01,
                                    max_epochs=100, random_state=0)):
        est.fit(X, Y)
        pred = est.predict(X)
        assert pred.shape == Y.shape and pred.dtype.kind == "i"
        np.testing.assert_array_equal(est.classes_, [0, 1, 2])
        proba = est.predict_proba(X)
        assert proba.shape == Y.shape and not np.allclose(proba.sum(1), 1)
        np.testing.assert_array_equal(pred, (proba > 0.5).astype(int))
        assert est.score(X, Y) > 0.8   # subset accuracy
        assert est.out_activation_ == "logistic"


def test_string_labels_everywhere():
    X, y = _spirals(60)
    labels = np.array(["left", "right"], dtype=object)[y]
    clf = MLPClassifier(hidden_layer_sizes=(16,), solver="lbfgs", random_state=0)
    clf.fit(X, labels)
    assert list(clf.classes_) == ["left", "right"]
    assert set(clf.predict(X)) <= {"left", "right"}
    assert clf.score(X, labels) > 0.8
    three = np.array(["a", "b", "c"])[np.arange(len(y)) % 3]
    es = MLPClassifier(early_stopping=True, max_iter=5, random_state=0).fit(X, three)
    assert np.isfinite(es.validation_scores_).all()
    pf = MLPClassifier(solver="sgd", random_state=0)
    pf.partial_fit(X[:10], three[:10], classes=["a", "b", "c", "d"])
    pf.partial_fit(X[10:], three[10:])
    assert list(pf.classes_) == ["a", "b", "c", "d"]
    assert pf.predict_proba(X).shape == (len(X), 4)


def test_class_weight():
    rng = np.random.RandomState(0)
    X = rng.randn(400, 2)
    y = (X[:, 0] + 0.5 * rng.randn(400) > 1.3).astype(int)   # ~10 % positives
    params = dict(hidden_layer_sizes=(8,), max_iter=100, learning_rate_init=0.01, random_state=0)
    plain = MLPClassifier(**params).fit(X, y)
    balanced = MLPClassifier(class_weight="balanced", **params).fit(X, y)
    recall = lambda m: (m.predict(X)[y == 1] == 1).mean()  # noqa: E731
    assert recall(balanced) > recall(plain)
    # a dict is exactly a multiplication of the sample weights
    a = MLPClassifier(class_weight={1: 3.0}, **params).fit(X, y)
    b = MLPClassifier(**params).fit(X, y, sample_weight=np.where(y == 1, 3.0, 1.0))
    np.testing.assert_allclose(a.loss_curve_, b.loss_curve_, rtol=1e-12)
    sw = np.ones(400)
    MLPClassifier(class_weight={0: 2.0, 1: 1.0}, **params).fit(X, y, sample_weight=sw)
    np.testing.assert_array_equal(sw, 1.0)   # the user's weights are not modified
    with pytest.raises(ValueError, match="not in class_weight"):
        MLPClassifier(class_weight={5: 1.0}, **params).fit(X, y)


@pytest.mark.parametrize("Est", [MLPClassifier, MLPRegressor])
def test_mlp_dtype(Est):
    X, y = _spirals(50)
    m32 = Est(hidden_layer_sizes=(5,), max_iter=20, random_state=0).fit(X.astype(np.float32), y)
    assert m32.network_.dtype == np.float32
    assert all(c.dtype == np.float32 for c in m32.coefs_ + m32.intercepts_)
    out = m32.predict_proba(X) if Est is MLPClassifier else m32.predict(X)
    assert out.dtype == np.float32
    m64 = Est(hidden_layer_sizes=(5,), max_iter=20, random_state=0).fit(X.astype(np.float16), y)
    assert m64.network_.dtype == np.float64
    forced = Est(hidden_layer_sizes=(5,), max_iter=20, random_state=0, dtype="float32")
    assert forced.fit(X, y).network_.dtype == np.float32
    # float32 and float64 fits agree closely (same initial weights, same updates)
    p32 = Est(hidden_layer_sizes=(5,), max_iter=20, random_state=0, dtype="float32").fit(X, y)
    p64 = Est(hidden_layer_sizes=(5,), max_iter=20, random_state=0, dtype="float64").fit(X, y)
    np.testing.assert_allclose(p32.loss_curve_, p64.loss_curve_, rtol=1e-3)


def test_neural_net_dtype():
    X, y = _spirals(50)
    assert NeuralNetClassifier(max_epochs=2).fit(X, y).network_.dtype == np.float32
    assert NeuralNetClassifier(max_epochs=2, dtype=None).fit(X, y).network_.dtype == np.float64
    assert NeuralNetClassifier(max_epochs=2, dtype="float64").fit(X, y).predict_proba(X).dtype \
        == np.float64


@pytest.mark.parametrize("Est", [MLPClassifier, NeuralNetClassifier])
def test_warm_start(Est):
    X, y = _spirals(80)
    kw = dict(max_iter=5) if Est is MLPClassifier else dict(max_epochs=5)
    est = Est(warm_start=True, random_state=0, **kw).fit(X, y)
    curve, params = list(est.loss_curve_), est.network_.params.copy()
    net = est.network_
    est.fit(X, y)
    assert est.network_ is net                       # trained further, not rebuilt
    assert est.n_iter_ == 5 and len(est.loss_curve_) == 10 and est.t_ == 10 * len(X)
    assert est.loss_curve_[:5] == curve
    assert not np.array_equal(params, est.network_.params)
    cold = Est(random_state=0, **kw).fit(X, y)
    cold.fit(X, y)
    assert len(cold.loss_curve_) == 5                # without warm_start: from scratch
    with pytest.raises(ValueError, match="warm_start can only be used"):
        est.fit(X, np.where(y == 1, 2, y))


@pytest.mark.parametrize("Est", [MLPClassifier, NeuralNetClassifier])
def test_partial_fit_classes(Est):
    X, y = _spirals(60)
    est = Est(random_state=0) if Est is NeuralNetClassifier else Est(solver="sgd",
                                                                     random_state=0)
    with pytest.raises(ValueError, match="classes must be passed"):
        est.partial_fit(X, y)
    est.partial_fit(X[y == 0], y[y == 0], classes=[0, 1])   # one class in the first batch
    assert est.n_iter_ == 1 and list(est.classes_) == [0, 1]
    for _ in range(3):
        est.partial_fit(X, y)
    assert len(est.loss_curve_) == 4 and est.t_ == (y == 0).sum() + 3 * len(y)
    with pytest.raises(ValueError, match="not the same as on last call"):
        est.partial_fit(X, y, classes=[0, 1, 2])
    with pytest.raises(ValueError, match="classes not in"):
        est.partial_fit(X, np.where(y == 1, 7, y))


def test_partial_fit_equals_fit_without_shuffle():
    X, y = _spirals(60)
    params = dict(hidden_layer_sizes=(10,), solver="sgd", learning_rate_init=0.1,
                  random_state=1, shuffle=False, batch_size=16)
    full = MLPClassifier(max_iter=7, tol=0, **params).fit(X, y)
    inc = MLPClassifier(**params)
    for _ in range(7):
        inc.partial_fit(X, y, classes=[0, 1])
    np.testing.assert_allclose(inc.loss_curve_, full.loss_curve_, rtol=1e-12)
    np.testing.assert_array_equal(inc.predict_proba(X), full.predict_proba(X))


def test_early_stopping_restores_best_weights():
    X, y = _spirals(100)
    clf = MLPClassifier(hidden_layer_sizes=(32,), learning_rate_init=0.05, early_stopping=True,
                        validation_fraction=0.3, n_iter_no_change=5, max_iter=200,
                        random_state=0).fit(X, y)
    assert clf.best_loss_ is None
    assert len(clf.validation_scores_) == clf.n_iter_ < 200
    assert clf.best_validation_score_ == max(clf.validation_scores_)
    np.testing.assert_array_equal(clf.network_.params, clf._best_params)
    reg = NeuralNetRegressor(early_stopping=True, max_epochs=30, random_state=0).fit(X, X[:, 0])
    assert reg.best_validation_score_ == max(reg.validation_scores_)


def test_verbose_lines(capsys):
    X, y = _spirals(40)
    MLPClassifier(max_iter=2, verbose=True, early_stopping=True, random_state=0).fit(X, y)
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("Iteration 1, loss = ") and out[1].startswith("Validation score: ")
    MLPClassifier(solver="sgd", tol=10, n_iter_no_change=1, max_iter=20, verbose=True).fit(X, y)
    assert "Training loss did not improve more than tol=10.000000 for 1 consecutive epochs. " \
           "Stopping." in capsys.readouterr().out
    NeuralNetClassifier(max_epochs=3, verbose=True, early_stopping=True).fit(X, y)
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 3
    assert lines[0].startswith("Epoch 1/3, loss = ") and "validation score = " in lines[0]
    assert lines[0].endswith("s")


def test_neural_net_never_mutates_layers_or_optimizer():
    X, y = _spirals(40)
    body = [L.Dense(8), L.ReLU()]
    opt = Adam(learning_rate=0.01)
    clf = NeuralNetClassifier(layers=body, optimizer=opt, max_epochs=3, random_state=0)
    clf.fit(X, y)
    assert body[0].input_shape is None and body[0].params == []
    assert opt.t == 0 and opt._state is None
    assert clf.layers_[0] is not body[0] and len(clf.layers_) == 3
    assert clf.layers is body and clf.optimizer is opt
    clf2 = NeuralNetClassifier(layers=body, optimizer=opt, max_epochs=3, random_state=0).fit(X, y)
    np.testing.assert_array_equal(clf2.network_.params, clf.network_.params)


@pytest.mark.parametrize("name", ["sgd", "momentum", "nesterov", "adagrad", "rmsprop", "adam"])
def test_neural_net_optimizer_names(name):
    X, y = _spirals(60)
    lr = 0.05 if name in ("sgd", "momentum", "nesterov", "adagrad") else 0.01
    clf = NeuralNetClassifier(layers=[L.Dense(32), L.Tanh()], optimizer=name, learning_rate=lr,
                              max_epochs=40, batch_size=16, random_state=0).fit(X, y)
    assert clf.loss_curve_[-1] < clf.loss_curve_[0]


def test_neural_net_losses_and_clipping():
    X, y = _spirals(60)
    soft = NeuralNetClassifier(loss="softmax_cross_entropy", max_epochs=5, random_state=0)
    soft.fit(X, y)
    assert soft.out_activation_ == "softmax" and soft.network_.output_shape == (2,)
    assert soft.predict_proba(X).shape == (len(X), 2)
    y3 = np.arange(len(y)) % 3
    ovr = NeuralNetClassifier(loss="binary_cross_entropy", max_epochs=5, random_state=0)
    ovr.fit(X, y3)
    np.testing.assert_allclose(ovr.predict_proba(X).sum(axis=1), 1, rtol=1e-5)
    free = NeuralNetClassifier(max_epochs=3, learning_rate=0.1, random_state=0).fit(X, y)
    clipped = NeuralNetClassifier(max_epochs=3, learning_rate=0.1, random_state=0,
                                  clip_grad_norm=1e-3, optimizer="sgd").fit(X, y)
    assert clipped.network_.clip_grad_norm == 1e-3
    assert not np.allclose(free.loss_curve_, clipped.loss_curve_)


def test_cnn_classifier():
    if not hasattr(L, "Conv2D"):
        pytest.skip("nnc.layers has no Conv2D")
    X, y = _digits(None)
    X = X.astype(np.float32)
    body = [L.Conv2D(8, 3, padding=1), L.ReLU(), L.MaxPool2D(2), L.Flatten(), L.Dense(32),
            L.ReLU()]
    clf = NeuralNetClassifier(layers=body, input_shape=(1, 8, 8), learning_rate=0.01,
                              max_epochs=5, random_state=0)
    clf.fit(X[:1200], y[:1200])            # 2-D X reshaped through input_shape
    assert clf.network_.input_shape == (1, 8, 8)
    assert clf.score(X[1200:], y[1200:]) > 0.85
    same = clf.predict(X[1200:].reshape(-1, 1, 8, 8))
    np.testing.assert_array_equal(same, clf.predict(X[1200:]))
    assert nnc.check_gradients(clf, X[:6], y[:6]) < 1e-5


def test_recurrent_classifier():
    if not hasattr(L, "LSTM"):
        pytest.skip("nnc.layers has no LSTM")
    rng = np.random.RandomState(0)
    X = rng.randn(200, 6, 2).astype(np.float32)
    y = (X[:, :, 0].sum(axis=1) > 0).astype(int)
    clf = NeuralNetClassifier(layers=[L.LSTM(16)], learning_rate=0.02, max_epochs=40,
                              batch_size=32, random_state=0).fit(X, y)
    assert clf.score(X, y) > 0.85


@pytest.mark.parametrize("make", [
    lambda: MLPClassifier(hidden_layer_sizes=(6, 4), activation="tanh", max_iter=5),
    lambda: MLPClassifier(hidden_layer_sizes=(6,), activation="logistic", max_iter=5),
    lambda: MLPRegressor(hidden_layer_sizes=(6,), max_iter=5),
    lambda: MLPRegressor(hidden_layer_sizes=(6,), max_iter=5, loss="poisson"),
    lambda: NeuralNetClassifier(layers=[L.Dense(6), L.LeakyReLU()], max_epochs=2),
], ids=["mlp-softmax", "mlp-binary", "mlp-reg", "mlp-poisson", "nn-binary"])
def test_check_gradients_on_fitted_estimators(make):
    rng = np.random.RandomState(0)
    X = rng.randn(30, 4)
    est = make()
    if isinstance(est, MLPRegressor):
        y = np.abs(X[:, 0]) + 0.5
    elif isinstance(est, NeuralNetClassifier) or est.activation == "logistic":
        y = np.where(X[:, 0] > 0, "yes", "no")
    else:
        y = np.arange(30) % 3
    est.set_params(random_state=0).fit(X, y)
    assert nnc.check_gradients(est, X[:8], y[:8]) < 1e-5
    assert nnc.check_gradients(est, X[:8], y[:8], sample_weight=np.arange(1.0, 9.0)) < 1e-5


def test_coefs_are_views_of_the_buffer():
    X, y = _spirals(40)
    clf = MLPClassifier(hidden_layer_sizes=(5,), max_iter=3, random_state=0).fit(X, y)
    assert clf.n_layers_ == 3 and clf.n_outputs_ == 1 and clf.out_activation_ == "logistic"
    assert [c.shape for c in clf.coefs_] == [(2, 5), (5, 1)]
    for a in clf.coefs_ + clf.intercepts_:
        assert np.shares_memory(a, clf.network_.params)
    before = clf.predict_proba(X)
    clf.coefs_[1][...] = 0
    clf.intercepts_[1][...] = 0
    np.testing.assert_allclose(clf.predict_proba(X), 0.5)
    assert not np.allclose(before, 0.5)


def test_assigned_coefs_are_used_by_predict():
    X, y = _spirals(40)
    clf = MLPClassifier(hidden_layer_sizes=(5,), max_iter=3, random_state=0).fit(X, y)
    clf.coefs_ = [np.zeros_like(c) for c in clf.coefs_]       # new arrays, not views
    clf.intercepts_[1] = np.array([2.0])
    np.testing.assert_allclose(clf.predict_proba(X)[:, 1], 1 / (1 + np.exp(-2.0)))
    assert all(np.shares_memory(c, clf.network_.params) for c in clf.coefs_)
    clf.coefs_[0] = np.zeros((3, 5))
    with pytest.raises(ValueError, match="shape"):
        clf.predict(X)
