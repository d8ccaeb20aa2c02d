"""MaxPool2D / AvgPool2D layers: references, gradient checks, torch, shape fuzzing."""
import json

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from nnc.layers import MaxPool2D, AvgPool2D
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
    assert layer.get_config() == {"pool_size": [2, 3], "stride": None}


@settings(max_examples=30, deadline=None)
@given(n=st.integers(1, 3), C=st.integers(1, 3), H=st.integers(1, 9), W=st.integers(1, 9),
       KH=st.integers(1, 5), KW=st.integers(1, 5), SH=st.integers(0, 3), SW=st.integers(1, 3),
       use_max=st.booleans(), float32=st.booleans(), seed=st.integers(0, 2**16))
def test_pool_shape_fuzz(n, C, H, W, KH, KW, SH, SW, use_max, float32, seed):
    dtype = np.float32 if float32 else np.float64
    cls = MaxPool2D if use_max else AvgPool2D
    if SH < 1 or KH > H or KW > W:
        with pytest.raises(ValueError):
            cls((KH, KW), (SH, SW)).build((C, H, W), dtype)
        return
    layer = cls((KH, KW), (SH, SW))
    build_layer(layer, (C, H, W), n, dtype)
    rng = np.random.RandomState(seed)
    X = _no_ties(n, (C, H, W), dtype, rng)
    Y = layer.forward(X, True)
    dY = rng.standard_normal(Y.shape).astype(dtype)
    dX = layer.backward(dY.copy(), True)
    if use_max:
        Yr, _ = ref.maxpool2d_forward(X, (KH, KW), (SH, SW))
        rdX = ref.maxpool2d_backward(dY, X, (KH, KW), (SH, SW))
    else:
        Yr = ref.avgpool2d_forward(X, (KH, KW), (SH, SW))
        rdX = ref.avgpool2d_backward(dY, X.shape, (KH, KW), (SH, SW))
    assert_close(Y, Yr, dtype)
    assert_close(dX, rdX, dtype)
