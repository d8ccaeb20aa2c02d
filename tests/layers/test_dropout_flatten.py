"""Dropout and Flatten layers."""
import json
import pickle

import numpy as np
import pytest

from nnc.layers import Dropout, Flatten
from tests._harness import build_layer, check_layer_gradients
from tests import _reference_conv as ref
from tests._reference_conv import assert_close


# ------------------------------------------------------------------------------------ Flatten

def test_flatten_is_a_view_both_ways(dtype, rng):
    layer = Flatten()
    build_layer(layer, (2, 3, 4), 5, dtype)
    assert layer.output_shape == (24,)
    X = rng.standard_normal((5, 2, 3, 4)).astype(dtype)
    Y = layer.forward(X, True)
    assert Y.shape == (5, 24) and Y.dtype == dtype and np.shares_memory(Y, X)
    np.testing.assert_array_equal(Y, X.reshape(5, 24))
    dY = rng.standard_normal((5, 24)).astype(dtype)
    dX = layer.backward(dY, True)
    assert dX.shape == X.shape and np.shares_memory(dX, dY)
    np.testing.assert_array_equal(dX, dY.reshape(X.shape))
    assert layer.backward(dY, False) is None


def test_flatten_gradients():
    err_x, err_p = check_layer_gradients(Flatten(), (3, 2, 2), n=2)
    assert err_x < 1e-6 and err_p == 0


def test_flatten_output_reusable_follows_its_input():
    layer = Flatten()
    assert not layer.output_reusable           # e.g. first layer: output is the user's array
    layer.inplace = True                       # the network: the input buffer may be overwritten
    assert layer.output_reusable


# ------------------------------------------------------------------------------------ Dropout

def _dropout(rate, shape, n, dtype, seed=0, inplace=False, **kw):
    layer = Dropout(rate, **kw)
    layer.inplace = inplace
    build_layer(layer, shape, n, dtype, seed=seed)
    return layer


@pytest.mark.parametrize("rate", [0.0, 0.25, 0.6])
@pytest.mark.parametrize("inplace", [False, True])
def test_dropout_training_matches_reference(rate, inplace, dtype, rng):
    shape, n = (3, 5, 4), 6
    layer = _dropout(rate, shape, n, dtype, inplace=inplace)
    X = rng.standard_normal((n,) + shape).astype(dtype)
    # the uniforms the layer is about to draw, from a copy of its generator
    twin = Dropout(rate)
    twin._rng = np.random.default_rng()
    twin._rng.bit_generator.state = layer._rng.bit_generator.state
    U = twin._rng.random(X.size, dtype=dtype).reshape(X.shape)
    Xin = X.copy()
    Y = layer.forward(Xin, True)
    assert Y.dtype == dtype and Y.shape == X.shape
    Yr, mask = ref.dropout_forward(X, U, rate)
    assert_close(Y, Yr, dtype)
    assert np.shares_memory(Y, Xin) == (inplace or rate == 0)  # rate 0: identity
    dY = rng.standard_normal(X.shape).astype(dtype)
    dX = layer.backward(dY.copy(), True)
    assert dX.dtype == dtype
    assert_close(dX, dY * mask, dtype)
    assert layer.backward(dY.copy(), False) is None


def test_dropout_is_identity_in_inference(dtype, rng):
    layer = _dropout(0.5, (7,), 4, dtype)
    X = rng.standard_normal((4, 7)).astype(dtype)
    Y = layer.forward(X, False)
    assert Y is X
    dY = rng.standard_normal((4, 7)).astype(dtype)
    np.testing.assert_array_equal(layer.backward(dY.copy(), True), dY)


def test_dropout_statistics():
    layer = _dropout(0.3, (1000,), 50, np.float64)
    Y = layer.forward(np.ones((50, 1000)), True)
    kept = Y != 0
    assert abs(kept.mean() - 0.7) < 0.01
    np.testing.assert_allclose(Y[kept], 1 / 0.7)
    Y2 = layer.forward(np.ones((50, 1000)), True).copy()
    assert not np.array_equal(Y2 != 0, kept)   # a fresh mask per batch


def test_dropout_gradients():
    # inference: identity
    err_x, _ = check_layer_gradients(Dropout(0.4), (3, 4), n=2, training=False)
    assert err_x < 1e-6

    # training with a frozen mask: re-seed the generator before every forward
    class FrozenDropout(Dropout):
        def forward(self, X, training=False):
            self._rng = np.random.default_rng(123)
            return super().forward(X, training)

    err_x, _ = check_layer_gradients(FrozenDropout(0.4), (3, 4), n=2, training=True)
    assert err_x < 1e-6


def test_dropout_reproducible_from_network_rng_and_random_state(rng):
    X = rng.standard_normal((4, 9))
    outs = [np.array(_dropout(0.5, (9,), 4, np.float64, seed=s).forward(X, True))
            for s in (0, 0, 1)]
    np.testing.assert_array_equal(outs[0], outs[1])
    assert not np.array_equal(outs[0], outs[2])
    # an explicit random_state wins over the network seed
    a = _dropout(0.5, (9,), 4, np.float64, seed=0, random_state=7).forward(X, True).copy()
    b = _dropout(0.5, (9,), 4, np.float64, seed=1, random_state=7).forward(X, True).copy()
    np.testing.assert_array_equal(a, b)


def test_dropout_pickle_keeps_generator_state(rng):
    layer = _dropout(0.5, (9,), 4, np.float64)
    X = rng.standard_normal((4, 9))
    clone = pickle.loads(pickle.dumps(layer))
    clone.allocate(4)
    np.testing.assert_array_equal(layer.forward(X, True), clone.forward(X, True))


def test_dropout_validation_and_config():
    for bad in (1.0, -0.1, 1.5):
        with pytest.raises(ValueError, match="rate"):
            Dropout(bad)
    with pytest.raises(TypeError, match="rate"):
        Dropout("0.5")
    with pytest.raises(TypeError, match="random_state"):
        Dropout(0.5, random_state=1.5)
    with pytest.raises(ValueError, match="random_state"):
        Dropout(0.5, random_state=-1)
    layer = Dropout(0.25, random_state=3)
    config = json.loads(json.dumps(layer.get_config()))
    assert Dropout(**config).get_config() == {"rate": 0.25, "random_state": 3}


def test_dropout_output_reusable_follows_inplace():
    layer = Dropout(0.5)
    assert not layer.output_reusable   # inference returns its input, possibly the user's array
    layer.inplace = True
    assert layer.output_reusable
