"""Shared layer test harness: build a lone layer on its own buffers, then check its backward pass
against central finite differences of the scalar  L = sum(forward(X) * R)  in float64.

Usage (in any layer test)::

    err_x, err_p = check_layer_gradients(Conv2D(4, 3), input_shape=(2, 7, 7), n=3)
    assert err_x < 1e-6 and err_p < 1e-6
"""
import numpy as np


def build_layer(layer, input_shape, batch_size, dtype=np.float64, seed=0):
    """Build, bind (to fresh flat buffers), initialise and allocate a lone layer.

    Returns (params_flat, grads_flat)."""
    rng = np.random.RandomState(seed)
    layer.build(tuple(input_shape), np.dtype(dtype))
    specs = layer.param_specs()
    sizes = [int(np.prod(s.shape)) for s in specs]
    total = int(sum(sizes))
    params = np.zeros(total, dtype=dtype)
    grads = np.zeros(total, dtype=dtype)
    pv, gv, off = [], [], 0
    for spec, size in zip(specs, sizes):
        pv.append(params[off:off + size].reshape(spec.shape))
        gv.append(grads[off:off + size].reshape(spec.shape))
        off += size
    layer.bind(pv, gv)
    layer.init_params(rng)
    # perturb biases too so the check does not sit on a symmetric point
    params += 0.1 * rng.standard_normal(total).astype(dtype)
    layer.allocate(batch_size)
    return params, grads


def _rel_err(a, b):
    a = np.asarray(a, dtype=np.float64).ravel()
    b = np.asarray(b, dtype=np.float64).ravel()
    if a.size == 0:
        return 0.0
    # norm-wise relative error: robust to individual near-zero coordinates (relu kinks, pooling)
    return float(np.linalg.norm(a - b) / max(1e-12, np.linalg.norm(a) + np.linalg.norm(b)))


def check_layer_gradients(layer, input_shape, n=3, eps=1e-6, seed=0, X=None, training=True,
                          max_coords=200):
    """Return (max rel. error of dX, max rel. error of the parameter gradients).

    `training` is passed to forward (Dropout needs a fixed mask: the harness re-seeds nothing, so
    layers with randomness must be checked with training=False or a deterministic mask)."""
    rng = np.random.RandomState(seed + 1)
    params, grads = build_layer(layer, input_shape, n, np.float64, seed)
    if X is None:
        X = rng.standard_normal((n,) + tuple(input_shape))
    X = np.ascontiguousarray(X, dtype=np.float64)
    Y = layer.forward(X.copy(), training)
    R = rng.standard_normal(Y.shape)

    def f():
        return float(np.sum(layer.forward(X_work, training) * R))

    # analytic
    X_work = X.copy()
    layer.forward(X_work, training)
    dX = layer.backward(R.copy(), True)
    dX = None if dX is None else np.array(dX, copy=True)
    g_analytic = grads.copy()

    # numeric dX on a subset of coordinates
    err_x = 0.0
    if dX is not None:
        idx = rng.choice(X.size, size=min(max_coords, X.size), replace=False)
        num = np.empty(idx.size)
        for j, i in enumerate(idx):
            X_work = X.copy()
            X_work.flat[i] += eps
            fp = f()
            X_work = X.copy()
            X_work.flat[i] -= eps
            fm = f()
            num[j] = (fp - fm) / (2 * eps)
        err_x = _rel_err(num, dX.ravel()[idx])

    # numeric parameter gradients
    err_p = 0.0
    if params.size:
        X_work = X.copy()
        idx = rng.choice(params.size, size=min(max_coords, params.size), replace=False)
        num = np.empty(idx.size)
        for j, i in enumerate(idx):
            old = params[i]
            params[i] = old + eps
            X_work = X.copy()
            fp = f()
            params[i] = old - eps
            X_work = X.copy()
            fm = f()
            params[i] = old
            num[j] = (fp - fm) / (2 * eps)
        err_p = _rel_err(num, g_analytic[idx])
    return err_x, err_p
