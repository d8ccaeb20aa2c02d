"""Validation of what a user passes to fit / predict: X, y, sample_weight, feature names.

The functions turn array-likes into ndarrays with scikit-learn's checks and messages
(``_as_array``: numeric, not complex, sparse densified; ``_feature_names``: a DataFrame's string
column names; ``_check_sample_weight``; y present, finite, a column vector flattened with
DataConversionWarning).  ``_InputValidation`` is the estimator side: it resolves the working
dtype, checks the sample shape against ``input_shape`` or the fitted network, checks feature
names against the fitted ones, and hands a C-contiguous array in the network's dtype to
``nnc._validation.check_input`` (finiteness, shape), the one gate every array passes before a
compiled kernel reads it.  ``_Targets`` is the record the classifier / regressor target code
(``_classifier.py``, ``_regressor.py``) returns: y as the network reads it plus what the
estimator must remember.  Nothing here trains or changes a fitted estimator.
"""
import math
import numbers
import warnings

import numpy as np

from nnc._compat import DataConversionWarning
from nnc._estimators._params import _param_error
from nnc._validation import check_ids, check_input, check_sample_weight


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


def _check_sample_weight(sample_weight, n, dtype, positive_sum=True):
    """nnc's check plus scikit-learn's message for all-zero weights (``positive_sum=False``: a
    data-parallel shard, whose weights may all be zero: the sum over every rank is checked)."""
    if positive_sum and sample_weight is not None and not isinstance(sample_weight,
                                                                     numbers.Number):
        sw = np.asarray(sample_weight)
        if sw.shape == (n,) and sw.dtype.kind in "biuf" and n and not sw.any():
            raise ValueError(_ALL_ZERO_WEIGHTS)
    return check_sample_weight(sample_weight, n, dtype, positive_sum)


_ALL_ZERO_WEIGHTS = ("Sample weights must contain at least one non-zero number (all sample "
                     "weights are zero).")


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


class _Targets:
    """y as the network reads it plus what the estimator must remember (classes_ ...)."""

    def __init__(self, **kw):
        self.__dict__.update(kw)


class _InputValidation:
    """X validation and the working dtype (mixed into BaseNeuralNet).

    Hooks: ``_accepts_nd_input`` (NeuralNet*: images, sequences), ``_input_shape_param``
    (the ``input_shape`` parameter, or None) and ``_first_layer`` (the layer that reads X, or
    None).  When that layer reads token ids (``input_kind == "ids"``: Embedding), X is validated
    as int64 ids (``check_ids``), never converted to floats, and the working dtype comes from the
    ``dtype`` parameter alone (float64 for None)."""

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
        first = self._first_layer(reset)
        ids = first is not None and first.input_kind == "ids"
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
        if ids:
            X = check_ids(arr, first.n_tokens, sample_shape, reader=type(first).__name__)
        else:
            X = check_input(arr, dtype, sample_shape)
        return X, names

    def _work_dtype(self, X, warm):
        """The network dtype for a fit on validated X: X's own dtype for float X; for token ids
        the fitted network's (warm) or the ``dtype`` parameter's (float64 for None)."""
        if X.dtype.kind == "f":
            return X.dtype
        if warm:
            return self.network_.dtype
        dtype = self._dtype_param()
        return np.dtype(np.float64) if dtype is None else dtype

    def _accepts_nd_input(self):
        return False

    def _first_layer(self, reset):
        """The layer that reads X: the fitted network's first (not `reset`) or the one the next
        fit will build first; None when it is a Dense of an MLP (reads floats)."""
        if not reset:
            return self.network_.layers[0]
        return None

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

    def _validate_predict_X(self, X, net):
        """X validated for prediction with the fitted network `net`."""
        # lean path (one-row predict latency): an ndarray already in the network's dtype, layout
        # and sample shape, with no feature names to check, goes straight to check_input
        # (its finiteness scan stays); saves ~1 µs of the ~9 µs one-row predict.
        if (type(X) is np.ndarray and X.dtype == net.dtype and X.shape[1:] == net.input_shape
                and X.flags.c_contiguous and not hasattr(self, "feature_names_in_")):
            return check_input(X, net.dtype, net.input_shape)
        X, _ = self._validate_X(X, reset=False, dtype=net.dtype)
        return X
