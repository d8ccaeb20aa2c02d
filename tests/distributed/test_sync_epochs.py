"""The data-parallel epochs in one process, without MPI: the compiled loop's allreduce hook
(nnc/_kernels/_comm.pyx) and both synced loops (``_mlp.train_epoch`` with a plan and a hook,
``nnc._trainer._python_epoch_synced``) driven by a fake communicator whose allreduce is the
identity (one rank) or a function of the test's choosing (another rank's Ctrl-C flag, a
non-finite loss, a failing allreduce).

With one rank the synced epoch must equal the plain epoch (the step plan's weight sums are the
batches' own), which ties it to the plain loops' NumPy references.
"""
import sys
import warnings

import numpy as np
import pytest

import nnc
from nnc import _distributed
from nnc._interrupt import EpochInterrupted
from nnc._kernels import _comm, _mlp
from nnc.layers import Conv2D, Dense, Flatten, ReLU, Tanh
from nnc.optimizers import SGD, Adam, RMSprop

TOL = {np.float32: dict(rtol=2e-5, atol=1e-6), np.float64: dict(rtol=1e-12, atol=1e-13)}


class FakeComm:
    """One rank: the allreduce runs `func(buffer)` (default: nothing, the identity SUM); `size`
    the ranks it pretends to reduce over (a `func` adding another rank's slots: 2)."""

    def __init__(self, func=None, size=1):
        self.func = func or (lambda a: None)
        self.calls = 0
        self.size = size

    def allreduce_grads(self, buf):
        self.calls += 1
        self.func(buf)
        return buf

    def hook(self):
        return _comm.PyAllreduce(self.allreduce_grads)


def _plan(n, batch, sw):
    starts = np.arange(0, n, batch)
    counts = np.minimum(batch, n - starts)
    plan = np.zeros(2 * len(starts))
    plan[0::2] = counts if sw is None else np.add.reduceat(sw.astype(np.float64), starts)
    plan[1::2] = counts
    return plan


def _problem(dtype, conv=False, seed=0):
    rng = np.random.RandomState(seed)
    if conv:
        layers = [Conv2D(3, 3), ReLU(), Flatten(), Dense(3)]
        X = rng.randn(53, 1, 5, 5).astype(dtype)
        shape = (1, 5, 5)
    else:
        layers = [Dense(7), Tanh(), Dense(5), ReLU(), Dense(3)]
        X = rng.randn(53, 6).astype(dtype)
        shape = (6,)
    net = nnc.Sequential(layers, loss="softmax_cross_entropy", input_shape=shape, dtype=dtype,
                         random_state=seed)
    y = net._check_y(rng.randint(0, 3, 53), 53)
    sw = (rng.rand(53) + 0.1).astype(dtype)
    return net, net._check_X(X), y, sw


@pytest.mark.parametrize("conv", [False, True], ids=["compiled", "python"])
@pytest.mark.parametrize("make_opt", [lambda: SGD(0.05, momentum=0.9, alpha=1e-2),
                                      lambda: Adam(1e-2, alpha=1e-3),
                                      lambda: RMSprop(1e-2)], ids=["momentum", "adam", "rmsprop"])
@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "weighted"])
def test_one_rank_synced_epoch_equals_the_plain_epoch(dtype, conv, make_opt, weighted):
    net_a, X, y, sw = _problem(dtype, conv)
    net_b, _, _, _ = _problem(dtype, conv)
    sw = sw if weighted else None
    opt_a, opt_b = make_opt(), make_opt()
    order = np.random.RandomState(1).permutation(X.shape[0])
    comm = FakeComm()
    for _ in range(2):
        loss_a = net_a.train_epoch(X, y, opt_a, 8, sw, order)
        sync = _distributed.EpochSync(comm, _plan(X.shape[0], 8, None if sw is None
                                                  else sw[order]), X.shape[0])
        loss_b = net_b.train_epoch(X, y, opt_b, 8, sw, order, sync=sync)
        np.testing.assert_allclose(loss_b, loss_a, **TOL[dtype])
    np.testing.assert_allclose(net_b.params, net_a.params, **TOL[dtype])
    assert opt_a.t == opt_b.t == 14
    assert comm.calls == 14                    # one allreduce per step
    for k, v in opt_a.state_dict().items():
        if isinstance(v, np.ndarray):
            np.testing.assert_allclose(opt_b.state_dict()[k], v, **TOL[dtype])


def _run_synced(func, conv=False, steps_plan=None):
    net, X, y, _ = _problem(np.float64, conv)
    opt = Adam(1e-2)
    comm = FakeComm(func, size=2)
    plan = _plan(X.shape[0], 8, None) if steps_plan is None else steps_plan
    before = net.params.copy()
    return net, opt, comm, before, lambda: net.train_epoch(
        X, y, opt, 8, None, None, sync=_distributed.EpochSync(comm, plan, X.shape[0]))


@pytest.mark.parametrize("conv", [False, True], ids=["compiled", "python"])
def test_ctrl_c_of_another_rank_stops_after_the_step(conv):
    P = _problem(np.float64, conv)[0].n_params
    calls = [0]

    def func(buf):                 # another rank's Ctrl-C flag arrives in step 3
        calls[0] += 1
        if calls[0] == 3:
            buf[P + 1] = 1
    net, opt, comm, _, run = _run_synced(func, conv)
    with pytest.raises(EpochInterrupted) as info:
        run()
    assert info.value.n_samples == 24 and opt.t == 3     # the step was applied, then stop


@pytest.mark.parametrize("conv", [False, True], ids=["compiled", "python"])
def test_a_non_finite_global_loss_stops_before_the_update(conv):
    P = _problem(np.float64, conv)[0].n_params
    calls = [0]

    def func(buf):                 # another rank's loss share is infinite in step 2
        calls[0] += 1
        if calls[0] == 2:
            buf[P] = np.inf
    net, opt, comm, before, run = _run_synced(func, conv)
    with pytest.raises(FloatingPointError, match="step 1") as info:
        run()
    assert opt.t == 1                                    # the first step only
    # the estimators' diverging-fit rule reads these (the same global numbers on every rank)
    assert info.value.n_samples == 8 and info.value.loss == np.inf


@pytest.mark.parametrize("conv", [False, True], ids=["compiled", "python"])
def test_a_failing_allreduce_raises_its_error(conv):
    def func(buf):
        raise RuntimeError("the network is down")
    net, opt, comm, before, run = _run_synced(func, conv)
    with pytest.raises(RuntimeError, match="the network is down"):
        run()
    np.testing.assert_array_equal(net.params, before)   # no update was applied
    assert opt.t == 0


def test_empty_batches_of_a_short_shard_contribute_zero():
    """A rank whose shard ends early still joins every step with zero gradients."""
    net, X, y, _ = _problem(np.float64)
    seen = []

    def func(buf):
        seen.append((buf[:-2].copy(), buf[-2]))
    comm = FakeComm(func)
    plan = _plan(X.shape[0], 8, None)
    plan = np.r_[plan, 5.0, 5.0, 5.0, 5.0]             # two more steps on other ranks
    net.train_epoch(X, y, SGD(0.1), 8, None, None,
                    sync=_distributed.EpochSync(comm, plan, X.shape[0] + 10))
    assert len(seen) == 9
    for grads, loss in seen[7:]:
        assert not grads.any() and loss == 0


def test_the_compiled_twin_checks_plan_and_buffers():
    net, X, y, _ = _problem(np.float64)
    from nnc import _mlp_fast
    plan_obj = _mlp_fast._get_plan(net)
    opt = SGD(0.1)
    bufs = _mlp_fast._train_buffers(net, plan_obj, 8, False, np.float64)
    s1, s2 = opt._kernel_state(net.params)
    hook = _comm.PyAllreduce(lambda a: None).bind(net._grads_buf)

    def call(plan, grads=None, comm=hook, start=0):
        return _mlp.train_epoch(
            plan_obj.desc, plan_obj.slopes, X, None, y, None, None, 8, net.params,
            net._grads_buf if grads is None else grads, s1, s2, opt._kernel_config(1.0, 0),
            int(net._loss.code), 1.0, 0.0, bufs["ws"], bufs["D"], bufs["Xg"], bufs["Yg"],
            bufs["labg"], bufs["swg"], bufs["result"], start, False, plan, comm)
    good = _plan(X.shape[0], 8, None)
    with pytest.raises(ValueError, match="do not cover"):
        call(good[:-2])
    with pytest.raises(ValueError, match="positive finite sum"):
        call(np.where(np.arange(good.size) == 4, 0.0, good))
    with pytest.raises(ValueError, match="trailing slots"):
        call(good, grads=net.grads)
    with pytest.raises(ValueError, match="go together"):
        call(None)
    with pytest.raises(ValueError, match="start"):
        call(good, start=7)
    assert call(good) == _mlp.STATUS_OK


def test_py_allreduce_checks_its_buffer():
    calls = []
    hook = _comm.PyAllreduce(lambda a: calls.append(a.copy()) or a.__imul__(2))
    buf = np.arange(4.0)
    hook(buf)
    np.testing.assert_array_equal(buf, [0, 2, 4, 6])
    assert hook.n_calls == 1 and len(calls) == 1
    with pytest.raises(ValueError, match="C-contiguous"):
        hook(np.zeros((2, 2)))
    with pytest.raises(ValueError, match="C-contiguous"):
        hook(np.zeros(4, dtype=np.int64))
    with pytest.raises(TypeError):
        _comm.PyAllreduce(3)
    failing = _comm.PyAllreduce(lambda a: 1 / 0)
    with pytest.raises(ZeroDivisionError):
        failing(np.zeros(3))
    with pytest.raises(ValueError, match="NULL"):
        _comm.MPIAllreduce(0, _comm.HANDLES_INT, 0, 0, 0, 0, -1)
    with pytest.raises(ValueError, match="kind"):
        _comm.MPIAllreduce(1, 7, 0, 0, 0, 0, -1)


def test_distributed_without_mpi4py_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "mpi4py", None)
    with pytest.raises(ImportError, match=r"nnc\[mpi\]"):
        with nnc.distributed():
            pass
    assert _distributed.current() is None


def test_thread_limit_is_nncs_own_setting(monkeypatch):
    """The per-rank limit is nnc's n_threads setting for the block (kernels and nnc's BLAS
    products), needing no threadpoolctl; restored afterwards."""
    from nnc import _threads
    monkeypatch.setitem(sys.modules, "threadpoolctl", None)
    monkeypatch.setattr(_distributed, "_usable_cpus", lambda: 4)
    before = nnc.get_config()["n_threads"]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with _distributed._thread_limit(1):
            assert nnc.get_config()["n_threads"] == 1
            assert _threads.budget() == 1
    assert nnc.get_config()["n_threads"] == before


def test_thread_limit_without_blas_control_or_threadpoolctl_warns(monkeypatch):
    """A BLAS without a thread API nnc can set (MKL, Accelerate ...) and no threadpoolctl: the
    limit reaches nnc's kernels only; say how to launch instead of silently oversubscribing."""
    from nnc import _threads
    monkeypatch.setattr(_threads, "_BLAS_API", None)
    monkeypatch.setitem(sys.modules, "threadpoolctl", None)
    monkeypatch.setattr(_distributed, "_usable_cpus", lambda: 4)
    with pytest.warns(RuntimeWarning, match="OMP_NUM_THREADS=2"):
        with _distributed._thread_limit(2):
            assert nnc.get_config()["n_threads"] == 2
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with _distributed._thread_limit(4):          # no limit needed: no warning
            pass


# ---------------------------------------------------------------------- batch hooks (callbacks)

class _Hooks:
    """on_batch of the Python loop: records begin / end(n_done); end returns True at `stop_at`
    (0-based batch index)."""

    def __init__(self, stop_at=None):
        self.stop_at = stop_at
        self.events = []
        self.n_done = None

    def begin(self):
        self.events.append("begin")

    def end(self, n_done):
        self.events.append(n_done)
        if self.events.count("begin") - 1 == self.stop_at:
            self.n_done = int(n_done)
            return True
        return False


def test_synced_python_epoch_runs_the_batch_hooks_every_step():
    """One task per step on every rank, also for the empty batches of a short shard; n_done is
    the global count of samples done."""
    net, X, y, _ = _problem(np.float64, conv=True)
    hooks = _Hooks()
    plan = np.r_[_plan(X.shape[0], 8, None), 5.0, 5.0]      # one more step on another rank
    comm = FakeComm(size=2)
    net.train_epoch(X, y, SGD(0.1), 8, None, None, on_batch=hooks,
                    sync=_distributed.EpochSync(comm, plan, X.shape[0] + 5))
    ends = [e for e in hooks.events if e != "begin"]
    assert hooks.events[0::2] == ["begin"] * 8 and len(ends) == 8 == comm.calls
    assert ends == [8, 16, 24, 32, 40, 48, 53, 58]
    assert hooks.n_done is None


def test_a_batch_hook_stop_travels_in_the_steps_allreduce_and_matches_one_process():
    """This rank's hook asks to stop after batch 2: the request rides in that step's allreduce
    (no extra collective), the step is applied and the epoch ends there -- as the plain loop
    ends after the batch whose hook asked."""
    net_a, X, y, _ = _problem(np.float64, conv=True)
    net_b, _, _, _ = _problem(np.float64, conv=True)
    opt_a, opt_b = SGD(0.05, momentum=0.9), SGD(0.05, momentum=0.9)
    hooks_a, hooks_b = _Hooks(stop_at=2), _Hooks(stop_at=2)
    loss_a = net_a.train_epoch(X, y, opt_a, 8, None, None, on_batch=hooks_a)
    slots = []
    P = net_b.n_params
    comm = FakeComm(lambda buf: slots.append(float(buf[P + 1])), size=2)
    loss_b = net_b.train_epoch(X, y, opt_b, 8, None, None, on_batch=hooks_b,
                               sync=_distributed.EpochSync(comm, _plan(X.shape[0], 8, None),
                                                           X.shape[0]))
    assert slots == [0.0, 0.0, 3.0]          # the stop flag (size + 1) in step 2's allreduce
    assert comm.calls == 3 and opt_a.t == opt_b.t == 3
    assert hooks_a.n_done == hooks_b.n_done == 24
    np.testing.assert_allclose(loss_b, loss_a, rtol=1e-12)
    np.testing.assert_allclose(net_b.params, net_a.params, rtol=1e-12, atol=1e-15)


def test_another_ranks_batch_stop_ends_this_ranks_epoch_at_the_same_step():
    P = _problem(np.float64, conv=True)[0].n_params
    calls = [0]

    def func(buf):                 # another rank's hook asked to stop in step 4
        calls[0] += 1
        if calls[0] == 4:
            buf[P + 1] += 3        # (size + 1) * one rank
    net, opt, comm, _, _ = _run_synced(func, conv=True)
    _, X, y, _ = _problem(np.float64, conv=True)
    hooks = _Hooks()
    loss = net.train_epoch(X, y, opt, 8, None, None, on_batch=hooks,
                           sync=_distributed.EpochSync(comm, _plan(X.shape[0], 8, None),
                                                       X.shape[0]))
    assert opt.t == 4 and comm.calls == 4 and hooks.n_done == 32     # no hook here asked
    assert np.isfinite(loss)


def test_ctrl_c_wins_over_a_batch_stop_in_the_same_step():
    P = _problem(np.float64, conv=True)[0].n_params

    def func(buf):
        buf[P + 1] += 1 + 3        # one rank's Ctrl-C and another's stop request
    net, opt, comm, _, run = _run_synced(func, conv=True)
    with pytest.raises(EpochInterrupted) as info:
        run()
    assert info.value.n_samples == 8 and opt.t == 1
