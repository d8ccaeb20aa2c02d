"""Optional scikit-learn: the real base classes when it is installed, small stand-ins otherwise.

With scikit-learn the estimators are genuine scikit-learn estimators (``BaseEstimator``, the
mixins, ``clone``, tags, ``check_estimator``) and raise scikit-learn's warning / error classes,
so ``except sklearn.exceptions.NotFittedError`` keeps working; from scikit-learn 1.9 on they also
take its callbacks (``SKLEARN_CALLBACKS``).  Without it, fit / predict / score / get_params /
set_params still work through the stand-ins below, and nnc's own callbacks too.

The metrics (``accuracy``, ``r2``) are nnc's own in both cases: the estimators use them for the
validation scores of early stopping, so training does not depend on what is installed.
"""
import inspect
import warnings

import numpy as np

try:
    from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
    from sklearn.exceptions import ConvergenceWarning, DataConversionWarning, NotFittedError
    SKLEARN_INSTALLED = True
except ImportError:
    SKLEARN_INSTALLED = False

    class ConvergenceWarning(UserWarning):
        """Training stopped before the convergence criterion was met."""

    class DataConversionWarning(UserWarning):
        """Input data was converted (e.g. a column vector y raveled)."""

    class NotFittedError(ValueError, AttributeError):
        """The estimator is used before ``fit``."""

    class BaseEstimator:
        """get_params / set_params / repr from the ``__init__`` signature (sklearn's contract:
        ``__init__`` stores every argument unchanged under its own name)."""

        @classmethod
        def _get_param_names(cls):
            sig = inspect.signature(cls.__init__)
            return sorted(p.name for p in sig.parameters.values()
                          if p.name != "self" and p.kind not in (p.VAR_POSITIONAL,
                                                                 p.VAR_KEYWORD))

        def get_params(self, deep=True):
            out = {}
            for name in self._get_param_names():
                value = getattr(self, name)
                if deep and hasattr(value, "get_params") and not isinstance(value, type):
                    out.update((f"{name}__{k}", v) for k, v in value.get_params().items())
                out[name] = value
            return out

        def set_params(self, **params):
            valid = self._get_param_names()
            nested = {}
            for key, value in params.items():
                name, _, sub = key.partition("__")
                if name not in valid:
                    raise ValueError(f"Invalid parameter {name!r} for estimator {self}. "
                                     f"Valid parameters are: {valid!r}.")
                if sub:
                    nested.setdefault(name, {})[sub] = value
                else:
                    setattr(self, name, value)
            for name, sub_params in nested.items():
                getattr(self, name).set_params(**sub_params)
            return self

        def __repr__(self):
            defaults = {p.name: p.default for p in
                        inspect.signature(type(self).__init__).parameters.values()}
            changed = []
            for name in self._get_param_names():
                value = getattr(self, name)
                default = defaults.get(name, inspect.Parameter.empty)
                try:
                    same = value is default or bool(value == default)
                except Exception:  # arrays and other objects without a plain ==
                    same = False
                if not same:
                    changed.append(f"{name}={value!r}")
            return f"{type(self).__name__}({', '.join(changed)})"

    class ClassifierMixin:
        _estimator_type = "classifier"

        def score(self, X, y, sample_weight=None):
            """Mean accuracy of ``self.predict(X)`` against y."""
            return accuracy(y, self.predict(X), sample_weight)

    class RegressorMixin:
        _estimator_type = "regressor"

        def score(self, X, y, sample_weight=None):
            """Coefficient of determination R^2 of ``self.predict(X)`` against y."""
            return r2(y, self.predict(X), sample_weight)


#: scikit-learn >= 1.9 with its callback API (``sklearn.callback``): nnc's estimators then support
#: its callbacks and their propagation from Pipeline / GridSearchCV (nnc/_estimators/_callbacks.py)
SKLEARN_CALLBACKS = False
if SKLEARN_INSTALLED:
    try:
        from sklearn.callback import CallbackSupportMixin, with_callbacks  # noqa: F401
        SKLEARN_CALLBACKS = True
    except ImportError:
        pass


def accuracy(y_true, y_pred, sample_weight=None):
    """Weighted fraction of rows predicted exactly (subset accuracy for 2-D label arrays)."""
    y_true = np.asarray(y_true)
    y_pred = np.asarray(y_pred)
    if y_true.ndim == 2 and y_true.shape[1] == 1 and y_pred.ndim == 1:
        y_true = y_true.ravel()
    if y_true.shape != y_pred.shape:
        raise ValueError(f"y_true has shape {y_true.shape}, y_pred {y_pred.shape}")
    hit = y_true == y_pred
    if hit.ndim == 2:
        hit = hit.all(axis=1)
    return float(np.average(hit, weights=sample_weight))


def r2(y_true, y_pred, sample_weight=None):
    """R^2 averaged uniformly over outputs, with scikit-learn's conventions for constant targets
    (1.0 when predicted exactly, else 0.0)."""
    y_true = np.asarray(y_true, dtype=np.float64)
    y_pred = np.asarray(y_pred, dtype=np.float64)
    if y_true.ndim == 1:
        y_true = y_true.reshape(-1, 1)
    if y_pred.ndim == 1:
        y_pred = y_pred.reshape(-1, 1)
    if y_true.shape != y_pred.shape:
        raise ValueError(f"y_true has shape {y_true.shape}, y_pred {y_pred.shape}")
    if y_true.shape[0] < 2:
        warnings.warn("R^2 score is not well-defined with less than two samples.",
                      UserWarning)
        return float("nan")
    w = np.ones(y_true.shape[0]) if sample_weight is None else \
        np.asarray(sample_weight, dtype=np.float64)
    w = w.reshape(-1, 1)
    numerator = (w * (y_true - y_pred) ** 2).sum(axis=0)
    mean = np.average(y_true, axis=0, weights=w.ravel())
    denominator = (w * (y_true - mean) ** 2).sum(axis=0)
    scores = np.ones(y_true.shape[1])
    nonzero_den = denominator != 0
    valid = nonzero_den & (numerator != 0)
    scores[valid] = 1.0 - numerator[valid] / denominator[valid]
    scores[(numerator != 0) & ~nonzero_den] = 0.0
    return float(np.mean(scores))


class _AvailableIf:
    """Descriptor hiding a method (hasattr False) when ``check(instance)`` is falsy or raises
    AttributeError; scikit-learn's ``available_if`` without the dependency."""

    def __init__(self, fn, check):
        self.fn = fn
        self.check = check
        self.__doc__ = fn.__doc__
        self.__name__ = fn.__name__
        self.__qualname__ = getattr(fn, "__qualname__", fn.__name__)
        self.__wrapped__ = fn

    def __get__(self, obj, owner=None):
        if obj is None:
            return self.fn
        if not self.check(obj):
            raise AttributeError(f"This {type(obj).__name__!r} has no attribute "
                                 f"{self.fn.__name__!r}")
        return self.fn.__get__(obj, owner)


def available_if(check):
    """Decorator: the method exists only on instances for which ``check(instance)`` is true."""
    return lambda fn: _AvailableIf(fn, check)
