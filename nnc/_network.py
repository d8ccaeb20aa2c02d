"""Sequential: a stack of layers on one flat parameter buffer.

Threads: training (train_epoch, loss_and_gradients, the estimators' fits) runs on the network's own
layers and workspaces; forward/predict run on a *shadow* of the stack (Layer._shadow: the same
parameters, workspaces of its own) popped from a lock-free pool and pushed back after the call.

Data: ``params`` and ``grads`` are two flat 1-D arrays of equal length in the network dtype; every
layer's tensors are views into them, decayed tensors (weights) of all layers first, then biases, so
L2 is one scaled add over the prefix ``params[:n_decay]``.  Workspaces (layer outputs, input
gradients, the loss gradient ``_ws_dZ``) are allocated once for the largest batch seen and reused;
shorter batches use leading rows.  Shape contract: X (n, *input_shape) → logits (n, n_outputs).

Inference in detail: a shadow stack (``_Shadow``) is one ``Layer._shadow()`` per layer, bound to
views of a parameter buffer and allocated for the chunk size it has seen; ``forward`` pops one
from ``_ws_shadows`` (``list.pop``/``append`` are atomic under the GIL), makes one when the pool
is empty, and pushes it back afterwards, keeping at most ``_SHADOW_POOL_CAP`` idle (memory: one
stack per concurrent predict).  So repeated predicts allocate nothing after the first, and
concurrent ones never share scratch.  Weights are read at call time: ``set_weights`` or writes
into ``params`` are seen by the next predict.  While an estimator trains a fitted network in
place (warm start, partial_fit) it brackets the update with ``_begin_update`` /
``_end_update``: predicts from other threads then read a copy of the weights taken at the start,
and a predict that overlapped the start is recomputed (``_ws_gen``), so every predict sees one
consistent set of weights.  Training the network directly (``train_epoch``) while other threads
predict on it is not guarded.
"""
import math
import numbers
import threading
import weakref

import numpy as np

from nnc.layers._base import Layer, _checked_size, _forward_layers
from nnc.layers._dense import Dense
from nnc.layers._activations import _Activation, Sigmoid
from nnc.losses import get_loss
from nnc._validation import (check_ids, check_input, check_sample_weight, not_a_layer_error,
                             resolve_dtype)

from nnc import _mlp_fast
from nnc._kernels._mlp import SYNC_TAIL
from nnc._trainer import run_epoch

# predictions are computed in chunks of this many rows, so predict on big X allocates little
_PREDICT_CHUNK = 4096
#: idle shadow stacks kept per network (more concurrent predicts make their own, then drop them)
_SHADOW_POOL_CAP = 8
#: serialises the lazy build of an unbuilt network by its first forward calls
_BUILD_LOCK = threading.Lock()


def _check_random_state(seed):
    if seed is None or seed is np.random:
        return np.random.mtrand._rand
    if isinstance(seed, numbers.Integral) and not isinstance(seed, bool):
        return np.random.RandomState(int(seed))
    if isinstance(seed, np.random.RandomState):
        return seed
    raise ValueError(f"random_state must be None, an int or a RandomState, got {seed!r}")


class _Shadow:
    """One inference copy of the layer stack, bound to the parameter buffer ``params``."""

    __slots__ = ("layers", "params", "batch_size")

    def __init__(self, layers, params):
        self.layers = layers
        self.params = params
        self.batch_size = 0

    def allocate(self, n):
        if n > self.batch_size:
            for layer in self.layers:
                layer.allocate(n)
            self.batch_size = n


def _layer_tree(layer):
    """The layer and every layer it holds (containers), depth first."""
    yield layer
    for child in layer._children():
        yield from _layer_tree(child)


class Sequential:
    """A feed-forward stack of layers trained on flat parameter / gradient buffers.

    Parameters
    ----------
    layers : list of nnc.layers.Layer
    loss : {'mse', 'binary_cross_entropy', 'softmax_cross_entropy', 'poisson'}
        Applied to the last layer's output (logits for the cross-entropy losses).
    input_shape : tuple of int or None
        Shape of one sample.  None: taken from the first X seen.
    dtype : {'float64', 'float32'}
    random_state : int, RandomState or None
        Seeds the weight initialisation (and layers with randomness, e.g. Dropout).
    """

    def __init__(self, layers, loss="mse", input_shape=None, dtype="float64", random_state=None):
        if isinstance(layers, Layer):
            layers = [layers]
        if not isinstance(layers, (list, tuple)) or len(layers) == 0:
            raise TypeError("layers must be a non-empty list of nnc.layers.Layer instances")
        for i, layer in enumerate(layers):
            if not isinstance(layer, Layer):
                raise not_a_layer_error(f"layers[{i}]", layer, Layer)
        if len(set(map(id, layers))) != len(layers):
            raise ValueError("the same layer instance appears twice in layers")
        for i, layer in enumerate(layers):
            for part in _layer_tree(layer):
                owner = part.__dict__.get("_owner")
                if owner is not None and owner() is not None and owner() is not self:
                    raise ValueError(
                        f"layers[{i}] ({type(layer).__name__}) already belongs to another "
                        "network: its parameters are views into that network's buffer, so one "
                        "layer instance cannot serve two networks. Create a new layer, e.g. "
                        f"{type(layer).__name__}.from_config(layer.get_config())")
        self.layers = list(layers)
        self.loss = loss
        self._loss = get_loss(loss)
        self.dtype = resolve_dtype(dtype)
        self.random_state = random_state
        self.input_shape = None
        self.output_shape = None
        self._params = None
        self._grads = None
        self.n_decay = 0
        #: global gradient-norm clipping applied before each optimizer step (None: off)
        self.clip_grad_norm = None
        self._batch_size = 0
        if input_shape is not None:
            self.build(input_shape)
        self._claim_layers()

    def _claim_layers(self):
        """Mark every layer (and child layer) as this network's (weakly: a dropped network frees
        its layers)."""
        ref = weakref.ref(self)
        for layer in self.layers:
            for part in _layer_tree(layer):
                part._owner = ref

    # ------------------------------------------------------------------ buffers
    @property
    def params(self):
        """The flat parameter buffer (None before build).  Assigning an array copies it into the
        buffer (same shape, finite, a real dtype that casts to the network's); the buffer itself
        is never replaced, since every layer's weights are views into it."""
        return self._params

    @params.setter
    def params(self, value):
        self._assign_buffer("params", value)

    @property
    def grads(self):
        """The flat gradient buffer, parallel to ``params``; assignment copies as for params."""
        return self._grads

    @grads.setter
    def grads(self, value):
        self._assign_buffer("grads", value)

    def _assign_buffer(self, name, value):
        buf = self.__dict__.get("_" + name)
        if buf is None:
            raise ValueError(f"cannot assign {name}: the network is not built yet (give "
                             "input_shape or call build / forward first)")
        if value is buf:
            return
        if not isinstance(value, np.ndarray):
            try:
                value = np.asarray(value)
            except Exception as exc:
                raise TypeError(f"{name} must be an array of {buf.size} numbers, got "
                                f"{type(value).__name__}") from exc
        if value.shape != buf.shape:
            raise ValueError(f"{name} must have shape {buf.shape} (it is copied into the "
                             f"network's flat buffer, which every layer's views share), got "
                             f"{value.shape}")
        if value.dtype.kind not in "fiu" or not np.can_cast(value.dtype, buf.dtype, "same_kind"):
            raise TypeError(f"{name} must have a real numeric dtype that casts to "
                            f"{buf.dtype.name}, got {value.dtype}")
        if value.dtype.kind == "f" and not np.isfinite(value).all():
            raise ValueError(f"{name} contains NaN or inf")
        buf[...] = value

    # ------------------------------------------------------------------ building
    @property
    def built(self):
        return self._params is not None

    def build(self, input_shape):
        """Build every layer, allocate the flat buffers, bind views and initialise weights."""
        if isinstance(input_shape, (int, np.integer)):
            input_shape = (int(input_shape),)
        try:
            input_shape = tuple(int(s) for s in input_shape)
        except TypeError as exc:
            raise TypeError(f"input_shape must be a tuple of ints, got {input_shape!r}") from exc
        if len(input_shape) == 0 or any(s < 1 for s in input_shape):
            raise ValueError(f"input_shape must be a non-empty tuple of positive ints, "
                             f"got {input_shape}")
        _checked_size(input_shape, "input_shape: a sample")
        shape = input_shape
        for i, layer in enumerate(self.layers):
            if i > 0 and layer.input_kind == "ids":
                raise ValueError(f"layers[{i}] ({type(layer).__name__}) reads integer token ids, "
                                 "so it must be the first layer of the network")
            if isinstance(layer, Dense) and layer.init_factor is None:
                nxt = self.layers[i + 1] if i + 1 < len(self.layers) else None
                layer._auto_factor = 2.0 if isinstance(nxt, Sigmoid) else 6.0
            shape = tuple(layer.build(shape, self.dtype))
            if len(shape) == 0 or any(not isinstance(s, int) or s < 1 for s in shape):
                raise ValueError(f"layers[{i}] ({type(layer).__name__}) gives the sample shape "
                                 f"{shape}: every size must be a positive int")
            _checked_size(shape, f"layers[{i}] ({type(layer).__name__}): an output sample")
        if self._loss.name != "mse" and len(shape) != 1:
            raise ValueError(f"loss {self._loss.name!r} needs a 1-D output per sample, the last "
                             f"layer gives {shape}; add Flatten() and Dense(n)")
        self.input_shape = input_shape
        self.output_shape = shape
        self._layout = self._make_layout()
        total = sum(size for (_, _, _, size, _) in self._layout)
        if total > np.iinfo(np.intp).max // self.dtype.itemsize:
            raise ValueError(f"the network would have {total} parameters: too many to allocate")
        self._params = np.zeros(total, dtype=self.dtype)
        self._alloc_grads()
        self.__dict__.pop("_ws_shadows", None)   # shadows of an earlier build: other buffers
        self._bind()
        rng = _check_random_state(self.random_state)
        for layer in self.layers:
            layer.init_params(rng)
        # in-place activations: only on a workspace whose producer does not need it afterwards
        for i, layer in enumerate(self.layers):
            prev = self.layers[i - 1] if i > 0 else None
            layer.inplace = bool(layer.inplace_capable and prev is not None
                                 and getattr(prev, "output_reusable", False))
        # sequence masks (layers/_base.py): carried only when a layer makes or reads one
        self._mask_flow = any(layer.mask_source or layer.takes_mask for layer in self.layers)
        self._batch_size = 0
        return self

    def _make_layout(self):
        """[(layer index, spec index, offset, size, shape)], decayed tensors first."""
        entries = []
        for li, layer in enumerate(self.layers):
            for si, spec in enumerate(layer.param_specs()):
                entries.append((li, si, spec))
        ordered = [e for e in entries if e[2].decay] + [e for e in entries if not e[2].decay]
        layout, off = [], 0
        self.n_decay = 0
        for li, si, spec in ordered:
            size = math.prod(int(d) for d in spec.shape)   # exact: no wrap-around
            layout.append((li, si, off, size, tuple(spec.shape)))
            off += size
            if spec.decay:
                self.n_decay = off
        return layout

    def _alloc_grads(self):
        """The gradient buffer: ``_grads`` is the first n_params values of ``_grads_buf``, whose
        SYNC_TAIL trailing slots data-parallel epochs send with the gradients in the same
        allreduce (the rank's loss share and a Ctrl-C flag, nnc/_distributed.py)."""
        n = self._params.shape[0]
        self._grads_buf = np.zeros(n + SYNC_TAIL, dtype=self.dtype)
        self._grads = self._grads_buf[:n]

    def _bind(self):
        self._bind_layers(self.layers, self._params)

    def _bind_layers(self, layers, params):
        """Bind `layers` (the network's own, or a shadow stack) to views of `params` (the
        network's buffer or a copy with its layout) and of the gradient buffer."""
        per_layer = [[None] * len(layer.param_specs()) for layer in layers]
        per_layer_g = [[None] * len(layer.param_specs()) for layer in layers]
        for li, si, off, size, shape in self._layout:
            per_layer[li][si] = params[off:off + size].reshape(shape)
            per_layer_g[li][si] = self._grads[off:off + size].reshape(shape)
        for layer, pv, gv in zip(layers, per_layer, per_layer_g):
            layer.bind(pv, gv)

    def _ensure_batch(self, n):
        """Allocate workspaces for batches of up to n samples (grow only)."""
        if n > self._batch_size:
            for layer in self.layers:
                layer.allocate(n)
            self._ws_dZ = np.empty((n,) + self.output_shape, dtype=self.dtype)
            self._batch_size = n

    def _check_built(self, X=None):
        if not self.built:
            if X is None:
                raise ValueError("network is not built: give input_shape or call forward first")
            arr = np.asarray(X) if not hasattr(X, "shape") else X
            if getattr(arr, "ndim", 0) < 2:
                raise ValueError(f"Expected 2D array, got {getattr(arr, 'ndim', 0)}D array instead")
            with _BUILD_LOCK:       # concurrent first calls: one builds, the others wait
                if not self.built:
                    self.build(tuple(arr.shape[1:]))

    # ------------------------------------------------------------------ validation
    @property
    def input_kind(self):
        """What X holds: "float" (converted to the network dtype) or "ids" (int64 token ids, when
        the first layer reads them, e.g. Embedding)."""
        return self.layers[0].input_kind

    def _check_X(self, X):
        self._check_built(X)
        first = self.layers[0]
        if first.input_kind == "ids":
            return check_ids(X, first.n_tokens, self.input_shape, reader=type(first).__name__)
        return check_input(X, self.dtype, self.input_shape)

    def _check_y(self, y, n):
        y = self._loss.check_targets(y, self.output_shape, self.dtype)
        if y.shape[0] != n:
            raise ValueError(f"Found input variables with inconsistent numbers of samples: "
                             f"[{n}, {y.shape[0]}]")
        return y

    # ------------------------------------------------------------------ computation
    #: True when a layer makes or reads a sequence mask (set by build)
    _mask_flow = False

    def _forward(self, X, training):
        """Forward pass of the network's own stack (training) on validated X (n <= allocated
        batch); returns a workspace view."""
        if self._mask_flow:
            return _forward_layers(self.layers, X, training, None)[0]
        out = X
        for layer in self.layers:
            out = layer._forward(out, training)
        return out

    def _backward(self, dZ):
        """Backward pass from d(logits); fills self.grads (overwritten, not accumulated)."""
        d = dZ
        last = len(self.layers) - 1
        for i in range(last, -1, -1):
            d = self.layers[i]._backward(d, i > 0)

    def _batch_loss_gradient(self, Xb, yb, swb, training=True):
        """Forward, fused loss + d(logits), backward for one validated batch; returns the loss."""
        n = Xb.shape[0]
        Z = self._forward(Xb, training)
        dZ = self._ws_dZ[:n]
        loss = self._loss.loss_gradient(Z, yb, swb, dZ)
        self._backward(dZ)
        return loss

    def forward(self, X, training=False):
        """Output of the last layer (logits for the cross-entropy losses), shape (n, *output_shape).

        Returns a new array (computed in chunks, so memory stays bounded for any n).  Thread-safe:
        runs on a shadow of the layer stack (see the module docstring)."""
        X = self._check_X(X)
        out = np.empty((X.shape[0],) + self.output_shape, dtype=self.dtype)
        while True:
            gen = self._ws_gen
            # the weights to read: a copy while another thread updates them (see _begin_update)
            pin = self._ws_pin
            params = self._params if pin is None or pin[1] == threading.get_ident() else pin[0]
            self._forward_into(X, out, params, training)
            # a copy taken by _begin_update is never written; the live buffer only when no
            # update began during this call
            if params is not self._params or self._ws_gen == gen:
                return out

    # ------------------------------------------------------------------ inference internals
    _ws_pin = None      # (weights copy, id of the updating thread) while an estimator updates
    _ws_gen = 0         # incremented when an update begins
    _ws_shadows = None  # the pool of idle shadow stacks (a list, made by the first predict)

    def _begin_update(self):
        """Before an in-place update of the weights (estimators' warm start / partial_fit):
        other threads' predicts read a copy from now until ``_end_update``.  Returns the copy
        (also the weights to restore if the update fails)."""
        snapshot = self._params.copy()
        self._ws_pin = (snapshot, threading.get_ident())
        self._ws_gen += 1
        return snapshot

    def _end_update(self):
        self._ws_pin = None

    def _forward_into(self, X, out, params, training):
        """out <- forward of validated X with the weights in `params`, on a shadow stack."""
        n = X.shape[0]
        if n == 0:
            return
        fast = None if training else _mlp_fast.forward_fn(self, params)
        if fast is not None:  # dense-only networks: the whole pass in one compiled call
            fast(X, out)
            return
        # take a shadow stack bound to `params` from the pool, or make one
        pool = self._ws_shadows
        if pool is None:
            pool = self.__dict__.setdefault("_ws_shadows", [])
        try:
            stack = pool.pop()
        except IndexError:
            stack = None
        if stack is None or stack.params is not params:
            layers = [layer._shadow() for layer in self.layers]
            self._bind_layers(layers, params)
            stack = _Shadow(layers, params)
        try:
            chunk = max(stack.batch_size, min(n, _PREDICT_CHUNK))
            stack.allocate(chunk)
            masks = self._mask_flow
            for start in range(0, n, chunk):
                stop = min(n, start + chunk)
                Z = X[start:stop]
                if masks:
                    Z = _forward_layers(stack.layers, Z, training, None)[0]
                else:
                    for layer in stack.layers:
                        Z = layer._forward(Z, training)
                out[start:stop] = Z
        finally:
            # give it back (at most _SHADOW_POOL_CAP idle) unless its buffer is out of use
            pin = self._ws_pin
            if len(pool) < _SHADOW_POOL_CAP and (stack.params is self._params or (
                    pin is not None and stack.params is pin[0])):
                pool.append(stack)

    def predict(self, X):
        """Link-transformed outputs: probabilities for CE losses, exp for poisson, else identity."""
        out = self.forward(X)
        self._loss.link(out)
        return out

    def loss_and_gradients(self, X, y, sample_weight=None):
        """Mean (sample-weighted) loss on (X, y) and the gradients, one list per layer with weights.

        The flat ``self.grads`` holds the same numbers; L2 is not included (optimizers fuse it)."""
        X = self._check_X(X)
        y = self._check_y(y, X.shape[0])
        sw = check_sample_weight(sample_weight, X.shape[0], self.dtype)
        self._ensure_batch(X.shape[0])
        loss = self._batch_loss_gradient(X, y, sw)
        return float(loss), [[g.copy() for g in layer.grads] for layer in self.layers
                             if layer.param_specs()]

    def l2_penalty(self):
        """0.5 * sum of squared decayed weights (sklearn adds alpha * this / n to the loss)."""
        w = self.params[:self.n_decay]
        return 0.5 * float(np.dot(w, w))

    def train_epoch(self, X, y, optimizer, batch_size=32, sample_weight=None, indices=None,
                    loss_scale=1.0, on_batch=None, sync=None):
        """One pass of mini-batch training on validated arrays; returns the epoch loss.

        X, y: already validated by ``_check_X`` / ``_check_y``.  ``indices``: the visiting order
        (a permutation when shuffling; None = 0..n-1).  The epoch loss is scikit-learn's: the mean
        over batches of (loss_scale * batch loss + alpha * l2 / batch weight), weighted by batch
        size (``loss_scale`` = 1/n_outputs reproduces MLPRegressor's reported loss).  Raises
        FloatingPointError (weights of the failing batch are not applied) when a loss is not finite.
        ``on_batch``: hooks around each batch of the Python batch loop (see nnc/_trainer.py; the
        compiled loop of dense networks never calls them).
        ``sync``: a data-parallel epoch (``nnc._distributed.EpochSync``, made by the estimators
        inside ``nnc.distributed``): X, y are this rank's shard, the loss is the global one; the
        batch hooks then run once per step of the epoch on every rank, and a stop one rank's
        hook asks for ends the epoch after the same step on every rank.
        """
        return run_epoch(self, X, y, optimizer, batch_size, sample_weight, indices, loss_scale,
                         on_batch, sync)

    # ------------------------------------------------------------------ weights
    def get_weights(self):
        """One list per layer that has weights, each a list of array copies."""
        self._check_built()
        return [layer.get_weights() for layer in self.layers if layer.param_specs()]

    def set_weights(self, weights):
        """Inverse of get_weights (shapes are checked before anything is copied)."""
        self._check_built()
        owners = [layer for layer in self.layers if layer.param_specs()]
        weights = list(weights)
        if len(weights) != len(owners):
            raise ValueError(f"expected weights for {len(owners)} layers, got {len(weights)}")
        backup = self.params.copy()
        try:
            for layer, w in zip(owners, weights):
                layer.set_weights(w)
        except Exception:
            self.params[...] = backup
            raise

    @property
    def n_params(self):
        return 0 if self._params is None else self._params.size

    def summary(self):
        """A printable table: layer, output shape, number of parameters."""
        self._check_built()
        lines = [f"{'layer':<28}{'output shape':<20}{'params':>10}"]
        for layer in self.layers:
            n = sum(int(np.prod(s.shape)) for s in layer.param_specs())
            lines.append(f"{type(layer).__name__:<28}{str(layer.output_shape):<20}{n:>10}")
        lines.append(f"total parameters: {self.n_params}  (dtype {self.dtype.name})")
        return "\n".join(lines)

    def __repr__(self):
        inner = ", ".join(repr(layer) for layer in self.layers)
        return f"Sequential([{inner}], loss={self.loss!r}, dtype={self.dtype.name!r})"

    # ------------------------------------------------------------------ persistence
    def save(self, path):
        """Save to a safe model file (npz + JSON specs, no pickle); read back with nnc.load(path)."""
        from nnc._io import save   # imported here: model files sit above the network
        save(self, path)
        return self

    # ------------------------------------------------------------------ pickling
    def __getstate__(self):
        state = {k: v for k, v in self.__dict__.items() if not k.startswith("_ws")}
        state["_grads"] = None
        state.pop("_grads_buf", None)
        state["_batch_size"] = 0
        return state

    def __setstate__(self, state):
        state = dict(state)
        for name in ("params", "grads"):   # pickled before the buffers became properties
            if name in state:
                state["_" + name] = state.pop(name)
        state.setdefault("clip_grad_norm", None)
        self.__dict__.update(state)
        if self._params is not None:
            self._alloc_grads()
            self._bind()
        self._claim_layers()

    def __deepcopy__(self, memo):
        import pickle
        return pickle.loads(pickle.dumps(self))
