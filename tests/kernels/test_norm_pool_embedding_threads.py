"""The normalization, embedding and padded / global (also masked) pooling kernels under the
thread policy: the same bytes on one thread and on the forced threads (governor off, thresholds
0), on OpenBLAS's pool and on an OpenMP team - except LayerNorm's dgamma / dbeta, summed per job
then added (equal to rounding).  The fixtures come from tests/test_thread_policy.py."""
import numpy as np
import pytest

from nnc._kernels import _embedding, _norm, _pool
from tests import _reference_conv as ref
from tests.test_thread_policy import _both, forced, multi, runner  # noqa: F401 - fixtures

DTYPES = [np.float32, np.float64]


@multi
@pytest.mark.parametrize("dtype", DTYPES)
def test_padded_and_global_pools_bit_identical_across_threads(runner, dtype):
    rng = np.random.RandomState(0)
    X = rng.standard_normal((3, 5, 9, 40)).astype(dtype)
    OH, OW = (9 + 2 - 3) // 2 + 1, (40 + 2 - 3) // 1 + 1
    dY = rng.standard_normal((3, 5, OH, OW)).astype(dtype)
    X3 = X.reshape(3, 5, 360)
    gY = rng.standard_normal((3, 5)).astype(dtype)
    gYl = rng.standard_normal((3, 360)).astype(dtype)

    def run(nt):
        out = [np.empty((3, 5, OH, OW), dtype), np.empty((3, 5, OH, OW), np.intc),
               np.empty_like(X), np.empty((3, 5, OH, OW), dtype), np.empty_like(X)]
        _pool.maxpool2d_forward(X, out[0], out[1], 3, 3, 2, 1, nt, 1, 1)
        _pool.maxpool2d_backward(dY, out[1], out[2], nt)
        _pool.avgpool2d_forward(X, out[3], 3, 3, 2, 1, nt, 1, 1, False)
        _pool.avgpool2d_backward(dY, out[4], 3, 3, 2, 1, nt, 1, 1, False)
        for last, g in ((False, gY), (True, gYl)):
            C = 360 if last else 5
            Y, arg, Ya = np.empty((3, C), dtype), np.empty((3, C), np.intc), np.empty((3, C), dtype)
            dX, dXa = np.empty_like(X3), np.empty_like(X3)
            _pool.global_maxpool_forward(X3, Y, arg, last, nt)
            _pool.global_maxpool_backward(g, arg, dX, last, nt)
            _pool.global_avgpool_forward(X3, Ya, last, nt)
            _pool.global_avgpool_backward(g, dXa, last, nt)
            out += [Y, arg, dX, Ya, dXa]
        return out

    serial, threaded = _both(run)
    for a, c in zip(serial, threaded):
        np.testing.assert_array_equal(a, c)


@multi
@pytest.mark.parametrize("dtype", DTYPES)
def test_masked_global_pools_across_threads_match_reference(runner, dtype):
    """Channels-last global pools with a padding mask (padded tails, padding inside, samples all
    padding): the NumPy reference on one thread, the same bytes on the forced threads."""
    rng = np.random.RandomState(4)
    N, T, F = 23, 17, 40
    X = rng.standard_normal((N, T, F)).astype(dtype)
    M = rng.rand(N, T) > 0.3
    M[::5] = np.arange(T) < rng.randint(0, T + 1)
    M[3] = False
    M[7] = True
    X[~M] = np.nan                         # padded values must never be read into a result
    dY = rng.standard_normal((N, F)).astype(dtype)
    mask = M.view(np.uint8)

    def run(nt):
        Y, arg, dX = np.empty((N, F), dtype), np.empty((N, F), np.intc), np.empty_like(X)
        Ya, dXa = np.empty((N, F), dtype), np.empty_like(X)
        _pool.global_maxpool_forward(X, Y, arg, True, nt, mask)
        _pool.global_maxpool_backward(dY, arg, dX, True, nt, mask)
        _pool.global_avgpool_forward(X, Ya, True, nt, mask)
        _pool.global_avgpool_backward(dY, dXa, True, nt, mask)
        return Y, arg, dX, Ya, dXa

    serial, threaded = _both(run)
    for a, c in zip(serial, threaded):
        np.testing.assert_array_equal(a, c)
    tol = 1e-5 if dtype == np.float32 else 1e-12
    for is_max, (Y, dX) in ((True, (serial[0], serial[2])), (False, (serial[3], serial[4]))):
        Yr, argr = ref.masked_global_pool_forward(X, M, is_max)
        np.testing.assert_allclose(Y, Yr, rtol=tol, atol=tol)
        np.testing.assert_allclose(dX, ref.masked_global_pool_backward(dY, X, M, is_max),
                                   rtol=tol, atol=tol)
        if is_max:
            np.testing.assert_array_equal(serial[1], argr)
        assert np.all(Y[3] == 0) and np.all(dX[3] == 0) and np.all(dX[~M] == 0)


@multi
@pytest.mark.parametrize("dtype", DTYPES)
def test_layernorm_across_threads(runner, dtype):
    rng = np.random.RandomState(1)
    R, D = 37, 11
    X, dY = (rng.standard_normal((R, D)).astype(dtype) for _ in range(2))
    gamma, beta = (rng.standard_normal(D).astype(dtype) for _ in range(2))

    def run(nt):
        Y, mean, rstd = np.empty_like(X), np.empty(R, dtype), np.empty(R, dtype)
        dX, dg, db = np.empty_like(X), np.empty(D, dtype), np.empty(D, dtype)
        _norm.layernorm_forward(X, Y, gamma, beta, mean, rstd, 1e-5, nt)
        _norm.layernorm_backward(dY, X, mean, rstd, gamma, dX, dg, db,
                                 np.empty((4, 2, D), dtype), True, nt)
        return Y, mean, rstd, dX, dg, db

    serial, threaded = _both(run)
    for a, c in zip(serial[:4], threaded[:4]):
        np.testing.assert_array_equal(a, c)
    for a, c in zip(serial[4:], threaded[4:]):       # per-job partial sums, then added
        np.testing.assert_allclose(a, c, rtol=1e-5 if dtype == np.float32 else 1e-12)


@multi
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("S", [1, 6])
@pytest.mark.parametrize("training", [True, False])
def test_batchnorm_bit_identical_across_threads(runner, dtype, S, training):
    rng = np.random.RandomState(2)
    N, C = 9, 7
    X, dY = (rng.standard_normal((N, C, S)).astype(dtype) for _ in range(2))
    gamma, beta = (rng.standard_normal(C).astype(dtype) for _ in range(2))

    def run(nt):
        rm, rv = np.zeros(C, dtype), np.ones(C, dtype)
        Y, mean, rstd = np.empty_like(X), np.empty(C, dtype), np.empty(C, dtype)
        _norm.batchnorm_forward(X, Y, gamma, beta, rm, rv, mean, rstd, np.empty((2, C)),
                                training, 0.1, 1e-5, nt)
        dX, dg, db, drm, drv = (np.empty_like(X),) + tuple(np.empty(C, dtype) for _ in range(4))
        _norm.batchnorm_backward(dY, X, mean, rstd, gamma, dX, dg, db, drm, drv,
                                 np.empty((3, C), dtype), np.empty((2, C)), training, True, nt)
        return Y, rm, rv, mean, rstd, dX, dg, db, drm, drv

    serial, threaded = _both(run)
    for a, c in zip(serial, threaded):
        np.testing.assert_array_equal(a, c)


@multi
@pytest.mark.parametrize("dtype", DTYPES)
def test_embedding_bit_identical_across_threads(runner, dtype):
    rng = np.random.RandomState(3)
    V, D, N = 13, 5, 200
    ids = rng.randint(0, V, N).astype(np.int64)
    W = rng.standard_normal((V, D)).astype(dtype)
    dY = rng.standard_normal((N, D)).astype(dtype)

    def run(nt):
        Y, dW = np.empty((N, D), dtype), np.empty((V, D), dtype)
        _embedding.embedding_forward(ids, W, Y, nt)
        _embedding.embedding_backward(ids, dY, dW, 2, nt)
        return Y, dW

    serial, threaded = _both(run)
    for a, c in zip(serial, threaded):
        np.testing.assert_array_equal(a, c)
