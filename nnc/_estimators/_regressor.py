"""The regressors' target side: y as the network reads it, predictions, R².

``_RegressorNN`` is mixed in front of an estimator base (``MLPRegressor(_RegressorNN,
RegressorMixin, _BaseMLP)``) and supplies the target hooks the fit loop in ``_base.py`` calls:
``_encode_targets`` checks y (numeric, finite, 1-D or 2-D; a column vector is flattened with
scikit-learn's warning) and reshapes it to (n_samples, n_outputs) in the working dtype;
``_regression_loss`` names the loss (a subclass hook: NeuralNetRegressor also offers others);
``_score_outputs`` is the R² early stopping watches.  ``predict`` returns (n_samples,) for a
single output, as scikit-learn does.  There is no label encoding, so ``_apply_class_weight`` and
``_target_attributes`` do nothing.
"""
import numpy as np

from nnc._compat import SKLEARN_INSTALLED, available_if, r2
from nnc._estimators._inputs import (_Targets, _as_array, _check_finite_y, _check_y_present,
                                     _column_or_1d)


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

    # -- data-parallel fits (nnc.distributed)
    def _target_summary(self, y, n, warm, incremental, classes, dtype):
        """(this rank's target facts, its encoded targets)."""
        targets = self._encode_targets(y, warm, incremental, classes, dtype)
        if targets.y.shape[0] != n:
            raise ValueError(f"Found input variables with inconsistent numbers of samples: "
                             f"[{n}, {targets.y.shape[0]}]")
        return {"n_outputs": int(targets.n_outputs), "single": bool(targets.single)}, targets

    def _agree_targets(self, y, summaries, warm, incremental, classes, dtype, targets):
        from nnc._distributed import DistributedError
        shapes = [(s["n_outputs"], s["single"]) for s in summaries]
        if len(set(shapes)) > 1:
            text = ", ".join(f"rank {r}: {k} output(s)" + (" (1-D y)" if one else "")
                             for r, (k, one) in enumerate(shapes))
            raise DistributedError(f"the ranks disagree on the shape of y ({text})")
        return targets

    def _apply_class_weight(self, sw, targets, incremental, dtype):
        return sw

    def _encode_validation_targets(self, y, targets, dtype):
        """Validation targets (NeuralNetRegressor's ``y_val``) shaped as the training ones."""
        enc = self._encode_targets(y, False, False, None, dtype)
        if enc.n_outputs != targets.n_outputs:
            raise ValueError(f"y_val has {enc.n_outputs} outputs, but y has "
                             f"{targets.n_outputs}")
        return enc.y

    def _target_attributes(self, targets):
        return {}

    def predict(self, X):
        """Predicted values, shape (n_samples,) or (n_samples, n_outputs)."""
        P, _ = self._predict_outputs(X)
        return P.ravel() if P.shape[1] == 1 else P

    def _validation_score(self, net, targets, X, y, sw):
        return self._score_outputs(net.predict(X), targets, y, sw)

    def _score_outputs(self, P, targets, y, sw):
        """R² of the outputs P (NaN when they are not finite)."""
        if not np.isfinite(P).all():
            return float("nan")
        return r2(y, P.reshape(P.shape[0], -1), sw)

    def _score_outputs_global(self, comm, P, targets, y, sw, extra=()):
        """Data-parallel R² over every rank's validation rows (this rank's outputs P, possibly
        no rows): one allreduce for the weighted mean of y (with [*extra] summed alongside), one
        for the two sums of squares (scikit-learn's conventions for constant targets); returns
        (R², the summed extra values).  NaN when any rank's outputs are not finite."""
        Y = y.reshape(y.shape[0], -1).astype(np.float64)
        P = P.reshape(Y.shape).astype(np.float64)
        w = np.ones(Y.shape[0]) if sw is None else sw.astype(np.float64)
        K = Y.shape[1]
        extra = np.asarray(extra, np.float64)
        first = comm.allreduce_scalars(np.concatenate([[w.sum(), Y.shape[0]], w @ Y, extra]))
        summed = first[2 + K:]
        if first[1] < 2:
            return r2(Y[:1], Y[:1]), summed      # scikit-learn's warning and NaN
        mean = first[2:2 + K] / first[0]
        res = w @ (Y - P) ** 2 if np.isfinite(P).all() else np.full(K, np.nan)
        sums = comm.allreduce_scalars(np.concatenate([res, w @ (Y - mean) ** 2]))
        numerator, denominator = sums[:K], sums[K:]
        if not np.isfinite(numerator).all():
            return float("nan"), summed
        scores = np.ones(K)
        nonzero_den = denominator != 0
        valid = nonzero_den & (numerator != 0)
        scores[valid] = 1.0 - numerator[valid] / denominator[valid]
        scores[(numerator != 0) & ~nonzero_den] = 0.0
        return float(np.mean(scores)), summed

    @available_if(lambda est: est._partial_fit_available())
    def partial_fit(self, X, y, sample_weight=None):
        """One epoch over (X, y) with the stochastic solver."""
        return self._fit(X, y, sample_weight, incremental=True)

    if SKLEARN_INSTALLED:
        def __sklearn_tags__(self):
            tags = super().__sklearn_tags__()
            tags.input_tags.sparse = True
            return tags
