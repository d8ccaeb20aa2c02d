"""skl2onnx converters for nnc's estimators (registered by ``nnc.register_skl2onnx()``).

Registration is an explicit call, not a side effect of ``import nnc``: skl2onnx is a heavy
optional package that nnc never imports on its own, and a converter registry changed behind the
user's back would be surprising.  After the call, ``skl2onnx.to_onnx`` / ``convert_sklearn``
convert any pipeline holding an nnc estimator: skl2onnx's default parsers declare the outputs
(classifiers: ``label`` and ``probabilities``, followed by skl2onnx's ZipMap unless the option
``zipmap=False`` is given; regressors: ``variable``), our shape calculators type them and our
converters emit the same graph as ``nnc.to_onnx`` (``_export.build_graph``) into skl2onnx's
container.

skl2onnx's conventions apply inside a pipeline: the input arrives as a 2-D tensor of the
pipeline's type (cast to the model dtype and reshaped to (n, *input_shape) here); probabilities
and regression values take the pipeline's float type (a float32 model in a float64 pipeline
gives its float32 numbers widened to float64, exactly); labels are int64 for numeric or bool
classes (float classes must be integral, as in skl2onnx's own converters) and strings otherwise.
Regression values keep ``predict``'s shape: (n,) for one output, (n, n_outputs) otherwise.
"""
import numpy as np

from nnc._onnx._export import MIN_OPSET, build_graph, describe
from nnc._onnx._graph import Graph, Skl2OnnxSink

_ALIAS = "Nnc{}"


def _classes_for_skl2onnx(classes):
    """classes_ as skl2onnx's label tensors hold them: int64 or str."""
    classes = np.asarray(classes)
    if classes.dtype.kind in "biu":
        return classes.astype(np.int64)
    if classes.dtype.kind == "f":
        as_int = classes.astype(np.int64)
        if not np.array_equal(as_int, classes):
            raise ValueError("skl2onnx labels are int64 or strings: float classes_ must be "
                             f"integral to convert, got {classes[:5]}")
        return as_int
    return np.array([str(c) for c in classes.tolist()], dtype=object)


def _n_rows(operator):
    return operator.inputs[0].get_first_dimension()


def _classifier_shape(operator):
    from skl2onnx.common.data_types import Int64TensorType, StringTensorType
    est = operator.raw_operator
    N = _n_rows(operator)
    K = int(np.asarray(est.classes_).size)
    if est._target_mode == "multilabel":
        operator.outputs[0].type = Int64TensorType([N, K])
    elif _classes_for_skl2onnx(est.classes_).dtype == object:
        operator.outputs[0].type = StringTensorType([N])
    else:
        operator.outputs[0].type = Int64TensorType([N])
    proba = operator.outputs[1]
    proba.type = type(proba.type)([N, K])


def _regressor_shape(operator):
    est = operator.raw_operator
    N = _n_rows(operator)
    var = operator.outputs[0]
    n_outputs = int(est.n_outputs_)
    var.type = type(var.type)([N] if n_outputs == 1 else [N, n_outputs])


def _numpy_type(variable):
    from skl2onnx.common.data_types import guess_numpy_type
    return np.dtype(guess_numpy_type(variable.type))


def _convert(scope, operator, container):
    from onnx import helper
    est = operator.raw_operator
    net, kind = describe(est)
    opset = container.target_opset
    if opset is not None and opset < MIN_OPSET:
        raise ValueError(f"target_opset {opset} is too old: nnc estimators need opset >= "
                         f"{MIN_OPSET}")
    g = Graph(Skl2OnnxSink(scope, container, None), net.dtype,
              MIN_OPSET if opset is None else opset)
    x_var = operator.inputs[0]
    x = x_var.full_name
    if _numpy_type(x_var) != net.dtype:
        x = g.op("Cast", [x], "x_cast", to=helper.np_dtype_to_tensor_dtype(net.dtype))
    shape = x_var.type.shape
    if shape is None or len(shape) != 1 + len(net.input_shape):
        x = g.reshape(x, [-1] + list(net.input_shape), "x_samples")
    if kind == "classifier":
        label_classes = (None if est._target_mode == "multilabel"
                         else _classes_for_skl2onnx(est.classes_))
        outputs = {"label": operator.outputs[0].full_name,
                   "probabilities": operator.outputs[1].full_name}
        build_graph(g, est, net, kind, x, outputs, label_classes=label_classes,
                    proba_dtype=_numpy_type(operator.outputs[1]))
    else:
        out = operator.outputs[0]
        y = g.name("nnc_values")
        build_graph(g, est, net, kind, x, {"variable": y})
        if _numpy_type(out) != net.dtype:
            g.op("Cast", [y], outputs=[out.full_name],
                 to=helper.np_dtype_to_tensor_dtype(_numpy_type(out)))
        else:
            g.rename(y, out.full_name)


_registered = False


def register():
    """Register the converters for the four estimators (idempotent)."""
    global _registered
    if _registered:
        return
    from skl2onnx import update_registered_converter

    from nnc._estimators import (MLPClassifier, MLPRegressor, NeuralNetClassifier,
                                 NeuralNetRegressor)
    for cls in (MLPClassifier, NeuralNetClassifier):
        update_registered_converter(cls, _ALIAS.format(cls.__name__), _classifier_shape,
                                    _convert, options={"zipmap": [True, False, "columns"],
                                                       "nocl": [False]})
    for cls in (MLPRegressor, NeuralNetRegressor):
        update_registered_converter(cls, _ALIAS.format(cls.__name__), _regressor_shape, _convert)
    _registered = True
