"""Plain NumPy references for the recurrent kernels (SimpleRNN, LSTM, GRU), forward and backward.

Everything runs in float64 on batch-major arrays: X (N, T, F), Y (N, T, U) or (N, U).
`params` follow the layers' param_specs order:
    rnn  [W_x (F, U),  W_h (U, U),  b (U,)]
    lstm [W_x (F, 4U), W_h (U, 4U), b (4U,)]          gates i, f, g, o
    gru  [W_x (F, 3U), W_h (U, 3U), b_x (3U,), b_h (3U,)]   gates r, z, n
`reverse=True` runs the cell over the time-reversed sequence (Bidirectional's backward half);
a returned sequence is re-reversed so that Y[:, t] belongs to input step t.
"""
import numpy as np


def _sig(x):
    return 1.0 / (1.0 + np.exp(-x))


def recurrent_forward(cell, X, params, return_sequences=False, reverse=False):
    """Return (Y, cache) where cache holds what recurrent_backward needs."""
    X = np.asarray(X, dtype=np.float64)
    params = [np.asarray(p, dtype=np.float64) for p in params]
    if reverse:
        X = X[:, ::-1]
    N, T, _ = X.shape
    W_x, W_h = params[0], params[1]
    U = W_h.shape[0]
    h = np.zeros((N, U))
    c = np.zeros((N, U))
    steps = []
    hs = []
    for t in range(T):
        x = X[:, t]
        if cell == "rnn":
            b = params[2]
            h_new = np.tanh(x @ W_x + h @ W_h + b)
            steps.append((h.copy(), h_new))
        elif cell == "lstm":
            b = params[2]
            a = x @ W_x + h @ W_h + b
            i, f = _sig(a[:, :U]), _sig(a[:, U:2 * U])
            g, o = np.tanh(a[:, 2 * U:3 * U]), _sig(a[:, 3 * U:])
            c_new = f * c + i * g
            h_new = o * np.tanh(c_new)
            steps.append((h.copy(), c.copy(), i, f, g, o, c_new))
            c = c_new
        elif cell == "gru":
            b_x, b_h = params[2], params[3]
            ax = x @ W_x + b_x
            ah = h @ W_h + b_h
            r = _sig(ax[:, :U] + ah[:, :U])
            z = _sig(ax[:, U:2 * U] + ah[:, U:2 * U])
            hn = ah[:, 2 * U:]
            n = np.tanh(ax[:, 2 * U:] + r * hn)
            h_new = (1 - z) * n + z * h
            steps.append((h.copy(), r, z, n, hn))
        else:
            raise ValueError(cell)
        h = h_new
        hs.append(h)
    H = np.stack(hs, axis=1)
    if return_sequences:
        Y = H[:, ::-1] if reverse else H
    else:
        Y = h
    cache = (cell, X, params, steps, return_sequences, reverse)
    return np.ascontiguousarray(Y), cache


def recurrent_backward(cache, dY):
    """Gradients of sum(dY * Y): returns (dX, [d params in param order])."""
    cell, X, params, steps, return_sequences, reverse = cache
    dY = np.asarray(dY, dtype=np.float64)
    N, T, _ = X.shape
    W_x, W_h = params[0], params[1]
    U = W_h.shape[0]
    if return_sequences:
        dHs = dY[:, ::-1] if reverse else dY
    else:
        dHs = np.zeros((N, T, U))
        dHs[:, -1] = dY
    grads = [np.zeros_like(p) for p in params]
    dX = np.zeros_like(X)
    dh = np.zeros((N, U))
    dc = np.zeros((N, U))
    for t in range(T - 1, -1, -1):
        x = X[:, t]
        dh = dh + dHs[:, t]
        if cell == "rnn":
            h_prev, h_new = steps[t]
            da = dh * (1 - h_new ** 2)
            grads[0] += x.T @ da
            grads[1] += h_prev.T @ da
            grads[2] += da.sum(0)
            dX[:, t] = da @ W_x.T
            dh = da @ W_h.T
        elif cell == "lstm":
            h_prev, c_prev, i, f, g, o, c_new = steps[t]
            tc = np.tanh(c_new)
            dc = dc + dh * o * (1 - tc ** 2)
            da = np.concatenate([dc * g * i * (1 - i), dc * c_prev * f * (1 - f),
                                 dc * i * (1 - g ** 2), dh * tc * o * (1 - o)], axis=1)
            grads[0] += x.T @ da
            grads[1] += h_prev.T @ da
            grads[2] += da.sum(0)
            dX[:, t] = da @ W_x.T
            dh = da @ W_h.T
            dc = dc * f
        else:
            h_prev, r, z, n, hn = steps[t]
            dn = dh * (1 - z)
            dan = dn * (1 - n ** 2)
            daz = dh * (h_prev - n) * z * (1 - z)
            dar = dan * hn * r * (1 - r)
            dax = np.concatenate([dar, daz, dan], axis=1)
            dah = np.concatenate([dar, daz, dan * r], axis=1)
            grads[0] += x.T @ dax
            grads[1] += h_prev.T @ dah
            grads[2] += dax.sum(0)
            grads[3] += dah.sum(0)
            dX[:, t] = dax @ W_x.T
            dh = dh * z + dah @ W_h.T
    if reverse:
        dX = dX[:, ::-1]
    return np.ascontiguousarray(dX), grads
