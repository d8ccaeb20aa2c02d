"""Layers for nnc.Sequential and the NeuralNet estimators.

Every layer follows the protocol in ``nnc/layers/_base.py``: build (shapes), param_specs, bind
(views into the network's flat buffers), init_params, allocate (workspaces), forward, backward.
Every layer exports to ONNX (``nnc.to_onnx``) through its exporter in ``nnc/_onnx/_layers.py``; a
new layer adds its own there.
"""
from nnc.layers._base import Layer, ParamSpec
from nnc.layers._dense import Dense
from nnc.layers._activations import Identity, Sigmoid, Tanh, ReLU, LeakyReLU
from nnc.layers._conv import Conv2D, Conv1D
from nnc.layers._pool import (MaxPool2D, AvgPool2D, MaxPool1D, AvgPool1D, GlobalAvgPool,
                              GlobalMaxPool)
from nnc.layers._reshape import Flatten
from nnc.layers._dropout import Dropout
from nnc.layers._recurrent import SimpleRNN, LSTM, GRU, Bidirectional
from nnc.layers._norm import LayerNorm, BatchNorm
from nnc.layers._embedding import Embedding
from nnc.layers._container import Residual
from nnc.layers._attention import MultiHeadSelfAttention, TransformerEncoderBlock
from nnc.layers._positional import PositionalEmbedding

__all__ = ["Layer", "ParamSpec", "Dense", "Identity", "Sigmoid", "Tanh", "ReLU", "LeakyReLU",
           "Conv2D", "Conv1D", "MaxPool2D", "AvgPool2D", "Flatten", "Dropout",
           "SimpleRNN", "LSTM", "GRU", "Bidirectional", "LayerNorm", "BatchNorm", "Embedding",
           "MaxPool1D", "AvgPool1D", "GlobalAvgPool", "GlobalMaxPool", "Residual",
           "MultiHeadSelfAttention", "TransformerEncoderBlock", "PositionalEmbedding"]
