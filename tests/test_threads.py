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
