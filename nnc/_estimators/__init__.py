"""scikit-learn style estimators: MLPClassifier / MLPRegressor (drop-ins for scikit-learn's) and
NeuralNetClassifier / NeuralNetRegressor (any nnc layer stack)."""
from nnc._estimators._mlp import MLPClassifier, MLPRegressor
from nnc._estimators._neural_net import NeuralNetClassifier, NeuralNetRegressor

__all__ = ["MLPClassifier", "MLPRegressor", "NeuralNetClassifier", "NeuralNetRegressor"]
