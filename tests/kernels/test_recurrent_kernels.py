"""Recurrent kernels (nnc._kernels._recurrent and its AVX2 build) against the NumPy references,
in both dtypes."""
import numpy as np
import pytest

from nnc._kernels import _recurrent as K
from tests._reference_recurrent import recurrent_backward, recurrent_forward

MODULES = [K]
if K.cpu_has_avx2_fma():
    try:
        from nnc._kernels import _recurrent_avx2
        MODULES.append(_recurrent_avx2)
    except ImportError:  # pragma: no cover - not built
        pass
MODULE_IDS = [m.__name__.rsplit(".", 1)[1] for m in MODULES]

TOL = {np.float32: dict(rtol=1e-4, atol=2e-5), np.float64: dict(rtol=1e-10, atol=1e-12)}
GATES = {"rnn": 1, "lstm": 4, "gru": 3}
DTYPES = [np.float32, np.float64]


def _hist(rows, slots, N, dt, pad):
    """NaN-filled (rows, slots, N) history; rows `pad` elements further apart than contiguous."""
    buf = np.full((rows, slots * N + pad), np.nan, dtype=dt)
    return buf[:, :slots * N].reshape(rows, slots, N)


class Buffers:
    """Every buffer one kernel call needs, for N, T, F, U, in dtype dt (feature-major histories,
    rows padded by `pad` elements)."""

    def __init__(self, cell, N, T, F, U, dt, return_sequences, pad=0, module=K):
        G = GATES[cell] * U
        self.K = module
        self.cell, self.N, self.T, self.F, self.U, self.G, self.dt = cell, N, T, F, U, G, dt
        e = lambda *shape: np.full(shape, np.nan, dtype=dt)  # NaN: unwritten entries show up
        h = lambda rows, slots: _hist(rows, slots, N, dt, pad)  # noqa: E731
        self.Z, self.P, self.WhT = h(F + U, T + 1), h(G, T), e(G, U)
        self.C, self.TC = h(U, T + 1), h(U, T)
        self.HH, self.HN, self.Q = e(G, N), h(U, T), h(G, T)
        self.dh, self.dc = e(U, N), e(U, N)
        self.acc = e((2 if cell == "gru" else 1) * G, N)
        self.dXf, self.dX = e(F, T, N), e(N, T, F)
        self.Y = e(N, T if return_sequences else 1, U)

    def forward(self, X, params, reverse=False, Y=None):
        Y = self.Y if Y is None else Y
        if self.cell == "rnn":
            self.K.rnn_forward(X, *params, self.Z, self.P, self.WhT, Y, reverse)
        elif self.cell == "lstm":
            self.K.lstm_forward(X, *params, self.Z, self.P, self.C, self.TC, self.WhT, Y, reverse)
        else:
            self.K.gru_forward(X, *params, self.Z, self.P, self.HH, self.HN, self.WhT, Y, reverse)
        return Y

    def backward(self, params, dY, grads, reverse=False, need_dX=True):
        dXf, dX = (self.dXf, self.dX) if need_dX else (None, None)
        W_x, W_h = params[0], params[1]
        if self.cell == "rnn":
            self.K.rnn_backward(self.Z, W_x, W_h, self.P, dY, *grads, self.dh, self.acc, dXf, dX,
                           reverse)
        elif self.cell == "lstm":
            self.K.lstm_backward(self.Z, W_x, W_h, self.P, self.C, self.TC, dY, *grads,
                            self.dh, self.dc, self.acc, dXf, dX, reverse)
        else:
            self.K.gru_backward(self.Z, W_x, W_h, self.P, self.Q, self.HN, dY, *grads,
                           self.dh, self.acc, dXf, dX, reverse)
        return dX


def _params(cell, F, U, dt, rng, scale=0.5):
    G = GATES[cell] * U
    ps = [rng.standard_normal((F, G)), rng.standard_normal((U, G)), rng.standard_normal(G)]
    if cell == "gru":
        ps.append(rng.standard_normal(G))
    return [np.ascontiguousarray(scale * p, dtype=dt) for p in ps]


@pytest.mark.parametrize("dt", DTYPES)
@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
@pytest.mark.parametrize("return_sequences", [False, True])
@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("T", [1, 6])
@pytest.mark.parametrize("pad", [0, 5])
@pytest.mark.parametrize("module", MODULES, ids=MODULE_IDS)
def test_kernels_match_reference(dt, cell, return_sequences, reverse, T, pad, module):
    rng = np.random.RandomState(0)
    N, F, U = 3, 4, 9   # U = 9: vector loops with a remainder
    X = rng.standard_normal((N, T, F)).astype(dt)
    params = _params(cell, F, U, dt, rng)
    buf = Buffers(cell, N, T, F, U, dt, return_sequences, pad=pad, module=module)
    Y = buf.forward(X, params, reverse)
    Y_ref, cache = recurrent_forward(cell, X, params, return_sequences, reverse)
    assert Y.dtype == dt
    np.testing.assert_allclose(Y.reshape(Y_ref.shape), Y_ref, **TOL[dt])

    dY = rng.standard_normal(Y.shape).astype(dt)
    grads = [np.full_like(p, np.nan) for p in params]   # overwritten, never accumulated
    dX = buf.backward(params, dY, grads, reverse)
    dX_ref, grads_ref = recurrent_backward(cache, dY.reshape(Y_ref.shape))
    assert dX.dtype == dt and all(g.dtype == dt for g in grads)
    np.testing.assert_allclose(dX, dX_ref, **TOL[dt])
    for g, g_ref in zip(grads, grads_ref):
        np.testing.assert_allclose(g, g_ref, **TOL[dt])


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_backward_overwrites_and_skips_dx(cell):
    """Two backward passes give the same gradients; need_dX=False leaves dX untouched."""
    rng = np.random.RandomState(1)
    N, T, F, U = 2, 4, 3, 3
    X = rng.standard_normal((N, T, F))
    params = _params(cell, F, U, np.float64, rng)
    buf = Buffers(cell, N, T, F, U, np.float64, False)
    dY = rng.standard_normal((N, 1, U))
    results = []
    for _ in range(2):
        grads = [np.full_like(p, 7.0) for p in params]
        buf.forward(X, params)
        buf.backward(params, dY, grads, need_dX=False)
        results.append(grads)
    for a, b in zip(*results):
        np.testing.assert_array_equal(a, b)
    assert np.isnan(buf.dX).all()


@pytest.mark.parametrize("dt", DTYPES)
@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
@pytest.mark.parametrize("T", [1, 5])
def test_adjacent_weight_gradients(dt, cell, T):
    """dW_x and dW_h adjacent in one buffer (the network's layout, one joint GEMM) give the same
    gradients as separate arrays (two GEMMs)."""
    rng = np.random.RandomState(3)
    N, F, U = 3, 4, 5
    X = rng.standard_normal((N, T, F)).astype(dt)
    params = _params(cell, F, U, dt, rng)
    dY = rng.standard_normal((N, 1, U)).astype(dt)
    G = params[0].shape[1]
    results = []
    for joint in (False, True):
        buf = Buffers(cell, N, T, F, U, dt, False)
        if joint:
            flat = np.full((F + U) * G + 2 * G, np.nan, dtype=dt)
            grads = [flat[:F * G].reshape(F, G), flat[F * G:(F + U) * G].reshape(U, G)]
            grads += [flat[(F + U) * G:(F + U + 1) * G], flat[(F + U + 1) * G:]][:len(params) - 2]
        else:
            grads = [np.full_like(p, np.nan) for p in params]
        buf.forward(X, params)
        buf.backward(params, dY, grads)
        results.append([g.copy() for g in grads])
    for a, b in zip(*results):
        assert np.isfinite(b).all()
        np.testing.assert_allclose(a, b, **TOL[dt])


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_strided_output_halves(cell):
    """Y / dY may be halves of a concatenated (N, T, 2U) buffer (Bidirectional)."""
    rng = np.random.RandomState(2)
    N, T, F, U = 3, 5, 2, 4
    X = rng.standard_normal((N, T, F))
    params = _params(cell, F, U, np.float64, rng)
    buf = Buffers(cell, N, T, F, U, np.float64, True)
    big = np.zeros((N, T, 2 * U))
    buf.forward(X, params, reverse=True, Y=big[:, :, U:])
    Y_ref, cache = recurrent_forward(cell, X, params, True, True)
    np.testing.assert_allclose(big[:, :, U:], Y_ref, rtol=1e-12, atol=1e-14)
    assert (big[:, :, :U] == 0).all()
    dbig = rng.standard_normal((N, T, 2 * U))
    grads = [np.empty_like(p) for p in params]
    dX = buf.backward(params, dbig[:, :, U:], grads, reverse=True)
    dX_ref, grads_ref = recurrent_backward(cache, dbig[:, :, U:])
    np.testing.assert_allclose(dX, dX_ref, rtol=1e-10, atol=1e-12)
    for g, g_ref in zip(grads, grads_ref):
        np.testing.assert_allclose(g, g_ref, rtol=1e-10, atol=1e-12)


def _rnn_tanh(z, dt, module=K):
    """tanh(z) through SimpleRNN with F = U = 1, W_x = 1, W_h = 0, b = 0, T = 1."""
    z = np.asarray(z, dtype=dt).reshape(-1, 1, 1)
    buf = Buffers("rnn", z.shape[0], 1, 1, 1, dt, False, module=module)
    return buf.forward(z, [np.ones((1, 1), dt), np.zeros((1, 1), dt), np.zeros(1, dt)]).ravel()


@pytest.mark.parametrize("dt", DTYPES)
@pytest.mark.parametrize("module", MODULES, ids=MODULE_IDS)
def test_nonlinearities_extreme_inputs(dt, module):
    """tanh saturates at +-1 for huge/inf input, NaN stays NaN, and the float32 fast path is
    accurate over the working range."""
    z = np.array([-np.inf, -1e30, -40.0, -0.3, 1e-4, 0.0, 3.0, 9.0, 40.0, 1e30, np.inf, np.nan])
    Y = _rnn_tanh(z, dt, module)
    assert Y.dtype == dt
    with np.errstate(invalid="ignore"):
        np.testing.assert_allclose(Y, np.tanh(z), rtol=0, atol=2e-7)
    assert np.isnan(Y[-1])
    z = np.linspace(-20, 20, 4001).astype(dt)
    np.testing.assert_allclose(_rnn_tanh(z, dt, module), np.tanh(z.astype(np.float64)), rtol=0,
                               atol=3e-7 if dt == np.float32 else 1e-15)


@pytest.mark.parametrize("module", MODULES, ids=MODULE_IDS)
def test_lstm_sigmoid_extremes(module):
    """LSTM with T = 1: h = o tanh(i g); huge pre-activations saturate without NaN."""
    U = 1
    for dt in DTYPES:
        X = np.array([[[1e30]], [[-1e30]], [[50.0]], [[-50.0]]], dtype=dt)
        W_x = np.ones((1, 4), dt)
        params = [W_x, np.zeros((1, 4), dt), np.zeros(4, dt)]
        buf = Buffers("lstm", 4, 1, 1, U, dt, False, module=module)
        Y = buf.forward(X, params)[:, 0, 0]
        assert np.isfinite(Y).all()
        np.testing.assert_allclose(Y, [np.tanh(1.0), 0.0, np.tanh(1.0), 0.0], atol=1e-6)


# ---------------------------------------------------------------- validation

def _good_args(cell, dt=np.float64):
    N, T, F, U = 2, 3, 4, 5
    rng = np.random.RandomState(0)
    return Buffers(cell, N, T, F, U, dt, True), rng.standard_normal((N, T, F)).astype(dt), \
        _params(cell, F, U, dt, rng)


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_forward_rejects_bad_shapes(cell):
    buf, X, params = _good_args(cell)
    buf.forward(X, params)  # sanity: the good arguments pass
    with pytest.raises(ValueError):
        buf.forward(X[:, :2].copy(), params)                 # T disagrees with buffers
    with pytest.raises(ValueError):
        buf.forward(X[..., :3].copy(), params)               # F disagrees with W_x
    bad = [p.copy() for p in params]
    bad[1] = np.zeros((buf.U + 1, buf.G))
    with pytest.raises(ValueError):
        buf.forward(X, bad)                                  # W_h rows
    bad = [p.copy() for p in params]
    bad[2] = np.zeros(buf.G + 1)
    with pytest.raises(ValueError):
        buf.forward(X, bad)                                  # bias length
    with pytest.raises(ValueError):
        buf.forward(X, params, Y=np.zeros((buf.N, 2, buf.U)))  # Ty neither T nor 1
    with pytest.raises(ValueError):
        buf.forward(X, params, Y=np.zeros((buf.N, buf.T, 2 * buf.U))[:, :, ::2])  # strided U
    buf.Z = np.zeros((buf.F + buf.U, buf.T, buf.N))          # Z needs T + 1 slots
    with pytest.raises(ValueError):
        buf.forward(X, params)
    buf.Z = np.zeros((buf.F + buf.U + 1, buf.T + 1, buf.N))  # F + U rows
    with pytest.raises(ValueError):
        buf.forward(X, params)
    buf.Z = np.zeros((buf.F + buf.U, buf.T + 1, buf.N))
    buf.WhT = np.zeros((buf.U, buf.G + 1))                   # W_h^T scratch is (G, U)
    with pytest.raises(ValueError):
        buf.forward(X, params)
    buf, X, params = _good_args(cell)
    buf.P = np.zeros((buf.G, buf.T, 2 * buf.N))[:, :, ::2]   # samples not contiguous
    with pytest.raises(ValueError):
        buf.forward(X, params)
    buf.P = np.lib.stride_tricks.as_strided(                  # overlapping rows
        np.zeros(buf.G * buf.T * buf.N), (buf.G, buf.T, buf.N),
        ((buf.T * buf.N - 1) * 8, buf.N * 8, 8))
    with pytest.raises(ValueError):
        buf.forward(X, params)
    if cell != "rnn":                                        # histories must share one stride
        buf, X, params = _good_args(cell)
        hist = _hist(buf.U, buf.T, buf.N, np.float64, 3)
        if cell == "lstm":
            buf.TC = hist
        else:
            buf.HN = hist
        with pytest.raises(ValueError):
            buf.forward(X, params)
    buf, X, params = _good_args(cell)
    with pytest.raises(ValueError):
        buf.forward(X[:0].copy(), params)                    # empty batch


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_backward_rejects_bad_shapes(cell):
    buf, X, params = _good_args(cell)
    buf.forward(X, params)
    grads = [np.empty_like(p) for p in params]
    dY = np.ones((buf.N, buf.T, buf.U))
    with pytest.raises(ValueError):
        buf.backward(params, dY[:, :2], grads)               # dY time axis
    with pytest.raises(ValueError):
        buf.backward(params, dY, [g[:-1] for g in grads])    # gradient shapes
    buf.dXf = None
    with pytest.raises(ValueError):
        buf.backward(params, dY, grads)                      # dX without its scratch
    buf.dXf = np.empty((buf.F + 1, buf.T, buf.N))
    with pytest.raises(ValueError):
        buf.backward(params, dY, grads)
    buf.dXf = np.empty((buf.F, buf.T, buf.N))
    buf.dh = np.empty((buf.U, buf.N + 1))
    with pytest.raises(ValueError):
        buf.backward(params, dY, grads)
    buf.dh = np.empty((buf.U, buf.N))
    buf.acc = np.empty((buf.G - 1, buf.N))
    with pytest.raises(ValueError):
        buf.backward(params, dY, grads)


def test_dtype_mismatch_raises():
    buf, X, params = _good_args("lstm", np.float32)
    with pytest.raises((TypeError, ValueError)):
        buf.forward(X.astype(np.float64), params)


def test_avx2_build_is_used_when_supported():
    import nnc.layers._recurrent as layers
    expected = MODULES[-1]
    assert layers._K is expected
