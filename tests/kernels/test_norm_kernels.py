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
