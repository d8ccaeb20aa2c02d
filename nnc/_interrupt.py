"""Ctrl-C between batches: SIGINT is deferred while training runs, and honoured at a batch boundary.

Why: a KeyboardInterrupt raised wherever the interpreter happens to be can land between a weight
update and the bookkeeping that describes it (the optimizer's step count, ``t_``, the loss curve),
and a compiled whole-epoch loop (nnc/_kernels/_mlp.pyx) runs without the GIL, so Python's own
handler would only run after the whole epoch.

How: ``deferred_sigint()`` (a context manager; the training loops enter it, nested entries share
the outermost one) replaces Python's SIGINT handler by one that only records the signal.  The
loops look at ``guard.pending`` after every batch (the compiled loop polls a C flag that a C-level
handler, installed for the duration of its nogil call and chained to Python's, sets) and call
``guard.deliver()`` at that batch boundary: it runs the previous handler, so Python's default
raises KeyboardInterrupt there, with every counter matching the weights; a user handler that
does not raise lets training go on.  A signal still pending when the outermost guard exits is
delivered then.  Only the main thread receives Python signal handlers, so elsewhere (and when
SIGINT is ignored or left to the OS default) the guard is None and nothing changes.

``EpochInterrupted`` (a KeyboardInterrupt) is what an epoch raises when it stops early: it says how
many samples the applied batches held and their mean loss, so callers can count the partial epoch.
"""
import contextlib
import signal
import threading

__all__ = ["EpochInterrupted", "deferred_sigint"]


class EpochInterrupted(KeyboardInterrupt):
    """Ctrl-C stopped an epoch at a batch boundary: the first ``n_samples`` samples of the
    epoch's order were trained on (whole batches), with mean loss ``loss`` (NaN when none)."""

    def __init__(self, n_samples, loss):
        super().__init__(f"training interrupted after {n_samples} samples of the epoch")
        self.n_samples = int(n_samples)
        self.loss = float(loss)


class _Guard:
    """The recording SIGINT handler of the outermost ``deferred_sigint`` block."""

    def __init__(self, previous):
        self.previous = previous
        self.pending = None          # (signum, frame) of a signal not delivered yet
        self.depth = 1

    def _record(self, signum, frame):
        self.pending = (signum, frame)

    def deliver(self):
        """Run the previous handler for a pending signal (Python's raises KeyboardInterrupt)."""
        pending, self.pending = self.pending, None
        if pending is not None:
            self.previous(*pending)


_active = None          # the guard of the main thread's outermost block, if any


@contextlib.contextmanager
def deferred_sigint():
    """Defer SIGINT to batch boundaries for the duration of the block; yields the guard (None
    outside the main thread or when SIGINT has no Python handler)."""
    global _active
    if _active is not None and threading.current_thread() is threading.main_thread():
        _active.depth += 1
        try:
            yield _active
        finally:
            _active.depth -= 1
        return
    previous = signal.getsignal(signal.SIGINT) \
        if threading.current_thread() is threading.main_thread() else None
    if not callable(previous):       # None (a C handler), SIG_IGN, SIG_DFL, or not main thread
        yield None
        return
    guard = _Guard(previous)
    try:
        signal.signal(signal.SIGINT, guard._record)
    except ValueError:               # e.g. a subinterpreter: signals are not ours to handle
        yield None
        return
    _active = guard
    try:
        yield guard
    finally:
        _active = None
        signal.signal(signal.SIGINT, previous)
        guard.deliver()              # a signal that arrived after the last batch boundary
