import numpy as np
import pytest

from nnc.layers import Dense, ReLU, LeakyReLU, Sigmoid, Tanh, Identity
from tests._harness import check_layer_gradients, build_layer
from tests import _reference as ref


@pytest.mark.parametrize("n,F,U", [(1, 1, 1), (3, 4, 5), (5, 1, 3), (2, 7, 1)])
def test_dense_gradients(n, F, U):
    err_x, err_p = check_layer_gradients(Dense(U), (F,), n=n)
    assert err_x < 1e-7 and err_p < 1e-7


@pytest.mark.parametrize("layer", [ReLU(), LeakyReLU(0.1), Sigmoid(), Tanh(), Identity()],
                         ids=lambda l: type(l).__name__)
def test_activation_layer_gradients(layer):
    # keep inputs away from the ReLU kink so finite differences are exact
    rng = np.random.RandomState(3)
    X = rng.uniform(0.1, 2, (4, 6)) * rng.choice([-1, 1], (4, 6))
    err_x, _ = check_layer_gradients(layer, (6,), n=4, X=X)
    assert err_x < 1e-7


def test_dense_forward_backward_reference(dtype, rng):
    layer = Dense(5)
    build_layer(layer, (3,), 4, dtype)
    X = rng.standard_normal((4, 3)).astype(dtype)
    Y = layer.forward(X)
    assert Y.dtype == dtype
    W, b = layer.get_weights()
    np.testing.assert_allclose(Y, ref.dense_forward(X, W, b), rtol=1e-5)
    dY = rng.standard_normal((4, 5)).astype(dtype)
    dX = layer.backward(dY.copy(), True)
    rdW, rdb, rdX = ref.dense_backward(X, W, dY)
    np.testing.assert_allclose(layer.grads[0], rdW, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(layer.grads[1], rdb, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(dX, rdX, rtol=1e-4, atol=1e-5)
    # first layer: no input gradient
    assert layer.backward(dY.copy(), False) is None


def test_dense_glorot_init_matches_sklearn_formula():
    layer = Dense(20)
    build_layer(layer, (30,), 1)  # harness perturbs params; re-init cleanly
    layer.init_params(np.random.RandomState(0))
    rs = np.random.RandomState(0)
    bound = np.sqrt(6 / 50)
    np.testing.assert_array_equal(layer.params[0], rs.uniform(-bound, bound, (30, 20)))
    np.testing.assert_array_equal(layer.params[1], rs.uniform(-bound, bound, 20))


def test_layer_argument_validation():
    with pytest.raises(ValueError, match="units"):
        Dense(0)
    with pytest.raises(TypeError, match="units"):
        Dense(2.5)
    with pytest.raises(ValueError, match="negative_slope"):
        LeakyReLU(1.5)
    # samples of more than one axis: position-wise on the last one (tests/layers/test_attention.py)
    assert Dense(4).build((2, 3), np.float64) == (2, 4)


def test_set_weights_validates_shapes():
    layer = Dense(2)
    build_layer(layer, (3,), 2)
    with pytest.raises(ValueError, match="shape"):
        layer.set_weights([np.zeros((2, 3)), np.zeros(2)])
    with pytest.raises(ValueError, match="expected 2 arrays"):
        layer.set_weights([np.zeros((3, 2))])
    with pytest.raises(ValueError, match="NaN"):
        layer.set_weights([np.full((3, 2), np.nan), np.zeros(2)])
    layer.set_weights([np.ones((3, 2)), np.arange(2.0)])
    np.testing.assert_array_equal(layer.get_weights()[1], [0, 1])
