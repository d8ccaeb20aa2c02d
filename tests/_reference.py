"""Plain NumPy references for the dense and activation kernels (float64 math)."""
import numpy as np


def dense_forward(X, W, b):
    return X.astype(np.float64) @ W.astype(np.float64) + b.astype(np.float64)


def dense_backward(X, W, dY):
    X, W, dY = (a.astype(np.float64) for a in (X, W, dY))
    return X.T @ dY, dY.sum(axis=0), dY @ W.T


def activation(name, Z, slope=0.01):
    Z = Z.astype(np.float64)
    if name == "identity":
        return Z.copy()
    if name == "logistic":
        return 0.5 * (1 + np.tanh(0.5 * Z))
    if name == "tanh":
        return np.tanh(Z)
    if name == "relu":
        return np.maximum(Z, 0)
    if name == "leaky_relu":
        return np.where(Z > 0, Z, slope * Z)
    raise ValueError(name)


def activation_derivative(name, Z, slope=0.01):
    """f'(Z) computed from the pre-activation (independent of the kernels' output form)."""
    Z = Z.astype(np.float64)
    if name == "identity":
        return np.ones_like(Z)
    if name == "logistic":
        s = activation("logistic", Z)
        return s * (1 - s)
    if name == "tanh":
        return 1 - np.tanh(Z) ** 2
    if name == "relu":
        return (Z > 0).astype(np.float64)
    if name == "leaky_relu":
        return np.where(Z > 0, 1.0, slope)
    raise ValueError(name)
