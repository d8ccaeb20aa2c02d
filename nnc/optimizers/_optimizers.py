"""First-order optimizers over one flat parameter buffer, each step one fused kernel call.

The network keeps every parameter in one flat 1-D array (decayed weights first, then biases) and
its gradient in another; ``Optimizer.step(params, grads, n_decay, n_samples)`` updates ``params``
in place with the formulas of scikit-learn's ``_stochastic_optimizers`` (L2 fused in:
g + alpha / n_samples * p on the first ``n_decay`` entries).  State arrays (velocity, moments) are
allocated on the first step with the buffer's size and dtype.

Compiled training loops run the very same update through ``nnc._kernels._optim``::

    cfg_dict = opt._kernel_config(n_decay=n_decay)     # dict of OptimConfig fields
    s1, s2 = opt._kernel_state(params)                 # state arrays (or None), allocated lazily
    cdef OptimConfig cfg = cfg_dict                    # Cython converts the dict to the struct
    for each batch:
        cfg.decay = cfg.alpha / sw_sum
        _optimizer_step(&cfg, p, g, s1_ptr, s2_ptr, n)  # increments cfg.t
    opt._kernel_sync(cfg.t)                            # store the step count back
"""
import numbers

import numpy as np

from nnc._kernels import _optim as _k
from nnc._threads import n_threads

__all__ = ["Optimizer", "SGD", "AdaGrad", "RMSprop", "Adam", "get_optimizer"]

#: the largest step count a state may hold (exact in a double: the compiled epoch reports it as one)
MAX_STEPS = 2**53


def _check_real(value, name):
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__}")
    value = float(value)
    if not np.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value}")
    return value


def _check_positive(value, name):
    value = _check_real(value, name)
    if value <= 0:
        raise ValueError(f"{name} must be > 0, got {value}")
    return value


def _check_unit_interval(value, name):
    """0 <= value < 1."""
    value = _check_real(value, name)
    if not 0.0 <= value < 1.0:
        raise ValueError(f"{name} must be in [0, 1), got {value}")
    return value


class Optimizer:
    """Base class: one fused in-place update of a flat parameter buffer per ``step``.

    Parameters
    ----------
    learning_rate : float > 0
        May be changed between steps (learning-rate schedules).
    alpha : float >= 0
        L2 penalty; the step adds ``alpha / n_samples * params[:n_decay]`` to the gradient.

    Attributes
    ----------
    t : int
        Number of steps taken since the last reset (Adam's bias correction uses it).
    """

    _kind = None
    _state_names = ()

    def __init__(self, learning_rate, alpha=0.0):
        self.learning_rate = _check_positive(learning_rate, "learning_rate")
        self.alpha = _check_real(alpha, "alpha")
        if self.alpha < 0:
            raise ValueError(f"alpha must be >= 0, got {self.alpha}")
        self.t = 0
        self._state = None

    # ------------------------------------------------------------------ the step
    def step(self, params, grads, n_decay=None, n_samples=1.0):
        """Update ``params`` in place from ``grads``: one fused kernel call.

        Parameters
        ----------
        params : ndarray (n_params,), float32 or float64, C-contiguous, writeable
        grads : ndarray (n_params,), same dtype (read only: the L2 term is not written back)
        n_decay : int in [0, n_params] or None
            The first ``n_decay`` entries are L2-penalised; None: the whole buffer.
        n_samples : float > 0
            Sample(-weight) sum of the batch; the L2 coefficient is ``alpha / n_samples``.
        """
        n = self._check_buffers(params, grads)
        if n_decay is None:
            n_decay = n
        elif isinstance(n_decay, bool) or not isinstance(n_decay, numbers.Integral):
            raise TypeError(f"n_decay must be an int or None, got {type(n_decay).__name__}")
        elif not 0 <= n_decay <= n:
            raise ValueError(f"n_decay={n_decay} is outside [0, {n}]")
        if not (n_samples > 0 and np.isfinite(n_samples)):
            raise ValueError(f"n_samples must be a positive finite number, got {n_samples}")
        s1, s2 = self._kernel_state(params)
        cfg = self._kernel_config(n_samples, n_decay)
        self.t = _k.optimizer_step(cfg, params, grads, s1, s2)

    @staticmethod
    def _check_buffers(params, grads):
        for name, a in (("params", params), ("grads", grads)):
            if not isinstance(a, np.ndarray):
                raise TypeError(f"{name} must be a numpy array, got {type(a).__name__}")
            if a.dtype != np.float32 and a.dtype != np.float64:
                raise TypeError(f"{name} must be float32 or float64, got {a.dtype}")
            if a.ndim != 1:
                raise ValueError(f"{name} must be a flat 1-D buffer, got shape {a.shape}")
            if not a.flags.c_contiguous:
                raise ValueError(f"{name} must be C-contiguous")
        if params.dtype != grads.dtype:
            raise TypeError(f"params ({params.dtype}) and grads ({grads.dtype}) differ in dtype")
        if params.shape != grads.shape:
            raise ValueError(f"params {params.shape} and grads {grads.shape} differ in length")
        if not params.flags.writeable:
            raise ValueError("params must be writeable")
        return params.shape[0]

    # ------------------------------------------------------------------ hooks for compiled loops
    def _needed_state(self):
        """Names of the state arrays this configuration uses (in kernel order s1, s2)."""
        return self._state_names

    def _kernel_state(self, params):
        """(s1, s2): state arrays matching ``params`` (None where unused), allocated lazily.

        A change of buffer size or dtype resets the optimizer (zero state, t = 0)."""
        names = self._needed_state()
        st = self._state
        if st is not None:
            for a in st.values():
                if a.shape != params.shape or a.dtype != params.dtype:
                    self.reset()
                    st = None
                    break
        if st is None:
            st = self._state = {}
        for name in names:
            if name not in st:
                st[name] = np.zeros(params.shape, dtype=params.dtype)
        arrays = [st[name] for name in names] + [None, None]
        return arrays[0], arrays[1]

    def _kernel_config(self, n_samples=1.0, n_decay=0):
        """Dict with the fields of ``_optim.OptimConfig`` (``_optim.CONFIG_FIELDS``)."""
        return {"kind": self._kind, "lr": float(self.learning_rate),
                "momentum": float(self._a()), "beta2": float(self._b2()),
                "eps": float(self._eps()), "nesterov": int(self._nesterov()),
                "alpha": self.alpha, "decay": self.alpha / float(n_samples),
                "n_decay": int(n_decay), "t": int(self.t), "n_threads": n_threads()}

    def _kernel_sync(self, t):
        """Store the step count a compiled loop ran up to (``cfg.t``)."""
        self.t = int(t)

    # the per-kind scalars of OptimConfig
    def _a(self):
        return 0.0

    def _b2(self):
        return 0.0

    def _eps(self):
        return 1.0

    def _nesterov(self):
        return False

    # ------------------------------------------------------------------ state
    def reset(self):
        """Forget the state arrays and the step count."""
        self._state = None
        self.t = 0

    def state_dict(self):
        """{'t': int, <state name>: ndarray copy or None} (for model files / warm starts)."""
        out = {"t": int(self.t)}
        for name in self._state_names:
            a = None if self._state is None else self._state.get(name)
            out[name] = None if a is None else a.copy()
        return out

    def load_state_dict(self, state):
        """Restore what ``state_dict`` returned (arrays copied, checked for shape and dtype)."""
        if not isinstance(state, dict) or "t" not in state:
            raise ValueError("state must be a dict returned by state_dict()")
        unknown = set(state) - {"t"} - set(self._state_names)
        if unknown:
            raise ValueError(f"unknown state entries {sorted(unknown)} for {type(self).__name__}")
        t = state["t"]
        if isinstance(t, bool) or not isinstance(t, numbers.Integral) or \
                not 0 <= t <= MAX_STEPS:
            raise ValueError(f"state['t'] must be an int in [0, {MAX_STEPS}], got {t!r}")
        arrays = {}
        for name in self._state_names:
            a = state.get(name)
            if a is None:
                continue
            a = np.asarray(a)
            if a.ndim != 1 or a.dtype not in (np.float32, np.float64):
                raise ValueError(f"state[{name!r}] must be a 1-D float32/float64 array")
            if not np.isfinite(a).all():
                raise ValueError(f"state[{name!r}] contains NaN or inf")
            arrays[name] = np.array(a, order="C", copy=True)
        shapes = {(a.shape, a.dtype) for a in arrays.values()}
        if len(shapes) > 1:
            raise ValueError("state arrays differ in length or dtype")
        self._state = arrays or None
        self.t = int(t)

    # ------------------------------------------------------------------ description
    def get_config(self):
        """Constructor arguments: ``type(opt)(**opt.get_config())`` builds an equal optimizer."""
        return {"learning_rate": float(self.learning_rate), "alpha": float(self.alpha)}

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"{type(self).__name__}({args})"


class SGD(Optimizer):
    """Stochastic gradient descent with optional (Nesterov) momentum.

    v = momentum * v - lr * g;  params += v   (nesterov: params += momentum * v - lr * g)
    With momentum == 0 there is no velocity: params -= lr * g.

    Parameters
    ----------
    learning_rate : float > 0, default=0.01
    momentum : float in [0, 1), default=0.0
    nesterov : bool, default=False
        Nesterov's momentum (needs momentum > 0 to differ from plain momentum).
    alpha : float >= 0, default=0.0
        L2 penalty on the weights (see Optimizer).
    """

    _kind = _k.SGD
    _state_names = ("velocity",)

    def __init__(self, learning_rate=0.01, momentum=0.0, nesterov=False, alpha=0.0):
        super().__init__(learning_rate, alpha)
        self.momentum = _check_unit_interval(momentum, "momentum")
        if not isinstance(nesterov, (bool, np.bool_)):
            raise TypeError(f"nesterov must be a bool, got {type(nesterov).__name__}")
        self.nesterov = bool(nesterov)

    def _needed_state(self):
        return ("velocity",) if self.momentum != 0 else ()

    def _a(self):
        return self.momentum

    def _nesterov(self):
        return self.nesterov

    def get_config(self):
        return {"learning_rate": float(self.learning_rate), "momentum": self.momentum,
                "nesterov": self.nesterov, "alpha": float(self.alpha)}


class AdaGrad(Optimizer):
    """AdaGrad: G += g^2;  params -= lr * g / (sqrt(G) + epsilon).

    Parameters
    ----------
    learning_rate : float > 0, default=0.01
    epsilon : float > 0, default=1e-8
    alpha : float >= 0, default=0.0
        L2 penalty on the weights (see Optimizer).
    """

    _kind = _k.ADAGRAD
    _state_names = ("sum_sq",)

    def __init__(self, learning_rate=0.01, epsilon=1e-8, alpha=0.0):
        super().__init__(learning_rate, alpha)
        self.epsilon = _check_positive(epsilon, "epsilon")

    def _eps(self):
        return self.epsilon

    def get_config(self):
        return {"learning_rate": float(self.learning_rate), "epsilon": self.epsilon,
                "alpha": float(self.alpha)}


class RMSprop(Optimizer):
    """RMSprop: s = rho * s + (1 - rho) * g^2;  params -= lr * g / (sqrt(s) + epsilon).

    Parameters
    ----------
    learning_rate : float > 0, default=0.001
    rho : float in [0, 1), default=0.9
        Decay of the running mean of squared gradients.
    epsilon : float > 0, default=1e-8
    alpha : float >= 0, default=0.0
        L2 penalty on the weights (see Optimizer).
    """

    _kind = _k.RMSPROP
    _state_names = ("mean_sq",)

    def __init__(self, learning_rate=0.001, rho=0.9, epsilon=1e-8, alpha=0.0):
        super().__init__(learning_rate, alpha)
        self.rho = _check_unit_interval(rho, "rho")
        self.epsilon = _check_positive(epsilon, "epsilon")

    def _a(self):
        return self.rho

    def _eps(self):
        return self.epsilon

    def get_config(self):
        return {"learning_rate": float(self.learning_rate), "rho": self.rho,
                "epsilon": self.epsilon, "alpha": float(self.alpha)}


class Adam(Optimizer):
    """Adam in scikit-learn's form (bias correction folded into the step size):

    t += 1;  m = b1 m + (1 - b1) g;  v = b2 v + (1 - b2) g^2;
    params -= lr_t * m / (sqrt(v) + epsilon),  lr_t = lr * sqrt(1 - b2^t) / (1 - b1^t)

    Parameters
    ----------
    learning_rate : float > 0, default=0.001
    beta_1, beta_2 : float in [0, 1), default=0.9, 0.999
        Decays of the first and second moment estimates (b1, b2).
    epsilon : float > 0, default=1e-8
    alpha : float >= 0, default=0.0
        L2 penalty on the weights (see Optimizer).
    """

    _kind = _k.ADAM
    _state_names = ("m", "v")

    def __init__(self, learning_rate=0.001, beta_1=0.9, beta_2=0.999, epsilon=1e-8, alpha=0.0):
        super().__init__(learning_rate, alpha)
        self.beta_1 = _check_unit_interval(beta_1, "beta_1")
        self.beta_2 = _check_unit_interval(beta_2, "beta_2")
        self.epsilon = _check_positive(epsilon, "epsilon")

    def _a(self):
        return self.beta_1

    def _b2(self):
        return self.beta_2

    def _eps(self):
        return self.epsilon

    def get_config(self):
        return {"learning_rate": float(self.learning_rate), "beta_1": self.beta_1,
                "beta_2": self.beta_2, "epsilon": self.epsilon, "alpha": float(self.alpha)}


_FACTORY = {
    "sgd": (SGD, {}),
    "momentum": (SGD, {"momentum": 0.9}),
    "nesterov": (SGD, {"momentum": 0.9, "nesterov": True}),
    "adagrad": (AdaGrad, {}),
    "rmsprop": (RMSprop, {}),
    "adam": (Adam, {}),
}


def get_optimizer(name_or_instance, **kwargs):
    """An Optimizer from a name ('sgd', 'momentum', 'nesterov', 'adagrad', 'rmsprop', 'adam';
    keyword arguments are passed to the constructor and override the preset) or an instance
    (returned as is; keyword arguments are then an error)."""
    if isinstance(name_or_instance, Optimizer):
        if kwargs:
            raise TypeError("keyword arguments cannot be combined with an Optimizer instance")
        return name_or_instance
    if not isinstance(name_or_instance, str):
        raise TypeError(f"optimizer must be a name or an Optimizer, got "
                        f"{type(name_or_instance).__name__}")
    key = name_or_instance.lower()
    if key not in _FACTORY:
        raise ValueError(f"Unknown optimizer {name_or_instance!r}; valid names are "
                         f"{sorted(_FACTORY)}")
    cls, preset = _FACTORY[key]
    return cls(**{**preset, **kwargs})
