"""MultiHeadSelfAttention, TransformerEncoderBlock, Residual, PositionalEmbedding and Dense on
sequences: float64 finite differences, NumPy references, PyTorch parity of outputs and every
gradient, sequence masks, workspaces, configuration and argument validation."""
import copy
import pickle

import numpy as np
import pytest

import nnc
from nnc import layers as L
from nnc.layers._base import ParamSpec
from tests import _reference_attention as R
from tests._harness import build_layer, check_layer_gradients

TOL = {np.float32: dict(rtol=2e-4, atol=2e-5), np.float64: dict(rtol=1e-9, atol=1e-11)}


def _mask(n, T, seed=0):
    """A (n, T) mask with padding at both ends and at least one real position per sample."""
    rng = np.random.RandomState(seed)
    mask = rng.rand(n, T) > 0.35
    mask[:, rng.randint(T)] = True
    return mask


def _fd_check(layer, X, mask=None, training=False, seed=None, eps=1e-6, coords=120):
    """Max relative error of dX and of the parameter gradients of sum(forward(X) * R) against
    central differences; `seed` re-seeds the layer's dropout generator before every forward
    (so each evaluation draws the same masks)."""
    rng = np.random.RandomState(1)
    params, grads = build_layer(layer, X.shape[1:], X.shape[0])

    def fwd(A):
        if seed is not None:
            for part in nnc._network._layer_tree(layer):
                if part.__dict__.get("_rng") is not None or isinstance(
                        part, (L.Dropout, L.MultiHeadSelfAttention)):
                    part._rng = np.random.default_rng(seed)
        if mask is not None:
            layer.set_mask(mask)
        return layer.forward(A, training)

    Y = fwd(X.copy())
    Rm = rng.standard_normal(Y.shape)
    fwd(X.copy())
    dX = layer.backward(Rm.copy(), True).copy()
    g = grads.copy()
    f = lambda A: float(np.sum(fwd(A) * Rm))  # noqa: E731

    def rel(a, b):
        return np.linalg.norm(a - b) / max(1e-12, np.linalg.norm(a) + np.linalg.norm(b))

    idx = rng.choice(X.size, min(coords, X.size), replace=False)
    num = []
    for i in idx:
        Xp, Xm = X.copy(), X.copy()
        Xp.flat[i] += eps
        Xm.flat[i] -= eps
        num.append((f(Xp) - f(Xm)) / (2 * eps))
    err_x = rel(np.array(num), dX.ravel()[idx])
    err_p = 0.0
    if params.size:
        idx = rng.choice(params.size, min(coords, params.size), replace=False)
        num = []
        for i in idx:
            old = params[i]
            params[i] = old + eps
            fp = f(X.copy())
            params[i] = old - eps
            fm = f(X.copy())
            params[i] = old
            num.append((fp - fm) / (2 * eps))
        err_p = rel(np.array(num), g[idx])
    return err_x, err_p


# ---------------------------------------------------------------- gradient checks (float64)

@pytest.mark.parametrize("n_heads, dim, T", [(1, 3, 1), (2, 6, 5), (3, 6, 4)])
@pytest.mark.parametrize("causal", [False, True])
def test_attention_gradients(n_heads, dim, T, causal):
    err_x, err_p = check_layer_gradients(L.MultiHeadSelfAttention(n_heads, dim, causal=causal),
                                         input_shape=(T, dim), n=3)
    assert err_x < 1e-6 and err_p < 1e-6


@pytest.mark.parametrize("causal", [False, True])
def test_attention_gradients_with_padding_mask(causal):
    X = np.random.RandomState(0).standard_normal((4, 6, 4))
    errs = _fd_check(L.MultiHeadSelfAttention(2, 4, causal=causal), X, mask=_mask(4, 6))
    assert max(errs) < 1e-6


def test_attention_gradients_with_dropout():
    """Training mode with dropout on the probabilities, the same masks for every evaluation."""
    X = np.random.RandomState(0).standard_normal((3, 5, 4))
    errs = _fd_check(L.MultiHeadSelfAttention(2, 4, dropout=0.3), X, mask=_mask(3, 5),
                     training=True, seed=11)
    assert max(errs) < 1e-6


@pytest.mark.parametrize("causal", [False, True])
def test_block_gradients(causal):
    err_x, err_p = check_layer_gradients(L.TransformerEncoderBlock(6, 2, 10, causal=causal),
                                         input_shape=(5, 6), n=3, max_coords=150)
    assert err_x < 1e-6 and err_p < 1e-6


def test_block_gradients_with_mask_and_dropout():
    X = np.random.RandomState(2).standard_normal((3, 5, 4))
    errs = _fd_check(L.TransformerEncoderBlock(4, 2, 6, dropout=0.2), X, mask=_mask(3, 5, 1),
                     training=True, seed=3)
    assert max(errs) < 1e-6


@pytest.mark.parametrize("make, shape", [
    (lambda: L.Residual([L.Dense(5), L.Tanh(), L.Dense(3)]), (4, 3)),
    (lambda: L.Residual([L.Dense(4), L.ReLU(), L.Dense(4)]), (4,)),        # in-place ReLU
    (lambda: L.Residual(L.Sigmoid()), (2, 3, 2)),
    (lambda: L.Residual([L.LayerNorm(), L.Residual([L.MultiHeadSelfAttention(2, 4)])]), (3, 4)),
    (lambda: L.Residual([L.Conv1D(3, 3, padding=1)]), (3, 6)),
])
def test_residual_gradients(make, shape):
    err_x, err_p = check_layer_gradients(make(), input_shape=shape, n=3)
    assert err_x < 1e-6 and err_p < 1e-6


@pytest.mark.parametrize("kind", ["learned", "sinusoidal"])
@pytest.mark.parametrize("T", [1, 4, 6])
def test_positional_gradients(kind, T):
    err_x, err_p = check_layer_gradients(L.PositionalEmbedding(6, 3, kind=kind),
                                         input_shape=(T, 3), n=3)
    assert err_x < 1e-6 and err_p < 1e-6


def test_dense_on_sequences_gradients():
    err_x, err_p = check_layer_gradients(L.Dense(4), input_shape=(5, 3), n=3)
    assert err_x < 1e-6 and err_p < 1e-6
    err_x, err_p = check_layer_gradients(L.Dense(2), input_shape=(2, 3, 3), n=2)
    assert err_x < 1e-6 and err_p < 1e-6


# ---------------------------------------------------------------- NumPy references

@pytest.mark.parametrize("dt", [np.float32, np.float64])
@pytest.mark.parametrize("causal", [False, True])
def test_attention_matches_reference(dt, causal):
    layer = L.MultiHeadSelfAttention(2, 6, causal=causal)
    build_layer(layer, (5, 6), 4, dt)
    rng = np.random.RandomState(0)
    X = rng.standard_normal((4, 5, 6)).astype(dt)
    mask = _mask(4, 5)
    layer.set_mask(mask)
    Y = layer.forward(X, True).copy()
    W_in, b_in, W_out, b_out = (w.astype(np.float64) for w in layer.get_weights())
    Yr, cache = R.mha_forward(X.astype(np.float64), W_in, b_in, W_out, b_out, 2, mask, causal)
    assert Y.dtype == dt
    np.testing.assert_allclose(Y, Yr, **TOL[dt])
    dY = rng.standard_normal(Y.shape).astype(dt)
    dX = layer.backward(dY.copy(), True)
    ref = R.mha_backward(dY.astype(np.float64), W_in, W_out, cache)
    np.testing.assert_allclose(dX, ref[0], **TOL[dt])
    for got, want in zip(layer.grads, ref[1:]):
        np.testing.assert_allclose(got, want, **TOL[dt])


def test_positional_matches_reference():
    for kind in ("learned", "sinusoidal"):
        layer = L.PositionalEmbedding(8, 6, kind=kind)
        build_layer(layer, (5, 6), 3)
        X = np.random.RandomState(0).standard_normal((3, 5, 6))
        E = layer.params[0][:5] if kind == "learned" else R.sinusoidal_table(5, 6)
        np.testing.assert_allclose(layer.forward(X.copy(), True), X + E, rtol=1e-15)
    # the sinusoidal table of "Attention is all you need", odd widths too
    from nnc.layers._positional import sinusoidal_table
    for T, D in [(7, 6), (4, 5), (1, 1)]:
        np.testing.assert_allclose(sinusoidal_table(T, D, np.float64), R.sinusoidal_table(T, D),
                                   rtol=1e-14, atol=1e-15)
    t = sinusoidal_table(50, 8, np.float64)
    np.testing.assert_allclose(t[:, 2], np.sin(np.arange(50) / 10000 ** (2 / 8)), rtol=1e-14,
                               atol=1e-14)
    np.testing.assert_allclose(t[:, 3], np.cos(np.arange(50) / 10000 ** (2 / 8)), rtol=1e-14,
                               atol=1e-14)


def test_learned_positions_gradient_rows():
    """dE holds the sum over samples for the first T rows and 0 for rows T..max_len."""
    layer = L.PositionalEmbedding(7, 2)
    build_layer(layer, (4, 2), 3)
    layer.grads[0][...] = np.nan
    X = np.random.RandomState(0).standard_normal((3, 4, 2))
    layer.forward(X, True)
    dY = np.random.RandomState(1).standard_normal((3, 4, 2))
    dX = layer.backward(dY.copy(), True)
    np.testing.assert_array_equal(dX, dY)
    np.testing.assert_allclose(layer.grads[0][:4], dY.sum(axis=0), rtol=1e-14)
    assert np.all(layer.grads[0][4:] == 0)


def test_dense_on_sequences_is_position_wise():
    net = nnc.Sequential([L.Dense(3), L.Tanh(), L.Dense(2)], input_shape=(4, 5), random_state=0)
    assert net.output_shape == (4, 2)
    X = np.random.RandomState(0).standard_normal((6, 4, 5))
    flat = nnc.Sequential([L.Dense(3), L.Tanh(), L.Dense(2)], input_shape=(5,), random_state=0)
    flat.params = net.params
    np.testing.assert_allclose(net.predict(X), flat.predict(X.reshape(-1, 5)).reshape(6, 4, 2),
                               rtol=1e-13)
    assert nnc._mlp_fast.forward_fn(net, net.params) is None    # the generic loop, not the
    # compiled dense plan (which reads samples as flat rows)


# ---------------------------------------------------------------- PyTorch parity

def _torch():
    return pytest.importorskip("torch")


def _torch_dtype(torch, dt):
    return torch.float32 if dt == np.float32 else torch.float64


@pytest.mark.parametrize("dt", [np.float32, np.float64])
@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("masked", [False, True])
def test_attention_matches_torch(dt, causal, masked):
    torch = _torch()
    n, T, D, H = 4, 6, 8, 2
    layer = L.MultiHeadSelfAttention(H, D, causal=causal)
    net = nnc.Sequential([layer], input_shape=(T, D), dtype=dt, random_state=0)
    rng = np.random.RandomState(0)
    net.params = rng.uniform(-0.5, 0.5, net.params.shape)
    X = rng.standard_normal((n, T, D)).astype(dt)
    mask = _mask(n, T, 2) if masked else None
    net._ensure_batch(n)
    if masked:
        layer.set_mask(mask)
    Y = layer.forward(X, True).copy()
    dY = rng.standard_normal(Y.shape).astype(dt)
    dX = layer.backward(dY.copy(), True).copy()

    tdt = _torch_dtype(torch, dt)
    m = torch.nn.MultiheadAttention(D, H, batch_first=True, dtype=tdt)
    W_in, b_in, W_out, b_out = layer.get_weights()
    with torch.no_grad():
        m.in_proj_weight.copy_(torch.from_numpy(W_in))
        m.in_proj_bias.copy_(torch.from_numpy(b_in))
        m.out_proj.weight.copy_(torch.from_numpy(W_out))
        m.out_proj.bias.copy_(torch.from_numpy(b_out))
    x = torch.from_numpy(X.copy()).requires_grad_(True)
    kpm = None if mask is None else torch.from_numpy(~mask)
    am = torch.triu(torch.ones(T, T, dtype=torch.bool), 1) if causal else None
    y, _ = m(x, x, x, key_padding_mask=kpm, attn_mask=am, need_weights=False)
    y.backward(torch.from_numpy(dY))
    tol = TOL[dt]
    np.testing.assert_allclose(Y, y.detach().numpy(), **tol)
    np.testing.assert_allclose(dX, x.grad.numpy(), **tol)
    for got, p in zip(layer.grads, (m.in_proj_weight, m.in_proj_bias, m.out_proj.weight,
                                    m.out_proj.bias)):
        np.testing.assert_allclose(got, p.grad.numpy(), **tol)


def _torch_block(torch, block, dt, dropout=0.0):
    D, H, F = block.dim, block.n_heads, block.ffn_dim
    t = torch.nn.TransformerEncoderLayer(D, H, F, dropout=dropout, activation="relu",
                                         batch_first=True, norm_first=True,
                                         dtype=_torch_dtype(torch, dt))
    w = dict(zip([s.name for s in block.param_specs()], block.get_weights()))
    pairs = {"norm1.weight": w["0.0.gamma"], "norm1.bias": w["0.0.beta"],
             "self_attn.in_proj_weight": w["0.1.W_in"], "self_attn.in_proj_bias": w["0.1.b_in"],
             "self_attn.out_proj.weight": w["0.1.W_out"],
             "self_attn.out_proj.bias": w["0.1.b_out"],
             "norm2.weight": w["1.0.gamma"], "norm2.bias": w["1.0.beta"],
             "linear1.weight": w["1.1.W"].T, "linear1.bias": w["1.1.b"],
             "linear2.weight": w["1.4.W"].T, "linear2.bias": w["1.4.b"]}
    params = dict(t.named_parameters())
    assert set(params) == set(pairs)
    with torch.no_grad():
        for name, value in pairs.items():
            params[name].copy_(torch.from_numpy(np.ascontiguousarray(value)))
    return t, params, pairs


@pytest.mark.parametrize("dt", [np.float32, np.float64])
@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("masked", [False, True])
def test_block_matches_torch(dt, causal, masked):
    torch = _torch()
    n, T, D, H, F = 3, 7, 8, 4, 12
    block = L.TransformerEncoderBlock(D, H, F, causal=causal)
    net = nnc.Sequential([block], input_shape=(T, D), dtype=dt, random_state=0)
    rng = np.random.RandomState(1)
    net.params = rng.uniform(-0.5, 0.5, net.params.shape)
    X = rng.standard_normal((n, T, D)).astype(dt)
    mask = _mask(n, T, 3) if masked else None
    net._ensure_batch(n)
    if masked:
        block.set_mask(mask)
    Y = block.forward(X, True).copy()
    dY = rng.standard_normal(Y.shape).astype(dt)
    dX = block.backward(dY.copy(), True).copy()

    t, params, pairs = _torch_block(torch, block, dt)
    t.train()
    x = torch.from_numpy(X.copy()).requires_grad_(True)
    kwargs = {}
    if masked:
        kwargs["src_key_padding_mask"] = torch.from_numpy(~mask)
    if causal:
        kwargs["src_mask"] = torch.triu(torch.ones(T, T, dtype=torch.bool), 1)
        kwargs["is_causal"] = True
    y = t(x, **kwargs)
    y.backward(torch.from_numpy(dY))
    tol = TOL[dt]
    np.testing.assert_allclose(Y, y.detach().numpy(), **tol)
    np.testing.assert_allclose(dX, x.grad.numpy(), **tol)
    grads = dict(zip([s.name for s in block.param_specs()], block.grads))
    back = {"norm1.weight": "0.0.gamma", "norm1.bias": "0.0.beta",
            "self_attn.in_proj_weight": "0.1.W_in", "self_attn.in_proj_bias": "0.1.b_in",
            "self_attn.out_proj.weight": "0.1.W_out", "self_attn.out_proj.bias": "0.1.b_out",
            "norm2.weight": "1.0.gamma", "norm2.bias": "1.0.beta", "linear1.bias": "1.1.b",
            "linear2.bias": "1.4.b"}
    for name, ours in back.items():
        np.testing.assert_allclose(grads[ours], params[name].grad.numpy(), **tol, err_msg=name)
    np.testing.assert_allclose(grads["1.1.W"], params["linear1.weight"].grad.numpy().T, **tol)
    np.testing.assert_allclose(grads["1.4.W"], params["linear2.weight"].grad.numpy().T, **tol)


def test_block_eval_matches_torch_eval():
    """Prediction (dropout off, inference form on a shadow stack) against torch's eval mode."""
    torch = _torch()
    block = L.TransformerEncoderBlock(8, 2, 16, dropout=0.3)
    net = nnc.Sequential([block], input_shape=(6, 8), random_state=0)
    X = np.random.RandomState(0).standard_normal((5, 6, 8))
    t, _, _ = _torch_block(torch, block, np.float64, dropout=0.3)
    t.eval()
    with torch.no_grad():
        want = t(torch.from_numpy(X)).numpy()
    np.testing.assert_allclose(net.predict(X), want, rtol=1e-10, atol=1e-12)


# ---------------------------------------------------------------- sequence masks

def test_padded_positions_do_not_change_real_outputs():
    """With a mask, real positions' outputs do not depend on what sits at padded positions."""
    layer = L.TransformerEncoderBlock(8, 2, 12)
    net = nnc.Sequential([layer], input_shape=(6, 8), random_state=0)
    net._ensure_batch(4)
    rng = np.random.RandomState(0)
    X = rng.standard_normal((4, 6, 8))
    mask = _mask(4, 6)
    layer.set_mask(mask)
    Y1 = layer.forward(X, False).copy()
    X2 = X.copy()
    X2[~mask] = 100 * rng.standard_normal(X2[~mask].shape)
    Y2 = layer.forward(X2, False).copy()
    np.testing.assert_allclose(Y1[mask], Y2[mask], rtol=1e-12, atol=1e-12)
    layer.set_mask(None)
    assert not np.allclose(layer.forward(X2, False)[mask], Y1[mask])


def test_embedding_padding_idx_masks_attention_in_a_network():
    """Embedding(padding_idx) makes the mask; the network carries it through LayerNorm, Dense,
    Residual and the block to the attention layers, and drops it at Flatten."""
    T = 7
    layers = [L.Embedding(9, 8, padding_idx=0), L.LayerNorm(), L.Dense(8), L.ReLU(),
              L.PositionalEmbedding(T, 8), L.TransformerEncoderBlock(8, 2, 12),
              L.Residual([L.MultiHeadSelfAttention(4, 8, causal=True)]), L.Flatten(),
              L.Dense(3)]
    net = nnc.Sequential(layers, loss="softmax_cross_entropy", input_shape=(T,),
                         random_state=0)
    rng = np.random.RandomState(0)
    ids = rng.randint(1, 9, (6, T))
    ids[:, 5:] = 0
    ids[2, :2] = 0
    # the same stack without the mask source, the masks given by hand to the attention layers
    plain = [L.Embedding(9, 8), L.LayerNorm(), L.Dense(8), L.ReLU(),
             L.PositionalEmbedding(T, 8), L.TransformerEncoderBlock(8, 2, 12),
             L.Residual([L.MultiHeadSelfAttention(4, 8, causal=True)])]
    ref = nnc.Sequential(plain + [L.Flatten(), L.Dense(3)], loss="softmax_cross_entropy",
                         input_shape=(T,), random_state=0)
    ref.params = net.params
    ref._ensure_batch(6)
    mask = ids != 0
    H = ids
    for layer in ref.layers:
        if layer.takes_mask:
            layer.set_mask(mask)
        H = layer.forward(np.ascontiguousarray(H), False)
    np.testing.assert_allclose(net.forward(ids), H, rtol=1e-12, atol=1e-12)
    assert not np.allclose(ref.forward(ids), H)        # without the mask: another answer
    # gradients with the mask carried in training
    loss, _ = net.loss_and_gradients(ids, np.arange(6) % 3)
    assert np.isfinite(loss)


def test_mask_errors():
    layer = L.MultiHeadSelfAttention(2, 4)
    build_layer(layer, (5, 4), 3)
    X = np.zeros((3, 5, 4))
    with pytest.raises(ValueError, match=r"boolean array of shape \(n, 5\)"):
        layer.set_mask(np.ones((3, 4), bool))
    with pytest.raises(ValueError, match="boolean"):
        layer.set_mask(np.ones((3, 5)))
    layer.set_mask(np.ones((2, 5), bool))
    with pytest.raises(ValueError, match=r"mask has shape \(2, 5\).*needs \(3, 5\)"):
        layer.forward(X)
    layer.set_mask(None)
    layer.forward(X)
    with pytest.raises(TypeError, match="does not read a sequence mask"):
        L.Dense(2).set_mask(None)


def test_mask_stops_at_layers_that_do_not_keep_positions():
    net = nnc.Sequential([L.Embedding(5, 4, padding_idx=0), L.GRU(3, return_sequences=True),
                          L.MultiHeadSelfAttention(1, 3)], input_shape=(4,), random_state=0)
    ids = np.array([[1, 2, 0, 0], [3, 0, 0, 0]])
    net._ensure_batch(2)
    net._forward(net._check_X(ids), False)
    attn = net.layers[2]
    assert "_cache_mask" in vars(attn) and attn._cache_mask is None   # the GRU stopped the mask
    net2 = nnc.Sequential([L.Embedding(5, 4, padding_idx=0), L.MultiHeadSelfAttention(1, 4)],
                          input_shape=(4,), random_state=0)
    net2._ensure_batch(2)
    net2._forward(net2._check_X(ids), False)
    np.testing.assert_array_equal(net2.layers[1]._cache_mask, ids != 0)


# ---------------------------------------------------------------- Residual

def test_residual_is_x_plus_branch():
    branch = [L.Dense(4), L.Tanh(), L.Dense(3)]
    res = L.Residual([L.Dense.from_config(b.get_config()) if isinstance(b, L.Dense)
                      else type(b)() for b in branch])
    net = nnc.Sequential([res], input_shape=(5, 3), random_state=0)
    plain = nnc.Sequential(branch, input_shape=(5, 3), random_state=0)
    plain.params = net.params
    X = np.random.RandomState(0).standard_normal((4, 5, 3))
    np.testing.assert_allclose(net.predict(X), X + plain.predict(X), rtol=1e-14)


def test_residual_parameters_are_views_laid_out_decayed_first():
    net = nnc.Sequential([L.Dense(3), L.Residual([L.Dense(4), L.ReLU(), L.Dense(3)]),
                          L.Dense(2)], input_shape=(3,), random_state=0)
    res = net.layers[1]
    assert [s.name for s in res.param_specs()] == ["0.W", "0.b", "2.W", "2.b"]
    for child in (res.layers[0], res.layers[2]):
        for view in child.params:
            assert np.shares_memory(view, net.params)
    # decayed tensors (every W, inner ones too) lie before n_decay, biases after
    decayed = sum(w.size for layer in (net.layers[0], res.layers[0], res.layers[2],
                                       net.layers[2]) for w in layer.params[:1])
    assert net.n_decay == decayed
    res.layers[2].params[0][...] = 7.0
    assert np.count_nonzero(net.params[:net.n_decay] == 7.0) == 12
    assert res.layers[1].inplace     # the ReLU runs in place on the inner Dense's output


def test_residual_shape_errors_and_config():
    with pytest.raises(ValueError, match=r"keep the sample shape \(4,\).*\(4,\) -> \(3,\)"):
        nnc.Sequential([L.Residual([L.Dense(3)])], input_shape=(4,))
    with pytest.raises(TypeError, match="non-empty list"):
        L.Residual([])
    with pytest.raises(TypeError, match=r"layers\[1\] must be an nnc.layers.Layer"):
        L.Residual([L.ReLU(), "relu"])
    d = L.Dense(2)
    with pytest.raises(ValueError, match="appears twice"):
        L.Residual([d, d])
    with pytest.raises(ValueError, match="unknown layer class_name 'Sequential'"):
        L.Residual([{"class_name": "Sequential", "config": {}}])
    res = L.Residual([L.Dense(3, init_factor=2.0), L.Dropout(0.5, random_state=1)])
    clone = L.Residual.from_config(res.get_config())
    assert clone.get_config() == res.get_config()
    assert clone.layers[0] is not res.layers[0]
    inner = L.Dense(3)
    owner = nnc.Sequential([L.Residual([inner])], input_shape=(3,))
    with pytest.raises(ValueError, match="already belongs"):     # a child of a live network
        nnc.Sequential([inner], input_shape=(3,))
    del owner


def test_residual_state_dict():
    res = L.Residual([L.Dense(3), L.Dropout(0.5)])
    assert L.Residual([L.Dense(3)]).state_dict() == {}
    net = nnc.Sequential([res], input_shape=(3,), random_state=0)
    state = res.state_dict()
    assert set(state) == {"layers"} and state["layers"][0] == {}
    twin = L.Residual([L.Dense(3), L.Dropout(0.5)])
    net2 = nnc.Sequential([twin], input_shape=(3,), random_state=5)
    twin.load_state_dict(state)
    assert twin.layers[1]._rng.random() == res.layers[1]._rng.random()
    with pytest.raises(ValueError, match="one state per child"):
        twin.load_state_dict({"layers": [{}]})
    with pytest.raises(ValueError, match="Dropout state"):
        twin.load_state_dict({"layers": [{}, {"bad": 1}]})
    del net, net2


# ---------------------------------------------------------------- workspaces, threads, errors

def test_short_batches_and_dtype():
    for dt in (np.float32, np.float64):
        layer = L.TransformerEncoderBlock(4, 2, 6)
        build_layer(layer, (5, 4), 6, dt)
        X = np.random.RandomState(0).standard_normal((6, 5, 4)).astype(dt)
        full = layer.forward(X, True).copy()
        assert full.dtype == dt
        np.testing.assert_allclose(layer.forward(X[:2].copy(), True), full[:2], **TOL[dt])
        assert layer.backward(np.ones((2, 5, 4), dt), False) is None


def test_backward_needs_a_training_form_forward():
    layer = L.MultiHeadSelfAttention(1, 2)
    build_layer(layer, (3, 2), 2)
    with pytest.raises(RuntimeError, match="preceding forward"):
        layer.backward(np.zeros((2, 3, 2)))
    # an inference copy (a shadow, as predict uses) keeps nothing for backward
    twin = layer._shadow()
    twin.bind(layer.params, layer.grads)
    twin.allocate(2)
    Y = twin.forward(np.ones((2, 3, 2)), False)
    assert not hasattr(twin, "_ws_p")          # no (n, H, T, T) buffer in the inference form
    with pytest.raises(RuntimeError, match="preceding forward"):
        twin.backward(np.zeros_like(Y))
    layer.forward(np.ones((2, 3, 2)), False)   # the network's own layer: backward works
    assert layer.backward(np.ones((2, 3, 2))).shape == (2, 3, 2)


def test_predict_uses_blocks_and_equals_training_form():
    net = nnc.Sequential([L.TransformerEncoderBlock(8, 2, 8), L.Flatten(), L.Dense(2)],
                         input_shape=(40, 8), random_state=0, dtype="float32")
    X = np.random.RandomState(0).standard_normal((70, 40, 8)).astype(np.float32)
    net._ensure_batch(70)
    own = net._forward(X, False).copy()          # the network's own layers: training form
    shadow = net.forward(X)                      # a shadow stack: blocks of 1024 // 40 samples
    assert net.layers[0].layers[0].layers[1]._ws_qkv_block.shape[0] == 1024 // 40
    np.testing.assert_allclose(shadow, own, rtol=1e-5, atol=1e-6)


def test_pickle_and_deepcopy_drop_workspaces():
    net = nnc.Sequential([L.TransformerEncoderBlock(4, 2, 6, dropout=0.1), L.Flatten(),
                          L.Dense(2)], input_shape=(3, 4), random_state=0)
    X = np.random.RandomState(0).standard_normal((5, 3, 4))
    net.loss_and_gradients(X, np.zeros((5, 2)))
    blob = pickle.dumps(net)
    again = pickle.loads(blob)
    attn = again.layers[0].layers[0].layers[1]
    assert not any(k.startswith(("_ws", "_cache")) for k in vars(attn))
    assert len(blob) < 20000                     # weights only, no (n, H, T, T) workspaces
    np.testing.assert_array_equal(again.forward(X), net.forward(X))
    twin = copy.deepcopy(net)
    assert not any(k.startswith(("_ws", "_cache"))
                   for k in vars(twin.layers[0].layers[0].layers[1]))
    np.testing.assert_array_equal(twin.forward(X), net.forward(X))


@pytest.mark.parametrize("make, error, match", [
    (lambda: L.MultiHeadSelfAttention(3, 8), ValueError, "must divide dim"),
    (lambda: L.MultiHeadSelfAttention(0, 8), ValueError, "n_heads must be >= 1"),
    (lambda: L.MultiHeadSelfAttention(2, 8.0), TypeError, "dim must be an int"),
    (lambda: L.MultiHeadSelfAttention(2, 8, dropout=1.0), ValueError, r"dropout must be in"),
    (lambda: L.MultiHeadSelfAttention(2, 8, dropout="0.1"), TypeError, "dropout must be a float"),
    (lambda: L.MultiHeadSelfAttention(2, 8, causal=1), TypeError, "causal must be a bool"),
    (lambda: L.MultiHeadSelfAttention(2, 8, random_state=-1), ValueError, "random_state"),
    (lambda: L.TransformerEncoderBlock(8, 3, 16), ValueError, "must divide dim"),
    (lambda: L.TransformerEncoderBlock(8, 2, 0), ValueError, "ffn_dim must be >= 1"),
    (lambda: L.TransformerEncoderBlock(8, 2, 16, eps=0), ValueError, "eps"),
    (lambda: L.PositionalEmbedding(0, 4), ValueError, "max_len must be >= 1"),
    (lambda: L.PositionalEmbedding(4, 4, kind="rotary"), ValueError, "kind must be one of"),
])
def test_bad_constructor_args(make, error, match):
    with pytest.raises(error, match=match):
        make()


@pytest.mark.parametrize("layer, shape, match", [
    (lambda: L.MultiHeadSelfAttention(2, 8), (5, 6), r"\(n_timesteps, 8\)"),
    (lambda: L.MultiHeadSelfAttention(2, 8), (8,), r"\(n_timesteps, 8\)"),
    (lambda: L.MultiHeadSelfAttention(2, 8), (2, 5, 8), r"\(n_timesteps, 8\)"),
    (lambda: L.TransformerEncoderBlock(8, 2, 4), (5, 4), r"\(n_timesteps, 8\)"),
    (lambda: L.PositionalEmbedding(4, 8), (5, 8), "longer than max_len=4"),
    (lambda: L.PositionalEmbedding(9, 8), (5, 7), r"\(n_timesteps, 8\)"),
])
def test_bad_input_shapes(layer, shape, match):
    with pytest.raises(ValueError, match=match):
        nnc.Sequential([layer()], input_shape=shape)


def test_forward_rejects_bad_arrays():
    layer = L.MultiHeadSelfAttention(2, 4)
    build_layer(layer, (3, 4), 2)
    with pytest.raises(ValueError, match="dtype float32"):
        layer.forward(np.zeros((2, 3, 4), np.float32))
    with pytest.raises(ValueError, match=r"shape \(n, 3, 4\)"):
        layer.forward(np.zeros((2, 4, 4)))
    with pytest.raises(ValueError, match="workspaces hold 2"):
        layer.forward(np.zeros((3, 3, 4)))


def test_param_specs_and_init():
    layer = L.MultiHeadSelfAttention(4, 8)
    net = nnc.Sequential([layer], input_shape=(3, 8), random_state=0)
    assert layer.param_specs() == [ParamSpec("W_in", (24, 8), True),
                                   ParamSpec("b_in", (24,), False),
                                   ParamSpec("W_out", (8, 8), True),
                                   ParamSpec("b_out", (8,), False)]
    W_in, b_in, W_out, b_out = layer.get_weights()
    assert np.abs(W_in).max() <= np.sqrt(6 / 32) and np.abs(W_out).max() <= 1 / np.sqrt(8)
    assert not b_in.any() and not b_out.any()
    assert net.n_decay == 24 * 8 + 8 * 8
    pos = L.PositionalEmbedding(5, 8)
    nnc.Sequential([pos], input_shape=(3, 8), random_state=0)
    assert pos.param_specs() == [ParamSpec("E", (5, 8), False)]
    assert 0.01 < pos.params[0].std() < 0.03
    assert L.PositionalEmbedding(5, 8, kind="sinusoidal").param_specs() == []
    block = L.TransformerEncoderBlock(8, 2, 16)
    nnc.Sequential([block], input_shape=(3, 8), random_state=0)
    assert [s.name for s in block.param_specs()] == [
        "0.0.gamma", "0.0.beta", "0.1.W_in", "0.1.b_in", "0.1.W_out", "0.1.b_out",
        "1.0.gamma", "1.0.beta", "1.1.W", "1.1.b", "1.4.W", "1.4.b"]
    assert block.get_config() == {"dim": 8, "n_heads": 2, "ffn_dim": 16, "dropout": 0.0,
                                  "causal": False, "eps": 1e-5}
