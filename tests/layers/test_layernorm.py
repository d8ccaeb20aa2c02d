"""LayerNorm layer: NumPy reference, PyTorch parity, gradient checks, config, errors, model files."""
import json

import numpy as np
import pytest

import nnc
from nnc import Sequential
from nnc.layers import Dense, Flatten, LayerNorm
from tests import _reference_norm as ref
from tests._harness import build_layer, check_layer_gradients
from tests._reference_conv import assert_close

# (sample shape, layer factory, number of normalised trailing axes)
CASES = [
    ((6,), lambda: LayerNorm(), 1),
    ((4, 5), lambda: LayerNorm(), 1),
    ((4, 5), lambda: LayerNorm(5, eps=1e-3), 1),
    ((2, 3, 4), lambda: LayerNorm((3, 4)), 2),
    ((3, 17), lambda: LayerNorm(elementwise_affine=False), 1),
    ((1,), lambda: LayerNorm(), 1),
]


def _affine(layer, k_shape, dtype):
    if layer.elementwise_affine:
        return layer.params[0], layer.params[1]
    return np.ones(k_shape, dtype), np.zeros(k_shape, dtype)


@pytest.mark.parametrize("case", range(len(CASES)))
@pytest.mark.parametrize("n", [1, 4])
def test_layernorm_matches_reference(case, n, dtype, rng):
    shape, make, k = CASES[case]
    layer = make()
    build_layer(layer, shape, n, dtype)
    X = (rng.standard_normal((n,) + shape) * 2 - 1).astype(dtype)
    gamma, beta = _affine(layer, shape[len(shape) - k:], dtype)
    Y = layer.forward(X, True)
    assert Y.dtype == dtype and Y.shape == X.shape and layer.output_shape == shape
    assert_close(Y, ref.layernorm_forward(X, gamma, beta, layer.eps, k)[0], dtype)
    assert np.array_equal(layer.forward(X, False), Y)      # no training/prediction difference
    dY = rng.standard_normal(X.shape).astype(dtype)
    dX = layer.backward(dY.copy(), True)
    rdX, rdg, rdb = ref.layernorm_backward(dY, X, gamma, layer.eps, k)
    assert dX.dtype == dtype
    assert_close(dX, rdX, dtype)
    if layer.elementwise_affine:
        assert_close(layer.grads[0], rdg, dtype)
        assert_close(layer.grads[1], rdb, dtype)
    assert layer.backward(dY.copy(), False) is None


@pytest.mark.parametrize("case", range(len(CASES)))
def test_layernorm_gradients(case):
    shape, make, _ = CASES[case]
    err_x, err_p = check_layer_gradients(make(), shape, n=3)
    assert err_x < 1e-6 and err_p < 1e-6


@pytest.mark.parametrize("case", range(len(CASES) - 1))
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_layernorm_matches_torch(case, dtype, rng):
    torch = pytest.importorskip("torch")
    shape, make, k = CASES[case]
    layer = make()
    build_layer(layer, shape, 3, dtype)
    tdt = torch.float32 if dtype == np.float32 else torch.float64
    t = torch.nn.LayerNorm(shape[len(shape) - k:], eps=layer.eps,
                           elementwise_affine=layer.elementwise_affine, dtype=tdt)
    if layer.elementwise_affine:
        with torch.no_grad():
            t.weight.copy_(torch.from_numpy(layer.params[0]))
            t.bias.copy_(torch.from_numpy(layer.params[1]))
    X = rng.standard_normal((3,) + shape).astype(dtype)
    dY = rng.standard_normal(X.shape).astype(dtype)
    tX = torch.tensor(X, requires_grad=True)
    tY = t(tX)
    tY.backward(torch.from_numpy(dY))
    Y = np.array(layer.forward(X, True))
    dX = layer.backward(dY.copy(), True)
    tol = 1e-5 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(Y, tY.detach().numpy(), rtol=tol, atol=tol)
    np.testing.assert_allclose(dX, tX.grad.numpy(), rtol=tol, atol=tol)
    if layer.elementwise_affine:
        np.testing.assert_allclose(layer.grads[0], t.weight.grad.numpy(), rtol=tol, atol=tol)
        np.testing.assert_allclose(layer.grads[1], t.bias.grad.numpy(), rtol=tol, atol=tol)


def test_layernorm_in_a_network_parameters_are_not_decayed():
    net = Sequential([Dense(6), LayerNorm(), Dense(2)], input_shape=(3,), random_state=0)
    specs = net.layers[1].param_specs()
    assert [s.name for s in specs] == ["gamma", "beta"] and not any(s.decay for s in specs)
    # decayed prefix = the two Dense weight matrices only
    assert net.n_decay == 3 * 6 + 6 * 2
    gamma, beta = net.layers[1].get_weights()
    assert (gamma == 1).all() and (beta == 0).all()


@pytest.mark.parametrize("layer", [LayerNorm(), LayerNorm((2, 3), eps=1e-4),
                                   LayerNorm(7, elementwise_affine=False)], ids=repr)
def test_layernorm_config_round_trip(layer):
    config = json.loads(json.dumps(layer.get_config()))
    clone = LayerNorm(**config)
    assert clone.get_config() == layer.get_config()


def test_layernorm_constructor_and_build_errors():
    with pytest.raises(ValueError, match="eps"):
        LayerNorm(eps=0)
    with pytest.raises(ValueError, match="eps"):
        LayerNorm(eps=float("inf"))
    with pytest.raises(TypeError, match="eps"):
        LayerNorm(eps="small")
    with pytest.raises(ValueError, match="normalized_shape"):
        LayerNorm((3, 0))
    with pytest.raises(TypeError, match="normalized_shape"):
        LayerNorm(())
    with pytest.raises(TypeError, match="normalized_shape"):
        LayerNorm(2.5)
    with pytest.raises(TypeError, match="elementwise_affine"):
        LayerNorm(elementwise_affine=1)
    with pytest.raises(ValueError, match=r"last dimensions are \(4,\)"):
        LayerNorm(4).build((3, 5), np.float64)
    with pytest.raises(ValueError, match=r"last dimensions are \(2, 5\)"):
        LayerNorm((2, 5)).build((5,), np.float64)
    with pytest.raises(ValueError, match=r"must have shape \(n, 3, 5\)"):
        layer = LayerNorm()
        build_layer(layer, (3, 5), 2)
        layer.forward(np.zeros((2, 5, 3)))


def test_layernorm_model_file_round_trip(tmp_path):
    rng = np.random.RandomState(0)
    X = rng.standard_normal((30, 4, 5))
    y = (X[:, 0, 0] > 0).astype(int)
    clf = nnc.NeuralNetClassifier(layers=[LayerNorm(), Flatten(), Dense(8)], max_epochs=3,
                                  random_state=0, dtype="float64").fit(X, y)
    clf.save(tmp_path / "m.npz")
    loaded = nnc.load(tmp_path / "m.npz")
    np.testing.assert_array_equal(loaded.predict_proba(X), clf.predict_proba(X))
    assert loaded.network_.layers[0].get_config() == clf.network_.layers[0].get_config()
