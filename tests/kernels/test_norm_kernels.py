"""LayerNorm / BatchNorm kernels against the NumPy references; threads; bad buffers."""
import numpy as np
import pytest

from nnc._kernels import _norm
from tests import _reference_norm as ref
from tests._reference_conv import assert_close


# ------------------------------------------------------------------------------------ LayerNorm

def _ln_run(X, gamma, beta, dY, eps, n_threads, need_dX=True, acc_rows=2):
    R, D = X.shape
    dtype = X.dtype
    Y = np.full_like(X, np.nan)
    mean, rstd = np.full(R, np.nan, dtype), np.full(R, np.nan, dtype)
    _norm.layernorm_forward(X, Y, gamma, beta, mean, rstd, eps, n_threads)
    dX = np.full_like(X, np.nan)
    dg, db = np.full(D, np.nan, dtype), np.full(D, np.nan, dtype)
    acc = np.full((acc_rows, 2, D), np.nan, dtype)
    _norm.layernorm_backward(dY, X, mean, rstd, gamma, dX, dg, db, acc, need_dX, n_threads)
    return Y, mean, rstd, dX, dg, db


@pytest.mark.parametrize("R, D", [(1, 1), (3, 7), (5, 8), (9, 33), (64, 100)])
@pytest.mark.parametrize("n_threads", [1, 2])
def test_layernorm_kernels_match_reference(R, D, n_threads, dtype, rng):
    X = (rng.standard_normal((R, D)) * 3 + 1).astype(dtype)
    gamma = rng.standard_normal(D).astype(dtype)
    beta = rng.standard_normal(D).astype(dtype)
    dY = rng.standard_normal((R, D)).astype(dtype)
    Y, mean, rstd, dX, dg, db = _ln_run(X, gamma, beta, dY, 1e-5, n_threads)
    rY, rmean, rrstd = ref.layernorm_forward(X, gamma, beta, 1e-5)
    assert Y.dtype == dX.dtype == dg.dtype == dtype
    assert_close(Y, rY, dtype)
    assert_close(mean, rmean, dtype)
    assert_close(rstd / rrstd, np.ones(R), dtype)
    rdX, rdg, rdb = ref.layernorm_backward(dY, X, gamma, 1e-5)
    assert_close(dX, rdX, dtype)
    assert_close(dg, rdg, dtype)
    assert_close(db, rdb, dtype)


def test_layernorm_backward_without_dX_leaves_it_and_threads_agree(rng):
    # big enough to split rows between threads (R D >= 2**16)
    X = rng.standard_normal((1024, 70))
    gamma, beta = rng.standard_normal(70), rng.standard_normal(70)
    dY = rng.standard_normal(X.shape)
    one = _ln_run(X, gamma, beta, dY, 1e-5, 1)
    two = _ln_run(X, gamma, beta, dY, 1e-5, 2)
    for a, b in zip(one[:4], two[:4]):
        np.testing.assert_array_equal(a, b)       # rows are independent: bitwise equal
    for a, b in zip(one[4:], two[4:]):            # column sums: partial sums per thread
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)
    _, _, _, dX, dg, db = _ln_run(X, gamma, beta, dY, 1e-5, 2, need_dX=False)
    assert np.isnan(dX).all()
    np.testing.assert_allclose(dg, one[4], rtol=1e-12, atol=1e-12)
    # more threads than scratch rows: the kernel uses only what the scratch holds
    _, _, _, dX1, dg1, _ = _ln_run(X, gamma, beta, dY, 1e-5, 8, acc_rows=1)
    np.testing.assert_array_equal(dX1, one[3])
    np.testing.assert_array_equal(dg1, one[4])


def test_layernorm_float32_statistics_are_accurate():
    """Large offset, small spread: the statistics accumulate in double, two passes."""
    rng = np.random.RandomState(1)
    X64 = 1000.0 + 0.01 * rng.standard_normal((4, 4096))
    X = X64.astype(np.float32)
    Y, mean, rstd, *_ = _ln_run(X, np.ones(4096, np.float32), np.zeros(4096, np.float32),
                                np.zeros_like(X), 1e-12, 1)
    rY, rmean, rrstd = ref.layernorm_forward(X.astype(np.float64), np.ones(4096),
                                             np.zeros(4096), 1e-12)
    np.testing.assert_allclose(rstd, rrstd, rtol=1e-6)
    # the mean is rounded to float32 (half an ulp of 1000: 3e-5 = 3e-3 of the spread), so the
    # normalised values carry that offset; a one-pass float32 variance would be off entirely
    np.testing.assert_allclose(Y, rY, atol=1e-2)


def test_layernorm_kernels_reject_bad_buffers():
    X = np.zeros((3, 4))
    v3, v4 = np.zeros(3), np.zeros(4)
    acc = np.zeros((1, 2, 4))
    bad = [
        lambda: _norm.layernorm_forward(X, np.zeros((3, 5)), v4, v4, v3, v3, 1e-5),
        lambda: _norm.layernorm_forward(X, X.copy(), v3, v4, v3, v3, 1e-5),
        lambda: _norm.layernorm_forward(X, X.copy(), v4, v4, v4, v3, 1e-5),
        lambda: _norm.layernorm_forward(X, X.copy(), v4, v4, v3, v3, 0.0),
        lambda: _norm.layernorm_forward(X, X.copy(), v4, v4, v3, v3, float("nan")),
        lambda: _norm.layernorm_forward(X, X.copy(), v4, v4, v3, v3, 1e-5, 0),
        lambda: _norm.layernorm_backward(X, X, v3, v3, v4, np.zeros((2, 4)), v4, v4, acc),
        lambda: _norm.layernorm_backward(X, X, v4, v3, v4, X.copy(), v4, v4, acc),
        lambda: _norm.layernorm_backward(X, X, v3, v3, v4, X.copy(), v3, v4, acc),
        lambda: _norm.layernorm_backward(X, X, v3, v3, v4, X.copy(), v4, v4, np.zeros((1, 2, 3))),
        lambda: _norm.layernorm_backward(X, X, v3, v3, v4, X.copy(), v4, v4, np.zeros((0, 2, 4))),
        lambda: _norm.layernorm_backward(np.zeros((2, 4)), X, v3, v3, v4, X.copy(), v4, v4, acc),
    ]
    for call in bad:
        with pytest.raises(ValueError):
            call()


# ------------------------------------------------------------------------------------ BatchNorm

def _bn_run(X, gamma, beta, rm, rv, dY, training, momentum, eps, n_threads, need_dX=True):
    N, C, S = X.shape
    dtype = X.dtype
    rm, rv = rm.copy(), rv.copy()
    Y = np.full_like(X, np.nan)
    stats = np.full((2, C), np.nan, dtype)
    _norm.batchnorm_forward(X, Y, gamma, beta, rm, rv, stats[0], stats[1], np.empty((2, C)),
                            training, momentum, eps, n_threads)
    dX = np.full_like(X, np.nan)
    grads = np.full((4, C), np.nan, dtype)
    _norm.batchnorm_backward(dY, X, stats[0], stats[1], gamma, dX, *grads,
                             np.empty((3, C), dtype), np.empty((2, C)), training, need_dX,
                             n_threads)
    return Y, rm, rv, dX, grads


@pytest.mark.parametrize("N, C, S", [(1, 1, 1), (2, 3, 1), (7, 5, 1), (3, 4, 9), (1, 2, 5),
                                     (16, 8, 64)])
@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("n_threads", [1, 2])
def test_batchnorm_kernels_match_reference(N, C, S, training, n_threads, dtype, rng):
    X = (rng.standard_normal((N, C, S)) * 2 + 3).astype(dtype)
    gamma, beta = (rng.standard_normal(C).astype(dtype) for _ in range(2))
    rm = rng.standard_normal(C).astype(dtype)
    rv = rng.uniform(0.5, 2, C).astype(dtype)
    dY = rng.standard_normal(X.shape).astype(dtype)
    Y, rm2, rv2, dX, grads = _bn_run(X, gamma, beta, rm, rv, dY, training, 0.2, 1e-5, n_threads)
    rY, rrm, rrv, _, _ = ref.batchnorm_forward(X, gamma, beta, rm, rv, training, 0.2, 1e-5)
    assert Y.dtype == dX.dtype == grads.dtype == dtype
    assert_close(Y, rY, dtype)
    assert_close(rm2, rrm, dtype)
    assert_close(rv2, rrv, dtype)
    for got, want in zip((dX, *grads), ref.batchnorm_backward(dY, X, gamma, rm, rv, training,
                                                              1e-5)):
        assert_close(got, want, dtype)
    _, _, _, dX, grads2 = _bn_run(X, gamma, beta, rm, rv, dY, training, 0.2, 1e-5, n_threads,
                                  need_dX=False)
    assert np.isnan(dX).all()
    np.testing.assert_array_equal(grads2, grads)


def test_batchnorm_kernels_reject_bad_buffers():
    X = np.zeros((2, 3, 4))
    v3 = np.zeros(3)
    acc, coef = np.zeros((2, 3)), np.zeros((3, 3))

    def fwd(**kw):
        args = dict(X=X, Y_out=X.copy(), gamma=v3, beta=v3, running_mean=v3.copy(),
                    running_var=v3.copy(), mean_out=v3.copy(), rstd_out=v3.copy(), acc_ws=acc,
                    training=True, momentum=0.1, eps=1e-5)
        args.update(kw)
        _norm.batchnorm_forward(*args.values())

    def bwd(**kw):
        args = dict(dY=X, X=X, mean=v3, rstd=v3, gamma=v3, dX_out=X.copy(), dgamma_out=v3.copy(),
                    dbeta_out=v3.copy(), drunning_mean_out=v3.copy(),
                    drunning_var_out=v3.copy(), coef_ws=coef, acc_ws=acc, batch_stats=True)
        args.update(kw)
        _norm.batchnorm_backward(*args.values())

    fwd()
    bwd()
    bad = [lambda: fwd(Y_out=np.zeros((2, 3, 5))), lambda: fwd(gamma=np.zeros(2)),
           lambda: fwd(running_var=np.zeros(4)), lambda: fwd(acc_ws=np.zeros((2, 2))),
           lambda: fwd(momentum=1.5), lambda: fwd(eps=0.0), lambda: fwd(mean_out=np.zeros(2)),
           lambda: fwd(X=np.zeros((0, 3, 4)), Y_out=np.zeros((0, 3, 4))),
           lambda: bwd(dY=np.zeros((2, 3, 5))), lambda: bwd(dX_out=np.zeros((1, 3, 4))),
           lambda: bwd(drunning_var_out=np.zeros(2)), lambda: bwd(coef_ws=np.zeros((2, 3))),
           lambda: bwd(rstd=np.zeros(4))]
    for call in bad:
        with pytest.raises(ValueError):
            call()
