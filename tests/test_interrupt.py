"""Ctrl-C during training: honoured within a batch or two (counted in batches, never timed), with
every counter matching the weights, on the compiled dense epoch and on the generic Python loop.

Each scenario runs in a subprocess (with a timeout, so a hang fails instead of stalling CI): a
watcher thread waits until the running epoch has done WATCH batches, sends SIGINT to the process
with ``signal.raise_signal``, then reads how many batches were done once the signal was raised.
The epoch must stop at most two batches later, and what it applied must equal an uninterrupted
run over the same batches (and continuing over the rest must equal an uninterrupted epoch)."""
import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import nnc
import nnc.layers as L
from nnc._interrupt import EpochInterrupted, deferred_sigint
from nnc.optimizers import Adam

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

_COMMON = textwrap.dedent("""
    import json, os, pickle, signal, sys, threading, time, warnings
    import numpy as np
    import nnc, nnc.layers as L
    from nnc.optimizers import Adam
    from nnc._interrupt import EpochInterrupted, deferred_sigint
    from nnc._kernels import _mlp

    B, WATCH = 4, 50
    FAST = os.environ.get("NNC_DISABLE_FAST_PATH", "0") in ("", "0")
    n = (1 << 18) if FAST else (1 << 14)
    rng = np.random.RandomState(0)
    X = rng.randn(n, 8)
    y = (X[:, 0] + X[:, 1] > 0).astype(np.int32) + (X[:, 2] > 1)

    class CountingAdam(Adam):
        # the generic path's progress for the watcher (an overridden step is never compiled)
        steps = 0

        def step(self, *args, **kwargs):
            super().step(*args, **kwargs)
            CountingAdam.steps += 1

    def interrupt_during(run, progress):
        # (what run() returned or raised, samples done once the signal was raised), with a
        # watcher thread sending SIGINT once progress() reaches WATCH batches; seen is None
        # when the epoch ended first.  An outer deferred-SIGINT guard records such a late
        # signal, which is then dropped, so it cannot strike elsewhere.
        seen, done = [], threading.Event()

        def watch():
            while not done.is_set():
                if progress() >= WATCH * B:
                    signal.raise_signal(signal.SIGINT)   # from this thread: process-wide
                    seen.append(progress())
                    return
                time.sleep(0)

        with deferred_sigint() as guard:
            watcher = threading.Thread(target=watch, daemon=True)
            watcher.start()
            try:
                result = run()
            except EpochInterrupted as exc:
                result = exc
            done.set()
            watcher.join()                      # it has read the progress: nothing else ran
            (lambda: None)()                    # a late signal's handler runs here ...
            guard.pending = None                # ... and it is dropped
        return result, (seen[0] if seen else None)

    def progress_of(net):
        # samples done in the next epoch: the compiled loop counter, or the steps taken
        if FAST:
            result = net._ws_mlp_train[1]["result"]
            slot = _mlp.RESULT_SLOTS["done"]
            result[slot] = 0
            return lambda: int(result[slot])
        base = CountingAdam.steps
        return lambda: (CountingAdam.steps - base) * B
""")

_SEQUENTIAL = _COMMON + textwrap.dedent("""
    def make():
        net = nnc.Sequential([L.Dense(8), L.Tanh(), L.Dense(3)], loss="softmax_cross_entropy",
                             input_shape=(8,), random_state=0)
        opt = CountingAdam(0.01) if not FAST else Adam(0.01)
        net.train_epoch(X[:2 * B], y[:2 * B], opt, B)    # workspaces exist before the watch
        return net, opt

    out = {}
    for attempt in range(3):
        net, opt = make()
        exc, seen = interrupt_during(lambda: net.train_epoch(X, y, opt, B), progress_of(net))
        if not isinstance(exc, EpochInterrupted) or exc.n_samples == n:
            continue                              # the watcher was too late: try again
        k, loss = exc.n_samples, exc.loss
        ref, ref_opt = make()
        ref_loss = ref.train_epoch(X[:k], y[:k], ref_opt, B)
        out = {"attempt": attempt, "k": k, "seen": seen, "n": n,
               "same_weights": bool(np.array_equal(net.params, ref.params)),
               "same_steps": [opt.t, ref_opt.t], "same_loss": [loss, ref_loss]}
        net.train_epoch(X[k:], y[k:], opt, B)     # continuing = never interrupted
        full, full_opt = make()
        full.train_epoch(X, y, full_opt, B)
        out["continued"] = bool(np.array_equal(net.params, full.params))
        out["continued_steps"] = [opt.t, full_opt.t]
        break
    print(json.dumps(out))
""")

_ESTIMATOR = _COMMON + textwrap.dedent("""
    def make():
        if FAST:
            est = nnc.MLPClassifier(hidden_layer_sizes=(8,), batch_size=B, max_iter=1,
                                    random_state=0, warm_start=True)
        else:
            est = nnc.NeuralNetClassifier(layers=[L.Dense(8), L.Tanh(), L.Dropout(0.1)],
                                          optimizer=CountingAdam(0.01), batch_size=B,
                                          max_epochs=1, random_state=0, warm_start=True,
                                          dtype="float64")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            est.fit(X[:8 * B], y[:8 * B])         # a fitted model with its workspaces
        return est

    out = {}
    for attempt in range(3):
        est = make()
        before = pickle.loads(pickle.dumps(est))
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            # a warm start: one epoch over all of X
            _, seen = interrupt_during(lambda: est.fit(X, y), progress_of(est.network_))
        k = est.t_ - before.t_
        if not any("interrupted" in str(w.message) for w in caught) or k == n:
            continue                              # the watcher was too late: try again
        # the same batches, uninterrupted: the fit's first shuffle, a fresh optimizer
        perm = np.arange(n)
        np.random.RandomState(0).shuffle(perm)
        net = before.network_
        opt = before._make_optimizer()
        Xs, ys = np.ascontiguousarray(X[perm[:k]]), np.ascontiguousarray(y[perm[:k]])
        ref_loss = net.train_epoch(net._check_X(Xs), net._check_y(ys, k), opt, B,
                                   indices=np.arange(k))
        out = {"attempt": attempt, "k": k, "seen": seen, "n": n,
               "same_weights": bool(np.array_equal(est.network_.params, net.params)),
               "same_steps": [est._optimizer.t, opt.t, k // B],
               "counters": [est.n_iter_, len(est.loss_curve_), len(before.loss_curve_)],
               "same_loss": [est.loss_curve_[-1], est.loss_, ref_loss]}
        est.partial_fit(X[:64], y[:64])           # and the model trains on
        out["trains_on"] = bool(np.isfinite(est.network_.params).all())
        break
    print(json.dumps(out))
""")


def _run(script, fast):
    env = dict(os.environ)
    env["PYTHONPATH"] = _ROOT + os.pathsep + env.get("PYTHONPATH", "")
    env["NNC_DISABLE_FAST_PATH"] = "0" if fast else "1"
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          env=env, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out, "the watcher never caught an epoch in three attempts"
    return out


@pytest.mark.parametrize("path", ["compiled", "generic"])
def test_ctrl_c_stops_an_epoch_within_two_batches(path):
    out = _run(_SEQUENTIAL, path == "compiled")
    B = 4
    assert out["seen"] <= out["k"] <= out["seen"] + 2 * B, out
    assert out["k"] % B == 0 and 0 < out["k"] < out["n"], out
    assert out["same_weights"], out
    assert out["same_steps"][0] == out["same_steps"][1] == out["k"] // B + 2, out
    assert out["same_loss"][0] == out["same_loss"][1], out
    assert out["continued"] and out["continued_steps"][0] == out["continued_steps"][1], out


@pytest.mark.parametrize("path", ["compiled", "generic"])
def test_ctrl_c_keeps_estimator_counters_consistent(path):
    """MLPClassifier (compiled epoch) and NeuralNetClassifier with Dropout (generic loop): the cut
    epoch counts as one iteration over the batches it applied."""
    out = _run(_ESTIMATOR, path == "compiled")
    B = 4
    assert out["seen"] <= out["k"] <= out["seen"] + 2 * B, out
    assert out["k"] % B == 0 and 0 < out["k"] < out["n"], out
    assert out["same_weights"], out
    assert out["same_steps"][0] == out["same_steps"][1] == out["same_steps"][2], out
    n_iter, curve, curve_before = out["counters"]
    assert n_iter == 1 and curve == curve_before + 1, out
    assert out["same_loss"][0] == out["same_loss"][1] == out["same_loss"][2], out
    assert out["trains_on"], out


def test_deferred_sigint_delivers_at_the_boundary():
    """In process: a SIGINT inside the guard only records; deliver() raises KeyboardInterrupt;
    a user handler that does not raise lets training go on; the handler is restored after."""
    import signal
    previous = signal.getsignal(signal.SIGINT)
    with deferred_sigint() as guard:
        assert guard is not None and signal.getsignal(signal.SIGINT) == guard._record
        with deferred_sigint() as inner:
            assert inner is guard                # nested blocks share the outermost guard
        signal.raise_signal(signal.SIGINT)
        assert guard.pending is not None         # recorded, nothing raised
        with pytest.raises(KeyboardInterrupt):
            guard.deliver()
        assert guard.pending is None
    assert signal.getsignal(signal.SIGINT) is previous

    calls = []
    signal.signal(signal.SIGINT, lambda s, f: calls.append(s))
    try:
        net = nnc.Sequential([L.Dense(3), L.ReLU(), L.Dense(1)], input_shape=(2,),
                             random_state=0)
        X = np.random.RandomState(0).randn(64, 2)
        opt = Adam(0.01)
        with deferred_sigint() as guard:
            signal.raise_signal(signal.SIGINT)
            loss = net.train_epoch(X, np.ascontiguousarray(X[:, :1]), opt, 4)   # the handler runs, training goes on
        assert calls == [signal.SIGINT] and np.isfinite(loss) and opt.t == 16
    finally:
        signal.signal(signal.SIGINT, previous)


def test_signal_during_the_last_batch_interrupts_after_the_epoch():
    """A SIGINT pending when the epoch ends: EpochInterrupted with every sample counted."""
    import signal
    net = nnc.Sequential([L.Dense(3), L.ReLU(), L.Dense(1)], input_shape=(2,), random_state=0)
    X = np.random.RandomState(0).randn(32, 2)
    opt = Adam(0.01)
    with deferred_sigint() as guard:
        real = opt._kernel_config

        def config(*args, **kwargs):   # called once, just before the compiled epoch
            signal.raise_signal(signal.SIGINT)
            return real(*args, **kwargs)

        opt._kernel_config = config
        try:
            net.train_epoch(X, np.ascontiguousarray(X[:, :1]), opt, 8)
        except EpochInterrupted as exc:
            assert exc.n_samples in (8, 32) and opt.t == exc.n_samples // 8
        else:
            pytest.fail("no EpochInterrupted")
        assert guard.pending is None
