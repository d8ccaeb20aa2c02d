"""The callback protocol on nnc's estimators: which hooks run, how often, with what context and
data; stopping from a callback; a failing callback keeps the previous model; Ctrl-C in a hook;
the behaviour without scikit-learn (a subprocess that blocks it)."""
import os
import subprocess
import sys
import textwrap
import warnings

import numpy as np
import pytest

from nnc import MLPClassifier, MLPRegressor, NeuralNetClassifier, NeuralNetRegressor
from nnc._compat import ConvergenceWarning
from nnc.layers import Dense, Dropout, ReLU
from tests.callbacks._recording import Recorder


def _data(n=60, seed=0):
    rng = np.random.RandomState(seed)
    X = rng.randn(n, 4)
    return X, np.where(X[:, 0] + X[:, 1] > 0, "pos", "neg")


def _quiet():
    warnings.simplefilter("ignore", ConvergenceWarning)


_ESTIMATORS = {
    # compiled whole-epoch loop: epochs are leaf tasks
    "mlp-clf": (lambda: MLPClassifier((5,), max_iter=4, batch_size=16, random_state=0), 0),
    "mlp-reg": (lambda: MLPRegressor(hidden_layer_sizes=(5,), max_iter=4, batch_size=16, random_state=0), 0),
    "nn-clf": (lambda: NeuralNetClassifier([Dense(5), ReLU()], max_epochs=4, batch_size=16,
                                           random_state=0), 0),
    # Dropout: the Python batch loop, one batch task per mini-batch
    "nn-reg-dropout": (lambda: NeuralNetRegressor([Dense(5), ReLU(), Dropout(0.1)],
                                                  max_epochs=4, batch_size=16,
                                                  random_state=0), 4),
}


@pytest.mark.parametrize("name", list(_ESTIMATORS))
def test_hooks_run_once_per_task_with_their_context(name):
    make, batches = _ESTIMATORS[name]
    X, y = _data()
    if "reg" in name:
        y = X[:, 0] - X[:, 2]
    sw = np.linspace(0.5, 1.5, X.shape[0])
    rec = Recorder()
    with warnings.catch_warnings():
        _quiet()
        est = make().set_callbacks(rec).fit(X, y, sample_weight=sw)
    kinds = [c[:2] for c in rec.calls]
    assert kinds[:2] == [("setup", "fit"), ("begin", "fit")]
    assert kinds[-2:] == [("end", "fit"), ("teardown", "fit")]
    epochs = rec.hooks("end", "epoch")
    assert est.n_iter_ == 4 and len(epochs) == 4 and len(rec.hooks("begin", "epoch")) == 4
    assert [c[2] for c in epochs] == [0, 1, 2, 3]
    root = rec.hooks("end", "fit")[0][3]
    assert root["max_subtasks"] == 4 and root["parent"] is None
    for k, (_, _, _, info) in enumerate(epochs):
        assert info["parent"] == "fit" and info["max_subtasks"] == batches
        assert info["n_iter_"] == k + 1 and len(info["loss_curve_"]) == k + 1
        assert info["loss_curve_"] == est.loss_curve_[:k + 1]
        assert info["X"] == X.shape
        np.testing.assert_array_equal(info["y"], y)
        np.testing.assert_allclose(info["metadata"]["sample_weight"], sw, rtol=1e-6)
    # fitted_estimator predicts with the weights of that epoch; the last is the final model
    np.testing.assert_array_equal(rec.params[-1], est.network_.params)
    last = epochs[-1][3]["fitted"]
    np.testing.assert_array_equal(last.predict(X), est.predict(X))
    assert len(rec.hooks("end", "batch")) == 4 * batches == len(rec.hooks("begin", "batch"))
    if batches:
        assert [c[2] for c in rec.hooks("end", "batch")[:batches]] == list(range(batches))


def test_partial_fit_and_lbfgs_tasks():
    X, y = _data()
    rec = Recorder()
    est = MLPClassifier((5,), random_state=0).set_callbacks(rec)
    est.partial_fit(X, y, classes=["neg", "pos"])
    est.partial_fit(X, y)
    assert [c[:2] for c in rec.calls].count(("setup", "partial_fit")) == 2
    assert len(rec.hooks("end", "epoch")) == 2
    assert all(c[3]["max_subtasks"] == 1 for c in rec.hooks("end", "partial_fit"))
    assert [len(c[3]["loss_curve_"]) for c in rec.hooks("end", "epoch")] == [1, 2]

    rec = Recorder()
    with warnings.catch_warnings():
        _quiet()
        est = MLPClassifier((5,), solver="lbfgs", max_iter=6, random_state=0)
        est.set_callbacks(rec).fit(X, y)
    iters = rec.hooks("end", "lbfgs-iter")
    assert len(iters) == est.n_iter_ + 1 == len(rec.hooks("begin", "lbfgs-iter"))
    assert rec.hooks("end", "fit")[0][3]["max_subtasks"] == 7


def test_lbfgs_stops_when_a_callback_asks():
    X, y = _data()
    rec = Recorder(stop_at=("lbfgs-iter", 2))
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)    # a requested stop is no failure
        est = MLPClassifier((5,), solver="lbfgs", max_iter=50, random_state=0)
        est.set_callbacks(rec).fit(X, y)
    assert est.n_iter_ == 3 and len(rec.hooks("end", "lbfgs-iter")) == 4


def test_a_callback_stops_training_after_an_epoch_or_a_batch():
    X, y = _data()
    rec = Recorder(stop_at=("epoch", 1))
    est = MLPClassifier((5,), max_iter=50, random_state=0).set_callbacks(rec).fit(X, y)
    assert est.n_iter_ == 2 and len(est.loss_curve_) == 2 and est.t_ == 2 * X.shape[0]
    # a stop at a batch task ends that epoch after the batch; the epochs go on
    rec = Recorder(stop_at=("batch", 1))
    est = NeuralNetClassifier([Dense(5), Dropout(0.1)], max_epochs=3, batch_size=16,
                              random_state=0).set_callbacks(rec).fit(X, y)
    assert est.n_iter_ == 3 and est.t_ == 3 * 32
    assert len(rec.hooks("end", "batch")) == 6
    assert est._optimizer.state_dict()["t"] == 6


@pytest.mark.parametrize("warm_start", [False, True])
@pytest.mark.parametrize("where", [("end", "epoch", 1), ("begin", "epoch", 2), ("end", "fit", 0),
                                   ("end", "batch", 1)])
def test_a_failing_callback_leaves_the_previous_model(where, warm_start):
    X, y = _data()
    est = NeuralNetClassifier([Dense(5), Dropout(0.1)], max_epochs=3, batch_size=16,
                              random_state=0, warm_start=warm_start).fit(X, y)
    before = (est.network_, est.network_.params.copy(), list(est.loss_curve_), est.n_iter_,
              est.predict_proba(X), est._optimizer.state_dict()["t"])
    rec = Recorder(fail_at=where)
    with pytest.raises(RuntimeError, match="callback failed"):
        est.set_callbacks(rec).fit(X[::-1], y[::-1])
    assert est.network_ is before[0]
    np.testing.assert_array_equal(est.network_.params, before[1])
    assert est.loss_curve_ == before[2] and est.n_iter_ == before[3]
    np.testing.assert_array_equal(est.predict_proba(X), before[4])
    assert est._optimizer.state_dict()["t"] == before[5]
    assert rec.calls[-1][0] == "teardown"          # torn down all the same
    assert "_callback_fit_ctx" not in est.__dict__


def test_ctrl_c_in_a_hook_keeps_the_model_trained_so_far():
    X, y = _data()
    rec = Recorder(fail_at=("end", "epoch", 2), exc=KeyboardInterrupt)
    with pytest.warns(UserWarning, match="interrupted"):
        est = MLPClassifier((5,), max_iter=20, random_state=0).set_callbacks(rec).fit(X, y)
    assert est.n_iter_ == 3 and len(est.loss_curve_) == 3
    np.testing.assert_array_equal(est.network_.params, rec.params[-1])
    assert [c[:2] for c in rec.calls[-2:]] == [("end", "fit"), ("teardown", "fit")]


def test_set_callbacks_checks_the_protocol():
    est = MLPClassifier()
    with pytest.raises(TypeError, match="FitCallback protocol"):
        est.set_callbacks(object())
    with pytest.raises(TypeError, match="FitCallback protocol"):
        est.set_callbacks(Recorder)                  # a class, not an instance
    rec = Recorder()
    assert est.set_callbacks(rec) is est and est._skl_callbacks == [rec]
    est.set_callbacks()
    assert "_skl_callbacks" not in est.__dict__


_NO_SKLEARN = textwrap.dedent("""
    import io, os, sys, tempfile, warnings
    class _Block:
        def find_spec(self, name, path=None, target=None):
            if name == "sklearn" or name.startswith("sklearn."):
                raise ImportError("scikit-learn is blocked for this test")
    sys.meta_path.insert(0, _Block())
    import numpy as np
    import nnc
    from nnc.callbacks import Checkpoint, EarlyStopping, LearningRateScheduler, ProgressLine
    from nnc._compat import SKLEARN_INSTALLED, SKLEARN_CALLBACKS, ConvergenceWarning
    assert not SKLEARN_INSTALLED and not SKLEARN_CALLBACKS and "sklearn" not in sys.modules
    warnings.simplefilter("ignore", ConvergenceWarning)
    rng = np.random.RandomState(0)
    X = rng.randn(120, 4)
    y = (X[:, 0] + X[:, 1] > 0).astype(int)
    out = io.StringIO()
    path = os.path.join(tempfile.mkdtemp(), "m.npz")
    stop = EarlyStopping(patience=2, min_delta=1.0)
    sched = LearningRateScheduler("exponential", gamma=0.5)
    est = nnc.NeuralNetClassifier(max_epochs=30, learning_rate=0.01, random_state=0)
    est.set_callbacks(stop, Checkpoint(path), sched, ProgressLine(stream=out))
    est.fit(X[:90], y[:90], X_val=X[90:], y_val=y[90:])
    assert est.n_iter_ == 3 and stop.stopped_epoch_ == 2 and stop.best_epoch_ == 0, (
        est.n_iter_, stop.stopped_epoch_)
    assert sched.learning_rates_ == [0.01, 0.005, 0.0025], sched.learning_rates_
    assert len(est.validation_loss_curve_) == 3 and out.getvalue().count("\\n") == 3
    saved = nnc.load(path)          # each epoch improved the validation loss: the last one
    assert saved.n_iter_ == 3 and saved.validation_loss_curve_ == est.validation_loss_curve_
    class ProgressBar:          # what scikit-learn's would look like
        def setup(self, estimator, context): pass
        def teardown(self, estimator, context): pass
        def on_fit_task_begin(self, estimator, context): pass
        def on_fit_task_end(self, estimator, context): pass
    ProgressBar.__module__ = "sklearn.callback._progressbar"
    try:
        est.set_callbacks(ProgressBar())
    except ImportError as exc:
        assert "scikit-learn >= 1.9" in str(exc) and "not installed" in str(exc), exc
    else:
        raise AssertionError("no ImportError")
    try:
        est.set_callbacks(object())
    except TypeError:
        pass
    else:
        raise AssertionError("no TypeError")
    print("OK")
""")


def test_nnc_callbacks_without_sklearn():
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env = dict(os.environ)
    env["PYTHONPATH"] = root + os.pathsep + env.get("PYTHONPATH", "")
    out = subprocess.run([sys.executable, "-c", _NO_SKLEARN], capture_output=True, text=True,
                         env=env, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.strip().endswith("OK")
