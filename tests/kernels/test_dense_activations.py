import numpy as np
import pytest

from nnc._kernels import _dense, _activations, _blas
from tests import _reference as ref
from tests.conftest import TOL

SHAPES = [(1, 1, 1), (1, 5, 1), (7, 1, 3), (1, 3, 9), (13, 17, 5), (32, 30, 64)]
ACTS = {"identity": _activations.IDENTITY, "logistic": _activations.LOGISTIC,
        "tanh": _activations.TANH, "relu": _activations.RELU,
        "leaky_relu": _activations.LEAKY_RELU}


@pytest.mark.parametrize("N,F,U", SHAPES)
def test_dense_forward_matches_numpy(N, F, U, dtype, rng):
    X = rng.standard_normal((N, F)).astype(dtype)
    W = rng.standard_normal((F, U)).astype(dtype)
    b = rng.standard_normal(U).astype(dtype)
    Y = np.empty((N, U), dtype=dtype)
    _dense.dense_forward(X, W, b, Y)
    assert Y.dtype == dtype
    np.testing.assert_allclose(Y, ref.dense_forward(X, W, b), **TOL[dtype])


@pytest.mark.parametrize("N,F,U", SHAPES)
@pytest.mark.parametrize("with_dx", [True, False])
def test_dense_backward_matches_numpy(N, F, U, with_dx, dtype, rng):
    X = rng.standard_normal((N, F)).astype(dtype)
    W = rng.standard_normal((F, U)).astype(dtype)
    dY = rng.standard_normal((N, U)).astype(dtype)
    dW = np.full((F, U), np.nan, dtype=dtype)
    db = np.full(U, np.nan, dtype=dtype)
    dX = np.full((N, F), np.nan, dtype=dtype) if with_dx else None
    _dense.dense_backward(X, W, dY, dW, db, dX)
    rdW, rdb, rdX = ref.dense_backward(X, W, dY)
    np.testing.assert_allclose(dW, rdW, **TOL[dtype])
    np.testing.assert_allclose(db, rdb, **TOL[dtype])
    if with_dx:
        np.testing.assert_allclose(dX, rdX, **TOL[dtype])


def test_dense_kernels_reject_bad_shapes():
    X = np.zeros((4, 3))
    W = np.zeros((3, 2))
    b = np.zeros(2)
    with pytest.raises(ValueError, match="incompatible"):
        _dense.dense_forward(X, np.zeros((4, 2)), b, np.zeros((4, 2)))
    with pytest.raises(ValueError, match="incompatible"):
        _dense.dense_forward(X, W, np.zeros(3), np.zeros((4, 2)))
    with pytest.raises(ValueError, match="incompatible"):
        _dense.dense_forward(X, W, b, np.zeros((5, 2)))
    with pytest.raises(ValueError):
        _dense.dense_backward(X, W, np.zeros((4, 2)), np.zeros((3, 2)), np.zeros(2),
                              np.zeros((4, 4)))
    with pytest.raises(ValueError):  # mixed dtypes never reach the kernel
        _dense.dense_forward(X.astype(np.float32), W, b, np.zeros((4, 2)))


@pytest.mark.parametrize("name", list(ACTS))
@pytest.mark.parametrize("n", [1, 7, 1000])
def test_activation_forward_backward_match_numpy(name, n, dtype, rng):
    Z = (3 * rng.standard_normal(n)).astype(dtype)
    Y = Z.copy()
    _activations.activation_forward(ACTS[name], Y, 0.01)
    assert Y.dtype == dtype
    np.testing.assert_allclose(Y, ref.activation(name, Z), **TOL[dtype])
    dY = rng.standard_normal(n).astype(dtype)
    dZ = dY.copy()
    _activations.activation_backward(ACTS[name], Y, dZ, 0.01)
    np.testing.assert_allclose(dZ, dY * ref.activation_derivative(name, Z), **TOL[dtype])


@pytest.mark.parametrize("dtype_", [np.float32, np.float64])
def test_logistic_and_tanh_do_not_overflow(dtype_):
    Z = np.array([-1e4, -100, 0, 100, 1e4], dtype=dtype_)
    for code in (_activations.LOGISTIC, _activations.TANH):
        Y = Z.copy()
        _activations.activation_forward(code, Y, 0.0)
        assert np.all(np.isfinite(Y))


def test_activation_kernels_reject_bad_input():
    with pytest.raises(ValueError, match="unknown activation"):
        _activations.activation_forward(99, np.zeros(3))
    with pytest.raises(ValueError, match="differ"):
        _activations.activation_backward(_activations.RELU, np.zeros(3), np.zeros(4))


@pytest.mark.parametrize("ta,tb", [(False, False), (True, False), (False, True), (True, True)])
@pytest.mark.parametrize("m,n,k", [(5, 3, 4), (1, 7, 6), (1, 1, 9), (1, 6, 1)])
@pytest.mark.parametrize("beta", [2.0, 0.0])
def test_gemm_matches_numpy(ta, tb, m, n, k, beta, dtype, rng):
    """Every transpose case; m = 1 takes the GEMV path, whose beta = 0 must ignore C's
    contents (NaN garbage in an uninitialised workspace)."""
    A = rng.standard_normal((k, m) if ta else (m, k)).astype(dtype)
    B = rng.standard_normal((n, k) if tb else (k, n)).astype(dtype)
    C = rng.standard_normal((m, n)).astype(dtype)
    expect = 0.5 * (A.T if ta else A).astype(np.float64) @ (B.T if tb else B)
    if beta:
        expect += beta * C
    else:
        C[...] = np.nan
    _blas.gemm_memview(ta, tb, 0.5, A, B, beta, C)
    np.testing.assert_allclose(C, expect, rtol=1e-5 if dtype == np.float32 else 1e-12)
