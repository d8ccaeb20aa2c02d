"""The graph builder the exporters write into, and the two places a graph can go.

``Graph`` hands out unique tensor names, turns NumPy arrays into constant tensors and appends
nodes; the layer exporters (``_layers.py``) and the output heads (``_heads.py``) use nothing
else, so one exporter serves both destinations:

* ``ModelSink``    collects nodes and initializers for a standalone ``onnx.ModelProto``
  (``nnc.to_onnx``);
* ``Skl2OnnxSink`` forwards them to a skl2onnx ``scope`` / ``container`` (a converter inside a
  scikit-learn pipeline, ``_skl2onnx.py``).

``onnx`` is imported when a graph is built, never when the module is imported (nnc's modules
all import without the optional extras; tests/test_layering.py imports every one).

``Graph.native(op)`` says whether an ONNX operator may be used directly for the graph's dtype.
ONNX Runtime's CPU kernels (checked with onnxruntime 1.32) have no float64 implementation of
Conv, AveragePool, RNN, LSTM and GRU; a float64 model gets an exact decomposition of those into
operators that do support double (Slice, Concat, MatMul, Add, Mul, Sigmoid, Tanh), never a
float32 round trip.  ``force_decompose`` uses the decompositions for float32 too (tests compare
both routes).
"""
import numpy as np

#: operators without a float64 CPU kernel in ONNX Runtime
NO_DOUBLE_KERNEL = frozenset({"Conv", "AveragePool", "RNN", "LSTM", "GRU"})


def tensor_type(dtype):
    """ONNX element type of a NumPy dtype (unicode / object strings -> STRING)."""
    from onnx import TensorProto, helper
    dtype = np.dtype(dtype)
    if dtype.kind in "USO":
        return TensorProto.STRING
    return helper.np_dtype_to_tensor_dtype(dtype)


def as_tensor_array(array):
    """An array ONNX can store: unicode / bytes become an object array of str."""
    array = np.asarray(array)
    if array.dtype.kind in "US":
        return array.astype(object)
    return array


class ModelSink:
    """Nodes and initializers of a standalone model."""

    def __init__(self):
        self.nodes = []
        self.initializers = []
        self._names = set()

    def reserve(self, name):
        self._names.add(name)

    def unique(self, hint):
        name, k = hint, 1
        while name in self._names:
            name = f"{hint}_{k}"
            k += 1
        self._names.add(name)
        return name

    def add_node(self, op_type, inputs, outputs, attrs, domain=""):
        from onnx import helper
        name = self.unique("n_" + op_type)
        self.nodes.append(helper.make_node(op_type, inputs, outputs, name=name, domain=domain,
                                           **attrs))

    def add_constant(self, name, array):
        from onnx import numpy_helper
        self.initializers.append(numpy_helper.from_array(array, name))


class Skl2OnnxSink:
    """Forwards to a skl2onnx converter's scope and container."""

    def __init__(self, scope, container, opset):
        self.scope = scope
        self.container = container
        self.opset = opset

    def reserve(self, name):
        pass  # skl2onnx names its own variables uniquely

    def unique(self, hint):
        return self.scope.get_unique_variable_name(hint)

    def add_node(self, op_type, inputs, outputs, attrs, domain=""):
        self.container.add_node(op_type, inputs, outputs, op_domain=domain,
                                op_version=self.opset,
                                name=self.scope.get_unique_operator_name("nnc_" + op_type),
                                **attrs)

    def add_constant(self, name, array):
        if array.dtype == object:
            content = [s.encode("utf-8") for s in array.ravel()]
        else:
            content = array.ravel().tolist()
        self.container.add_initializer(name, tensor_type(array.dtype), list(array.shape),
                                       content)


class Graph:
    """Where exporters add nodes.

    Parameters
    ----------
    sink : ModelSink or Skl2OnnxSink
    dtype : float32 or float64, the model's compute dtype (weights and activations)
    opset : int, the default-domain opset the nodes must be valid in
    force_decompose : bool, use the exact decompositions even where a native operator exists

    ``mask`` is the name of the bool (n, T) sequence mask of the tensor being exported (True at
    real positions), or None: ``_layers.export_layers`` sets it as nnc's layers carry theirs
    (nnc/layers/_base.py, "Sequence masks") and the attention and global pool exporters read it.
    """

    def __init__(self, sink, dtype, opset, force_decompose=False):
        self.sink = sink
        self.dtype = np.dtype(dtype)
        self.opset = int(opset)
        self.force_decompose = bool(force_decompose)
        self.mask = None

    # -- names and constants ---------------------------------------------------------------------
    def name(self, hint):
        return self.sink.unique(hint)

    def const(self, value, hint="c", dtype=None):
        """A constant tensor; floats default to the graph dtype, ints must be given as ints."""
        array = np.asarray(value)
        if dtype is not None:
            array = array.astype(dtype)
        elif array.dtype.kind == "f":
            array = array.astype(self.dtype)
        array = as_tensor_array(array).copy(order="C")   # (ascontiguousarray makes 0-d 1-d)
        name = self.name(hint)
        self.sink.add_constant(name, array)
        return name

    def ints(self, values, hint="i"):
        """An int64 constant (shapes, axes, indices)."""
        return self.const(np.asarray(values, dtype=np.int64), hint, np.int64)

    # -- nodes -----------------------------------------------------------------------------------
    def op(self, op_type, inputs, hint=None, outputs=None, n_outputs=1, domain="", **attrs):
        """Append a node; returns its output name (a list when it has several)."""
        if outputs is None:
            outputs = [self.name(hint or op_type.lower()) for _ in range(n_outputs)]
        self.sink.add_node(op_type, list(inputs), list(outputs), attrs, domain)
        return outputs[0] if len(outputs) == 1 else outputs

    def native(self, op_type):
        """True when ``op_type`` runs natively for this graph's dtype (see the module docstring)."""
        if self.force_decompose:
            return op_type not in NO_DOUBLE_KERNEL
        return not (self.dtype == np.float64 and op_type in NO_DOUBLE_KERNEL)

    # -- small compositions ------------------------------------------------------------------------
    def slice(self, x, starts, ends, axes, steps=None, hint="slice"):
        inputs = [x, self.ints(starts), self.ints(ends), self.ints(axes)]
        if steps is not None:
            inputs.append(self.ints(steps))
        return self.op("Slice", inputs, hint)

    def squeeze(self, x, axes, hint="squeeze"):
        return self.op("Squeeze", [x, self.ints(axes)], hint)

    def unsqueeze(self, x, axes, hint="unsqueeze"):
        return self.op("Unsqueeze", [x, self.ints(axes)], hint)

    def reduce(self, op_type, x, axes, hint=None, keepdims=0):
        """ReduceMean / ReduceMax / ... over `axes`: an attribute before opset 18, an input from
        18 on (ReduceSum takes it as an input since 13)."""
        if op_type == "ReduceSum" or self.opset >= 18:
            return self.op(op_type, [x, self.ints(axes)], hint, keepdims=keepdims)
        return self.op(op_type, [x], hint, axes=list(axes), keepdims=keepdims)

    def reshape(self, x, shape, hint="reshape"):
        return self.op("Reshape", [x, self.ints(shape)], hint)

    def rename(self, x, output):
        """Copy tensor x to the tensor named ``output`` (a graph output)."""
        return self.op("Identity", [x], outputs=[output])
