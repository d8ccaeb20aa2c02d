"""Models over integer token ids that must actually learn (issue 12).

Order task: tokens A = 1 and B = 2 appear once each among filler tokens 3..9; the class is whether A
comes before B.  An Embedding + GRU solves it (>= 95% on held-out sequences); a bag of tokens
(Embedding + global pooling) cannot, since pooling forgets the order - which shows the task needs
the order and the pools really pool.  Presence task: does token 1 appear at all; Embedding +
GlobalMaxPool / GlobalAvgPool solve it.
"""
import numpy as np
import pytest

from nnc import NeuralNetClassifier
from nnc.layers import Dense, Embedding, GlobalAvgPool, GlobalMaxPool, GRU, ReLU


def _order_task(n, T=12, seed=0):
    rng = np.random.RandomState(seed)
    X = rng.randint(3, 10, (n, T))
    pos = np.argsort(rng.rand(n, T), axis=1)[:, :2]       # two distinct positions per sequence
    X[np.arange(n), pos[:, 0]] = 1
    X[np.arange(n), pos[:, 1]] = 2
    return X, (pos[:, 0] < pos[:, 1]).astype(int)


def _presence_task(n, T=12, seed=0):
    rng = np.random.RandomState(seed)
    X = rng.randint(2, 10, (n, T))
    y = rng.rand(n) < 0.5
    X[y, rng.randint(0, T, n)[y]] = 1
    return X, y.astype(int)


def test_embedding_gru_learns_token_order_and_a_bag_of_tokens_cannot():
    X, y = _order_task(2000)
    Xt, yt = _order_task(500, seed=1)
    gru = NeuralNetClassifier(layers=[Embedding(10, 8), GRU(16)], learning_rate=1e-2,
                              batch_size=32, max_epochs=8, random_state=0).fit(X, y)
    assert gru.score(Xt, yt) >= 0.95
    bag = NeuralNetClassifier(layers=[Embedding(10, 8), GlobalAvgPool("channels_last"),
                                      Dense(16), ReLU()], learning_rate=1e-2, batch_size=32,
                              max_epochs=8, random_state=0).fit(X, y)
    assert bag.score(Xt, yt) < 0.65          # order-blind: chance level


@pytest.mark.parametrize("pool", [GlobalMaxPool, GlobalAvgPool])
def test_embedding_global_pool_learns_token_presence(pool):
    X, y = _presence_task(1000)
    Xt, yt = _presence_task(500, seed=1)
    clf = NeuralNetClassifier(layers=[Embedding(10, 8), pool("channels_last"), Dense(8), ReLU()],
                              learning_rate=1e-2, batch_size=32, max_epochs=10,
                              random_state=0).fit(X, y)
    assert clf.score(Xt, yt) >= 0.95
