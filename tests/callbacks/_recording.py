"""A callback that records every hook call (with copies of what it needs), for the tests."""
import numpy as np


class Recorder:
    """Records (hook, task_name, task_id, info) for every call; `stop_at` makes
    on_fit_task_end return True for that (task_name, task_id); `fail_at` raises there."""

    def __init__(self, stop_at=None, fail_at=None, exc=RuntimeError):
        self.calls = []
        self.stop_at = stop_at
        self.fail_at = fail_at
        self.exc = exc
        self.params = []          # the network's weights at each epoch end

    def setup(self, estimator, context):
        self.calls.append(("setup", context.task_name, context.task_id, None))

    def teardown(self, estimator, context):
        self.calls.append(("teardown", context.task_name, context.task_id, None))

    def on_fit_task_begin(self, estimator, context, *, X=None, y=None, metadata=None,
                          fitted_estimator=None):
        self.calls.append(("begin", context.task_name, context.task_id, None))
        if self.fail_at == ("begin", context.task_name, context.task_id):
            raise self.exc("callback failed at begin")

    def on_fit_task_end(self, estimator, context, *, X=None, y=None, metadata=None,
                        fitted_estimator=None):
        info = {"X": None if X is None else X.shape, "y": None if y is None else np.array(y),
                "metadata": metadata, "parent": getattr(context.parent, "task_name", None),
                "max_subtasks": context.max_subtasks}
        if fitted_estimator is not None and context.task_name == "epoch":
            info["loss_curve_"] = list(fitted_estimator.loss_curve_)
            info["n_iter_"] = fitted_estimator.n_iter_
            info["fitted"] = fitted_estimator
            self.params.append(fitted_estimator.network_.params.copy())
        self.calls.append(("end", context.task_name, context.task_id, info))
        if self.fail_at == ("end", context.task_name, context.task_id):
            raise self.exc("callback failed at end")
        return self.stop_at == (context.task_name, context.task_id)

    def hooks(self, hook, task_name):
        return [c for c in self.calls if c[0] == hook and c[1] == task_name]
