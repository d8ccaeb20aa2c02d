"""NeuralNetClassifier and NeuralNetRegressor: any nnc layer stack behind a scikit-learn face.

``layers`` is the hidden body (a list of nnc.layers instances, never mutated: every fit builds
fresh copies with ``type(layer).from_config(layer.get_config())``, kept as ``layers_``); the
estimator appends the output head, a Dense sized from y, whose link (softmax / sigmoid /
identity / exp) is handled by the loss.  Fit, early stopping, warm start, partial_fit and the
stopping rule are the MLPs' (the fit loop in ``_base.py``).

Beyond the MLPs: ``fit(X, y, sample_weight=None, *, X_val=None, y_val=None,
sample_weight_val=None)`` takes a validation set (HistGradientBoosting's names), and the
learning-rate schedules of the MLPs' ``learning_rate`` parameter are ``learning_rate_schedule``
here (``learning_rate`` is the rate itself, as the MLPs' ``learning_rate_init``), for every
optimizer (the MLPs schedule solver='sgd' only, as scikit-learn does).
"""


from nnc import _distributed
from nnc._compat import ClassifierMixin, RegressorMixin
from nnc._estimators._base import BaseNeuralNet
from nnc._estimators._classifier import _ClassifierNN
from nnc._estimators._params import _check_interval, _check_options, _is_int, _param_error
from nnc._estimators._regressor import _RegressorNN
from nnc._validation import not_a_layer_error
from nnc.layers._base import Layer
from nnc.layers._dense import Dense
from nnc.layers._activations import ReLU
from nnc.optimizers import Optimizer, get_optimizer

_OPTIMIZERS = ("sgd", "momentum", "nesterov", "adagrad", "rmsprop", "adam")


class _BaseNeuralNet(BaseNeuralNet):
    """Hyper-parameters and layers of the NeuralNet estimators."""

    _warn_max_iter = False

    def _check_params(self):
        self._body()
        self._input_shape_param()
        opt = self.optimizer
        if not isinstance(opt, Optimizer):
            _check_options(self, "optimizer", set(_OPTIMIZERS))
        _check_interval(self, "learning_rate", float, 0, None, "neither")
        _check_interval(self, "batch_size", int, 1, None, "left")
        _check_interval(self, "max_epochs", int, 1, None, "left")
        if self.clip_grad_norm is not None:
            _check_interval(self, "clip_grad_norm", float, 0, None, "neither")
        _check_options(self, "learning_rate_schedule", {"constant", "invscaling", "adaptive"})
        _check_interval(self, "power_t", float, 0, None, "left")
        self._check_common_params()
        self._dtype_param()
        self._check_loss_param()

    def _body(self):
        """Validated hidden layers (the user's objects; copied in _make_layers)."""
        layers = self.layers
        if layers is None:
            return [Dense(100), ReLU()]
        if isinstance(layers, Layer):
            layers = [layers]
        if not isinstance(layers, (list, tuple)):
            _param_error(self, "layers", "None or a list of nnc.layers instances", layers,
                         TypeError)
        for i, layer in enumerate(layers):
            if not isinstance(layer, Layer):
                raise not_a_layer_error(f"layers[{i}]", layer, Layer)
        return list(layers)

    def _input_shape_param(self):
        shape = self.input_shape
        if shape is None:
            return None
        if _is_int(shape):
            shape = (shape,)
        if not isinstance(shape, (tuple, list)) or not shape or not all(_is_int(s) for s in shape):
            _param_error(self, "input_shape", "None, an int or a tuple of ints", shape, TypeError)
        if any(s < 1 for s in shape):
            _param_error(self, "input_shape", "a tuple of positive ints", shape)
        return tuple(int(s) for s in shape)

    def _accepts_nd_input(self):
        return True

    def _first_layer(self, reset):
        if not reset:
            return self.network_.layers[0]
        return self._body()[0]

    def _max_iter(self):
        return self.max_epochs

    def _solver(self):
        return "stochastic"

    def _batch_size(self, n):
        return int(min(self.batch_size, n))

    def _lr_schedule(self):
        return (self.learning_rate_schedule, self._initial_learning_rate(),
                float(self.power_t))

    def _initial_learning_rate(self):
        opt = self.optimizer
        if isinstance(opt, Optimizer):
            return float(opt.get_config()["learning_rate"])
        return float(self.learning_rate)

    def _clip_grad_norm(self):
        return None if self.clip_grad_norm is None else float(self.clip_grad_norm)

    def _partial_fit_available(self):
        return True

    def _make_layers(self, n_outputs):
        body = [type(layer).from_config(layer.get_config()) for layer in self._body()]
        return body + [Dense(int(n_outputs))]

    def _make_optimizer(self):
        opt = self.optimizer
        if isinstance(opt, Optimizer):
            # a fresh copy: the user's instance (and its state) is never touched
            opt = type(opt)(**opt.get_config())
            if self.alpha:
                opt.alpha = float(self.alpha)
            return opt
        return get_optimizer(opt, learning_rate=float(self.learning_rate),
                             alpha=float(self.alpha))

    def fit(self, X, y, sample_weight=None, *, X_val=None, y_val=None, sample_weight_val=None):
        """Fit the network to X and y (from scratch unless ``warm_start``).

        Parameters
        ----------
        X : array-like or sparse matrix, shape (n_samples, *input_shape) or (n_samples,
            n_features)
        y : array-like, shape (n_samples,) or (n_samples, n_outputs)
        sample_weight : array-like of shape (n_samples,), default=None
        X_val : array-like, shape (n_val, ...) like X, default=None
            A validation set: its score and loss are recorded after every epoch
            (``validation_scores_``, ``validation_loss_curve_``).  With ``early_stopping`` it
            replaces the ``validation_fraction`` split and drives stopping; without, it is only
            watched.
        y_val : array-like, shape (n_val,) or (n_val, n_outputs), default=None
            Given exactly when X_val is.
        sample_weight_val : array-like of shape (n_val,), default=None

        Returns
        -------
        self
        """
        return self._fit(X, y, sample_weight, incremental=False, X_val=X_val, y_val=y_val,
                         sample_weight_val=sample_weight_val)

    def _report_epoch(self, n_iter, loss, val_score, elapsed):
        if self.verbose and _distributed.prints_here():     # data-parallel: rank 0 prints
            line = f"Epoch {n_iter}/{self.max_epochs}, loss = {loss:.8f}"
            if val_score is not None:
                line += f", validation score = {val_score:.6f}"
            print(line + f", time since start {elapsed:.2f}s")


# numpydoc pieces, assembled in __init__'s order (loss sits between dtype and clip_grad_norm);
# tests/test_docstrings.py checks every public class.
_PARAMS_BEFORE_LOSS = """
    Parameters
    ----------
    layers : list of nnc.layers.Layer or None, default=None
        The hidden body; the output Dense is appended.  None: [Dense(100), ReLU()].  The list
        is never modified: each fit trains fresh copies (``layers_``).
    input_shape : tuple of int or None, default=None
        Shape of one sample.  A 2-D X with prod(input_shape) columns is reshaped (pipelines).
        None: X.shape[1:].
    optimizer : {'sgd', 'momentum', 'nesterov', 'adagrad', 'rmsprop', 'adam'} or Optimizer
        An nnc.optimizers.Optimizer instance is copied (its own learning rate is used;
        ``alpha`` > 0 overrides its L2).  Default 'adam'.
    learning_rate : float, default=1e-3
    batch_size : int, default=64
    max_epochs : int, default=10
    alpha : float, default=0.0
        L2 penalty on the weights (not the biases).
    shuffle : bool, default=True
    random_state : int, RandomState or None, default=None
    early_stopping : bool, default=False
        Hold out validation_fraction of the data, stop when the validation score has not
        improved by tol for n_iter_no_change epochs, and restore the best weights.
    validation_fraction : float, default=0.1
    n_iter_no_change : int, default=10
    tol : float, default=1e-4
        Without early stopping: stop when the training loss has not improved by tol for
        n_iter_no_change epochs.
    verbose : bool, default=False
        One line per epoch: epoch, loss, validation score (with early_stopping) and the seconds
        since training started.
    warm_start : bool, default=False
    dtype : 'float32', 'float64' or None, default='float32'
        None: float32 input stays float32, anything else float64."""

_PARAMS_AFTER_LOSS = """
    clip_grad_norm : float or None, default=None
        Rescale each batch gradient to at most this global L2 norm.
    learning_rate_schedule : {'constant', 'invscaling', 'adaptive'}, default='constant'
        The MLPs' ``learning_rate`` schedules, for every optimizer: 'invscaling' sets the rate
        to learning_rate / (t + 1)^power_t after each epoch (t: samples seen); 'adaptive'
        divides it by 5 instead of stopping when the stopping rule fires (n_iter_no_change
        epochs without improvement by tol), and stops once it is at most 1e-6.  With an
        Optimizer instance, its own learning rate is the initial one.  A
        ``nnc.callbacks.LearningRateScheduler`` set with ``set_callbacks`` takes precedence.
    power_t : float, default=0.5
        Exponent of 'invscaling'."""

_ATTRIBUTES = """

    Attributes
    ----------
    network_ : nnc.Sequential
        The fitted network.
    layers_ : list of nnc.layers.Layer
        Its layers: copies of the body, then the output head.
    n_features_in_ : int
    loss_ : float
        Training loss of the last epoch.
    loss_curve_, validation_scores_ : list of float
        Loss and validation score per epoch (validation scores with a validation set: X_val,
        or early_stopping's split).
    validation_loss_curve_ : list of float or None
        The loss on the validation set after each epoch (the training loss's data term, without
        the L2 penalty that loss_curve_ includes when alpha > 0); None without a validation
        set.
    best_loss_, best_validation_score_ : float or None
    n_iter_ : int
        Epochs run by the last fit.
    t_ : int
        Training samples seen.
    n_outputs_ : int
    out_activation_ : str
        Output link: 'identity', 'logistic', 'softmax' or 'exp'."""


class NeuralNetClassifier(_ClassifierNN, ClassifierMixin, _BaseNeuralNet):
    __doc__ = ("Classifier on any stack of nnc layers (dense, conv, recurrent ...).\n"
               + _PARAMS_BEFORE_LOSS + """
    loss : {'auto', 'softmax_cross_entropy', 'binary_cross_entropy'}, default='auto'
        'auto': softmax cross-entropy for multiclass, binary cross-entropy (one logistic
        output) for binary and multilabel targets.  'softmax_cross_entropy' on binary targets
        uses two softmax outputs; 'binary_cross_entropy' on multiclass targets trains one
        logistic output per class (one-vs-rest, probabilities normalised).""" + _PARAMS_AFTER_LOSS
               + """
    class_weight : None, 'balanced' or dict, default=None
        Multiplies the sample weights by the weight of each sample's class ('balanced':
        n_samples / (n_classes * count)), as MLPClassifier's.  Not for multilabel targets; a
        user-given validation set is weighted by sample_weight_val only.""" + _ATTRIBUTES + """
    classes_ : ndarray
        The class labels.
""")

    def __init__(self, layers=None, input_shape=None, optimizer="adam", learning_rate=1e-3,
                 batch_size=64, max_epochs=10, alpha=0.0, shuffle=True, random_state=None,
                 early_stopping=False, validation_fraction=0.1, n_iter_no_change=10, tol=1e-4,
                 verbose=False, warm_start=False, dtype="float32", loss="auto",
                 clip_grad_norm=None, learning_rate_schedule="constant", power_t=0.5,
                 class_weight=None):
        self.layers = layers
        self.input_shape = input_shape
        self.optimizer = optimizer
        self.learning_rate = learning_rate
        self.batch_size = batch_size
        self.max_epochs = max_epochs
        self.alpha = alpha
        self.shuffle = shuffle
        self.random_state = random_state
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.n_iter_no_change = n_iter_no_change
        self.tol = tol
        self.verbose = verbose
        self.warm_start = warm_start
        self.dtype = dtype
        self.loss = loss
        self.clip_grad_norm = clip_grad_norm
        self.learning_rate_schedule = learning_rate_schedule
        self.power_t = power_t
        self.class_weight = class_weight

    def _check_loss_param(self):
        _check_options(self, "loss", {"auto", "softmax_cross_entropy", "binary_cross_entropy"})
        cw = self.class_weight
        if not (cw is None or (isinstance(cw, str) and cw == "balanced")
                or isinstance(cw, dict)):
            exc = ValueError if isinstance(cw, str) else TypeError
            _param_error(self, "class_weight", "None, 'balanced' or a dict", cw, exc)

    def _choose_mode(self, label_type, n_classes):
        if self.loss == "auto":
            return super()._choose_mode(label_type, n_classes)
        if label_type == "multilabel-indicator":
            if self.loss == "softmax_cross_entropy":
                raise ValueError("loss='softmax_cross_entropy' cannot fit multilabel targets; "
                                 "use 'binary_cross_entropy' or 'auto'")
            return "multilabel"
        if self.loss == "softmax_cross_entropy":
            return "softmax"
        return "sigmoid" if n_classes <= 2 else "ovr"


class NeuralNetRegressor(_RegressorNN, RegressorMixin, _BaseNeuralNet):
    __doc__ = ("Regressor on any stack of nnc layers (dense, conv, recurrent ...).\n"
               + _PARAMS_BEFORE_LOSS + """
    loss : {'auto', 'mse', 'squared_error', 'poisson'}, default='auto'
        'auto' = 'mse' (0.5 * squared error summed over outputs, averaged over samples);
        'poisson' uses the exp link and needs y >= 0.""" + _PARAMS_AFTER_LOSS + _ATTRIBUTES
               + "\n")

    def __init__(self, layers=None, input_shape=None, optimizer="adam", learning_rate=1e-3,
                 batch_size=64, max_epochs=10, alpha=0.0, shuffle=True, random_state=None,
                 early_stopping=False, validation_fraction=0.1, n_iter_no_change=10, tol=1e-4,
                 verbose=False, warm_start=False, dtype="float32", loss="auto",
                 clip_grad_norm=None, learning_rate_schedule="constant", power_t=0.5):
        self.layers = layers
        self.input_shape = input_shape
        self.optimizer = optimizer
        self.learning_rate = learning_rate
        self.batch_size = batch_size
        self.max_epochs = max_epochs
        self.alpha = alpha
        self.shuffle = shuffle
        self.random_state = random_state
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.n_iter_no_change = n_iter_no_change
        self.tol = tol
        self.verbose = verbose
        self.warm_start = warm_start
        self.dtype = dtype
        self.loss = loss
        self.clip_grad_norm = clip_grad_norm
        self.learning_rate_schedule = learning_rate_schedule
        self.power_t = power_t

    def _check_loss_param(self):
        _check_options(self, "loss", {"auto", "mse", "squared_error", "poisson"})

    def _regression_loss(self):
        return "poisson" if self.loss == "poisson" else "mse"
