"""The fit loop of nnc's estimators (MLP* and NeuralNet*), top to bottom in one class.

``BaseNeuralNet.fit`` / ``partial_fit`` run here: check the hyper-parameters (``_params.py``),
validate X, y and sample_weight (``_inputs.py``, and the target hooks of ``_classifier.py`` /
``_regressor.py``), build the network, then train it with a stochastic solver (epochs through
``Sequential.train_epoch``, one Python round trip per epoch; the validation split and early
stopping with best-weight restore; scikit-learn's tol / n_iter_no_change stopping rule and its
'invscaling' / 'adaptive' learning rates; verbose lines; KeyboardInterrupt) or with L-BFGS on
the flat parameter buffer, and finally commit the fitted attributes.  The optimizers themselves
(the per-step update rules) live apart in ``nnc.optimizers``; the subclasses (``_mlp.py``,
``_neural_net.py``) describe the layers, the optimizer and the hyper-parameters.

Atomic fits: everything is validated before any training; a fresh fit trains a NEW network that
is swapped into ``self`` only at the end, a warm start / partial_fit snapshots the parameter
buffer (and trains a copy of the optimizer) and restores it when an exception escapes.  So a
fit that fails leaves a previously fitted model exactly as it was (weights and layer states such
as Dropout's generator).  A fit fails when the training loss turns NaN/inf, or when at the end
the weights, or the outputs on (a sample of at most ``_FINITE_CHECK_ROWS`` rows of) the training
data, are not finite: partial_fit and warm starts included.

KeyboardInterrupt is not a failure: training stops, a warning is issued and the model trained so
far is kept.  SIGINT is deferred to batch boundaries while training runs (``nnc._interrupt``), so
every counter matches the weights: an epoch cut short counts as an iteration over the batches it
applied (``n_iter_`` + 1, ``t_`` + their samples, their mean loss in ``loss_curve_``, the
optimizer's step count + the batches), with the usual end-of-epoch bookkeeping (validation score,
stopping counters, best weights), and then training stops.

Threads: predictions may run in any number of threads while one thread fits.  ``_commit`` writes
the fitted attributes holding ``_FITTED_LOCK`` and a prediction reads what it needs (network_,
classes_ ...) under the same lock (``_fitted_state``), so it uses one fitted model, never half of
two; a warm start / partial_fit brackets its in-place update with ``Sequential._begin_update`` /
``_end_update``, so predictions meanwhile use the weights from before the call.

Callbacks (``set_callbacks``, scikit-learn's protocol; nnc/_estimators/_callbacks.py): the fit
loop calls one dispatch object, ``_FitCallbacks``, at the hook points: root task begin (after
validation) and end (after training, before the end-of-step check and the commit), each epoch's
begin and end (after its bookkeeping; a callback may stop training there), each batch of the
Python batch loop (``on_batch`` of ``Sequential.train_epoch``; never inside the compiled loop),
and each L-BFGS iteration.  ``_fitted_attributes`` builds what ``_commit`` sets, also for the
``fitted_estimator`` the hooks see.  Without callbacks the dispatch object is None.

Validation: with ``early_stopping`` (a ``validation_fraction`` split) or a user-given set
(NeuralNet*: ``fit(..., X_val=, y_val=, sample_weight_val=)``) every epoch ends with one forward
pass over the validation set into buffers allocated once per fit: the score
(``validation_scores_``) and the loss (``validation_loss_curve_``: the training loss's data term,
with the same ``loss_scale``, without the L2 penalty).  A user-given set without early stopping is
only watched: the stopping rule stays the training loss's.

A diverging fit (a non-finite training loss) raises NonFiniteLossError, leaving the estimator as
before, except with ``early_stopping`` where, as scikit-learn (which keeps the best weights and
records NaN validation scores), the epoch is recorded (its non-finite loss, NaN validation score
and loss), training stops with a ConvergenceWarning and the best weights are restored.

Model files sit above the estimators: ``est.save(path)`` imports ``nnc._io`` when it is called,
so importing an estimator never imports the model-file code.
"""
import contextlib
import copy
import threading
import time
import warnings

import numpy as np

from nnc import _distributed
from nnc._compat import SKLEARN_INSTALLED, ConvergenceWarning, NotFittedError
from nnc._estimators._callbacks import CallbackSupport, _FitCallbacks, with_callbacks
from nnc._estimators._inputs import (_ALL_ZERO_WEIGHTS, _InputValidation, _check_sample_weight,
                                     _check_y_present)
from nnc._estimators._params import (_check_bool, _check_interval, _check_random_state_param,
                                     _check_verbose)
from nnc._interrupt import EpochInterrupted, deferred_sigint
from nnc._network import Sequential, _check_random_state
from nnc._trainer import compiled_epoch, consume_sigint
from nnc._validation import check_sample_weight

if SKLEARN_INSTALLED:
    from sklearn.base import BaseEstimator
else:
    from nnc._compat import BaseEstimator


# Above this many samples L-BFGS accumulates the full-batch gradient over chunks of this size.
_LBFGS_CHUNK = 8192

# Attributes that exist only after a stochastic solver ran (L-BFGS leaves them unset).
_CURVE_ATTRS = ("loss_curve_", "best_loss_", "validation_scores_", "best_validation_score_",
                "validation_loss_curve_")

#: held while a fit commits its attributes and while a prediction reads them (microseconds)
_FITTED_LOCK = threading.Lock()

# The end-of-fit check of the outputs runs on at most this many training rows, spread evenly:
# weights that overflow the outputs (~1e26 in float32) do so on every row (rows that alone
# overflow fail the next epoch's loss check).  A partial_fit of 200 rows into a 784-256-128-10
# MLP (1 thread) took 3.08 ms with 32 rows checked, 4.0 ms with 256 (and 2.97 ms with no output
# check), measured by
#   OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 python -m timeit -s "import numpy as np, nnc,
#   nnc._estimators._base as b; b._FINITE_CHECK_ROWS = 32; r = np.random.RandomState(0);
#   X = r.rand(200, 784).astype('f4'); y = r.randint(0, 10, 200);
#   c = nnc.MLPClassifier((256, 128)).partial_fit(X, y, classes=range(10))" "c.partial_fit(X, y)"
_FINITE_CHECK_ROWS = 32


class NonFiniteLossError(ValueError, FloatingPointError):
    """Training produced a non-finite loss; the estimator was left as before the call."""


def _check_finite_result(net, X, comm=None):
    """NonFiniteLossError unless the weights, and the outputs on up to _FINITE_CHECK_ROWS rows
    of X spread evenly, are finite (the end-of-step check of fit, partial_fit, warm starts;
    data-parallel: of every rank's X, the error raised on every rank)."""
    if not np.isfinite(net.params).all():    # the same weights on every rank
        raise _collective(NonFiniteLossError(
            "Solver produced non-finite parameter weights. The input data may contain large "
            "values and need to be preprocessed."), comm)
    n = X.shape[0]
    rows = X[::max(1, n // _FINITE_CHECK_ROWS)][:_FINITE_CHECK_ROWS]
    bad = not np.isfinite(net.forward(np.ascontiguousarray(rows))).all()
    if comm is not None:
        bad = comm.any(bad)
    if bad:
        raise _collective(NonFiniteLossError(
            "Solver produced weights whose outputs are not finite (they overflow the network's "
            f"dtype, {np.dtype(net.dtype).name}). The input data may contain large values and "
            "need to be preprocessed, or the learning rate is too high; the estimator was left "
            "as it was before this call."), comm)


def _collective(exc, comm):
    """`exc`, marked as raised alike on every rank when training data-parallel."""
    if comm is not None:
        exc.nnc_collective = True
    return exc


def _weight_sum(sw, n):
    """The sample-weight sum of n rows (float64): n without weights."""
    return float(n) if sw is None else float(sw.sum(dtype=np.float64))


def _agreement(comm):
    """Data-parallel: ``comm.agreement()`` (local errors raised on every rank after one
    allgather); otherwise a block that raises as usual and whose box is ignored."""
    if comm is None:
        return contextlib.nullcontext(_distributed._Box())
    return comm.agreement()


def _deliver_pending(guard, comm):
    """At an epoch boundary: a Ctrl-C recorded by the guard is delivered (Python's handler raises
    KeyboardInterrupt).  Data-parallel: one collective asks every rank, and every rank stops
    (KeyboardInterrupt) when any rank saw Ctrl-C."""
    pending = guard is not None and guard.pending is not None
    if comm is None:
        if pending:
            guard.deliver()
        return
    if comm.any(pending):
        consume_sigint(guard)
        raise KeyboardInterrupt


def _params_digest(est):
    """The hyper-parameters every rank must share, as a comparable text (layers and optimizer
    instances by their configs; a RandomState instance by its state)."""
    out = {}
    for key, value in sorted(est.get_params(deep=False).items()):
        if isinstance(value, np.random.RandomState):
            value = ("RandomState", value.get_state()[1][:4].tolist(), value.get_state()[2])
        elif isinstance(value, (list, tuple)) and any(hasattr(v, "get_config") for v in value):
            value = [(type(v).__name__, v.get_config()) for v in value]
        elif hasattr(value, "get_config"):
            value = (type(value).__name__, value.get_config())
        elif isinstance(value, dict):
            value = sorted(value.items(), key=repr)
        out[key] = repr(value)
    return out


class SaveMixin:
    """Adds ``save(path)`` to an estimator (nnc.load reads the file back).  ``nnc._io`` is
    imported when ``save`` is called: model files sit above the estimators they save."""

    def save(self, path):
        """Save this model to a safe ``.npz`` model file; read it back with ``nnc.load(path)``."""
        from nnc._io import save
        save(self, path)
        return self


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


class _ValidationSet:
    """The validation data of a fit (X, encoded y, sample weights) and the buffers its per-epoch
    pass writes: logits (then the link's outputs) and the loss kernel's gradient output, both
    (n_val, *output_shape), allocated once per fit."""

    def __init__(self, net, X, y, sw, loss_scale, comm=None):
        self.X, self.y, self.sw = X, y, sw
        self.comm = comm
        self.weight = _weight_sum(sw, X.shape[0])
        shape = (X.shape[0],) + tuple(net.output_shape)
        self.Z = np.empty(shape, dtype=net.dtype)
        self.dZ = np.empty(shape, dtype=net.dtype)
        self.loss_scale = float(loss_scale)

    def evaluate(self, est, net, targets):
        """(score, loss) of the network's current weights: one forward pass, the training
        loss's data term (no L2 penalty), then the score on the link's outputs (NaN when they
        are not finite)."""
        Z = self.Z
        if Z.shape[0]:          # data-parallel: a rank's split may hold no rows
            net._forward_into(self.X, Z, net.params, False)
            loss = self.loss_scale * float(net._loss.loss_gradient(Z, self.y, self.sw, self.dZ))
            net._loss.link(Z)
        else:
            loss = 0.0
        if self.comm is None:
            return est._score_outputs(Z, targets, self.y, self.sw), loss
        # data-parallel: score and loss over every rank's validation rows; the loss's weighted
        # sum travels in the score's first allreduce
        score, (loss_sum, weight) = est._score_outputs_global(
            self.comm, Z, targets, self.y, self.sw, [loss * self.weight, self.weight])
        return score, loss_sum / weight


class BaseNeuralNet(SaveMixin, _InputValidation, CallbackSupport, BaseEstimator):
    """Base class of nnc's estimators (see the module docstring).

    Subclass hooks: ``_check_params``, ``_max_iter``, ``_batch_size``, ``_make_layers``,
    ``_make_optimizer``, ``_lr_schedule``, ``_initial_learning_rate``, ``_solver``,
    ``_loss_scale``, ``_clip_grad_norm``, ``_report_epoch``, ``_extra_fitted_attributes``, the
    input hooks of ``_InputValidation`` (``_input_shape_param``, ``_accepts_nd_input``) and the
    target hooks of the classifier / regressor mixins (``_encode_targets``,
    ``_encode_validation_targets``, ``_apply_class_weight``, ``_score_outputs``,
    ``_target_attributes``).
    """

    _warn_max_iter = True          # ConvergenceWarning when max_iter is reached (scikit-learn)

    # ---------------------------------------------------------------- fitted state
    def __sklearn_is_fitted__(self):
        return "network_" in self.__dict__

    def _check_is_fitted(self):
        if not self.__sklearn_is_fitted__():
            raise NotFittedError(f"This {type(self).__name__} instance is not fitted yet. Call "
                                 "'fit' with appropriate arguments before using this estimator.")

    def _fitted_state(self):
        """The fitted attributes a prediction reads (a dict, see ``_read_fitted``), taken under
        ``_FITTED_LOCK``: a fit committing in another thread is seen whole or not at all."""
        with _FITTED_LOCK:
            self._check_is_fitted()
            return self._read_fitted()

    def _read_fitted(self):
        """Hook (called with the lock held): what predictions need besides ``network_``."""
        return {"network_": self.network_}

    def _predict_outputs(self, X, link=True):
        """(network outputs, a new array: link-transformed (probabilities / values), or the
        logits when not `link`; the fitted state they come from)."""
        fitted = self._fitted_state()
        net = fitted["network_"]
        X = self._validate_predict_X(X, net)
        return (net.predict(X) if link else net.forward(X)), fitted

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

    @with_callbacks
    def _fit(self, X, y, sample_weight=None, incremental=False, classes=None, X_val=None,
             y_val=None, sample_weight_val=None):
        comm = _distributed.current()
        if comm is None:
            return self._fit_with(None, X, y, sample_weight, incremental, classes, X_val, y_val,
                                  sample_weight_val)
        # data-parallel (nnc.distributed): a failure on this rank alone aborts every rank
        with comm.collective():
            return self._fit_with(comm, X, y, sample_weight, incremental, classes, X_val, y_val,
                                  sample_weight_val)

    def _fit_with(self, comm, X, y, sample_weight, incremental, classes, X_val, y_val,
                  sample_weight_val):
        """The fit; `comm` (nnc._distributed.Communicator or None) makes it data-parallel."""
        # -- validation (nothing in self changes before training succeeded); data-parallel: on
        # every rank's shard, then one allgather, so any error is raised on every rank
        with _agreement(comm) as agreed:
            self._check_params()
            fitted = self.__sklearn_is_fitted__()
            warm = fitted and (incremental or self.warm_start)
            if incremental and self.early_stopping:
                raise ValueError("partial_fit does not support early_stopping=True")
            _check_y_present(self, y)
            X, feature_names = self._validate_X(X, reset=not warm,
                                                dtype=self.network_.dtype if warm else None)
            dtype = self._work_dtype(X, warm)      # X's own, or the network's for token ids
            n = X.shape[0]
            if comm is None:
                targets = self._encode_targets(y, warm, incremental, classes, dtype)
                if targets.y.shape[0] != n:
                    raise ValueError(f"Found input variables with inconsistent numbers of "
                                     f"samples: [{n}, {targets.y.shape[0]}]")
            else:
                y_summary, targets = self._target_summary(y, n, warm, incremental, classes,
                                                          dtype)
            sw_user = _check_sample_weight(sample_weight, n, dtype, positive_sum=comm is None)
            if comm is None:
                val = self._validation_data(X_val, y_val, sample_weight_val, X, feature_names,
                                            targets)
            else:
                agreed.value = self._rank_summary(X, feature_names, warm, sw_user, y_summary)
                agreed.value["val"] = not (X_val is None and y_val is None
                                           and sample_weight_val is None)
        if comm is not None:
            targets = self._agree(comm, agreed.values, y, warm, incremental, classes, dtype,
                                  targets)
            val = None
            if any(s["val"] for s in agreed.values):
                # data-parallel validation set: each rank passes its own shard, checked against
                # the agreed targets (classes); one more allgather makes any error everyone's
                with comm.agreement():
                    if X_val is None and y_val is None:
                        raise ValueError("fit(X_val=, y_val=) inside nnc.distributed: every "
                                         "rank must pass its own validation shard (another "
                                         "rank passed one)")
                    val = self._validation_data(X_val, y_val, sample_weight_val, X,
                                                feature_names, targets)
        sw = self._apply_class_weight(sw_user, targets, incremental, dtype)
        rng = _check_random_state(self.random_state)

        if warm:
            net = self.network_
        else:
            net = self._build_network(X.shape[1:], targets, dtype, rng, incremental)
            if comm is not None:
                comm.bcast(net.params)    # rank 0's initial weights (random_state=None too)
        y_net = net._check_y(targets.y, n)
        if val is not None:
            val = (val[0], net._check_y(val[1], val[0].shape[0]), val[2])
        state = self._initial_state(net, warm, val is not None or bool(self.early_stopping))
        lbfgs = self._solver() == "lbfgs"
        # the root task: max_iter epochs (one for partial_fit), or L-BFGS iterations + 1
        callbacks = _FitCallbacks.start(
            self, "partial_fit" if incremental else "fit",
            self._max_iter() + 1 if lbfgs else (1 if incremental else self._max_iter()),
            X, y, sw_user,
            lambda: self._fitted_attributes(net, state, targets, feature_names, warm))
        # warm: other threads' predictions read this copy until the update is over
        snapshot = net._begin_update() if warm else None
        layer_states = [layer.state_dict() for layer in net.layers] if warm else None
        old_clip = net.clip_grad_norm
        try:
            net.clip_grad_norm = self._clip_grad_norm()
            if warm:
                self._sync_user_weights(net)
            if lbfgs:
                self._fit_lbfgs(net, X, y_net, sw, state, targets, callbacks, comm)
            else:
                self._fit_stochastic(net, X, y_net, sw, state, targets, incremental, rng, val,
                                     callbacks, comm)
            if callbacks is not None:
                callbacks.end()          # may still change the weights (restore the best)
            if comm is not None:
                comm.check_same_weights(net)
            _check_finite_result(net, X, comm)
        except BaseException:
            if warm:
                net.params[...] = snapshot
                for layer, layer_state in zip(net.layers, layer_states):
                    layer.load_state_dict(layer_state)
                net.clip_grad_norm = old_clip
                net._end_update()
            raise
        try:
            self._commit(net, state, targets, feature_names, warm)
        finally:
            if warm:
                net._end_update()
        return self

    # ---------------------------------------------------------------- data-parallel agreement
    def _rank_summary(self, X, feature_names, warm, sw, y_summary):
        """What this rank's data and model look like; every rank must agree (``_agree``)."""
        return {
            "n": int(X.shape[0]),
            "shape": tuple(X.shape[1:]),
            "dtype": X.dtype.name,
            "names": None if feature_names is None else [str(v) for v in feature_names],
            "params": _params_digest(self),
            "warm": bool(warm),
            "weights": _distributed.digest(self.network_.params) if warm else None,
            "sw": float(X.shape[0]) if sw is None else float(sw.sum(dtype=np.float64)),
            "weighted": sw is not None,
            "y": y_summary,
        }

    def _agree(self, comm, summaries, y, warm, incremental, classes, dtype, targets):
        """Check every rank's summary against the others (the same DistributedError on every
        rank when they differ) and return this rank's targets encoded alike on every rank."""
        def differ(key, what, show=repr):
            values = [s[key] for s in summaries]
            if any(v != values[0] for v in values[1:]):
                text = ", ".join(f"rank {r}: {show(v)}" for r, v in enumerate(values))
                raise _collective(_distributed.DistributedError(
                    f"the ranks disagree on {what} ({text})"), comm)

        differ("shape", "the sample shape (number of features)")
        differ("dtype", "the dtype of X (resolved from X and the dtype parameter)")
        differ("names", "the feature names of X")
        params = [s["params"] for s in summaries]
        for key in params[0]:
            if any(p.get(key) != params[0][key] for p in params[1:]):
                text = ", ".join(f"rank {r}: {p.get(key)}" for r, p in enumerate(params))
                raise _collective(_distributed.DistributedError(
                    f"the ranks disagree on the hyper-parameter {key!r} ({text})"), comm)
        differ("warm", "whether this call continues a fitted model")
        differ("weights", "the fitted weights (a warm start or partial_fit needs the same "
                          "model on every rank)")
        differ("weighted", "whether sample_weight is given")
        if sum(s["sw"] for s in summaries) <= 0:
            raise _collective(ValueError(_ALL_ZERO_WEIGHTS), comm)
        try:
            return self._agree_targets(y, [s["y"] for s in summaries], warm, incremental,
                                       classes, dtype, targets)
        except Exception as exc:      # decided from what every rank shares: raised everywhere
            raise _collective(exc, comm)

    def _initial_state(self, net, warm, validation=False):
        """Loss curve, stopping counters, best weights: continued on warm starts.  The
        validation curves exist when the fit has a validation set (`validation`)."""
        if warm:
            def curve(name):
                values = getattr(self, name, None)
                return None if values is None else list(values)

            st = _FitState(
                t_=getattr(self, "t_", 0),
                loss_curve_=list(getattr(self, "loss_curve_", None) or []),
                best_loss_=getattr(self, "best_loss_", np.inf),
                validation_scores_=curve("validation_scores_"),
                validation_loss_curve_=curve("validation_loss_curve_"),
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
                           validation_loss_curve_=None, best_validation_score_=None,
                           no_improvement_count=0, best_params=net.params.copy(),
                           optimizer=None)
        if validation:
            if st.validation_scores_ is None:
                st.validation_scores_ = []
                st.best_validation_score_ = -np.inf
            if st.best_validation_score_ is None:
                st.best_validation_score_ = -np.inf
            if st.validation_loss_curve_ is None:
                st.validation_loss_curve_ = []
        else:
            st.validation_scores_ = None
            st.best_validation_score_ = None
            st.validation_loss_curve_ = None
        if self.early_stopping:
            st.best_loss_ = None
        elif st.best_loss_ is None:
            st.best_loss_ = np.inf
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

    # ---------------------------------------------------------------- validation data
    def _validation_data(self, X_val, y_val, sample_weight_val, X, feature_names, targets):
        """None, or (X_val, y_val encoded as y, sample_weight_val) validated against the
        training data (NeuralNet*: ``fit(..., X_val=, y_val=, sample_weight_val=)``)."""
        if X_val is None and y_val is None:
            if sample_weight_val is not None:
                raise ValueError("sample_weight_val is given, but X_val and y_val are not.")
            return None
        if y_val is None:
            raise ValueError("X_val is provided, but y_val was not provided.")
        if X_val is None:
            raise ValueError("y_val is provided, but X_val was not provided.")
        names = feature_names
        Xv, names_val = self._validate_X(X_val, reset=True, dtype=X.dtype)
        if Xv.ndim == 2 and X.ndim > 2 and Xv.shape[1] == int(np.prod(X.shape[1:])):
            Xv = Xv.reshape((Xv.shape[0],) + X.shape[1:])
        if Xv.shape[1:] != X.shape[1:]:
            raise ValueError(f"X_val has sample shape {Xv.shape[1:]}, but X has "
                             f"{X.shape[1:]}.")
        if Xv.shape[0] == 0:
            raise ValueError("X_val has no samples.")
        if names is not None and names_val is not None and not (
                len(names) == len(names_val) and np.all(names == names_val)):
            raise ValueError("X_val's feature names differ from X's.")
        yv = self._encode_validation_targets(y_val, targets, X.dtype)
        if yv.shape[0] != Xv.shape[0]:
            raise ValueError(f"Found input variables with inconsistent numbers of samples: "
                             f"X_val has {Xv.shape[0]}, y_val {yv.shape[0]}")
        swv = _check_sample_weight(sample_weight_val, Xv.shape[0], X.dtype)
        if swv is not None and not swv.sum() > 0:
            raise ValueError("sample_weight_val must have a positive sum.")
        return Xv, yv, swv

    # ---------------------------------------------------------------- stochastic solvers
    def _fit_stochastic(self, net, X, y, sw, st, targets, incremental, rng, val=None,
                        callbacks=None, comm=None):
        if incremental and st.optimizer is not None:
            optimizer = copy.deepcopy(st.optimizer)
        else:
            optimizer = self._make_optimizer()
        st.optimizer = optimizer
        schedule, lr_init, power_t = self._lr_schedule()

        train = None
        split = val is None and self.early_stopping
        with _agreement(comm) as agreed:     # data-parallel: every rank's split, then one check
            if split:
                train, val_idx = _train_val_split(X.shape[0], float(self.validation_fraction),
                                                  rng, targets.stratify)
                if comm is None and val_idx.shape[0] < 2:
                    raise ValueError("The validation set is too small. Increase "
                                     "'validation_fraction' or the size of your dataset.")
                val = (X[val_idx], y[val_idx], None if sw is None else sw[val_idx])
                X, y = X[train], y[train]
                sw = None if sw is None else sw[train]
            n = X.shape[0]
            batch_size = self._batch_size(n)
            val_weight = 0.0 if val is None else _weight_sum(val[2], val[0].shape[0])
            if comm is None and split and not val_weight > 0:
                raise ValueError("The sample weights of the validation split sum to zero.")
            agreed.value = (n, batch_size, 0 if val is None else val[0].shape[0], val_weight)
        sync = None
        if comm is not None:
            sync = _distributed.FitSync(comm, [v[:3] for v in agreed.values], sw, split, rng)
            if split and not sum(v[3] for v in agreed.values) > 0:
                raise _collective(ValueError("The sample weights of the validation split sum "
                                             "to zero (over every rank)."), comm)
        shuffle_rng = rng if sync is None else sync.shuffle_rng
        validation = None if val is None else _ValidationSet(net, *val,
                                                             self._loss_scale(targets), comm)
        if callbacks is not None:
            callbacks.training_part(X, train)
        loss_scale = self._loss_scale(targets)
        sample_idx = np.arange(n)
        max_iter = self._max_iter()
        start = time.perf_counter()
        with deferred_sigint() as guard:
            try:
                for _ in range(max_iter):
                    if self.shuffle:
                        perm = np.arange(n)
                        shuffle_rng.shuffle(perm)
                        sample_idx = sample_idx[perm]
                    interrupted = diverged = batches = None
                    order = sample_idx if self.shuffle else None
                    epoch_sync = None if sync is None else sync.epoch(order)
                    if callbacks is not None:    # batch tasks on the Python batch loop only
                        batches = callbacks.epoch_begin(
                            0 if compiled_epoch(net, optimizer) else
                            -(-n // batch_size) if sync is None else sync.n_steps)
                    try:
                        loss = net.train_epoch(X, y, optimizer, batch_size, sw, order,
                                               loss_scale, batches, epoch_sync)
                        if sync is not None:     # (n_done: a batch hook on some rank)
                            n_done = epoch_sync.n_total if epoch_sync.n_done is None \
                                else epoch_sync.n_done
                        elif batches is not None and batches.n_done is not None:
                            n_done = batches.n_done      # a batch hook ended the epoch
                        else:
                            n_done = n
                    except EpochInterrupted as exc:   # at a batch boundary: count its batches
                        interrupted, loss, n_done = exc, exc.loss, exc.n_samples
                    except FloatingPointError as exc:
                        # data-parallel: the loss is global, so every rank gets here alike
                        if not self.early_stopping:
                            raise _collective(NonFiniteLossError(
                                "Solver produced non-finite parameter weights. The input data "
                                "may contain large values and need to be preprocessed. The "
                                "training loss became non-finite in iteration "
                                f"{st.n_iter_ + 1} ({exc}); the estimator was left as it was "
                                "before this call."), comm) from exc
                        # scikit-learn keeps the best weights and records NaN scores: stop here
                        diverged = exc
                        loss = getattr(exc, "loss", np.nan)
                        n_done = getattr(exc, "n_samples", 0)
                    st.n_iter_ += 1
                    st.loss_ = float(loss)
                    st.t_ += n_done
                    st.loss_curve_.append(st.loss_)
                    val_score = None
                    if validation is not None:
                        val_score, val_loss = (np.nan, np.nan) if diverged is not None else \
                            validation.evaluate(self, net, targets)
                        st.validation_loss_curve_.append(val_loss)
                    self._report_epoch(st.n_iter_, st.loss_, val_score,
                                       time.perf_counter() - start)
                    self._update_no_improvement(st, net, val_score)
                    if schedule == "invscaling":
                        optimizer.learning_rate = float(lr_init) / (st.t_ + 1) ** power_t
                    stop = callbacks is not None and callbacks.epoch_end()
                    if comm is not None:
                        # ONE allreduce per epoch: a stop asked by any rank's callbacks (set
                        # on some ranks only, or watching local data), and Ctrl-C on any rank
                        # during the epoch's bookkeeping, stop every rank here
                        flags = comm.allreduce_scalars(
                            [1.0 if guard is not None and guard.pending is not None else 0.0,
                             1.0 if stop else 0.0])
                        stop = bool(flags[1] > 0)
                        if flags[0] > 0 and diverged is None and interrupted is None:
                            consume_sigint(guard)
                            raise KeyboardInterrupt
                    if diverged is not None:
                        warnings.warn(
                            f"The training loss became {st.loss_} in iteration {st.n_iter_} "
                            f"({diverged}); training stopped and the weights of the best "
                            "validation score were restored (early_stopping=True).",
                            ConvergenceWarning, stacklevel=5)
                        break
                    if interrupted is not None:
                        raise interrupted
                    if stop:
                        break
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
                                      ConvergenceWarning, stacklevel=5)
                    if comm is None and guard is not None and guard.pending is not None:
                        guard.deliver()      # Ctrl-C during the bookkeeping: stop here
                _deliver_pending(guard, comm)       # ... or after the last epoch
            except KeyboardInterrupt:     # data-parallel: raised on every rank alike
                warnings.warn("Training interrupted by user.", UserWarning, stacklevel=5)
        if self.early_stopping:
            net.params[...] = st.best_params

    def _trigger_stopping(self, msg, schedule, optimizer):
        """scikit-learn's rule: stop, unless 'adaptive' can still divide the rate by 5."""
        verbose = self.verbose and _distributed.prints_here()
        if schedule != "adaptive":
            if verbose:
                print(msg + " Stopping.")
            return True
        if optimizer.learning_rate <= 1e-6:
            if verbose:
                print(msg + " Learning rate too small. Stopping.")
            return True
        optimizer.learning_rate /= 5.0
        if verbose:
            print(msg + " Setting learning rate to %f" % optimizer.learning_rate)
        return False

    def _update_no_improvement(self, st, net, val_score):
        if val_score is not None and not self.early_stopping:   # a validation set watched only
            st.validation_scores_.append(val_score)
            if val_score > st.best_validation_score_:
                st.best_validation_score_ = val_score
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
        if self.verbose and _distributed.prints_here():     # data-parallel: rank 0 prints
            print("Iteration %d, loss = %.8f" % (n_iter, loss))
            if val_score is not None:
                print("Validation score: %f" % val_score)

    # ---------------------------------------------------------------- L-BFGS
    def _fit_lbfgs(self, net, X, y, sw, st, targets, callbacks=None, comm=None):
        """scipy's L-BFGS-B directly on the flat buffer (weights first, then biases: the x
        vector is scikit-learn's packed coefs_ + intercepts_).  Data-parallel: each evaluation
        sums every rank's weighted loss and gradient in one allreduce, so every rank runs the
        same iterations."""
        import scipy.optimize

        st.lbfgs = True
        n = X.shape[0]
        alpha = float(self.alpha)
        loss_scale = self._loss_scale(targets)
        sw_sum = float(n) if sw is None else float(sw.sum())
        if comm is not None:
            sw_sum = float(comm.allreduce_scalars([float(n) if sw is None else
                                                   float(sw.sum(dtype=np.float64))])[0])
        n_decay = net.n_decay
        chunk = n if n <= _LBFGS_CHUNK else _LBFGS_CHUNK
        net._ensure_batch(chunk)
        params = net.params
        best = {"f": np.inf, "x": None}

        n_params = params.shape[0]

        def fun(x):
            params[...] = x
            if chunk == n and comm is None:
                loss = float(net._batch_loss_gradient(X, y, sw))
                grad = net.grads.astype(np.float64)
            else:
                # weighted sums over chunks; data-parallel: [gradient sum, loss sum] of every
                # rank added in one allreduce
                acc = np.zeros(n_params + 1)
                grad = acc[:n_params]
                for a in range(0, n, chunk):
                    b = min(n, a + chunk)
                    swc = None if sw is None else sw[a:b]
                    wc = float(b - a) if swc is None else float(swc.sum())
                    if wc == 0:
                        continue
                    acc[n_params] += wc * float(net._batch_loss_gradient(X[a:b], y[a:b], swc))
                    grad += wc * net.grads
                if comm is not None:
                    acc = comm.allreduce_scalars(acc)
                    grad = acc[:n_params]
                loss = float(acc[n_params]) / sw_sum
                grad /= sw_sum
            w = x[:n_decay]
            loss = loss_scale * loss + 0.5 * alpha * float(np.dot(w, w)) / sw_sum
            grad[:n_decay] += (alpha / sw_sum) * w
            if loss < best["f"]:
                best["f"], best["x"] = loss, np.array(x, dtype=np.float64)
            return loss, grad

        max_iter = self._max_iter()
        x0 = params.astype(np.float64)
        iterations = [0]
        bridge = None
        if callbacks is not None:       # one task per iteration, the iterate as the weights
            def set_weights(xk):
                params[...] = xk
                st.n_iter_ = iterations[0]
                st.loss_ = best["f"]

            bridge = callbacks.lbfgs(set_weights)

        stopped = [False]

        def count(xk):
            iterations[0] += 1
            stop = False
            if bridge is not None:
                try:
                    bridge(xk)
                except StopIteration:
                    stop = True
            if comm is not None:
                # data-parallel: every rank runs the same iterations, so a stop asked by any
                # rank's callbacks ends them all (one small allreduce per iteration)
                stop = comm.any(stop)
            if stop:
                stopped[0] = True
                raise StopIteration

        try:
            res = scipy.optimize.minimize(
                fun, x0, method="L-BFGS-B", jac=True, callback=count,
                options={"maxfun": self.max_fun, "maxiter": max_iter, "gtol": self.tol})
        except (KeyboardInterrupt, StopIteration) as exc:   # StopIteration: scipy < 1.11
            if isinstance(exc, KeyboardInterrupt):
                if comm is not None:
                    raise       # not agreed between the ranks: abort (nnc/_distributed.py)
                warnings.warn("Training interrupted by user.", UserWarning)
            if best["x"] is not None:
                params[...] = best["x"]
                st.loss_ = best["f"]
            st.n_iter_ = iterations[0]
            if bridge is not None:
                bridge.close()
            return
        if bridge is not None:
            bridge.close()
        st.n_iter_ = int(min(res.nit, max_iter))
        if res.status != 0 and not stopped[0]:
            message = (f"lbfgs failed to converge after {st.n_iter_} iteration(s) "
                       f"(status={res.status}):\n{res.message}\n")
            if st.n_iter_ == max_iter:
                message += ("\nIncrease the number of iterations to improve the convergence "
                            f"(max_iter={max_iter}).")
            message += ("\nYou might also want to scale the data as shown in:\n"
                        "    https://scikit-learn.org/stable/modules/preprocessing.html")
            warnings.warn(message, ConvergenceWarning, stacklevel=5)
        st.loss_ = float(res.fun)
        params[...] = res.x

    # ---------------------------------------------------------------- commit
    def _commit(self, net, st, targets, feature_names, warm):
        with _FITTED_LOCK:
            self._commit_locked(net, st, targets, feature_names, warm)

    def _commit_locked(self, net, st, targets, feature_names, warm):
        attrs = self._fitted_attributes(net, st, targets, feature_names, warm, final=True)
        if not warm and feature_names is None:
            self.__dict__.pop("feature_names_in_", None)
        if st.lbfgs:
            if not warm:
                for name in _CURVE_ATTRS:
                    self.__dict__.pop(name, None)
            self.__dict__.pop("_optimizer", None)
        self.__dict__.update(attrs)

    def _fitted_attributes(self, net, st, targets, feature_names, warm, final=False):
        """The attributes a fit sets (a dict): what ``_commit`` writes (`final`), or during the
        fit the ``fitted_estimator`` of callbacks (curves copied, the network shared)."""
        attrs = {"network_": net, "layers_": net.layers}
        if not warm:
            attrs["n_features_in_"] = int(np.prod(net.input_shape))
            if feature_names is not None:
                attrs["feature_names_in_"] = feature_names
        attrs.update(self._target_attributes(targets))
        attrs.update(n_outputs_=int(targets.n_outputs), out_activation_=net._loss.out_activation,
                     n_iter_=st.n_iter_, t_=st.t_, loss_=st.loss_)
        if st.lbfgs:
            attrs["_best_params"] = net.params.copy() if final else net.params
        else:
            def curve(values):
                return values if final or values is None else list(values)

            attrs.update(loss_curve_=curve(st.loss_curve_), best_loss_=st.best_loss_,
                         validation_scores_=curve(st.validation_scores_),
                         validation_loss_curve_=curve(st.validation_loss_curve_),
                         best_validation_score_=st.best_validation_score_,
                         _no_improvement_count=st.no_improvement_count,
                         _best_params=st.best_params, _optimizer=st.optimizer)
        attrs.update(self._extra_fitted_attributes(net))
        return attrs

    def _extra_fitted(self, net):
        """Set the subclass attributes derived from the network (MLP coefs_)."""
        self.__dict__.update(self._extra_fitted_attributes(net))

    def _extra_fitted_attributes(self, net):
        """Hook: subclass attributes derived from the network (MLP coefs_), a dict."""
        return {}

    # ---------------------------------------------------------------- check_gradients support
    def _gradcheck_problem(self, X, y, sample_weight=None):
        """(network_, X validated, y encoded as the loss expects, sample_weight validated): the
        problem ``nnc.check_gradients(estimator, X, y)`` differentiates."""
        net = self._fitted_state()["network_"]
        X = self._validate_predict_X(X, net)
        targets = self._encode_targets(y, True, True, None, net.dtype)
        sw = check_sample_weight(sample_weight, X.shape[0], net.dtype)
        return net, X, net._check_y(targets.y, X.shape[0]), sw

