"""Loss functions: names mapped to the fused kernels of ``nnc._kernels._losses``.

``get_loss(name)`` returns a :class:`Loss`.  A loss knows three things about a problem:

* ``check_targets``  turns user targets into what its kernel reads (float (n, K) of the network
  dtype, or int32 class indices (n,) for the softmax cross-entropy), with clear errors;
* ``loss_gradient``  one kernel call: the sample-weighted mean loss and d(loss)/d(logits);
* ``link``           logits -> predictions in place (``out_activation`` names it).

=========================  =====================  ==============  ===========================
name                       per-sample loss        out_activation  targets
=========================  =====================  ==============  ===========================
'mse'                      0.5 sum_k (z-y)^2      'identity'      float (n, K)
'binary_cross_entropy'     sum_k softplus(z)-yz   'logistic'      float in [0, 1] (n, K)
'softmax_cross_entropy'    logsumexp(z)-z[y]      'softmax'       int class index in [0, K)
'poisson'                  sum_k y log y-yz-y+e^z 'exp'           float >= 0 (n, K)
=========================  =====================  ==============  ===========================

The mean over samples is weighted by ``sample_weight``; the sum runs over the K outputs (so
scikit-learn's ``squared_loss``, a mean over outputs too, is this loss / K).
"""
import numbers

import numpy as np

from nnc._kernels import _activations as _act
from nnc._kernels import _losses as _k
from nnc._validation import _to_numeric_array, check_finite

__all__ = ["Loss", "get_loss", "LOSSES"]


def _as_numeric(y):
    """Array-like → numeric ndarray (bool/int/uint/float); errors name the problem."""
    arr = _to_numeric_array(y, "y")
    if arr.ndim == 0:
        raise ValueError(f"y must be an array of targets, got a scalar {arr!r}")
    if arr.shape[0] == 0:
        raise ValueError(f"y is empty (shape {arr.shape})")
    return arr


def _rows(a, name):
    """(n, ...) C-contiguous → (n, prod(...)) view; never a copy (outputs must alias)."""
    if not a.flags.c_contiguous:
        raise ValueError(f"{name} must be C-contiguous")
    return a.reshape(a.shape[0], -1)


class Loss:
    """A loss and its output link, backed by one fused kernel.

    Attributes
    ----------
    name : str            canonical name ('mse', 'binary_cross_entropy', ...)
    code : int            kernel code (``nnc._kernels._losses.MSE`` ...), for compiled loops
    out_activation : str  'identity', 'logistic', 'softmax' or 'exp': the link of ``link``
    integer_targets : bool  True when targets are int32 class indices (softmax cross-entropy)
    """

    name = None
    code = None
    out_activation = "identity"
    integer_targets = False

    # ------------------------------------------------------------------ targets
    def check_targets(self, y, n_outputs, dtype):
        """Validate targets for a network with `n_outputs` outputs per sample.

        Parameters
        ----------
        y : array-like, (n,) or (n, n_outputs) (or (n, *output_shape) for 'mse')
        n_outputs : int or tuple of int (the per-sample output shape)
        dtype : float32 or float64, the network dtype

        Returns
        -------
        ndarray, C-contiguous: float (n, *output_shape) of `dtype`, or int32 (n,) for
        'softmax_cross_entropy'.
        """
        shape = (int(n_outputs),) if isinstance(n_outputs, numbers.Integral) else \
            tuple(int(s) for s in n_outputs)
        size = int(np.prod(shape))
        arr = _as_numeric(y)
        n = arr.shape[0]
        if tuple(arr.shape[1:]) == shape:
            pass
        elif arr.ndim == 1 and size == 1:
            arr = arr.reshape((n,) + shape)
        elif arr.ndim == 2 and arr.shape[1] == size:
            arr = arr.reshape((n,) + shape)
        else:
            expected = "(n_samples,) or " if size == 1 else ""
            raise ValueError(f"y has shape {arr.shape}, but the {self.name!r} loss on a model with "
                             f"{size} output(s) expects {expected}(n_samples, {size})")
        out = np.ascontiguousarray(arr, dtype=dtype)
        check_finite(out, "y")
        self._check_values(out)
        return out

    def _check_values(self, y):
        """Loss-specific range checks on the converted float targets."""

    # ------------------------------------------------------------------ computation
    def loss_gradient(self, Z, y, sample_weight, dZ_out):
        """Weighted mean loss (float); dZ_out <- d(loss)/dZ.

        Z : (n, *output_shape) logits, C-contiguous float32/float64.
        y : targets from ``check_targets`` (n rows).
        sample_weight : None or (n,) array of Z's dtype.
        dZ_out : like Z; may be Z itself."""
        Z2 = _rows(Z, "Z")
        dZ2 = _rows(dZ_out, "dZ_out")
        if self.integer_targets:
            return _k.loss_gradient(self.code, Z2, None, y, sample_weight, dZ2)
        return _k.loss_gradient(self.code, Z2, _rows(y, "y"), None, sample_weight, dZ2)

    def loss(self, Z, y, sample_weight=None):
        """Weighted mean loss only (allocates a scratch gradient; not for inner loops)."""
        return self.loss_gradient(Z, y, sample_weight, np.empty_like(Z, order="C"))

    def link(self, Z_out):
        """Z_out (n, *output_shape) <- predictions, in place; returns Z_out."""
        return Z_out

    def __repr__(self):
        return f"get_loss({self.name!r})"

    def __reduce__(self):
        return (get_loss, (self.name,))


class MeanSquaredError(Loss):
    name = "mse"
    code = _k.MSE
    out_activation = "identity"


class BinaryCrossEntropy(Loss):
    name = "binary_cross_entropy"
    code = _k.BCE
    out_activation = "logistic"

    def _check_values(self, y):
        if y.size and (y.min() < 0 or y.max() > 1):
            raise ValueError("binary_cross_entropy targets must lie in [0, 1] (0/1 labels or soft "
                             f"labels), got values in [{y.min()}, {y.max()}]")

    def link(self, Z_out):
        _act.activation_forward(_act.LOGISTIC, _rows(Z_out, "Z_out").reshape(-1))
        return Z_out


class Poisson(Loss):
    name = "poisson"
    code = _k.POISSON
    out_activation = "exp"

    def _check_values(self, y):
        if y.size and y.min() < 0:
            raise ValueError(f"poisson targets must be non-negative, got a minimum of {y.min()}")

    def link(self, Z_out):
        _k.exp_forward(_rows(Z_out, "Z_out").reshape(-1))
        return Z_out


class SoftmaxCrossEntropy(Loss):
    name = "softmax_cross_entropy"
    code = _k.SOFTMAX_CE
    out_activation = "softmax"
    integer_targets = True

    def check_targets(self, y, n_outputs, dtype):
        """Class indices → int32 (n,) in [0, n_outputs); `dtype` is unused (labels are ints)."""
        K = int(n_outputs) if isinstance(n_outputs, numbers.Integral) else \
            int(np.prod(tuple(n_outputs)))
        arr = _as_numeric(y)
        if arr.ndim == 2 and arr.shape[1] == 1:
            arr = arr.reshape(-1)
        if arr.ndim != 1:
            raise ValueError(f"softmax_cross_entropy expects integer class indices of shape "
                             f"(n_samples,), got shape {arr.shape} (one-hot targets: pass "
                             "y.argmax(axis=1))")
        if arr.dtype.kind == "f":
            check_finite(arr, "y")
            if not np.array_equal(arr, np.floor(arr)):
                raise ValueError("softmax_cross_entropy targets must be integer class indices, "
                                 "got non-integral values")
        if arr.min() < 0 or arr.max() >= K:
            raise ValueError(f"softmax_cross_entropy targets must be class indices in "
                             f"[0, {K}), got values in [{arr.min()}, {arr.max()}]")
        return np.ascontiguousarray(arr, dtype=np.int32)

    def loss_gradient(self, Z, y, sample_weight, dZ_out):
        return _k.loss_gradient(self.code, _rows(Z, "Z"), None, y, sample_weight,
                                _rows(dZ_out, "dZ_out"))

    def link(self, Z_out):
        _k.softmax_forward(_rows(Z_out, "Z_out"))
        return Z_out


LOSSES = {
    "mse": MeanSquaredError,
    "binary_cross_entropy": BinaryCrossEntropy,
    "softmax_cross_entropy": SoftmaxCrossEntropy,
    "poisson": Poisson,
}
# scikit-learn's spelling of the regression loss
_ALIASES = {"squared_error": "mse"}


def get_loss(name):
    """Loss object for `name` ('mse', 'binary_cross_entropy', 'softmax_cross_entropy',
    'poisson'; 'squared_error' is an alias of 'mse'), or `name` itself when it is a Loss."""
    if isinstance(name, Loss):
        return name
    if not isinstance(name, str):
        raise TypeError(f"loss must be a string, got {type(name).__name__}")
    key = _ALIASES.get(name, name)
    if key not in LOSSES:
        raise ValueError(f"Unknown loss {name!r}; valid names are {sorted(LOSSES)}")
    return LOSSES[key]()
