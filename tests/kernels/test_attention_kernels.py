"""nnc._kernels._attention against the NumPy references in tests/_reference_attention.py:
forward and backward with and without key masks, causal masking and dropout, the inference
(block) form against the training form, the positional add / sum, and shape checks."""
import numpy as np
import pytest

from nnc._kernels import _attention as K
from tests import _reference_attention as R

TOL = {np.float32: dict(rtol=2e-5, atol=2e-6), np.float64: dict(rtol=1e-12, atol=1e-13)}


def _problem(N, T, D, H, dt, seed=0, masked=False, drop=False):
    rng = np.random.RandomState(seed)
    X = rng.standard_normal((N, T, D)).astype(dt)
    W_in = (0.4 * rng.standard_normal((3 * D, D))).astype(dt)
    b_in = rng.standard_normal(3 * D).astype(dt)
    W_out = (0.4 * rng.standard_normal((D, D))).astype(dt)
    b_out = rng.standard_normal(D).astype(dt)
    kmask = None
    if masked:
        kmask = (rng.rand(N, T) > 0.3).astype(np.uint8)
        kmask[0] = 0                       # a sample with nothing to attend to
        if N > 1:
            kmask[1] = 1
    U = rng.rand(N, H, T, T).astype(dt) if drop else None
    return X, W_in, b_in, W_out, b_out, kmask, U


def _train_forward(X, W_in, b_in, W_out, b_out, kmask, causal, H, U=None, rate=0.0):
    N, T, D = X.shape
    dt = X.dtype
    ws = dict(QKV=np.empty((N, T, 3 * D), dt), P=np.empty((N, H, T, T), dt),
              C=np.empty((N, T, D), dt), M=None if U is None else U.copy())
    Y = np.full((N, T, D), np.nan, dt)
    K.mha_forward(X, W_in, b_in, W_out, b_out, kmask, causal, H, True, ws["QKV"], ws["P"],
                  ws["C"], np.empty((T, T), dt), Y, ws["M"], rate)
    return Y, ws


@pytest.mark.parametrize("dt", [np.float32, np.float64])
@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("masked", [False, True])
@pytest.mark.parametrize("drop", [False, True])
@pytest.mark.parametrize("N, T, D, H", [(3, 5, 8, 2), (2, 1, 3, 1), (1, 7, 12, 4)])
def test_forward_backward_match_reference(dt, causal, masked, drop, N, T, D, H):
    X, W_in, b_in, W_out, b_out, kmask, U = _problem(N, T, D, H, dt, masked=masked, drop=drop)
    rate = 0.3 if drop else 0.0
    Y, ws = _train_forward(X, W_in, b_in, W_out, b_out, kmask, causal, H, U, rate)
    keep = None if U is None else (U >= rate) / (1 - rate)
    f64 = [a.astype(np.float64) for a in (X, W_in, b_in, W_out, b_out)]
    Yr, cache = R.mha_forward(*f64, H, None if kmask is None else kmask.astype(bool), causal,
                              keep)
    assert Y.dtype == dt
    np.testing.assert_allclose(Y, Yr, **TOL[dt])
    np.testing.assert_allclose(ws["P"], cache[4], **TOL[dt])
    if drop:
        np.testing.assert_array_equal(ws["M"], keep.astype(dt))   # uniforms -> keep-mask
    rng = np.random.RandomState(7)
    dY = rng.standard_normal(Y.shape).astype(dt)
    dY_copy = dY.copy()
    grads = [np.full((3 * D, D), np.nan, dt), np.full(3 * D, np.nan, dt),
             np.full((D, D), np.nan, dt), np.full(D, np.nan, dt)]
    dX = np.full(X.shape, np.nan, dt)
    K.mha_backward(X, W_in, W_out, ws["QKV"], ws["P"], ws["C"], dY, causal, H, *grads,
                   np.empty((N, T, D), dt), np.empty((N, T, 3 * D), dt), np.empty((2, T, T), dt),
                   ws["M"], dX)
    np.testing.assert_array_equal(dY, dY_copy)                  # dY is read only
    ref = R.mha_backward(dY.astype(np.float64), f64[1], f64[3], cache)
    for got, want in zip([dX] + grads, ref):
        scale = max(1.0, float(np.abs(want).max()))
        np.testing.assert_allclose(got / scale, want / scale, **TOL[dt])


@pytest.mark.parametrize("dt", [np.float32, np.float64])
@pytest.mark.parametrize("block", [1, 2, 3, 5])
@pytest.mark.parametrize("masked", [False, True])
def test_inference_blocks_equal_training_form(dt, block, masked):
    N, T, D, H = 5, 6, 8, 2
    X, W_in, b_in, W_out, b_out, kmask, _ = _problem(N, T, D, H, dt, seed=1, masked=masked)
    for causal in (False, True):
        Y, _ = _train_forward(X, W_in, b_in, W_out, b_out, kmask, causal, H)
        Y2 = np.full_like(Y, np.nan)
        K.mha_forward(X, W_in, b_in, W_out, b_out, kmask, causal, H, False,
                      np.empty((block, T, 3 * D), dt), np.empty((1, 1, T, T), dt),
                      np.empty((block, T, D), dt), np.empty((T, T), dt), Y2)
        np.testing.assert_allclose(Y2, Y, **TOL[dt])


def test_fully_masked_query_gets_zero_context():
    """A sample whose keys are all padded: probabilities 0, output = b_out (no NaN)."""
    X, W_in, b_in, W_out, b_out, _, _ = _problem(2, 4, 6, 3, np.float64, seed=2)
    kmask = np.ones((2, 4), np.uint8)
    kmask[0] = 0
    Y, ws = _train_forward(X, W_in, b_in, W_out, b_out, kmask, False, 3)
    assert np.all(ws["P"][0] == 0)
    np.testing.assert_array_equal(Y[0], np.broadcast_to(b_out, (4, 6)))
    assert np.isfinite(Y).all()


def test_masked_keys_and_future_positions_get_exactly_zero():
    X, W_in, b_in, W_out, b_out, _, _ = _problem(2, 5, 4, 2, np.float32, seed=3)
    kmask = np.array([[1, 1, 0, 1, 0], [0, 1, 1, 1, 1]], np.uint8)
    _, ws = _train_forward(X, W_in, b_in, W_out, b_out, kmask, True, 2)
    P = ws["P"]
    allowed = kmask.astype(bool)[:, None, None, :] & np.tril(np.ones((5, 5), bool))
    assert np.all(P[~np.broadcast_to(allowed, P.shape)] == 0)
    rows = P.sum(axis=-1)
    has_key = np.broadcast_to(allowed.any(axis=-1), rows.shape)
    np.testing.assert_allclose(rows[has_key], 1, rtol=1e-6)
    assert np.all(rows[~has_key] == 0)


def test_large_scores_do_not_overflow():
    X, W_in, b_in, W_out, b_out, _, _ = _problem(2, 6, 4, 1, np.float32, seed=4)
    Y, ws = _train_forward(100 * X, 10 * W_in, b_in, W_out, b_out, None, False, 1)
    assert np.isfinite(Y).all() and np.isfinite(ws["P"]).all()


@pytest.mark.parametrize("dt", [np.float32, np.float64])
def test_positions_add_and_sum(dt):
    rng = np.random.RandomState(0)
    X = rng.standard_normal((4, 3, 5)).astype(dt)
    E = rng.standard_normal((3, 5)).astype(dt)
    Y = np.empty_like(X)
    K.add_positions(X, E, Y)
    np.testing.assert_array_equal(Y, X + E)
    K.add_positions(X, E, X)                       # in place
    np.testing.assert_array_equal(X, Y)
    dE = np.full((3, 5), np.nan, dt)
    K.sum_positions(Y, dE)
    np.testing.assert_allclose(dE, Y.sum(axis=0), **TOL[dt])
    K.sum_positions(Y[:0], dE)                     # no samples: zeros
    assert not dE.any()
    with pytest.raises(ValueError, match="E must have shape"):
        K.add_positions(X, E[:2], Y)
    with pytest.raises(ValueError, match="dE_out must have shape"):
        K.sum_positions(Y, np.empty((3, 4), dt))


def test_shape_checks():
    dt = np.float64
    N, T, D, H = 2, 3, 4, 2
    X, W_in, b_in, W_out, b_out, _, _ = _problem(N, T, D, H, dt)
    QKV, P, C = np.empty((N, T, 3 * D)), np.empty((N, H, T, T)), np.empty((N, T, D))
    S, Y = np.empty((T, T)), np.empty((N, T, D))
    args = [X, W_in, b_in, W_out, b_out, None, False, H, True, QKV, P, C, S, Y]

    def call(**repl):
        names = ["X", "W_in", "b_in", "W_out", "b_out", "kmask", "causal", "H", "keep", "QKV",
                 "P", "C", "S", "Y"]
        a = dict(zip(names, args))
        a.update(repl)
        K.mha_forward(*[a[k] for k in names], a.get("M"), a.get("rate", 0.0))

    call()
    with pytest.raises(ValueError, match="n_heads"):
        call(H=3)
    with pytest.raises(ValueError, match="W_in must have shape"):
        call(W_in=W_in[:5])
    with pytest.raises(ValueError, match="P_out must have shape"):
        call(P=P[:1])
    with pytest.raises(ValueError, match="P_out must have shape"):
        call(keep=False)                      # the inference form takes one (1, 1, T, T) slab
    with pytest.raises(ValueError, match="kmask must have shape"):
        call(kmask=np.ones((N, T + 1), np.uint8))
    with pytest.raises(ValueError, match="Y_out must have shape"):
        call(Y=Y[:1])
    with pytest.raises(ValueError, match="rate"):
        call(M=np.empty((N, H, T, T)), rate=1.0)
    with pytest.raises(ValueError, match="training form"):
        call(keep=False, P=np.empty((1, 1, T, T)), M=np.empty((N, H, T, T)), rate=0.1)
    with pytest.raises(ValueError, match="non-empty"):
        call(X=np.empty((0, T, D)), Y=np.empty((0, T, D)))
    grads = [np.empty((3 * D, D)), np.empty(3 * D), np.empty((D, D)), np.empty(D)]
    with pytest.raises(ValueError, match="dQKV_out must have shape"):
        K.mha_backward(X, W_in, W_out, QKV, P, C, Y, False, H, *grads, np.empty((N, T, D)),
                       np.empty((N, T, D)), np.empty((2, T, T)))
    with pytest.raises(ValueError, match="scratch_out must have shape"):
        K.mha_backward(X, W_in, W_out, QKV, P, C, Y, False, H, *grads, np.empty((N, T, D)),
                       np.empty((N, T, 3 * D)), np.empty((1, T, T)))
    with pytest.raises(ValueError, match="dX_out must have shape"):
        K.mha_backward(X, W_in, W_out, QKV, P, C, Y, False, H, *grads, np.empty((N, T, D)),
                       np.empty((N, T, 3 * D)), np.empty((2, T, T)), None, np.empty((1, T, D)))
