"""Conv2D / Conv1D layers: references, gradient checks, torch, chunking, shape fuzzing."""
import json

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st, HealthCheck

from nnc.layers import Conv2D, Conv1D
from tests._harness import build_layer, check_layer_gradients
from tests import _reference_conv as ref
from tests._reference_conv import assert_close

# (C, H, W, filters, kernel, stride, padding)
LAYER_CASES = [
    (1, 5, 5, 1, 3, 1, 0),
    (1, 8, 7, 3, (3, 2), (1, 2), (1, 0)),
    (4, 9, 8, 2, 3, 2, 1),
    (2, 7, 6, 3, (2, 3), (3, 1), 2),
    (4, 5, 5, 4, 5, 3, 2),
    (1, 1, 11, 2, (1, 4), (1, 3), (0, 1)),
    (3, 6, 7, 2, (2, 3), 1, 0),             # stride 1, unpadded, C KH KW > 2 F: the grid path
    (2, 6, 7, 5, (2, 2), 1, 0),             # stride 1, unpadded, C KH KW <= 2 F: general path
]


def _run_layer(layer, X, dY):
    Y = np.array(layer.forward(X, True), copy=True)
    dX = layer.backward(dY.copy(), True)
    return Y, np.array(dX, copy=True), [g.copy() for g in layer.grads]


@pytest.mark.parametrize("case", LAYER_CASES)
@pytest.mark.parametrize("n", [1, 4])
def test_conv2d_layer_matches_reference(case, n, dtype, rng):
    C, H, W, F, k, s, p = case
    layer = Conv2D(F, k, stride=s, padding=p)
    build_layer(layer, (C, H, W), n, dtype)
    X = rng.standard_normal((n, C, H, W)).astype(dtype)
    Wt, b = layer.get_weights()
    stride, pad = layer.stride, layer.padding
    Yr = ref.conv2d_forward(X, Wt, b, stride, pad)
    assert layer.output_shape == Yr.shape[1:]
    dY = rng.standard_normal(Yr.shape).astype(dtype)
    Y, dX, (dW, db) = _run_layer(layer, X, dY)
    assert Y.dtype == dtype and dX.dtype == dtype and dW.dtype == dtype
    rdX, rdW, rdb = ref.conv2d_backward(X, Wt, dY, stride, pad)
    assert_close(Y, Yr, dtype)
    assert_close(dX, rdX, dtype)
    assert_close(dW, rdW, dtype)
    assert_close(db, rdb, dtype)
    # a shorter batch uses leading rows of the workspaces; first layer skips dX
    if n > 1:
        Y1 = layer.forward(X[:1], True)
        assert_close(Y1, Yr[:1], dtype)
        assert layer.backward(dY[:1].copy(), False) is None
        rdX1, rdW1, rdb1 = ref.conv2d_backward(X[:1], Wt, dY[:1], stride, pad)
        assert_close(layer.grads[0], rdW1, dtype)
        assert_close(layer.grads[1], rdb1, dtype)


@pytest.mark.parametrize("case", LAYER_CASES)
def test_conv2d_gradients(case):
    C, H, W, F, k, s, p = case
    err_x, err_p = check_layer_gradients(Conv2D(F, k, stride=s, padding=p), (C, H, W), n=3)
    assert err_x < 1e-6 and err_p < 1e-6


@pytest.mark.parametrize("C,L,F,k,s,p",
                         [(1, 9, 2, 3, 1, 0), (3, 10, 4, 4, 2, 1), (2, 5, 1, 5, 3, 2)])
def test_conv1d_gradients_and_reference(C, L, F, k, s, p, dtype, rng):
    err_x, err_p = check_layer_gradients(Conv1D(F, k, stride=s, padding=p), (C, L), n=2)
    assert err_x < 1e-6 and err_p < 1e-6
    layer = Conv1D(F, k, stride=s, padding=p)
    build_layer(layer, (C, L), 3, dtype)
    Wt, b = layer.get_weights()
    assert Wt.shape == (F, C, k)
    X = rng.standard_normal((3, C, L)).astype(dtype)
    Yr = ref.conv2d_forward(X[:, :, None], Wt[:, :, None], b, (1, s), (0, p))[:, :, 0]
    dY = rng.standard_normal(Yr.shape).astype(dtype)
    Y, dX, (dW, db) = _run_layer(layer, X, dY)
    rdX, rdW, rdb = ref.conv2d_backward(X[:, :, None], Wt[:, :, None], dY[:, :, None],
                                        (1, s), (0, p))
    assert Y.shape == (3, F, (L + 2 * p - k) // s + 1) and Y.dtype == dtype
    assert_close(Y, Yr, dtype)
    assert_close(dX, rdX[:, :, 0], dtype)
    assert_close(dW, rdW[:, :, 0], dtype)
    assert_close(db, rdb, dtype)


def test_conv2d_1xk_kernel_on_1x1xL_input(rng):
    layer = Conv2D(3, (1, 4), stride=(1, 2))
    build_layer(layer, (1, 1, 13), 2)
    assert layer.output_shape == (3, 1, 5)
    err_x, err_p = check_layer_gradients(Conv2D(3, (1, 4), stride=(1, 2)), (1, 1, 13), n=2)
    assert err_x < 1e-6 and err_p < 1e-6


@pytest.mark.parametrize("budget_samples", [1, 2])
@pytest.mark.parametrize("stride,padding", [((2, 1), 1), (1, 0)], ids=["general", "grid"])
def test_conv2d_chunked_workspace_matches_reference(budget_samples, stride, padding, monkeypatch,
                                                    dtype, rng):
    from nnc._kernels import _conv
    C, H, W, F = 2, 7, 6, 2
    layer = Conv2D(F, 3, stride=stride, padding=padding)
    layer.build((C, H, W), dtype)
    cols, tmp = _conv.conv2d_workspace_shapes(1, C, H, W, F, 3, 3, *layer.stride, *layer.padding)
    per_sample = (np.prod(cols) + np.prod(tmp)) * np.dtype(dtype).itemsize
    monkeypatch.setattr(Conv2D, "workspace_bytes", int(budget_samples * per_sample))
    n = 5
    build_layer(layer, (C, H, W), n, dtype)
    assert layer._chunk == budget_samples and layer._ws_cols.shape[0] == budget_samples
    assert (layer._ws_tmp.shape[2] > 0) == (padding == 0)      # which path is exercised
    X = rng.standard_normal((n, C, H, W)).astype(dtype)
    Wt, b = layer.get_weights()
    dY = rng.standard_normal((n,) + layer.output_shape).astype(dtype)
    Y, dX, (dW, db) = _run_layer(layer, X, dY)
    S, P = layer.stride, layer.padding
    rdX, rdW, rdb = ref.conv2d_backward(X, Wt, dY, S, P)
    assert_close(Y, ref.conv2d_forward(X, Wt, b, S, P), dtype)
    assert_close(dX, rdX, dtype)
    assert_close(dW, rdW, dtype)
    assert_close(db, rdb, dtype)


def test_conv2d_default_budget_keeps_columns_for_backward():
    layer = Conv2D(8, 3)
    build_layer(layer, (1, 28, 28), 64, np.float32)
    assert layer._chunk == 64
    layer.forward(np.zeros((64, 1, 28, 28), np.float32), True)
    assert layer._cache_cols_ready


def test_conv2d_glorot_init():
    layer = Conv2D(5, (3, 2))
    build_layer(layer, (4, 6, 6), 1)
    layer.init_params(np.random.RandomState(0))
    fan_in, fan_out = 4 * 6, 5 * 6
    bound = np.sqrt(6 / (fan_in + fan_out))
    expected = np.random.RandomState(0).uniform(-bound, bound, (5, 4, 3, 2))
    np.testing.assert_array_equal(layer.params[0], expected)
    np.testing.assert_array_equal(layer.params[1], 0)


def test_conv_param_specs():
    layer = Conv2D(5, (3, 2))
    layer.build((4, 6, 6), np.float64)
    specs = layer.param_specs()
    assert [(s.name, tuple(s.shape), s.decay) for s in specs] == [
        ("W", (5, 4, 3, 2), True), ("b", (5,), False)]
    layer = Conv1D(5, 3)
    layer.build((4, 6), np.float64)
    assert [tuple(s.shape) for s in layer.param_specs()] == [(5, 4, 3), (5,)]


@pytest.mark.parametrize("layer", [Conv2D(4, (3, 2), stride=2, padding=(1, 0)), Conv1D(3, 5, 2, 1)],
                         ids=["Conv2D", "Conv1D"])
def test_conv_config_round_trip(layer):
    config = json.loads(json.dumps(layer.get_config()))
    clone = type(layer)(**config)
    assert clone.get_config() == layer.get_config()
    assert repr(clone) == repr(layer)


def test_conv_constructor_validation():
    with pytest.raises(ValueError, match="filters"):
        Conv2D(0, 3)
    with pytest.raises(TypeError, match="filters"):
        Conv2D(2.0, 3)
    with pytest.raises(ValueError, match="kernel_size"):
        Conv2D(2, (3, 0))
    with pytest.raises(TypeError, match="kernel_size"):
        Conv2D(2, (3, 3, 3))
    with pytest.raises(ValueError, match="stride"):
        Conv2D(2, 3, stride=0)
    with pytest.raises(ValueError, match="padding"):
        Conv2D(2, 3, padding=-1)
    with pytest.raises(TypeError, match="kernel_size"):
        Conv1D(2, (3, 3))
    with pytest.raises(ValueError, match="stride"):
        Conv1D(2, 3, stride=0)
    with pytest.raises(ValueError, match="padding"):
        Conv1D(2, 3, padding=-2)
    with pytest.raises(TypeError, match="padding"):
        Conv1D(2, 3, padding=1.5)


def test_conv_build_validation():
    with pytest.raises(ValueError, match="larger than the padded input"):
        Conv2D(2, 6).build((1, 5, 5), np.float64)
    with pytest.raises(ValueError, match="larger than the padded input"):
        Conv2D(2, (3, 8), padding=(0, 1)).build((1, 5, 5), np.float64)
    Conv2D(2, 7, padding=1).build((1, 5, 5), np.float64)  # fits once padded
    with pytest.raises(ValueError, match=r"\(C, H, W\)"):
        Conv2D(2, 3).build((5, 5), np.float64)
    with pytest.raises(ValueError, match=r"\(C, L\)"):
        Conv1D(2, 3).build((1, 5, 5), np.float64)
    with pytest.raises(ValueError, match="larger than the padded input"):
        Conv1D(2, 9, padding=1).build((3, 6), np.float64)


# ------------------------------------------------------------------------------------ torch

def _assert_matches_torch(torch, conv, layer, X, rng, **conv_args):
    """Y, dX, dW, db of the built float64 layer against torch's functional conv on its weights."""
    Wt, b = layer.get_weights()
    tX, tW, tb = (torch.tensor(a, requires_grad=True) for a in (X, Wt, b))
    tY = conv(tX, tW, tb, **conv_args)
    dY = rng.standard_normal(tuple(tY.shape))
    tY.backward(torch.tensor(dY))
    Y, dX, (dW, db) = _run_layer(layer, X, dY)
    for got, want in ((Y, tY.detach()), (dX, tX.grad), (dW, tW.grad), (db, tb.grad)):
        np.testing.assert_allclose(got, want.numpy(), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("case", LAYER_CASES)
def test_conv2d_matches_torch(case, rng):
    torch = pytest.importorskip("torch")
    C, H, W, F, k, s, p = case
    layer = Conv2D(F, k, stride=s, padding=p)
    build_layer(layer, (C, H, W), 3)
    X = rng.standard_normal((3, C, H, W))
    _assert_matches_torch(torch, torch.nn.functional.conv2d, layer, X, rng,
                          stride=layer.stride, padding=layer.padding)


@pytest.mark.parametrize("C,L,F,k,s,p", [(1, 9, 2, 3, 1, 0), (3, 10, 4, 4, 2, 1)])
def test_conv1d_matches_torch(C, L, F, k, s, p, rng):
    torch = pytest.importorskip("torch")
    layer = Conv1D(F, k, stride=s, padding=p)
    build_layer(layer, (C, L), 2)
    X = rng.standard_normal((2, C, L))
    _assert_matches_torch(torch, torch.nn.functional.conv1d, layer, X, rng,
                          stride=s, padding=p)


# ------------------------------------------------------------------------------------ fuzzing

@settings(max_examples=30, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(n=st.integers(1, 3), C=st.integers(1, 3), H=st.integers(1, 9), W=st.integers(1, 9),
       F=st.integers(1, 3), KH=st.integers(1, 5), KW=st.integers(1, 5), SH=st.integers(0, 3),
       SW=st.integers(1, 3), PH=st.integers(0, 2), PW=st.integers(0, 2),
       float32=st.booleans(), data=st.data())
def test_conv2d_shape_fuzz(n, C, H, W, F, KH, KW, SH, SW, PH, PW, float32, data):
    dtype = np.float32 if float32 else np.float64
    legal = SH >= 1 and KH <= H + 2 * PH and KW <= W + 2 * PW
    if not legal:
        with pytest.raises(ValueError):
            layer = Conv2D(F, (KH, KW), stride=(SH, SW), padding=(PH, PW))
            layer.build((C, H, W), dtype)
        return
    layer = Conv2D(F, (KH, KW), stride=(SH, SW), padding=(PH, PW))
    build_layer(layer, (C, H, W), n, dtype)
    rng = np.random.RandomState(data.draw(st.integers(0, 2**16)))
    X = rng.standard_normal((n, C, H, W)).astype(dtype)
    Wt, b = layer.get_weights()
    Yr = ref.conv2d_forward(X, Wt, b, (SH, SW), (PH, PW))
    dY = rng.standard_normal(Yr.shape).astype(dtype)
    Y, dX, (dW, db) = _run_layer(layer, X, dY)
    rdX, rdW, rdb = ref.conv2d_backward(X, Wt, dY, (SH, SW), (PH, PW))
    assert_close(Y, Yr, dtype)
    assert_close(dX, rdX, dtype)
    assert_close(dW, rdW, dtype)
    assert_close(db, rdb, dtype)


@settings(max_examples=20, deadline=None)
@given(n=st.integers(1, 3), C=st.integers(1, 4), H=st.integers(1, 9), W=st.integers(1, 9),
       F=st.integers(1, 8), KH=st.integers(1, 4), KW=st.integers(1, 4), seed=st.integers(0, 2**16))
def test_conv2d_stride1_unpadded_fuzz(n, C, H, W, F, KH, KW, seed):
    # the full-width-grid path (C KH KW > 2 F) and the general one, at stride 1 without padding
    if KH > H or KW > W:
        with pytest.raises(ValueError):
            Conv2D(F, (KH, KW)).build((C, H, W), np.float64)
        return
    layer = Conv2D(F, (KH, KW))
    build_layer(layer, (C, H, W), n)
    rng = np.random.RandomState(seed)
    X = rng.standard_normal((n, C, H, W))
    Wt, b = layer.get_weights()
    dY = rng.standard_normal((n,) + layer.output_shape)
    Y, dX, (dW, db) = _run_layer(layer, X, dY)
    rdX, rdW, rdb = ref.conv2d_backward(X, Wt, dY)
    assert_close(Y, ref.conv2d_forward(X, Wt, b), np.float64)
    assert_close(dX, rdX, np.float64)
    assert_close(dW, rdW, np.float64)
    assert_close(db, rdb, np.float64)


# ------------------------------------------------------------------------------------ network

def test_small_cnn_learns_and_pickles():
    import pickle
    import nnc
    from nnc.layers import ReLU, MaxPool2D, AvgPool2D, Flatten, Dense, Dropout
    from nnc.optimizers import Adam
    rng = np.random.RandomState(0)
    n = 256
    X = (rng.rand(n, 1, 12, 12) * 0.1).astype(np.float32)
    y = rng.randint(0, 2, n)
    for i in range(n):                      # a bright blob on the left (0) or the right (1)
        c = 2 if y[i] == 0 else 8
        X[i, 0, 4:8, c:c + 3] += 1
    net = nnc.Sequential([Conv2D(4, 3, padding=1), ReLU(), MaxPool2D(2), Dropout(0.2),
                          Conv2D(8, 3), ReLU(), AvgPool2D(2), Flatten(), Dense(2)],
                         loss="softmax_cross_entropy", input_shape=(1, 12, 12), dtype="float32",
                         random_state=0)
    opt = Adam(1e-2)
    Xv, yv = net._check_X(X), net._check_y(y, n)
    losses = [net.train_epoch(Xv, yv, opt, batch_size=32, indices=rng.permutation(n))
              for _ in range(4)]
    assert losses[-1] < 0.1 * losses[0]
    P = net.predict(X)
    assert (P.argmax(1) == y).mean() > 0.95
    clone = pickle.loads(pickle.dumps(net))
    np.testing.assert_array_equal(clone.predict(X), P)


def test_conv1d_network_gradients():
    import nnc
    from nnc.layers import Tanh, Flatten, Dense
    net = nnc.Sequential([Conv1D(3, 3, padding=1), Tanh(), Conv1D(2, 2, stride=2), Flatten(),
                          Dense(1)], loss="mse", input_shape=(2, 9), random_state=0)
    rng = np.random.RandomState(1)
    X, y = rng.standard_normal((5, 2, 9)), rng.standard_normal((5, 1))
    assert nnc.check_gradients(net, X, y) < 1e-6
