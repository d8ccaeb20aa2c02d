"""scikit-learn's callbacks (>= 1.9) on nnc's estimators: ProgressBar output, ScoringMonitor per
epoch, propagation from Pipeline and GridSearchCV (skipped without scikit-learn's callback API)."""
import re
import warnings

import numpy as np
import pytest

sk_callback = pytest.importorskip("sklearn.callback")
from sklearn.callback import ProgressBar, ScoringMonitor  # noqa: E402
from sklearn.model_selection import GridSearchCV  # noqa: E402
from sklearn.pipeline import make_pipeline  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402

from nnc import MLPClassifier, MLPRegressor, NeuralNetClassifier  # noqa: E402
from nnc._compat import ConvergenceWarning  # noqa: E402
from nnc.callbacks import EarlyStopping, ProgressLine  # noqa: E402
from nnc.layers import Dense, Dropout, ReLU  # noqa: E402
from tests.callbacks._recording import Recorder  # noqa: E402


class AutoRecorder(Recorder):
    """Propagated from meta-estimators (scikit-learn's AutoPropagatedCallback protocol)."""
    max_propagation_depth = None


def _data(n=80, seed=0):
    rng = np.random.RandomState(seed)
    X = rng.randn(n, 4)
    return X, (X[:, 0] + X[:, 1] > 0).astype(int)


def test_progress_bar_moves_with_the_epochs(capsys, monkeypatch):
    pytest.importorskip("rich")
    from rich.progress import Progress
    seen = []
    update = Progress.update

    def spy(self, task_id, *args, **kwargs):     # what the bar is told, in order
        if "completed" in kwargs:
            seen.append((self.tasks[task_id].description, kwargs["completed"],
                         kwargs.get("total", self.tasks[task_id].total)))
        return update(self, task_id, *args, **kwargs)

    monkeypatch.setattr(Progress, "update", spy)
    X, y = _data()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        MLPClassifier((5,), max_iter=6, random_state=0).set_callbacks(ProgressBar()).fit(X, y)
    out = capsys.readouterr().out
    assert re.search(r"MLPClassifier - fit", out) and "100%" in out
    root = [(done, total) for desc, done, total in seen if desc == "MLPClassifier - fit"]
    # one step per epoch, then 'finished'
    assert [done for done, _ in root[:6]] == [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]
    assert root[0][1] == 6


def test_progress_bar_nested_epochs_on_the_batch_loop(capsys):
    pytest.importorskip("rich")
    X, y = _data()
    NeuralNetClassifier([Dense(5), Dropout(0.1)], max_epochs=2, batch_size=20,
                        random_state=0).set_callbacks(ProgressBar()).fit(X, y)
    out = capsys.readouterr().out
    assert "NeuralNetClassifier - fit" in out
    assert "NeuralNetClassifier - epoch #0" in out and "NeuralNetClassifier - epoch #1" in out
    assert not re.search(r"\b[0-9]{1,2}%", out)          # every bar finished


def test_scoring_monitor_scores_every_epoch():
    X, y = _data()
    monitor = ScoringMonitor(scoring="accuracy")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        est = MLPClassifier((5,), max_iter=5, random_state=0).set_callbacks(monitor).fit(X, y)
    rows = monitor.get_logs().data
    epochs = [r for r in rows if r["task_name"] == "epoch"]
    assert len(epochs) == 5 and [r["task_id"] for r in epochs] == list(range(5))
    assert epochs[-1]["accuracy"] == est.score(X, y)          # the last epoch's model
    assert [r["accuracy"] for r in rows if r["task_name"] == "fit"] == [est.score(X, y)]


def test_scoring_monitor_regressor_with_validation_split():
    X, y = _data()
    y = X[:, 0] * 2.0 - X[:, 1]
    monitor = ScoringMonitor(scoring="r2")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        est = MLPRegressor(hidden_layer_sizes=(5,), max_iter=4, early_stopping=True,
                           random_state=0).set_callbacks(monitor).fit(X, y)
    epochs = [r for r in monitor.get_logs().data if r["task_name"] == "epoch"]
    assert len(epochs) == est.n_iter_ == 4
    assert all(np.isfinite(r["r2"]) for r in epochs)


def test_callbacks_propagate_from_grid_search():
    X, y = _data()
    rec = AutoRecorder()
    search = GridSearchCV(MLPClassifier((4,), max_iter=3, random_state=0),
                          {"alpha": [1e-4, 1e-2]}, cv=2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        search.set_callbacks(rec).fit(X, y)
    fits = [c for c in rec.hooks("end", "fit") if c[3]["parent"] is not None]
    assert len(fits) == 2 * 2 + 1                  # every candidate and fold, and the refit
    epochs = rec.hooks("end", "epoch")
    assert len(epochs) == 5 * 3
    assert all(c[3]["parent"] == "fit" for c in epochs)
    assert [c[:2] for c in rec.calls].count(("setup", "fit")) == 1     # set up once, at the top
    assert search.best_estimator_.n_iter_ == 3
    # nothing is left on the estimators
    assert "_parent_callback_ctx" not in search.best_estimator_.__dict__
    assert "_skl_callbacks" not in search.best_estimator_.__dict__


def test_progress_bar_and_progress_line_through_a_pipeline(capsys):
    pytest.importorskip("rich")
    X, y = _data()
    pipe = make_pipeline(StandardScaler(), NeuralNetClassifier(max_epochs=3, random_state=0))
    pipe.set_callbacks(ProgressBar(max_propagation_depth=None)).fit(X, y)
    out = capsys.readouterr().out
    assert re.search(r"Pipeline - fit-final-estimator \| NeuralNetClassifier - fit", out)
    pipe.set_callbacks(ProgressLine(every=1)).fit(X, y)
    lines = capsys.readouterr().out.splitlines()
    assert [line.split(" [")[0] for line in lines] == ["NeuralNetClassifier fit"] * 3
    assert lines[-1].split()[3] == "3/3"


def test_nnc_callbacks_beside_sklearn_ones_in_a_search():
    X, y = _data()
    stop = EarlyStopping(monitor="loss", patience=1, min_delta=10.0)    # stops after 2 epochs
    est = MLPClassifier((4,), max_iter=30, random_state=0).set_callbacks(stop)
    search = GridSearchCV(est, {"alpha": [1e-4, 1e-2]}, cv=2)
    search.set_callbacks(AutoRecorder()).fit(X, y)
    assert search.best_estimator_.n_iter_ == 2 and stop.stopped_epoch_ == 1
    assert search.best_estimator_._skl_callbacks == [stop]     # its own callbacks are kept
    with pytest.raises(TypeError, match="Set it on the nnc estimator itself"):
        make_pipeline(StandardScaler(), MLPClassifier()).set_callbacks(stop).fit(X, y)
