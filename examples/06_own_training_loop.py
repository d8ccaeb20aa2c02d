"""Your own training loop: what backpropagation computes, layer by layer.

``Sequential.loss_and_gradients(X, y)`` runs the forward pass, the loss, and the backward pass, and
returns the loss with one list of gradient arrays per layer that has weights (the same numbers
sit in the flat buffer ``net.grads``).  ``check_gradients`` compares them with central finite
differences; an optimizer's ``step`` updates the flat ``net.params`` in place.

This script trains a 64-32-16-10 tanh network on scikit-learn's digits (8x8 images) with a loop
written out by hand and prints, every few epochs, the norms of each layer's weight and bias
gradients as backprop computes them, from the output layer back to the input (the chain rule: a
layer's dW is its input times the gradient arriving from the layer above).  The norms shrink as
training converges.

Run:  python examples/06_own_training_loop.py [--fast] [--no-plot] [--out FILE.png]
"""
import sys

import numpy as np

import nnc
from nnc.layers import Dense, Tanh
from nnc.optimizers import Adam

from _common import parse_args, plot_or_skip, pyplot, save_figure


def load_data(fast):
    """Digits (1797 x 64, pixel values 0..16 scaled to [0, 1]) or a synthetic stand-in."""
    try:
        from sklearn.datasets import load_digits
        X, y = load_digits(return_X_y=True)
        X = X / 16.0
    except ImportError:  # scikit-learn is optional: 10 noisy prototypes of 64 pixels
        rng = np.random.RandomState(0)
        protos = rng.rand(10, 64)
        y = rng.randint(0, 10, 1500)
        X = np.clip(protos[y] + 0.3 * rng.randn(len(y), 64), 0, 1)
    if fast:
        X, y = X[:500], y[:500]
    return X, y


def gradient_norms(net, grads):
    """[(layer name, ||dW||, ||db||)] for the layers that have weights."""
    owners = [layer for layer in net.layers if layer.param_specs()]
    return [(f"{i}:{type(layer).__name__}({layer.units})", float(np.linalg.norm(g[0])),
             float(np.linalg.norm(g[1]))) for i, (layer, g) in enumerate(zip(owners, grads))]


def plot(history, path):
    plt = pyplot()
    from matplotlib.ticker import MaxNLocator
    fig, ax = plt.subplots(figsize=(6, 4))
    epochs = [e for e, _ in history]
    names = [name for name, _, _ in history[0][1]]
    for j, name in enumerate(names):
        ax.plot(epochs, [norms[j][1] for _, norms in history], marker="o", label=name)
    ax.set_yscale("log")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))    # epochs are whole numbers
    ax.set_xlabel("epoch")
    ax.set_ylabel("||dL/dW|| (mean over the epoch's batches)")
    ax.set_title("Weight-gradient norm per layer")
    ax.legend()
    save_figure(fig, path)


def main(argv=None):
    args = parse_args(__doc__, argv, out="06_own_training_loop.png",
                      fast_help="less data, fewer epochs")

    X, y = load_data(args.fast)
    net = nnc.Sequential([Dense(32), Tanh(), Dense(16), Tanh(), Dense(10)],
                         loss="softmax_cross_entropy", input_shape=(64,), random_state=0)
    print(net.summary())

    # 1. backprop against finite differences, on a few samples (float64 copy of the network)
    err = nnc.check_gradients(net, X[:10], y[:10])
    print(f"check_gradients: max relative error {err:.2e} (backprop vs finite differences)")
    assert err < 1e-4, err

    # 2. the loop: shuffle, batch, loss_and_gradients, step
    opt = Adam(learning_rate=1e-2)
    rng = np.random.RandomState(0)
    epochs, batch_size = (6 if args.fast else 20), 64
    history = []
    for epoch in range(1, epochs + 1):
        order = rng.permutation(len(X))
        total, sums = 0.0, None
        n_batches = 0
        for start in range(0, len(X), batch_size):
            idx = order[start:start + batch_size]
            loss, grads = net.loss_and_gradients(X[idx], y[idx])
            opt.step(net.params, net.grads, n_decay=net.n_decay, n_samples=len(idx))
            norms = gradient_norms(net, grads)
            sums = norms if sums is None else [(a[0], a[1] + b[1], a[2] + b[2])
                                               for a, b in zip(sums, norms)]
            total += loss * len(idx)
            n_batches += 1
        mean_norms = [(name, w / n_batches, b / n_batches) for name, w, b in sums]
        history.append((epoch, mean_norms))
        if epoch == 1 or epoch % max(1, epochs // 4) == 0 or epoch == epochs:
            cells = "  ".join(f"{name} |dW| {w:.3f} |db| {b:.3f}" for name, w, b in mean_norms)
            print(f"epoch {epoch:3d}  loss {total / len(X):.4f}  {cells}")
    accuracy = float(np.mean(net.forward(X).argmax(axis=1) == y))
    print(f"training accuracy: {accuracy:.3f}")
    plot_or_skip(args, plot, history)
    return 0


if __name__ == "__main__":
    sys.exit(main())
