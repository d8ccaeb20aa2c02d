"""The protocol of nnc's callbacks and what they share: the monitored curves, per-fit state.

A callback follows scikit-learn's ``FitCallback`` protocol (``setup``, ``on_fit_task_begin``,
``on_fit_task_end``, ``teardown``; see nnc/_estimators/_callbacks.py for the tasks of a fit), so
the same object runs under scikit-learn's callback machinery (scikit-learn >= 1.9) or nnc's
stand-in (without it).  nnc's callbacks act on the 'epoch' tasks of nnc's estimators, reading
the history of the fit in progress from ``fitted_estimator`` (``loss_curve_``,
``validation_loss_curve_``, ``validation_scores_``) and steering it through the objects it
shares with the fit: ``fitted_estimator.network_`` (the network being trained) and its optimizer.

A callback instance may serve several fits (clones in a grid search, partial_fit calls): what it
tracks during a fit lives in a per-fit record keyed by the fit's root task context, made when
the fit's first epoch begins and dropped at ``teardown``; its ``*_`` attributes describe the
last fit that ended.
"""
import math
import numbers

__all__ = ["Callback"]

#: name -> (fitted attribute holding the per-epoch values, True when larger is better)
MONITORS = {"loss": ("loss_curve_", False), "val_loss": ("validation_loss_curve_", False),
            "val_score": ("validation_scores_", True)}


class Callback:
    """Base class of nnc's callbacks: the protocol with hooks that do nothing.

    Subclasses override the hooks they need; a hook receives the keyword-only arguments it
    declares among ``X``, ``y``, ``metadata`` and ``fitted_estimator``, and ``on_fit_task_end``
    returning True stops the loop of that task's level (the epochs, for an 'epoch' task).
    """

    def setup(self, estimator, context):
        """Called once when a fit of `estimator` begins (`context`: its root task)."""

    def on_fit_task_begin(self, estimator, context, *, fitted_estimator=None):
        """Called when a task (the fit, an epoch, a batch ...) begins."""

    def on_fit_task_end(self, estimator, context, *, fitted_estimator=None):
        """Called when a task ends; True stops the loop of its level."""
        return False

    def teardown(self, estimator, context):
        """Called once when the fit is over (also after an exception)."""

    def __getstate__(self):
        state = dict(self.__dict__)
        state.pop("_runs", None)       # fits in progress stay with the process running them
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)

    # ---------------------------------------------------------------- helpers
    def _run(self, root, make=None):
        """The record of the fit whose root task is `root` (made by `make()` if absent)."""
        runs = self.__dict__.setdefault("_runs", {})
        run = runs.get(root)
        if run is None and make is not None:
            run = runs[root] = make()
        return run

    def _end_run(self, root):
        return self.__dict__.setdefault("_runs", {}).pop(root, None)


def _is_epoch(context, fitted_estimator):
    """True for the epoch tasks of nnc's estimators (whose fitted_estimator has the curves)."""
    return (context.task_name == "epoch" and fitted_estimator is not None
            and getattr(fitted_estimator, "loss_curve_", None) is not None)


def _check_estimator(callback, estimator, stochastic=True):
    """TypeError unless `estimator` is one of nnc's estimators (with a stochastic solver)."""
    name = type(callback).__name__
    if not hasattr(estimator, "_fitted_attributes"):
        raise TypeError(f"{name} steers the epochs of nnc's estimators; it was set on "
                        f"{type(estimator).__name__}. Set it on the nnc estimator itself (in a "
                        "pipeline: pipe[-1].set_callbacks(...)).")
    if stochastic and estimator._solver() == "lbfgs":
        raise ValueError(f"{name} acts after each epoch, and solver='lbfgs' has no epochs; use a "
                         "stochastic solver ('adam', 'sgd', ...).")


def _check_monitor(monitor, owner):
    if monitor != "auto" and monitor not in MONITORS:
        raise ValueError(f"{owner}: monitor must be 'auto' or one of {sorted(MONITORS)}, got "
                         f"{monitor!r}")
    return monitor


def _monitored(monitor, fitted_estimator, owner):
    """(name, latest value, larger_is_better) of the monitored curve; 'auto' is 'val_loss' when
    the fit has a validation set, else 'loss'."""
    if monitor == "auto":
        monitor = "val_loss" if getattr(fitted_estimator, "validation_loss_curve_", None) \
            is not None else "loss"
    attr, larger = MONITORS[monitor]
    curve = getattr(fitted_estimator, attr, None)
    if curve is None:
        raise ValueError(
            f"{owner}: monitor={monitor!r} needs a validation set: pass X_val and y_val to fit "
            "(NeuralNet estimators) or set early_stopping=True (validation_fraction); or "
            "monitor 'loss'.")
    return monitor, float(curve[-1]), larger


def _improved(value, best, larger, min_delta):
    """`value` beats `best` by more than min_delta (NaN never does)."""
    if math.isnan(value):
        return False
    return value > best + min_delta if larger else value < best - min_delta


def _check_real(value, name, owner, low=None, low_open=False):
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or math.isnan(value):
        raise TypeError(f"{owner}: {name} must be a real number, got {value!r}")
    value = float(value)
    if low is not None and (value < low or (low_open and value == low)):
        raise ValueError(f"{owner}: {name} must be {'>' if low_open else '>='} {low}, got "
                         f"{value}")
    return value


def _check_int(value, name, owner, low):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{owner}: {name} must be an int, got {value!r}")
    if value < low:
        raise ValueError(f"{owner}: {name} must be >= {low}, got {value}")
    return int(value)
