"""nnc: neural networks with compiled Cython kernels and a scikit-learn face."""
from nnc._version import __version__
from nnc._config import show_config
from nnc._network import Sequential
from nnc._gradcheck import check_gradients
from nnc._estimators import (MLPClassifier, MLPRegressor, NeuralNetClassifier,
                             NeuralNetRegressor)
from nnc._io import save, load   # model files sit above the estimators and the network

__all__ = ["__version__", "Sequential", "check_gradients", "save", "load", "show_config",
           "MLPClassifier", "MLPRegressor", "NeuralNetClassifier", "NeuralNetRegressor"]
