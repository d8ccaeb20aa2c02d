"""Containers: layers made of a list of child layers, run one after the other.

``_Container`` delegates the whole layer protocol to its children ``self.layers``: build chains
their shapes (with the network's rules for Dense initialisation and in-place activations),
``param_specs`` is the concatenation of theirs (names prefixed with the child's index), ``bind``
hands each child its slice of the views the network gave (so the children's weights are views
into the network's one flat buffer, laid out like any other layer's: decayed tensors first),
allocate / forward / backward run the children in order (forward carries the sequence mask, see
``layers/_base.py``), and ``state_dict`` collects the children's states (Dropout generators).
Shadows copy the children with the container (``Layer._shadow`` shadows a list of Layers), so a
container is as thread-safe as its children.

``Residual(layers)``: Y = X + f(X), f the children in sequence; f must keep the sample shape.
It keeps no graph: backward copies dY for the skip, runs the children backward, and adds.
"""
import numpy as np

from nnc.layers._base import Layer, ParamSpec, _forward_layers


def _layer_from_spec(spec, where):
    """A layer instance, or a fresh one from {"class_name": ..., "config": {...}} (model files;
    the class is looked up among nnc.layers' public classes only)."""
    if isinstance(spec, Layer):
        return spec
    if isinstance(spec, dict):
        if set(spec) != {"class_name", "config"}:
            raise ValueError(f"{where} given as a dict needs exactly the keys 'class_name' and "
                             f"'config', got {sorted(spec)}")
        import nnc.layers as public      # the package imports this module: look up at call time
        name = spec["class_name"]
        cls = getattr(public, name, None) if isinstance(name, str) else None
        if (name not in public.__all__ or not isinstance(cls, type)
                or not issubclass(cls, Layer) or cls is Layer):
            raise ValueError(f"{where}: unknown layer class_name {name!r}")
        config = spec["config"]
        if not isinstance(config, dict):
            raise TypeError(f"{where}: 'config' must be a dict, got {type(config).__name__}")
        return cls.from_config(dict(config))
    raise TypeError(f"{where} must be an nnc.layers.Layer instance (or a layer spec dict), got "
                    f"{type(spec).__name__}")


class _Container(Layer):
    """Children ``self.layers`` run in sequence as one layer (see the module docstring)."""

    takes_mask = True       # handed on to the children

    def __init__(self, layers):
        super().__init__()
        if isinstance(layers, Layer):
            layers = [layers]
        if not isinstance(layers, (list, tuple)) or len(layers) == 0:
            raise TypeError(f"{type(self).__name__}: layers must be a non-empty list of "
                            "nnc.layers.Layer instances")
        children = [_layer_from_spec(spec, f"layers[{i}]") for i, spec in enumerate(layers)]
        if len(set(map(id, children))) != len(children):
            raise ValueError(f"{type(self).__name__}: the same layer instance appears twice in "
                             "layers")
        self.layers = children

    def get_config(self):
        return {"layers": [{"class_name": type(layer).__name__, "config": layer.get_config()}
                           for layer in self.layers]}

    # -- declaration ---------------------------------------------------------------------------
    def build(self, input_shape, dtype):
        from nnc.layers._dense import Dense          # the same rules as Sequential.build
        from nnc.layers._activations import Sigmoid
        super().build(input_shape, dtype)
        shape = self.input_shape
        for i, layer in enumerate(self.layers):
            if isinstance(layer, Dense) and layer.init_factor is None:
                nxt = self.layers[i + 1] if i + 1 < len(self.layers) else None
                layer._auto_factor = 2.0 if isinstance(nxt, Sigmoid) else 6.0
            shape = tuple(layer.build(shape, self.dtype))
            if len(shape) == 0 or any(not isinstance(s, int) or s < 1 for s in shape):
                raise ValueError(f"{type(self).__name__}: layers[{i}] ({type(layer).__name__}) "
                                 f"gives the sample shape {shape}: every size must be a "
                                 "positive int")
        # in place only on a workspace of a previous child that does not need it: never on the
        # container's input (the first child's)
        for i, layer in enumerate(self.layers):
            prev = self.layers[i - 1] if i > 0 else None
            layer.inplace = bool(layer.inplace_capable and prev is not None
                                 and getattr(prev, "output_reusable", False))
        self._mask_flow = any(layer.mask_source or layer.takes_mask or layer.keeps_mask
                              for layer in self.layers)
        self.output_shape = shape
        return shape

    def param_specs(self):
        return [ParamSpec(f"{i}.{spec.name}", spec.shape, spec.decay)
                for i, layer in enumerate(self.layers) for spec in layer.param_specs()]

    def bind(self, params, grads):
        super().bind(params, grads)
        k = 0
        for layer in self.layers:
            m = len(layer.param_specs())
            layer.bind(self.params[k:k + m], self.grads[k:k + m])
            k += m

    def init_params(self, rng):
        for layer in self.layers:
            layer.init_params(rng)

    def allocate(self, batch_size):
        super().allocate(batch_size)
        for layer in self.layers:
            layer.allocate(batch_size)

    # -- computation ---------------------------------------------------------------------------
    def _run_children(self, X, training):
        """Children's forward; returns (output, its mask)."""
        n = X.shape[0]
        mask = self._mask_rows(n) if self._mask_flow else None
        if self._mask_flow:
            return _forward_layers(self.layers, X, training, mask)
        for layer in self.layers:
            X = layer._forward(X, training)
        return X, None

    def _backward_children(self, dY, need_dX):
        d = dY
        for i in range(len(self.layers) - 1, -1, -1):
            d = self.layers[i]._backward(d, need_dX or i > 0)
        return d

    def _forward(self, X, training):
        Y, mask = self._run_children(X, training)
        self._cache_mask_out = mask
        return Y

    def _backward(self, dY, need_dX):
        return self._backward_children(dY, need_dX)

    def _output_mask(self, mask):
        return self.__dict__.get("_cache_mask_out")

    @property
    def output_reusable(self):
        return bool(getattr(self.layers[-1], "output_reusable", False))

    # -- state ---------------------------------------------------------------------------------
    def state_dict(self):
        """{'layers': [each child's state_dict()]} when a child has state (Dropout), else {}."""
        states = [layer.state_dict() for layer in self.layers]
        return {"layers": states} if any(states) else {}

    def load_state_dict(self, state):
        if not isinstance(state, dict) or (state and set(state) != {"layers"}):
            raise ValueError(f"{type(self).__name__} state must be {{}} or {{'layers': [...]}}, "
                             f"got {state!r}")
        states = state.get("layers", [{} for _ in self.layers])
        if not isinstance(states, list) or len(states) != len(self.layers):
            raise ValueError(f"{type(self).__name__} state: 'layers' must list one state per "
                             f"child ({len(self.layers)})")
        for layer, sub in zip(self.layers, states):
            if sub == {} and not layer.state_dict():
                continue
            layer.load_state_dict(sub)


class Residual(_Container):
    """Residual connection around a list of layers: Y = X + f(X), f the layers in sequence.

    Parameters
    ----------
    layers : list of nnc.layers.Layer (or {"class_name": ..., "config": {...}} specs)
        The branch f.  It must give each sample back in the shape it received (ValueError at
        build otherwise).  Its parameters are views into the network's flat buffer like any
        other layer's; names are prefixed with the child's index (``"1.W"``).

    Notes
    -----
    A sequence mask (padded positions) reaching the residual is passed to the children that
    read it (attention) and carried to the output.
    """

    keeps_mask = True
    #: the next layer may overwrite Y: backward needs only the children's own caches
    output_reusable = True

    def build(self, input_shape, dtype):
        out = super().build(input_shape, dtype)
        if out != self.input_shape:
            chain = " -> ".join([str(self.input_shape)] + [str(layer.output_shape)
                                                           for layer in self.layers])
            raise ValueError(f"Residual: the branch must keep the sample shape "
                             f"{self.input_shape} (Y = X + f(X)), but its layers give {chain}")
        self.output_shape = self.input_shape
        return self.output_shape

    def allocate(self, batch_size):
        super().allocate(batch_size)
        self._ws_out = np.empty((self.batch_size,) + self.output_shape, dtype=self.dtype)
        self._ws_dX = np.empty((self.batch_size,) + self.input_shape, dtype=self.dtype)

    def _forward(self, X, training):
        n = X.shape[0]
        F, _ = self._run_children(X, training)
        Y = self._ws_out[:n]
        np.add(X, F, out=Y)
        return Y

    def _backward(self, dY, need_dX):
        if not need_dX:
            self._backward_children(dY, False)
            return None
        dX = self._ws_dX[:dY.shape[0]]
        np.copyto(dX, dY)                 # the skip; the children may overwrite dY
        np.add(dX, self._backward_children(dY, True), out=dX)
        return dX

    def _output_mask(self, mask):
        return mask
