"""Six optimizers, one network, one starting point: how fast does each bring the loss down?

A 2-16-16-3 ReLU network learns a three-arm spiral (softmax cross-entropy).  The network is built
once; its flat parameter buffer ``net.params`` is copied, and before each optimizer the copy is
written back, so every run starts from the very same weights and sees the same mini-batches.

    gradient descent   p -= lr g
    momentum           v = mu v - lr g;  p += v
    Nesterov           v = mu v - lr g;  p += mu v - lr g
    AdaGrad            G += g^2;  p -= lr g / (sqrt(G) + eps)
    RMSprop            G = rho G + (1 - rho) g^2;  p -= lr g / (sqrt(G) + eps)
    Adam               bias-corrected first and second moments (Kingma & Ba)

Run:  python examples/02_optimizers.py [--fast] [--no-plot] [--out FILE.png]
"""
import sys

import numpy as np

import nnc
from nnc.layers import Dense, ReLU
from nnc.optimizers import SGD, AdaGrad, RMSprop, Adam

from _common import parse_args, plot_or_skip, pyplot, save_figure


def make_spiral(n_per_class, n_classes=3, seed=0):
    """cs231n's spiral: n_classes arms of n_per_class noisy points each."""
    rng = np.random.RandomState(seed)
    X = np.zeros((n_per_class * n_classes, 2))
    y = np.zeros(n_per_class * n_classes, dtype=int)
    for k in range(n_classes):
        rows = slice(n_per_class * k, n_per_class * (k + 1))
        r = np.linspace(0.0, 1.0, n_per_class)
        t = np.linspace(k * 4.0, (k + 1) * 4.0, n_per_class) + rng.randn(n_per_class) * 0.2
        X[rows] = np.column_stack([r * np.sin(t), r * np.cos(t)])
        y[rows] = k
    return X, y


def optimizers():
    """Name -> a fresh optimizer, with a learning rate that suits it on this problem."""
    return {
        "gradient descent": SGD(learning_rate=0.2),
        "momentum": SGD(learning_rate=0.02, momentum=0.9),
        "Nesterov": SGD(learning_rate=0.02, momentum=0.9, nesterov=True),
        "AdaGrad": AdaGrad(learning_rate=0.1),
        "RMSprop": RMSprop(learning_rate=0.003),
        "Adam": Adam(learning_rate=0.005),
    }


def train(net, initial, opt, X, y, epochs, batch_size, seed=0):
    """Restore the initial weights, run mini-batch training; returns the loss after each epoch."""
    net.params[...] = initial          # the same starting point for every optimizer
    rng = np.random.RandomState(seed)  # ... and the same batches
    curve = []
    for _ in range(epochs):
        order = rng.permutation(len(X))
        for start in range(0, len(X), batch_size):
            idx = order[start:start + batch_size]
            net.loss_and_gradients(X[idx], y[idx])
            opt.step(net.params, net.grads, n_decay=net.n_decay, n_samples=len(idx))
        loss, _ = net.loss_and_gradients(X, y)   # full-data loss for the curve
        curve.append(loss)
    return curve


def plot(curves, path):
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    for name, curve in curves.items():
        ax.plot(np.arange(1, len(curve) + 1), curve, label=name)
    ax.set_yscale("log")
    ax.set_xlabel("epoch")
    ax.set_ylabel("training loss (cross-entropy)")
    ax.set_title("Same network, same start, six optimizers")
    ax.legend(loc="upper right")
    save_figure(fig, path)


def main(argv=None):
    args = parse_args(__doc__, argv, out="02_optimizers.png",
                      fast_help="less data, fewer epochs")

    X, y = make_spiral(60 if args.fast else 100)
    epochs = 30 if args.fast else 200
    net = nnc.Sequential([Dense(16), ReLU(), Dense(16), ReLU(), Dense(3)],
                         loss="softmax_cross_entropy", input_shape=(2,), random_state=0)
    initial = net.params.copy()
    start_loss, _ = net.loss_and_gradients(X, y)
    print(f"{net.n_params} parameters, initial loss {start_loss:.4f}, {epochs} epochs")
    curves = {}
    for name, opt in optimizers().items():
        curves[name] = train(net, initial, opt, X, y, epochs, batch_size=32)
        accuracy = float(np.mean(net.forward(X).argmax(axis=1) == y))
        print(f"{name:>16}: final loss {curves[name][-1]:.4f}  accuracy {accuracy:.3f}")
    plot_or_skip(args, plot, curves)
    return 0


if __name__ == "__main__":
    sys.exit(main())
