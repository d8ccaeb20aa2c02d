"""nnc.optimizers: fused steps against the NumPy formulas and scikit-learn, state handling, API."""
import copy
import inspect
import pickle

import numpy as np
import pytest

from nnc.optimizers import Optimizer, SGD, AdaGrad, RMSprop, Adam, get_optimizer
from nnc._kernels import _optim
from tests._reference_losses import optimizer_steps

DTYPES = [np.float32, np.float64]
RTOL = {np.float32: 1e-5, np.float64: 1e-12}
CLASSES = [SGD, AdaGrad, RMSprop, Adam]

CASES = [
    ("sgd", SGD, {"learning_rate": 0.1}),
    ("sgd", SGD, {"learning_rate": 0.1, "momentum": 0.9}),
    ("sgd", SGD, {"learning_rate": 0.1, "momentum": 0.8, "nesterov": True}),
    ("adagrad", AdaGrad, {"learning_rate": 0.1, "epsilon": 1e-6}),
    ("rmsprop", RMSprop, {"learning_rate": 0.01, "rho": 0.8}),
    ("adam", Adam, {"learning_rate": 0.01}),
    ("adam", Adam, {"learning_rate": 0.01, "beta_1": 0.5, "beta_2": 0.99, "epsilon": 1e-4}),
]


def ref_kwargs(hyper):
    out = {"lr": hyper["learning_rate"]}
    for k in ("momentum", "nesterov", "rho", "beta_1", "beta_2"):
        if k in hyper:
            out[k] = hyper[k]
    if "epsilon" in hyper:
        out["eps"] = hyper["epsilon"]
    return out


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kind,cls,hyper", CASES)
@pytest.mark.parametrize("n,n_decay", [(1, None), (7, 4), (1000, 600)])
@pytest.mark.parametrize("alpha", [0.0, 0.5])
def test_five_steps_match_numpy(dtype, kind, cls, hyper, n, n_decay, alpha):
    rng = np.random.RandomState(n)
    p0 = rng.standard_normal(n).astype(dtype)
    grads = [rng.standard_normal(n).astype(dtype) for _ in range(5)]
    opt = cls(alpha=alpha, **hyper)
    p = p0.copy()
    n_samples = 8.0
    for g in grads:
        opt.step(p, g, n_decay=n_decay, n_samples=n_samples)
    nd = n if n_decay is None else n_decay
    ref, _ = optimizer_steps(kind, p0, grads, dtype, n_decay=nd, decay=alpha / n_samples,
                             **ref_kwargs(hyper))
    assert p.dtype == dtype and opt.t == 5
    np.testing.assert_allclose(p, ref, rtol=RTOL[dtype], atol=RTOL[dtype])


# ---------------------------------------------------------------- scikit-learn equality

def _sklearn_run(sk_opt, p0, grads, alpha, n_samples, n_decay):
    params = [p0.copy()]
    for g in grads:
        g_eff = g.copy()
        g_eff[:n_decay] += alpha / n_samples * params[0][:n_decay]
        sk_opt.update_params(params, [g_eff])
    return params[0]


@pytest.mark.parametrize("momentum,nesterov", [(0.0, False), (0.9, False), (0.9, True)])
@pytest.mark.parametrize("alpha", [0.0, 1e-2])
def test_sgd_equals_sklearn(momentum, nesterov, alpha):
    sk = pytest.importorskip("sklearn.neural_network._stochastic_optimizers")
    rng = np.random.RandomState(0)
    p0 = rng.standard_normal(50)
    grads = [rng.standard_normal(50) for _ in range(5)]
    sk_opt = sk.SGDOptimizer([p0.copy()], learning_rate_init=0.1, lr_schedule="constant",
                             momentum=momentum, nesterov=nesterov)
    expected = _sklearn_run(sk_opt, p0, grads, alpha, 10.0, 30)
    opt = SGD(learning_rate=0.1, momentum=momentum, nesterov=nesterov, alpha=alpha)
    p = p0.copy()
    for g in grads:
        opt.step(p, g, n_decay=30, n_samples=10.0)
    np.testing.assert_allclose(p, expected, rtol=1e-13, atol=1e-15)
    if momentum:
        np.testing.assert_allclose(opt.state_dict()["velocity"], sk_opt.velocities[0],
                                   rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("alpha", [0.0, 1e-2])
def test_adam_equals_sklearn(alpha):
    sk = pytest.importorskip("sklearn.neural_network._stochastic_optimizers")
    rng = np.random.RandomState(1)
    p0 = rng.standard_normal(50)
    grads = [rng.standard_normal(50) for _ in range(5)]
    sk_opt = sk.AdamOptimizer([p0.copy()], learning_rate_init=0.01, beta_1=0.9, beta_2=0.999,
                              epsilon=1e-8)
    expected = _sklearn_run(sk_opt, p0, grads, alpha, 10.0, 30)
    opt = Adam(learning_rate=0.01, alpha=alpha)
    p = p0.copy()
    for g in grads:
        opt.step(p, g, n_decay=30, n_samples=10.0)
    assert opt.t == sk_opt.t == 5
    np.testing.assert_allclose(p, expected, rtol=1e-13, atol=1e-15)
    st = opt.state_dict()
    np.testing.assert_allclose(st["m"], sk_opt.ms[0], rtol=1e-13, atol=1e-15)
    np.testing.assert_allclose(st["v"], sk_opt.vs[0], rtol=1e-13, atol=1e-15)


# ---------------------------------------------------------------- state handling

@pytest.mark.parametrize("cls", CLASSES)
def test_state_lazily_allocated_and_reset(cls):
    opt = cls(learning_rate=0.01) if cls is not SGD else cls(momentum=0.5)
    assert opt.state_dict()["t"] == 0
    p = np.zeros(6)
    opt.step(p, np.ones(6))
    opt.step(p, np.ones(6))
    assert opt.t == 2
    st = opt.state_dict()
    for name in opt._state_names:
        assert st[name].shape == (6,) and st[name].dtype == np.float64
    # a new size or dtype resets the state (and the step count)
    q = np.zeros(4, np.float32)
    opt.step(q, np.ones(4, np.float32))
    assert opt.t == 1
    for name in opt._state_names:
        assert opt.state_dict()[name].dtype == np.float32
    opt.reset()
    assert opt.t == 0 and all(opt.state_dict()[k] is None for k in opt._state_names)


@pytest.mark.parametrize("kind,cls,hyper", CASES)
def test_state_dict_round_trip_continues_identically(kind, cls, hyper):
    rng = np.random.RandomState(0)
    p = rng.standard_normal(20)
    grads = [rng.standard_normal(20) for _ in range(6)]
    a = cls(**hyper)
    for g in grads[:3]:
        a.step(p, g)
    b = cls(**a.get_config())
    b.load_state_dict(a.state_dict())
    pa, pb = p.copy(), p.copy()
    for g in grads[3:]:
        a.step(pa, g)
        b.step(pb, g)
    np.testing.assert_array_equal(pa, pb)
    assert a.t == b.t == 6
    for make_clone in (copy.deepcopy, lambda o: pickle.loads(pickle.dumps(o))):
        clone = make_clone(a)
        pc, pd = pa.copy(), pa.copy()
        clone.step(pc, grads[0])
        a.step(pd, grads[0])
        np.testing.assert_array_equal(pc, pd)


def test_load_state_dict_rejects_bad_state():
    opt = Adam()
    with pytest.raises(ValueError):
        opt.load_state_dict({"m": np.zeros(3)})                    # no t
    with pytest.raises(ValueError):
        opt.load_state_dict({"t": 1, "velocity": np.zeros(3)})     # not Adam's
    with pytest.raises(ValueError):
        opt.load_state_dict({"t": -1})
    with pytest.raises(ValueError):
        opt.load_state_dict({"t": 1, "m": np.zeros(3), "v": np.zeros(4)})
    with pytest.raises(ValueError):
        opt.load_state_dict({"t": 1, "m": np.zeros((3, 1))})
    with pytest.raises(ValueError):
        opt.load_state_dict({"t": 1, "m": np.array([np.nan])})


def test_learning_rate_can_change_between_steps():
    opt = SGD(learning_rate=1.0)
    p = np.zeros(3)
    opt.step(p, np.ones(3))
    opt.learning_rate = 0.25
    opt.step(p, np.ones(3))
    np.testing.assert_array_equal(p, -1.25)


def test_alpha_decays_only_the_prefix_and_leaves_grads():
    opt = SGD(learning_rate=1.0, alpha=2.0)
    p = np.ones(4)
    g = np.zeros(4)
    opt.step(p, g, n_decay=2, n_samples=4.0)       # decay = 0.5
    np.testing.assert_array_equal(p, [0.5, 0.5, 1.0, 1.0])
    assert np.all(g == 0)
    opt.step(p, g)                                 # n_decay None: whole buffer, n_samples 1
    np.testing.assert_array_equal(p, [-0.5, -0.5, -1.0, -1.0])


# ---------------------------------------------------------------- bad input

@pytest.mark.parametrize("cls", CLASSES)
def test_step_rejects_bad_buffers(cls):
    opt = cls()
    p = np.zeros(5)
    g = np.zeros(5)
    with pytest.raises(TypeError):
        opt.step(list(p), g)
    with pytest.raises(TypeError):
        opt.step(p, g.astype(np.float32))
    with pytest.raises(TypeError):
        opt.step(np.zeros(5, np.int64), np.zeros(5, np.int64))
    with pytest.raises(ValueError):
        opt.step(p.reshape(5, 1), g.reshape(5, 1))
    with pytest.raises(ValueError):
        opt.step(p, np.zeros(6))
    with pytest.raises(ValueError):
        opt.step(np.zeros(10)[::2], g)
    ro = np.zeros(5)
    ro.flags.writeable = False
    with pytest.raises(ValueError):
        opt.step(ro, g)
    with pytest.raises(ValueError):
        opt.step(p, g, n_decay=6)
    with pytest.raises(ValueError):
        opt.step(p, g, n_decay=-1)
    with pytest.raises(TypeError):
        opt.step(p, g, n_decay=2.5)
    for bad in (0.0, -1.0, np.nan, np.inf):
        with pytest.raises(ValueError):
            opt.step(p, g, n_samples=bad)
    assert opt.t == 0 and np.all(p == 0)


@pytest.mark.parametrize("cls,kwargs", [
    (SGD, {"learning_rate": 0}), (SGD, {"learning_rate": -1}), (SGD, {"momentum": 1.0}),
    (SGD, {"momentum": -0.1}), (SGD, {"alpha": -1}), (SGD, {"learning_rate": np.nan}),
    (AdaGrad, {"epsilon": 0}), (RMSprop, {"rho": 1.0}), (RMSprop, {"epsilon": -1e-8}),
    (Adam, {"beta_1": 1.0}), (Adam, {"beta_2": 1.5}), (Adam, {"beta_1": -0.1}),
    (Adam, {"epsilon": 0.0}), (Adam, {"alpha": -0.5}),
])
def test_hyperparameter_validation(cls, kwargs):
    with pytest.raises(ValueError):
        cls(**kwargs)


def test_hyperparameter_types():
    with pytest.raises(TypeError):
        SGD(learning_rate="0.1")
    with pytest.raises(TypeError):
        SGD(nesterov=1)
    with pytest.raises(TypeError):
        Adam(beta_1=True)


# ---------------------------------------------------------------- API

def test_defaults_and_get_config():
    assert SGD().get_config() == {"learning_rate": 0.01, "momentum": 0.0, "nesterov": False,
                                  "alpha": 0.0}
    assert AdaGrad().get_config() == {"learning_rate": 0.01, "epsilon": 1e-8, "alpha": 0.0}
    assert RMSprop().get_config() == {"learning_rate": 0.001, "rho": 0.9, "epsilon": 1e-8,
                                      "alpha": 0.0}
    assert Adam().get_config() == {"learning_rate": 0.001, "beta_1": 0.9, "beta_2": 0.999,
                                   "epsilon": 1e-8, "alpha": 0.0}
    for cls in CLASSES:
        opt = cls(alpha=0.1)
        clone = cls(**opt.get_config())
        assert clone.get_config() == opt.get_config()
        assert repr(opt).startswith(cls.__name__ + "(")
        assert set(opt._kernel_config(2.0, 3)) == set(_optim.CONFIG_FIELDS)


def test_all_optimizers_share_signatures():
    for method in ("step", "reset", "get_config", "state_dict", "load_state_dict",
                   "_kernel_config", "_kernel_state", "_kernel_sync"):
        sigs = {cls.__name__: inspect.signature(getattr(cls, method)) for cls in CLASSES}
        assert len(set(sigs.values())) == 1, (method, sigs)
    for cls in CLASSES:
        assert issubclass(cls, Optimizer)
        params = inspect.signature(cls).parameters
        assert "learning_rate" in params and params["alpha"].default == 0.0


def test_get_optimizer():
    assert type(get_optimizer("sgd")) is SGD and get_optimizer("sgd").momentum == 0.0
    m = get_optimizer("momentum")
    assert m.momentum == 0.9 and not m.nesterov
    n = get_optimizer("nesterov", learning_rate=0.5)
    assert n.momentum == 0.9 and n.nesterov and n.learning_rate == 0.5
    assert get_optimizer("momentum", momentum=0.5).momentum == 0.5
    assert type(get_optimizer("adagrad")) is AdaGrad
    assert type(get_optimizer("RMSprop")) is RMSprop
    assert get_optimizer("adam", beta_2=0.9).beta_2 == 0.9
    opt = Adam()
    assert get_optimizer(opt) is opt
    with pytest.raises(TypeError):
        get_optimizer(opt, learning_rate=0.1)
    with pytest.raises(ValueError, match="adam"):
        get_optimizer("lbfgs")
    with pytest.raises(TypeError):
        get_optimizer(None)
    with pytest.raises(TypeError):
        get_optimizer("sgd", betas=0.1)


def test_compiled_loop_hooks():
    # what a compiled epoch loop does: config dict -> struct, state arrays, step, sync t back
    opt = Adam(learning_rate=0.01, alpha=0.2)
    ref = Adam(learning_rate=0.01, alpha=0.2)
    rng = np.random.RandomState(0)
    p = rng.standard_normal(9)
    q = p.copy()
    cfg = opt._kernel_config(n_samples=1.0, n_decay=5)
    s1, s2 = opt._kernel_state(p)
    for _ in range(3):
        g = rng.standard_normal(9)
        cfg["decay"] = cfg["alpha"] / 4.0
        cfg["t"] = _optim.optimizer_step(cfg, p, g, s1, s2)
        ref.step(q, g, n_decay=5, n_samples=4.0)
    opt._kernel_sync(cfg["t"])
    assert opt.t == ref.t == 3
    np.testing.assert_array_equal(p, q)
    assert SGD()._kernel_state(p) == (None, None)
