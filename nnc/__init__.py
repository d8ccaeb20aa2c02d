"""nnc: neural networks with compiled Cython kernels and a scikit-learn face."""
from nnc._version import __version__
from nnc._network import Sequential
from nnc._gradcheck import check_gradients
from nnc._io import save, load
from nnc._config import show_config, set_config, get_config, config_context
from nnc import _threads  # noqa: F401  (sets up the thread policy: CPUs, the BLAS thread API)
from nnc._estimators import (MLPClassifier, MLPRegressor, NeuralNetClassifier,
                             NeuralNetRegressor)

__all__ = ["__version__", "Sequential", "check_gradients", "save", "load", "show_config",
           "set_config", "get_config", "config_context", "MLPClassifier", "MLPRegressor", "NeuralNetClassifier", "NeuralNetRegressor"]
