"""Plain NumPy references for the normalization, embedding and global pooling kernels.

Written from the textbook formulas, in float64 whatever the input dtype (results cast back):
LayerNorm / BatchNorm as y = (x - mean) / sqrt(var + eps) * gamma + beta with the gradients
derived by hand (dx = gamma rstd (dy - mean(dy) - xhat mean(dy xhat)) over the normalised values),
the embedding as fancy indexing with ``np.add.at`` for the scatter.
"""
import numpy as np


def layernorm_forward(X, gamma, beta, eps, k=1):
    """Normalise over the last k axes; returns (Y, mean, rstd) with mean / rstd of shape
    X.shape[:-k]."""
    X64 = X.astype(np.float64)
    axes = tuple(range(X.ndim - k, X.ndim))
    mean = X64.mean(axis=axes, keepdims=True)
    var = ((X64 - mean) ** 2).mean(axis=axes, keepdims=True)
    rstd = 1.0 / np.sqrt(var + eps)
    Y = (X64 - mean) * rstd * gamma.astype(np.float64) + beta.astype(np.float64)
    sq = tuple(range(X.ndim - k, X.ndim))
    return Y.astype(X.dtype), mean.squeeze(sq), rstd.squeeze(sq)


def layernorm_backward(dY, X, gamma, eps, k=1):
    """(dX, dgamma, dbeta) of sum(Y * dY)."""
    X64, dY64 = X.astype(np.float64), dY.astype(np.float64)
    axes = tuple(range(X.ndim - k, X.ndim))
    lead = tuple(range(X.ndim - k))
    mean = X64.mean(axis=axes, keepdims=True)
    var = ((X64 - mean) ** 2).mean(axis=axes, keepdims=True)
    rstd = 1.0 / np.sqrt(var + eps)
    xhat = (X64 - mean) * rstd
    g = dY64 * gamma.astype(np.float64)
    dX = rstd * (g - g.mean(axis=axes, keepdims=True)
                 - xhat * (g * xhat).mean(axis=axes, keepdims=True))
    return (dX.astype(X.dtype), (dY64 * xhat).sum(axis=lead).astype(X.dtype),
            dY64.sum(axis=lead).astype(X.dtype))


def _channel_view(X):
    """(N, C, S) float64 view of (N, C, ...) samples."""
    return X.astype(np.float64).reshape(X.shape[0], X.shape[1], -1)


def batchnorm_forward(X, gamma, beta, running_mean, running_var, training, momentum, eps):
    """(Y, new running mean, new running var, mean used, rstd used) per channel (axis 1)."""
    X3 = _channel_view(X)
    rm, rv = running_mean.astype(np.float64), running_var.astype(np.float64)
    if training:
        M = X3.shape[0] * X3.shape[2]
        mean = X3.mean(axis=(0, 2))
        var = X3.var(axis=(0, 2))
        rm = (1 - momentum) * rm + momentum * mean
        if M > 1:
            rv = (1 - momentum) * rv + momentum * var * M / (M - 1)
    else:
        mean, var = rm, rv
    rstd = 1.0 / np.sqrt(var + eps)
    Y = (X3 - mean[None, :, None]) * (rstd * gamma)[None, :, None] + beta[None, :, None]
    return (Y.reshape(X.shape).astype(X.dtype), rm.astype(X.dtype), rv.astype(X.dtype), mean,
            rstd)


def batchnorm_backward(dY, X, gamma, running_mean, running_var, training, eps):
    """(dX, dgamma, dbeta, drunning_mean, drunning_var) of sum(Y * dY); the running statistics'
    gradients are zero after a training forward."""
    X3, dY3 = _channel_view(X), _channel_view(dY)
    g = gamma.astype(np.float64)
    if training:
        mean, var = X3.mean(axis=(0, 2)), X3.var(axis=(0, 2))
    else:
        mean, var = running_mean.astype(np.float64), running_var.astype(np.float64)
    rstd = 1.0 / np.sqrt(var + eps)
    xhat = (X3 - mean[None, :, None]) * rstd[None, :, None]
    dgamma = (dY3 * xhat).sum(axis=(0, 2))
    dbeta = dY3.sum(axis=(0, 2))
    C = X3.shape[1]
    if training:
        M = X3.shape[0] * X3.shape[2]
        dX = (g * rstd)[None, :, None] * (dY3 - dbeta[None, :, None] / M
                                          - xhat * dgamma[None, :, None] / M)
        drm, drv = np.zeros(C), np.zeros(C)
    else:
        dX = (g * rstd)[None, :, None] * dY3
        drm = -g * rstd * dbeta
        drv = -0.5 * g * rstd ** 3 * (dY3 * (X3 - mean[None, :, None])).sum(axis=(0, 2))
    cast = [a.astype(X.dtype) for a in (dgamma, dbeta, drm, drv)]
    return (dX.reshape(X.shape).astype(X.dtype), *cast)


def embedding_forward(ids, W):
    return W[ids]


def embedding_backward(ids, dY, n_tokens, padding_idx=None):
    """dW (n_tokens, dim): dY rows summed per id (padding_idx rows get nothing)."""
    dW = np.zeros((n_tokens, dY.shape[-1]))
    flat_ids = ids.reshape(-1)
    flat_dY = dY.reshape(-1, dY.shape[-1]).astype(np.float64)
    keep = flat_ids != (-1 if padding_idx is None else padding_idx)
    np.add.at(dW, flat_ids[keep], flat_dY[keep])
    return dW.astype(dY.dtype)
