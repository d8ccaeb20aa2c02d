"""Loss kernels (nnc._kernels._losses) and the Loss objects of nnc.losses against NumPy."""
import pickle

import numpy as np
import pytest
from scipy.special import expit, softmax

from nnc._kernels import _losses as K
from nnc.losses import get_loss, Loss
from tests._reference_losses import (loss_gradient as ref_loss_gradient, EXP_CLIP,
                                     softmax_link as ref_softmax_link)

DTYPES = [np.float32, np.float64]
RTOL = {np.float32: 2e-5, np.float64: 1e-11}
CODES = {"mse": K.MSE, "bce": K.BCE, "softmax_ce": K.SOFTMAX_CE, "poisson": K.POISSON}
NAMES = {"mse": "mse", "bce": "binary_cross_entropy", "softmax_ce": "softmax_cross_entropy",
         "poisson": "poisson"}


def make_problem(name, N, Kout, dtype, rng, scale=2.0):
    Z = (scale * rng.standard_normal((N, Kout))).astype(dtype)
    if name == "softmax_ce":
        labels = rng.randint(0, Kout, size=N).astype(np.int32)
        return Z, None, labels
    if name == "mse":
        Y = rng.standard_normal((N, Kout))
    elif name == "bce":
        Y = rng.randint(0, 2, size=(N, Kout)).astype(float)
        Y[: N // 2] = rng.uniform(size=(N // 2, Kout))  # soft labels too
    else:
        Y = rng.poisson(2.0, size=(N, Kout)).astype(float)  # includes zeros (xlogy(0, 0) = 0)
    return Z, Y.astype(dtype), None


def run_kernel(name, Z, Y, labels, sw):
    dZ = np.full_like(Z, np.nan)
    loss = K.loss_gradient(CODES[name], Z, Y, labels, sw, dZ)
    return loss, dZ


def assert_close(actual, desired, dtype, scale=None):
    actual = np.asarray(actual, dtype=np.float64)
    desired = np.asarray(desired, dtype=np.float64)
    scale = np.max(np.abs(desired)) if scale is None else scale
    np.testing.assert_allclose(actual, desired, rtol=RTOL[dtype],
                               atol=RTOL[dtype] * max(scale, 1e-30))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", list(CODES))
@pytest.mark.parametrize("N", [1, 7, 1000])
@pytest.mark.parametrize("weighted", [False, True])
def test_kernel_matches_reference(dtype, name, N, weighted):
    rng = np.random.RandomState(N)
    Kout = 1 if (N == 7 and name != "softmax_ce") else 5
    Z, Y, labels = make_problem(name, N, Kout, dtype, rng)
    sw = rng.uniform(0.0, 2.0, N).astype(dtype) if weighted else None
    if weighted and N > 1:
        sw[0] = 0.0  # a zero weight gives a zero gradient row
    loss, dZ = run_kernel(name, Z, Y, labels, sw)
    ref_loss, ref_dZ = ref_loss_gradient(name, Z, Y, labels, sw, EXP_CLIP[np.dtype(dtype)])
    assert isinstance(loss, float)
    assert dZ.dtype == dtype
    assert_close(loss, ref_loss, dtype, scale=abs(ref_loss))
    assert_close(dZ, ref_dZ, dtype)
    if weighted and N > 1:
        assert np.all(dZ[0] == 0)


@pytest.mark.parametrize("name", list(CODES))
@pytest.mark.parametrize("weighted", [False, True])
def test_finite_difference_gradient(name, weighted):
    rng = np.random.RandomState(3)
    Z, Y, labels = make_problem(name, 6, 4, np.float64, rng, scale=1.5)
    sw = rng.uniform(0.5, 2.0, 6) if weighted else None
    _, dZ = run_kernel(name, Z, Y, labels, sw)
    num = np.empty_like(Z)
    eps = 1e-6
    scratch = np.empty_like(Z)
    for idx in np.ndindex(*Z.shape):
        Zp = Z.copy()
        Zp[idx] += eps
        fp = K.loss_gradient(CODES[name], Zp, Y, labels, sw, scratch)
        Zp[idx] -= 2 * eps
        fm = K.loss_gradient(CODES[name], Zp, Y, labels, sw, scratch)
        num[idx] = (fp - fm) / (2 * eps)
    err = np.linalg.norm(dZ - num) / (np.linalg.norm(dZ) + np.linalg.norm(num))
    assert err < 1e-6


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", list(CODES))
def test_extreme_logits_are_finite(dtype, name):
    N, Kout = 6, 3
    Z = np.array([[1e4, -1e4, 0.0], [-1e4, 1e4, 1e4], [1e4, 1e4, 1e4],
                  [-1e4, -1e4, -1e4], [0.0, 1e4, -1e4], [-1e4, 0.0, 1e4]], dtype=dtype)
    labels = np.array([0, 0, 2, 1, 2, 1], dtype=np.int32)
    if name == "softmax_ce":
        Y = None
    elif name == "poisson":
        Y = np.array([[0, 3, 1]] * N, dtype=dtype)
    elif name == "bce":
        Y = np.array([[1, 0, 0.5]] * N, dtype=dtype)
    else:
        Y = np.zeros((N, Kout), dtype=dtype)
    loss, dZ = run_kernel(name, Z, Y, labels if name == "softmax_ce" else None, None)
    assert np.isfinite(loss)
    assert np.isfinite(dZ).all() and dZ.dtype == dtype
    ref_loss, ref_dZ = ref_loss_gradient(name, Z, Y, labels, None, EXP_CLIP[np.dtype(dtype)])
    assert_close(loss, ref_loss, dtype, scale=abs(ref_loss))
    assert_close(dZ, ref_dZ, dtype)


def test_exact_values_of_saturated_cross_entropies():
    # perfectly confident and right: zero loss and zero gradient; confidently wrong: |z|
    Z = np.array([[1e4, -1e4]], dtype=np.float32)
    dZ = np.empty_like(Z)
    assert K.loss_gradient(K.SOFTMAX_CE, Z, None, np.array([0], np.int32), None, dZ) == 0.0
    assert np.all(dZ == 0)
    assert K.loss_gradient(K.SOFTMAX_CE, Z, None, np.array([1], np.int32), None, dZ) == 2e4
    np.testing.assert_array_equal(dZ, [[1.0, -1.0]])
    Y = np.array([[1.0, 0.0]], dtype=np.float32)
    assert K.loss_gradient(K.BCE, Z, Y, None, None, dZ) == 0.0
    np.testing.assert_array_equal(dZ, [[0.0, 0.0]])


@pytest.mark.parametrize("dtype", DTYPES)
def test_softmax_edge_labels_and_single_class(dtype):
    rng = np.random.RandomState(0)
    Z = rng.standard_normal((4, 6)).astype(dtype)
    labels = np.array([0, 5, 0, 5], dtype=np.int32)
    loss, dZ = run_kernel("softmax_ce", Z, None, labels, None)
    ref_loss, ref_dZ = ref_loss_gradient("softmax_ce", Z, None, labels)
    assert_close(loss, ref_loss, dtype, scale=abs(ref_loss))
    assert_close(dZ, ref_dZ, dtype)
    np.testing.assert_allclose(dZ.sum(axis=1), 0, atol=1e-6)
    # K == 1: softmax is identically 1, the loss and gradient are 0
    Z1 = rng.standard_normal((3, 1)).astype(dtype)
    loss, dZ = run_kernel("softmax_ce", Z1, None, np.zeros(3, np.int32), None)
    assert loss == 0.0 and np.all(dZ == 0)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", list(CODES))
def test_gradient_may_overwrite_logits(dtype, name):
    rng = np.random.RandomState(1)
    Z, Y, labels = make_problem(name, 9, 4, dtype, rng)
    loss, dZ = run_kernel(name, Z, Y, labels, None)
    Zw = Z.copy()
    loss2 = K.loss_gradient(CODES[name], Zw, Y, labels, None, Zw)
    assert loss2 == loss
    np.testing.assert_array_equal(Zw, dZ)


@pytest.mark.parametrize("bad", [-1, 3, 2**31 - 1, -2**31])
def test_out_of_range_labels_raise(bad):
    Z = np.zeros((3, 3))
    labels = np.array([0, bad, 1], dtype=np.int32)
    with pytest.raises(ValueError, match="outside"):
        K.loss_gradient(K.SOFTMAX_CE, Z, None, labels, None, np.empty_like(Z))


@pytest.mark.parametrize("case", ["dZ", "Y", "labels_len", "labels_none", "Y_none", "sw_len",
                                  "sw_zero", "sw_nan", "code", "empty", "no_cols"])
def test_kernel_rejects_bad_shapes(case):
    Z = np.zeros((4, 3))
    Y = np.zeros((4, 3))
    labels = np.zeros(4, np.int32)
    sw = np.ones(4)
    dZ = np.empty((4, 3))
    code = K.MSE
    if case == "dZ":
        dZ = np.empty((4, 2))
    elif case == "Y":
        Y = np.zeros((3, 3))
    elif case == "labels_len":
        code, labels = K.SOFTMAX_CE, np.zeros(5, np.int32)
    elif case == "labels_none":
        code, labels = K.SOFTMAX_CE, None
    elif case == "Y_none":
        code, Y = K.BCE, None
    elif case == "sw_len":
        sw = np.ones(3)
    elif case == "sw_zero":
        sw = np.zeros(4)
    elif case == "sw_nan":
        sw[1] = np.nan
    elif case == "code":
        code = 7
    elif case == "empty":
        Z, Y, dZ, sw, labels = (np.zeros((0, 3)), np.zeros((0, 3)), np.zeros((0, 3)), None,
                                np.zeros(0, np.int32))
    elif case == "no_cols":
        Z, Y, dZ = np.zeros((4, 0)), np.zeros((4, 0)), np.zeros((4, 0))
    with pytest.raises(ValueError):
        K.loss_gradient(code, Z, Y, labels, sw, dZ)


def test_kernel_rejects_mixed_dtypes():
    Z = np.zeros((2, 2))
    with pytest.raises((TypeError, ValueError)):
        K.loss_gradient(K.MSE, Z, np.zeros((2, 2), np.float32), None, None, np.empty_like(Z))


@pytest.mark.parametrize("dtype", DTYPES)
def test_links(dtype):
    rng = np.random.RandomState(2)
    Z = (3 * rng.standard_normal((7, 4))).astype(dtype)
    Z[0] = [1e4, -1e4, 0, 1e4]
    S = Z.copy()
    K.softmax_forward(S)
    assert S.dtype == dtype and np.isfinite(S).all()
    assert_close(S, softmax(Z.astype(np.float64), axis=1), dtype, scale=1.0)
    E = Z.copy()
    K.exp_forward(E.reshape(-1))
    assert E.dtype == dtype and np.isfinite(E).all()
    clip = EXP_CLIP[np.dtype(dtype)]
    np.testing.assert_allclose(E, np.exp(np.minimum(Z.astype(np.float64), clip)),
                               rtol=RTOL[dtype] * 10)
    K.softmax_forward(np.zeros((0, 3), dtype))  # empty: no-op
    K.exp_forward(np.zeros(0, dtype))



@pytest.mark.parametrize("dtype", DTYPES)
def test_softmax_link_extreme_and_infinite_logits(dtype):
    """Finite logits, however large, give finite probabilities; infinite logits give the limit
    (never inf - inf = NaN); against the NumPy reference."""
    big = float(np.finfo(dtype).max)
    Z = np.array([[big, -big, 0.0],                  # z - zmax overflows to -inf: exp -> 0
                  [big, big, -big],                  # two equal maxima at the top of the range
                  [-big, -big, -big],
                  [big / 2, big, -1.0],
                  [np.inf, 1.0, np.inf],             # limits: mass on the +inf entries
                  [np.inf, -np.inf, 0.0],
                  [-np.inf, -np.inf, -np.inf],
                  [1.0, 2.0, 3.0]], dtype=dtype)
    S = Z.copy()
    K.softmax_forward(S)
    assert S.dtype == dtype and np.isfinite(S).all()
    assert_close(S, ref_softmax_link(Z), dtype, scale=1.0)
    np.testing.assert_allclose(S.sum(axis=1), 1.0, rtol=RTOL[dtype] * 10)
    # the Loss object's link is the same kernel
    S2 = Z.copy()
    get_loss("softmax_cross_entropy").link(S2)
    np.testing.assert_array_equal(S2, S)
    # NaN logits stay NaN (nothing to decide), and only in their row
    Zn = np.array([[np.nan, 1.0], [1.0, 2.0]], dtype=dtype)
    K.softmax_forward(Zn)
    assert np.isnan(Zn[0, 0]) and np.isfinite(Zn[1]).all()


@pytest.mark.parametrize("dtype", DTYPES)
def test_predictions_stay_finite_when_logits_overflow(dtype):
    """A network whose last GEMM overflows (logits +-inf from finite weights) still predicts
    finite probabilities for every loss link."""
    import nnc
    import nnc.layers as L
    big = float(np.finfo(dtype).max) / 4
    X = np.array([[4.0, 4.0], [4.0, -1.0], [-4.0, 1.0]], dtype=dtype)
    for loss, units in (("softmax_cross_entropy", 3), ("binary_cross_entropy", 3),
                        ("poisson", 2), ("mse", 2)):
        net = nnc.Sequential([L.Dense(units)], loss=loss, input_shape=(2,), dtype=dtype)
        W, b = net.layers[0].params
        W[...] = big
        W[:, 0] = -big
        b[...] = 0
        logits = net.forward(X)
        assert not np.isfinite(logits).all()       # the overflow really happens
        P = net.predict(X)
        if loss == "mse":
            continue                               # identity link: inf stays inf
        assert np.isfinite(P).all(), loss
        if loss == "softmax_cross_entropy":
            assert_close(P, ref_softmax_link(logits), dtype, scale=1.0)

# ---------------------------------------------------------------- nnc.losses

def test_get_loss_names():
    for name in NAMES.values():
        loss = get_loss(name)
        assert isinstance(loss, Loss) and loss.name == name
        assert get_loss(loss) is loss
    assert get_loss("squared_error").name == "mse"
    assert [get_loss(n).out_activation for n in NAMES.values()] == \
        ["identity", "logistic", "softmax", "exp"]
    assert [get_loss(n).code for n in NAMES.values()] == \
        [K.MSE, K.BCE, K.SOFTMAX_CE, K.POISSON]
    with pytest.raises(ValueError, match="softmax_cross_entropy"):
        get_loss("hinge")
    with pytest.raises(TypeError):
        get_loss(3)


def test_loss_objects_pickle():
    for name in NAMES.values():
        loss = pickle.loads(pickle.dumps(get_loss(name)))
        assert loss.name == name


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", list(CODES))
def test_loss_object_matches_kernel(dtype, name):
    rng = np.random.RandomState(5)
    Z, Y, labels = make_problem(name, 11, 3, dtype, rng)
    loss = get_loss(NAMES[name])
    y = loss.check_targets(labels if name == "softmax_ce" else Y, 3, dtype)
    sw = rng.uniform(0.5, 1.5, 11).astype(dtype)
    dZ = np.empty_like(Z)
    value = loss.loss_gradient(Z, y, sw, dZ)
    ref_loss, ref_dZ = ref_loss_gradient(name, Z, Y, labels, sw, EXP_CLIP[np.dtype(dtype)])
    assert_close(value, ref_loss, dtype, scale=abs(ref_loss))
    assert_close(dZ, ref_dZ, dtype)
    assert loss.loss(Z, y, sw) == value
    # link: predictions in place, dtype kept
    P = Z.copy()
    assert loss.link(P) is P and P.dtype == dtype
    expected = {"mse": Z, "bce": expit(Z.astype(np.float64)),
                "softmax_ce": softmax(Z.astype(np.float64), axis=1),
                "poisson": np.exp(Z.astype(np.float64))}[name]
    np.testing.assert_allclose(P, expected, rtol=RTOL[dtype] * 10, atol=1e-7)


def test_mse_multidimensional_outputs():
    rng = np.random.RandomState(0)
    Z = rng.standard_normal((5, 2, 3, 3))
    Y = rng.standard_normal((5, 2, 3, 3))
    loss = get_loss("mse")
    y = loss.check_targets(Y, (2, 3, 3), np.float64)
    assert y.shape == (5, 2, 3, 3)
    assert loss.check_targets(Y.reshape(5, -1), (2, 3, 3), np.float64).shape == (5, 2, 3, 3)
    dZ = np.empty_like(Z)
    value = loss.loss_gradient(Z, y, None, dZ)
    assert value == pytest.approx(0.5 * np.sum((Z - Y) ** 2) / 5, rel=1e-12)
    np.testing.assert_allclose(dZ, (Z - Y) / 5, rtol=1e-12)
    with pytest.raises(ValueError, match="C-contiguous"):
        loss.loss_gradient(Z, y, None, np.empty((5, 3, 3, 2)).transpose(0, 3, 1, 2))


@pytest.mark.parametrize("dtype", DTYPES)
def test_check_targets_float_losses(dtype):
    mse, bce, poi = get_loss("mse"), get_loss("binary_cross_entropy"), get_loss("poisson")
    y = mse.check_targets([1, 2, 3], 1, dtype)
    assert y.shape == (3, 1) and y.dtype == dtype and y.flags.c_contiguous
    y = mse.check_targets(np.arange(6.0).reshape(3, 2)[:, ::-1], 2, dtype)
    assert y.flags.c_contiguous and y.dtype == dtype
    assert bce.check_targets(np.array([True, False]), 1, dtype).dtype == dtype
    assert bce.check_targets([[0, 1, 0.25]], 3, dtype).shape == (1, 3)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        bce.check_targets([0, 2], 1, dtype)
    with pytest.raises(ValueError, match="non-negative"):
        poi.check_targets([0.0, -1.0], 1, dtype)
    with pytest.raises(ValueError, match="shape"):
        mse.check_targets([1, 2, 3], 2, dtype)            # 1-D with 2 outputs
    with pytest.raises(ValueError, match="shape"):
        mse.check_targets(np.zeros((3, 4)), 2, dtype)
    with pytest.raises(ValueError, match="NaN"):
        mse.check_targets([1.0, np.nan], 1, dtype)
    with pytest.raises(ValueError, match="infinity"):
        mse.check_targets([1.0, np.inf], 1, dtype)
    with pytest.raises(ValueError, match="Complex"):
        mse.check_targets(np.array([1 + 2j]), 1, dtype)
    with pytest.raises(ValueError, match="non-numeric"):
        mse.check_targets(np.array(["a", 1], dtype=object), 1, dtype)
    with pytest.raises(ValueError, match="numeric"):
        mse.check_targets(np.array(["a", "b"]), 1, dtype)
    with pytest.raises(ValueError, match="empty"):
        mse.check_targets(np.zeros((0, 1)), 1, dtype)
    with pytest.raises(TypeError):
        mse.check_targets(None, 1, dtype)


def test_check_targets_softmax():
    ce = get_loss("softmax_cross_entropy")
    y = ce.check_targets([0, 2, 1], 3, np.float32)
    assert y.dtype == np.int32 and y.shape == (3,) and y.flags.c_contiguous
    np.testing.assert_array_equal(ce.check_targets(np.array([0.0, 2.0]), 3, np.float64), [0, 2])
    np.testing.assert_array_equal(ce.check_targets(np.array([[1], [0]]), 3, np.float64), [1, 0])
    np.testing.assert_array_equal(ce.check_targets(np.array([1, 0], np.uint8), 2, np.float64),
                                  [1, 0])
    with pytest.raises(ValueError, match="integer"):
        ce.check_targets([0.5, 1.0], 3, np.float64)
    with pytest.raises(ValueError, match=r"\[0, 3\)"):
        ce.check_targets([0, 3], 3, np.float64)
    with pytest.raises(ValueError, match=r"\[0, 3\)"):
        ce.check_targets([-1, 0], 3, np.float64)
    with pytest.raises(ValueError, match=r"\[0, 3\)"):
        ce.check_targets(np.array([2**40, 0]), 3, np.float64)   # would wrap in int32
    with pytest.raises(ValueError, match="NaN"):
        ce.check_targets([0.0, np.nan], 3, np.float64)
    with pytest.raises(ValueError, match="argmax"):
        ce.check_targets(np.eye(3), 3, np.float64)
    with pytest.raises(ValueError, match="Complex"):
        ce.check_targets(np.array([1j]), 3, np.float64)
    with pytest.raises(ValueError):
        ce.check_targets(np.array(["cat", "dog"]), 3, np.float64)
