"""Shared machinery of the scikit-learn style estimators (MLP* and NeuralNet*).

``BaseNeuralNet`` owns everything that does not depend on how the network is described:
validation of X / sample_weight, feature names, the fit loop (epochs through
``Sequential.train_epoch``, one Python round trip per epoch), the validation split and early
stopping with best-weight restore, scikit-learn's tol / n_iter_no_change stopping rule and its
'invscaling' / 'adaptive' learning rates, verbose lines, KeyboardInterrupt, warm start and
partial_fit, L-BFGS on the flat parameter buffer, and atomic fits.

Atomic fits: everything is validated before any training; a fresh fit trains a NEW network that
is swapped into ``self`` only at the end, a warm start / partial_fit snapshots the parameter
buffer (and trains a copy of the optimizer) and restores it when an exception escapes.  So a
fit that fails leaves a previously fitted model exactly as it was.  KeyboardInterrupt is not a
failure: training stops, a warning is issued and the model trained so far is kept.

``_ClassifierNN`` / ``_RegressorNN`` hold the target side (label encoding, output heads,
predict, predict_proba, validation scores).  Subclasses (``_mlp.py``, ``_neural_net.py``)
describe the layers, the optimizer and the hyper-parameters.
"""
import copy
import math
import numbers
import time
import warnings

import numpy as np

from nnc._compat import (SKLEARN_INSTALLED, ConvergenceWarning, DataConversionWarning,
                         NotFittedError, accuracy, available_if, r2)
from nnc._io import SaveMixin
from nnc._network import Sequential, _check_random_state
from nnc._validation import check_input, check_sample_weight

if SKLEARN_INSTALLED:
    from sklearn.base import BaseEstimator
else:
    from nnc._compat import BaseEstimator

# Above this many samples L-BFGS accumulates the full-batch gradient over chunks of this size.
_LBFGS_CHUNK = 8192

# Attributes that exist only after a stochastic solver ran (L-BFGS leaves them unset).
_CURVE_ATTRS = ("loss_curve_", "best_loss_", "validation_scores_", "best_validation_score_")


class NonFiniteLossError(ValueError, FloatingPointError):
    """Training produced a non-finite loss; the estimator was left as before the call."""


# ---------------------------------------------------------------------------------------------
# hyper-parameter checks (scikit-learn's wording: "The 'alpha' parameter of X must be ...")

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


# ---------------------------------------------------------------------------------------------
# input helpers

def _feature_names(X):
    """Column names of a DataFrame-like X when all are strings, else None (scikit-learn's
    rule; mixed string / non-string names are a TypeError)."""
    columns = getattr(X, "columns", None)
    if columns is None or isinstance(X, np.ndarray):
        return None
    try:
        names = np.asarray(list(columns), dtype=object)
    except TypeError:
        return None
    if names.ndim != 1 or names.size == 0:
        return None
    is_str = np.array([isinstance(n, str) for n in names])
    if is_str.all():
        return names
    if is_str.any():
        types = sorted({type(n).__qualname__ for n in names})
        raise TypeError(
            "Feature names are only supported if all input features have string names, but "
            f"your input has {types} as feature name / column name types. If you want feature "
            "names to be stored and validated, you must convert them all to strings, by using "
            "X.columns = X.columns.astype(str) for example. Otherwise you can remove feature / "
            "column names from your input data, or convert them all to a non-string data type.")
    return None


def _as_array(X, name="X"):
    """Array-like → ndarray without copying what is already numeric.  Sparse input is densified;
    object arrays are converted with numpy's own errors (TypeError for non-numbers, ValueError
    for strings that are not numbers), as scikit-learn's check_array does."""
    if X is None:
        raise ValueError(f"{name} is None: expected an array-like")
    if hasattr(X, "toarray") and hasattr(X, "nnz"):  # scipy.sparse
        X = X.toarray()
    if isinstance(X, str) or not (hasattr(X, "__array__") or isinstance(X, (list, tuple))
                                  or isinstance(X, numbers.Number)):
        raise TypeError(f"{name} must be array-like, got {type(X).__name__}")
    arr = np.asarray(X)
    if np.iscomplexobj(arr):
        raise ValueError(f"Complex data not supported: {name} has dtype {arr.dtype}")
    if arr.dtype.kind == "O":
        arr = arr.astype(np.float64)
    elif arr.dtype.kind in "US":
        raise ValueError(f"dtype='numeric' is not compatible with arrays of bytes/strings: {name} "
                         f"has dtype {arr.dtype}. Convert your data to numeric values explicitly "
                         "instead.")
    if arr.dtype.kind not in "biuf":
        raise ValueError(f"{name} must be numeric, got dtype {arr.dtype}")
    return arr


def _check_sample_weight(sample_weight, n, dtype):
    """nnc's check plus scikit-learn's message for all-zero weights."""
    if sample_weight is not None and not isinstance(sample_weight, numbers.Number):
        sw = np.asarray(sample_weight)
        if sw.shape == (n,) and sw.dtype.kind in "biuf" and n and not sw.any():
            raise ValueError("Sample weights must contain at least one non-zero number "
                             "(all sample weights are zero).")
    return check_sample_weight(sample_weight, n, dtype)


def _column_or_1d(y):
    """(n, 1) → (n,) with scikit-learn's DataConversionWarning."""
    if y.ndim == 2 and y.shape[1] == 1:
        warnings.warn("A column-vector y was passed when a 1d array was expected. Please change "
                      "the shape of y to (n_samples, ), for example using ravel().",
                      DataConversionWarning, stacklevel=4)
        return y.ravel()
    return y


def _check_y_present(est, y):
    if y is None:
        raise ValueError(f"{type(est).__name__} requires y to be passed, but the target y is "
                         "None.")


def _check_finite_y(y):
    if y.dtype.kind == "f" and not np.isfinite(y).all():
        if np.isnan(y).any():
            raise ValueError("Input y contains NaN.")
        raise ValueError(f"Input y contains infinity or a value too large for {y.dtype!r}.")


def _train_val_split(n, fraction, rng, stratify=None):
    """(train_idx, val_idx) exactly as scikit-learn's ``train_test_split(..., test_size=fraction,
    random_state=rng, stratify=stratify)`` indexes (StratifiedShuffleSplit is used from
    scikit-learn when installed; without it a simple per-class split is drawn)."""
    if not 0 < fraction < 1:
        raise ValueError(f"validation_fraction={fraction} should be in the (0, 1) range when "
                         "early_stopping=True")
    n_test = int(np.ceil(fraction * n))
    n_train = n - n_test
    if n_train == 0:
        raise ValueError(f"With n_samples={n}, test_size={fraction} and train_size=None, the "
                         "resulting train set will be empty. Adjust any of the aforementioned "
                         "parameters.")
    if stratify is None:
        perm = rng.permutation(n)
        return perm[n_test:n_test + n_train], perm[:n_test]
    if SKLEARN_INSTALLED:
        from sklearn.model_selection import StratifiedShuffleSplit
        cv = StratifiedShuffleSplit(test_size=n_test, train_size=n_train, random_state=rng)
        train, test = next(cv.split(np.zeros((n, 1)), stratify))
        return train, test
    labels = stratify.reshape(n, -1)[:, 0]
    classes, inverse, counts = np.unique(labels, return_inverse=True, return_counts=True)
    if counts.min() < 2:
        raise ValueError("The least populated class in y has only 1 member, which is too few. "
                         "The minimum number of groups for any class cannot be less than 2.")
    test = []
    for c in range(classes.size):
        members = rng.permutation(np.flatnonzero(inverse == c))
        k = max(1, int(round(n_test * counts[c] / n)))
        test.extend(members[:min(k, counts[c] - 1)])
    test = np.array(sorted(test))
    train = np.setdiff1d(np.arange(n), test)
    return rng.permutation(train), rng.permutation(test)


class _FitState:
    """Everything a fit produces, built on the side and copied into the estimator at the end."""

    def __init__(self, **kw):
        self.__dict__.update(kw)


# ---------------------------------------------------------------------------------------------

class BaseNeuralNet(SaveMixin, BaseEstimator):
    """Base class of nnc's estimators (see the module docstring).

    Subclass hooks: ``_check_params``, ``_max_iter``, ``_resolve_dtype_param``, ``_batch_size``,
    ``_make_layers``, ``_make_optimizer``, ``_lr_schedule``, ``_solver``, ``_loss_scale``,
    ``_input_shape_param``, ``_report_epoch``, ``_extra_fitted`` and the target hooks of the
    classifier / regressor mixins.
    """

    _warn_max_iter = True          # ConvergenceWarning when max_iter is reached (scikit-learn)

    # ---------------------------------------------------------------- fitted state
    def __sklearn_is_fitted__(self):
        return "network_" in self.__dict__

    def _check_is_fitted(self):
        if not self.__sklearn_is_fitted__():
            raise NotFittedError(f"This {type(self).__name__} instance is not fitted yet. Call "
                                 "'fit' with appropriate arguments before using this estimator.")

    # ---------------------------------------------------------------- common params
    def _check_common_params(self):
        _check_interval(self, "alpha", float, 0, None, "left")
        _check_bool(self, "shuffle")
        _check_random_state_param(self)
        _check_interval(self, "tol", float, 0, None, "left")
        _check_verbose(self)
        _check_bool(self, "warm_start")
        _check_bool(self, "early_stopping")
        _check_interval(self, "validation_fraction", float, 0, 1, "left")
        _check_interval(self, "n_iter_no_change", int, 1, None, "left", allow_inf=True)

    def _resolve_dtype(self, arr):
        """The working dtype for a fresh fit on array `arr`."""
        dtype = self._dtype_param()
        if dtype is None:
            return np.dtype(np.float32) if arr.dtype == np.float32 else np.dtype(np.float64)
        return dtype

    def _dtype_param(self):
        dtype = self.dtype
        if dtype is None:
            return None
        try:
            dt = np.dtype(dtype)
        except TypeError:
            _param_error(self, "dtype", "None, 'float32' or 'float64'", dtype, TypeError)
        if dt not in (np.float32, np.float64):
            _param_error(self, "dtype", "None, 'float32' or 'float64'", dtype)
        return dt

    # ---------------------------------------------------------------- X validation
    def _validate_X(self, X, reset, dtype=None):
        """Validated C-contiguous X with shape (n, *sample_shape), and the feature names
        (checked against the fitted ones when not `reset`).  dtype None: resolved from X and
        the ``dtype`` parameter."""
        names = _feature_names(X)
        if not reset:
            self._check_feature_names(names)
        arr = _as_array(X)
        if dtype is None:
            dtype = self._resolve_dtype(arr)
        name = type(self).__name__
        if arr.ndim > 2 and not self._accepts_nd_input():
            raise ValueError(f"Found array with dim {arr.ndim}. {name} expected <= 2.")
        if reset:
            sample_shape = self._input_shape_param()
            if sample_shape is not None and arr.ndim >= 2:
                size = math.prod(sample_shape)
                if tuple(arr.shape[1:]) != sample_shape and not (arr.ndim == 2
                                                                  and arr.shape[1] == size):
                    raise ValueError(f"X has sample shape {tuple(arr.shape[1:])}, but "
                                     f"input_shape={sample_shape} (give X of shape "
                                     f"(n,) + {sample_shape} or (n, {size}))")
        else:
            sample_shape = self.network_.input_shape
        if sample_shape is not None and arr.ndim == 2:
            size = math.prod(sample_shape)
            if arr.shape[1] != size and arr.shape[0] > 0:
                raise ValueError(f"X has {arr.shape[1]} features, but {name} is expecting "
                                 f"{size} features as input.")
        X = check_input(arr, dtype, sample_shape)
        return X, names

    def _accepts_nd_input(self):
        return False

    def _input_shape_param(self):
        return None

    def _check_feature_names(self, names):
        fitted = getattr(self, "feature_names_in_", None)
        cls = type(self).__name__
        if fitted is None and names is None:
            return
        if names is not None and fitted is None:
            warnings.warn(f"X has feature names, but {cls} was fitted without feature names",
                          UserWarning, stacklevel=4)
            return
        if names is None and fitted is not None:
            warnings.warn("X does not have valid feature names, but "
                          f"{cls} was fitted with feature names", UserWarning, stacklevel=4)
            return
        if len(fitted) == len(names) and np.all(fitted == names):
            return
        message = "The feature names should match those that were passed during fit.\n"
        unexpected = sorted(set(names) - set(fitted))
        missing = sorted(set(fitted) - set(names))
        for title, items in (("Feature names unseen at fit time:", unexpected),
                             ("Feature names seen at fit time, yet now missing:", missing)):
            if items:
                message += title + "\n" + "".join(f"- {n}\n" for n in items[:5])
                if len(items) > 5:
                    message += "- ...\n"
        if not unexpected and not missing:
            message += "Feature names must be in the same order as they were in fit.\n"
        raise ValueError(message)

    def _validate_predict_X(self, X):
        self._check_is_fitted()
        net = self.network_
        # lean path (one-row predict latency): an ndarray already in the network's dtype, layout
        # and sample shape, with no feature names to check, goes straight to check_input
        # (its finiteness scan stays); saves ~1 µs of the ~9 µs one-row predict.
        if (type(X) is np.ndarray and X.dtype == net.dtype and X.shape[1:] == net.input_shape
                and X.flags.c_contiguous and not hasattr(self, "feature_names_in_")):
            return check_input(X, net.dtype, net.input_shape)
        X, _ = self._validate_X(X, reset=False, dtype=net.dtype)
        return X

    def _predict_outputs(self, X):
        """Link-transformed network outputs (probabilities / values), a new array."""
        X = self._validate_predict_X(X)
        return self.network_.predict(X)

    # ---------------------------------------------------------------- fit / partial_fit
    def fit(self, X, y, sample_weight=None):
        """Fit the model to X and y (from scratch unless ``warm_start``).

        Parameters
        ----------
        X : array-like or sparse matrix, shape (n_samples, n_features) (NeuralNet*: or
            (n_samples, *input_shape))
        y : array-like, shape (n_samples,) or (n_samples, n_outputs)
        sample_weight : array-like of shape (n_samples,), default=None

        Returns
        -------
        self
        """
        return self._fit(X, y, sample_weight, incremental=False)

    def _fit(self, X, y, sample_weight=None, incremental=False, classes=None):
        self._check_params()
        fitted = self.__sklearn_is_fitted__()
        warm = fitted and (incremental or self.warm_start)
        if incremental and self.early_stopping:
            raise ValueError("partial_fit does not support early_stopping=True")
        _check_y_present(self, y)

        # -- validation (nothing in self changes before training succeeded)
        X, feature_names = self._validate_X(X, reset=not warm,
                                            dtype=self.network_.dtype if warm else None)
        dtype = X.dtype
        n = X.shape[0]
        targets = self._encode_targets(y, warm, incremental, classes, dtype)
        if targets.y.shape[0] != n:
            raise ValueError(f"Found input variables with inconsistent numbers of samples: "
                             f"[{n}, {targets.y.shape[0]}]")
        sw = _check_sample_weight(sample_weight, n, dtype)
        sw = self._apply_class_weight(sw, targets, incremental, dtype)
        rng = _check_random_state(self.random_state)

        if warm:
            net = self.network_
        else:
            net = self._build_network(X.shape[1:], targets, dtype, rng, incremental)
        y_net = net._check_y(targets.y, n)
        state = self._initial_state(net, warm)
        snapshot = net.params.copy() if warm else None
        old_clip = net.clip_grad_norm
        try:
            net.clip_grad_norm = self._clip_grad_norm()
            if warm:
                self._sync_user_weights(net)
            if self._solver() == "lbfgs":
                self._fit_lbfgs(net, X, y_net, sw, state, targets)
            else:
                self._fit_stochastic(net, X, y_net, sw, state, targets, incremental, rng)
            if not np.isfinite(net.params).all():
                raise NonFiniteLossError(
                    "Solver produced non-finite parameter weights. The input data may contain "
                    "large values and need to be preprocessed.")
        except BaseException:
            if warm:
                net.params[...] = snapshot
                net.clip_grad_norm = old_clip
            raise
        self._commit(net, state, targets, feature_names, warm)
        return self

    def _initial_state(self, net, warm):
        """Loss curve, stopping counters, best weights: continued on warm starts."""
        if warm:
            st = _FitState(
                t_=getattr(self, "t_", 0),
                loss_curve_=list(getattr(self, "loss_curve_", None) or []),
                best_loss_=getattr(self, "best_loss_", np.inf),
                validation_scores_=(None if getattr(self, "validation_scores_", None) is None
                                    else list(self.validation_scores_)),
                best_validation_score_=getattr(self, "best_validation_score_", None),
                no_improvement_count=getattr(self, "_no_improvement_count", 0),
                best_params=getattr(self, "_best_params", None),
                optimizer=getattr(self, "_optimizer", None))
            if st.best_params is None or st.best_params.shape != net.params.shape:
                st.best_params = net.params.copy()
            else:
                st.best_params = st.best_params.copy()
        else:
            st = _FitState(t_=0, loss_curve_=[], best_loss_=np.inf, validation_scores_=None,
                           best_validation_score_=None, no_improvement_count=0,
                           best_params=net.params.copy(), optimizer=None)
        if self.early_stopping:
            if st.validation_scores_ is None:
                st.validation_scores_ = []
                st.best_validation_score_ = -np.inf
            st.best_loss_ = None
        else:
            if st.best_loss_ is None:
                st.best_loss_ = np.inf
            st.validation_scores_ = None
            st.best_validation_score_ = None
        st.n_iter_ = 0
        st.loss_ = getattr(self, "loss_", None) if warm else None
        st.lbfgs = False
        return st

    def _build_network(self, sample_shape, targets, dtype, rng, incremental):
        layers = self._make_layers(targets.n_outputs)
        net = Sequential(layers, loss=targets.loss, input_shape=sample_shape, dtype=dtype,
                         random_state=rng)
        self._load_user_weights(net, incremental)
        return net

    def _load_user_weights(self, net, incremental):
        """Hook: initial weights assigned by the user before the first partial_fit (MLP)."""

    def _sync_user_weights(self, net):
        """Hook: copy user-assigned weight arrays back into the buffer (MLP coefs_)."""

    def _clip_grad_norm(self):
        return None

    def _loss_scale(self, targets):
        """Factor on the data loss in the reported loss (not in the gradient)."""
        return 1.0

    # ---------------------------------------------------------------- stochastic solvers
    def _fit_stochastic(self, net, X, y, sw, st, targets, incremental, rng):
        if incremental and st.optimizer is not None:
            optimizer = copy.deepcopy(st.optimizer)
        else:
            optimizer = self._make_optimizer()
        schedule, lr_init, power_t = self._lr_schedule()

        X_val = y_val = sw_val = None
        if self.early_stopping:
            train, val = _train_val_split(X.shape[0], float(self.validation_fraction), rng,
                                          targets.stratify)
            if val.shape[0] < 2:
                raise ValueError("The validation set is too small. Increase "
                                 "'validation_fraction' or the size of your dataset.")
            X_val, y_val = X[val], y[val]
            sw_val = None if sw is None else sw[val]
            X, y = X[train], y[train]
            sw = None if sw is None else sw[train]
        n = X.shape[0]
        batch_size = self._batch_size(n)
        loss_scale = self._loss_scale(targets)
        sample_idx = np.arange(n)
        max_iter = self._max_iter()
        start = time.perf_counter()
        try:
            for _ in range(max_iter):
                if self.shuffle:
                    perm = np.arange(n)
                    rng.shuffle(perm)
                    sample_idx = sample_idx[perm]
                try:
                    loss = net.train_epoch(X, y, optimizer, batch_size, sw,
                                           sample_idx if self.shuffle else None, loss_scale)
                except FloatingPointError as exc:
                    raise NonFiniteLossError(
                        "Solver produced non-finite parameter weights. The input data may "
                        "contain large values and need to be preprocessed. The training loss "
                        f"became non-finite in iteration {st.n_iter_ + 1} ({exc}); the estimator "
                        "was left as it was before this call.") from exc
                st.n_iter_ += 1
                st.loss_ = float(loss)
                st.t_ += n
                st.loss_curve_.append(st.loss_)
                val_score = None
                if self.early_stopping:
                    val_score = self._validation_score(net, targets, X_val, y_val, sw_val)
                self._report_epoch(st.n_iter_, st.loss_, val_score,
                                   time.perf_counter() - start)
                self._update_no_improvement(st, net, val_score)
                if schedule == "invscaling":
                    optimizer.learning_rate = float(lr_init) / (st.t_ + 1) ** power_t
                if st.no_improvement_count > self.n_iter_no_change:
                    what = ("Validation score" if self.early_stopping else "Training loss")
                    msg = (f"{what} did not improve more than tol={self.tol:f} for "
                           f"{self.n_iter_no_change} consecutive epochs.")
                    if self._trigger_stopping(msg, schedule, optimizer):
                        break
                    st.no_improvement_count = 0
                if incremental:
                    break
                if st.n_iter_ == max_iter and self._warn_max_iter:
                    warnings.warn(f"Stochastic Optimizer: Maximum iterations ({max_iter}) "
                                  "reached and the optimization hasn't converged yet.",
                                  ConvergenceWarning, stacklevel=4)
        except KeyboardInterrupt:
            warnings.warn("Training interrupted by user.", UserWarning, stacklevel=4)
        if self.early_stopping:
            net.params[...] = st.best_params
        st.optimizer = optimizer

    def _trigger_stopping(self, msg, schedule, optimizer):
        """scikit-learn's rule: stop, unless 'adaptive' can still divide the rate by 5."""
        if schedule != "adaptive":
            if self.verbose:
                print(msg + " Stopping.")
            return True
        if optimizer.learning_rate <= 1e-6:
            if self.verbose:
                print(msg + " Learning rate too small. Stopping.")
            return True
        optimizer.learning_rate /= 5.0
        if self.verbose:
            print(msg + " Setting learning rate to %f" % optimizer.learning_rate)
        return False

    def _update_no_improvement(self, st, net, val_score):
        if self.early_stopping:
            st.validation_scores_.append(val_score)
            if val_score < st.best_validation_score_ + self.tol:
                st.no_improvement_count += 1
            else:
                st.no_improvement_count = 0
            if val_score > st.best_validation_score_:
                st.best_validation_score_ = val_score
                st.best_params[...] = net.params
        else:
            last = st.loss_curve_[-1]
            if last > st.best_loss_ - self.tol:
                st.no_improvement_count += 1
            else:
                st.no_improvement_count = 0
            if last < st.best_loss_:
                st.best_loss_ = last

    def _report_epoch(self, n_iter, loss, val_score, elapsed):
        if self.verbose:
            print("Iteration %d, loss = %.8f" % (n_iter, loss))
            if val_score is not None:
                print("Validation score: %f" % val_score)

    # ---------------------------------------------------------------- L-BFGS
    def _fit_lbfgs(self, net, X, y, sw, st, targets):
        """scipy's L-BFGS-B directly on the flat buffer (weights first, then biases: the x
        vector is scikit-learn's packed coefs_ + intercepts_)."""
        import scipy.optimize

        n = X.shape[0]
        alpha = float(self.alpha)
        loss_scale = self._loss_scale(targets)
        sw_sum = float(n) if sw is None else float(sw.sum())
        n_decay = net.n_decay
        chunk = n if n <= _LBFGS_CHUNK else _LBFGS_CHUNK
        net._ensure_batch(chunk)
        params = net.params
        best = {"f": np.inf, "x": None}

        def fun(x):
            params[...] = x
            if chunk == n:
                loss = float(net._batch_loss_gradient(X, y, sw))
                grad = net.grads.astype(np.float64)
            else:
                loss, grad = 0.0, np.zeros(params.shape[0])
                for a in range(0, n, chunk):
                    b = min(n, a + chunk)
                    swc = None if sw is None else sw[a:b]
                    wc = float(b - a) if swc is None else float(swc.sum())
                    if wc == 0:
                        continue
                    loss += wc * float(net._batch_loss_gradient(X[a:b], y[a:b], swc))
                    grad += wc * net.grads
                loss /= sw_sum
                grad /= sw_sum
            w = x[:n_decay]
            loss = loss_scale * loss + 0.5 * alpha * float(np.dot(w, w)) / sw_sum
            grad[:n_decay] += (alpha / sw_sum) * w
            if loss < best["f"]:
                best["f"], best["x"] = loss, np.array(x, dtype=np.float64)
            return loss, grad

        max_iter = self._max_iter()
        x0 = params.astype(np.float64)
        try:
            res = scipy.optimize.minimize(
                fun, x0, method="L-BFGS-B", jac=True,
                options={"maxfun": self.max_fun, "maxiter": max_iter, "gtol": self.tol})
        except KeyboardInterrupt:
            warnings.warn("Training interrupted by user.", UserWarning)
            if best["x"] is not None:
                params[...] = best["x"]
                st.loss_ = best["f"]
            st.lbfgs = True
            return
        st.n_iter_ = int(min(res.nit, max_iter))
        if res.status != 0:
            message = (f"lbfgs failed to converge after {st.n_iter_} iteration(s) "
                       f"(status={res.status}):\n{res.message}\n")
            if st.n_iter_ == max_iter:
                message += ("\nIncrease the number of iterations to improve the convergence "
                            f"(max_iter={max_iter}).")
            message += ("\nYou might also want to scale the data as shown in:\n"
                        "    https://scikit-learn.org/stable/modules/preprocessing.html")
            warnings.warn(message, ConvergenceWarning, stacklevel=4)
        st.loss_ = float(res.fun)
        params[...] = res.x
        st.lbfgs = True

    # ---------------------------------------------------------------- commit
    def _commit(self, net, st, targets, feature_names, warm):
        self.network_ = net
        self.layers_ = net.layers
        if not warm:
            self.n_features_in_ = int(np.prod(net.input_shape))
            if feature_names is not None:
                self.feature_names_in_ = feature_names
            elif "feature_names_in_" in self.__dict__:
                del self.feature_names_in_
        self._commit_targets(targets)
        self.n_outputs_ = int(targets.n_outputs)
        self.out_activation_ = net._loss.out_activation
        self.n_iter_ = st.n_iter_
        self.t_ = st.t_
        self.loss_ = st.loss_
        if st.lbfgs:
            if not warm:
                for name in _CURVE_ATTRS:
                    self.__dict__.pop(name, None)
            self.__dict__.pop("_optimizer", None)
            self._best_params = net.params.copy()
        else:
            self.loss_curve_ = st.loss_curve_
            self.best_loss_ = st.best_loss_
            self.validation_scores_ = st.validation_scores_
            self.best_validation_score_ = st.best_validation_score_
            self._no_improvement_count = st.no_improvement_count
            self._best_params = st.best_params
            self._optimizer = st.optimizer
        self._extra_fitted(net)

    def _extra_fitted(self, net):
        """Hook: subclass attributes derived from the network (MLP coefs_)."""

    # ---------------------------------------------------------------- check_gradients support
    def _gradcheck_problem(self, X, y, sample_weight=None):
        """(network_, X validated, y encoded as the loss expects, sample_weight validated): the
        problem ``nnc.check_gradients(estimator, X, y)`` differentiates."""
        self._check_is_fitted()
        net = self.network_
        X = self._validate_predict_X(X)
        targets = self._encode_targets(y, True, True, None, net.dtype)
        sw = check_sample_weight(sample_weight, X.shape[0], net.dtype)
        return net, X, net._check_y(targets.y, X.shape[0]), sw


# ---------------------------------------------------------------------------------------------
# target side

class _Targets(_FitState):
    """y as the network reads it plus what the estimator must remember (classes_ ...)."""


def _type_of_target(y):
    """'binary', 'multiclass', 'multilabel-indicator', 'continuous', 'multiclass-multioutput',
    'continuous-multioutput' or 'unknown' (scikit-learn's vocabulary, on an ndarray)."""
    if y.ndim > 2 or y.ndim == 0 or (y.ndim == 2 and y.shape[1] == 0):
        return "unknown"
    if y.ndim == 2 and y.shape[1] > 1:
        if y.dtype.kind in "biuf" and y.size and np.isin(y, (0, 1)).all():
            return "multilabel-indicator"
        if y.dtype.kind == "f" and np.any(y != y.astype(np.int64)):
            return "continuous-multioutput"
        return "multiclass-multioutput"
    y = y.ravel()
    if y.dtype.kind == "f" and y.size and np.any(y != np.floor(y)):
        return "continuous"
    if y.dtype.kind == "O":
        values = [v for v in y if isinstance(v, float)]
        if values and any(v != np.floor(v) for v in values):
            return "continuous"
    try:
        n_unique = np.unique(y).size
    except TypeError as exc:
        raise ValueError("Mix of label input types (string and number)") from exc
    return "multiclass" if n_unique > 2 else "binary"


class _ClassifierNN:
    """Label encoding and predictions of the classifiers.

    Modes: 'softmax' (integer class indices, K outputs), 'sigmoid' (one logistic output for
    two classes), 'ovr' (one-hot targets, K logistic outputs), 'multilabel' (indicator y)."""

    _is_classifier = True

    def _loss_for_mode(self, mode):
        return "softmax_cross_entropy" if mode == "softmax" else "binary_cross_entropy"

    def _choose_mode(self, label_type, n_classes):
        """Default: scikit-learn's (softmax for multiclass, logistic for binary/multilabel)."""
        if label_type == "multilabel-indicator":
            return "multilabel"
        return "softmax" if n_classes > 2 else "sigmoid"

    def _encode_targets(self, y, warm, incremental, classes, dtype):
        _check_y_present(self, y)
        y = _as_labels(y)
        _check_finite_y(y)
        y = _column_or_1d(y)
        kind = _type_of_target(y)
        if kind not in ("binary", "multiclass", "multilabel-indicator"):
            raise ValueError(f"Unknown label type: {kind}. Maybe you are trying to fit a "
                             "classifier, which expects discrete classes on a regression target "
                             "with continuous values.")
        fitted_classes = getattr(self, "classes_", None) if warm else None
        if incremental:
            fitted_classes = self._partial_fit_classes(y, kind, classes, warm)
        if fitted_classes is None:
            if kind == "multilabel-indicator":
                cls = np.arange(y.shape[1])
            else:
                cls = np.unique(y)
            label_type = kind
        else:
            cls = np.asarray(fitted_classes)
            label_type = getattr(self, "_label_type", None) if warm else None
            if label_type is None:
                label_type = ("multilabel-indicator" if kind == "multilabel-indicator"
                              else ("multiclass" if cls.size > 2 else "binary"))
            if (label_type == "multilabel-indicator") != (kind == "multilabel-indicator"):
                raise ValueError(f"y is {kind} but the model was fitted on {label_type} targets")
            if kind == "multilabel-indicator":
                if y.shape[1] != cls.size:
                    raise ValueError(f"y has {y.shape[1]} labels, but the model was fitted on "
                                     f"{cls.size}")
            else:
                seen = np.unique(y)
                if warm and self.warm_start and not incremental:
                    if set(seen.tolist()) != set(cls.tolist()):
                        raise ValueError(
                            "warm_start can only be used where `y` has the same classes as in "
                            f"the previous call to fit. Previously got {cls}, `y` has {seen}")
                elif len(np.setdiff1d(seen, cls)):
                    raise ValueError(f"`y` has classes not in `self.classes_`. `self.classes_` "
                                     f"has {cls}. 'y' has {seen}.")
        mode = getattr(self, "_target_mode", None) if warm else None
        if mode is None:
            mode = self._choose_mode(label_type, cls.size)
        n = y.shape[0]
        stratify = None
        if mode == "multilabel":
            y_enc = y.astype(dtype)
            n_outputs = cls.size
        else:
            idx = np.searchsorted(cls, y)
            if mode == "softmax":
                y_enc = idx.astype(np.int32)
                n_outputs = max(cls.size, 2)
            elif mode == "sigmoid":
                y_enc = (idx == 1).astype(dtype).reshape(n, 1) if cls.size > 1 else \
                    np.zeros((n, 1), dtype=dtype)
                n_outputs = 1
                stratify = y_enc.astype(bool)
            else:  # 'ovr'
                y_enc = np.zeros((n, cls.size), dtype=dtype)
                y_enc[np.arange(n), idx] = 1
                n_outputs = cls.size
        return _Targets(y=y_enc, y_index=None if mode == "multilabel" else idx,
                        classes=cls, label_type=label_type, mode=mode, n_outputs=n_outputs,
                        loss=self._loss_for_mode(mode), stratify=stratify)

    def _partial_fit_classes(self, y, kind, classes, warm):
        if not warm:
            if classes is None:
                raise ValueError("classes must be passed on the first call to partial_fit.")
            if kind == "multilabel-indicator":
                return None
            return np.unique(np.asarray(classes))
        if classes is not None:
            given = np.unique(np.asarray(classes))
            if self._label_type != "multilabel-indicator" and not np.array_equal(
                    given, self.classes_):
                raise ValueError(f"`classes={given!r}` is not the same as on last call to "
                                 f"partial_fit, was: {self.classes_!r}")
        return self.classes_

    def _apply_class_weight(self, sw, targets, incremental, dtype):
        cw = getattr(self, "class_weight", None)
        if cw is None:
            return sw
        if targets.mode == "multilabel":
            raise ValueError("class_weight is not supported for multilabel targets")
        classes = targets.classes
        if isinstance(cw, str):
            if cw != "balanced":
                _param_error(self, "class_weight", "None, 'balanced' or a dict", cw)
            if incremental:
                raise ValueError("class_weight 'balanced' is not supported for partial_fit; "
                                 "pass a dict of class weights instead")
            counts = np.bincount(targets.y_index, minlength=classes.size).astype(np.float64)
            with np.errstate(divide="ignore"):
                weights = targets.y_index.size / (classes.size * counts)
            weights[counts == 0] = 1.0
        elif isinstance(cw, dict):
            weights = np.ones(classes.size)
            known = set(classes.tolist())
            unknown = [k for k in cw if k not in known]
            if unknown:
                raise ValueError(f"The classes, {unknown}, are not in class_weight")
            for i, c in enumerate(classes.tolist()):
                if c in cw:
                    weights[i] = float(cw[c])
            if (weights < 0).any() or not np.isfinite(weights).all():
                raise ValueError("class_weight values must be finite and non-negative")
        else:
            _param_error(self, "class_weight", "None, 'balanced' or a dict", cw, TypeError)
        per_sample = weights[targets.y_index].astype(dtype)
        sw = per_sample if sw is None else sw * per_sample   # never in place: sw may be the user's
        if sw.sum() <= 0:
            raise ValueError("class_weight gives every sample zero weight")
        return sw

    def _commit_targets(self, targets):
        self.classes_ = targets.classes
        self._label_type = targets.label_type
        self._target_mode = targets.mode

    # -- predictions
    def predict(self, X):
        """Predicted class labels, shape (n_samples,) ((n_samples, n_labels) for multilabel)."""
        P = self._predict_outputs(X)
        if self._target_mode == "multilabel":
            return _decode(P, "multilabel")
        if self.classes_.size == 1:
            return np.repeat(self.classes_, P.shape[0])
        return self.classes_[_decode(P, self._target_mode)]

    def predict_proba(self, X):
        """Class probabilities, shape (n_samples, n_classes), in the order of ``classes_``."""
        P = self._predict_outputs(X)
        mode = self._target_mode
        if self.classes_.size == 1 and mode != "multilabel":
            return np.ones((P.shape[0], 1), dtype=P.dtype)
        if mode == "sigmoid":
            out = np.empty((P.shape[0], 2), dtype=P.dtype)
            np.subtract(1, P[:, 0], out=out[:, 0])
            out[:, 1] = P[:, 0]
            return out
        if mode == "ovr":
            P /= P.sum(axis=1, keepdims=True)
        return P

    def predict_log_proba(self, X):
        """log(predict_proba(X))."""
        P = self.predict_proba(X)
        return np.log(P, out=P)

    def _validation_score(self, net, targets, X, y, sw):
        """Accuracy of `net` on encoded targets (NaN when the outputs are not finite)."""
        P = net.predict(X)
        if not np.isfinite(P).all():
            return float("nan")
        mode = targets.mode
        pred = _decode(P, mode)
        if mode == "sigmoid":
            truth = y[:, 0].astype(np.intp)
        elif mode == "ovr":
            truth = np.argmax(y, axis=1)
        elif mode == "multilabel":
            truth = y.astype(np.int64)
        else:
            truth = y
        return accuracy(truth, pred, sw)

    @available_if(lambda est: est._partial_fit_available())
    def partial_fit(self, X, y, sample_weight=None, classes=None):
        """One epoch over (X, y) with the stochastic solver.

        classes : array-like, required on the first call (all labels that will ever appear);
            ignored for multilabel indicator y."""
        return self._fit(X, y, sample_weight, incremental=True, classes=classes)

    if SKLEARN_INSTALLED:
        def __sklearn_tags__(self):
            tags = super().__sklearn_tags__()
            tags.input_tags.sparse = True
            tags.classifier_tags.multi_label = True
            return tags


def _decode(P, mode):
    """Outputs → class indices (or the 0/1 indicator matrix for multilabel)."""
    if mode == "multilabel":
        return (P > 0.5).astype(np.int64)
    if mode == "sigmoid":
        return (P[:, 0] > 0.5).astype(np.intp)
    return np.argmax(P, axis=1)


def _as_labels(y):
    """Labels → ndarray (strings / objects kept; sparse densified)."""
    if hasattr(y, "toarray") and hasattr(y, "nnz"):
        y = y.toarray()
    if isinstance(y, str) or not (hasattr(y, "__array__") or isinstance(y, (list, tuple))):
        raise TypeError(f"y must be array-like, got {type(y).__name__}")
    y = np.asarray(y)
    if np.iscomplexobj(y):
        raise ValueError(f"Complex data not supported: y has dtype {y.dtype}")
    if y.ndim == 0:
        raise ValueError(f"y must be an array of targets, got a scalar {y!r}")
    return y


class _RegressorNN:
    """Targets and predictions of the regressors."""

    _is_classifier = False

    def _regression_loss(self):
        return "mse"

    def _encode_targets(self, y, warm, incremental, classes, dtype):
        _check_y_present(self, y)
        y = _as_array(y, "y")
        if y.ndim == 0:
            raise ValueError(f"y must be an array of targets, got a scalar {y!r}")
        if y.ndim > 2:
            raise ValueError(f"y must be 1-D or 2-D, got shape {y.shape}")
        y = np.asarray(y, dtype=dtype)
        _check_finite_y(y)
        y = _column_or_1d(y)
        single = y.ndim == 1
        y = y.reshape(y.shape[0], -1)
        n_outputs = y.shape[1]
        if warm and n_outputs != self.n_outputs_:
            raise ValueError(f"y has {n_outputs} outputs, but the model was fitted with "
                             f"{self.n_outputs_}")
        return _Targets(y=np.ascontiguousarray(y), single=single, n_outputs=n_outputs,
                        loss=self._regression_loss(), stratify=None, mode="regression")

    def _apply_class_weight(self, sw, targets, incremental, dtype):
        return sw

    def _commit_targets(self, targets):
        pass

    def predict(self, X):
        """Predicted values, shape (n_samples,) or (n_samples, n_outputs)."""
        P = self._predict_outputs(X)
        return P.ravel() if P.shape[1] == 1 else P

    def _validation_score(self, net, targets, X, y, sw):
        P = net.predict(X)
        if not np.isfinite(P).all():
            return float("nan")
        return r2(y, P, sw)

    @available_if(lambda est: est._partial_fit_available())
    def partial_fit(self, X, y, sample_weight=None):
        """One epoch over (X, y) with the stochastic solver."""
        return self._fit(X, y, sample_weight, incremental=True)

    if SKLEARN_INSTALLED:
        def __sklearn_tags__(self):
            tags = super().__sklearn_tags__()
            tags.input_tags.sparse = True
            return tags
