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
6. ``_forward(X, training) -> Y``  X is C-contiguous (n, *input_shape) in the network dtype; returns a
   view of a workspace, valid until the next call.  Layers that need their input in backward keep a
   reference to X (the network guarantees it is not overwritten before backward).
7. ``_backward(dY, need_dX) -> dX or None``  dY is (n, *output_shape), C-contiguous, and may be
   overwritten by the layer.  Parameter gradients are OVERWRITTEN (never accumulated) in the bound
   gradient views, as the gradient of the SUM over the n samples of the per-sample loss derivative
   the network passes in (the network scales dY by 1/n or sample weights itself).  When ``need_dX`` is
   False (first layer) the input gradient is skipped and None returned.

The network calls ``_forward`` / ``_backward`` directly on arrays it has validated.  The public
``forward`` / ``backward`` (direct use of a lone layer: tests, custom loops) check the call first --
built and allocated, a C-contiguous ndarray of the right dtype and shape, backward after a forward of
the same batch -- and raise TypeError / ValueError / RuntimeError saying what is wrong.

Inputs.  A layer reads floats of the network dtype, unless it declares ``input_kind = "ids"``
(Embedding): it then reads int64 token ids, must come first in a network, and has ``n_tokens``
(ids lie in [0, n_tokens)); the network and the estimators validate X as ids
(``nnc._validation.check_ids``) and never convert it to floats.

Activation-like layers set ``inplace_capable = True``: the network may then let them overwrite their
input buffer (when that buffer is a workspace of a previous layer that does not need its output).

Workspaces and threads.  Every attribute holding per-call scratch -- a workspace allocated by
``allocate`` or anything a forward leaves for its backward -- is named ``_ws*`` or ``_cache*``; that
naming is the whole declaration.  The network runs inference on *shadows* (``_shadow``): a shallow
copy that shares every other attribute (configuration, parameter views, state such as Dropout's
generator) but none of the ``_ws*`` / ``_cache*`` ones, and that the network binds and allocates
itself.  Child layers held in attributes (a Layer, or a list/tuple of Layers: Bidirectional's two
directions, future containers) are shadowed recursively.  So an inference ``_forward``
(training=False) must not modify, in place, any object that is not a ``_ws*`` / ``_cache*``
attribute (assigning attributes is fine: a shadow's assignments stay its own).  State shared across
calls on purpose (a random generator, running statistics) is updated in place
(``self.mean[...] = ...``) and never rebound to a new object, so that existing shadows see it.
Shadows, pickling and deepcopy drop the same attributes (``_workspace_attrs``).  A layer's
configuration is fixed once it is built: shadows (and the compiled dense plan) copy it.

Sequence masks.  Padded token sequences carry a per-sample boolean mask (n, T), True at the real
positions, alongside the activations (Keras-style mask propagation, kept small).  A *source* makes
it from its input (``Embedding`` with a ``padding_idx``: ids != padding_idx) and returns it from
``_output_mask``; a layer with ``keeps_mask = True`` keeps the positions of its input one for one
along the first sample axis (activations, Dropout, Dense on sequences, LayerNorm, attention,
positional encodings, Residual), so its output carries the same mask; any other layer stops it
(its output has no mask: Flatten, recurrent layers, pools that do not read it).  A layer with
``takes_mask = True`` reads the mask of its input from ``self._cache_mask`` ((n, T) bool or None),
which the network (or a container, for its children) sets before every ``_forward``
(``_forward_layers``); direct users of a lone layer call ``set_mask``.  Being a ``_cache*``
attribute, the mask belongs to one call: shadows never share it.

ONNX export: a new layer adds its exporter in ``nnc/_onnx/_layers.py`` (one function per layer
class, reading the layer through ``get_weights()`` / ``get_config()``) and a parity case in
``tests/onnx/_cases.py``; ``tests/onnx/test_registry.py`` fails for a public layer without them.
"""
import abc
import math
from collections import namedtuple

import numpy as np

ParamSpec = namedtuple("ParamSpec", ["name", "shape", "decay"])

#: most values one sample may have at any layer's input or output (the kernels pass such sizes to
#: 32-bit BLAS)
MAX_SIZE = 2**31 - 1


def _checked_size(shape, what):
    """Exact number of elements of `shape` (no wrap-around), or ValueError above MAX_SIZE."""
    size = math.prod(int(s) for s in shape)
    if size > MAX_SIZE:
        raise ValueError(f"{what} of shape {tuple(shape)} has {size} values, more than the "
                         f"{MAX_SIZE} (2**31 - 1) the kernels support")
    return size


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


def _forward_layers(layers, X, training, mask):
    """Run ``layers`` in order on validated X, carrying the sequence mask (see "Sequence masks"
    in the module docstring); returns (output, its mask)."""
    for layer in layers:
        if layer.takes_mask:
            layer._cache_mask = mask
        X = layer._forward(X, training)
        mask = layer._output_mask(mask)
    return X, mask


class Layer(abc.ABC):
    """Abstract base class of all layers: see the module docstring for the protocol."""

    #: True when backward can run with the output buffer overwritten by the next layer in place.
    inplace_capable = False
    #: what forward reads: "float" (the network dtype) or "ids" (int64 token ids; first layer only)
    input_kind = "float"
    #: True when the layer reads the sequence mask of its input (``self._cache_mask``)
    takes_mask = False
    #: True when the output keeps the input's positions along the first sample axis, and so its
    #: sequence mask
    keeps_mask = False
    #: True when the layer may make a sequence mask from its input (``_output_mask``)
    mask_source = False

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
    def forward(self, X, training=False):
        """Output for X (n, *input_shape): a workspace view (n, *output_shape), valid until the
        next call.  Checks the call (built, allocated, X a C-contiguous ndarray of the layer's
        dtype and sample shape), then runs ``_forward``."""
        n = self._check_call(X, "forward", "X", self.input_shape)
        Y = self._forward(X, training)
        self._cache_n = n
        return Y

    def backward(self, dY, need_dX=True):
        """Overwrite the parameter gradients; return dX (a workspace view) or None.  Checks that
        a forward of the same number of samples came first and that dY (n, *output_shape) is a
        C-contiguous ndarray of the layer's dtype, then runs ``_backward``."""
        n = self.__dict__.get("_cache_n")
        if n is None:
            self._check_built("backward")
            raise RuntimeError(f"{type(self).__name__}.backward needs a preceding forward call "
                               "(backward uses what forward left in the workspaces)")
        self._check_call(dY, "backward", "dY", self.output_shape, n)
        return self._backward(dY, need_dX)

    @abc.abstractmethod
    def _forward(self, X, training):
        """Protocol step 6 (see the module docstring); X already validated."""

    @abc.abstractmethod
    def _backward(self, dY, need_dX):
        """Protocol step 7 (see the module docstring); dY already validated."""

    def _check_built(self, method):
        name = type(self).__name__
        if self.input_shape is None or self.output_shape is None or self.dtype is None:
            raise RuntimeError(f"{name}.{method}: the layer is not built. Add it to an "
                               "nnc.Sequential and build the network (give input_shape, or call "
                               "the network's forward or fit once); a lone layer needs build, "
                               "bind, init_params and allocate first")
        if not self.params and self.param_specs():
            raise RuntimeError(f"{name}.{method}: the layer's parameters are not bound (add it "
                               "to an nnc.Sequential, or call bind)")

    def _check_call(self, A, method, what, shape, n=None):
        """Validate the array of a public forward/backward call; return its number of rows."""
        self._check_built(method)
        name = type(self).__name__
        dtype = np.dtype(np.int64) if (method == "forward" and self.input_kind == "ids") \
            else self.dtype
        if not isinstance(A, np.ndarray):
            raise TypeError(f"{name}.{method}: {what} must be a numpy.ndarray, got "
                            f"{type(A).__name__} (convert it with np.asarray(..., "
                            f"dtype='{dtype.name}'))")
        if A.dtype != dtype:
            raise ValueError(f"{name}.{method}: {what} has dtype {A.dtype}, the layer "
                             + (f"reads {dtype.name} token ids" if dtype != self.dtype else
                                f"computes in {self.dtype.name}"))
        if A.ndim != 1 + len(shape) or A.shape[1:] != tuple(shape):
            raise ValueError(f"{name}.{method}: {what} must have shape (n, "
                             f"{', '.join(map(str, shape))}), got {A.shape}")
        if not A.flags.c_contiguous:
            raise ValueError(f"{name}.{method}: {what} must be C-contiguous "
                             "(use np.ascontiguousarray)")
        m = A.shape[0]
        if n is not None and m != n:
            raise ValueError(f"{name}.backward: dY has {m} samples, the last forward had {n}")
        if m < 1:
            raise ValueError(f"{name}.{method}: {what} has no samples")
        if m > self.batch_size:
            raise ValueError(f"{name}.{method}: {m} samples, but the layer's workspaces hold "
                             f"{self.batch_size}: call allocate({m}) first (a network does this "
                             "itself)")
        return m

    # -- sequence masks ------------------------------------------------------------------------
    def _output_mask(self, mask):
        """The (n, T) mask of the last ``_forward``'s output given its input's (None: no mask):
        the input's when the layer keeps positions (``keeps_mask``), else None.  Sources
        override it to return the mask they made."""
        return mask if self.keeps_mask else None

    def set_mask(self, mask):
        """For direct use of a lone layer that reads masks (``takes_mask``): the (n, T) boolean
        mask (True = a real position, False = padding) the following ``forward`` calls use, n
        their number of samples and T the first axis of a sample; None: no mask.  (In a network
        the mask comes from the source layer, see the module docstring.)"""
        name = type(self).__name__
        if not self.takes_mask:
            raise TypeError(f"{name} does not read a sequence mask")
        if mask is None:
            self._cache_mask = None
            return
        self._check_built("set_mask")
        mask = np.asarray(mask)
        T = self.input_shape[0]
        if mask.dtype != np.bool_ or mask.ndim != 2 or mask.shape[1] != T:
            raise ValueError(f"{name}.set_mask: the mask must be a boolean array of shape (n, "
                             f"{T}), got {mask.dtype} {mask.shape}")
        self._cache_mask = np.ascontiguousarray(mask)

    def _mask_rows(self, n):
        """The mask set for this call, checked against its n samples: an (n, T) bool array or
        None."""
        mask = self.__dict__.get("_cache_mask")
        if mask is None:
            return None
        if mask.shape != (n, self.input_shape[0]):
            raise ValueError(f"{type(self).__name__}: the sequence mask has shape {mask.shape}, "
                             f"the input ({n}, {', '.join(map(str, self.input_shape))}) needs "
                             f"({n}, {self.input_shape[0]})")
        return mask

    # -- threads -------------------------------------------------------------------------------
    def _children(self):
        """Layers held in attributes (a Layer, or a non-empty list/tuple of Layers)."""
        for value in self.__dict__.values():
            if isinstance(value, Layer):
                yield value
            elif (isinstance(value, (list, tuple)) and value
                  and all(isinstance(v, Layer) for v in value)):
                yield from value

    def _shadow(self):
        """A copy for one inference call: every attribute shared except the workspaces and caches
        (``_workspace_attrs``); child layers are shadowed too.  The caller binds it to a
        parameter buffer and allocates it (see the module docstring)."""
        state = self.__dict__.copy()
        for key in self._workspace_attrs():
            state.pop(key, None)
        for key, value in state.items():
            if isinstance(value, Layer):
                state[key] = value._shadow()
            elif (isinstance(value, (list, tuple)) and value
                  and all(isinstance(v, Layer) for v in value)):
                state[key] = type(value)(v._shadow() for v in value)
        state["batch_size"] = 0
        twin = object.__new__(type(self))
        twin.__dict__.update(state)
        return twin

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

    def _check_param_values(self):
        """Raise ValueError when the values in the bound parameter views are invalid for this
        layer beyond finiteness (BatchNorm: a negative running variance).  Model files call it
        after loading the weights; nothing to check for most layers."""

    # -- description -------------------------------------------------------------------------
    def get_config(self):
        """Constructor arguments (JSON-serialisable), used for cloning and model files."""
        return {}

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    # -- state that is neither a parameter nor a workspace ----------------------------------------
    def state_dict(self):
        """JSON-serialisable state that training changes outside the parameter buffer (Dropout:
        its mask generator), so that a model file continues training exactly; {} for most layers."""
        return {}

    def load_state_dict(self, state):
        """Restore what ``state_dict`` returned, checking every field (ValueError otherwise)."""
        if not isinstance(state, dict) or state:
            raise ValueError(f"{type(self).__name__} has no state to load, got {state!r}")

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
        state.pop("_owner", None)   # a weak reference to the network (set again by the network)
        state["batch_size"] = 0
        return state

    def _workspace_attrs(self):
        """Names of attributes holding workspaces or cached inputs (``_ws*``, ``_cache*``): what
        shadows, pickling and deepcopy drop (a layer adds derived views rebuilt by ``bind``)."""
        return [k for k in self.__dict__ if k.startswith("_ws") or k.startswith("_cache")]
