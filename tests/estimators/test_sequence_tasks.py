"""Token-sequence models that must actually learn (issue 12, item 7): the class of a padded
sequence of token ids (4..12 real tokens, then padding id 0) is decided by whether token A appears
before token B.  Embedding + TransformerEncoderBlock (padding masked out of the attention) and,
on the same padded data, Embedding + GRU reach >= 95% test accuracy through NeuralNetClassifier
with integer X.  (tests/estimators/test_learning_tokens.py holds the unpadded GRU version and the
bag-of-tokens control that shows the task needs the order.)"""
import numpy as np
import pytest

from nnc import NeuralNetClassifier
from nnc import layers as L

A, B, PAD = 1, 2, 0
N_TOKENS, T = 10, 12


def _order_task(n, seed=0):
    """(X, y): n sequences of 4..T real tokens then padding; A and B appear once each among the
    real tokens (the others are drawn from 3..9); y = 1 when A comes before B."""
    rng = np.random.RandomState(seed)
    lengths = rng.randint(4, T + 1, n)
    X = rng.randint(3, N_TOKENS, (n, T))
    X[np.arange(T)[None, :] >= lengths[:, None]] = PAD
    y = np.empty(n, dtype=int)
    for i, m in enumerate(lengths):
        a, b = rng.choice(m, 2, replace=False)
        X[i, a], X[i, b] = A, B
        y[i] = int(a < b)
    return X, y


@pytest.mark.parametrize("body, epochs, lr", [
    ("gru", 4, 1e-2),
    ("transformer", 6, 3e-3),
])
def test_token_order_task_is_learned(body, epochs, lr):
    X, y = _order_task(2000)
    Xt, yt = _order_task(500, seed=1)
    assert 0.4 < yt.mean() < 0.6                   # balanced: chance is ~50%
    if body == "gru":
        layers = [L.Embedding(N_TOKENS, 16, padding_idx=PAD), L.GRU(32)]
    else:
        layers = [L.Embedding(N_TOKENS, 16, padding_idx=PAD), L.PositionalEmbedding(T, 16),
                  L.TransformerEncoderBlock(16, 2, 32), L.Flatten()]
    clf = NeuralNetClassifier(layers=layers, learning_rate=lr, batch_size=32, max_epochs=epochs,
                              random_state=0).fit(X, y)
    assert clf.classes_.tolist() == [0, 1]
    if body == "transformer":       # the fit carried the padding mask to the attention layer
        attn = clf.network_.layers[2].layers[0].layers[1]
        assert isinstance(attn, L.MultiHeadSelfAttention)
        assert attn._cache_mask is not None and not attn._cache_mask.all()
    acc = clf.score(Xt, yt)
    assert acc >= 0.95, f"{body}: test accuracy {acc:.3f}"
