"""Plain NumPy references for the attention kernels and the sequence layers (tests only).

Multi-head self-attention with PyTorch's weight layout (W_in (3D, D) = in_proj_weight, W_out
(D, D) = out_proj.weight); key mask (N, T) bool, True = a real key; causal: t attends to j <= t.
A query with no key to attend to gets probabilities 0 (nnc's convention).
"""
import numpy as np


def attention_probabilities(S, key_mask=None, causal=False):
    """Masked row softmax of scores S (N, H, T, T)."""
    N, H, T, _ = S.shape
    allowed = np.ones((N, 1, T, T), dtype=bool)
    if key_mask is not None:
        allowed &= np.asarray(key_mask, dtype=bool)[:, None, None, :]
    if causal:
        allowed &= np.tril(np.ones((T, T), dtype=bool))[None, None]
    allowed = np.broadcast_to(allowed, S.shape)
    Z = np.where(allowed, S, -np.inf)
    m = Z.max(axis=-1, keepdims=True)
    m = np.where(np.isfinite(m), m, 0.0)
    E = np.where(allowed, np.exp(Z - m), 0.0)
    s = E.sum(axis=-1, keepdims=True)
    return np.divide(E, s, out=np.zeros_like(E), where=s > 0)


def mha_forward(X, W_in, b_in, W_out, b_out, n_heads, key_mask=None, causal=False,
                drop_mask=None):
    """(Y, cache): Y (N, T, D); drop_mask (N, H, T, T) scaled keep-mask applied to P or None."""
    N, T, D = X.shape
    H, E = n_heads, X.shape[2] // n_heads
    QKV = X @ W_in.T + b_in
    q, k, v = (QKV[..., j * D:(j + 1) * D].reshape(N, T, H, E).transpose(0, 2, 1, 3)
               for j in range(3))
    S = q @ k.transpose(0, 1, 3, 2) / np.sqrt(E)
    P = attention_probabilities(S, key_mask, causal)
    Pd = P if drop_mask is None else P * drop_mask
    O = Pd @ v                                               # (N, H, T, E)
    C = O.transpose(0, 2, 1, 3).reshape(N, T, D)
    Y = C @ W_out.T + b_out
    return Y, (X, q, k, v, P, Pd, C, drop_mask)


def mha_backward(dY, W_in, W_out, cache):
    """(dX, dW_in, db_in, dW_out, db_out) of sum <dY, Y>."""
    X, q, k, v, P, Pd, C, drop_mask = cache
    N, T, D = X.shape
    H, E = q.shape[1], q.shape[3]
    dW_out = dY.reshape(-1, D).T @ C.reshape(-1, D)
    db_out = dY.reshape(-1, D).sum(axis=0)
    dC = dY @ W_out
    dO = dC.reshape(N, T, H, E).transpose(0, 2, 1, 3)
    dv = Pd.transpose(0, 1, 3, 2) @ dO
    dPd = dO @ v.transpose(0, 1, 3, 2)
    dP = dPd if drop_mask is None else dPd * drop_mask
    dS = P * (dP - (P * dP).sum(axis=-1, keepdims=True)) / np.sqrt(E)
    dq = dS @ k
    dk = dS.transpose(0, 1, 3, 2) @ q
    dQKV = np.concatenate([a.transpose(0, 2, 1, 3).reshape(N, T, D) for a in (dq, dk, dv)],
                          axis=-1)
    dW_in = dQKV.reshape(-1, 3 * D).T @ X.reshape(-1, D)
    db_in = dQKV.reshape(-1, 3 * D).sum(axis=0)
    dX = dQKV @ W_in
    return dX, dW_in, db_in, dW_out, db_out


def layer_norm(X, gamma, beta, eps=1e-5):
    mu = X.mean(axis=-1, keepdims=True)
    var = X.var(axis=-1, keepdims=True)
    return (X - mu) / np.sqrt(var + eps) * gamma + beta


def sinusoidal_table(T, D):
    """PE[t, 2k] = sin(t / 10000^(2k/D)), PE[t, 2k+1] = cos(t / 10000^(2k/D))."""
    pos = np.arange(T)[:, None]
    freq = np.exp(-np.log(10000.0) * (np.arange(0, D, 2) / D))
    pe = np.zeros((T, D))
    pe[:, 0::2] = np.sin(pos * freq)
    pe[:, 1::2] = np.cos(pos * freq[:D // 2])
    return pe
