"""ProgressLine: plain-text progress of nnc's fits, for terminals (and logs) without rich.

On a terminal it keeps one line per fit up to date with a carriage return (after each epoch, and
at most every ``refresh`` seconds during an epoch run by the Python batch loop, from its batch
tasks); elsewhere (a file, a pipe, a notebook's captured stream) it prints one line per epoch,
every ``every`` epochs.  It is auto-propagated: set on a Pipeline or a GridSearchCV it reports the
nnc estimators fitted inside them.
"""
import sys
import time
from datetime import datetime, timezone

from nnc.callbacks._base import Callback, _check_int, _check_real, _is_epoch

__all__ = ["ProgressLine"]


class _Line:
    def __init__(self):
        self.epoch = 0            # epochs done
        self.last = 0.0           # time of the last terminal update
        self.text = ""            # the latest epoch's line
        self.printed = True       # (log mode) that line was written


class ProgressLine(Callback):
    """One line of text per fit: epoch, loss, validation loss and score, learning rate, time.

    Parameters
    ----------
    stream : file-like or None, default=None
        Where to write; None: ``sys.stdout`` at the time of writing.
    every : int, default=1
        Without a terminal, print every this many epochs (and the last).
    width : int, default=20
        Characters of the bar (terminal mode; 0: no bar).
    refresh : float, default=0.2
        Terminal mode: at most one update per this many seconds during an epoch.
    max_propagation_depth : int or None, default=None
        How deep into meta-estimators it is propagated (scikit-learn's rule; None: all the way).

    Examples
    --------
    A terminal shows ``MLPClassifier fit [#######-------------] 74/200 loss 0.0123
    val_loss 0.0456 val_score 0.9833 lr 1.0e-03 0:00:03``; a log gets one such line per epoch.
    """

    def __init__(self, stream=None, every=1, width=20, refresh=0.2, max_propagation_depth=None):
        self.stream = stream
        self.every = every
        self.width = width
        self.refresh = refresh
        self.max_propagation_depth = max_propagation_depth
        self._check()

    def _check(self):
        _check_int(self.every, "every", "ProgressLine", 1)
        _check_int(self.width, "width", "ProgressLine", 0)
        _check_real(self.refresh, "refresh", "ProgressLine", 0.0)
        if self.max_propagation_depth is not None:
            _check_int(self.max_propagation_depth, "max_propagation_depth", "ProgressLine", 0)

    def _out(self):
        return sys.stdout if self.stream is None else self.stream

    def _tty(self, out):
        try:
            return bool(out.isatty())
        except (AttributeError, ValueError):
            return False

    def on_fit_task_begin(self, estimator, context, *, fitted_estimator=None):
        pass

    def on_fit_task_end(self, estimator, context, *, fitted_estimator=None):
        if context.task_name == "batch":
            self._batch(context)
        elif _is_epoch(context, fitted_estimator):
            self._epoch(context, fitted_estimator)
        else:
            line = self._end_run(context)
            if line is not None:
                out = self._out()
                if self._tty(out):
                    out.write("\n")
                elif not line.printed:         # the last epoch (stopped before max_iter)
                    out.write(line.text + "\n")
                out.flush()
        return False

    def _batch(self, context):
        epoch = context.parent
        line = self._run(epoch.parent)
        if line is None:
            line = self._run(epoch.parent, _Line)
            line.text = f"{epoch.estimator_name} {epoch.parent.task_name}"
        out = self._out()
        now = time.monotonic()
        if not self._tty(out) or now - line.last < self.refresh:
            return
        line.last = now
        done, total = context.task_id + 1, epoch.max_subtasks
        out.write(f"\r{line.text}  (epoch {epoch.task_id + 1}: batch {done}/{total})\x1b[K")
        out.flush()

    def _epoch(self, context, fitted):
        root = context.parent
        line = self._run(root, _Line)
        line.epoch = context.task_id + 1
        line.text = self._format(context, fitted)
        out = self._out()
        if self._tty(out):
            line.last = time.monotonic()
            out.write("\r" + line.text + "\x1b[K")
        else:
            line.printed = line.epoch % self.every == 0 or line.epoch == root.max_subtasks
            if line.printed:
                out.write(line.text + "\n")
        out.flush()

    def _format(self, context, fitted):
        root = context.parent
        total = root.max_subtasks
        done = context.task_id + 1
        parts = [f"{context.estimator_name} {root.task_name}"]
        if self.width and total:
            filled = int(round(self.width * min(done, total) / total))
            parts.append("[" + "#" * filled + "-" * (self.width - filled) + "]")
        parts.append(f"{done}/{total}" if total else f"{done}")
        for label, attr in (("loss", "loss_curve_"), ("val_loss", "validation_loss_curve_"),
                            ("val_score", "validation_scores_")):
            curve = getattr(fitted, attr, None)
            if curve:
                parts.append(f"{label} {curve[-1]:.4g}")
        optimizer = getattr(fitted, "_optimizer", None)
        if optimizer is not None:
            parts.append(f"lr {optimizer.learning_rate:.2g}")
        elapsed = (datetime.now(timezone.utc) - root.init_time).total_seconds()
        minutes, seconds = divmod(int(elapsed), 60)
        parts.append(f"{minutes // 60}:{minutes % 60:02d}:{seconds:02d}")
        return " ".join(parts)
