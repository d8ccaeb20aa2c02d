"""A small convolutional network on the 8x8 digits: Conv2D, MaxPool2D, Flatten, Dense.

NeuralNetClassifier takes any list of nnc layers as its hidden body and appends the output layer
(Dense with one unit per class, softmax cross-entropy).  Images go in as (n, channels, height,
width) = (n, 1, 8, 8):

    Conv2D(16, 3, padding=1) -> ReLU -> MaxPool2D(2)      (16, 4, 4)
    Conv2D(32, 3, padding=1) -> ReLU -> MaxPool2D(2)      (32, 2, 2)
    Flatten -> Dense(64) -> ReLU -> Dense(10)

Training is watched and steered with callbacks (nnc.callbacks): a held-out validation set
(``fit(..., X_val=, y_val=)``) gives a validation loss after every epoch, ``ProgressLine`` prints
one line per epoch, ``LearningRateScheduler("cosine")`` anneals the learning rate, and
``EarlyStopping`` stops when the validation loss has not improved for 3 epochs and puts the best
epoch's weights back.  (With scikit-learn >= 1.9 and rich, ``sklearn.callback.ProgressBar()``
draws a bar instead.)

The script prints the network, test accuracy, the confusion matrix, and saves a picture of 24 test
images with their predicted labels: up to 8 of them mistakes (in red), the rest correct.  Without
scikit-learn a synthetic stand-in for the digits is used.

Run:  python examples/04_cnn.py [--fast] [--no-plot] [--out FILE.png]
"""
import sys
import time

import numpy as np

import nnc
from nnc.callbacks import EarlyStopping, LearningRateScheduler, ProgressLine
from nnc.layers import Conv2D, Dense, Flatten, MaxPool2D, ReLU

from _common import digit_images, parse_args, plot_or_skip, pyplot, save_figure


def load_images(seed=0):
    """(X_train, X_test, y_train, y_test) with X of shape (n, 1, 8, 8): one channel per image."""
    X_train, X_test, y_train, y_test = digit_images(seed)
    return X_train[:, None], X_test[:, None], y_train, y_test


def confusion_matrix(y_true, y_pred, n_classes):
    cm = np.zeros((n_classes, n_classes), dtype=int)
    np.add.at(cm, (y_true, y_pred), 1)
    return cm


def pick_grid(y_true, y_pred, n=24):
    """Indices of n test images to show: every third one a mistake while mistakes last (at most
    n // 3 of them), the others correct ones, each group in test-set order."""
    wrong = list(np.flatnonzero(y_pred != y_true)[:n // 3])
    right = list(np.flatnonzero(y_pred == y_true)[:n - len(wrong)])
    return np.array([wrong.pop(0) if wrong and (k % 3 == 2 or not right) else right.pop(0)
                     for k in range(len(wrong) + len(right))], dtype=int)


def plot(X, y_true, y_pred, path, n=24):
    plt = pyplot()
    show = pick_grid(y_true, y_pred, n)
    n_wrong = int(np.sum(y_pred != y_true))
    fig, axes = plt.subplots(3, n // 3, figsize=(n // 3 * 1.1, 3 * 1.3))
    for ax in axes.ravel():
        ax.axis("off")
    for ax, i in zip(axes.ravel(), show):
        truth, pred = y_true[i], y_pred[i]
        ax.imshow(X[i, 0], cmap="gray_r", interpolation="nearest")
        ax.set_title(f"{pred}" if pred == truth else f"{pred} ({truth})",
                     color="black" if pred == truth else "red", fontsize=9)
    shown = int(np.sum(y_pred[show] != y_true[show]))
    fig.suptitle(f"CNN predictions on test digits: {n_wrong} of {len(y_true)} wrong, {shown} "
                 "shown in red (true label in brackets)", fontsize=9)
    save_figure(fig, path)


def main(argv=None):
    args = parse_args(__doc__, argv, out="04_cnn.png",
                      fast_help="fewer epochs, fewer filters")

    X_train, X_test, y_train, y_test = load_images()
    f1, f2 = (8, 16) if args.fast else (16, 32)
    body = [Conv2D(f1, 3, padding=1), ReLU(), MaxPool2D(2),
            Conv2D(f2, 3, padding=1), ReLU(), MaxPool2D(2),
            Flatten(), Dense(64), ReLU()]
    clf = nnc.NeuralNetClassifier(layers=body, input_shape=(1, 8, 8), optimizer="adam",
                                  learning_rate=2e-3, batch_size=32,
                                  max_epochs=4 if args.fast else 20, random_state=0)
    stop = EarlyStopping(monitor="val_loss", patience=3)
    clf.set_callbacks(ProgressLine(), LearningRateScheduler("cosine", eta_min=1e-4), stop)
    n_val = len(X_train) // 6                  # the last sixth of the training images
    start = time.perf_counter()
    clf.fit(X_train[:-n_val], y_train[:-n_val], X_val=X_train[-n_val:], y_val=y_train[-n_val:])
    seconds = time.perf_counter() - start
    print(clf.network_.summary())
    pred = clf.predict(X_test)
    accuracy = float(np.mean(pred == y_test))
    print(f"fit: {clf.n_iter_} epochs in {seconds:.1f} s, final training loss {clf.loss_:.4f}")
    print(f"kept the weights of epoch {stop.best_epoch_ + 1} (validation loss {stop.best_:.4f}, "
          + ("stopped early)" if stop.stopped_epoch_ is not None else "no early stop)"))
    print(f"test accuracy: {accuracy:.3f} on {len(y_test)} images")
    print("confusion matrix (rows: true digit, columns: predicted digit):")
    cm = confusion_matrix(y_test, pred, 10)
    print("     " + "".join(f"{k:>4}" for k in range(10)))
    for k, row in enumerate(cm):
        print(f"{k:>4} " + "".join(f"{v:>4}" for v in row))
    plot_or_skip(args, plot, X_test, y_test, pred)
    return 0


if __name__ == "__main__":
    sys.exit(main())
