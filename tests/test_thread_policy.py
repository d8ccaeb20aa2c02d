"""The thread policy (nnc/_threads.py, nnc/_kernels/_parallel.pyx, _blas.pyx): its choices,
user control, results across thread counts, the load governor's rule, fork safety and clamping.

Nothing here times anything: the governor's rule is fed numbers, and every "how many threads"
question is asked of the policy itself.  Tests that force threads switch the governor off and
drop the thresholds to 0 (the ``forced`` fixture), so they exercise the parallel code paths on
any machine with two or more CPUs, loaded or not.  Fork and clamp tests run in subprocesses with
a timeout, so a hang fails instead of stalling the suite.
"""
import os
import subprocess
import sys
import textwrap
import threading

import numpy as np
import pytest

import nnc
from nnc import _threads
from nnc._kernels import _blas, _conv, _dropout, _optim, _parallel, _pool

KINDS = _parallel.WORK_KINDS
HW = _parallel.cpus()[0]
multi = pytest.mark.skipif(HW < 2, reason="needs two CPUs nnc may use")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture
def forced():
    """Every piece of work gets the CPUs' threads: governor off, thresholds 0."""
    old_gov = _parallel.set_governor(False)
    old = {k: _parallel.set_threshold(k, 0.0) for k in KINDS}
    try:
        yield min(2, HW)
    finally:
        for k, v in old.items():
            _parallel.set_threshold(k, v)
        _parallel.set_governor(old_gov)


@pytest.fixture(params=["blas pool", "openmp"])
def runner(request, forced):
    """Run the pieces on OpenBLAS's pool, then on an OpenMP team."""
    if request.param == "blas pool" and _parallel.pool() != "blas pool":
        pytest.skip("the BLAS lends no thread pool here")
    old = _parallel.set_pool_enabled(request.param == "blas pool")
    try:
        yield request.param
    finally:
        _parallel.set_pool_enabled(old)


def _run(code, env=None, timeout=120):
    """Run `code` in a fresh interpreter importing this checkout's nnc; (returncode, output)."""
    full_env = dict(os.environ)
    full_env["PYTHONPATH"] = os.pathsep.join(p for p in (ROOT, full_env.get("PYTHONPATH")) if p)
    full_env.update(env or {})
    try:
        proc = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], env=full_env,
                              capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        pytest.fail(f"the subprocess did not finish in {timeout} s (a hang)")
    return proc.returncode, proc.stdout + proc.stderr


# ---------------------------------------------------------------------- the job runner

@multi
@pytest.mark.parametrize("n_threads", [2, 3, 7])
def test_every_item_runs_once_under_the_callers_control_word(runner, n_threads):
    out = np.zeros(2 * 101, dtype=np.int64)   # (count, control word) per item
    ftz = 0x1F80 | 0x8040                     # default MXCSR with flush-to-zero / DAZ
    _parallel.run_test_jobs(n_threads, out, ftz)
    counts, csr = out[0::2], out[1::2]
    assert (counts == 1).all()
    if sys.platform.startswith("linux") and os.uname().machine in ("x86_64", "AMD64"):
        assert (csr & 0x8040 == 0x8040).all()


# ---------------------------------------------------------------------- same numbers, any threads

DTYPES = [np.float32, np.float64]


def _both(fn):
    """fn(n_threads) -> arrays, once serial (threshold infinity) and once with the forced
    threads; returns the two results."""
    old = {k: _parallel.set_threshold(k, float("inf")) for k in KINDS}
    try:
        serial = [np.array(a, copy=True) for a in fn(1)]
    finally:
        for k, v in old.items():
            _parallel.set_threshold(k, v)
    threaded = [np.array(a, copy=True) for a in fn(64)]
    return serial, threaded


@multi
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("geo", [dict(S=1, P=0, C=8, F=4),    # grid path (C KH KW > 2 F)
                                 dict(S=1, P=1, C=2, F=6),    # general, padded
                                 dict(S=2, P=1, C=3, F=5)])   # general, strided
def test_conv_kernels_bit_identical_across_threads(runner, dtype, geo):
    rng = np.random.RandomState(0)
    N, H, W, K = 7, 9, 8, 3
    X = rng.standard_normal((N, geo["C"], H, W)).astype(dtype)
    Wt = rng.standard_normal((geo["F"], geo["C"], K, K)).astype(dtype)
    b = rng.standard_normal(geo["F"]).astype(dtype)
    S, P = geo["S"], geo["P"]
    cols_shape, tmp_shape = _conv.conv2d_workspace_shapes(3, geo["C"], H, W, geo["F"], K, K, S, S,
                                                          P, P)
    OH = (H + 2 * P - K) // S + 1
    OW = (W + 2 * P - K) // S + 1
    dY = rng.standard_normal((N, geo["F"], OH, OW)).astype(dtype)

    def run(nt):
        cols = np.zeros(cols_shape, dtype)
        tmp = np.zeros(tmp_shape, dtype)
        Y = np.empty((N, geo["F"], OH, OW), dtype)
        dW = np.empty_like(Wt)
        db = np.empty_like(b)
        dX = np.empty_like(X)
        _conv.conv2d_forward(X, Wt, b, cols, tmp, Y, S, S, P, P, nt)
        _conv.conv2d_backward(X, Wt, dY, cols, tmp, dW, db, dX, S, S, P, P, False, nt)
        return Y, dW, db, dX

    serial, threaded = _both(run)
    for a, c in zip(serial, threaded):
        np.testing.assert_array_equal(a, c)


@multi
@pytest.mark.parametrize("dtype", DTYPES)
def test_im2col_col2im_bit_identical_across_threads(runner, dtype):
    rng = np.random.RandomState(1)
    X = rng.standard_normal((5, 3, 7, 6)).astype(dtype)

    def run(nt):
        cols = np.empty((5, 27, 7 * 6), dtype)
        dX = np.empty_like(X)
        _conv.im2col(X, cols, 3, 3, 1, 1, 1, 1, nt)
        _conv.col2im(cols, dX, 3, 3, 1, 1, 1, 1, nt)
        gcols = np.empty((5, 27, 4 * 6 + 4), dtype)
        gdX = np.empty_like(X)
        _conv.im2col_grid(X, gcols, 3, 3, nt)
        _conv.col2im_grid(gcols, gdX, 3, 3, nt)
        return cols, dX, gcols, gdX

    serial, threaded = _both(run)
    for a, c in zip(serial, threaded):
        np.testing.assert_array_equal(a, c)


@multi
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("pool,stride", [((2, 2), (2, 2)), ((3, 2), (1, 2))])
def test_pool_kernels_bit_identical_across_threads(runner, dtype, pool, stride):
    rng = np.random.RandomState(2)
    X = rng.standard_normal((3, 5, 9, 8)).astype(dtype)
    OH = (9 - pool[0]) // stride[0] + 1
    OW = (8 - pool[1]) // stride[1] + 1
    dY = rng.standard_normal((3, 5, OH, OW)).astype(dtype)

    def run(nt):
        Y = np.empty((3, 5, OH, OW), dtype)
        arg = np.empty(Y.shape, np.int32)
        dX = np.empty_like(X)
        Ya = np.empty_like(Y)
        dXa = np.empty_like(X)
        _pool.maxpool2d_forward(X, Y, arg, *pool, *stride, nt)
        _pool.maxpool2d_backward(dY, arg, dX, nt)
        _pool.avgpool2d_forward(X, Ya, *pool, *stride, nt)
        _pool.avgpool2d_backward(dY, dXa, *pool, *stride, nt)
        return Y, arg, dX, Ya, dXa

    serial, threaded = _both(run)
    for a, c in zip(serial, threaded):
        np.testing.assert_array_equal(a, c)


@multi
@pytest.mark.parametrize("dtype", DTYPES)
def test_dropout_kernels_bit_identical_across_threads(runner, dtype):
    rng = np.random.RandomState(3)
    X = rng.standard_normal(1001).astype(dtype)
    U = rng.rand(1001).astype(dtype)

    def run(nt):
        mask = np.empty_like(X)
        Y = np.empty_like(X)
        _dropout.dropout_forward(X, U, 0.3, mask, Y, nt)
        dX = Y.copy()
        _dropout.dropout_backward(dX, mask, dX, nt)
        return mask, Y, dX

    serial, threaded = _both(run)
    for a, c in zip(serial, threaded):
        np.testing.assert_array_equal(a, c)


@multi
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kind,extra", [(_optim.SGD, dict(momentum=0.9, nesterov=1)),
                                        (_optim.ADAGRAD, {}), (_optim.RMSPROP, {}),
                                        (_optim.ADAM, dict(beta2=0.999))])
def test_optimizer_steps_bit_identical_across_threads(runner, dtype, kind, extra):
    rng = np.random.RandomState(4)
    n = 1003
    p0 = rng.standard_normal(n).astype(dtype)
    g = rng.standard_normal(n).astype(dtype)

    def run(nt):
        p = p0.copy()
        s1 = np.zeros_like(p)
        s2 = np.zeros_like(p)
        cfg = dict(kind=kind, lr=0.01, momentum=0.9 if kind != _optim.ADAGRAD else 0.0,
                   beta2=0.0, eps=1e-7, nesterov=0, alpha=0.1, decay=0.01, n_decay=500, t=0,
                   n_threads=nt)
        cfg.update(extra)
        for _ in range(3):
            cfg["t"] = _optim.optimizer_step(cfg, p, g, s1, s2)
        return p, s1, s2

    serial, threaded = _both(run)
    for a, c in zip(serial, threaded):
        np.testing.assert_array_equal(a, c)


@multi
def test_gemm_within_tolerance_across_threads(forced):
    rng = np.random.RandomState(5)
    for dtype, tol in ((np.float32, 1e-6), (np.float64, 1e-12)):
        A = rng.standard_normal((96, 300)).astype(dtype)
        B = rng.standard_normal((300, 160)).astype(dtype)
        C1 = np.zeros((96, 160), dtype)
        C2 = np.zeros((96, 160), dtype)
        old = _parallel.set_threshold("gemm", float("inf"))
        try:
            assert _blas.planned_threads(96, 160, 300) in (0, 1)
            _blas.gemm_memview(False, False, 1.0, A, B, 0.0, C1)
        finally:
            _parallel.set_threshold("gemm", old)
        if _blas.thread_api():
            assert _blas.planned_threads(96, 160, 300) == min(HW, _blas.blas_threads())
        _blas.gemm_memview(False, False, 1.0, A, B, 0.0, C2)
        scale = np.abs(C1).max()
        np.testing.assert_allclose(C2, C1, rtol=0, atol=tol * scale)


@multi
def test_cnn_fit_same_weights_on_one_and_many_threads(forced):
    """A whole fit (conv, pool, dropout, dense, Adam) on one thread and on the forced threads:
    every parallel pass is bit-identical; the GEMMs may sum in another order (1e-6)."""
    from nnc.layers import AvgPool2D, Conv2D, Dense, Dropout, Flatten, MaxPool2D, ReLU
    from nnc.optimizers import Adam
    rng = np.random.RandomState(6)
    X = rng.rand(48, 2, 10, 10).astype(np.float32)
    y = rng.randint(0, 3, 48)

    def fit():
        net = nnc.Sequential([Conv2D(6, 3, padding=1), ReLU(), MaxPool2D(2), Conv2D(8, 3),
                              ReLU(), AvgPool2D(1), Flatten(), Dropout(0.2, random_state=1),
                              Dense(3)], loss="softmax_cross_entropy", input_shape=(2, 10, 10),
                             dtype="float32", random_state=0)
        Xv = net._check_X(X)
        yv = net._check_y(y, 48)
        opt = Adam(1e-2)
        for epoch in range(2):
            net.train_epoch(Xv, yv, opt, 16, None, np.random.RandomState(epoch).permutation(48))
        return net.params.copy()

    with nnc.config_context(n_threads=1):
        one = fit()
    many = fit()
    np.testing.assert_allclose(many, one, rtol=1e-6, atol=1e-6)


# ---------------------------------------------------------------------- the policy's choices

def test_small_work_runs_on_one_thread():
    old = _parallel.set_governor(False)
    try:
        for kind, thr in _parallel.thresholds().items():
            assert thr > 0
            assert _parallel.threads_for(kind, thr / 2) == 1
            assert _parallel.threads_for(kind, 1.0) == 1
            big = _parallel.threads_for(kind, thr * 4)
            assert 1 <= big <= HW
            if HW >= 2 and (kind == "gemm" or nnc._threads.omp_max_threads() >= 2):
                assert big >= 2
    finally:
        _parallel.set_governor(old)


def test_cap_and_n_items_bound_the_threads(forced):
    assert _parallel.threads_for("pool", 1e9, cap=1) == 1
    assert _parallel.threads_for("pool", 1e9, cap=100000) == min(HW, _parallel.MAX_THREADS,
                                                                nnc._threads.omp_max_threads())
    # the kernels' own entry points accept any count and clamp it
    X = np.random.RandomState(0).rand(3, 2, 4, 4)
    Y = np.empty((3, 2, 2, 2))
    _pool.avgpool2d_forward(X, Y, 2, 2, 2, 2, 100000)
    np.testing.assert_allclose(Y, X.reshape(3, 2, 2, 2, 2, 2).mean(axis=(3, 5)))


def test_budget_is_at_least_one_and_at_most_the_cpus():
    assert 1 <= _threads.budget() <= HW
    assert _threads.n_threads() == HW
    info = _threads.info()
    assert info["cpus"] == HW
    assert info["budget"] >= 1


# ---------------------------------------------------------------------- user control

def test_set_config_and_config_context():
    assert nnc.get_config() == {"n_threads": None, "fast_path": True}
    with nnc.config_context(n_threads=1):
        assert nnc.get_config()["n_threads"] == 1
        assert _threads.n_threads() == 1
        assert _parallel.local_cap() == 1
        with nnc.config_context(fast_path=False):
            assert nnc.get_config() == {"n_threads": 1, "fast_path": False}
        assert nnc.get_config()["fast_path"] is True
    assert nnc.get_config()["n_threads"] is None
    assert _parallel.local_cap() == 0
    with pytest.raises(RuntimeError):
        with nnc.config_context(n_threads=2):
            raise RuntimeError("boom")
    assert nnc.get_config()["n_threads"] is None      # restored after an exception
    nnc.set_config(n_threads=100000)                  # clamped, not refused
    try:
        assert _threads.n_threads() == HW
    finally:
        nnc.set_config(n_threads=None)


@pytest.mark.parametrize("bad,err", [(0, ValueError), (-2, ValueError), (1.5, TypeError),
                                     ("2", TypeError), (True, TypeError)])
def test_set_config_rejects_bad_n_threads(bad, err):
    with pytest.raises(err, match="n_threads"):
        nnc.set_config(n_threads=bad)
    assert nnc.get_config()["n_threads"] is None


def test_config_is_per_thread():
    seen = {}

    def other():
        seen["config"] = nnc.get_config()
        seen["cap"] = _parallel.local_cap()
        nnc.set_config(n_threads=1, fast_path=False)    # stays in this thread
    with nnc.config_context(n_threads=1, fast_path=False):
        t = threading.Thread(target=other)
        t.start()
        t.join()
    assert seen == {"config": {"n_threads": None, "fast_path": True}, "cap": 0}
    assert nnc.get_config() == {"n_threads": None, "fast_path": True}


def test_config_n_threads_caps_every_piece(forced):
    with nnc.config_context(n_threads=1):
        for kind in KINDS:
            assert _parallel.threads_for(kind, 1e12) == 1
        if _blas.thread_api():
            assert _blas.planned_threads(1000, 1000, 1000) == 1


def test_fast_path_config_switches_the_compiled_loop():
    from nnc import _mlp_fast
    from nnc.layers import Dense, ReLU
    from nnc.optimizers import Adam
    net = nnc.Sequential([Dense(4), ReLU(), Dense(2)], loss="mse", input_shape=(3,),
                         random_state=0)
    assert _mlp_fast.select(net, Adam()) is not None
    with nnc.config_context(fast_path=False):
        assert _mlp_fast.enabled() is False
        assert _mlp_fast.select(net, Adam()) is None
        assert _mlp_fast.forward_fn(net) is None
    assert _mlp_fast.enabled() is True


def test_threadpoolctl_limits_are_obeyed(forced):
    threadpoolctl = pytest.importorskip("threadpoolctl")
    with threadpoolctl.threadpool_limits(1):
        for kind in KINDS:
            if kind != "gemm":
                assert _parallel.threads_for(kind, 1e12) == 1
        if _blas.thread_api():
            assert _blas.blas_threads() == 1
            assert _blas.planned_threads(1000, 1000, 1000) == 1
    with threadpoolctl.threadpool_limits(1, user_api="blas"):
        if _blas.thread_api():
            assert _blas.planned_threads(1000, 1000, 1000) == 1


@multi
def test_blas_setting_is_the_callers_again_after_nnc_products(forced):
    if not _blas.thread_api():
        pytest.skip("no BLAS thread API")
    threadpoolctl = pytest.importorskip("threadpoolctl")
    rng = np.random.RandomState(7)
    A = rng.rand(200, 300)
    B = rng.rand(300, 100)
    C = np.empty((200, 100))
    before = _blas.blas_threads()
    old = _parallel.set_threshold("gemm", float("inf"))    # nnc holds the BLAS at 1 thread
    try:
        _blas.gemm_memview(False, False, 1.0, A, B, 0.0, C)
    finally:
        _parallel.set_threshold("gemm", old)
    assert _blas.blas_threads() == before
    with threadpoolctl.threadpool_limits(1, user_api="blas"):
        _blas.gemm_memview(False, False, 1.0, A, B, 0.0, C)
        assert _blas.blas_threads() == 1                  # the caller's limit held
    assert _blas.blas_threads() == before
    np.testing.assert_allclose(C, A @ B)


def test_show_config_prints_the_policy(capsys):
    nnc.show_config()
    out = capsys.readouterr().out
    assert "Threads (nnc's policy" in out
    assert "governor:" in out and "BLAS threads:" in out and "thresholds:" in out
    info = nnc._config.config_info()
    assert info["threads"]["cpus"] == HW
    assert info["config"] == nnc.get_config()


# ---------------------------------------------------------------------- the governor's rule

def test_governor_drops_at_once_and_rises_after_quiet_windows():
    # (t, busy CPU-s of our 2 CPUs, our own CPU-s, hand-over ns)
    quiet = [(0.1 * i, 0.1 * i, 0.1 * i, 40.0) for i in range(1, 4)]
    out = _parallel.governor_simulate(quiet, 2, 2)
    assert [b for b, _ in out] == [1, 2, 2]     # no window yet; then the first one decides
    # another process takes one CPU (its 0.1 s of busy time per window is not ours)
    t, busy, own = quiet[-1][:3]
    loaded = [(t + 0.1 * i, busy + 0.2 * i, own + 0.1 * i, 40.0) for i in range(1, 4)]
    out = _parallel.governor_simulate(quiet + loaded, 2, 2)
    assert [b for b, _ in out[3:]] == [1, 1, 1]     # drops in the first busy window
    assert out[3][1] == pytest.approx(1.0)
    # quiet again: one more thread only after two quiet windows
    t, busy, own = loaded[-1][:3]
    calm = [(t + 0.1 * i, busy + 0.1 * i, own + 0.1 * i, 40.0) for i in range(1, 4)]
    out = _parallel.governor_simulate(quiet + loaded + calm, 2, 2)
    assert [b for b, _ in out[6:]] == [1, 2, 2]


def test_governor_tolerates_a_little_noise_and_clamps():
    # others at 0.2 CPU (under the 0.25 slack) keep two threads; negative estimates clamp to 0
    s = [(0.1 * i, 0.12 * i, 0.1 * i, 40.0) for i in range(1, 6)]
    assert _parallel.governor_simulate(s, 2, 2)[-1] == (2, pytest.approx(0.2))
    s = [(0.1 * i, 0.05 * i, 0.1 * i, 40.0) for i in range(1, 6)]
    assert _parallel.governor_simulate(s, 2, 2)[-1] == (2, 0.0)
    # hw caps the budget: 8 CPUs in the affinity set, cgroup quota of 3
    s = [(0.1 * i, 0.1 * i, 0.1 * i, 40.0) for i in range(1, 6)]
    assert _parallel.governor_simulate(s, 8, 3)[-1][0] == 3


def test_governor_starts_again_after_a_pause():
    s = [(0.1 * i, 0.1 * i, 0.1 * i, 40.0) for i in range(1, 6)]
    s.append((5.0, 0.6, 0.6, 40.0))        # 4.5 s later: the old sample is stale
    assert _parallel.governor_simulate(s, 2, 2)[-1] == (1, None)


def test_governor_goes_serial_while_the_cores_are_far_apart():
    s = [(0.1 * i, 0.1 * i, 0.1 * i, 40.0) for i in range(1, 5)]
    s += [(0.5, 0.5, 0.5, 165.0), (0.6, 0.6, 0.6, 45.0), (0.7, 0.7, 0.7, None),
          (0.8, 0.8, 0.8, 90.0), (0.9, 0.9, 0.9, 40.0)]
    budgets = [b for b, _ in _parallel.governor_simulate(s, 2, 2)]
    assert budgets[3] == 2
    # far: serial (a trial's first window); near: parallel; no answer counts as far; in
    # between (90 ns) keeps the last verdict (far: the trial goes on); near again
    assert budgets[4:7] == [1, 2, 1]
    assert budgets[8] == 2
    assert [b for b, _ in _parallel.governor_simulate(s, 2, 2, probe=False)][4:] == [2] * 5


def test_live_governor_reports_its_state():
    state = _parallel.governor_state()
    assert state["budget"] >= 1 and state["window"] > 0
    if HW >= 2:
        lat = _parallel.probe_latency()
        assert lat is None or lat > 0


@multi
def test_concurrent_pieces_share_the_budget(forced):
    # GEMM pieces: their budget does not depend on OpenMP (a build without it runs its own
    # passes serially, its BLAS products still in parallel)
    first = _parallel.begin_piece("gemm", 1e9)
    try:
        assert first == forced
        assert _parallel.inflight() == 1
        assert _parallel.threads_for("gemm", 1e9) == max(1, forced // 2)
        if nnc._threads.openmp_enabled():
            assert _parallel.threads_for("optim", 1e9) == max(1, forced // 2)
    finally:
        _parallel.end_piece(first)
    assert _parallel.inflight() == 0
    assert _parallel.threads_for("gemm", 1e9) == forced


@multi
def test_huge_thread_counts_into_every_entry_point(runner):
    """n_threads=100000 into each kernel twin: clamped, same numbers as one thread."""
    from nnc._kernels import _mlp  # noqa: F401  (imported: its entry point clamps too)
    rng = np.random.RandomState(8)
    big = 100000
    X = rng.standard_normal((6, 3, 9, 9)).astype(np.float32)
    Wt = rng.standard_normal((5, 3, 3, 3)).astype(np.float32)
    b = np.zeros(5, np.float32)
    for S, P in ((1, 0), (2, 1)):
        cols_shape, tmp_shape = _conv.conv2d_workspace_shapes(6, 3, 9, 9, 5, 3, 3, S, S, P, P)
        OH = (9 + 2 * P - 3) // S + 1
        outs = []
        for nt in (1, big):
            cols = np.zeros(cols_shape, np.float32)
            tmp = np.zeros(tmp_shape, np.float32)
            Y = np.empty((6, 5, OH, OH), np.float32)
            dX = np.empty_like(X)
            dW = np.empty_like(Wt)
            db = np.empty_like(b)
            _conv.conv2d_forward(X, Wt, b, cols, tmp, Y, S, S, P, P, nt)
            _conv.conv2d_backward(X, Wt, Y, cols, tmp, dW, db, dX, S, S, P, P, False, nt)
            outs.append((Y, dX, dW))
        for a, c in zip(*outs):
            np.testing.assert_allclose(a, c, rtol=1e-5, atol=1e-5)
    cols = np.empty((6, 27, 81), np.float32)
    _conv.im2col(X, cols, 3, 3, 1, 1, 1, 1, big)
    _conv.col2im(cols, X.copy(), 3, 3, 1, 1, 1, 1, big)
    Y = np.empty((6, 3, 4, 4), np.float32)
    arg = np.empty(Y.shape, np.int32)
    _pool.maxpool2d_forward(X, Y, arg, 2, 2, 2, 2, big)
    _pool.maxpool2d_backward(Y, arg, np.empty_like(X), big)
    flat = X.reshape(-1)
    U = rng.rand(flat.size).astype(np.float32)
    mask = np.empty_like(flat)
    out = np.empty_like(flat)
    _dropout.dropout_forward(flat, U, 0.5, mask, out, big)
    _dropout.dropout_backward(out, mask, out, big)
    p = np.zeros(5000, np.float32)
    g = np.ones(5000, np.float32)
    cfg = dict(kind=_optim.ADAM, lr=1e-3, momentum=0.9, beta2=0.999, eps=1e-8, nesterov=0,
               alpha=0.0, decay=0.0, n_decay=0, t=0, n_threads=big)
    assert _optim.optimizer_step(cfg, p, g, np.zeros_like(p), np.zeros_like(p)) == 1
    np.testing.assert_allclose(p, -1e-3, rtol=1e-5)


# ---------------------------------------------------------------------- subprocesses: env, fork

CLAMP = """
import numpy as np, nnc
from nnc._kernels import _parallel, _optim, _dropout
from nnc.layers import Conv2D, ReLU, MaxPool2D, Flatten, Dense, Dropout
from nnc.optimizers import Adam
_parallel.set_governor(False)
for k in _parallel.WORK_KINDS:
    _parallel.set_threshold(k, 0.0)
_parallel.set_pool_enabled({pool})
rng = np.random.RandomState(0)
X = rng.rand(64, 1, 12, 12).astype(np.float32)
y = rng.randint(0, 3, 64)
net = nnc.Sequential([Conv2D(4, 3), ReLU(), MaxPool2D(2), Flatten(), Dropout(0.3, random_state=0),
                      Dense(3)], loss="softmax_cross_entropy", input_shape=(1, 12, 12),
                     dtype="float32", random_state=0)
loss = net.train_epoch(net._check_X(X), net._check_y(y, 64), Adam(1e-2), 16)
n = 2_000_000
p = np.zeros(n, np.float32); g = np.ones(n, np.float32)
cfg = dict(kind=_optim.ADAM, lr=1e-3, momentum=0.9, beta2=0.999, eps=1e-8, nesterov=0,
           alpha=0.0, decay=0.0, n_decay=0, t=0, n_threads=nnc._threads.omp_max_threads())
_optim.optimizer_step(cfg, p, g, np.zeros_like(p), np.zeros_like(p))
U = rng.rand(n).astype(np.float32); mask = np.empty_like(U); Y = np.empty_like(U)
_dropout.dropout_forward(g, U, 0.5, mask, Y, nnc._threads.omp_max_threads())
assert np.isfinite(loss) and np.allclose(p, -1e-3) and abs(Y.mean() - 1) < 0.01
print("ok", nnc._threads.omp_max_threads(), nnc._threads.budget())
"""


@pytest.mark.parametrize("pool", [True, False])
def test_huge_omp_num_threads_does_not_crash(pool):
    rc, out = _run(CLAMP.format(pool=pool), env={"OMP_NUM_THREADS": "100000"})
    assert rc == 0, out
    # without OpenMP (NNC_NO_OPENMP=1 builds) the variable reaches nothing: still no crash
    assert f"ok {100000 if nnc._threads.openmp_enabled() else 1} " in out, out


def test_omp_num_threads_1_means_one_thread():
    rc, out = _run("""
        import nnc
        from nnc._kernels import _parallel, _blas
        _parallel.set_governor(False)
        print("budget", nnc._threads.budget(), _parallel.threads_for("im2col", 1e9),
              _blas.blas_threads())
    """, env={"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"})
    assert rc == 0, out
    assert "budget 1 1 1" in out


FORK = """
import multiprocessing, os, sys
import numpy as np
import nnc
from nnc._kernels import _parallel
from nnc.layers import Conv2D, ReLU, MaxPool2D, Flatten, Dense
_parallel.set_governor(False)
for k in _parallel.WORK_KINDS:
    _parallel.set_threshold(k, 0.0)
_parallel.set_pool_enabled({pool})        # the parent's passes ran on this runner
rng = np.random.RandomState(0)
X = rng.rand(96, 1, 10, 10)
y = rng.randint(0, 3, 96)
clf = nnc.NeuralNetClassifier(layers=[Conv2D(6, 3), ReLU(), MaxPool2D(2), Flatten(), Dense(8),
                                      ReLU()], input_shape=(1, 10, 10), max_epochs=2,
                              batch_size=32, random_state=0).fit(X, y)
expected = clf.predict_proba(X)


def predict_rows(rows):
    assert _parallel.forked() and nnc._threads.budget() == 1
    return clf.predict_proba(X[rows])


if __name__ == "__main__":
    pid = os.fork()
    if pid == 0:
        ok = _parallel.forked() and np.array_equal(clf.predict_proba(X), expected)
        os._exit(0 if ok else 3)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0, status
    assert not _parallel.forked()
    with multiprocessing.get_context("fork").Pool(2) as workers:
        parts = workers.map(predict_rows, [slice(0, 48), slice(48, 96)])
    assert np.array_equal(np.vstack(parts), expected)
    print("fork ok")
"""


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
@pytest.mark.parametrize("pool", [True, False])
def test_forked_children_predict_without_hanging(pool, tmp_path):
    script = tmp_path / "fork_predict.py"
    script.write_text(FORK.format(pool=pool))
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (ROOT, env.get("PYTHONPATH")) if p)
    try:
        proc = subprocess.run([sys.executable, str(script)], env=env, capture_output=True,
                              text=True, timeout=120)
    except subprocess.TimeoutExpired:
        pytest.fail("a forked child hung")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "fork ok" in proc.stdout


def test_gridsearch_workers_do_not_oversubscribe():
    pytest.importorskip("sklearn")
    pytest.importorskip("joblib")
    from sklearn.model_selection import GridSearchCV

    def scorer(estimator, X, y):
        import nnc._threads as T
        return 10.0 * T.budget() + (T._blas.blas_threads() or 0)

    rng = np.random.RandomState(0)
    X = rng.rand(60, 4)
    y = rng.randint(0, 2, 60)
    search = GridSearchCV(nnc.MLPClassifier(hidden_layer_sizes=(4,), max_iter=3, random_state=0),
                          {"alpha": [1e-4, 1e-3]}, cv=2, n_jobs=2, scoring=scorer)
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        search.fit(X, y)
    # loky gives each of the 2 workers cpu_count // 2 threads: one each on two CPUs
    expected = 10.0 * max(1, HW // 2) + max(1, HW // 2)
    assert np.all(search.cv_results_["mean_test_score"] == expected)


def _far_run(par_rate, seconds, ser_rate=100.0):
    """Near for 0.4 s, then far windows of 0.1 s whose work per second is par_rate when they ran
    on two threads and ser_rate when serial; returns the budgets of the far windows."""
    samples = [(0.1 * i, 0.1 * i, 0.1 * i, 40.0, 0.0) for i in range(1, 5)]
    t = 0.4
    budgets = []
    for _ in range(int(seconds * 10)):
        t += 0.1
        running = _parallel.governor_simulate(samples, 2, 2)[-1][0]
        samples.append((t, t, t, 165.0, par_rate if running == 2 else ser_rate))
        budgets.append(running)
    return budgets[1:]


@pytest.mark.parametrize("par_rate,expected", [(150.0, 2), (105.0, 1), (60.0, 1)])
def test_governor_trial_while_far_keeps_what_does_more_work(par_rate, expected):
    """While the cores are far apart: serial for 2 s, then four windows (serial, parallel,
    serial, parallel) compare the work done per second; the winner runs until the next trial
    (parallel must do 10% more)."""
    budgets = _far_run(par_rate, 4.0)
    first = budgets.index(2)
    assert 19 <= first <= 21 and budgets[:first] == [1] * first      # ~2 s serial
    assert budgets[first - 1:first + 3] == [1, 2, 1, 2]               # the trial
    assert budgets[first + 3:first + 10] == [expected] * 7           # its verdict, kept


def test_governor_trials_back_off_while_serial_keeps_winning():
    """Far for 40 s, and windows on two threads do half the work of serial ones: the trials'
    parallel windows come further and further apart."""
    budgets = _far_run(50.0, 40.0)
    starts = [i for i in range(1, len(budgets)) if budgets[i] == 2 and budgets[i - 1] == 1]
    trials = starts[::2]                     # two parallel windows per trial
    gaps = np.diff(trials)
    assert len(trials) >= 3
    assert all(b >= a for a, b in zip(gaps, gaps[1:])) and gaps[-1] > gaps[0]
    assert sum(b == 2 for b in budgets) == 2 * len(trials)


NO_BLAS_API = """
import ctypes, os
# A BLAS without OpenBLAS's thread API or thread pool (MKL, Accelerate, reference BLAS): hide
# those symbols from every ctypes lookup before nnc looks for them.
_lookup = ctypes.CDLL.__getattr__
def _hidden(self, name):
    if "num_threads" in name or name == "gotoblas_pthread":
        raise AttributeError(name)
    return _lookup(self, name)
ctypes.CDLL.__getattr__ = _hidden

import numpy as np
import nnc
from nnc._kernels import _blas, _parallel
from nnc.layers import Conv2D, Dense, Dropout, Flatten, MaxPool2D, ReLU
info = nnc._threads.info()
assert not info["blas_control"] and not _blas.thread_api(), info
assert _blas.blas_threads() is None and _blas.planned_threads(1e4, 1e4, 1e4) == 0
assert _parallel.pool() != "blas pool", _parallel.pool()
_parallel.set_governor(False)
for k in _parallel.WORK_KINDS:
    _parallel.set_threshold(k, 0.0)
rng = np.random.RandomState(0)
X = rng.rand(64, 1, 10, 10).astype(np.float32)
y = rng.randint(0, 3, 64)

def fit():
    clf = nnc.NeuralNetClassifier(layers=[Conv2D(6, 3), ReLU(), MaxPool2D(2), Flatten(),
                                          Dropout(0.2), Dense(16), ReLU()],
                                  input_shape=(1, 10, 10), max_epochs=2, batch_size=32,
                                  dtype="float32", random_state=0).fit(X, y)
    return clf, clf.predict_proba(X)

with nnc.config_context(n_threads=1):
    _, one = fit()
clf, many = fit()
np.testing.assert_allclose(many, one, rtol=1e-5, atol=1e-6)
if hasattr(os, "fork"):
    pid = os.fork()
    if pid == 0:
        os._exit(0 if _parallel.forked() and np.array_equal(clf.predict_proba(X), many) else 3)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0, status
print("runner", _parallel.pool())
"""


def test_without_the_blas_thread_api_the_blas_keeps_its_setting_and_loops_use_openmp():
    """The fallback for other BLAS builds (MKL, Accelerate, reference BLAS, an OpenBLAS without
    its pool symbols): no BLAS control, loops on an OpenMP team (or serial without OpenMP), the
    same results on one and many threads, forks still safe, show_config says so."""
    rc, out = _run(NO_BLAS_API)
    assert rc == 0, out
    expected = "openmp" if nnc._threads.openmp_enabled() else "serial"
    assert f"runner {expected}" in out, out
    rc, out = _run(NO_BLAS_API.split("import numpy as np")[0] + "import nnc\nnnc.show_config()\n")
    assert rc == 0, out
    assert "the BLAS's own setting" in out and "BLAS threads: set per product" not in out, out
