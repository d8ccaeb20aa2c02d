"""The layer protocol every nnc layer follows.

Life cycle, driven by ``nnc.Sequential`` (see ``nnc/_network.py``):

1. ``build(input_shape, dtype) -> output_shape``  per-sample shapes (no batch axis); validates the
   constructor arguments against the input shape and raises ValueError on anything illegal.
2. ``param_specs() -> [ParamSpec(name, shape, decay), ...]``  the tensors the layer owns.  The network
   lays every decayed tensor (``decay=True``: weights) of every layer first, then every bias, in one
   flat buffer, so L2 is one scaled add over a prefix.
3. ``bind(params, grads)``  receives one view per spec into the flat parameter / gradient buffers.
   Layers keep these views and never rebind them to new arrays (write with ``[...] =``).
4. ``init_params(rng)``  fills the parameter views (``rng`` is a ``numpy.random.RandomState``).
5. ``allocate(batch_size)``  allocates workspaces (outputs, input gradients, im2col columns, argmax
   indices, gate histories) for up to ``batch_size`` samples; forward/backward on n <= batch_size
   samples use leading-row slices.
6. ``forward(X, training) -> Y``  X is C-contiguous (n, *input_shape) in the network dtype; returns a
   view of a workspace, valid until the next call.  Layers that need their input in backward keep a
   reference to X (the network guarantees it is not overwritten before backward).
7. ``backward(dY, need_dX) -> dX or None``  dY is (n, *output_shape), C-contiguous, and may be
   overwritten by the layer.  Parameter gradients are OVERWRITTEN (never accumulated) in the bound
   gradient views, as the gradient of the SUM over the n samples of the per-sample loss derivative
   the network passes in (the network scales dY by 1/n or sample weights itself).  When ``need_dX`` is
   False (first layer) the input gradient is skipped and None returned.

Activation-like layers set ``inplace_capable = True``: the network may then let them overwrite their
input buffer (when that buffer is a workspace of a previous layer that does not need its output).

ONNX export: a new layer adds its exporter in ``nnc/_onnx/_layers.py`` (one function per layer
class, reading the layer through ``get_weights()`` / ``get_config()``) and a parity case in
``tests/onnx/_cases.py``; ``tests/onnx/test_registry.py`` fails for a public layer without them.
"""
import abc
from collections import namedtuple

import numpy as np

ParamSpec = namedtuple("ParamSpec", ["name", "shape", "decay"])


def _as_pair(value, name, allow_zero=False):
    """Normalise an int or (h, w) pair of ints; raise ValueError/TypeError naming `name`."""
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        pair = (int(value), int(value))
    elif isinstance(value, (tuple, list)) and len(value) == 2 and all(
            isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in value):
        pair = (int(value[0]), int(value[1]))
    else:
        raise TypeError(f"{name} must be an int or a pair of ints, got {value!r}")
    lo = 0 if allow_zero else 1
    if pair[0] < lo or pair[1] < lo:
        raise ValueError(f"{name} must be >= {lo}, got {value!r}")
    return pair


def _check_positive_int(value, name):
    if not isinstance(value, (int, np.integer)) or isinstance(value, bool):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if value < 1:
        raise ValueError(f"{name} must be >= 1, got {value}")
    return int(value)


class Layer(abc.ABC):
    """Abstract base class of all layers: see the module docstring for the protocol."""

    #: True when backward can run with the output buffer overwritten by the next layer in place.
    inplace_capable = False

    def __init__(self):
        self.input_shape = None
        self.output_shape = None
        self.dtype = None
        self.params = []
        self.grads = []
        self.batch_size = 0
        self.inplace = False

    # -- declaration ---------------------------------------------------------------------------
    def build(self, input_shape, dtype):
        """Record shapes and dtype; return the per-sample output shape."""
        self.input_shape = tuple(int(s) for s in input_shape)
        self.dtype = np.dtype(dtype)
        self.output_shape = self.input_shape
        return self.output_shape

    def param_specs(self):
        """List of ParamSpec(name, shape, decay); empty for parameter-free layers."""
        return []

    def bind(self, params, grads):
        """Keep the views into the network's flat parameter and gradient buffers."""
        specs = self.param_specs()
        if len(params) != len(specs) or len(grads) != len(specs):
            raise ValueError(f"{type(self).__name__}.bind: expected {len(specs)} parameter views")
        self.params = list(params)
        self.grads = list(grads)

    def init_params(self, rng):
        """Fill the bound parameter views with initial values."""

    def allocate(self, batch_size):
        """Allocate workspaces for up to batch_size samples."""
        self.batch_size = int(batch_size)

    # -- computation ---------------------------------------------------------------------------
    @abc.abstractmethod
    def forward(self, X, training=False):
        """Output for X (n, *input_shape): a workspace view (n, *output_shape)."""

    @abc.abstractmethod
    def backward(self, dY, need_dX=True):
        """Overwrite the parameter gradients; return dX (a workspace view) or None."""

    # -- weights -------------------------------------------------------------------------------
    def get_weights(self):
        """Copies of the layer's parameter arrays, in param_specs order."""
        return [p.copy() for p in self.params]

    def set_weights(self, weights):
        """Copy arrays into the bound buffers after checking count and shapes."""
        specs = self.param_specs()
        if not self.params and specs:
            raise ValueError(f"{type(self).__name__} is not built yet: add it to a network first")
        weights = list(weights)
        if len(weights) != len(specs):
            raise ValueError(f"{type(self).__name__}.set_weights: expected {len(specs)} arrays, "
                             f"got {len(weights)}")
        arrays = []
        for spec, w in zip(specs, weights):
            w = np.asarray(w)
            if w.shape != tuple(spec.shape):
                raise ValueError(f"{type(self).__name__}.set_weights: {spec.name} must have shape "
                                 f"{tuple(spec.shape)}, got {w.shape}")
            if not np.all(np.isfinite(w)):
                raise ValueError(f"{type(self).__name__}.set_weights: {spec.name} contains NaN or inf")
            arrays.append(w)
        for view, w in zip(self.params, arrays):
            view[...] = w

    # -- description -------------------------------------------------------------------------
    def get_config(self):
        """Constructor arguments (JSON-serialisable), used for cloning and model files."""
        return {}

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"{type(self).__name__}({args})"

    def __getstate__(self):
        # Views lose their aliasing under pickle: the network re-binds them on unpickling.
        state = self.__dict__.copy()
        state["params"] = []
        state["grads"] = []
        for key in self._workspace_attrs():
            state.pop(key, None)
        state["batch_size"] = 0
        return state

    def _workspace_attrs(self):
        """Names of attributes holding workspaces or cached inputs (dropped when pickling)."""
        return [k for k in self.__dict__ if k.startswith("_ws") or k.startswith("_cache")]
