"""Layers for nnc.Sequential and the NeuralNet estimators."""
from nnc.layers._base import Layer, ParamSpec
from nnc.layers._dense import Dense
from nnc.layers._activations import Identity, Sigmoid, Tanh, ReLU, LeakyReLU

__all__ = ["Layer", "ParamSpec", "Dense", "Identity", "Sigmoid", "Tanh", "ReLU", "LeakyReLU"]

# Families written in parallel modules; exported when present.
try:
    from nnc.layers._conv import Conv2D, Conv1D  # noqa: F401
    __all__ += ["Conv2D", "Conv1D"]
except ImportError:  # pragma: no cover
    pass
try:
    from nnc.layers._pool import MaxPool2D, AvgPool2D  # noqa: F401
    __all__ += ["MaxPool2D", "AvgPool2D"]
except ImportError:  # pragma: no cover
    pass
try:
    from nnc.layers._reshape import Flatten  # noqa: F401
    __all__ += ["Flatten"]
except ImportError:  # pragma: no cover
    pass
try:
    from nnc.layers._dropout import Dropout  # noqa: F401
    __all__ += ["Dropout"]
except ImportError:  # pragma: no cover
    pass
try:
    from nnc.layers._recurrent import SimpleRNN, LSTM, GRU, Bidirectional  # noqa: F401
    __all__ += ["SimpleRNN", "LSTM", "GRU", "Bidirectional"]
except ImportError:  # pragma: no cover
    pass
