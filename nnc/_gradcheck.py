"""check_gradients: backprop's gradient against central finite differences, in float64."""
import copy

import numpy as np


def _float64_copy(net):
    """A float64 twin of `net` holding the same weights (the original is left untouched)."""
    from nnc._network import Sequential
    twin = copy.deepcopy(net)
    if twin.dtype != np.float64:
        layers = [type(layer).from_config(layer.get_config()) for layer in net.layers]
        twin = Sequential(layers, loss=net.loss, input_shape=net.input_shape, dtype="float64",
                          random_state=0)
        twin.params[...] = net.params
    return twin


def check_gradients(model, X, y, eps=1e-6, sample_weight=None, max_params=2000,
                    random_state=0):
    """Max relative error between backprop's gradient and central finite differences.

    Parameters
    ----------
    model : Sequential or a fitted nnc estimator (its ``network_`` is checked, with the targets
        encoded as the estimator encodes them, e.g. class labels → indices).
    X, y : training data (a few samples are enough).
    eps : finite-difference step.
    max_params : check at most this many randomly chosen coordinates (all when fewer).

    Returns
    -------
    float : max over checked coordinates of |g_bp - g_fd| / max(|g_bp| + |g_fd|, floor), with
        floor = 1e-3 * max|g_fd|: coordinates a thousand times smaller than the largest (exact
        zeros of dead ReLUs, tiny sigmoid gradients) are judged against that scale instead of
        dividing rounding noise by ~0.
        The check runs in float64 on a copy: the model is not modified.  Layers with randomness
        (Dropout) are evaluated in inference mode.
    """
    if hasattr(model, "_gradcheck_problem"):
        net, X, y, sample_weight = model._gradcheck_problem(X, y, sample_weight)
    else:
        net = model
    from nnc._network import Sequential
    if not isinstance(net, Sequential):
        raise TypeError("check_gradients expects an nnc Sequential or a fitted nnc estimator")
    if not net.built:
        net.build(np.asarray(X).shape[1:])
    net = _float64_copy(net)
    if eps <= 0:
        raise ValueError(f"eps must be positive, got {eps}")
    Xc = net._check_X(X)
    yc = net._check_y(y, Xc.shape[0])
    from nnc._validation import check_sample_weight
    sw = check_sample_weight(sample_weight, Xc.shape[0], np.float64)
    net._ensure_batch(Xc.shape[0])

    def loss_at():
        Z = net._forward(Xc, False)
        return float(net._loss.loss_gradient(Z, yc, sw, net._ws_dZ[:Xc.shape[0]]))

    net._batch_loss_gradient(Xc, yc, sw, training=False)
    analytic = net.grads.copy()
    p = net.params
    rng = np.random.RandomState(random_state)
    idx = np.arange(p.size) if p.size <= max_params else rng.choice(p.size, max_params,
                                                                     replace=False)
    numeric = np.empty(idx.size)
    for j, i in enumerate(idx):
        old = p[i]
        p[i] = old + eps
        fp = loss_at()
        p[i] = old - eps
        fm = loss_at()
        p[i] = old
        numeric[j] = (fp - fm) / (2 * eps)
    a = analytic[idx]
    floor = max(1e-3 * float(np.max(np.abs(numeric))) if numeric.size else 0.0, 1e-12)
    return float(np.max(np.abs(a - numeric) / np.maximum(np.abs(a) + np.abs(numeric), floor)))
