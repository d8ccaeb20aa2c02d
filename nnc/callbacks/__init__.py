"""Callbacks that watch and steer the training of nnc's estimators.

``est.set_callbacks(...)`` takes these, scikit-learn's own (``sklearn.callback.ProgressBar``,
``ScoringMonitor``; scikit-learn >= 1.9) and any object following the same protocol; these work
without scikit-learn too.

=========================  ===================================================================
``EarlyStopping``          stop when a monitored curve (validation loss or score, training loss)
                           stops improving; keep the best weights
``Checkpoint``             save the model after improving epochs (atomic writes, ``nnc.load``)
``LearningRateScheduler``  step, exponential, cosine, reduce-on-plateau, or any epoch -> rate
``ProgressLine``           a plain-text progress line (terminals without rich, logs)
``Callback``               the base class: the protocol's four hooks, doing nothing
=========================  ===================================================================

Write your own by subclassing ``Callback``: its hooks get the estimator, the task's context
(``context.task_name``: 'fit' / 'partial_fit', 'epoch', 'batch', 'lbfgs-iter') and, when the
hook declares it, ``fitted_estimator``: the model as of that point, whose ``loss_curve_``,
``validation_loss_curve_`` and ``validation_scores_`` hold the history so far and whose
``network_`` is the network being trained.  ``on_fit_task_end`` returning True after an epoch
stops training.
"""
from nnc.callbacks._base import Callback
from nnc.callbacks._progress import ProgressLine
from nnc.callbacks._schedule import LearningRateScheduler
from nnc.callbacks._stopping import Checkpoint, EarlyStopping

__all__ = ["Callback", "EarlyStopping", "Checkpoint", "LearningRateScheduler", "ProgressLine"]
