"""Hyper-parameter checks shared by every estimator, worded as scikit-learn words them.

Each helper reads one constructor argument with ``getattr(est, name)``, checks its type and
range, and either returns the value or raises ``TypeError`` (wrong type) / ``ValueError`` (wrong
value) with scikit-learn's message, "The 'alpha' parameter of MLPClassifier must be a float in
the range [0, inf). Got -1 instead.", so scikit-learn's estimator checks and users' except
clauses see the same errors as with ``sklearn.neural_network``.  Nothing here knows about data,
networks or fitting: the estimators call these from ``_check_params`` before any validation of
X or y, so a bad hyper-parameter is reported before any work is done.
"""
import numbers

import numpy as np


def _is_int(value):
    return isinstance(value, numbers.Integral) and not isinstance(value, (bool, np.bool_))


def _is_real(value):
    return isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_))


def _param_error(est, name, desc, value, exc=ValueError):
    raise exc(f"The {name!r} parameter of {type(est).__name__} must be {desc}. "
              f"Got {value!r} instead.")


def _check_interval(est, name, kind, low=None, high=None, closed="left", allow_inf=False):
    """Check getattr(est, name) is an int / real in the interval; return it."""
    value = getattr(est, name)
    if allow_inf and _is_real(value) and value == np.inf:
        return value
    lo = "-inf" if low is None else low
    hi = "inf" if high is None else high
    left = "[" if closed in ("left", "both") and low is not None else "("
    right = "]" if closed in ("right", "both") and high is not None else ")"
    what = "an int" if kind is int else "a float"
    desc = f"{what} in the range {left}{lo}, {hi}{right}" + (" or inf" if allow_inf else "")
    ok_type = _is_int(value) if kind is int else _is_real(value)
    if not ok_type:
        _param_error(est, name, desc, value, TypeError)
    if np.isnan(value):
        _param_error(est, name, desc, value)
    if low is not None and (value < low or (value == low and left == "(")):
        _param_error(est, name, desc, value)
    if high is not None and (value > high or (value == high and right == ")")):
        _param_error(est, name, desc, value)
    return value


def _check_bool(est, name):
    value = getattr(est, name)
    if not isinstance(value, (bool, np.bool_)):
        _param_error(est, name, "an instance of 'bool'", value, TypeError)
    return bool(value)


def _check_options(est, name, options):
    value = getattr(est, name)
    if not isinstance(value, str) or value not in options:
        exc = ValueError if isinstance(value, str) else TypeError
        _param_error(est, name, f"a str among {sorted(options)}", value, exc)
    return value


def _check_verbose(est):
    value = est.verbose
    if not (_is_int(value) or isinstance(value, (bool, np.bool_))):
        _param_error(est, "verbose", "an int or a bool", value, TypeError)
    return value


def _check_random_state_param(est):
    value = est.random_state
    if value is None or _is_int(value) or isinstance(value, np.random.RandomState):
        return value
    _param_error(est, "random_state", "None, an int or a numpy RandomState", value, TypeError)

