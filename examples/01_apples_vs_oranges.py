"""Apples vs oranges: a straight line that separates two kinds of fruit, found by gradient descent.

Each fruit is a point (radius x in cm, colour value y in [0, 1]: 0 green-red, 1 orange).  A network
with one Dense(1) unit computes z = w1 x + w2 y + b; the binary cross-entropy loss pushes z above 0
for oranges and below 0 for apples.  The boundary z = 0 is the line  y = m x + c  with
m = -w1 / w2 and c = -b / w2.

The loop is written out by hand: ``loss_and_gradients`` (forward, loss, backward) then one
``SGD.step`` (params -= learning_rate * grads), repeated.  The inputs are standardised first (plain
gradient descent converges much faster on centred, unit-scale inputs); the line is converted back
to centimetres before printing.

Run:  python examples/01_apples_vs_oranges.py [--fast] [--no-plot] [--out FILE.png]
"""
import sys

import numpy as np

import nnc
from nnc.layers import Dense
from nnc.optimizers import SGD

from _common import parse_args, plot_or_skip, pyplot, save_figure


def make_fruit(n_per_class, seed=0):
    """Synthetic fruit: apples are smaller and redder than oranges. Returns X (n, 2), y (n,) 0/1."""
    rng = np.random.RandomState(seed)
    apples = np.column_stack([rng.normal(3.6, 0.45, n_per_class),    # radius (cm)
                              rng.normal(0.30, 0.12, n_per_class)])  # colour value
    oranges = np.column_stack([rng.normal(4.4, 0.45, n_per_class),
                               rng.normal(0.70, 0.12, n_per_class)])
    X = np.vstack([apples, oranges])
    y = np.r_[np.zeros(n_per_class), np.ones(n_per_class)]
    return X, y


def fit_line(X, y, epochs, learning_rate=0.5, verbose=True):
    """Full-batch gradient descent on a one-unit network; returns (m, c, net, mean, scale)."""
    mean, scale = X.mean(axis=0), X.std(axis=0)
    Xs = (X - mean) / scale
    net = nnc.Sequential([Dense(1)], loss="binary_cross_entropy", input_shape=(2,),
                         random_state=0)
    opt = SGD(learning_rate=learning_rate)
    for epoch in range(1, epochs + 1):
        loss, _ = net.loss_and_gradients(Xs, y)      # forward + loss + backward, fills net.grads
        opt.step(net.params, net.grads, n_decay=net.n_decay, n_samples=len(Xs))
        if verbose and (epoch == 1 or epoch % max(1, epochs // 5) == 0):
            print(f"epoch {epoch:4d}  loss {loss:.4f}")
    (W, b), = net.get_weights()
    # standardised boundary: w1 (x - mx)/sx + w2 (y - my)/sy + b = 0, solved for y
    w1, w2 = W[0, 0] / scale[0], W[1, 0] / scale[1]
    b0 = b[0] - w1 * mean[0] - w2 * mean[1]
    return -w1 / w2, -b0 / w2, net, mean, scale


def plot(X, y, m, c, path):
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(5, 4))
    ax.scatter(*X[y == 0].T, s=12, c="tab:red", label="apples")
    ax.scatter(*X[y == 1].T, s=12, c="tab:orange", label="oranges")
    xs = np.linspace(X[:, 0].min(), X[:, 0].max(), 2)
    ax.plot(xs, m * xs + c, "k-", label=f"y = {m:.2f} x + {c:.2f}")
    ax.set_xlabel("radius (cm)")
    ax.set_ylabel("colour value")
    ax.set_ylim(X[:, 1].min() - 0.1, X[:, 1].max() + 0.1)
    ax.legend(loc="upper left")
    ax.set_title("A straight-line classifier")
    save_figure(fig, path)


def main(argv=None):
    args = parse_args(__doc__, argv, out="01_apples_vs_oranges.png",
                      fast_help="less data, fewer epochs")

    X, y = make_fruit(50 if args.fast else 200)
    m, c, net, mean, scale = fit_line(X, y, epochs=100 if args.fast else 500)
    proba = net.predict((X - mean) / scale)[:, 0]
    accuracy = float(np.mean((proba > 0.5) == (y == 1)))
    print(f"decision boundary: colour = {m:.3f} * radius + {c:.3f}")
    print(f"accuracy: {accuracy:.3f} on {len(y)} fruit")
    plot_or_skip(args, plot, X, y, m, c)
    return 0


if __name__ == "__main__":
    sys.exit(main())
