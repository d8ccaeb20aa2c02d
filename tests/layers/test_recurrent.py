"""SimpleRNN, LSTM, GRU and Bidirectional: gradient checks, NumPy references, PyTorch parity,
stacking, configuration and argument validation."""
import json
import pickle

import numpy as np
import pytest

from nnc.layers._base import ParamSpec
from nnc.layers._recurrent import GRU, LSTM, Bidirectional, SimpleRNN
from tests._harness import build_layer, check_layer_gradients
from tests._reference_recurrent import recurrent_backward, recurrent_forward

CELLS = {SimpleRNN: "rnn", LSTM: "lstm", GRU: "gru"}
CLASSES = [SimpleRNN, LSTM, GRU]
TOL = {np.float32: dict(rtol=1e-4, atol=2e-5), np.float64: dict(rtol=1e-10, atol=1e-12)}


# ---------------------------------------------------------------- gradient checks (float64)

@pytest.mark.parametrize("cls", CLASSES)
@pytest.mark.parametrize("T", [1, 7])
@pytest.mark.parametrize("return_sequences", [False, True])
def test_gradients(cls, T, return_sequences):
    err_x, err_p = check_layer_gradients(cls(4, return_sequences=return_sequences),
                                         input_shape=(T, 3), n=3)
    assert err_x < 1e-6 and err_p < 1e-6


@pytest.mark.parametrize("cls", CLASSES)
@pytest.mark.parametrize("return_sequences", [False, True])
def test_bidirectional_gradients(cls, return_sequences):
    layer = Bidirectional(cls(3, return_sequences=return_sequences))
    err_x, err_p = check_layer_gradients(layer, input_shape=(5, 2), n=2)
    assert err_x < 1e-6 and err_p < 1e-6


@pytest.mark.parametrize("merge", ["sum", "ave", "mul"])
@pytest.mark.parametrize("return_sequences", [False, True])
def test_bidirectional_merge_gradients(merge, return_sequences):
    layer = Bidirectional(GRU(3, return_sequences=return_sequences), merge=merge)
    err_x, err_p = check_layer_gradients(layer, input_shape=(4, 2), n=2)
    assert err_x < 1e-6 and err_p < 1e-6


def test_stacked_lstm_gru_gradients():
    """LSTM(return_sequences=True) -> GRU, chained by hand, against central differences."""
    n, T, F = 3, 6, 2
    lstm, gru = LSTM(4, return_sequences=True), GRU(3)
    p1, g1 = build_layer(lstm, (T, F), n, np.float64, seed=0)
    p2, g2 = build_layer(gru, lstm.output_shape, n, np.float64, seed=1)
    rng = np.random.RandomState(3)
    X = rng.standard_normal((n, T, F))
    R = rng.standard_normal((n, 3))

    def loss():
        return float(np.sum(gru.forward(lstm.forward(X, True).copy(), True) * R))

    loss()
    dH = gru.backward(R.copy(), True).copy()
    dX = lstm.backward(dH, True).copy()
    analytic = np.concatenate([g1, g2])
    params = [p1, p2]
    eps = 1e-6
    num = []
    for p in params:
        for i in range(p.size):
            old = p[i]
            p[i] = old + eps
            fp = loss()
            p[i] = old - eps
            fm = loss()
            p[i] = old
            num.append((fp - fm) / (2 * eps))
    num = np.array(num)
    assert np.linalg.norm(num - analytic) / np.linalg.norm(num + analytic) < 1e-6
    num_x = np.empty(X.size)
    for i in range(X.size):
        old = X.flat[i]
        X.flat[i] = old + eps
        fp = loss()
        X.flat[i] = old - eps
        fm = loss()
        X.flat[i] = old
        num_x[i] = (fp - fm) / (2 * eps)
    assert np.linalg.norm(num_x - dX.ravel()) / np.linalg.norm(num_x + dX.ravel()) < 1e-6


# ---------------------------------------------------------------- NumPy references, both dtypes

def _run(layer, X, dY, need_dX=True):
    Y = layer.forward(X, True).copy()
    dX = layer.backward(dY.copy(), need_dX)
    return Y, (None if dX is None else dX.copy()), [g.copy() for g in layer.grads]


@pytest.mark.parametrize("dt", [np.float32, np.float64])
@pytest.mark.parametrize("cls", CLASSES)
@pytest.mark.parametrize("return_sequences", [False, True])
def test_layer_matches_reference(dt, cls, return_sequences):
    n, T, F, U = 4, 5, 3, 6
    layer = cls(U, return_sequences=return_sequences)
    build_layer(layer, (T, F), n, dt)
    rng = np.random.RandomState(5)
    X = rng.standard_normal((n, T, F)).astype(dt)
    dY = rng.standard_normal((n,) + layer.output_shape).astype(dt)
    Y, dX, grads = _run(layer, X, dY)
    Y_ref, cache = recurrent_forward(CELLS[cls], X, layer.params, return_sequences)
    dX_ref, grads_ref = recurrent_backward(cache, dY)
    assert Y.dtype == dt and dX.dtype == dt
    np.testing.assert_allclose(Y, Y_ref, **TOL[dt])
    np.testing.assert_allclose(dX, dX_ref, **TOL[dt])
    for g, g_ref in zip(grads, grads_ref):
        assert g.dtype == dt
        np.testing.assert_allclose(g, g_ref, **TOL[dt])


@pytest.mark.parametrize("dt", [np.float32, np.float64])
@pytest.mark.parametrize("cls", CLASSES)
@pytest.mark.parametrize("return_sequences", [False, True])
def test_bidirectional_matches_reference(dt, cls, return_sequences):
    n, T, F, U = 3, 4, 2, 5
    layer = Bidirectional(cls(U, return_sequences=return_sequences))
    build_layer(layer, (T, F), n, dt)
    rng = np.random.RandomState(6)
    X = rng.standard_normal((n, T, F)).astype(dt)
    dY = rng.standard_normal((n,) + layer.output_shape).astype(dt)
    Y, dX, grads = _run(layer, X, dY)
    k = len(layer.forward_layer.params)
    Yf, cf = recurrent_forward(CELLS[cls], X, layer.params[:k], return_sequences)
    Yb, cb = recurrent_forward(CELLS[cls], X, layer.params[k:], return_sequences, reverse=True)
    np.testing.assert_allclose(Y, np.concatenate([Yf, Yb], axis=-1), **TOL[dt])
    dXf, gf = recurrent_backward(cf, dY[..., :U])
    dXb, gb = recurrent_backward(cb, dY[..., U:])
    np.testing.assert_allclose(dX, dXf + dXb, **TOL[dt])
    for g, g_ref in zip(grads, gf + gb):
        np.testing.assert_allclose(g, g_ref, **TOL[dt])


@pytest.mark.parametrize("cls", CLASSES)
def test_short_batch_uses_leading_rows(cls):
    """A layer allocated for 8 samples gives on 3 samples what a layer allocated for 3 gives."""
    T, F = 4, 3
    big, small = cls(5, return_sequences=True), cls(5, return_sequences=True)
    build_layer(big, (T, F), 8)
    build_layer(small, (T, F), 3)
    small.set_weights(big.get_weights())
    rng = np.random.RandomState(0)
    X = rng.standard_normal((3, T, F))
    dY = rng.standard_normal((3, T, 5))
    for a, b in zip(_run(big, X, dY)[:2], _run(small, X, dY)[:2]):
        np.testing.assert_array_equal(a, b)
    assert big.forward(X[:2].copy()).shape == (2, T, 5)


def test_need_dx_false_returns_none():
    layer = LSTM(3)
    build_layer(layer, (4, 2), 2)
    layer.forward(np.ones((2, 4, 2)))
    assert layer.backward(np.ones((2, 3)), need_dX=False) is None
    assert np.isfinite(layer.grads[0]).all()


def test_backward_requires_forward():
    layer = GRU(3)
    build_layer(layer, (4, 2), 2)
    with pytest.raises(RuntimeError):
        layer.backward(np.ones((2, 3)))
    layer.forward(np.ones((2, 4, 2)))
    layer.backward(np.ones((2, 3)))
    with pytest.raises(RuntimeError):       # the gate history was consumed
        layer.backward(np.ones((2, 3)))


def test_forward_rejects_bad_input():
    layer = SimpleRNN(3)
    build_layer(layer, (4, 2), 2)
    with pytest.raises(ValueError):
        layer.forward(np.ones((2, 5, 2)))
    with pytest.raises(ValueError):
        layer.forward(np.ones((3, 4, 2)))   # more rows than allocated
    with pytest.raises(ValueError):
        layer.forward(np.ones((2, 4, 2), dtype=np.float32))


# ---------------------------------------------------------------- PyTorch parity (float64)

def _torch_module(torch, cls, F, U, bidirectional):
    mod = {SimpleRNN: torch.nn.RNN, LSTM: torch.nn.LSTM, GRU: torch.nn.GRU}[cls]
    return mod(F, U, batch_first=True, bidirectional=bidirectional).double()


def _load_torch(torch, rnn, params, suffix, cell):
    """W_x = weight_ih.T, W_h = weight_hh.T; RNN/LSTM b = bias_ih + bias_hh; GRU b_x, b_h."""
    with torch.no_grad():
        getattr(rnn, "weight_ih_l0" + suffix).copy_(torch.from_numpy(params[0].T.copy()))
        getattr(rnn, "weight_hh_l0" + suffix).copy_(torch.from_numpy(params[1].T.copy()))
        if cell == "gru":
            getattr(rnn, "bias_ih_l0" + suffix).copy_(torch.from_numpy(params[2]))
            getattr(rnn, "bias_hh_l0" + suffix).copy_(torch.from_numpy(params[3]))
        else:  # split b unevenly: only the sum matters
            getattr(rnn, "bias_ih_l0" + suffix).copy_(torch.from_numpy(0.3 * params[2]))
            getattr(rnn, "bias_hh_l0" + suffix).copy_(torch.from_numpy(0.7 * params[2]))


def _torch_grads(rnn, suffix, cell):
    g = lambda name: getattr(rnn, name + "_l0" + suffix).grad.numpy()
    grads = [g("weight_ih").T, g("weight_hh").T, g("bias_ih")]
    if cell == "gru":
        grads.append(g("bias_hh"))
    else:
        np.testing.assert_allclose(g("bias_ih"), g("bias_hh"), rtol=1e-5, atol=1e-5)
    return grads


@pytest.mark.parametrize("cls", CLASSES)
@pytest.mark.parametrize("return_sequences", [False, True])
@pytest.mark.parametrize("bidirectional", [False, True])
def test_matches_torch(cls, return_sequences, bidirectional):
    torch = pytest.importorskip("torch")
    n, T, F, U = 4, 7, 3, 5
    cell = CELLS[cls]
    inner = cls(U, return_sequences=return_sequences)
    layer = Bidirectional(inner) if bidirectional else inner
    build_layer(layer, (T, F), n, np.float64, seed=4)
    rng = np.random.RandomState(9)
    X = rng.standard_normal((n, T, F))
    dY = rng.standard_normal((n,) + layer.output_shape)
    Y, dX, grads = _run(layer, X, dY)

    rnn = _torch_module(torch, cls, F, U, bidirectional)
    k = len(grads) // 2 if bidirectional else len(grads)
    _load_torch(torch, rnn, layer.params[:k], "", cell)
    if bidirectional:
        _load_torch(torch, rnn, layer.params[k:], "_reverse", cell)
    Xt = torch.from_numpy(X.copy()).requires_grad_(True)
    out, h_n = rnn(Xt)
    if cell == "lstm":
        h_n = h_n[0]
    Y_t = out if return_sequences else torch.cat(list(h_n), dim=-1)
    if not bidirectional and not return_sequences:
        np.testing.assert_allclose(out[:, -1].detach().numpy(), Y, rtol=1e-9, atol=1e-12)
    (Y_t * torch.from_numpy(dY)).sum().backward()
    np.testing.assert_allclose(Y, Y_t.detach().numpy(), rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(dX, Xt.grad.numpy(), rtol=1e-6, atol=1e-9)
    ref = _torch_grads(rnn, "", cell)
    if bidirectional:
        ref += _torch_grads(rnn, "_reverse", cell)
    for g, g_ref in zip(grads, ref):
        np.testing.assert_allclose(g, g_ref, rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("cls", CLASSES)
def test_matches_torch_float32(cls):
    """The float32 path (fast exp) against torch's float32 modules."""
    torch = pytest.importorskip("torch")
    n, T, F, U = 8, 12, 5, 16
    cell = CELLS[cls]
    layer = cls(U, return_sequences=True)
    build_layer(layer, (T, F), n, np.float32, seed=2)
    rng = np.random.RandomState(3)
    X = (2 * rng.standard_normal((n, T, F))).astype(np.float32)
    dY = rng.standard_normal((n, T, U)).astype(np.float32)
    Y, dX, grads = _run(layer, X, dY)
    rnn = {SimpleRNN: torch.nn.RNN, LSTM: torch.nn.LSTM, GRU: torch.nn.GRU}[cls](
        F, U, batch_first=True)
    _load_torch(torch, rnn, [p.astype(np.float32) for p in layer.params], "", cell)
    Xt = torch.from_numpy(X.copy()).requires_grad_(True)
    out, _ = rnn(Xt)
    (out * torch.from_numpy(dY)).sum().backward()
    tol = dict(rtol=1e-4, atol=2e-5)
    np.testing.assert_allclose(Y, out.detach().numpy(), **tol)
    np.testing.assert_allclose(dX, Xt.grad.numpy(), **tol)
    for g, g_ref in zip(grads, _torch_grads(rnn, "", cell)):
        np.testing.assert_allclose(g, g_ref, **tol)


# ---------------------------------------------------------------- declaration and config

@pytest.mark.parametrize("cls", CLASSES)
def test_param_specs_and_shapes(cls):
    layer = cls(6, return_sequences=False)
    assert layer.build((5, 3), np.float64) == (6,)
    G = {SimpleRNN: 6, LSTM: 24, GRU: 18}[cls]
    specs = layer.param_specs()
    assert specs[:2] == [ParamSpec("W_x", (3, G), True), ParamSpec("W_h", (6, G), True)]
    biases = [ParamSpec("b_x", (G,), False), ParamSpec("b_h", (G,), False)] if cls is GRU \
        else [ParamSpec("b", (G,), False)]
    assert specs[2:] == biases
    assert cls(6, return_sequences=True).build((5, 3), np.float32) == (5, 6)


def test_bidirectional_specs_and_shapes():
    layer = Bidirectional(LSTM(4, return_sequences=True))
    assert layer.build((6, 2), np.float64) == (6, 8)
    names = [s.name for s in layer.param_specs()]
    assert names == ["fw_W_x", "fw_W_h", "fw_b", "bw_W_x", "bw_W_h", "bw_b"]
    assert Bidirectional(GRU(4), merge="sum").build((6, 2), np.float64) == (4,)
    assert Bidirectional(GRU(4)).build((6, 2), np.float64) == (8,)


@pytest.mark.parametrize("cls", CLASSES)
def test_init_params(cls):
    U, F = 8, 5
    layer = cls(U)
    rng = np.random.RandomState(0)
    layer.build((3, F), np.float64)
    views = [np.empty(s.shape) for s in layer.param_specs()]
    layer.bind(views, [np.empty(s.shape) for s in layer.param_specs()])
    layer.init_params(rng)
    W_x, W_h = layer.params[0], layer.params[1]
    G = W_x.shape[1]
    assert np.abs(W_x).max() <= np.sqrt(6.0 / (F + G))
    for k in range(G // U):
        block = W_h[:, k * U:(k + 1) * U]
        np.testing.assert_allclose(block.T @ block, np.eye(U), atol=1e-12)
    bias = np.concatenate(layer.params[2:])
    if cls is LSTM:
        np.testing.assert_array_equal(bias[U:2 * U], 1.0)
        bias = np.concatenate([bias[:U], bias[2 * U:]])
    np.testing.assert_array_equal(bias, 0.0)
    first = [p.copy() for p in layer.params]
    layer.init_params(np.random.RandomState(0))
    for a, b in zip(first, layer.params):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("layer", [SimpleRNN(3), LSTM(4, return_sequences=True), GRU(2),
                                   Bidirectional(LSTM(3)), Bidirectional(GRU(2, True), "ave")])
def test_config_roundtrip(layer):
    config = layer.get_config()
    json.dumps(config)
    clone = type(layer)(**config)
    assert clone.get_config() == config
    assert type(layer).from_config(config).get_config() == config
    assert repr(clone) == repr(layer)


def test_pickle_drops_workspaces():
    layer = Bidirectional(LSTM(3))
    build_layer(layer, (4, 2), 2)
    layer.forward(np.ones((2, 4, 2)))
    clone = pickle.loads(pickle.dumps(layer))
    assert clone.get_config() == layer.get_config()
    assert not any(k.startswith("_ws") for k in vars(clone.forward_layer))
    assert clone.backward_layer._reverse and not clone.forward_layer._reverse


# ---------------------------------------------------------------- bad arguments

@pytest.mark.parametrize("cls", CLASSES)
def test_bad_constructor_args(cls):
    with pytest.raises(ValueError, match="units"):
        cls(0)
    with pytest.raises(ValueError, match="units"):
        cls(-3)
    with pytest.raises(TypeError, match="units"):
        cls(2.5)
    with pytest.raises(TypeError, match="units"):
        cls(True)
    with pytest.raises(TypeError, match="return_sequences"):
        cls(3, return_sequences="yes")


@pytest.mark.parametrize("cls", CLASSES)
@pytest.mark.parametrize("shape", [(5,), (5, 3, 2), (), (0, 3), (4, 0)])
def test_bad_input_shape(cls, shape):
    with pytest.raises(ValueError):
        cls(3).build(shape, np.float64)


def test_bad_input_shape_types():
    with pytest.raises(TypeError):
        LSTM(3).build((5.0, 3), np.float64)
    with pytest.raises(TypeError):
        LSTM(3).build(7, np.float64)
    with pytest.raises(ValueError):
        LSTM(3).build((5, 3), np.int32)
    with pytest.raises(ValueError):
        Bidirectional(GRU(2)).build((5,), np.float64)


def test_bad_bidirectional_args():
    with pytest.raises(TypeError):
        Bidirectional("lstm")
    with pytest.raises(TypeError):
        Bidirectional(Bidirectional(LSTM(2)))
    with pytest.raises(ValueError, match="merge"):
        Bidirectional(LSTM(2), merge="max")
    with pytest.raises(ValueError):
        Bidirectional({"class_name": "Dense", "config": {}})
    with pytest.raises(ValueError):
        Bidirectional({"config": {"units": 2}})
