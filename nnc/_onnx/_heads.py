"""Output heads: the logits of a network turned into what ``predict`` / ``predict_proba`` return.

Links (``nnc.losses``): softmax -> Softmax over the classes, logistic -> Sigmoid, exp -> Exp,
identity -> nothing.  Classifier modes (``_target_mode`` of nnc's classifiers):

* 'softmax'    probabilities = Softmax(z); label = classes[ArgMax(probabilities)]
* 'sigmoid'    p = Sigmoid(z) (n, 1); probabilities = [1 - p, p]; label = classes[p > 0.5]
* 'ovr'        P = Sigmoid(z); probabilities = P / sum(P); label = classes[ArgMax(P)]
* 'multilabel' probabilities = Sigmoid(z); label = int64(probabilities > 0.5) (n, K)
* one class    probabilities = 1 (n, 1); label = classes[0]

The label is a lookup in a constant tensor holding ``classes_`` (Gather on ArgMax / the
threshold), so string classes come out as strings.  ArgMax takes the first maximum, as NumPy.
"""
import numpy as np

from nnc.losses import get_loss
from nnc._onnx._graph import as_tensor_array


def label_array(classes):
    """classes_ as an array ONNX can hold: numbers and bools as they are, text as str."""
    classes = np.asarray(classes)
    if classes.dtype.kind in "US":
        return classes.astype(str).astype(object)
    if classes.dtype.kind == "O":
        values = classes.tolist()
        if all(isinstance(v, str) for v in values):
            return classes
        if all(isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_))
               for v in values):
            return classes.astype(np.int64)
        raise TypeError("classes_ of mixed or non-numeric, non-string types cannot be stored "
                        f"in an ONNX tensor: {values[:5]}")
    if classes.dtype.kind not in "biuf":
        raise TypeError(f"classes_ of dtype {classes.dtype} cannot be stored in an ONNX tensor")
    return classes


def link(g, net, z):
    """The network's output link applied to the logits z."""
    act = get_loss(net.loss).out_activation
    if act == "softmax":
        return g.op("Softmax", [z], "softmax", axis=-1)
    if act == "logistic":
        return g.op("Sigmoid", [z], "sigmoid")
    if act == "exp":
        return g.op("Exp", [z], "exp")
    return z


def _rows_of(g, z, width, value, dtype, hint):
    """A (n, width) tensor (or (n,) when width is None) filled with ``value``, n = rows of z."""
    from onnx import helper
    n = g.slice(g.op("Shape", [z], "shape"), [0], [1], [0], hint="n_rows")
    shape = n if width is None else g.op("Concat", [n, g.ints([width])], "fill_shape", axis=0)
    fill = helper.make_tensor("value", _elem_type(dtype), [1], [value])
    return g.op("ConstantOfShape", [shape], hint, value=fill)


def _elem_type(dtype):
    from nnc._onnx._graph import tensor_type
    return tensor_type(dtype)


def classifier_head(g, est, z, label_out, proba_out, label_classes=None, proba_dtype=None):
    """Writes ``label_out`` and ``proba_out`` (see the module docstring).

    label_classes : the constant the labels are looked up in (default ``classes_``);
    proba_dtype : cast the probabilities to this dtype (skl2onnx pipelines type them after their
        input), default: the network dtype."""
    from onnx import TensorProto
    mode = est._target_mode
    classes = as_tensor_array(label_array(est.classes_) if label_classes is None
                              else label_classes)
    dtype = g.dtype
    if mode == "multilabel":
        proba = g.op("Sigmoid", [z], "probabilities")
        above = g.op("Greater", [proba, g.const(0.5, "half")], "above_half")
        g.op("Cast", [above], outputs=[label_out], to=TensorProto.INT64)
    else:
        table = g.const(classes, "classes", dtype=classes.dtype)   # not the model dtype
        if classes.size == 1:
            proba = _rows_of(g, z, 1, 1.0, dtype, "probabilities")
            index = _rows_of(g, z, None, 0, np.int64, "class_index")
        elif mode == "sigmoid":
            p = g.op("Sigmoid", [z], "p")                                    # (n, 1)
            q = g.op("Sub", [g.const(1.0, "one"), p], "one_minus_p")
            proba = g.op("Concat", [q, p], "probabilities", axis=1)
            above = g.op("Greater", [g.squeeze(p, [1]), g.const(0.5, "half")], "above_half")
            index = g.op("Cast", [above], "class_index", to=TensorProto.INT64)
        elif mode == "softmax":
            proba = g.op("Softmax", [z], "probabilities", axis=-1)
            index = g.op("ArgMax", [proba], "class_index", axis=1, keepdims=0)
        elif mode == "ovr":
            P = g.op("Sigmoid", [z], "sigmoid")
            index = g.op("ArgMax", [P], "class_index", axis=1, keepdims=0)
            total = g.op("ReduceSum", [P, g.ints([1])], "total", keepdims=1)
            proba = g.op("Div", [P, total], "probabilities")
        else:
            raise ValueError(f"unknown classifier output mode {mode!r}")
        g.op("Gather", [table, index], outputs=[label_out], axis=0)
    if proba_dtype is not None and np.dtype(proba_dtype) != dtype:
        g.op("Cast", [proba], outputs=[proba_out], to=_elem_type(proba_dtype))
    else:
        g.rename(proba, proba_out)


def regressor_head(g, net, z, out):
    """``predict`` of the regressors: the link, then (n,) for one output."""
    y = link(g, net, z)
    if net.output_shape == (1,):
        y = g.squeeze(y, [1], "values")
    g.rename(y, out)


def network_outputs(model, net, kind):
    """[(name, dtype, shape)] of the graph outputs of ``to_onnx``."""
    dtype = net.dtype
    if kind == "classifier":
        mode = model._target_mode
        classes = label_array(model.classes_)
        K = int(classes.size)
        if mode == "multilabel":
            return [("label", np.int64, ["N", K]), ("probabilities", dtype, ["N", K])]
        return [("label", classes.dtype, ["N"]),
                ("probabilities", dtype, ["N", 1 if K == 1 else K])]
    if kind == "regressor":
        shape = ["N"] if net.output_shape == (1,) else ["N"] + list(net.output_shape)
        return [("variable", dtype, shape)]
    return [("variable", dtype, ["N"] + list(net.output_shape))]
