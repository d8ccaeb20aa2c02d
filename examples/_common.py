"""Command line and figure helpers shared by the example scripts (not an example itself).

Every example takes the same three options and saves its figure the same way:

    --fast      a smaller run (what the tests use)
    --no-plot   print only, write no PNG
    --out FILE  the PNG to write

matplotlib is optional: ``plot_or_skip`` prints a note instead of failing when it is missing.
The scripts run as ``python examples/NN_name.py``, so this folder is on ``sys.path``.
"""
import argparse


def parse_args(doc, argv, out, fast_help):
    """The examples' command line; ``doc`` is the script's docstring, ``out`` the default PNG."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--fast", action="store_true", help=fast_help)
    parser.add_argument("--no-plot", action="store_true", help="do not write a PNG")
    parser.add_argument("--out", default=out, help="PNG file to write")
    return parser.parse_args(argv)


def pyplot():
    """matplotlib.pyplot on the file-only Agg backend (raises ImportError without matplotlib)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def save_figure(fig, path):
    """Lay out, write ``path`` as a PNG, close the figure and say so."""
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    pyplot().close(fig)
    print(f"wrote {path}")


def plot_or_skip(args, plot, *data):
    """Call ``plot(*data, args.out)`` unless --no-plot; without matplotlib print a note."""
    if args.no_plot:
        return
    try:
        plot(*data, args.out)
    except ImportError:
        print("matplotlib is not installed: no plot")


def digit_images(seed=0):
    """The 8x8 digits as (X_train, X_test, y_train, y_test), X float32 of shape (n, 8, 8) in [0, 1].

    Without scikit-learn, noisy copies of ten random prototypes stand in for the digits."""
    import numpy as np
    try:
        from sklearn.datasets import load_digits
        digits = load_digits()
        X, y = digits.images / 16.0, digits.target
    except ImportError:
        rng = np.random.RandomState(seed)
        protos = rng.rand(10, 8, 8)
        y = rng.randint(0, 10, 1797)
        X = np.clip(protos[y] + 0.3 * rng.randn(len(y), 8, 8), 0, 1)
    X = X.astype(np.float32)
    order = np.random.RandomState(seed).permutation(len(X))
    n_test = len(X) // 4
    test, train = order[:n_test], order[n_test:]
    return X[train], X[test], y[train], y[test]
