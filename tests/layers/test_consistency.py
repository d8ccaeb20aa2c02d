"""Every layer follows the same protocol: same method signatures, config round trip, pickling."""
import inspect
import pickle

import numpy as np
import pytest

import nnc.layers as L
from nnc.layers._base import Layer

PROTOCOL = ["build", "param_specs", "bind", "init_params", "allocate", "forward", "backward",
            "_forward", "_backward", "get_weights", "set_weights", "get_config"]

EXAMPLES = {
    "Dense": (lambda: L.Dense(3), (4,)),
    "Identity": (lambda: L.Identity(), (4,)),
    "Sigmoid": (lambda: L.Sigmoid(), (4,)),
    "Tanh": (lambda: L.Tanh(), (4,)),
    "ReLU": (lambda: L.ReLU(), (4,)),
    "LeakyReLU": (lambda: L.LeakyReLU(0.2), (4,)),
    "Conv2D": (lambda: L.Conv2D(2, (2, 3), stride=(1, 2), padding=1), (2, 5, 6)),
    "Conv1D": (lambda: L.Conv1D(2, 3, stride=2, padding=1), (2, 9)),
    "MaxPool2D": (lambda: L.MaxPool2D(2), (2, 5, 5)),
    "AvgPool2D": (lambda: L.AvgPool2D((2, 3), stride=1), (2, 5, 5)),
    "Flatten": (lambda: L.Flatten(), (2, 3, 2)),
    "Dropout": (lambda: L.Dropout(0.3), (4,)),
    "SimpleRNN": (lambda: L.SimpleRNN(3), (5, 2)),
    "LSTM": (lambda: L.LSTM(3, return_sequences=True), (5, 2)),
    "GRU": (lambda: L.GRU(3), (5, 2)),
    "Bidirectional": (lambda: L.Bidirectional(L.GRU(3)), (5, 2)),
    "LayerNorm": (lambda: L.LayerNorm(eps=1e-3), (3, 4)),
    "BatchNorm": (lambda: L.BatchNorm(momentum=0.2), (2, 3, 3)),
    "Embedding": (lambda: L.Embedding(6, 3, padding_idx=0), (4,)),
    "Residual": (lambda: L.Residual([L.Dense(3), L.Tanh(), L.Dropout(0.2), L.Dense(2)]), (3, 2)),
    "MultiHeadSelfAttention": (lambda: L.MultiHeadSelfAttention(2, 4, dropout=0.1), (3, 4)),
    "TransformerEncoderBlock": (lambda: L.TransformerEncoderBlock(4, 2, 6, dropout=0.1),
                                (3, 4)),
    "PositionalEmbedding": (lambda: L.PositionalEmbedding(5, 2), (3, 2)),
    "MaxPool1D": (lambda: L.MaxPool1D(3, 2, padding=1), (2, 7)),
    "AvgPool1D": (lambda: L.AvgPool1D(2, padding=1, count_include_pad=False), (2, 7)),
    "GlobalAvgPool": (lambda: L.GlobalAvgPool(), (2, 3, 4)),
    "GlobalMaxPool": (lambda: L.GlobalMaxPool("channels_last"), (5, 3)),
}


def _public_layer_classes():
    return [getattr(L, name) for name in L.__all__
            if isinstance(getattr(L, name), type) and issubclass(getattr(L, name), Layer)
            and name not in ("Layer",)]


def test_every_public_layer_has_an_example():
    names = {cls.__name__ for cls in _public_layer_classes()}
    assert names == set(EXAMPLES), names ^ set(EXAMPLES)


@pytest.mark.parametrize("method", PROTOCOL)
def test_layers_share_method_signatures(method):
    reference = inspect.signature(getattr(Layer, method))
    for cls in _public_layer_classes():
        sig = inspect.signature(getattr(cls, method))
        assert list(sig.parameters) == list(reference.parameters), (cls.__name__, method, sig)


def test_layers_keep_the_checked_public_calls():
    # layers implement _forward / _backward; the public forward / backward (which check the
    # call) are the base class's
    for cls in _public_layer_classes():
        assert cls.forward is Layer.forward and cls.backward is Layer.backward, cls.__name__


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_config_round_trip_and_pickle(name):
    make, shape = EXAMPLES[name]
    layer = make()
    clone = type(layer).from_config(layer.get_config())
    assert clone.get_config() == layer.get_config()
    from nnc import Sequential
    net = Sequential([make(), L.Flatten(), L.Dense(2)] if name != "Flatten" else
                     [make(), L.Dense(2)], loss="mse", input_shape=shape, random_state=0)
    rng = np.random.RandomState(0)
    X = (rng.randint(0, layer.n_tokens, (3,) + shape) if layer.input_kind == "ids"
         else rng.standard_normal((3,) + shape))
    out = net.forward(X)
    again = pickle.loads(pickle.dumps(net))
    np.testing.assert_array_equal(again.forward(X), out)
