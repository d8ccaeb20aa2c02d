"""Pooling layers (MaxPool2D / AvgPool2D with padding, MaxPool1D / AvgPool1D, GlobalAvgPool /
GlobalMaxPool, also with a sequence mask): references, gradient checks, torch, shape fuzzing,
configs and errors."""
import json

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from nnc import Sequential
from nnc._kernels import _pool
from nnc.layers import (AvgPool1D, AvgPool2D, Dense, Embedding, GlobalAvgPool, GlobalMaxPool,
                        MaxPool1D, MaxPool2D, PositionalEmbedding, TransformerEncoderBlock)
from tests._harness import build_layer, check_layer_gradients
from tests import _reference_conv as ref
from tests._reference_conv import assert_close

# (C, H, W, pool_size, stride)
POOL_CASES = [
    (1, 4, 4, 2, None),
    (3, 7, 5, 2, None),          # odd sizes: floor
    (2, 7, 8, 3, 2),             # overlapping windows
    (1, 9, 7, (2, 3), (3, 1)),
    (4, 5, 5, 5, 1),             # global pooling
    (1, 1, 9, (1, 3), (1, 2)),
]


def _no_ties(n, shape, dtype, rng):
    size = n * int(np.prod(shape))
    return (rng.permutation(size).reshape((n,) + shape) / size - 0.5).astype(dtype)


def _pair(v):
    return (v, v) if isinstance(v, int) else tuple(v)


@pytest.mark.parametrize("case", POOL_CASES)
@pytest.mark.parametrize("n", [1, 3])
def test_maxpool_layer_matches_reference(case, n, dtype, rng):
    C, H, W, pool, stride = case
    layer = MaxPool2D(pool, stride)
    build_layer(layer, (C, H, W), n, dtype)
    X = _no_ties(n, (C, H, W), dtype, rng)
    P, S = _pair(pool), _pair(stride if stride is not None else pool)
    Yr, _ = ref.maxpool2d_forward(X, P, S)
    Y = layer.forward(X, True)
    assert Y.dtype == dtype and layer.output_shape == Yr.shape[1:]
    np.testing.assert_array_equal(Y, Yr)
    dY = rng.standard_normal(Y.shape).astype(dtype)
    dX = layer.backward(dY.copy(), True)
    assert dX.dtype == dtype
    assert_close(dX, ref.maxpool2d_backward(dY, X, P, S), dtype)
    assert layer.backward(dY.copy(), False) is None


@pytest.mark.parametrize("case", POOL_CASES)
@pytest.mark.parametrize("n", [1, 3])
def test_avgpool_layer_matches_reference(case, n, dtype, rng):
    C, H, W, pool, stride = case
    layer = AvgPool2D(pool, stride)
    build_layer(layer, (C, H, W), n, dtype)
    X = rng.standard_normal((n, C, H, W)).astype(dtype)
    P, S = _pair(pool), _pair(stride if stride is not None else pool)
    Y = layer.forward(X, True)
    assert Y.dtype == dtype
    assert_close(Y, ref.avgpool2d_forward(X, P, S), dtype)
    dY = rng.standard_normal(Y.shape).astype(dtype)
    dX = layer.backward(dY.copy(), True)
    assert dX.dtype == dtype
    assert_close(dX, ref.avgpool2d_backward(dY, X.shape, P, S), dtype)


@pytest.mark.parametrize("case", POOL_CASES)
def test_pool_gradients(case):
    C, H, W, pool, stride = case
    rng = np.random.RandomState(5)
    X = _no_ties(3, (C, H, W), np.float64, rng)  # distinct values at least 1/size apart
    err_x, _ = check_layer_gradients(MaxPool2D(pool, stride), (C, H, W), n=3, X=X, eps=1e-7)
    assert err_x < 1e-6
    err_x, _ = check_layer_gradients(AvgPool2D(pool, stride), (C, H, W), n=3)
    assert err_x < 1e-6


@pytest.mark.parametrize("case", POOL_CASES)
def test_pools_match_torch(case, rng):
    torch = pytest.importorskip("torch")
    F_ = torch.nn.functional
    C, H, W, pool, stride = case
    X = _no_ties(2, (C, H, W), np.float64, rng)
    for cls, fn in [(MaxPool2D, F_.max_pool2d), (AvgPool2D, F_.avg_pool2d)]:
        layer = cls(pool, stride)
        build_layer(layer, (C, H, W), 2)
        tX = torch.tensor(X, requires_grad=True)
        tY = fn(tX, layer.pool_size, layer.stride)
        dY = rng.standard_normal(tuple(tY.shape))
        tY.backward(torch.tensor(dY))
        Y = np.array(layer.forward(X, True), copy=True)
        dX = layer.backward(dY.copy(), True)
        np.testing.assert_allclose(Y, tY.detach().numpy(), rtol=1e-6, atol=1e-6)
        np.testing.assert_allclose(dX, tX.grad.numpy(), rtol=1e-6, atol=1e-6)


def test_pool_constructor_and_build_validation():
    with pytest.raises(ValueError, match="pool_size"):
        MaxPool2D(0)
    with pytest.raises(TypeError, match="pool_size"):
        MaxPool2D(2.0)
    with pytest.raises(ValueError, match="stride"):
        AvgPool2D(2, stride=(1, 0))
    with pytest.raises(ValueError, match="larger than the input"):
        MaxPool2D(3).build((1, 2, 5), np.float64)
    with pytest.raises(ValueError, match="larger than the input"):
        AvgPool2D((1, 6)).build((1, 2, 5), np.float64)
    with pytest.raises(ValueError, match=r"\(C, H, W\)"):
        MaxPool2D(2).build((4, 4), np.float64)


@pytest.mark.parametrize("layer", [MaxPool2D(2), MaxPool2D((3, 2), 1), AvgPool2D(3, (1, 2))],
                         ids=repr)
def test_pool_config_round_trip(layer):
    config = json.loads(json.dumps(layer.get_config()))
    clone = type(layer)(**config)
    assert clone.get_config() == layer.get_config()
    assert clone.pool_size == layer.pool_size and clone.stride == layer.stride


def test_pool_default_stride_is_pool_size():
    layer = MaxPool2D((2, 3))
    assert layer.stride == (2, 3)
    assert layer.get_config() == {"pool_size": [2, 3], "stride": None, "padding": [0, 0]}
    # configs written before padding existed still load
    assert MaxPool2D(**{"pool_size": [2, 3], "stride": None}).get_config() == layer.get_config()


@settings(max_examples=40, deadline=None)
@given(n=st.integers(1, 3), C=st.integers(1, 3), H=st.integers(1, 9), W=st.integers(1, 9),
       KH=st.integers(1, 5), KW=st.integers(1, 5), SH=st.integers(0, 3), SW=st.integers(1, 3),
       PH=st.integers(0, 2), PW=st.integers(0, 2), use_max=st.booleans(),
       include_pad=st.booleans(), float32=st.booleans(), seed=st.integers(0, 2**16))
def test_pool_shape_fuzz(n, C, H, W, KH, KW, SH, SW, PH, PW, use_max, include_pad, float32,
                         seed):
    dtype = np.float32 if float32 else np.float64
    extra = {} if use_max else {"count_include_pad": include_pad}
    cls = MaxPool2D if use_max else AvgPool2D
    if SH < 1 or PH > KH // 2 or PW > KW // 2 or KH > H + 2 * PH or KW > W + 2 * PW:
        with pytest.raises(ValueError):
            cls((KH, KW), (SH, SW), (PH, PW), **extra).build((C, H, W), dtype)
        return
    layer = cls((KH, KW), (SH, SW), (PH, PW), **extra)
    build_layer(layer, (C, H, W), n, dtype)
    rng = np.random.RandomState(seed)
    X = _no_ties(n, (C, H, W), dtype, rng)
    Y = layer.forward(X, True)
    dY = rng.standard_normal(Y.shape).astype(dtype)
    dX = layer.backward(dY.copy(), True)
    P, S, pad = (KH, KW), (SH, SW), (PH, PW)
    if use_max:
        Yr, _ = ref.maxpool2d_forward(X, P, S, pad)
        rdX = ref.maxpool2d_backward(dY, X, P, S, pad)
    else:
        Yr = ref.avgpool2d_forward(X, P, S, pad, include_pad)
        rdX = ref.avgpool2d_backward(dY, X.shape, P, S, padding=pad,
                                     count_include_pad=include_pad)
    assert_close(Y, Yr, dtype)
    assert_close(dX, rdX, dtype)


# ------------------------------------------------------------------------------------ padding

# (C, H, W, pool, stride, padding)
PAD_CASES = [
    (2, 5, 5, 2, None, 1),
    (1, 7, 6, 3, 2, 1),
    (2, 6, 7, (2, 4), (1, 3), (1, 2)),
    (1, 1, 5, (1, 3), 1, (0, 1)),
    (3, 4, 4, 4, 4, 2),                  # windows mostly padding
]


@pytest.mark.parametrize("case", PAD_CASES)
@pytest.mark.parametrize("include_pad", [True, False])
def test_padded_pools_match_reference_and_torch(case, include_pad, dtype, rng):
    C, H, W, pool, stride, padding = case
    P, S, pad = _pair(pool), _pair(stride if stride is not None else pool), _pair(padding)
    X = _no_ties(3, (C, H, W), dtype, rng)
    mx, av = MaxPool2D(pool, stride, padding), AvgPool2D(pool, stride, padding, include_pad)
    for layer in (mx, av):
        build_layer(layer, (C, H, W), 3, dtype)
    Ym, Ya = np.array(mx.forward(X, True)), np.array(av.forward(X, True))
    dY = rng.standard_normal(Ym.shape).astype(dtype)
    dXm, dXa = mx.backward(dY.copy(), True), av.backward(dY.copy(), True)
    np.testing.assert_array_equal(Ym, ref.maxpool2d_forward(X, P, S, pad)[0])
    assert_close(dXm, ref.maxpool2d_backward(dY, X, P, S, pad), dtype)
    assert_close(Ya, ref.avgpool2d_forward(X, P, S, pad, include_pad), dtype)
    assert_close(dXa, ref.avgpool2d_backward(dY, X.shape, P, S, padding=pad,
                                             count_include_pad=include_pad), dtype)
    torch = pytest.importorskip("torch")
    F_ = torch.nn.functional
    for Y, dX, fn in [(Ym, dXm, lambda t: F_.max_pool2d(t, P, S, pad)),
                      (Ya, dXa, lambda t: F_.avg_pool2d(t, P, S, pad,
                                                        count_include_pad=include_pad))]:
        tX = torch.tensor(X.astype(np.float64), requires_grad=True)
        tY = fn(tX)
        tY.backward(torch.tensor(dY.astype(np.float64)))
        assert_close(Y, tY.detach().numpy(), dtype)
        assert_close(dX, tX.grad.numpy(), dtype)


@pytest.mark.parametrize("case", PAD_CASES)
def test_padded_pool_gradients(case):
    C, H, W, pool, stride, padding = case
    X = _no_ties(3, (C, H, W), np.float64, np.random.RandomState(1))
    for layer in (MaxPool2D(pool, stride, padding), AvgPool2D(pool, stride, padding),
                  AvgPool2D(pool, stride, padding, count_include_pad=False)):
        err_x, _ = check_layer_gradients(layer, (C, H, W), n=3, X=X, eps=1e-7)
        assert err_x < 1e-6, layer


def test_padding_validation():
    with pytest.raises(ValueError, match="at most half the pool size"):
        MaxPool2D(2, padding=2)
    with pytest.raises(ValueError, match="at most half the pool size"):
        AvgPool2D((3, 1), padding=(1, 1))
    with pytest.raises(ValueError, match="padding must be >= 0"):
        MaxPool2D(3, padding=-1)
    with pytest.raises(TypeError, match="padding"):
        MaxPool2D(3, padding=1.0)
    with pytest.raises(TypeError, match="count_include_pad"):
        AvgPool2D(3, count_include_pad=None)
    with pytest.raises(ValueError, match="padded by 1"):
        MaxPool2D(5, padding=1).build((1, 2, 9), np.float64)
    assert MaxPool2D(5, 1, padding=2).build((1, 1, 9), np.float64) == (1, 1, 9)   # "same"


# ------------------------------------------------------------------------------------ 1-D pools

# (C, L, pool, stride, padding)
CASES_1D = [(2, 9, 2, None, 0), (3, 10, 3, 2, 1), (1, 7, 4, 1, 2), (2, 5, 5, 3, 0), (1, 1, 1, 1, 0)]


@pytest.mark.parametrize("case", CASES_1D)
@pytest.mark.parametrize("include_pad", [True, False])
def test_1d_pools_match_reference_torch_and_gradients(case, include_pad, dtype, rng):
    C, L, k, s, p = case
    X = _no_ties(2, (C, L), dtype, rng)
    stride = k if s is None else s
    mx, av = MaxPool1D(k, s, p), AvgPool1D(k, s, p, include_pad)
    for layer in (mx, av):
        build_layer(layer, (C, L), 2, dtype)
        assert layer.output_shape == (C, (L + 2 * p - k) // stride + 1)
    Ym, Ya = np.array(mx.forward(X, True)), np.array(av.forward(X, True))
    dY = rng.standard_normal(Ym.shape).astype(dtype)
    dXm, dXa = mx.backward(dY.copy(), True), av.backward(dY.copy(), True)
    assert Ym.shape == Ya.shape == (2,) + mx.output_shape and dXm.shape == X.shape
    X4, dY4 = X[:, :, None], dY[:, :, None]
    P, S, pad = (1, k), (1, stride), (0, p)
    np.testing.assert_array_equal(Ym, ref.maxpool2d_forward(X4, P, S, pad)[0][:, :, 0])
    assert_close(dXm, ref.maxpool2d_backward(dY4, X4, P, S, pad)[:, :, 0], dtype)
    assert_close(Ya, ref.avgpool2d_forward(X4, P, S, pad, include_pad)[:, :, 0], dtype)
    assert_close(dXa, ref.avgpool2d_backward(dY4, X4.shape, P, S, padding=pad,
                                             count_include_pad=include_pad)[:, :, 0], dtype)
    if dtype == np.float64:
        for layer in (MaxPool1D(k, s, p), AvgPool1D(k, s, p, include_pad)):
            err_x, _ = check_layer_gradients(layer, (C, L), n=2, X=X, eps=1e-7)
            assert err_x < 1e-6
    torch = pytest.importorskip("torch")
    F_ = torch.nn.functional
    for Y, dX, fn in [(Ym, dXm, lambda t: F_.max_pool1d(t, k, stride, p)),
                      (Ya, dXa, lambda t: F_.avg_pool1d(t, k, stride, p,
                                                        count_include_pad=include_pad))]:
        tX = torch.tensor(X.astype(np.float64), requires_grad=True)
        fn(tX).backward(torch.tensor(dY.astype(np.float64)))
        assert_close(Y, fn(torch.tensor(X.astype(np.float64))).numpy(), dtype)
        assert_close(dX, tX.grad.numpy(), dtype)


def test_1d_pool_config_and_errors():
    layer = AvgPool1D(3, padding=1, count_include_pad=False)
    config = json.loads(json.dumps(layer.get_config()))
    assert config == {"pool_size": 3, "stride": None, "padding": 1, "count_include_pad": False}
    assert AvgPool1D(**config).get_config() == config
    assert MaxPool1D(4, 2).get_config() == {"pool_size": 4, "stride": 2, "padding": 0}
    with pytest.raises(TypeError, match="pool_size"):
        MaxPool1D((2, 2))
    with pytest.raises(ValueError, match="stride"):
        MaxPool1D(2, 0)
    with pytest.raises(ValueError, match="at most half"):
        MaxPool1D(3, padding=2)
    with pytest.raises(TypeError, match="padding"):
        MaxPool1D(3, padding=(1, 1))
    with pytest.raises(ValueError, match=r"\(C, L\) samples"):
        MaxPool1D(2).build((2, 3, 4), np.float64)
    with pytest.raises(ValueError, match="larger than the input"):
        AvgPool1D(5).build((2, 4), np.float64)


# ------------------------------------------------------------------------------------ global pools

# (sample shape, data_format, channels_last)
GLOBAL_CASES = [((3, 4, 5), None, False), ((3, 4, 5), "channels_last", True),
                ((4, 6), "channels_first", False), ((6, 4), "channels_last", True),
                ((2, 1), "channels_first", False), ((1, 3), "channels_last", True),
                ((2, 3, 2, 2), "channels_first", False)]


@pytest.mark.parametrize("case", GLOBAL_CASES)
@pytest.mark.parametrize("cls", [GlobalAvgPool, GlobalMaxPool])
def test_global_pools_match_reference_and_gradients(case, cls, dtype, rng):
    shape, fmt, last = case
    layer = cls(fmt)
    build_layer(layer, shape, 3, dtype)
    C = shape[-1] if last else shape[0]
    assert layer.output_shape == (C,)
    X = _no_ties(3, shape, dtype, rng)
    is_max = cls is GlobalMaxPool
    Y = layer.forward(X, True)
    assert Y.shape == (3, C) and Y.dtype == dtype
    assert_close(Y, ref.global_pool_forward(X, is_max, last)[0], dtype)
    dY = rng.standard_normal(Y.shape).astype(dtype)
    dX = layer.backward(dY.copy(), True)
    assert_close(dX, ref.global_pool_backward(dY, X, is_max, last), dtype)
    assert layer.backward(dY.copy(), False) is None
    if dtype == np.float64:
        err_x, _ = check_layer_gradients(cls(fmt), shape, n=3, X=X, eps=1e-7)
        assert err_x < 1e-6


@pytest.mark.parametrize("cls", [GlobalAvgPool, GlobalMaxPool])
def test_global_pools_match_torch(cls, rng):
    torch = pytest.importorskip("torch")
    op = torch.amax if cls is GlobalMaxPool else torch.mean
    for shape, fmt, dims in [((3, 4, 5), None, (2, 3)), ((6, 4), "channels_last", (1,)),
                             ((4, 6), "channels_first", (2,))]:
        layer = cls(fmt)
        build_layer(layer, shape, 2)
        X = _no_ties(2, shape, np.float64, rng)
        dY = rng.standard_normal((2, layer.output_shape[0]))
        tX = torch.tensor(X, requires_grad=True)
        tY = op(tX, dim=dims)
        tY.backward(torch.tensor(dY))
        np.testing.assert_allclose(layer.forward(X, True), tY.detach().numpy(), rtol=1e-13,
                                   atol=1e-15)
        np.testing.assert_allclose(layer.backward(dY.copy(), True), tX.grad.numpy(), rtol=1e-13,
                                   atol=1e-15)


def test_global_maxpool_ties_and_nan_follow_pytorch():
    layer = GlobalMaxPool("channels_last")
    build_layer(layer, (4, 2), 2)
    X = np.array([[[1.0, np.nan], [3.0, 2.0], [3.0, np.nan], [0.0, 5.0]],
                  [[2.0, 1.0], [2.0, 1.0], [1.0, 1.0], [2.0, 0.0]]])
    Y = layer.forward(X, True)
    assert Y[0, 0] == 3.0 and np.isnan(Y[0, 1]) and Y[1].tolist() == [2.0, 1.0]
    dX = layer.backward(np.ones((2, 2)), True)
    # first maximum wins a tie; the last NaN wins
    assert dX[0, :, 0].tolist() == [0, 1, 0, 0] and dX[0, :, 1].tolist() == [0, 0, 1, 0]
    assert dX[1, :, 0].tolist() == [1, 0, 0, 0] and dX[1, :, 1].tolist() == [1, 0, 0, 0]


def test_global_pool_data_format():
    with pytest.raises(ValueError, match=r"data_format='channels_last' pools the 6 positions"):
        GlobalAvgPool().build((6, 4), np.float64)
    with pytest.raises(ValueError, match="data_format must be"):
        GlobalMaxPool("NHWC")
    with pytest.raises(ValueError, match="channel axis and positions"):
        GlobalAvgPool("channels_last").build((5,), np.float64)
    assert GlobalAvgPool().build((3, 4, 5), np.float64) == (3,)
    assert GlobalAvgPool("channels_last").build((3, 4, 5), np.float64) == (5,)
    layer = GlobalMaxPool("channels_last")
    assert GlobalMaxPool(**json.loads(json.dumps(layer.get_config()))).get_config() == \
        {"data_format": "channels_last"}


# ------------------------------------------------------------------------- masked global pools
def _masks(n, T, seed=0):
    """(n, T) masks: a padded tail, padding inside, one sample all padding, one all real."""
    rng = np.random.RandomState(seed)
    mask = rng.rand(n, T) > 0.4
    mask[0] = np.arange(T) < 2
    mask[1] = False
    mask[2] = True
    return mask


@pytest.mark.parametrize("cls", [GlobalAvgPool, GlobalMaxPool])
@pytest.mark.parametrize("n", [3, 6])
def test_masked_global_pools_match_reference(cls, n, dtype, rng):
    T, F = 7, 5
    layer = cls("channels_last")
    build_layer(layer, (T, F), n, dtype)
    assert layer.takes_mask and not layer.keeps_mask
    X = _no_ties(n, (T, F), dtype, rng)
    mask = _masks(n, T)
    X[~mask] = np.nan if cls is GlobalMaxPool else np.inf   # padding never reaches the output
    is_max = cls is GlobalMaxPool
    layer.set_mask(mask)
    Y = layer.forward(X, True)
    Yr, _ = ref.masked_global_pool_forward(X, mask, is_max)
    assert Y.dtype == dtype and np.all(np.isfinite(Y))
    assert_close(Y, Yr, dtype)
    assert np.all(Y[1] == 0)                               # every position padded: 0
    dY = rng.standard_normal(Y.shape).astype(dtype)
    dX = layer.backward(dY.copy(), True)
    assert_close(dX, ref.masked_global_pool_backward(dY, X, mask, is_max), dtype)
    assert np.all(dX[~mask] == 0) and np.all(dX[1] == 0)
    # an all-real mask and no mask give the unmasked pool
    Xf = _no_ties(n, (T, F), dtype, rng)
    layer.set_mask(np.ones((n, T), bool))
    Y_all = layer.forward(Xf, True).copy()
    dX_all = layer.backward(dY.copy(), True).copy()
    layer.set_mask(None)
    np.testing.assert_array_equal(layer.forward(Xf, True), Y_all)
    np.testing.assert_array_equal(layer.backward(dY.copy(), True), dX_all)


@pytest.mark.parametrize("cls", [GlobalAvgPool, GlobalMaxPool])
def test_masked_global_pool_gradients(cls, rng):
    """float64 central differences through the masked pool (real positions: the mean / max
    gradient; padded ones and a fully padded sample: 0)."""
    n, T, F = 4, 6, 3
    layer = cls("channels_last")
    build_layer(layer, (T, F), n)
    X = _no_ties(n, (T, F), np.float64, rng)
    mask = _masks(n, T, 1)
    layer.set_mask(mask)
    R = rng.standard_normal((n, F))
    layer.forward(X, True)
    dX = layer.backward(R.copy(), True).copy()
    eps = 1e-6
    num = np.empty(X.size)
    for i in range(X.size):
        Xp, Xm = X.copy(), X.copy()
        Xp.flat[i] += eps
        Xm.flat[i] -= eps
        num[i] = (np.sum(layer.forward(Xp, True) * R)
                  - np.sum(layer.forward(Xm, True) * R)) / (2 * eps)
    np.testing.assert_allclose(dX.ravel(), num, rtol=1e-7, atol=1e-9)
    assert np.all(dX[~mask] == 0) and np.any(dX[mask] != 0)


def test_masked_global_pool_errors():
    layer = GlobalAvgPool("channels_last")
    with pytest.raises(RuntimeError, match="not built"):
        layer.set_mask(np.ones((2, 5), bool))
    assert not layer.takes_mask
    build_layer(layer, (5, 3), 2)
    with pytest.raises(ValueError, match=r"boolean array of shape \(n, 5\)"):
        layer.set_mask(np.ones((2, 4), bool))
    with pytest.raises(ValueError, match="boolean array"):
        layer.set_mask(np.ones((2, 5), np.uint8))
    layer.set_mask(np.ones((3, 5), bool))
    with pytest.raises(ValueError, match=r"the sequence mask has shape \(3, 5\)"):
        layer.forward(np.zeros((2, 5, 3)))
    for other, shape in ((GlobalMaxPool("channels_first"), (5, 3)),
                         (GlobalAvgPool("channels_last"), (2, 5, 3)), (GlobalAvgPool(), (2, 5, 3))):
        build_layer(other, shape, 2)
        assert not other.takes_mask
        with pytest.raises(TypeError, match="reads a sequence mask only on"):
            other.set_mask(np.ones((2, shape[0]), bool))
    # the kernels check their mask before touching memory
    X, Y = np.zeros((2, 5, 3)), np.empty((2, 3))
    arg = np.zeros((2, 3), np.intc)
    with pytest.raises(ValueError, match=r"mask has shape \(2, 4\), expected \(2, 5\)"):
        _pool.global_avgpool_forward(X, Y, True, 1, np.ones((2, 4), np.uint8))
    with pytest.raises(ValueError, match=r"mask has shape \(1, 5\)"):
        _pool.global_maxpool_backward(Y, arg, X, True, 1, np.ones((1, 5), np.uint8))
    with pytest.raises(ValueError, match="needs channels_last"):
        _pool.global_maxpool_forward(np.zeros((2, 3, 5)), Y, arg, False, 1,
                                     np.ones((2, 5), np.uint8))
    with pytest.raises(ValueError, match="dtype mismatch"):
        _pool.global_avgpool_backward(Y, X, True, 1, np.ones((2, 5), np.int32))
    bad = np.full((2, 3), 5, np.intc)
    with pytest.raises(ValueError, match=r"argmax entries outside \[0, 5\)"):
        _pool.global_maxpool_backward(Y, bad, X, True, 1, np.ones((2, 5), np.uint8))


def _text_net(T, pool, padding_idx=0, dtype="float64"):
    return Sequential([Embedding(10, 8, padding_idx=padding_idx), PositionalEmbedding(12, 8),
                       TransformerEncoderBlock(8, 2, 16), pool, Dense(3)],
                      loss="softmax_cross_entropy", input_shape=(T,), dtype=dtype,
                      random_state=0)


@pytest.mark.parametrize("cls", [GlobalAvgPool, GlobalMaxPool])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_padding_after_a_sequence_does_not_change_its_prediction(cls, dtype):
    """Embedding(padding_idx) -> positions -> transformer -> masked pool: a sequence's prediction
    is the same however much padding follows it (and in a batch of other lengths)."""
    rng = np.random.RandomState(0)
    seqs = [rng.randint(1, 10, L_) for L_ in (1, 3, 4, 2)]
    tol = 1e-12 if dtype == "float64" else 2e-6
    base = _text_net(4, cls("channels_last"), dtype=dtype)
    want = None
    for T in (4, 5, 9, 12):
        net = _text_net(T, cls("channels_last"), dtype=dtype)
        net.set_weights(base.get_weights())
        X = np.zeros((len(seqs), T), np.int64)
        for i, s in enumerate(seqs):
            X[i, :s.size] = s
        got = net.predict(X)
        alone = np.vstack([net.predict(X[i:i + 1]) for i in range(len(seqs))])
        np.testing.assert_allclose(got, alone, rtol=tol, atol=tol)
        if want is None:
            want = got
        np.testing.assert_allclose(got, want, rtol=tol, atol=tol)
        # an all-padding row: the pool gives 0, the prediction is softmax(b) of the last Dense
        Xp = np.zeros((1, T), np.int64)
        b = net.layers[-1].get_weights()[1]
        np.testing.assert_allclose(net.predict(Xp)[0], np.exp(b) / np.exp(b).sum(), rtol=tol)
    # without the mask (no padding_idx) the padding changes the answer
    plain = [_text_net(T, cls("channels_last"), padding_idx=None, dtype=dtype) for T in (4, 9)]
    for net in plain:
        net.set_weights(base.get_weights())
    X4 = np.array([np.pad(s, (0, 4 - s.size)) for s in seqs])
    X9 = np.array([np.pad(s, (0, 9 - s.size)) for s in seqs])
    assert not np.allclose(plain[0].predict(X4), plain[1].predict(X9), rtol=1e-3, atol=1e-3)


def test_masked_pool_network_gradients_and_training():
    """check_gradients through the whole masked stack, and a tiny task that needs the masked
    mean: the class is which token fills the (variable-length) real part."""
    from nnc import NeuralNetClassifier, check_gradients
    rng = np.random.RandomState(0)
    X = np.zeros((8, 6), np.int64)
    lengths = rng.randint(1, 7, 8)
    for i, L_ in enumerate(lengths):
        X[i, :L_] = rng.randint(1, 10, L_)
    X[3] = 0
    net = _text_net(6, GlobalAvgPool("channels_last"))
    assert check_gradients(net, X, np.arange(8) % 3) < 1e-5
    net = _text_net(6, GlobalMaxPool("channels_last"))
    assert check_gradients(net, X, np.arange(8) % 3) < 1e-5
    # learning: tokens 1-3 -> class 0, 4-6 -> 1, 7-9 -> 2, over 1 to 6 real positions
    n = 240
    y = rng.randint(0, 3, n)
    X = np.zeros((n, 6), np.int64)
    for i in range(n):
        L_ = rng.randint(1, 7)
        X[i, :L_] = rng.randint(1 + 3 * y[i], 4 + 3 * y[i], L_)
    clf = NeuralNetClassifier(layers=[Embedding(10, 8, padding_idx=0),
                                      GlobalAvgPool("channels_last"), Dense(3)],
                              max_epochs=30, batch_size=16, random_state=0)
    clf.fit(X, y)
    assert clf.score(X, y) > 0.95
