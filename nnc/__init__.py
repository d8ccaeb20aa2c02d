"""nnc: neural networks with compiled Cython kernels and a scikit-learn face."""
from nnc._version import __version__
from nnc._config import show_config, set_config, get_config, config_context
from nnc._distributed import distributed
from nnc._network import Sequential
from nnc._gradcheck import check_gradients
from nnc import _threads  # noqa: F401  (sets up the thread policy: CPUs, the BLAS thread API)
from nnc._estimators import (MLPClassifier, MLPRegressor, NeuralNetClassifier,
                             NeuralNetRegressor)
from nnc._io import save, load   # model files sit above the estimators and the network
from nnc import callbacks       # nnc.callbacks.EarlyStopping ... (they import no estimator)

__all__ = ["__version__", "Sequential", "check_gradients", "save", "load", "show_config",
           "set_config", "get_config", "config_context", "distributed",
           "MLPClassifier", "MLPRegressor", "NeuralNetClassifier", "NeuralNetRegressor",
           "to_onnx", "register_skl2onnx"]


def to_onnx(model, path=None, *, opset=None):
    """Export a fitted estimator or a built Sequential to ONNX (needs ``pip install "nnc[onnx]"``).

    Parameters
    ----------
    model : fitted MLPClassifier, MLPRegressor, NeuralNetClassifier, NeuralNetRegressor, or a
        built nnc.Sequential
    path : str or path-like, optional
        Also write the model there (atomically: a temporary file renamed into place).
    opset : int or None, default=None
        Default-domain opset; None = 17.  Opsets older than 13 are rejected.

    Returns
    -------
    onnx.ModelProto
        Input ``X`` (n, *input_shape) of the model's dtype.  Outputs: classifiers ``label``
        (``predict``: the real ``classes_``, strings included; int64 (n, K) indicators for
        multilabel) and ``probabilities`` (``predict_proba``); regressors and Sequential
        ``variable`` (``predict``).  A layer without an exporter raises TypeError naming it.

    Run it with ONNX Runtime::

        import onnxruntime as ort
        sess = ort.InferenceSession(nnc.to_onnx(clf).SerializeToString())
        label, proba = sess.run(None, {"X": X.astype(np.float32)})
    """
    from nnc._onnx import to_onnx as _to_onnx   # onnx is imported only here, when called
    return _to_onnx(model, path, opset=opset)


def register_skl2onnx():
    """Register nnc's estimators with skl2onnx, so ``skl2onnx.to_onnx`` converts pipelines that
    contain them.  Idempotent; needs ``pip install "nnc[onnx]"``."""
    from nnc._onnx import register_skl2onnx as _register
    _register()
