"""Recurrent networks read a digit row by row: LSTM and GRU on 8x8 digits as sequences.

Each 8x8 image becomes a sequence of T = 8 time steps (the rows) of F = 8 features (the pixels of
a row), so X has shape (n, 8, 8) = (samples, time steps, features).  The recurrent layer reads the
rows top to bottom and its last hidden state goes to the output layer:

    LSTM(32) -> Dense(10)        GRU(32) -> Dense(10)

Both are trained with the same settings; the script prints test accuracy and the final training
loss of each, and plots their loss curves.  Without scikit-learn a synthetic stand-in for the
digits is used.

Run:  python examples/05_recurrent.py [--fast] [--no-plot] [--out FILE.png]
"""
import sys
import time

import numpy as np

import nnc
from nnc.layers import GRU, LSTM

from _common import digit_images, parse_args, plot_or_skip, pyplot, save_figure


def load_sequences(seed=0):
    """(X_train, X_test, y_train, y_test) with X of shape (n, T=8, F=8): each image row is a step."""
    return digit_images(seed)


def plot(curves, path):
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    for name, curve in curves.items():
        ax.plot(np.arange(1, len(curve) + 1), curve, marker="o", label=name)
    ax.set_yscale("log")
    ax.set_xlabel("epoch")
    ax.set_ylabel("training loss (cross-entropy)")
    ax.set_title("Digits read row by row (T=8, F=8)")
    ax.legend()
    save_figure(fig, path)


def main(argv=None):
    args = parse_args(__doc__, argv, out="05_recurrent.png",
                      fast_help="fewer epochs, fewer units")

    X_train, X_test, y_train, y_test = load_sequences()
    units = 16 if args.fast else 32
    epochs = 4 if args.fast else 25
    print(f"X_train {X_train.shape} (samples, time steps, features), {epochs} epochs")
    curves = {}
    for name, cell in (("LSTM", LSTM), ("GRU", GRU)):
        clf = nnc.NeuralNetClassifier(layers=[cell(units)], input_shape=(8, 8),
                                      optimizer="adam", learning_rate=5e-3, batch_size=32,
                                      max_epochs=epochs, random_state=0)
        start = time.perf_counter()
        clf.fit(X_train, y_train)
        seconds = time.perf_counter() - start
        accuracy = clf.score(X_test, y_test)
        curves[f"{name}({units})"] = clf.loss_curve_
        print(f"{name}({units}): test accuracy {accuracy:.3f}, final training loss "
              f"{clf.loss_:.4f}, {clf.network_.n_params} parameters, fit {seconds:.1f} s")
    plot_or_skip(args, plot, curves)
    return 0


if __name__ == "__main__":
    sys.exit(main())
