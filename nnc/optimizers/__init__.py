"""Optimizers: one fused kernel call per step over the network's flat parameter buffer."""
from nnc.optimizers._optimizers import Optimizer, SGD, AdaGrad, RMSprop, Adam, get_optimizer

__all__ = ["Optimizer", "SGD", "AdaGrad", "RMSprop", "Adam", "get_optimizer"]
