"""LearningRateScheduler: the optimizer's learning rate set per epoch, from a formula, a callable
or the plateaus of a monitored curve.

The rate is set on the optimizer the fit trains with (``fitted_estimator._optimizer``, the
object the fit steps with) when an epoch task begins, so it holds for that whole epoch; the
compiled epoch loop reads it once per epoch, the Python batch loop at every step.  Epochs are
counted over the model's life (``len(loss_curve_)`` before the epoch), so a warm start or a
``partial_fit`` continues the schedule; the initial rate is the estimator's
(``learning_rate_init`` of the MLPs, ``learning_rate`` or the optimizer instance's of the
NeuralNet estimators).
"""
import math

from nnc.callbacks._base import (Callback, _check_estimator, _check_int, _check_monitor,
                                 _check_real, _improved, _is_epoch, _monitored)

__all__ = ["LearningRateScheduler"]

_SCHEDULES = ("step", "exponential", "cosine", "plateau")


class _Run:
    def __init__(self):
        self.rates = []
        self.best = None
        self.wait = 0


class LearningRateScheduler(Callback):
    """Set the learning rate of each epoch (epoch e = 0, 1, ... over the model's life; lr0 =
    the estimator's initial learning rate).

    Parameters
    ----------
    schedule : {'step', 'exponential', 'cosine', 'plateau'} or callable
        - 'step': ``lr0 * gamma ** (e // step_size)``
        - 'exponential': ``lr0 * gamma ** e``
        - 'cosine': ``eta_min + (lr0 - eta_min) * (1 + cos(pi * e / T_max)) / 2``
        - 'plateau': the rate is multiplied by ``gamma`` (not below ``min_lr``) after
          ``patience`` epochs in which the monitored curve did not improve by more than
          ``min_delta``, then the count restarts
        - a callable ``schedule(e) -> lr`` (a finite float >= 0)
    gamma : float, default=0.1
        Factor of 'step', 'exponential' and 'plateau' (in (0, 1] for 'plateau').
    step_size : int, default=10
        Epochs per step of 'step'.
    T_max : int or None, default=None
        Half period of 'cosine', in epochs; None: the fit's max_iter / max_epochs.
    eta_min : float, default=0.0
        The lowest rate of 'cosine'.
    monitor : {'auto', 'val_loss', 'val_score', 'loss'}, default='auto'
        The curve 'plateau' watches ('auto': 'val_loss' with a validation set, else 'loss').
    patience : int, default=10
        Epochs without improvement before 'plateau' lowers the rate.
    min_delta : float, default=1e-4
        Smallest improvement 'plateau' counts.
    min_lr : float, default=0.0
        The lowest rate of 'plateau'.

    Attributes
    ----------
    learning_rates_ : list of float
        The rate each epoch of the last fit ran with.

    Notes
    -----
    It takes precedence over the estimators' own schedules (``learning_rate='invscaling'`` /
    ``'adaptive'``, NeuralNet's ``learning_rate_schedule``), which still change the rate after
    an epoch; the next epoch gets the scheduler's rate.
    """

    def __init__(self, schedule, *, gamma=0.1, step_size=10, T_max=None, eta_min=0.0,
                 monitor="auto", patience=10, min_delta=1e-4, min_lr=0.0):
        self.schedule = schedule
        self.gamma = gamma
        self.step_size = step_size
        self.T_max = T_max
        self.eta_min = eta_min
        self.monitor = monitor
        self.patience = patience
        self.min_delta = min_delta
        self.min_lr = min_lr
        self._check()

    def _check(self):
        owner = "LearningRateScheduler"
        if not callable(self.schedule) and self.schedule not in _SCHEDULES:
            raise ValueError(f"{owner}: schedule must be one of {list(_SCHEDULES)} or a "
                             f"callable epoch -> learning rate, got {self.schedule!r}")
        gamma = _check_real(self.gamma, "gamma", owner, 0.0, low_open=True)
        if self.schedule == "plateau" and gamma > 1:
            raise ValueError(f"{owner}: gamma must be in (0, 1] for 'plateau', got {gamma}")
        _check_int(self.step_size, "step_size", owner, 1)
        if self.T_max is not None:
            _check_int(self.T_max, "T_max", owner, 1)
        _check_real(self.eta_min, "eta_min", owner, 0.0)
        _check_monitor(self.monitor, owner)
        _check_int(self.patience, "patience", owner, 1)
        _check_real(self.min_delta, "min_delta", owner, 0.0)
        _check_real(self.min_lr, "min_lr", owner, 0.0)

    def setup(self, estimator, context):
        self._check()
        _check_estimator(self, estimator)

    def learning_rate(self, epoch, lr0, T_max=None):
        """The rate of epoch `epoch` (0-based) for the formula schedules (not 'plateau')."""
        s = self.schedule
        if callable(s):
            lr = s(epoch)
            try:
                lr = float(lr)
            except (TypeError, ValueError):
                raise TypeError(f"LearningRateScheduler: schedule({epoch}) returned {lr!r}, "
                                "not a number") from None
        elif s == "step":
            lr = lr0 * float(self.gamma) ** (epoch // int(self.step_size))
        elif s == "exponential":
            lr = lr0 * float(self.gamma) ** epoch
        elif s == "cosine":
            eta_min = float(self.eta_min)
            lr = eta_min + (lr0 - eta_min) * (1.0 + math.cos(math.pi * epoch / T_max)) / 2.0
        else:
            raise ValueError("'plateau' has no formula: its rate follows the monitored curve")
        if not (math.isfinite(lr) and lr >= 0):
            raise ValueError(f"LearningRateScheduler: the learning rate of epoch {epoch} is "
                             f"{lr}; it must be finite and >= 0")
        return lr

    def on_fit_task_begin(self, estimator, context, *, fitted_estimator=None):
        if not _is_epoch(context, fitted_estimator):
            return
        run = self._run(context.parent, _Run)
        optimizer = fitted_estimator._optimizer
        if self.schedule != "plateau":
            T_max = self.T_max
            if T_max is None and self.schedule == "cosine":
                root = context.parent
                if root.task_name != "fit" or not root.max_subtasks:
                    raise ValueError("LearningRateScheduler('cosine') needs T_max outside fit "
                                     "(partial_fit runs one epoch per call)")
                T_max = root.max_subtasks
            optimizer.learning_rate = self.learning_rate(
                len(fitted_estimator.loss_curve_), estimator._initial_learning_rate(), T_max)
        run.rates.append(float(optimizer.learning_rate))

    def on_fit_task_end(self, estimator, context, *, fitted_estimator=None):
        if not _is_epoch(context, fitted_estimator):
            run = self._run(context)
            if run is not None:
                self.learning_rates_ = list(run.rates)
            return False
        if self.schedule == "plateau":
            run = self._run(context.parent, _Run)
            name, value, larger = _monitored(self.monitor, fitted_estimator,
                                             "LearningRateScheduler")
            if run.best is None:
                run.best = -math.inf if larger else math.inf
            if _improved(value, run.best, larger, float(self.min_delta)):
                run.best, run.wait = value, 0
            else:
                run.wait += 1
                if run.wait >= self.patience:
                    optimizer = fitted_estimator._optimizer
                    optimizer.learning_rate = max(float(optimizer.learning_rate)
                                                  * float(self.gamma), float(self.min_lr))
                    run.wait = 0
        return False

    def teardown(self, estimator, context):
        self._end_run(context)
