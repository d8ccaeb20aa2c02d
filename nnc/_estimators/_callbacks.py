"""Callbacks during fit: scikit-learn's callback protocol on nnc's estimators, and the dispatch
object the fit loop (``_base.py``) calls at each task boundary.

The protocol is scikit-learn's (``sklearn.callback.FitCallback``, 1.9): a callback has
``setup(estimator, context)`` and ``teardown(estimator, context)``, once per fit, and
``on_fit_task_begin`` / ``on_fit_task_end(estimator, context, *, X, y, metadata,
fitted_estimator)`` around every task; each hook receives the keyword-only arguments it declares
among those four, and ``on_fit_task_end`` returning True stops the loop of that task's level.
With scikit-learn >= 1.9 the estimators use scikit-learn's own ``CallbackSupportMixin``,
``with_callbacks`` and ``CallbackContext`` (its public callback API), so its ``ProgressBar`` and
``ScoringMonitor`` work and callbacks set on a ``Pipeline`` or ``GridSearchCV`` propagate into
nnc's estimators as into scikit-learn's own.  Without it (or with an older one) ``_TaskContext``
and ``_CallbackSupport`` below stand in, with the same semantics, for nnc's own callbacks
(``nnc.callbacks``) and any other object that follows the protocol; a scikit-learn callback is
refused with a message naming the version needed.

Tasks of one ``fit`` / ``partial_fit`` call (``context.task_name``)::

    'fit' or 'partial_fit'   the estimator's root task: X, y and metadata as given (after
                             validation); max_subtasks = max_iter epochs (1 for partial_fit)
      'epoch'                one per epoch: X, y, metadata of the part trained on (without the
                             validation split); fitted_estimator is the model as of that point
        'batch'              one per mini-batch, only where the epoch runs the Python batch loop
                             (networks with convolution, recurrent, Dropout ... layers): never
                             inside the compiled whole-epoch loop of dense networks
      'lbfgs-iter'           solver='lbfgs' instead of epochs: one per iteration, plus the one
                             that never ran (max_subtasks = max_iter + 1), as scikit-learn's
                             LogisticRegression does

``fitted_estimator`` (built only when a hook asks for it) is a shallow copy of the estimator
carrying the fitted attributes of the fit in progress: ``loss_curve_``,
``validation_loss_curve_``, ``validation_scores_``, ``n_iter_`` ... as lists copied at that
point, and ``network_`` the network being trained itself (not a copy: a callback may write its
weights, as ``nnc.callbacks.EarlyStopping`` does to restore the best ones).  The root task ends
before the fitted attributes are committed, with ``fitted_estimator`` the final model, so a
callback may still change the weights, and an exception raised by a hook leaves a previously
fitted model as it was (as any failed fit does); only ``teardown`` runs after the commit.

Without callbacks and without a meta-estimator's context, ``_FitCallbacks.start`` returns None
and the fit loop's cost is one ``is None`` test per epoch.
"""
import builtins
import copy
import functools
import inspect
import uuid
from datetime import datetime, timezone

import numpy as np

from nnc._compat import SKLEARN_CALLBACKS, SKLEARN_INSTALLED

__all__ = ["CallbackSupport", "with_callbacks", "_FitCallbacks"]

#: the keyword arguments a hook may declare (scikit-learn's list)
_HOOK_KWARGS = ("X", "y", "metadata", "fitted_estimator")
_ExceptionGroup = getattr(builtins, "ExceptionGroup", None)      # Python >= 3.11


def _sklearn_version():
    if not SKLEARN_INSTALLED:
        return None
    import sklearn
    return sklearn.__version__


def _check_callbacks(callbacks):
    """TypeError unless every callback follows the protocol; scikit-learn's own callbacks need
    scikit-learn >= 1.9 (ImportError naming what is installed)."""
    for cb in callbacks:
        module = type(cb).__module__ or ""
        if not SKLEARN_CALLBACKS and (module == "sklearn" or module.startswith("sklearn.")):
            version = _sklearn_version()
            have = "not installed" if version is None else f"{version} is installed"
            raise ImportError(
                f"{type(cb).__name__} is a scikit-learn callback: running it needs "
                f"scikit-learn >= 1.9 (its sklearn.callback API; {have}). Install it with "
                "pip install 'scikit-learn>=1.9'. nnc's own callbacks (nnc.callbacks: "
                "EarlyStopping, Checkpoint, LearningRateScheduler, ProgressLine) work without it.")
        ok = not isinstance(cb, type) and all(
            callable(getattr(cb, hook, None))
            for hook in ("setup", "on_fit_task_begin", "on_fit_task_end", "teardown"))
        if not ok:
            raise TypeError("callbacks must be instances following the FitCallback protocol "
                            "(setup, on_fit_task_begin, on_fit_task_end and teardown methods, "
                            f"as nnc.callbacks.Callback has); got {cb!r}.")


# ---------------------------------------------------------------- stand-in for sklearn.callback
class _TaskContext:
    """One task of a fit (scikit-learn's ``CallbackContext`` when scikit-learn >= 1.9 is absent):
    the same public attributes (task_name, task_id, max_subtasks, sequential_subtasks,
    estimator_name, parent, root_uuid, init_time, source_estimator_name, source_task_name), the
    same ``subcontext`` and hook calls, on one estimator (no meta-estimators to propagate from)."""

    def __init__(self, callbacks, estimator_name, task_name, task_id, max_subtasks,
                 sequential_subtasks, parent=None):
        self._callbacks = callbacks
        self.estimator_name = estimator_name
        self.task_name = task_name
        self.task_id = task_id
        self.max_subtasks = max_subtasks
        self.sequential_subtasks = sequential_subtasks
        self.parent = parent
        self.root_uuid = uuid.uuid4() if parent is None else parent.root_uuid
        self.init_time = datetime.now(timezone.utc)
        self.source_estimator_name = None
        self.source_task_name = None
        self._children_map = {}

    def __iter__(self):
        """Pre-order depth-first traversal of the task tree."""
        yield self
        for child in self._children_map.values():
            yield from child

    def __repr__(self):
        return (f"{type(self).__name__}(estimator_name={self.estimator_name!r}, "
                f"task_name={self.task_name!r}, task_id={self.task_id})")

    def subcontext(self, task_name="", task_id=None, max_subtasks=0, sequential_subtasks=True):
        """The context of a new subtask (task_id: the next integer when subtasks are
        sequential)."""
        if self.sequential_subtasks and task_id is not None:
            raise ValueError(f"task_id for {self.estimator_name} {task_name} must be None if "
                             f"sequential_subtasks is True for {self.task_name}.")
        if not self.sequential_subtasks and task_id is None:
            raise ValueError(f"task_id for {self.estimator_name} {task_name} must be provided "
                             f"if sequential_subtasks is False for {self.task_name}.")
        if task_id is None:
            task_id = len(self._children_map)
        if task_id in self._children_map:
            raise ValueError(f"Callback context {self.task_name} of estimator "
                             f"{self.estimator_name} already has a child with task_id={task_id}.")
        if self.max_subtasks is not None and len(self._children_map) >= self.max_subtasks:
            raise ValueError(f"Cannot add child to callback context {self.task_name} of "
                             f"estimator {self.estimator_name} because it already has its "
                             f"maximum number of children ({self.max_subtasks}).")
        child = _TaskContext(self._callbacks, self.estimator_name, task_name, task_id,
                             max_subtasks, sequential_subtasks, parent=self)
        self._children_map[task_id] = child
        return child

    def _call_hooks(self, estimator, hook_name, kwargs):
        result = False
        evaluated = {}
        for callback in self._callbacks:
            hook = getattr(callback, hook_name)
            names = [p.name for p in _keyword_only(hook)]
            bad = set(names) - set(_HOOK_KWARGS)
            if bad:
                raise TypeError(f"Hook {hook_name} of the callback {type(callback).__name__} "
                                f"has parameters that are not valid: {bad}. The valid "
                                f"parameters are: {list(_HOOK_KWARGS)}.")
            args = {}
            for name in names:
                if name not in evaluated:
                    if name == "fitted_estimator":
                        attrs = kwargs.get("reconstruction_attributes")
                        attrs = attrs() if callable(attrs) else attrs
                        evaluated[name] = None if attrs is None else _reconstruct(estimator,
                                                                                  attrs)
                    else:
                        value = kwargs.get(name)
                        evaluated[name] = value() if callable(value) else value
                args[name] = evaluated[name]
            result |= bool(hook(estimator, self, **args))
        return result

    def call_on_fit_task_begin(self, *, estimator, X=None, y=None, metadata=None,
                               reconstruction_attributes=None):
        """Call every callback's ``on_fit_task_begin`` for this task; returns self."""
        self._call_hooks(estimator, "on_fit_task_begin", dict(
            X=X, y=y, metadata=metadata, reconstruction_attributes=reconstruction_attributes))
        return self

    def call_on_fit_task_end(self, *, estimator, X=None, y=None, metadata=None,
                             reconstruction_attributes=None):
        """Call every callback's ``on_fit_task_end``; True when one asks to stop."""
        return self._call_hooks(estimator, "on_fit_task_end", dict(
            X=X, y=y, metadata=metadata, reconstruction_attributes=reconstruction_attributes))


@functools.lru_cache(maxsize=256)
def _keyword_only_of(func):
    return tuple(p for p in inspect.signature(func).parameters.values()
                 if p.kind == p.KEYWORD_ONLY)


def _keyword_only(hook):
    func = getattr(hook, "__func__", hook)      # bound method -> function (cacheable)
    try:
        return _keyword_only_of(func)
    except TypeError:                           # unhashable callable
        return tuple(p for p in inspect.signature(hook).parameters.values()
                     if p.kind == p.KEYWORD_ONLY)


def _reconstruct(estimator, attrs):
    """A shallow copy of `estimator` with `attrs` set (scikit-learn's fitted_estimator)."""
    new = copy.copy(estimator)
    for key, value in attrs.items():
        setattr(new, key, value)
    return new


class _StandaloneCallbackSupport:
    """``set_callbacks`` and the root context without scikit-learn's callback API."""

    def set_callbacks(self, *callbacks):
        if callbacks:
            self._skl_callbacks = list(callbacks)
        else:
            self.__dict__.pop("_skl_callbacks", None)
        return self

    def _init_callback_context(self, task_name="fit", task_id=0, max_subtasks=0,
                               sequential_subtasks=True):
        ctx = _TaskContext(getattr(self, "_skl_callbacks", []), type(self).__name__, task_name,
                           task_id, max_subtasks, sequential_subtasks)
        self._callback_fit_ctx = ctx
        self._skl_callbacks_to_teardown = []
        for callback in getattr(self, "_skl_callbacks", []):
            self._skl_callbacks_to_teardown.append(callback)
            callback.setup(estimator=self, context=ctx)
        return ctx


def _standalone_with_callbacks(method):
    """Run `method` and then every set-up callback's ``teardown`` (also when it raised)."""

    @functools.wraps(method)
    def managed(estimator, *args, **kwargs):
        try:
            return method(estimator, *args, **kwargs)
        finally:
            if "_callback_fit_ctx" in estimator.__dict__:
                errors = []
                for callback in estimator._skl_callbacks_to_teardown:
                    try:
                        callback.teardown(estimator=estimator,
                                          context=estimator._callback_fit_ctx)
                    except Exception as exc:
                        errors.append(exc)
                del estimator._skl_callbacks_to_teardown
                del estimator._callback_fit_ctx
                if len(errors) > 1 and _ExceptionGroup is not None:
                    raise _ExceptionGroup("The following callback teardown errors occurred",
                                          errors)
                if errors:          # (Python 3.10 has no ExceptionGroup: the first one)
                    raise errors[0]

    return managed


if SKLEARN_CALLBACKS:
    from sklearn.callback import CallbackSupportMixin as _SupportBase
    from sklearn.callback import with_callbacks
else:
    _SupportBase = _StandaloneCallbackSupport
    with_callbacks = _standalone_with_callbacks


class CallbackSupport(_SupportBase):
    """``set_callbacks`` for nnc's estimators (scikit-learn's CallbackSupportMixin when
    scikit-learn >= 1.9 is installed, nnc's stand-in otherwise)."""

    def set_callbacks(self, *callbacks):
        """Set the callbacks run during ``fit`` / ``partial_fit`` (none: remove them).

        Parameters
        ----------
        *callbacks : callback instances
            nnc's (``nnc.callbacks``: EarlyStopping, Checkpoint, LearningRateScheduler,
            ProgressLine), scikit-learn's (``sklearn.callback``: ProgressBar, ScoringMonitor;
            scikit-learn >= 1.9) or any object following their protocol.

        Returns
        -------
        self : estimator instance
        """
        _check_callbacks(callbacks)
        return super().set_callbacks(*callbacks)


# ---------------------------------------------------------------- the dispatch object
def _plain_targets(y):
    """User targets as an ndarray for callbacks (a column vector flattened, sparse densified)."""
    if hasattr(y, "toarray") and hasattr(y, "nnz"):
        y = y.toarray()
    y = np.asarray(y)
    if y.ndim == 2 and y.shape[1] == 1:
        y = y.ravel()
    return y


class _FitCallbacks:
    """The callbacks of one fit / partial_fit call: its root task, epochs, batches, L-BFGS
    iterations (see the module docstring).  ``snapshot()`` returns the fitted attributes of the
    fit in progress (the estimator's ``_fitted_attributes``); it runs only when a hook asks for
    ``fitted_estimator``."""

    __slots__ = ("estimator", "ctx", "snapshot", "X", "y", "metadata", "_root", "epoch")

    def __init__(self, estimator, ctx, snapshot, X, y, metadata):
        self.estimator = estimator
        self.ctx = ctx
        self.snapshot = snapshot
        self._root = (X, y, metadata)
        self.X, self.y, self.metadata = X, y, metadata
        self.epoch = None

    @classmethod
    def start(cls, estimator, task_name, max_subtasks, X, y, sample_weight, snapshot):
        """Set the callbacks up and begin the root task; None when there is nothing to call
        (no callbacks and no meta-estimator's context to join)."""
        if not estimator.__dict__.get("_skl_callbacks") \
                and "_parent_callback_ctx" not in estimator.__dict__:
            return None
        ctx = estimator._init_callback_context(task_name=task_name, max_subtasks=max_subtasks)
        plain = functools.lru_cache(maxsize=1)(lambda: _plain_targets(y))
        metadata = None if sample_weight is None else {"sample_weight": sample_weight}
        self = cls(estimator, ctx, snapshot, X, plain, metadata)
        ctx.call_on_fit_task_begin(estimator=estimator, X=X, y=plain, metadata=metadata)
        return self

    def training_part(self, X, index):
        """The epochs train on X: rows `index` of the root task's data after the validation
        split (None: all rows); y and the user's sample weights follow."""
        if index is None:
            return
        _, y_all, metadata = self._root
        self.X = X
        self.y = functools.lru_cache(maxsize=1)(lambda: y_all()[index])
        if metadata is not None:
            self.metadata = {"sample_weight": metadata["sample_weight"][index]}

    def epoch_begin(self, n_batches):
        """Begin an epoch task; returns the batch hooks for the Python batch loop (n_batches >
        0) or None (the epoch is a leaf task)."""
        ctx = self.ctx.subcontext(task_name="epoch", max_subtasks=n_batches)
        ctx.call_on_fit_task_begin(estimator=self.estimator, X=self.X, y=self.y,
                                   metadata=self.metadata,
                                   reconstruction_attributes=self.snapshot)
        self.epoch = ctx
        return _BatchTasks(self.estimator, ctx) if n_batches else None

    def epoch_end(self):
        """End the epoch task; True when a callback asks to stop training."""
        return bool(self.epoch.call_on_fit_task_end(
            estimator=self.estimator, X=self.X, y=self.y, metadata=self.metadata,
            reconstruction_attributes=self.snapshot))

    def lbfgs(self, set_weights):
        """The callback scipy's L-BFGS-B calls after each iteration (see _LbfgsTasks)."""
        return _LbfgsTasks(self, set_weights)

    def end(self):
        """End the root task (before the commit: fitted_estimator is the final model)."""
        X, y, metadata = self._root
        self.ctx.call_on_fit_task_end(estimator=self.estimator, X=X, y=y, metadata=metadata,
                                      reconstruction_attributes=self.snapshot)


class _BatchTasks:
    """Batch subtasks of one epoch, driven by the Python batch loop (nnc/_trainer.py):
    ``begin()`` before a batch, ``end(n_done)`` after it (True stops the epoch there)."""

    __slots__ = ("estimator", "epoch", "ctx", "n_done")

    def __init__(self, estimator, epoch):
        self.estimator = estimator
        self.epoch = epoch
        self.ctx = None
        self.n_done = None          # samples done when a callback stopped the epoch

    def begin(self):
        self.ctx = self.epoch.subcontext(task_name="batch")
        self.ctx.call_on_fit_task_begin(estimator=self.estimator)

    def end(self, n_done):
        if self.ctx.call_on_fit_task_end(estimator=self.estimator):
            self.n_done = int(n_done)
            return True
        return False


class _LbfgsTasks:
    """scipy's per-iteration callback mapped onto 'lbfgs-iter' tasks, as scikit-learn's
    LogisticRegression maps it: each call ends the iteration that ran (with the iterate as the
    network's weights) and begins the next; ``close()`` ends the last one, which never ran.  A
    callback asking to stop raises StopIteration, which scipy >= 1.11 honours."""

    __slots__ = ("runner", "set_weights", "ctx", "stopped")

    def __init__(self, runner, set_weights):
        self.runner = runner
        self.set_weights = set_weights
        self.stopped = False
        self._begin()

    def _begin(self):
        r = self.runner
        self.ctx = r.ctx.subcontext(task_name="lbfgs-iter")
        self.ctx.call_on_fit_task_begin(estimator=r.estimator, X=r.X, y=r.y,
                                        metadata=r.metadata, reconstruction_attributes=r.snapshot)

    def __call__(self, xk):
        r = self.runner
        self.set_weights(xk)
        stop = self.ctx.call_on_fit_task_end(estimator=r.estimator, X=r.X, y=r.y,
                                             metadata=r.metadata,
                                             reconstruction_attributes=r.snapshot)
        self._begin()
        if stop:
            self.stopped = True
            raise StopIteration

    def close(self):
        self.ctx.call_on_fit_task_end(estimator=self.runner.estimator)
