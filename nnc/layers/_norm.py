"""Normalization layers: LayerNorm (per sample, over its last dimensions) and BatchNorm (per channel,
over the batch), with PyTorch's semantics.

Compute lives in nnc._kernels._norm; these classes own the workspaces: the output Y and input
gradient dX (batch, *shape), the statistics forward saves for backward (mean and 1/sqrt(var + eps)
per row or channel) and the kernels' scratch.  Backward needs the input X (kept by reference, as
the protocol allows) and the saved statistics, not Y, so the next layer may overwrite Y in place.

The scale (gamma) and shift (beta) are parameters in the network's flat buffer and are not
L2-decayed (``decay=False``), as in PyTorch's and Keras's usual weight-decay setups.

BatchNorm's running statistics.  ``running_mean`` and ``running_var`` live in the flat parameter
buffer too, after gamma and beta (Keras's layout: its BatchNormalization's non-trainable weights),
not decayed.  They are state, not trained weights: a training forward updates them in place
(running = (1 - momentum) running + momentum batch statistic, PyTorch's convention), and backward
writes zeros into their gradient after a training forward (the output does not depend on them), so
every optimizer leaves them exactly as they are.  Keeping them in the buffer makes everything that
handles the weights handle them with no extra code: model files save and check them (finite; the
variance >= 0, ``_check_param_values``), early stopping restores them together with the best
weights, a failed or interrupted warm start restores them, inference shadows read them through
their views (and a prediction running while ``partial_fit`` trains reads the same consistent copy
of weights and statistics), pickling and ``get_weights`` / ``set_weights`` carry them.  After a
prediction-mode forward, backward gives their true gradients (so ``check_gradients``, which runs
the network in prediction mode, checks them too).
"""
import math
import numbers

import numpy as np

from nnc.layers._base import Layer, ParamSpec, _check_positive_int
from nnc._kernels import _norm
from nnc._threads import n_threads


def _check_eps(eps):
    if not isinstance(eps, numbers.Real) or isinstance(eps, bool):
        raise TypeError(f"eps must be a float, got {type(eps).__name__}")
    if not (math.isfinite(eps) and eps > 0):
        raise ValueError(f"eps must be a positive finite float, got {eps}")
    return float(eps)


def _check_flag(value, name):
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be True or False, got {value!r}")
    return bool(value)


class LayerNorm(Layer):
    """Layer normalization (``torch.nn.LayerNorm``): each sample's last dimension(s) are
    normalised to zero mean and unit variance, then scaled and shifted element-wise.

    ``y = (x - mean) / sqrt(var + eps) * gamma + beta``, mean and (biased) variance over the
    ``normalized_shape`` trailing dimensions, separately for every sample and leading position
    (every time step of a (T, F) sequence, every pixel row ...).  Same in training and prediction.

    Parameters
    ----------
    normalized_shape : int, tuple of int or None, default=None
        The trailing dimensions to normalise over, as PyTorch's (they must equal the last
        dimensions of the layer's input sample).  None: the last dimension.
    eps : float, default=1e-5
        Added to the variance.
    elementwise_affine : bool, default=True
        Learn gamma (initially 1) and beta (initially 0) of shape ``normalized_shape``; they are
        not L2-decayed.
    """

    output_reusable = True

    @property
    def keeps_mask(self):
        """Each position of a sequence is normalised on its own (when the first sample axis is
        not normalised over): positions, and their mask, are kept."""
        return self.input_shape is not None and len(self.input_shape) > len(self._norm_shape)

    def __init__(self, normalized_shape=None, eps=1e-5, elementwise_affine=True):
        super().__init__()
        if normalized_shape is not None:
            if isinstance(normalized_shape, (int, np.integer)) and \
                    not isinstance(normalized_shape, bool):
                normalized_shape = (normalized_shape,)
            if not isinstance(normalized_shape, (tuple, list)) or not normalized_shape:
                raise TypeError(f"normalized_shape must be None, an int or a non-empty tuple of "
                                f"ints, got {normalized_shape!r}")
            normalized_shape = tuple(_check_positive_int(s, "normalized_shape")
                                     for s in normalized_shape)
        self.normalized_shape = normalized_shape
        self.eps = _check_eps(eps)
        self.elementwise_affine = _check_flag(elementwise_affine, "elementwise_affine")

    def build(self, input_shape, dtype):
        super().build(input_shape, dtype)
        k = 1 if self.normalized_shape is None else len(self.normalized_shape)
        shape = self.input_shape
        if len(shape) < k or (self.normalized_shape is not None
                              and shape[len(shape) - k:] != self.normalized_shape):
            raise ValueError(f"LayerNorm(normalized_shape={self.normalized_shape}) needs samples "
                             f"whose last dimensions are {self.normalized_shape}, got sample "
                             f"shape {shape}")
        self._norm_shape = shape[len(shape) - k:]
        self._D = math.prod(self._norm_shape)
        self._rows = math.prod(shape[:len(shape) - k])     # rows per sample
        return self.output_shape

    def param_specs(self):
        if not self.elementwise_affine:
            return []
        return [ParamSpec("gamma", self._norm_shape, False),
                ParamSpec("beta", self._norm_shape, False)]

    def init_params(self, rng):
        if self.elementwise_affine:
            self.params[0][...] = 1
            self.params[1][...] = 0

    def allocate(self, batch_size):
        super().allocate(batch_size)
        rows = batch_size * self._rows
        self._ws_out = np.empty((batch_size,) + self.output_shape, dtype=self.dtype)
        self._ws_dX = np.empty((batch_size,) + self.input_shape, dtype=self.dtype)
        self._ws_mean = np.empty(rows, dtype=self.dtype)
        self._ws_rstd = np.empty(rows, dtype=self.dtype)
        # per-thread partial sums of dgamma / dbeta (a backward uses at most this many threads)
        self._ws_acc = np.empty((max(1, n_threads()), 2, self._D), dtype=self.dtype)
        if not self.elementwise_affine:      # gamma = 1, beta = 0, their gradients discarded
            self._ws_affine = np.empty((4, self._D), dtype=self.dtype)
            self._ws_affine[0] = 1
            self._ws_affine[1] = 0

    def _affine(self):
        """(gamma, beta, dgamma, dbeta) as flat (D,) views."""
        if self.elementwise_affine:
            return (self.params[0].reshape(-1), self.params[1].reshape(-1),
                    self.grads[0].reshape(-1), self.grads[1].reshape(-1))
        a = self._ws_affine
        return a[0], a[1], a[2], a[3]

    def _forward(self, X, training):
        n = X.shape[0]
        R = n * self._rows
        Y = self._ws_out[:n]
        gamma, beta, _, _ = self._affine()
        _norm.layernorm_forward(X.reshape(R, self._D), Y.reshape(R, self._D), gamma, beta,
                                self._ws_mean[:R], self._ws_rstd[:R], self.eps, n_threads())
        self._cache_X = X
        return Y

    def _backward(self, dY, need_dX):
        n = dY.shape[0]
        R = n * self._rows
        X = self._cache_X
        gamma, _, dgamma, dbeta = self._affine()
        dX = self._ws_dX[:n] if need_dX else self._ws_dX[:1]
        _norm.layernorm_backward(dY.reshape(R, self._D), X.reshape(R, self._D),
                                 self._ws_mean[:R], self._ws_rstd[:R], gamma,
                                 dX.reshape(-1, self._D), dgamma, dbeta, self._ws_acc, need_dX,
                                 n_threads())
        return dX if need_dX else None

    def get_config(self):
        return {"normalized_shape": (None if self.normalized_shape is None
                                     else list(self.normalized_shape)),
                "eps": self.eps, "elementwise_affine": self.elementwise_affine}


class BatchNorm(Layer):
    """Batch normalization with PyTorch's semantics (``BatchNorm1d`` on (n, F) and (n, C, L),
    ``BatchNorm2d`` on (n, C, H, W); any sample shape (C, ...)): the channel axis is the first
    axis of a sample, and statistics are taken over the batch and every other axis.

    Training (``fit``, ``forward(training=True)``): ``y = (x - mean) / sqrt(var + eps) * gamma +
    beta`` with the batch's mean and biased variance per channel; the running statistics are
    updated in place, ``running = (1 - momentum) * running + momentum * batch`` (the variance
    unbiased, as PyTorch; a batch with one value per channel leaves the running variance as it is,
    where PyTorch raises an error).  Prediction (``predict``, ``forward()``): the running mean and
    variance instead.  The estimators switch automatically, as for Dropout.

    Parameters
    ----------
    momentum : float in [0, 1], default=0.1
        Weight of the new batch statistic in the running averages (PyTorch's convention; Keras's
        ``momentum`` is 1 minus this).
    eps : float, default=1e-5
        Added to the variance.
    affine : bool, default=True
        Learn gamma (initially 1) and beta (initially 0) per channel; they are not L2-decayed.

    Notes
    -----
    ``get_weights()`` returns ``[gamma, beta, running_mean, running_var]`` (without affine:
    the running statistics only), the layout of Keras's BatchNormalization: the running
    statistics are stored in the network's parameter buffer (initially 0 and 1) but never trained
    (see ``nnc/layers/_norm.py``).
    """

    output_reusable = True

    def __init__(self, momentum=0.1, eps=1e-5, affine=True):
        super().__init__()
        if not isinstance(momentum, numbers.Real) or isinstance(momentum, bool):
            raise TypeError(f"momentum must be a float, got {type(momentum).__name__}")
        if not 0.0 <= float(momentum) <= 1.0:
            raise ValueError(f"momentum must be in [0, 1], got {momentum}")
        self.momentum = float(momentum)
        self.eps = _check_eps(eps)
        self.affine = _check_flag(affine, "affine")

    def build(self, input_shape, dtype):
        super().build(input_shape, dtype)
        self._C = self.input_shape[0]
        self._S = math.prod(self.input_shape[1:])
        return self.output_shape

    def param_specs(self):
        C = (self._C,)
        specs = [ParamSpec("gamma", C, False), ParamSpec("beta", C, False)] if self.affine else []
        return specs + [ParamSpec("running_mean", C, False), ParamSpec("running_var", C, False)]

    def init_params(self, rng):
        if self.affine:
            self.params[0][...] = 1
            self.params[1][...] = 0
        self.params[-2][...] = 0
        self.params[-1][...] = 1

    def allocate(self, batch_size):
        super().allocate(batch_size)
        C = self._C
        self._ws_out = np.empty((batch_size,) + self.output_shape, dtype=self.dtype)
        self._ws_dX = np.empty((batch_size,) + self.input_shape, dtype=self.dtype)
        self._ws_stats = np.empty((2, C), dtype=self.dtype)        # mean, rstd of the forward
        self._ws_coef = np.empty((3, C), dtype=self.dtype)
        self._ws_acc = np.empty((2, C), dtype=np.float64)
        if not self.affine:        # gamma = 1, beta = 0, their gradients discarded
            self._ws_affine = np.empty((4, C), dtype=self.dtype)
            self._ws_affine[0] = 1
            self._ws_affine[1] = 0

    def _affine(self):
        if self.affine:
            return self.params[0], self.params[1], self.grads[0], self.grads[1]
        a = self._ws_affine
        return a[0], a[1], a[2], a[3]

    def _forward(self, X, training):
        n = X.shape[0]
        shape3 = (n, self._C, self._S)
        Y = self._ws_out[:n]
        gamma, beta, _, _ = self._affine()
        training = bool(training)
        _norm.batchnorm_forward(X.reshape(shape3), Y.reshape(shape3), gamma, beta,
                                self.params[-2], self.params[-1], self._ws_stats[0],
                                self._ws_stats[1], self._ws_acc, training, self.momentum,
                                self.eps, n_threads())
        self._cache_X = X
        self._cache_batch_stats = training
        return Y

    def _backward(self, dY, need_dX):
        n = dY.shape[0]
        shape3 = (n, self._C, self._S)
        gamma, _, dgamma, dbeta = self._affine()
        dX = self._ws_dX[:n]
        _norm.batchnorm_backward(dY.reshape(shape3), self._cache_X.reshape(shape3),
                                 self._ws_stats[0], self._ws_stats[1], gamma, dX.reshape(shape3),
                                 dgamma, dbeta, self.grads[-2], self.grads[-1], self._ws_coef,
                                 self._ws_acc, self._cache_batch_stats, need_dX,
                                 n_threads())
        return dX if need_dX else None

    def set_weights(self, weights):
        weights = list(weights)
        if len(weights) == len(self.param_specs()):
            self._check_running_var(np.asarray(weights[-1]), "set_weights")
        super().set_weights(weights)

    def _check_param_values(self):
        self._check_running_var(self.params[-1], "the loaded weights")

    def _check_running_var(self, var, where):
        if np.any(np.asarray(var) < 0):
            raise ValueError(f"BatchNorm: {where}: running_var must be >= 0 (a variance), got "
                             f"{np.min(var)}")

    def get_config(self):
        return {"momentum": self.momentum, "eps": self.eps, "affine": self.affine}
