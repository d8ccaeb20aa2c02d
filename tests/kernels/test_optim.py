"""Fused optimizer kernels (nnc._kernels._optim) against the NumPy formulas."""
import numpy as np
import pytest

from nnc._kernels import _optim as K
from tests._reference_losses import optimizer_steps

DTYPES = [np.float32, np.float64]
RTOL = {np.float32: 1e-5, np.float64: 1e-12}
KINDS = {"sgd": K.SGD, "adagrad": K.ADAGRAD, "rmsprop": K.RMSPROP, "adam": K.ADAM}


def config(kind, lr=0.05, momentum=0.0, nesterov=False, rho=0.9, beta_1=0.9, beta_2=0.999,
           eps=1e-8, decay=0.0, n_decay=0, t=0, n_threads=1):
    a = {"sgd": momentum, "rmsprop": rho, "adam": beta_1}.get(kind, 0.0)
    return {"kind": KINDS[kind], "lr": lr, "momentum": a, "beta2": beta_2, "eps": eps,
            "nesterov": int(nesterov), "alpha": 0.0, "decay": decay, "n_decay": n_decay, "t": t,
            "n_threads": n_threads}


CASES = [("sgd", {}), ("sgd", {"momentum": 0.9}), ("sgd", {"momentum": 0.9, "nesterov": True}),
         ("adagrad", {}), ("rmsprop", {"rho": 0.8}), ("adam", {}),
         ("adam", {"beta_1": 0.5, "beta_2": 0.9, "eps": 1e-3})]


def run_kernel(kind, p, grads_seq, **kw):
    p = p.copy()
    s1 = np.zeros_like(p)
    s2 = np.zeros_like(p)
    cfg = config(kind, **kw)
    for g in grads_seq:
        cfg["t"] = K.optimizer_step(cfg, p, g, s1, s2)
    return p, s1, s2, cfg["t"]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kind,hyper", CASES)
@pytest.mark.parametrize("n", [1, 7, 1000])
@pytest.mark.parametrize("with_decay", [False, True])
def test_five_steps_match_numpy(dtype, kind, hyper, n, with_decay):
    rng = np.random.RandomState(n)
    p0 = rng.standard_normal(n).astype(dtype)
    grads = [rng.standard_normal(n).astype(dtype) for _ in range(5)]
    grads_copy = [g.copy() for g in grads]
    n_decay = (2 * n) // 3 if with_decay else 0
    decay = 0.3 if with_decay else 0.0
    p, s1, s2, t = run_kernel(kind, p0, grads, decay=decay, n_decay=n_decay, **hyper)
    ref_p, ref_state = optimizer_steps(kind, p0, grads, dtype, 0.05, n_decay, decay,
                                       **hyper)
    assert t == 5
    assert p.dtype == dtype and s1.dtype == dtype
    np.testing.assert_allclose(p, ref_p, rtol=RTOL[dtype], atol=RTOL[dtype])
    if kind != "sgd" or hyper.get("momentum"):
        np.testing.assert_allclose(s1, ref_state["s1"], rtol=RTOL[dtype], atol=RTOL[dtype])
    else:
        assert np.all(s1 == 0)  # momentum 0: the velocity is never touched
    if kind == "adam":
        np.testing.assert_allclose(s2, ref_state["s2"], rtol=RTOL[dtype], atol=RTOL[dtype])
    # the gradients are read only (L2 is not written back)
    for g, g_copy in zip(grads, grads_copy):
        np.testing.assert_array_equal(g, g_copy)


def test_float32_is_computed_in_float32():
    # float32 buffers are updated in float32 arithmetic with float32 scalars: the kernel tracks the
    # float32 NumPy reference at least as closely as the float64 one (no silent promotion)
    rng = np.random.RandomState(0)
    p0 = rng.standard_normal(1000).astype(np.float32)
    grads = [rng.standard_normal(1000).astype(np.float32) for _ in range(5)]
    p, *_ = run_kernel("adam", p0, grads, lr=0.0123)
    ref32, _ = optimizer_steps("adam", p0, grads, np.float32, 0.0123, 0, 0.0)
    ref64, _ = optimizer_steps("adam", p0, grads, np.float64, 0.0123, 0, 0.0)
    assert np.abs(p - ref32).max() <= np.abs(p.astype(np.float64) - ref64).max() + 1e-7


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kind,hyper", CASES)
def test_threaded_path_equals_serial(dtype, kind, hyper):
    rng = np.random.RandomState(0)
    n = 10001
    p0 = rng.standard_normal(n).astype(dtype)
    grads = [rng.standard_normal(n).astype(dtype) for _ in range(3)]
    serial = run_kernel(kind, p0, grads, decay=0.1, n_decay=5000, **hyper)
    old = K._set_parallel_min(1000)
    try:
        threaded = run_kernel(kind, p0, grads, decay=0.1, n_decay=5000, n_threads=2, **hyper)
        threaded3 = run_kernel(kind, p0, grads, decay=0.1, n_decay=5000, n_threads=3, **hyper)
    finally:
        K._set_parallel_min(old)
    for a, b, c in zip(serial[:3], threaded[:3], threaded3[:3]):
        np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(a, c)


def test_adam_counts_steps_from_given_t():
    # resuming at t=3 gives the same as three earlier steps' lr_t sequence continuing
    p = np.ones(3)
    g = np.full(3, 0.5)
    m = np.zeros(3)
    v = np.zeros(3)
    cfg = config("adam", lr=0.1, t=3)
    assert K.optimizer_step(cfg, p, g, m, v) == 4
    lr_t = 0.1 * np.sqrt(1 - 0.999 ** 4) / (1 - 0.9 ** 4)
    m_ref = 0.1 * 0.5
    v_ref = 0.001 * 0.25
    np.testing.assert_allclose(p, 1 - lr_t * m_ref / (np.sqrt(v_ref) + 1e-8), rtol=1e-14)


@pytest.mark.parametrize("case", ["g_len", "s1_len", "s1_none", "s2_none", "n_decay_big",
                                  "n_decay_neg", "kind", "keys", "t_neg", "beta1_one"])
def test_optimizer_step_rejects_bad_input(case):
    n = 5
    p, g, s1, s2 = np.zeros(n), np.zeros(n), np.zeros(n), np.zeros(n)
    cfg = config("adam")
    if case == "g_len":
        g = np.zeros(n + 1)
    elif case == "s1_len":
        s1 = np.zeros(n - 1)
    elif case == "s1_none":
        s1 = None
    elif case == "s2_none":
        s2 = None
    elif case == "n_decay_big":
        cfg["n_decay"] = n + 1
    elif case == "n_decay_neg":
        cfg["n_decay"] = -1
    elif case == "kind":
        cfg["kind"] = 9
    elif case == "keys":
        cfg["extra"] = 1
    elif case == "t_neg":
        cfg["t"] = -1
    elif case == "beta1_one":
        cfg["momentum"] = 1.0
    with pytest.raises(ValueError):
        K.optimizer_step(cfg, p, g, s1, s2)
    with pytest.raises((TypeError, ValueError)):
        K.optimizer_step(config("sgd"), p, np.zeros(n, np.float32), None, None)


def test_sgd_without_momentum_needs_no_state():
    p = np.ones(4)
    t = K.optimizer_step(config("sgd", lr=0.5), p, np.ones(4), None, None)
    assert t == 1
    np.testing.assert_array_equal(p, 0.5)
    with pytest.raises(ValueError):
        K.optimizer_step(config("sgd", momentum=0.5), p, np.ones(4), None, None)
    with pytest.raises(ValueError):
        K.optimizer_step(config("rmsprop"), p, np.ones(4), None, None)


def test_empty_buffer_is_a_no_op():
    e = np.zeros(0)
    assert K.optimizer_step(config("adam"), e, e, e, e) == 1


def test_config_fields():
    assert set(config("sgd")) == set(K.CONFIG_FIELDS)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n", [1, 7, 1000])
def test_clip_grad_norm(dtype, n):
    rng = np.random.RandomState(n)
    g0 = rng.standard_normal(n).astype(dtype)
    norm0 = float(np.linalg.norm(g0.astype(np.float64)))
    g = g0.copy()
    norm = K.clip_grad_norm(g, 2 * norm0)          # below the threshold: untouched
    assert norm == pytest.approx(norm0, rel=RTOL[dtype])
    np.testing.assert_array_equal(g, g0)
    norm = K.clip_grad_norm(g, norm0 / 4)
    assert norm == pytest.approx(norm0, rel=RTOL[dtype])
    assert g.dtype == dtype
    np.testing.assert_allclose(g, g0 / 4, rtol=RTOL[dtype] * 10)
    assert np.linalg.norm(g.astype(np.float64)) == pytest.approx(norm0 / 4, rel=1e-5)


def test_clip_grad_norm_edge_cases():
    assert K.clip_grad_norm(np.zeros(0), 1.0) == 0.0
    g = np.zeros(3)
    assert K.clip_grad_norm(g, 1.0) == 0.0 and np.all(g == 0)
    g = np.array([1e200, 1e200])                   # squares overflow to inf in double
    K.clip_grad_norm(g, 1.0)
    for bad in (0.0, -1.0, np.nan):
        with pytest.raises(ValueError):
            K.clip_grad_norm(np.ones(3), bad)
    big = np.full(4, 1e30, dtype=np.float32)       # float32 squares overflow: the norm is
    norm = K.clip_grad_norm(big, 1.0)              # accumulated in double
    assert norm == pytest.approx(2e30, rel=1e-6)
    np.testing.assert_allclose(big, 0.5, rtol=1e-6)
