"""A small transformer reads short reviews: Embedding + TransformerEncoderBlock on token ids.

The reviews are synthetic, built from a small vocabulary: each one praises one thing and pans
another, joined by "but", and the verdict is the part after "but":

    "the plot was dull but the acting was great"   -> positive
    "great music but honestly the ending was awful" -> negative

Both a positive and a negative word appear in every review, so a bag of words (word counts, no
order) cannot do better than chance; the model has to see which word comes after "but".  Words
become integer ids (0 pads the shorter reviews to a common length); the network is

    Embedding(n_words, 32, padding_idx=0) -> PositionalEmbedding(T, 32)
        -> TransformerEncoderBlock(32, n_heads=4, ffn_dim=64) -> Flatten -> Dense(2)

and ``NeuralNetClassifier`` takes the (n, T) integer array as X directly.  Padding is masked:
no position attends to a padded one.  The script prints the test accuracy of the transformer and
of a bag-of-words MLP on the same data, verdicts on a few new reviews, and plots the loss curve.

Run:  python examples/08_text_classifier.py [--fast] [--no-plot] [--out FILE.png]
"""
import sys
import time
import warnings

import numpy as np

import nnc
from nnc.layers import Dense, Embedding, Flatten, PositionalEmbedding, TransformerEncoderBlock

from _common import parse_args, plot_or_skip, pyplot, save_figure

POSITIVE = ["great", "superb", "fun", "moving", "brilliant", "charming"]
NEGATIVE = ["dull", "awful", "boring", "clumsy", "weak", "silly"]
THINGS = ["plot", "acting", "music", "ending", "script", "cast", "pacing"]
FILLER = ["really", "honestly", "quite", "frankly"]
VOCAB = ["<pad>", "the", "was", "but", "and"] + POSITIVE + NEGATIVE + THINGS + FILLER
IDS = {word: i for i, word in enumerate(VOCAB)}
T = 12          # the longest review has 12 words


def clause(rng, word):
    """'the THING was [FILLER] WORD' or '[FILLER] WORD THING'."""
    thing = rng.choice(THINGS)
    extra = [rng.choice(FILLER)] if rng.rand() < 0.5 else []
    if rng.rand() < 0.5:
        return ["the", thing, "was"] + extra + [word]
    return extra + [word, thing]


def make_reviews(n, seed=0):
    """(texts, labels): label 1 when the clause after 'but' is positive."""
    rng = np.random.RandomState(seed)
    texts, labels = [], []
    for _ in range(n):
        first_positive = rng.rand() < 0.5
        good, bad = rng.choice(POSITIVE), rng.choice(NEGATIVE)
        first, second = (good, bad) if first_positive else (bad, good)
        words = clause(rng, first) + ["but"] + clause(rng, second)
        texts.append(" ".join(words))
        labels.append(int(not first_positive))
    return texts, np.array(labels)


def encode(texts):
    """(n, T) int64 ids, padded with 0 at the end; unknown words raise KeyError."""
    X = np.zeros((len(texts), T), dtype=np.int64)
    for i, text in enumerate(texts):
        ids = [IDS[word] for word in text.split()]
        X[i, :len(ids)] = ids
    return X


def bag_of_words(X):
    """Word counts per review (order thrown away), the padding id left out."""
    counts = np.zeros((len(X), len(VOCAB)))
    for i, row in enumerate(X):
        np.add.at(counts[i], row, 1)
    return counts[:, 1:]


def plot(curve, path):
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(np.arange(1, len(curve) + 1), curve, marker="o")
    ax.set_xlabel("epoch")
    ax.set_ylabel("training loss (cross-entropy)")
    ax.set_title("Transformer on synthetic reviews")
    save_figure(fig, path)


def main(argv=None):
    args = parse_args(__doc__, argv, out="08_text_classifier.png",
                      fast_help="fewer reviews and epochs")
    n_train = 1000 if args.fast else 3000
    epochs = 5 if args.fast else 10
    texts, y = make_reviews(n_train + 1000)
    X = encode(texts)
    X_train, X_test, y_train, y_test = X[:n_train], X[n_train:], y[:n_train], y[n_train:]
    print(f"{len(VOCAB)} words, X_train {X_train.shape} int64 token ids, e.g. "
          f"{texts[0]!r} -> {X[0].tolist()}")

    clf = nnc.NeuralNetClassifier(
        layers=[Embedding(len(VOCAB), 32, padding_idx=0), PositionalEmbedding(T, 32),
                TransformerEncoderBlock(32, n_heads=4, ffn_dim=64), Flatten(), Dense(2)],
        learning_rate=3e-3, batch_size=32, max_epochs=epochs, random_state=0)
    start = time.perf_counter()
    clf.fit(X_train, y_train)
    seconds = time.perf_counter() - start
    print(f"transformer: test accuracy {clf.score(X_test, y_test):.3f}, "
          f"{clf.network_.n_params} parameters, fit {seconds:.1f} s ({epochs} epochs)")

    bow = nnc.MLPClassifier((32,), max_iter=50, random_state=0)
    with warnings.catch_warnings():         # it cannot fit the labels: no convergence warning
        warnings.simplefilter("ignore")
        bow.fit(bag_of_words(X_train), y_train)
    print(f"bag of words (no order): test accuracy "
          f"{bow.score(bag_of_words(X_test), y_test):.3f}")

    new = ["the music was great but the ending was boring",
           "frankly dull script but quite charming cast",
           "moving pacing but the plot was really silly"]
    for text, label in zip(new, clf.predict(encode(new))):
        print(f"  {text!r}: {'positive' if label else 'negative'}")
    plot_or_skip(args, plot, clf.loss_curve_)
    return 0


if __name__ == "__main__":
    sys.exit(main())
