"""The classifiers' target side: label encoding, output heads, predictions, accuracy.

``_ClassifierNN`` is mixed in front of an estimator base (``MLPClassifier(_ClassifierNN,
ClassifierMixin, _BaseMLP)``) and supplies the target hooks the fit loop in ``_base.py`` calls:
``_encode_targets`` checks y (scikit-learn's label types: binary, multiclass,
multilabel-indicator), fixes ``classes_`` (from y, from ``classes=`` on the first partial_fit,
or from the fitted model on a warm start) and picks the output mode and loss: 'softmax'
(integer class indices, K outputs, softmax cross-entropy), 'sigmoid' (one logistic output for
two classes), 'ovr' (one-hot targets, K logistic outputs), 'multilabel' (indicator y).
``_apply_class_weight`` folds ``class_weight`` into the sample weights, ``_score_outputs`` is
the accuracy early stopping watches, ``_target_attributes`` is what the estimator remembers.
``predict`` / ``predict_proba`` decode the network's link-transformed outputs back to labels in
the order of ``classes_``.  ``_encode_validation_targets`` encodes a user-given validation y
(NeuralNetClassifier's ``y_val``) as the training targets were.
"""
import numpy as np

from nnc._compat import SKLEARN_INSTALLED, accuracy, available_if
from nnc._estimators._inputs import _Targets, _check_finite_y, _check_y_present, _column_or_1d
from nnc._estimators._params import _param_error
from nnc.losses import get_loss


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

    def _encode_targets(self, y, warm, incremental, classes, dtype, seen=None):
        """Check y and encode it as the network reads it (see the module docstring).

        seen: the labels of y over every rank of a data-parallel fit (their union, sorted), used
        wherever the labels of y decide: the classes of a fresh fit, the checks against the
        fitted classes."""
        _check_y_present(self, y)
        y = _as_labels(y)
        _check_finite_y(y)
        y = _column_or_1d(y)
        kind = _type_of_target(y)
        if kind not in ("binary", "multiclass", "multilabel-indicator"):
            raise ValueError(f"Unknown label type: {kind}. Maybe you are trying to fit a "
                             "classifier, which expects discrete classes on a regression target "
                             "with continuous values.")
        if seen is not None and kind != "multilabel-indicator":
            kind = "multiclass" if len(seen) > 2 else "binary"
        fitted_classes = getattr(self, "classes_", None) if warm else None
        if incremental:
            fitted_classes = self._partial_fit_classes(y, kind, classes, warm)
        if fitted_classes is None:
            if kind == "multilabel-indicator":
                cls = np.arange(y.shape[1])
            else:
                cls = np.unique(y) if seen is None else np.asarray(seen)
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
                seen = np.unique(y) if seen is None else np.asarray(seen)
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

    # -- data-parallel fits (nnc.distributed): every rank's labels, then the same classes_
    def _target_summary(self, y, n, warm, incremental, classes, dtype):
        """(this rank's label facts, None): the kind of target, its labels with their counts
        (or the number of indicator columns), the ``classes=`` given.  The checks are those of
        _encode_targets that look at this rank's y alone."""
        _check_y_present(self, y)
        y = _as_labels(y)
        _check_finite_y(y)
        if y.ndim == 2 and y.shape[1] == 1:
            y = y.ravel()
        kind = _type_of_target(y)
        if kind not in ("binary", "multiclass", "multilabel-indicator"):
            raise ValueError(f"Unknown label type: {kind}. Maybe you are trying to fit a "
                             "classifier, which expects discrete classes on a regression target "
                             "with continuous values.")
        if y.shape[0] != n:
            raise ValueError(f"Found input variables with inconsistent numbers of samples: "
                             f"[{n}, {y.shape[0]}]")
        given = None if classes is None else np.unique(np.asarray(classes)).tolist()
        if kind == "multilabel-indicator":
            return {"multilabel": True, "labels": int(y.shape[1]), "counts": None,
                    "classes": given}, None
        labels, counts = np.unique(y, return_counts=True)
        return {"multilabel": False, "labels": labels, "counts": counts, "classes": given}, None

    def _agree_targets(self, y, summaries, warm, incremental, classes, dtype, targets):
        """This rank's targets encoded with the classes of every rank (their labels' union, or
        the fitted / given classes); ValueError, the same on every rank, when the ranks' label
        kinds, indicator widths or ``classes=`` differ."""
        from nnc._distributed import DistributedError
        def show(values):
            return ", ".join(f"rank {r}: {v}" for r, v in enumerate(values))
        multilabel = [s["multilabel"] for s in summaries]
        if len(set(multilabel)) > 1:
            raise DistributedError("the ranks disagree on the kind of target (multilabel "
                                   f"indicator or not: {show(multilabel)})")
        given = [s["classes"] for s in summaries]
        if any(g != given[0] for g in given[1:]):
            raise DistributedError(f"the ranks pass different classes= ({show(given)})")
        if multilabel[0]:
            widths = [s["labels"] for s in summaries]
            if len(set(widths)) > 1:
                raise DistributedError(f"the ranks disagree on the number of labels of the "
                                       f"indicator targets ({show(widths)})")
            return self._encode_targets(y, warm, incremental, classes, dtype)
        kinds = {s["labels"].dtype.kind for s in summaries}
        if len(kinds & {"U", "S", "O"}) and len(kinds) > 1:
            raise DistributedError(f"the ranks' labels are of different types "
                                   f"({show([s['labels'].dtype for s in summaries])})")
        everything = np.concatenate([s["labels"] for s in summaries])
        seen, where = np.unique(everything, return_inverse=True)
        counts = np.bincount(where, weights=np.concatenate([s["counts"] for s in summaries]),
                             minlength=seen.size)
        targets = self._encode_targets(y, warm, incremental, classes, dtype, seen=seen)
        # class counts over every rank, in the order of classes_ (class_weight='balanced')
        pos = np.searchsorted(seen, targets.classes)
        ok = (pos < seen.size) & (seen[np.minimum(pos, seen.size - 1)] == targets.classes)
        targets.class_counts = np.where(ok, counts[np.minimum(pos, seen.size - 1)], 0.0)
        return targets

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
            # data-parallel: the counts over every rank
            counts = getattr(targets, "class_counts", None)
            if counts is None:
                counts = np.bincount(targets.y_index, minlength=classes.size).astype(np.float64)
            with np.errstate(divide="ignore"):
                weights = counts.sum() / (classes.size * counts)
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
        # (data-parallel: one rank's weights may all be zero; the steps' sums over every rank
        # are checked before each epoch)
        if sw.sum() <= 0 and getattr(targets, "class_counts", None) is None:
            raise ValueError("class_weight gives every sample zero weight")
        return sw

    def _encode_validation_targets(self, y, targets, dtype):
        """Validation labels encoded as the training targets `targets` (their classes)."""
        _check_y_present(self, y)
        y = _as_labels(y)
        _check_finite_y(y)
        y = _column_or_1d(y)
        kind = _type_of_target(y)
        multilabel = targets.mode == "multilabel"
        if multilabel != (kind == "multilabel-indicator"):
            raise ValueError(f"y_val is {kind}, but y is {targets.label_type}")
        n = y.shape[0]
        cls = targets.classes
        if multilabel:
            if y.shape[1] != cls.size:
                raise ValueError(f"y_val has {y.shape[1]} labels, but y has {cls.size}")
            return y.astype(dtype)
        unseen = np.setdiff1d(np.unique(y), cls)
        if unseen.size:
            raise ValueError(f"y_val has classes not in y: {unseen.tolist()}")
        idx = np.searchsorted(cls, y)
        if targets.mode == "softmax":
            return idx.astype(np.int32)
        if targets.mode == "sigmoid":
            return ((idx == 1).astype(dtype).reshape(n, 1) if cls.size > 1
                    else np.zeros((n, 1), dtype=dtype))
        out = np.zeros((n, cls.size), dtype=dtype)
        out[np.arange(n), idx] = 1
        return out

    def _target_attributes(self, targets):
        return {"classes_": targets.classes, "_label_type": targets.label_type,
                "_target_mode": targets.mode}

    # -- predictions
    def _read_fitted(self):
        fitted = super()._read_fitted()
        fitted["classes_"] = self.classes_
        fitted["_target_mode"] = self._target_mode
        return fitted

    def predict(self, X):
        """Predicted class labels, shape (n_samples,) ((n_samples, n_labels) for multilabel)."""
        P, fitted = self._class_outputs(X)
        classes, mode = fitted["classes_"], fitted["_target_mode"]
        if mode == "multilabel":
            return _decode(P, "multilabel")
        if classes.size == 1:
            return np.repeat(classes, P.shape[0])
        return classes[_decode(P, mode)]

    def predict_proba(self, X):
        """Class probabilities, shape (n_samples, n_classes), in the order of ``classes_``."""
        P, fitted = self._class_outputs(X)
        mode = fitted["_target_mode"]
        if fitted["classes_"].size == 1 and mode != "multilabel":
            return np.ones((P.shape[0], 1), dtype=P.dtype)
        if mode == "sigmoid":
            out = np.empty((P.shape[0], 2), dtype=P.dtype)
            np.subtract(1, P[:, 0], out=out[:, 0])
            out[:, 1] = P[:, 0]
            return out
        return P

    def _class_outputs(self, X):
        """(outputs (n, K), the fitted state they come from): the network's link (softmax or
        sigmoid) of the logits, or for one-vs-rest the normalised sigmoids (_ovr_normalise)."""
        Z, fitted = self._predict_outputs(X, link=False)
        if fitted["_target_mode"] == "ovr":
            return _ovr_normalise(Z), fitted
        return fitted["network_"]._loss.link(Z), fitted

    def predict_log_proba(self, X):
        """log(predict_proba(X))."""
        P = self.predict_proba(X)
        return np.log(P, out=P)

    def _validation_score(self, net, targets, X, y, sw):
        """Accuracy of `net` on encoded targets (NaN when the outputs are not finite)."""
        return self._score_outputs(net.predict(X), targets, y, sw)

    def _score_outputs_global(self, comm, P, targets, y, sw, extra=()):
        """Data-parallel accuracy over every rank's validation rows (this rank's link outputs
        P, possibly no rows) in one allreduce of [right, total, *extra]; returns (accuracy,
        the summed extra values).  NaN when any rank's outputs are not finite."""
        if P.shape[0] == 0:
            sums = [0.0, 0.0]
        elif np.isfinite(P).all():
            hit = self._hits(P, targets.mode, y)
            w = np.ones(hit.shape[0]) if sw is None else sw.astype(np.float64)
            sums = [float(np.dot(w, hit)), float(w.sum())]
        else:
            sums = [float("nan"), 1.0]
        out = comm.allreduce_scalars(np.concatenate([sums, np.asarray(extra, np.float64)]))
        return float(out[0] / out[1]), out[2:]

    def _score_outputs(self, P, targets, y, sw):
        """Accuracy of the link outputs P against encoded targets (NaN when P is not finite)."""
        if not np.isfinite(P).all():
            return float("nan")
        return accuracy(*_truth_and_prediction(P, targets.mode, y), sw)

    @staticmethod
    def _hits(P, mode, y):
        """1.0 where the row's prediction is right (every label of it, for multilabel)."""
        truth, pred = _truth_and_prediction(P, mode, y)
        hit = truth == pred
        return (hit.all(axis=1) if hit.ndim == 2 else hit).astype(np.float64)

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


def _ovr_normalise(Z):
    """One-vs-rest probabilities sigmoid(z_k) / sum_j sigmoid(z_j) from the logits Z (n, K).
    Rows whose sigmoids all underflow (every z below about -745 in float64, -104 in float32)
    would be 0 / 0: there the same ratio is computed as softmax(log sigmoid(z)), so the
    probabilities stay finite for finite logits (and follow the logits' order, as predict does)."""
    P = get_loss("binary_cross_entropy").link(Z.copy())
    s = P.sum(axis=1)
    ok = s >= np.finfo(P.dtype).tiny
    P[ok] /= s[ok, None]
    bad = ~ok & ~np.isnan(s)
    if bad.any():
        log_sigmoid = np.ascontiguousarray(-np.logaddexp(Z.dtype.type(0), -Z[bad]))
        P[bad] = get_loss("softmax_cross_entropy").link(log_sigmoid)
    return P


def _truth_and_prediction(P, mode, y):
    """(true class indices from the encoded targets y, predicted ones from the outputs P); the
    0/1 indicator matrices for multilabel."""
    pred = _decode(P, mode)
    if mode == "sigmoid":
        return y[:, 0].astype(np.intp), pred
    if mode == "ovr":
        return np.argmax(y, axis=1), pred
    if mode == "multilabel":
        return y.astype(np.int64), pred
    return y, pred


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

