"""Embedding: reference, PyTorch parity, gradient check, integer X through Sequential and the
estimators (no float conversion, range errors naming the bad value), model files."""
import json

import numpy as np
import pytest

import nnc
from nnc import NeuralNetClassifier, NeuralNetRegressor, Sequential
from nnc.layers import Dense, Embedding, Flatten, LayerNorm, ReLU
from tests import _reference_norm as ref
from tests._harness import build_layer
from tests._reference_conv import assert_close


def _ids(rng, n, shape, n_tokens):
    return rng.randint(0, n_tokens, (n,) + tuple(shape)).astype(np.int64)


@pytest.mark.parametrize("shape, n_tokens, dim, pad", [((5,), 7, 3, None), ((4,), 3, 6, 1),
                                                       ((2, 3), 9, 2, 0), ((1,), 1, 4, None)])
def test_embedding_matches_reference(shape, n_tokens, dim, pad, dtype, rng):
    layer = Embedding(n_tokens, dim, padding_idx=pad)
    build_layer(layer, shape, 6, dtype)
    W = layer.params[0]
    X = _ids(rng, 6, shape, n_tokens)
    Y = layer.forward(X, True)
    assert Y.dtype == dtype and Y.shape == (6,) + shape + (dim,)
    assert layer.output_shape == shape + (dim,)
    np.testing.assert_array_equal(Y, ref.embedding_forward(X, W))
    dY = rng.standard_normal(Y.shape).astype(dtype)
    layer.grads[0][...] = np.nan               # overwritten, never accumulated
    assert layer.backward(dY.copy(), True) is None     # ids have no gradient
    assert_close(layer.grads[0], ref.embedding_backward(X, dY, n_tokens, pad), dtype)


def test_embedding_duplicates_accumulate_and_padding_gets_nothing():
    layer = Embedding(4, 2, padding_idx=3)
    build_layer(layer, (5,), 1)
    X = np.array([[1, 1, 3, 1, 3]])
    layer.forward(X, True)
    dY = np.arange(10.0).reshape(1, 5, 2)
    layer.backward(dY, False)
    np.testing.assert_array_equal(layer.grads[0], [[0, 0], [0 + 2 + 6, 1 + 3 + 7], [0, 0],
                                                   [0, 0]])


def test_embedding_gradient_check():
    """Central differences of sum(forward(ids) * R) over every table entry (float64)."""
    rng = np.random.RandomState(0)
    layer = Embedding(6, 3, padding_idx=2)
    params, grads = build_layer(layer, (7,), 4)
    X = _ids(rng, 4, (7,), 6)
    R = rng.standard_normal((4, 7, 3))
    layer.forward(X, True)
    layer.backward(R.copy(), False)
    analytic = grads.copy()
    numeric = np.empty_like(params)
    for i in range(params.size):
        old = params[i]
        params[i] = old + 1e-6
        fp = float(np.sum(layer.forward(X, True) * R))
        params[i] = old - 1e-6
        fm = float(np.sum(layer.forward(X, True) * R))
        params[i] = old
        numeric[i] = (fp - fm) / 2e-6
    numeric.reshape(6, 3)[2] = 0                # the padding row is frozen by definition
    np.testing.assert_allclose(analytic, numeric, rtol=1e-7, atol=1e-8)


@pytest.mark.parametrize("pad", [None, 0])
def test_embedding_matches_torch(pad, rng):
    torch = pytest.importorskip("torch")
    layer = Embedding(10, 4, padding_idx=pad)
    build_layer(layer, (6,), 5)
    t = torch.nn.Embedding(10, 4, padding_idx=pad, dtype=torch.float64)
    with torch.no_grad():
        t.weight.copy_(torch.from_numpy(layer.params[0]))
    X = _ids(rng, 5, (6,), 10)
    X[0, :3] = 0                                # duplicates (and the padding id)
    dY = rng.standard_normal((5, 6, 4))
    tY = t(torch.from_numpy(X))
    tY.backward(torch.from_numpy(dY))
    np.testing.assert_array_equal(layer.forward(X, True), tY.detach().numpy())
    layer.backward(dY.copy(), False)
    np.testing.assert_allclose(layer.grads[0], t.weight.grad.numpy(), rtol=1e-13, atol=1e-13)


def test_embedding_init_padding_row_zero_and_no_decay():
    net = Sequential([Embedding(5, 3, padding_idx=4), Flatten(), Dense(2)], input_shape=(2,),
                     random_state=0)
    W = net.layers[0].get_weights()[0]
    assert not W[4].any() and W[:4].std() > 0.5          # N(0, 1) rows
    assert not net.layers[0].param_specs()[0].decay
    assert net.n_decay == 6 * 2                        # only the Dense weights


def test_embedding_constructor_errors():
    for bad, err in [((0, 3), ValueError), ((3, 0), ValueError), ((2.0, 3), TypeError),
                     ((3, True), TypeError)]:
        with pytest.raises(err):
            Embedding(*bad)
    with pytest.raises(ValueError, match="padding_idx"):
        Embedding(4, 2, padding_idx=4)
    with pytest.raises(ValueError, match="padding_idx"):
        Embedding(4, 2, padding_idx=-1)
    with pytest.raises(TypeError, match="padding_idx"):
        Embedding(4, 2, padding_idx=1.0)
    config = json.loads(json.dumps(Embedding(4, 2, padding_idx=1).get_config()))
    assert Embedding(**config).get_config() == {"n_tokens": 4, "dim": 2, "padding_idx": 1}


def test_embedding_must_come_first():
    with pytest.raises(ValueError, match=r"layers\[1\] \(Embedding\) reads integer token ids"):
        Sequential([Dense(3), Embedding(4, 2)], input_shape=(3,))


def test_lone_embedding_forward_checks_ids():
    layer = Embedding(4, 2)
    build_layer(layer, (3,), 2)
    with pytest.raises(ValueError, match="reads int64 token ids"):
        layer.forward(np.zeros((2, 3)))
    with pytest.raises(ValueError, match="reads int64 token ids"):
        layer.forward(np.zeros((2, 3), dtype=np.int32))
    with pytest.raises(ValueError, match=r"outside \[0, 4\)"):
        layer.forward(np.array([[0, 4, 1], [0, 0, 0]]))


# ------------------------------------------------------------------------------------ integer X

def _network():
    return Sequential([Embedding(6, 3), LayerNorm(), Flatten(), Dense(2)], input_shape=(4,),
                      random_state=0)


def test_sequential_takes_integer_ids_without_float_conversion():
    net = _network()
    X = np.array([[0, 1, 2, 5], [5, 4, 3, 0]])
    out = net.forward(X)
    assert net.input_kind == "ids"
    assert net._check_X(X).dtype == np.int64
    for other in (X.astype(np.int32), X.astype(np.uint8), X.astype(np.float64),
                  X.astype(np.float32), X.tolist()):
        np.testing.assert_array_equal(net.forward(other), out)
    loss, grads = net.loss_and_gradients(X, np.ones((2, 2)))
    assert np.isfinite(loss)


@pytest.mark.parametrize("X, match", [
    ([[0, 1, 2, 6], [0, 0, 0, 0]], r"X\[0, 3\] = 6 is not a valid token id: the first layer "
                                   r"\(Embedding\) has n_tokens=6, so ids must lie in \[0, 5\]"),
    ([[0, 1, 2, 3], [0, -1, 0, 0]], r"X\[1, 1\] = -1 is not a valid token id"),
    ([[0, 1, 2, 3], [0, 1e9, 0, 0]], r"X\[1, 1\] = 1000000000 is not a valid token id"),
    ([[0, 1.5, 2, 3], [0, 1, 0, 0]], r"X\[0, 1\] = 1.5 is not a whole number"),
    ([[0, np.nan, 2, 3], [0, 1, 0, 0]], r"NaN or infinity"),
    ([[0, 1, 2], [0, 1, 0]], r"sample shape \(3,\)"),
    ([0, 1, 2, 3], r"Expected 2D array"),
    ([["a", "b", "c", "d"]], r"numeric"),
])
def test_bad_ids_raise_clear_errors(X, match):
    net = _network()
    with pytest.raises(ValueError, match=match):
        net.forward(X)


def test_boolean_ids_are_refused():
    with pytest.raises(TypeError, match="booleans"):
        _network().forward(np.zeros((2, 4), dtype=bool))


def _token_task(n=240, T=6, V=8, seed=0):
    rng = np.random.RandomState(seed)
    X = rng.randint(1, V, (n, T))
    y = (X == 1).any(axis=1).astype(int)           # does token 1 occur?
    return X, y


def test_estimators_fit_and_predict_integer_ids(tmp_path):
    X, y = _token_task()
    clf = NeuralNetClassifier(layers=[Embedding(8, 4), Flatten(), Dense(16), ReLU()],
                              max_epochs=40, learning_rate=1e-2, random_state=0)
    clf.fit(X, y)
    assert clf.network_.dtype == np.float32          # the dtype parameter, not X's
    assert clf.score(X, y) > 0.95
    assert clf.n_features_in_ == 6
    np.testing.assert_array_equal(clf.predict(X.astype(float)), clf.predict(X))
    with pytest.raises(ValueError, match=r"X\[0, 2\] = 8 is not a valid token id"):
        clf.predict(np.array([[1, 2, 8, 1, 1, 1]]))
    clf.partial_fit(X[:50], y[:50])                  # warm: integer X again
    clf.save(tmp_path / "clf.npz")
    loaded = nnc.load(tmp_path / "clf.npz")
    np.testing.assert_array_equal(loaded.predict_proba(X), clf.predict_proba(X))
    reg = NeuralNetRegressor(layers=[Embedding(8, 3), Flatten()], max_epochs=2, dtype=None,
                             early_stopping=True, random_state=0)
    reg.fit(X, y.astype(float))
    assert reg.network_.dtype == np.float64           # dtype=None: float64 for id input
    with pytest.raises(ValueError, match="not a valid token id"):
        NeuralNetClassifier(layers=[Embedding(5, 2), Flatten()]).fit(X, y)
