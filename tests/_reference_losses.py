"""Plain NumPy references for the loss kernels (nnc._kernels._losses) and the optimizer kernels
(nnc._kernels._optim, nnc.optimizers): written for clarity, computed in float64 unless a dtype is
asked for, sharing no code with the kernels."""
import numpy as np
from scipy.special import expit, logsumexp, softmax, xlogy

EXP_CLIP = {np.dtype(np.float32): 80.0, np.dtype(np.float64): 700.0}

LOSS_NAMES = ("mse", "bce", "softmax_ce", "poisson")


def per_sample_loss(name, Z, Y=None, labels=None, clip=700.0):
    """(N,) per-sample losses and their (N, K) gradients w.r.t. Z, in float64."""
    Z = np.asarray(Z, dtype=np.float64)
    if name == "mse":
        Y = np.asarray(Y, dtype=np.float64)
        return 0.5 * np.sum((Z - Y) ** 2, axis=1), Z - Y
    if name == "bce":
        Y = np.asarray(Y, dtype=np.float64)
        # softplus(z) - y z, with softplus(z) = logaddexp(0, z)
        return np.sum(np.logaddexp(0.0, Z) - Y * Z, axis=1), expit(Z) - Y
    if name == "softmax_ce":
        n = Z.shape[0]
        loss = logsumexp(Z, axis=1) - Z[np.arange(n), labels]
        grad = softmax(Z, axis=1)
        grad[np.arange(n), labels] -= 1.0
        return loss, grad
    if name == "poisson":
        Y = np.asarray(Y, dtype=np.float64)
        e = np.exp(np.minimum(Z, clip))
        return np.sum(xlogy(Y, Y) - Y * Z - Y + e, axis=1), e - Y
    raise ValueError(name)


def loss_gradient(name, Z, Y=None, labels=None, sample_weight=None, clip=700.0):
    """Weighted mean loss and d(mean loss)/dZ (float64)."""
    loss, grad = per_sample_loss(name, Z, Y, labels, clip)
    n = loss.shape[0]
    w = np.ones(n) if sample_weight is None else np.asarray(sample_weight, dtype=np.float64)
    return float(np.sum(w * loss) / w.sum()), grad * (w / w.sum())[:, None]



def softmax_link(Z):
    """Row-wise softmax in float64 with the limits for infinite logits: a row whose maximum is
    +inf puts equal mass on its +inf entries, a row of -inf only is uniform; finite rows with
    scipy's softmax (exp(z - max z), normalised)."""
    Z = np.asarray(Z, dtype=np.float64)
    out = np.empty_like(Z)
    for i, z in enumerate(Z):
        top = z == np.inf
        if top.any():
            out[i] = top / top.sum()
        elif (z == -np.inf).all():
            out[i] = 1.0 / z.size
        else:
            with np.errstate(over="ignore"):   # z - max z may be -inf: exp -> 0
                out[i] = softmax(z)
    return out

# ---------------------------------------------------------------- optimizer updates

def optimizer_steps(kind, p, grads_seq, dtype, lr, n_decay, decay, momentum=0.0, nesterov=False,
                    rho=0.9, beta_1=0.9, beta_2=0.999, eps=1e-8):
    """Apply len(grads_seq) steps of `kind` to a copy of p with NumPy in `dtype` (scalars cast
    to `dtype`, Adam's lr_t computed in float64 then cast); return (p, state dict)."""
    dt = np.dtype(dtype)
    c = lambda x: dt.type(x)  # noqa: E731
    p = np.array(p, dtype=dt)
    s1 = np.zeros_like(p)
    s2 = np.zeros_like(p)
    for t, g in enumerate(grads_seq, start=1):
        g = np.array(g, dtype=dt)
        g[:n_decay] = g[:n_decay] + c(decay) * p[:n_decay]
        if kind == "sgd":
            if momentum == 0:
                p = p - c(lr) * g
            else:
                s1 = c(momentum) * s1 - c(lr) * g
                if nesterov:
                    p = p + (c(momentum) * s1 - c(lr) * g)
                else:
                    p = p + s1
        elif kind == "adagrad":
            s1 = s1 + g * g
            p = p - c(lr) * g / (np.sqrt(s1) + c(eps))
        elif kind == "rmsprop":
            s1 = c(rho) * s1 + c(1 - rho) * (g * g)
            p = p - c(lr) * g / (np.sqrt(s1) + c(eps))
        elif kind == "adam":
            s1 = c(beta_1) * s1 + c(1 - beta_1) * g
            s2 = c(beta_2) * s2 + c(1 - beta_2) * (g * g)
            lr_t = lr * np.sqrt(1 - beta_2 ** t) / (1 - beta_1 ** t)
            p = p - c(lr_t) * s1 / (np.sqrt(s2) + c(eps))
        else:
            raise ValueError(kind)
        assert p.dtype == dt
    return p, {"s1": s1, "s2": s2}
