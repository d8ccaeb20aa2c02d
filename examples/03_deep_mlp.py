"""A deeper MLP on handwritten digits: nnc.MLPClassifier next to scikit-learn's MLPClassifier.

nnc's MLPClassifier takes scikit-learn's parameters (same names, defaults, initialisation and
update formulas), so the two are fitted here with identical settings on the same split of the 8x8
digits (1797 images, 64 pixels, 10 classes).  The script prints test accuracy and fit time of
both, and plots their training-loss curves.  scikit-learn is optional: without it, nnc runs alone
on a synthetic stand-in for the digits.

Run:  python examples/03_deep_mlp.py [--fast] [--no-plot] [--out FILE.png]
"""
import sys
import time
import warnings

import numpy as np

import nnc

from _common import parse_args, plot_or_skip, pyplot, save_figure


def load_data(seed=0):
    """(X_train, X_test, y_train, y_test): digits scaled to [0, 1], or a synthetic stand-in."""
    try:
        from sklearn.datasets import load_digits
        X, y = load_digits(return_X_y=True)
        X = X / 16.0
    except ImportError:
        rng = np.random.RandomState(seed)
        protos = rng.rand(10, 64)
        y = rng.randint(0, 10, 1797)
        X = np.clip(protos[y] + 0.3 * rng.randn(len(y), 64), 0, 1)
    rng = np.random.RandomState(seed)
    order = rng.permutation(len(X))
    n_test = len(X) // 4
    test, train = order[:n_test], order[n_test:]
    return X[train], X[test], y[train], y[test]


def fit_and_score(model, X_train, X_test, y_train, y_test):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ConvergenceWarning in --fast mode
        start = time.perf_counter()
        model.fit(X_train, y_train)
        seconds = time.perf_counter() - start
    return model.score(X_test, y_test), seconds


def plot(curves, path):
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    styles = {"nnc": dict(linewidth=5, alpha=0.4), "scikit-learn": dict(linestyle="--")}
    for name, curve in curves.items():
        ax.plot(np.arange(1, len(curve) + 1), curve, label=name, **styles.get(name, {}))
    ax.set_yscale("log")
    ax.set_xlabel("epoch")
    ax.set_ylabel("training loss")
    ax.set_title("MLPClassifier on digits (64-128-64-32-10)")
    ax.legend()
    save_figure(fig, path)


def main(argv=None):
    args = parse_args(__doc__, argv, out="03_deep_mlp.png",
                      fast_help="fewer epochs")

    X_train, X_test, y_train, y_test = load_data()
    params = dict(hidden_layer_sizes=(128, 64, 32), activation="relu", solver="adam",
                  alpha=1e-4, batch_size=64, learning_rate_init=1e-3,
                  max_iter=10 if args.fast else 60, random_state=0)
    print(f"{len(X_train)} training / {len(X_test)} test images, "
          f"hidden layers {params['hidden_layer_sizes']}, {params['max_iter']} epochs")
    models = {"nnc": nnc.MLPClassifier(**params)}
    try:
        from sklearn.neural_network import MLPClassifier as SkMLPClassifier
        models["scikit-learn"] = SkMLPClassifier(**params)
    except ImportError:
        print("scikit-learn is not installed: nnc runs alone")
    curves = {}
    print(f"{'library':<14}{'test accuracy':>14}{'fit time (s)':>14}")
    for name, model in models.items():
        accuracy, seconds = fit_and_score(model, X_train, X_test, y_train, y_test)
        curves[name] = model.loss_curve_
        print(f"{name:<14}{accuracy:>14.3f}{seconds:>14.2f}")
    if len(models) == 2:
        a, b = curves["nnc"], curves["scikit-learn"]
        k = min(len(a), len(b))
        gap = float(np.max(np.abs(np.subtract(a[:k], b[:k])))) if k else float("nan")
        print(f"final training loss: nnc {a[-1]:.5f}, scikit-learn {b[-1]:.5f} "
              f"(largest per-epoch difference {gap:.1e}: same initial weights and updates)")
    plot_or_skip(args, plot, curves)
    return 0


if __name__ == "__main__":
    sys.exit(main())
