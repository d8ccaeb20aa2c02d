"""nnc.callbacks: EarlyStopping, Checkpoint (atomic files, a crash while writing), the learning
rate schedules step by step against their formulas, ProgressLine's output."""
import glob
import io
import math
import os
import re
import subprocess
import sys
import textwrap
import warnings

import numpy as np
import pytest

import nnc
from nnc import MLPClassifier, MLPRegressor, NeuralNetClassifier, NeuralNetRegressor
from nnc._compat import ConvergenceWarning
from nnc.callbacks import Checkpoint, EarlyStopping, LearningRateScheduler, ProgressLine
from nnc.layers import Dense, Dropout, ReLU
from tests.callbacks._recording import Recorder


def _data(n=90, seed=0):
    rng = np.random.RandomState(seed)
    X = rng.randn(n, 4)
    return X, (X[:, 0] + X[:, 1] > 0).astype(int)


class LearningRates(Recorder):
    """Reads the optimizer's rate when each epoch ends (the rate the epoch ran with)."""

    def __init__(self):
        super().__init__()
        self.rates = []

    def on_fit_task_end(self, estimator, context, *, X=None, y=None, metadata=None,
                        fitted_estimator=None):
        if context.task_name == "epoch":
            self.rates.append(fitted_estimator._optimizer.learning_rate)
        return super().on_fit_task_end(estimator, context, fitted_estimator=fitted_estimator)


# ---------------------------------------------------------------- EarlyStopping
def test_early_stopping_stops_after_patience_and_restores_the_best_epoch():
    X, y = _data()
    rec = Recorder()
    stop = EarlyStopping(patience=3)              # 'auto': the validation loss
    est = NeuralNetClassifier([Dense(16), ReLU()], learning_rate=0.05, max_epochs=200,
                              batch_size=16, random_state=0)
    est.set_callbacks(rec, stop).fit(X[:60], y[:60], X_val=X[60:], y_val=y[60:])
    curve = est.validation_loss_curve_
    best = int(np.argmin(curve))
    assert stop.best_epoch_ == best and stop.best_ == curve[best]
    assert stop.stopped_epoch_ == len(curve) - 1 == best + 3 < 199
    assert min(curve[best + 1:]) >= curve[best]
    np.testing.assert_array_equal(est.network_.params, rec.params[best])   # the best weights


def test_early_stopping_monitors_and_restores_on_ctrl_c():
    X, y = _data()
    rec = Recorder(fail_at=("end", "epoch", 6), exc=KeyboardInterrupt)
    stop = EarlyStopping(monitor="val_score", patience=50)
    est = MLPClassifier((8,), learning_rate_init=0.05, max_iter=100, early_stopping=True,
                        n_iter_no_change=1000, random_state=0)
    with pytest.warns(UserWarning, match="interrupted"):
        est.set_callbacks(stop, rec).fit(X, y)
    scores = est.validation_scores_
    assert len(scores) == 7 and stop.stopped_epoch_ is None
    first_best = int(np.argmax(scores))
    assert stop.best_epoch_ == first_best
    np.testing.assert_array_equal(est.network_.params, rec.params[first_best])


def test_early_stopping_needs_a_validation_set_and_epochs():
    X, y = _data()
    with pytest.raises(ValueError, match="needs a validation set"):
        MLPClassifier((4,), max_iter=3).set_callbacks(EarlyStopping("val_loss")).fit(X, y)
    with pytest.raises(ValueError, match="has no epochs"):
        MLPClassifier(solver="lbfgs").set_callbacks(EarlyStopping()).fit(X, y)
    with pytest.raises(ValueError, match="monitor"):
        EarlyStopping(monitor="accuracy")
    with pytest.raises(ValueError, match="patience"):
        EarlyStopping(patience=0)


# ---------------------------------------------------------------- Checkpoint
def test_checkpoint_keeps_the_best_epoch_and_continues_exactly(tmp_path):
    X, y = _data()
    path = tmp_path / "best.npz"
    rec = Recorder()
    ck = Checkpoint(path)
    est = NeuralNetRegressor([Dense(8), ReLU()], learning_rate=0.05, max_epochs=12,
                             batch_size=30, random_state=0, dtype="float64")
    yr = X[:, 0] - X[:, 1]
    est.set_callbacks(rec, ck).fit(X[:60], yr[:60], X_val=X[60:], y_val=yr[60:])
    best = int(np.argmin(est.validation_loss_curve_))
    assert ck.saved_epoch_ == best and ck.best_ == est.validation_loss_curve_[best]
    saved = nnc.load(path)
    np.testing.assert_array_equal(saved.network_.params, rec.params[best])
    assert saved.loss_curve_ == est.loss_curve_[:best + 1]
    assert not hasattr(saved, "_skl_callbacks")            # behaviour is not saved
    # one file per epoch with {epoch}
    folder = tmp_path / "epochs"
    folder.mkdir()
    rec = Recorder()
    ck = Checkpoint(str(folder / "e{epoch}.npz"), save_best_only=False)
    est = MLPClassifier((6,), max_iter=3, random_state=0).set_callbacks(rec, ck)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        est.fit(X, y)
    assert sorted(os.listdir(folder)) == ["e0.npz", "e1.npz", "e2.npz"]
    for epoch in range(3):
        saved = nnc.load(folder / f"e{epoch}.npz")
        assert saved.n_iter_ == epoch + 1 and saved.coefs_[0].shape == (4, 6)
        np.testing.assert_array_equal(saved.network_.params, rec.params[epoch])
        assert saved._optimizer.state_dict()["t"] == (epoch + 1) * 1   # one batch per epoch


def test_checkpoint_write_that_fails_keeps_the_previous_file(tmp_path, monkeypatch):
    X, y = _data()
    path = tmp_path / "model.npz"
    est = MLPClassifier((6,), max_iter=8, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        est.set_callbacks(Checkpoint(path, save_best_only=False)).fit(X, y)
    before = path.read_bytes()
    real = np.savez

    def dies_half_way(fh, **arrays):
        real(fh, **arrays)
        fh.seek(fh.tell() // 2)
        fh.truncate()
        raise OSError("disk full")

    monkeypatch.setattr(np, "savez", dies_half_way)
    est2 = MLPClassifier((6,), max_iter=8, random_state=1, warm_start=True)
    with pytest.raises(OSError, match="disk full"):
        est2.set_callbacks(Checkpoint(path, save_best_only=False)).fit(X, y)
    assert path.read_bytes() == before and os.listdir(tmp_path) == ["model.npz"]
    assert nnc.load(path).n_iter_ == 8
    assert not hasattr(est2, "network_")               # the failed fit left nothing either


_CRASH = textwrap.dedent("""
    import os, sys, warnings
    import numpy as np
    import nnc
    from nnc.callbacks import Checkpoint
    path, crash_at = sys.argv[1], int(sys.argv[2])
    real, calls = np.savez, [0]
    def savez(fh, **arrays):               # the process dies half way through a write
        calls[0] += 1
        if calls[0] == crash_at:
            real(fh, **arrays)
            fh.flush()
            os.ftruncate(fh.fileno(), fh.tell() // 2)
            os._exit(3)
        real(fh, **arrays)
    np.savez = savez
    warnings.simplefilter("ignore")
    rng = np.random.RandomState(0)
    X = rng.randn(80, 4)
    y = (X[:, 0] > 0).astype(int)
    nnc.MLPClassifier((5,), max_iter=10, random_state=0).set_callbacks(
        Checkpoint(path, save_best_only=False)).fit(X, y)
""")


def test_checkpoint_crash_mid_write_leaves_the_previous_file_loadable(tmp_path):
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env = dict(os.environ)
    env["PYTHONPATH"] = root + os.pathsep + env.get("PYTHONPATH", "")
    path = str(tmp_path / "ck.npz")
    out = subprocess.run([sys.executable, "-c", _CRASH, path, "4"], capture_output=True,
                         text=True, env=env, timeout=300)
    assert out.returncode == 3, out.stderr[-2000:]
    model = nnc.load(path)                      # the third epoch's file, whole
    assert model.n_iter_ == 3 and len(model.loss_curve_) == 3
    leftovers = glob.glob(str(tmp_path / ".nnc-*.tmp"))
    assert len(leftovers) == 1                  # the interrupted write, never renamed
    with pytest.raises(ValueError):
        nnc.load(leftovers[0])


# ---------------------------------------------------------------- LearningRateScheduler
_LR0 = 0.05


@pytest.mark.parametrize("schedule, kwargs, formula", [
    ("step", dict(step_size=3, gamma=0.5), lambda e: _LR0 * 0.5 ** (e // 3)),
    ("exponential", dict(gamma=0.8), lambda e: _LR0 * 0.8 ** e),
    ("cosine", dict(eta_min=0.001), lambda e: 0.001 + (_LR0 - 0.001)
     * (1 + math.cos(math.pi * e / 8)) / 2),
    ("cosine", dict(T_max=4), lambda e: _LR0 * (1 + math.cos(math.pi * e / 4)) / 2),
    (lambda e: 0.01 / (1 + e), {}, lambda e: 0.01 / (1 + e)),
])
@pytest.mark.parametrize("Est", ["mlp", "nn-dropout"])
def test_schedules_follow_their_formulas_epoch_by_epoch(schedule, kwargs, formula, Est):
    X, y = _data()
    if Est == "mlp":   # the compiled epoch loop
        est = MLPClassifier((6,), solver="sgd", learning_rate_init=_LR0, max_iter=8,
                            n_iter_no_change=100, random_state=0)
    else:              # the Python batch loop
        est = NeuralNetClassifier([Dense(6), Dropout(0.1)], optimizer="sgd",
                                  learning_rate=_LR0, max_epochs=8, random_state=0)
    sched = LearningRateScheduler(schedule, **kwargs)
    probe = LearningRates()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        est.set_callbacks(sched, probe).fit(X, y)
    want = [formula(e) for e in range(8)]
    np.testing.assert_allclose(sched.learning_rates_, want, rtol=1e-12)
    np.testing.assert_allclose(probe.rates, want, rtol=1e-12)


def test_plateau_lowers_the_rate_after_patience_epochs():
    X, y = _data()
    sched = LearningRateScheduler("plateau", monitor="loss", patience=2, gamma=0.5,
                                  min_delta=1e9, min_lr=0.003)     # never improves after the 1st
    est = MLPClassifier((6,), learning_rate_init=0.02, max_iter=9, n_iter_no_change=100,
                        random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        est.set_callbacks(sched).fit(X, y)
    assert sched.learning_rates_ == [0.02, 0.02, 0.02, 0.01, 0.01, 0.005, 0.005, 0.003, 0.003]


def test_the_rate_reaches_the_weights_and_continues_over_partial_fit():
    X, y = _data()
    # rate 0 from the second epoch on: plain SGD leaves the weights as they were after epoch 1
    rec = Recorder()
    est = MLPClassifier((6,), solver="sgd", momentum=0.0, learning_rate_init=0.1, max_iter=4,
                        n_iter_no_change=100, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        est.set_callbacks(LearningRateScheduler(lambda e: 0.1 if e == 0 else 0.0), rec).fit(X, y)
    for p in rec.params[1:]:
        np.testing.assert_array_equal(p, rec.params[0])
    # the epoch count runs over the model's life
    sched = LearningRateScheduler("exponential", gamma=0.5)
    est = NeuralNetClassifier([Dense(4)], learning_rate=0.04, random_state=0)
    est.set_callbacks(sched)
    rates = []
    for _ in range(3):
        est.partial_fit(X, y, classes=[0, 1])
        rates += sched.learning_rates_
    assert rates == [0.04, 0.02, 0.01]


def test_scheduler_checks():
    with pytest.raises(ValueError, match="schedule must be"):
        LearningRateScheduler("linear")
    with pytest.raises(ValueError, match="gamma"):
        LearningRateScheduler("plateau", gamma=2.0)
    X, y = _data()
    est = NeuralNetClassifier([Dense(4)], random_state=0)
    with pytest.raises(ValueError, match="needs T_max"):
        est.set_callbacks(LearningRateScheduler("cosine")).partial_fit(X, y, classes=[0, 1])
    with pytest.raises(ValueError, match="finite and >= 0"):
        est.set_callbacks(LearningRateScheduler(lambda e: -1.0)).fit(X, y)


# ---------------------------------------------------------------- ProgressLine
class _Terminal(io.StringIO):
    def isatty(self):
        return True


def test_progress_line_in_a_log_and_on_a_terminal():
    X, y = _data()
    log = io.StringIO()
    est = MLPClassifier((6,), max_iter=7, early_stopping=True, n_iter_no_change=100,
                        random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        est.set_callbacks(ProgressLine(stream=log, every=3)).fit(X, y)
    lines = log.getvalue().splitlines()
    assert [line.split()[3] for line in lines] == ["3/7", "6/7", "7/7"]
    assert all(re.match(r"MLPClassifier fit \[[#-]{20}\] \d/7 loss \S+ val_loss \S+ "
                        r"val_score \S+ lr 0.001 \d:\d\d:\d\d$", line) for line in lines), lines
    term = _Terminal()
    NeuralNetClassifier([Dense(4), Dropout(0.1)], max_epochs=2, batch_size=30,
                        random_state=0).set_callbacks(ProgressLine(stream=term, refresh=0.0)).fit(X, y)
    text = term.getvalue()
    assert text.endswith("\n") and text.count("\n") == 1             # one line, redrawn
    assert text.count("\r") == 2 * 3 + 2                              # 3 batches + 1 epoch, x2
    assert "(epoch 2: batch 3/3)" in text and "2/2 loss" in text

