"""EarlyStopping and Checkpoint: act on a monitored curve after each epoch.

Both read the latest value of the monitored curve from ``fitted_estimator`` at the end of every
epoch task.  EarlyStopping keeps a copy of the best weights (one buffer the size of the
parameters, allocated at the first improvement and overwritten in place after) and writes them
back into the network being trained; Checkpoint writes the estimator as it is at that epoch to a
model file with ``nnc.save``, which writes a temporary file in the target's folder, flushes it to
disk and renames it over the previous file: a crash while writing leaves the previous checkpoint
loadable.
"""
import os

import numpy as np

from nnc.callbacks._base import (Callback, _check_estimator, _check_int, _check_monitor,
                                 _check_real, _improved, _is_epoch, _monitored)

__all__ = ["EarlyStopping", "Checkpoint"]


class _StopRun:
    def __init__(self, larger):
        self.larger = larger
        self.best = -np.inf if larger else np.inf
        self.best_epoch = None
        self.wait = 0
        self.weights = None
        self.stopped_epoch = None
        self.restored = False


class EarlyStopping(Callback):
    """Stop training when a monitored curve stops improving, and keep the best weights.

    Parameters
    ----------
    monitor : {'auto', 'val_loss', 'val_score', 'loss'}, default='auto'
        The curve watched after each epoch: ``validation_loss_curve_`` ('val_loss', lower is
        better), ``validation_scores_`` ('val_score', higher is better) or ``loss_curve_``
        ('loss').  'auto': 'val_loss' when the fit has a validation set (NeuralNet*: X_val /
        y_val; any estimator: early_stopping=True), else 'loss'.
    patience : int, default=10
        Epochs without improvement after which training stops.
    min_delta : float, default=0.0
        An improvement must beat the best value by more than this.
    restore_best : bool, default=True
        At the end of the fit (stopped, finished or interrupted with Ctrl-C) the network gets
        the weights of the best epoch back.  With the estimator's own early_stopping as well,
        these weights win.

    Attributes
    ----------
    best_ : float
        Best value of the monitored curve in the last fit.
    best_epoch_ : int or None
        Index in ``loss_curve_`` of the best epoch of the last fit.
    stopped_epoch_ : int or None
        Index in ``loss_curve_`` of the epoch after which it stopped training (None: it did
        not).

    Notes
    -----
    Patience counts within one ``fit`` (a ``partial_fit`` call is a fit of one epoch).
    Set it on the nnc estimator itself; it is not propagated from meta-estimators.
    """

    def __init__(self, monitor="auto", patience=10, min_delta=0.0, restore_best=True):
        self.monitor = monitor
        self.patience = patience
        self.min_delta = min_delta
        self.restore_best = restore_best
        self._check()

    def _check(self):
        _check_monitor(self.monitor, "EarlyStopping")
        _check_int(self.patience, "patience", "EarlyStopping", 1)
        _check_real(self.min_delta, "min_delta", "EarlyStopping", 0.0)
        if not isinstance(self.restore_best, (bool, np.bool_)):
            raise TypeError(f"EarlyStopping: restore_best must be a bool, got "
                            f"{self.restore_best!r}")

    def setup(self, estimator, context):
        self._check()
        _check_estimator(self, estimator)

    def on_fit_task_end(self, estimator, context, *, fitted_estimator=None):
        if _is_epoch(context, fitted_estimator):
            return self._epoch_end(context.parent, fitted_estimator)
        run = self._run(context)
        if run is not None and fitted_estimator is not None:    # the fit's root task ends
            self._restore(run, fitted_estimator)
            self.best_ = float(run.best)
            self.best_epoch_ = run.best_epoch
            self.stopped_epoch_ = run.stopped_epoch
        return False

    def _epoch_end(self, root, fitted):
        name, value, larger = _monitored(self.monitor, fitted, "EarlyStopping")
        run = self._run(root, lambda: _StopRun(larger))
        epoch = len(fitted.loss_curve_) - 1
        if _improved(value, run.best, larger, float(self.min_delta)):
            run.best, run.best_epoch, run.wait = value, epoch, 0
            if self.restore_best:
                params = fitted.network_.params
                if run.weights is None:
                    run.weights = params.copy()
                else:
                    np.copyto(run.weights, params)
            return False
        run.wait += 1
        if run.wait < self.patience:
            return False
        run.stopped_epoch = epoch
        self._restore(run, fitted)
        return True

    def _restore(self, run, fitted):
        if self.restore_best and run.weights is not None and not run.restored:
            fitted.network_.params[...] = run.weights
            run.restored = True

    def teardown(self, estimator, context):
        self._end_run(context)


class Checkpoint(Callback):
    """Save the model to a file after epochs that improve a monitored curve (or every epoch).

    Parameters
    ----------
    path : str or os.PathLike
        The model file (``nnc.load`` reads it back; it continues training exactly).  A
        ``{epoch}`` field is replaced by the epoch's index in ``loss_curve_`` (one file per
        epoch); without it each save replaces the previous file atomically.
    monitor : {'auto', 'val_loss', 'val_score', 'loss'}, default='auto'
        As EarlyStopping's: 'auto' is 'val_loss' with a validation set, else 'loss'.
    save_best_only : bool, default=True
        Save only after an epoch that improves the monitored curve (within one fit); False:
        after every epoch.

    Attributes
    ----------
    best_ : float
        Best monitored value of the last fit.
    saved_epoch_ : int or None
        Index in ``loss_curve_`` of the last epoch saved (None: none yet).
    last_path_ : str or None
        The file written last.
    """

    def __init__(self, path, monitor="auto", save_best_only=True):
        self.path = path
        self.monitor = monitor
        self.save_best_only = save_best_only
        self._check()

    def _check(self):
        try:
            os.fspath(self.path)
        except TypeError:
            raise TypeError(f"Checkpoint: path must be a str or os.PathLike, got "
                            f"{self.path!r}") from None
        _check_monitor(self.monitor, "Checkpoint")
        if not isinstance(self.save_best_only, (bool, np.bool_)):
            raise TypeError(f"Checkpoint: save_best_only must be a bool, got "
                            f"{self.save_best_only!r}")

    def setup(self, estimator, context):
        self._check()
        _check_estimator(self, estimator)
        self.__dict__.setdefault("saved_epoch_", None)
        self.__dict__.setdefault("last_path_", None)

    def on_fit_task_end(self, estimator, context, *, fitted_estimator=None):
        if not _is_epoch(context, fitted_estimator):
            run = self._run(context)
            if run is not None:
                self.best_ = float(run.best)
            return False
        name, value, larger = _monitored(self.monitor, fitted_estimator, "Checkpoint")
        run = self._run(context.parent, lambda: _StopRun(larger))
        improved = _improved(value, run.best, larger, 0.0)
        if improved:
            run.best = value
        if improved or not self.save_best_only:
            epoch = len(fitted_estimator.loss_curve_) - 1
            path = os.fspath(self.path)
            if isinstance(path, str) and "{epoch" in path:
                path = path.format(epoch=epoch)
            fitted_estimator.save(path)
            self.saved_epoch_, self.last_path_ = epoch, path
        return False

    def teardown(self, estimator, context):
        self._end_run(context)
