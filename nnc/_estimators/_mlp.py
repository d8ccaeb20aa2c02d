"""MLPClassifier and MLPRegressor: drop-ins for scikit-learn's, trained by nnc's kernels.

Same parameters, defaults, fitted attributes and behaviour as ``sklearn.neural_network`` (1.9)
(plus ``validation_loss_curve_`` and scikit-learn callbacks through ``set_callbacks``):
the same random_state gives the same initial weights (Glorot draws W then b per layer from one
RandomState, factor 2 for 'logistic'), the same shuffles and validation split, the same loss
values, stopping rule and learning-rate schedules.  Extras: activation 'leaky_relu', solvers
'rmsprop' and 'adagrad', ``dtype`` and (classifier) ``class_weight``.

``coefs_`` / ``intercepts_`` are lists of views into ``network_.params`` (no copies).  Arrays
assigned to them by the user are validated and copied back into the buffer before a warm start
or a partial_fit (scikit-learn's test_fit sets weights that way).
"""
import warnings

import numpy as np

from nnc._compat import ClassifierMixin, RegressorMixin
from nnc._estimators._base import BaseNeuralNet
from nnc._estimators._classifier import _ClassifierNN
from nnc._estimators._params import (_check_bool, _check_interval, _check_options, _is_int,
                                     _param_error)
from nnc._estimators._regressor import _RegressorNN
from nnc.layers._dense import Dense
from nnc.layers._activations import ACTIVATIONS
from nnc.optimizers import SGD, Adam, AdaGrad, RMSprop

_STOCHASTIC_SOLVERS = ("sgd", "adam", "rmsprop", "adagrad")


class _BaseMLP(BaseNeuralNet):
    """Hyper-parameters and layers of the MLPs; the fit loop lives in BaseNeuralNet."""

    # ---------------------------------------------------------------- params
    def _check_params(self):
        self._hidden_sizes()
        _check_options(self, "activation", set(ACTIVATIONS))
        _check_options(self, "solver", {"lbfgs", *_STOCHASTIC_SOLVERS})
        if not (isinstance(self.batch_size, str) and self.batch_size == "auto"):
            if isinstance(self.batch_size, str):
                _param_error(self, "batch_size", "'auto' or an int in the range [1, inf)",
                             self.batch_size)
            _check_interval(self, "batch_size", int, 1, None, "left")
        _check_options(self, "learning_rate", {"constant", "invscaling", "adaptive"})
        _check_interval(self, "learning_rate_init", float, 0, None, "neither")
        _check_interval(self, "power_t", float, 0, None, "left")
        _check_interval(self, "max_iter", int, 1, None, "left")
        _check_interval(self, "momentum", float, 0, 1, "left")
        _check_bool(self, "nesterovs_momentum")
        _check_interval(self, "beta_1", float, 0, 1, "left")
        _check_interval(self, "beta_2", float, 0, 1, "left")
        _check_interval(self, "epsilon", float, 0, None, "neither")
        _check_interval(self, "max_fun", int, 1, None, "left")
        self._check_common_params()
        self._dtype_param()

    def _hidden_sizes(self):
        sizes = self.hidden_layer_sizes
        if not hasattr(sizes, "__iter__") or isinstance(sizes, str):
            sizes = [sizes]
        sizes = list(sizes)
        for s in sizes:
            if not _is_int(s):
                _param_error(self, "hidden_layer_sizes",
                             "an int or an array-like of ints in the range [1, inf)",
                             self.hidden_layer_sizes, TypeError)
        if any(s <= 0 for s in sizes):
            raise ValueError(f"hidden_layer_sizes must be > 0, got {sizes}.")
        return [int(s) for s in sizes]

    def _max_iter(self):
        return self.max_iter

    def _solver(self):
        return self.solver

    def _batch_size(self, n):
        if self.batch_size == "auto":
            return min(200, n)
        if self.batch_size > n:
            warnings.warn("Got `batch_size` less than 1 or larger than sample size. It is going "
                          "to be clipped")
        return int(np.clip(self.batch_size, 1, n))

    def _lr_schedule(self):
        schedule = self.learning_rate if self.solver == "sgd" else "constant"
        return schedule, float(self.learning_rate_init), float(self.power_t)

    def _initial_learning_rate(self):
        return float(self.learning_rate_init)

    def _partial_fit_available(self):
        if self.solver not in _STOCHASTIC_SOLVERS:
            raise AttributeError("partial_fit is only available for stochastic optimizers. "
                                 f"{self.solver} is not stochastic.")
        return True

    # ---------------------------------------------------------------- network
    def _make_layers(self, n_outputs):
        factor = 2.0 if self.activation == "logistic" else 6.0
        act = ACTIVATIONS[self.activation]
        layers = []
        for size in self._hidden_sizes():
            layers += [Dense(size, init_factor=factor), act()]
        layers.append(Dense(int(n_outputs), init_factor=factor))
        return layers

    def _make_optimizer(self):
        lr, alpha = float(self.learning_rate_init), float(self.alpha)
        if self.solver == "sgd":
            return SGD(learning_rate=lr, momentum=float(self.momentum),
                       nesterov=bool(self.nesterovs_momentum), alpha=alpha)
        if self.solver == "adam":
            return Adam(learning_rate=lr, beta_1=float(self.beta_1), beta_2=float(self.beta_2),
                        epsilon=float(self.epsilon), alpha=alpha)
        if self.solver == "rmsprop":
            return RMSprop(learning_rate=lr, epsilon=float(self.epsilon), alpha=alpha)
        return AdaGrad(learning_rate=lr, epsilon=float(self.epsilon), alpha=alpha)

    # ---------------------------------------------------------------- coefs_ / intercepts_
    def _dense_layers(self, net):
        return [layer for layer in net.layers if isinstance(layer, Dense)]

    def _extra_fitted_attributes(self, net):
        dense = self._dense_layers(net)
        return {"coefs_": [layer.params[0] for layer in dense],
                "intercepts_": [layer.params[1] for layer in dense],
                "n_layers_": len(dense) + 1}

    def _copy_weights_in(self, net, coefs, intercepts):
        """Validate user arrays against the network's views and copy them in."""
        dense = self._dense_layers(net)
        for name, arrays, k in (("coefs_", coefs, 0), ("intercepts_", intercepts, 1)):
            if not isinstance(arrays, (list, tuple)) or len(arrays) != len(dense):
                raise ValueError(f"{name} must be a list of {len(dense)} arrays, got "
                                 f"{type(arrays).__name__} of length "
                                 f"{len(arrays) if hasattr(arrays, '__len__') else '?'}")
            for i, (a, layer) in enumerate(zip(arrays, dense)):
                view = layer.params[k]
                if a is view:
                    continue
                arr = np.asarray(a, dtype=np.float64)
                if arr.shape != view.shape:
                    raise ValueError(f"{name}[{i}] has shape {arr.shape}, expected {view.shape}")
                if not np.isfinite(arr).all():
                    raise ValueError(f"{name}[{i}] contains NaN or infinity")
        for arrays, k in ((coefs, 0), (intercepts, 1)):
            for a, layer in zip(arrays, dense):
                if a is not layer.params[k]:
                    layer.params[k][...] = np.asarray(a)

    def _sync_user_weights(self, net):
        coefs = self.__dict__.get("coefs_")
        intercepts = self.__dict__.get("intercepts_")
        if coefs is not None and intercepts is not None:
            self._copy_weights_in(net, coefs, intercepts)

    def _read_fitted(self):
        # predictions use assigned coefs_ / intercepts_ as scikit-learn's do: copy them in once
        # and make the attributes views of the buffer again (under the fitted-state lock, so the
        # coefs_ and the network_ compared are those of one fit)
        net = self.network_
        coefs, intercepts = self.coefs_, self.intercepts_
        dense = self._dense_layers(net)
        views = len(coefs) == len(dense) and len(intercepts) == len(dense)
        if views:
            for a, b, layer in zip(coefs, intercepts, dense):   # a loop: ~1 µs less than any()
                params = layer.params
                if a is not params[0] or b is not params[1]:
                    views = False
                    break
        if not views:
            self._copy_weights_in(net, coefs, intercepts)
            self._extra_fitted(net)
        return super()._read_fitted()

    def _load_user_weights(self, net, incremental):
        # scikit-learn keeps coefs_ / intercepts_ set on an unfitted estimator when the first
        # call is a partial_fit or a warm start
        if (incremental or self.warm_start) and "coefs_" in self.__dict__ \
                and "intercepts_" in self.__dict__:
            self._copy_weights_in(net, self.coefs_, self.intercepts_)

    # ---------------------------------------------------------------- pickling
    def __getstate__(self):
        parent = getattr(super(), "__getstate__", None)
        state = parent() if parent is not None else None
        state = dict(self.__dict__ if state is None else state)
        net = state.get("network_")
        if net is not None and "coefs_" in state:
            dense = self._dense_layers(net)
            # views are re-created on unpickling; user-assigned arrays are kept as they are
            for name, k in (("coefs_", 0), ("intercepts_", 1)):
                arrays = state.get(name)
                if isinstance(arrays, list) and len(arrays) == len(dense):
                    state[name] = [None if a is layer.params[k] else a
                                   for a, layer in zip(arrays, dense)]
        return state

    def __setstate__(self, state):
        parent = getattr(super(), "__setstate__", None)
        if parent is not None:
            parent(state)
        else:
            self.__dict__.update(state)
        net = self.__dict__.get("network_")
        if net is not None:
            dense = self._dense_layers(net)
            for name, k in (("coefs_", 0), ("intercepts_", 1)):
                arrays = self.__dict__.get(name)
                if isinstance(arrays, list) and len(arrays) == len(dense):
                    self.__dict__[name] = [layer.params[k] if a is None else a
                                           for a, layer in zip(arrays, dense)]


# numpydoc pieces: each class's docstring lists its parameters in __init__'s order, then its
# attributes (tests/test_docstrings.py checks this for every public class).
_PARAMS_HEADER = """
    Parameters
    ----------"""

_COMMON_PARAMS = """
    hidden_layer_sizes : array-like of shape (n_layers - 2,), default=(100,)
        The ith element is the number of neurons in the ith hidden layer.
    activation : {'identity', 'logistic', 'tanh', 'relu', 'leaky_relu'}, default='relu'
        Hidden-layer activation ('leaky_relu': slope 0.01 for negative inputs).
    solver : {'lbfgs', 'sgd', 'adam', 'rmsprop', 'adagrad'}, default='adam'
    alpha : float, default=0.0001
        L2 penalty; the term 0.5 * alpha * ||W||^2 is divided by the batch's sample-weight sum.
    batch_size : int or 'auto', default='auto'
        'auto' = min(200, n_samples).
    learning_rate : {'constant', 'invscaling', 'adaptive'}, default='constant'
        Schedule (solver='sgd' only): invscaling lr = learning_rate_init / (t + 1)^power_t after
        each epoch; adaptive divides by 5 after n_iter_no_change epochs without improvement.
    learning_rate_init : float, default=0.001
    power_t : float, default=0.5
    max_iter : int, default=200
        Epochs for the stochastic solvers, iterations for 'lbfgs'.
    shuffle : bool, default=True
    random_state : int, RandomState or None, default=None
        Weights, validation split and shuffles (the same draws as scikit-learn).
    tol : float, default=1e-4
    verbose : bool or int, default=False
    warm_start : bool, default=False
    momentum : float, default=0.9
    nesterovs_momentum : bool, default=True
    early_stopping : bool, default=False
        Hold out validation_fraction of the data and stop when its score stops improving; the
        best weights are restored.
    validation_fraction : float, default=0.1
    beta_1, beta_2, epsilon : float, defaults 0.9, 0.999, 1e-8
        Adam's moment decays and denominator term (epsilon also for RMSprop and AdaGrad).
    n_iter_no_change : int or inf, default=10
    max_fun : int, default=15000
        Maximum loss evaluations of 'lbfgs'.
    dtype : None, 'float32' or 'float64', default=None
        None: float32 input is trained in float32, anything else in float64."""

_COMMON_ATTRIBUTES = """

    Attributes
    ----------
    coefs_, intercepts_ : list of ndarray
        Weights and biases of each layer (views into ``network_.params``).
    loss_ : float
        Training loss at the end of the last fit.
    loss_curve_, validation_scores_ : list of float
        Loss and validation score per epoch (stochastic solvers only; validation scores with
        early_stopping).
    validation_loss_curve_ : list of float or None
        With early_stopping, the loss on the validation split after each epoch (the training
        loss's formula without its L2 term 0.5 * alpha * ||W||^2 / batch weight); else None.
    best_loss_, best_validation_score_ : float or None
        As scikit-learn's (stochastic solvers only).
    n_iter_, t_ : int
        Iterations (epochs) run, and training samples seen.
    n_features_in_ : int
    feature_names_in_ : ndarray of str
        Only when X has feature names.
    n_layers_, n_outputs_ : int
    out_activation_ : str
        Output link: 'identity', 'logistic', 'softmax' or 'exp'.
    network_ : nnc.Sequential
        The fitted network.
    layers_ : list of nnc.layers.Layer
        The layers of ``network_``."""


class MLPClassifier(_ClassifierNN, ClassifierMixin, _BaseMLP):
    __doc__ = ("Multi-layer perceptron classifier (log-loss), a drop-in for scikit-learn's.\n"
               + _PARAMS_HEADER + _COMMON_PARAMS + """
    class_weight : None, 'balanced' or dict, default=None
        Multiplies the sample weights by the weight of each sample's class ('balanced':
        n_samples / (n_classes * count)).  Not for multilabel targets.""" + _COMMON_ATTRIBUTES + """
    classes_ : ndarray
        The class labels (0..K-1 for multilabel indicator targets).
""")

    def __init__(self, hidden_layer_sizes=(100,), activation="relu", *, solver="adam",
                 alpha=0.0001, batch_size="auto", learning_rate="constant",
                 learning_rate_init=0.001, power_t=0.5, max_iter=200, shuffle=True,
                 random_state=None, tol=1e-4, verbose=False, warm_start=False, momentum=0.9,
                 nesterovs_momentum=True, early_stopping=False, validation_fraction=0.1,
                 beta_1=0.9, beta_2=0.999, epsilon=1e-8, n_iter_no_change=10, max_fun=15000,
                 dtype=None, class_weight=None):
        self.hidden_layer_sizes = hidden_layer_sizes
        self.activation = activation
        self.solver = solver
        self.alpha = alpha
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.learning_rate_init = learning_rate_init
        self.power_t = power_t
        self.max_iter = max_iter
        self.shuffle = shuffle
        self.random_state = random_state
        self.tol = tol
        self.verbose = verbose
        self.warm_start = warm_start
        self.momentum = momentum
        self.nesterovs_momentum = nesterovs_momentum
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.beta_1 = beta_1
        self.beta_2 = beta_2
        self.epsilon = epsilon
        self.n_iter_no_change = n_iter_no_change
        self.max_fun = max_fun
        self.dtype = dtype
        self.class_weight = class_weight

    def _check_params(self):
        super()._check_params()
        cw = self.class_weight
        if not (cw is None or cw == "balanced" or isinstance(cw, dict)):
            exc = ValueError if isinstance(cw, str) else TypeError
            _param_error(self, "class_weight", "None, 'balanced' or a dict", cw, exc)


class MLPRegressor(_RegressorNN, RegressorMixin, _BaseMLP):
    __doc__ = ("Multi-layer perceptron regressor, a drop-in for scikit-learn's.\n"
               + _PARAMS_HEADER + """
    loss : {'squared_error', 'poisson'}, default='squared_error'
        'squared_error' reports 0.5 * mean over outputs of the squared error (as scikit-learn);
        'poisson' uses the exp output link and needs y >= 0.""" + _COMMON_PARAMS
               + _COMMON_ATTRIBUTES + "\n")

    def __init__(self, loss="squared_error", hidden_layer_sizes=(100,), activation="relu", *,
                 solver="adam", alpha=0.0001, batch_size="auto", learning_rate="constant",
                 learning_rate_init=0.001, power_t=0.5, max_iter=200, shuffle=True,
                 random_state=None, tol=1e-4, verbose=False, warm_start=False, momentum=0.9,
                 nesterovs_momentum=True, early_stopping=False, validation_fraction=0.1,
                 beta_1=0.9, beta_2=0.999, epsilon=1e-8, n_iter_no_change=10, max_fun=15000,
                 dtype=None):
        self.loss = loss
        self.hidden_layer_sizes = hidden_layer_sizes
        self.activation = activation
        self.solver = solver
        self.alpha = alpha
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.learning_rate_init = learning_rate_init
        self.power_t = power_t
        self.max_iter = max_iter
        self.shuffle = shuffle
        self.random_state = random_state
        self.tol = tol
        self.verbose = verbose
        self.warm_start = warm_start
        self.momentum = momentum
        self.nesterovs_momentum = nesterovs_momentum
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.beta_1 = beta_1
        self.beta_2 = beta_2
        self.epsilon = epsilon
        self.n_iter_no_change = n_iter_no_change
        self.max_fun = max_fun
        self.dtype = dtype

    def _check_params(self):
        super()._check_params()
        _check_options(self, "loss", {"squared_error", "poisson"})

    def _regression_loss(self):
        return "poisson" if self.loss == "poisson" else "mse"

    def _loss_scale(self, targets):
        # scikit-learn reports the squared error averaged over outputs (gradient: summed)
        return 1.0 / targets.n_outputs if self.loss == "squared_error" else 1.0
