"""``to_onnx``: a fitted estimator or a built Sequential as one ONNX graph.

The graph is the network (every layer through its exporter in ``_layers.py``) followed by the
output head of the model kind (``_heads.py``):

=============================  ==========================================  ======================
model                          outputs                                     as
=============================  ==========================================  ======================
classifiers (MLP, NeuralNet)   ``label`` (n,) (multilabel: int64 (n, K)),  ``predict``,
                               ``probabilities`` (n, n_classes)            ``predict_proba``
regressors                     ``variable`` (n,) or (n, n_outputs)         ``predict``
Sequential                     ``variable`` (n, *output_shape)             ``Sequential.predict``
=============================  ==========================================  ======================

The input is ``X`` of shape (n, *input_shape) in the model's dtype (float32 / float64), or what
the first layer's exporter declares (integer ids).  Estimators are read as ``predict`` reads
them (MLP weights assigned to ``coefs_`` / ``intercepts_`` are copied in first).
"""
import os
import tempfile

import numpy as np

from nnc._network import Sequential
from nnc._onnx._graph import Graph, ModelSink, tensor_type
from nnc._onnx._heads import classifier_head, network_outputs, regressor_head, link
from nnc._onnx._layers import export_layers, get_exporter

#: opset used when ``opset=None``: supported by ONNX Runtime >= 1.14 and by skl2onnx
DEFAULT_OPSET = 17
#: the oldest opset the exporters are written for (Squeeze / Unsqueeze / ReduceSum axes as inputs,
#: Softmax over one axis)
MIN_OPSET = 13


def check_opset(opset):
    """The default-domain opset to target: DEFAULT_OPSET for None, else a checked int."""
    from onnx.defs import onnx_opset_version
    newest = onnx_opset_version()
    if opset is None:
        return min(DEFAULT_OPSET, newest)
    if not isinstance(opset, (int, np.integer)) or isinstance(opset, bool):
        raise TypeError(f"opset must be an int or None, got {type(opset).__name__}")
    if opset < MIN_OPSET:
        raise ValueError(f"opset {opset} is too old: nnc exports need opset >= {MIN_OPSET}")
    if opset > newest:
        raise ValueError(f"opset {opset} is newer than the installed onnx package knows "
                         f"(<= {newest})")
    return int(opset)


def describe(model):
    """(network, kind) with kind 'sequential', 'classifier' or 'regressor'; clear errors for
    anything else (an unbuilt network, an unfitted estimator, a foreign object)."""
    if isinstance(model, Sequential):
        if not model.built:
            raise ValueError("the Sequential is not built: give input_shape or call forward "
                             "before exporting it")
        return model, "sequential"
    if hasattr(model, "_check_is_fitted") and hasattr(model, "_is_classifier"):
        model._check_is_fitted()          # NotFittedError, as predict would raise
        net = model.network_
        # the weights predict would use (MLP: arrays assigned to coefs_ are copied in, as
        # predict and warm starts do; a no-op for the NeuralNet estimators)
        model._sync_user_weights(net)
        return net, ("classifier" if model._is_classifier else "regressor")
    raise TypeError(f"to_onnx expects a fitted nnc estimator or a built nnc.Sequential, got "
                    f"{type(model).__name__}")


def input_dtype(net):
    """dtype of the graph input: the first layer's declaration, else the network dtype."""
    declared = get_exporter(net.layers[0], 0).input_dtype
    return np.dtype(net.dtype if declared is None else declared(net.layers[0], net.dtype))


def export_network(g, net, x):
    """Every layer in order; returns the name of the last layer's output (the logits)."""
    g.mask = None
    return export_layers(g, net.layers, x)


def build_graph(g, model, net, kind, x, outputs, label_classes=None, proba_dtype=None):
    """Network + head of ``model`` into ``g`` from input tensor ``x``, writing the tensors named in
    ``outputs`` (dict: 'label', 'probabilities' or 'variable' -> name)."""
    z = export_network(g, net, x)
    if kind == "classifier":
        classifier_head(g, model, z, outputs["label"], outputs["probabilities"],
                        label_classes=label_classes, proba_dtype=proba_dtype)
    elif kind == "regressor":
        regressor_head(g, net, z, outputs["variable"])
    else:
        g.rename(link(g, net, z), outputs["variable"])


def to_onnx(model, path=None, *, opset=None, _force_decompose=False):
    """See ``nnc.to_onnx``."""
    from onnx import helper

    from nnc._version import __version__

    net, kind = describe(model)
    opset = check_opset(opset)
    sink = ModelSink()
    g = Graph(sink, net.dtype, opset, force_decompose=_force_decompose)
    for name in ("X", "label", "probabilities", "variable"):
        sink.reserve(name)
    outputs = network_outputs(model, net, kind)
    build_graph(g, model, net, kind, "X", {name: name for name, _, _ in outputs})
    inputs = [helper.make_tensor_value_info("X", tensor_type(input_dtype(net)),
                                            ["N"] + list(net.input_shape))]
    graph = helper.make_graph(
        sink.nodes, f"nnc_{type(model).__name__}", inputs,
        [helper.make_tensor_value_info(name, tensor_type(dtype), shape)
         for name, dtype, shape in outputs],
        initializer=sink.initializers)
    opset_ids = [helper.make_opsetid("", opset)]
    proto = helper.make_model(graph, opset_imports=opset_ids, producer_name="nnc",
                              producer_version=__version__,
                              doc_string=f"{type(model).__name__} exported by nnc {__version__}")
    # the oldest IR version that carries this opset, so older runtimes can load the file
    proto.ir_version = helper.find_min_ir_version_for(opset_ids)
    if path is not None:
        _write_atomically(proto, path)
    return proto


def _write_atomically(proto, path):
    """Serialise to a temporary file beside ``path`` and rename it: a reader never sees half a
    file and a failed write leaves an existing file as it was."""
    path = os.fspath(path)
    data = proto.SerializeToString()
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".nnc-onnx-", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, 0o666 & ~_umask())     # mkstemp makes it 0600; a model file is shared
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def _umask():
    mask = os.umask(0o022)
    os.umask(mask)
    return mask
