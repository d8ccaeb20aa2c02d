"""Plain NumPy references for the convolution, pooling and dropout kernels (NCHW).

Written for clarity, not speed: explicit padding copies and loops over kernel offsets / windows.
Accumulation happens in float64 whatever the input dtype; results are cast back to it.
"""
import numpy as np


def out_size(size, kernel, stride, pad):
    return (size + 2 * pad - kernel) // stride + 1


def conv2d_forward(X, W, b, stride=(1, 1), padding=(0, 0)):
    """Y[n, f, oh, ow] = b[f] + sum_{c,kh,kw} W[f, c, kh, kw] Xpad[n, c, oh SH + kh, ow SW + kw]."""
    (SH, SW), (PH, PW) = stride, padding
    N, C, H, Wd = X.shape
    F, _, KH, KW = W.shape
    OH, OW = out_size(H, KH, SH, PH), out_size(Wd, KW, SW, PW)
    Xp = np.pad(X.astype(np.float64), ((0, 0), (0, 0), (PH, PH), (PW, PW)))
    Y = np.zeros((N, F, OH, OW)) + np.asarray(b, np.float64)[None, :, None, None]
    for kh in range(KH):
        for kw in range(KW):
            patch = Xp[:, :, kh:kh + SH * (OH - 1) + 1:SH, kw:kw + SW * (OW - 1) + 1:SW]
            Y += np.einsum("nchw,fc->nfhw", patch, W[:, :, kh, kw].astype(np.float64))
    return Y.astype(X.dtype)


def conv2d_backward(X, W, dY, stride=(1, 1), padding=(0, 0)):
    """(dX, dW, db) of sum(Y * dY)."""
    (SH, SW), (PH, PW) = stride, padding
    N, C, H, Wd = X.shape
    F, _, KH, KW = W.shape
    OH, OW = dY.shape[2], dY.shape[3]
    Xp = np.pad(X.astype(np.float64), ((0, 0), (0, 0), (PH, PH), (PW, PW)))
    dXp = np.zeros_like(Xp)
    dW = np.zeros(W.shape)
    dY64 = dY.astype(np.float64)
    for kh in range(KH):
        for kw in range(KW):
            sl = (slice(None), slice(None), slice(kh, kh + SH * (OH - 1) + 1, SH),
                  slice(kw, kw + SW * (OW - 1) + 1, SW))
            dW[:, :, kh, kw] = np.einsum("nfhw,nchw->fc", dY64, Xp[sl])
            dXp[sl] += np.einsum("nfhw,fc->nchw", dY64, W[:, :, kh, kw].astype(np.float64))
    dX = dXp[:, :, PH:PH + H, PW:PW + Wd]
    db = dY64.sum(axis=(0, 2, 3))
    return dX.astype(X.dtype), dW.astype(X.dtype), db.astype(X.dtype)


def im2col(X, KH, KW, stride=(1, 1), padding=(0, 0)):
    """cols (C KH KW, N OH OW): channel-major column matrix, sample n in columns [n P, (n+1) P)."""
    (SH, SW), (PH, PW) = stride, padding
    N, C, H, Wd = X.shape
    OH, OW = out_size(H, KH, SH, PH), out_size(Wd, KW, SW, PW)
    Xp = np.pad(X, ((0, 0), (0, 0), (PH, PH), (PW, PW)))
    cols = np.empty((C, KH, KW, N, OH, OW), dtype=X.dtype)
    for kh in range(KH):
        for kw in range(KW):
            patch = Xp[:, :, kh:kh + SH * (OH - 1) + 1:SH, kw:kw + SW * (OW - 1) + 1:SW]
            cols[:, kh, kw] = patch.transpose(1, 0, 2, 3)
    return cols.reshape(C * KH * KW, N * OH * OW)


def col2im(cols, X_shape, KH, KW, stride=(1, 1), padding=(0, 0)):
    """Adjoint of im2col."""
    (SH, SW), (PH, PW) = stride, padding
    N, C, H, Wd = X_shape
    OH, OW = out_size(H, KH, SH, PH), out_size(Wd, KW, SW, PW)
    c6 = cols.astype(np.float64).reshape(C, KH, KW, N, OH, OW)
    dXp = np.zeros((N, C, H + 2 * PH, Wd + 2 * PW))
    for kh in range(KH):
        for kw in range(KW):
            dXp[:, :, kh:kh + SH * (OH - 1) + 1:SH, kw:kw + SW * (OW - 1) + 1:SW] += \
                c6[:, kh, kw].transpose(1, 0, 2, 3)
    return dXp[:, :, PH:PH + H, PW:PW + Wd].astype(cols.dtype)


def im2col_grid(X, KH, KW):
    """Stride-1 unpadded columns on the full-width grid: (N, C KH KW, L), L = (OH - 1) W + OW,
    row (c, kh, kw) of sample n = X[n, c].ravel()[kh W + kw : kh W + kw + L]."""
    N, C, H, Wd = X.shape
    OH, OW = H - KH + 1, Wd - KW + 1
    L = (OH - 1) * Wd + OW
    flat = X.reshape(N, C, H * Wd)
    cols = np.empty((N, C, KH, KW, L), dtype=X.dtype)
    for kh in range(KH):
        for kw in range(KW):
            cols[:, :, kh, kw] = flat[:, :, kh * Wd + kw:kh * Wd + kw + L]
    return cols.reshape(N, C * KH * KW, L)


def col2im_grid(cols, X_shape, KH, KW):
    """Adjoint of im2col_grid."""
    N, C, H, Wd = X_shape
    L = cols.shape[2]
    c5 = cols.astype(np.float64).reshape(N, C, KH, KW, L)
    dX = np.zeros((N, C, H * Wd))
    for kh in range(KH):
        for kw in range(KW):
            dX[:, :, kh * Wd + kw:kh * Wd + kw + L] += c5[:, :, kh, kw]
    return dX.reshape(X_shape).astype(cols.dtype)


def _windows(X, KH, KW, SH, SW):
    N, C, H, Wd = X.shape
    OH, OW = out_size(H, KH, SH, 0), out_size(Wd, KW, SW, 0)
    for oh in range(OH):
        for ow in range(OW):
            yield oh, ow, X[:, :, oh * SH:oh * SH + KH, ow * SW:ow * SW + KW]


def _pad4(X, padding, value):
    PH, PW = padding
    return np.pad(X, ((0, 0), (0, 0), (PH, PH), (PW, PW)), constant_values=value)


def maxpool2d_forward(X, pool=(2, 2), stride=None, padding=(0, 0)):
    """(Y, argmax) with argmax the flat index ih W + iw (in the unpadded input) of the first
    maximum in each window; padding adds -inf."""
    KH, KW = pool
    SH, SW = stride or pool
    PH, PW = padding
    N, C, H, Wd = X.shape
    Xp = _pad4(X, padding, -np.inf)
    OH, OW = out_size(H, KH, SH, PH), out_size(Wd, KW, SW, PW)
    Y = np.empty((N, C, OH, OW), dtype=X.dtype)
    arg = np.empty((N, C, OH, OW), dtype=np.int64)
    for oh, ow, win in _windows(Xp, KH, KW, SH, SW):
        flat = win.reshape(N, C, KH * KW)
        k = flat.argmax(axis=2)
        Y[:, :, oh, ow] = np.take_along_axis(flat, k[..., None], 2)[..., 0]
        arg[:, :, oh, ow] = (oh * SH + k // KW - PH) * Wd + ow * SW + k % KW - PW
    return Y, arg


def maxpool2d_backward(dY, X, pool=(2, 2), stride=None, padding=(0, 0)):
    _, arg = maxpool2d_forward(X, pool, stride, padding)
    N, C, H, Wd = X.shape
    dX = np.zeros((N, C, H * Wd))
    n_idx, c_idx = np.meshgrid(np.arange(N), np.arange(C), indexing="ij")
    for oh in range(dY.shape[2]):
        for ow in range(dY.shape[3]):
            np.add.at(dX, (n_idx, c_idx, arg[:, :, oh, ow]), dY[:, :, oh, ow].astype(np.float64))
    return dX.reshape(X.shape).astype(X.dtype)


def _window_divisors(shape, pool, stride, padding, count_include_pad):
    """(OH, OW) divisor of each window: KH KW, or the number of input values it holds."""
    KH, KW = pool
    if count_include_pad:
        return KH * KW
    ones = _pad4(np.ones((1, 1) + tuple(shape[2:])), padding, 0.0)
    SH, SW = stride or pool
    OH, OW = out_size(shape[2], KH, SH, padding[0]), out_size(shape[3], KW, SW, padding[1])
    count = np.empty((OH, OW))
    for oh, ow, win in _windows(ones, KH, KW, SH, SW):
        count[oh, ow] = win.sum()
    return count


def avgpool2d_forward(X, pool=(2, 2), stride=None, padding=(0, 0), count_include_pad=True):
    KH, KW = pool
    SH, SW = stride or pool
    N, C, H, Wd = X.shape
    OH, OW = out_size(H, KH, SH, padding[0]), out_size(Wd, KW, SW, padding[1])
    Y = np.empty((N, C, OH, OW))
    for oh, ow, win in _windows(_pad4(X.astype(np.float64), padding, 0.0), KH, KW, SH, SW):
        Y[:, :, oh, ow] = win.sum(axis=(2, 3))
    Y /= _window_divisors(X.shape, pool, stride, padding, count_include_pad)
    return Y.astype(X.dtype)


def avgpool2d_backward(dY, X_shape, pool=(2, 2), stride=None, dtype=np.float64, padding=(0, 0),
                       count_include_pad=True):
    KH, KW = pool
    SH, SW = stride or pool
    PH, PW = padding
    N, C, H, Wd = X_shape
    g = dY.astype(np.float64) / _window_divisors(X_shape, pool, stride, padding,
                                                 count_include_pad)
    dXp = np.zeros((N, C, H + 2 * PH, Wd + 2 * PW))
    for oh in range(dY.shape[2]):
        for ow in range(dY.shape[3]):
            dXp[:, :, oh * SH:oh * SH + KH, ow * SW:ow * SW + KW] += g[:, :, oh, ow, None, None]
    return dXp[:, :, PH:PH + H, PW:PW + Wd].astype(dtype)


def global_pool_forward(X, is_max, channels_last):
    """(Y (N, C), argmax (N, C) position of the first maximum) over every position."""
    N = X.shape[0]
    X3 = X.reshape(N, -1, X.shape[-1]) if channels_last else \
        X.reshape(N, X.shape[1], -1).transpose(0, 2, 1)        # (N, S, C)
    if is_max:
        arg = X3.argmax(axis=1)
        return np.take_along_axis(X3, arg[:, None, :], 1)[:, 0], arg
    return X3.astype(np.float64).mean(axis=1).astype(X.dtype), None


def global_pool_backward(dY, X, is_max, channels_last):
    N = X.shape[0]
    S = X.size // (N * dY.shape[1])
    if is_max:
        _, arg = global_pool_forward(X, True, channels_last)
        dX3 = np.zeros((N, S, dY.shape[1]))
        np.put_along_axis(dX3, arg[:, None, :], dY[:, None, :].astype(np.float64), 1)
    else:
        dX3 = np.repeat(dY[:, None, :].astype(np.float64) / S, S, axis=1)
    if channels_last:
        return dX3.reshape(X.shape).astype(X.dtype)
    return dX3.transpose(0, 2, 1).reshape(X.shape).astype(X.dtype)


def masked_global_pool_forward(X, mask, is_max):
    """Channels-last (N, T, F) pooling over the positions with mask True only: (Y (N, F),
    argmax (N, F) or None); a sample with no real position gives 0 (argmax 0)."""
    N, T, F = X.shape
    Y = np.zeros((N, F), X.dtype)
    arg = np.zeros((N, F), np.intc)
    for n in range(N):
        real = np.flatnonzero(mask[n])
        if real.size == 0:
            continue
        if is_max:
            j = X[n, real].argmax(axis=0)
            arg[n] = real[j]
            Y[n] = X[n, real[j], np.arange(F)]
        else:
            Y[n] = X[n, real].astype(np.float64).mean(axis=0)
    return Y, (arg if is_max else None)


def masked_global_pool_backward(dY, X, mask, is_max):
    """dX (N, T, F) of masked_global_pool_forward: 0 at the padded positions and for a sample
    with no real position."""
    N, T, F = X.shape
    dX = np.zeros((N, T, F))
    _, arg = masked_global_pool_forward(X, mask, is_max)
    for n in range(N):
        real = np.flatnonzero(mask[n])
        if real.size == 0:
            continue
        if is_max:
            dX[n, arg[n], np.arange(F)] = dY[n]
        else:
            dX[n, real] = dY[n].astype(np.float64) / real.size
    return dX.astype(X.dtype)


def dropout_forward(X, U, rate):
    """Inverted dropout with uniforms U: keep where U >= rate, scale by 1 / (1 - rate)."""
    mask = (U >= rate).astype(np.float64) / (1.0 - rate)
    return (X.astype(np.float64) * mask).astype(X.dtype), mask.astype(X.dtype)


# per-dtype tolerance: max |actual - expected| <= tol * max(1, max |expected|)
TOL = {np.dtype(np.float32): 1e-4, np.dtype(np.float64): 1e-10}


def assert_close(actual, expected, dtype=None):
    """Max-norm comparison scaled by the size of `expected`, with the tolerance of `dtype`."""
    actual = np.asarray(actual)
    expected = np.asarray(expected)
    assert actual.shape == expected.shape, (actual.shape, expected.shape)
    tol = TOL[np.dtype(dtype if dtype is not None else actual.dtype)]
    if actual.size == 0:
        return
    scale = max(1.0, float(np.max(np.abs(expected.astype(np.float64)))))
    err = float(np.max(np.abs(actual.astype(np.float64) - expected.astype(np.float64))))
    assert err <= tol * scale, f"max abs error {err:.3g} > {tol:.1g} * {scale:.3g}"
