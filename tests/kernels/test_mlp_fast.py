"""The compiled dense-network paths (nnc/_kernels/_mlp.pyx, nnc/_mlp_fast.py) against the generic
Python loop (nnc/_trainer.py) and the layer-by-layer forward pass.

The compiled epoch calls the same kernels in the same order as the generic loop, so parameters
after an epoch agree to float rounding (in practice bit for bit) and the epoch losses agree.
"""
import pickle

import numpy as np
import pytest

import nnc
from nnc import _mlp_fast
from nnc._kernels import _mlp, _losses
from nnc.layers import Dense, ReLU, LeakyReLU, Sigmoid, Tanh, Identity
from nnc.layers._reshape import Flatten
from nnc.optimizers import SGD, AdaGrad, RMSprop, Adam

#: params after an epoch: fast vs generic
TOL = {np.float32: dict(rtol=1e-5, atol=1e-6), np.float64: dict(rtol=1e-12, atol=1e-13)}

ARCHS = {
    "relu2": lambda K: [Dense(7), ReLU(), Dense(5), ReLU(), Dense(K)],
    "tanh_logistic": lambda K: [Dense(6), Tanh(), Dense(4), Sigmoid(), Dense(K)],
    "act_first": lambda K: [Sigmoid(), Dense(6), LeakyReLU(0.1), Dense(K)],
    "two_acts": lambda K: [Dense(6), Tanh(), Sigmoid(), Dense(5), Identity(), Dense(K)],
    "dense_dense": lambda K: [Dense(6), Dense(5), ReLU(), Dense(K), Tanh()],
    "linear": lambda K: [Dense(K)],
}

OPTIMIZERS = {
    "sgd": lambda a: SGD(0.05, alpha=a),
    "momentum": lambda a: SGD(0.05, momentum=0.9, alpha=a),
    "nesterov": lambda a: SGD(0.05, momentum=0.9, nesterov=True, alpha=a),
    "adagrad": lambda a: AdaGrad(0.05, alpha=a),
    "rmsprop": lambda a: RMSprop(0.01, alpha=a),
    "adam": lambda a: Adam(0.01, alpha=a),
}

LOSSES = ["softmax_cross_entropy", "binary_cross_entropy", "mse", "poisson"]


@pytest.fixture(autouse=True)
def _restore_config():
    """Tests switch the compiled paths with nnc.set_config(fast_path=...); restore it after."""
    saved = nnc.get_config()
    yield
    nnc.set_config(**saved)


def _data(loss, n, F, K, rng):
    X = rng.standard_normal((n, F))
    if loss == "softmax_cross_entropy":
        y = rng.randint(0, K, n)
    elif loss == "binary_cross_entropy":
        y = (rng.rand(n, K) > 0.5).astype(float)
    elif loss == "poisson":
        y = rng.poisson(1.0, (n, K)).astype(float)
    else:
        y = rng.standard_normal((n, K))
    return X, y


def _net(arch, loss, K, F, dtype, seed=0):
    return nnc.Sequential(ARCHS[arch](K), loss=loss, input_shape=(F,), dtype=dtype,
                          random_state=seed)


def _run(monkeypatch, fast, arch, loss, opt_name, dtype, *, n=53, F=5, K=3, batch_size=8,
         shuffle=True, weights=False, alpha=0.0, clip=None, epochs=2, loss_scale=1.0):
    """Train a fresh network; return (epoch losses, params, optimizer)."""
    nnc.set_config(fast_path=fast)
    rng = np.random.RandomState(42)
    X, y = _data(loss, n, F, K, rng)
    sw = rng.uniform(0.1, 2.0, n) if weights else None
    net = _net(arch, loss, K, F, dtype)
    if clip is not None:
        net.clip_grad_norm = clip
    opt = OPTIMIZERS[opt_name](alpha)
    Xv = net._check_X(X)
    yv = net._check_y(y, n)
    swv = None if sw is None else np.ascontiguousarray(sw, dtype=dtype)
    assert (_mlp_fast.select(net, opt) is not None) == fast
    losses = []
    for epoch in range(epochs):
        idx = np.random.RandomState(epoch).permutation(n) if shuffle else None
        losses.append(net.train_epoch(Xv, yv, opt, batch_size, swv, idx, loss_scale))
    return losses, net.params.copy(), opt


def _compare(monkeypatch, *args, **kw):
    dtype = args[3]
    lf, pf, of = _run(monkeypatch, True, *args, **kw)
    lg, pg, og = _run(monkeypatch, False, *args, **kw)
    assert pf.dtype == dtype
    np.testing.assert_allclose(pf, pg, **TOL[dtype])
    np.testing.assert_allclose(lf, lg, rtol=1e-12 if dtype == np.float64 else 1e-6)
    assert of.t == og.t
    for name in of._needed_state():
        np.testing.assert_allclose(of._state[name], og._state[name], **TOL[dtype])
    return lf, lg


@pytest.mark.parametrize("opt_name", sorted(OPTIMIZERS))
@pytest.mark.parametrize("loss", LOSSES)
def test_fast_epoch_matches_generic_optimizers_losses(monkeypatch, dtype, opt_name, loss):
    _compare(monkeypatch, "relu2", loss, opt_name, dtype, alpha=1e-3)


@pytest.mark.parametrize("arch", sorted(ARCHS))
def test_fast_epoch_matches_generic_architectures(monkeypatch, dtype, arch):
    _compare(monkeypatch, arch, "softmax_cross_entropy", "adam", dtype, weights=True, alpha=0.01)
    _compare(monkeypatch, arch, "mse", "momentum", dtype, shuffle=False, K=2)


@pytest.mark.parametrize("shuffle", [True, False])
@pytest.mark.parametrize("weights", [True, False])
@pytest.mark.parametrize("batch_size", [1, 7, 16, 53, 200])
def test_fast_epoch_matches_generic_batching(monkeypatch, dtype, shuffle, weights, batch_size):
    _compare(monkeypatch, "tanh_logistic", "binary_cross_entropy", "adam", dtype,
             batch_size=batch_size, shuffle=shuffle, weights=weights, alpha=1e-2)


def test_fast_epoch_matches_generic_clip_and_loss_scale(monkeypatch, dtype):
    _compare(monkeypatch, "relu2", "mse", "sgd", dtype, clip=0.05, loss_scale=0.25, alpha=0.1)
    _compare(monkeypatch, "relu2", "softmax_cross_entropy", "rmsprop", dtype, clip=1e-3)


def test_fast_epoch_is_bitwise_identical_in_float64(monkeypatch):
    """Same kernels, same order: in practice not a single bit differs."""
    lf, pf, _ = _run(monkeypatch, True, "relu2", "softmax_cross_entropy", "adam", np.float64,
                     weights=True, alpha=1e-3)
    lg, pg, _ = _run(monkeypatch, False, "relu2", "softmax_cross_entropy", "adam", np.float64,
                     weights=True, alpha=1e-3)
    assert lf == lg
    assert np.array_equal(pf, pg)


def test_flush_to_zero_mode_is_restored(monkeypatch):
    """The compiled epoch flushes subnormals (speed); the caller's FP mode comes back after."""
    tiny = np.float32(1e-38)
    assert tiny * np.float32(0.01) != 0          # subnormals work here
    _run(monkeypatch, True, "relu2", "mse", "adam", np.float32, epochs=1)
    assert tiny * np.float32(0.01) != 0
    assert np.float64(1e-308) * 0.01 != 0


def test_optimizer_state_continues_across_paths(monkeypatch):
    """fast epoch then generic epoch == two generic epochs (t, moments, params)."""
    rng = np.random.RandomState(0)
    X, y = _data("softmax_cross_entropy", 40, 4, 3, rng)
    results = []
    for first_fast in (True, False):
        net = _net("relu2", "softmax_cross_entropy", 3, 4, np.float64)
        opt = Adam(0.01)
        Xv, yv = net._check_X(X), net._check_y(y, 40)
        nnc.set_config(fast_path=first_fast)
        net.train_epoch(Xv, yv, opt, 8)
        assert opt.t == 5
        nnc.set_config(fast_path=False)
        loss = net.train_epoch(Xv, yv, opt, 8)
        results.append((loss, net.params.copy(), opt.t))
    assert results[0][0] == results[1][0]
    assert np.array_equal(results[0][1], results[1][1])
    assert results[0][2] == results[1][2] == 10


@pytest.mark.parametrize("fast", [True, False])
def test_non_finite_loss_stops_before_the_step(monkeypatch, fast):
    nnc.set_config(fast_path=fast)
    rng = np.random.RandomState(0)
    X = rng.standard_normal((32, 4))
    X[20] = 1e300  # batch 2 (rows 16..23) overflows
    y = rng.standard_normal((32, 2))
    net = _net("linear", "mse", 2, 4, np.float64)
    opt = SGD(0.01)
    Xv, yv = net._check_X(X), net._check_y(y, 32)
    before = net.params.copy()
    with pytest.raises(FloatingPointError, match="batch starting at sample 16"):
        net.train_epoch(Xv, yv, opt, 8)
    assert opt.t == 0 or opt.t == 2
    # the two first batches were applied, the third was not: replay them by hand
    net2 = _net("linear", "mse", 2, 4, np.float64)
    np.testing.assert_array_equal(net2.params, before)
    nnc.set_config(fast_path=False)
    net2.train_epoch(Xv[:16], yv[:16], SGD(0.01), 8)
    np.testing.assert_array_equal(net.params, net2.params)


def test_non_finite_loss_same_state_both_paths(monkeypatch):
    rng = np.random.RandomState(1)
    X = rng.standard_normal((30, 4))
    X[17] = np.inf
    y = rng.randint(0, 3, 30)
    out = []
    for fast in (True, False):
        nnc.set_config(fast_path=fast)
        net = _net("relu2", "softmax_cross_entropy", 3, 4, np.float32)
        opt = Adam(0.01)
        with pytest.raises(FloatingPointError) as info:
            net.train_epoch(X.astype(np.float32), net._check_y(y, 30), opt, 4,
                            indices=np.arange(30)[::-1].copy())
        out.append((str(info.value), net.params.copy(), opt.t))
    assert out[0][0] == out[1][0]
    np.testing.assert_array_equal(out[0][1], out[1][1])
    assert out[0][2] == out[1][2] == 3


@pytest.mark.parametrize("fast", [True, False])
def test_zero_weight_batch_raises(monkeypatch, fast):
    nnc.set_config(fast_path=fast)
    rng = np.random.RandomState(0)
    X, y = _data("mse", 16, 3, 2, rng)
    sw = np.ones(16)
    sw[8:] = 0.0
    net = _net("linear", "mse", 2, 3, np.float64)
    with pytest.raises(ValueError, match="positive finite sum"):
        net.train_epoch(net._check_X(X), net._check_y(y, 16), SGD(0.1), 8, sw)


def test_indices_are_validated(monkeypatch):
    nnc.set_config(fast_path=True)
    rng = np.random.RandomState(0)
    X, y = _data("softmax_cross_entropy", 20, 3, 2, rng)
    net = _net("relu2", "softmax_cross_entropy", 2, 3, np.float64)
    Xv, yv = net._check_X(X), net._check_y(y, 20)
    bad = np.arange(20)
    bad[3] = 20
    with pytest.raises(IndexError):
        net.train_epoch(Xv, yv, SGD(), 4, indices=bad)
    bad[3] = -21
    with pytest.raises(IndexError):
        net.train_epoch(Xv, yv, SGD(), 4, indices=bad)
    with pytest.raises(ValueError, match="length 20"):
        net.train_epoch(Xv, yv, SGD(), 4, indices=np.arange(19))
    with pytest.raises(ValueError, match="integer"):
        net.train_epoch(Xv, yv, SGD(), 4, indices=np.arange(20.0))


def test_negative_indices_count_from_the_end(monkeypatch):
    """np.take semantics, as in the generic loop."""
    rng = np.random.RandomState(0)
    X, y = _data("mse", 12, 3, 2, rng)
    idx = np.random.RandomState(3).permutation(12)
    idx_neg = idx - 12
    out = []
    for fast, ind in ((True, idx_neg), (False, idx_neg), (True, idx)):
        nnc.set_config(fast_path=fast)
        net = _net("relu2", "mse", 2, 3, np.float64)
        out.append(net.train_epoch(net._check_X(X), net._check_y(y, 12), Adam(), 5, indices=ind))
    assert out[0] == out[1] == out[2]


def test_unvalidated_arrays_are_rejected(monkeypatch):
    nnc.set_config(fast_path=True)
    rng = np.random.RandomState(0)
    X, y = _data("softmax_cross_entropy", 20, 3, 2, rng)
    net = _net("relu2", "softmax_cross_entropy", 2, 3, np.float32)
    Xv, yv = net._check_X(X), net._check_y(y, 20)
    fn = _mlp_fast.select(net, SGD())
    with pytest.raises(ValueError, match="X must be"):
        fn(net, X, yv, SGD(), 4, None, None, 1.0)                 # float64 X on float32 net
    with pytest.raises(ValueError, match="X must be"):
        fn(net, np.asfortranarray(Xv), yv, SGD(), 4, None, None, 1.0)
    with pytest.raises(ValueError, match="y must be"):
        fn(net, Xv, y, SGD(), 4, None, None, 1.0)                 # int64 labels
    with pytest.raises(ValueError, match="sample_weight must be"):
        fn(net, Xv, yv, SGD(), 4, np.ones(19, np.float32), None, 1.0)


def test_select_rejects_unsupported(monkeypatch):
    nnc.set_config(fast_path=True)
    net = _net("relu2", "mse", 2, 3, np.float64)
    assert _mlp_fast.select(net, Adam()) is not None
    assert _mlp_fast.forward_fn(net) is not None

    class MyAdam(Adam):
        def step(self, params, grads, n_decay=None, n_samples=1.0):
            super().step(params, grads, n_decay, n_samples)

    class MyReLU(ReLU):
        pass

    assert _mlp_fast.select(net, MyAdam()) is None
    assert _mlp_fast.select(net, object()) is None
    net2 = nnc.Sequential([Dense(4), MyReLU(), Dense(2)], loss="mse", input_shape=(3,))
    assert _mlp_fast.select(net2, Adam()) is None
    assert _mlp_fast.forward_fn(net2) is None
    net.clip_grad_norm = -1.0
    assert _mlp_fast.select(net, Adam()) is None
    nnc.set_config(fast_path=False)
    net3 = _net("relu2", "mse", 2, 3, np.float64)
    assert _mlp_fast.select(net3, Adam()) is None
    assert _mlp_fast.forward_fn(net3) is None


def test_select_rejects_dropout_and_unbuilt(monkeypatch):
    nnc.set_config(fast_path=True)
    layers = pytest.importorskip("nnc.layers")
    if not hasattr(layers, "Dropout"):
        pytest.skip("no Dropout layer")
    net = nnc.Sequential([Dense(4), ReLU(), layers.Dropout(0.5), Dense(2)], loss="mse",
                         input_shape=(3,))
    assert _mlp_fast.select(net, Adam()) is None
    assert _mlp_fast.forward_fn(net) is None
    unbuilt = nnc.Sequential([Dense(4), Dense(2)], loss="mse")
    assert _mlp_fast.select(unbuilt, Adam()) is None


@pytest.mark.parametrize("layers", [
    lambda: [Flatten(), Dense(5), ReLU(), Dense(3)],
    lambda: [Tanh(), Flatten(), Sigmoid(), Dense(4), Flatten(), ReLU(), Dense(3)],
], ids=["flatten_first", "flatten_between"])
def test_flatten_is_a_view_in_both_paths(monkeypatch, dtype, layers):
    rng = np.random.RandomState(0)
    X = rng.standard_normal((29, 2, 3))
    y = rng.randint(0, 3, 29)
    out = []
    for fast in (True, False):
        nnc.set_config(fast_path=fast)
        net = nnc.Sequential(layers(), loss="softmax_cross_entropy", input_shape=(2, 3),
                             dtype=dtype, random_state=0)
        opt = Adam(0.01)
        assert (_mlp_fast.select(net, opt) is not None) == fast
        Xv, yv = net._check_X(X), net._check_y(y, 29)
        losses = [net.train_epoch(Xv, yv, opt, 8, None, np.random.RandomState(e).permutation(29))
                  for e in range(2)]
        out.append((losses, net.params.copy(), net.forward(X)))
    np.testing.assert_allclose(out[0][0], out[1][0], rtol=1e-6)
    np.testing.assert_allclose(out[0][1], out[1][1], **TOL[dtype])
    np.testing.assert_allclose(out[0][2], out[1][2], **TOL[dtype])


# ---------------------------------------------------------------------- forward

@pytest.mark.parametrize("arch", sorted(ARCHS))
@pytest.mark.parametrize("n", [1, 5, 37])
def test_forward_fn_matches_layer_by_layer(monkeypatch, dtype, arch, n):
    rng = np.random.RandomState(0)
    net = _net(arch, "softmax_cross_entropy", 3, 4, dtype)
    X = rng.standard_normal((n, 4)).astype(dtype)
    nnc.set_config(fast_path=False)
    ref = net.forward(X)
    nnc.set_config(fast_path=True)
    fn = _mlp_fast.forward_fn(net)
    out = np.empty((n, 3), dtype=dtype)
    assert fn(X, out) is out
    np.testing.assert_array_equal(out, ref)
    got = net.forward(X)
    assert got.dtype == dtype
    np.testing.assert_array_equal(got, ref)
    np.testing.assert_array_equal(net.predict(X), net._loss.link(ref.copy()))


def test_forward_fn_chunks_and_sees_weight_updates(dtype):
    rng = np.random.RandomState(0)
    net = _net("relu2", "mse", 2, 4, dtype)
    plan = _mlp_fast._get_plan(net)
    fn = _mlp.DenseForward(plan.desc, plan.slopes, net.params, plan.F0, plan.K, plan.units,
                           max_rows=7)
    X = rng.standard_normal((30, 4)).astype(dtype)
    out = np.empty((30, 2), dtype=dtype)
    fn(X, out)
    ref = np.vstack([_mlp_fast.forward_fn(net)(X[i:i + 1], np.empty((1, 2), dtype))
                     for i in range(30)])
    np.testing.assert_allclose(out, ref, **TOL[dtype])
    net.params *= 0.5
    fn(X, out)
    assert not np.allclose(out, ref)


def test_forward_fn_validates_arrays():
    net = _net("relu2", "mse", 2, 4, np.float32)
    fn = _mlp_fast.forward_fn(net)
    X = np.zeros((3, 4), np.float32)
    with pytest.raises(ValueError, match="X must be"):
        fn(X.astype(np.float64), np.empty((3, 2), np.float32))
    with pytest.raises(ValueError, match="X must be"):
        fn(np.zeros((3, 5), np.float32), np.empty((3, 2), np.float32))
    with pytest.raises(ValueError, match="X must be"):
        fn(np.zeros((4, 3), np.float32).T, np.empty((3, 2), np.float32))
    with pytest.raises(ValueError, match="out must be"):
        fn(X, np.empty((2, 2), np.float32))
    with pytest.raises(ValueError, match="out must be"):
        fn(X, np.empty((3, 2), np.float64))
    ro = np.empty((3, 2), np.float32)
    ro.flags.writeable = False
    with pytest.raises(ValueError, match="out must be"):
        fn(X, ro)
    with pytest.raises(TypeError):
        fn([[0.0] * 4], np.empty((1, 2), np.float32))
    assert fn(np.zeros((0, 4), np.float32), np.empty((0, 2), np.float32)).shape == (0, 2)


def test_forward_fn_is_thread_safe():
    """Concurrent predictions on one network (the kernels release the GIL) stay correct."""
    from concurrent.futures import ThreadPoolExecutor
    net = _net("relu2", "mse", 2, 4, np.float64)
    fn = _mlp_fast.forward_fn(net)
    rng = np.random.RandomState(0)
    inputs = [rng.standard_normal((int(k), 4)) for k in rng.randint(1, 300, 64)]
    expected = [fn(X, np.empty((X.shape[0], 2))).copy() for X in inputs]

    def work(i):
        ok = True
        for _ in range(20):
            X = inputs[i]
            ok &= np.array_equal(fn(X, np.empty((X.shape[0], 2))), expected[i])
        return ok

    with ThreadPoolExecutor(4) as pool:
        assert all(pool.map(work, range(len(inputs))))


def test_caches_are_dropped_on_pickle_and_rebuilt():
    rng = np.random.RandomState(0)
    X, y = _data("mse", 20, 4, 2, rng)
    net = _net("relu2", "mse", 2, 4, np.float64)
    net.train_epoch(net._check_X(X), net._check_y(y, 20), Adam(), 8)
    ref = net.forward(X)
    assert any(k.startswith("_ws_mlp") for k in net.__dict__)
    clone = pickle.loads(pickle.dumps(net))
    assert not any(k.startswith("_ws") for k in clone.__dict__)
    np.testing.assert_array_equal(clone.forward(X), ref)
    clone.params[:] = 0.0
    assert np.array_equal(net.forward(X), ref)       # the original's fn reads its own params


def test_rebuild_invalidates_plan():
    net = _net("relu2", "mse", 2, 4, np.float64)
    fn1 = _mlp_fast.forward_fn(net)
    net.build((6,))
    fn2 = _mlp_fast.forward_fn(net)
    assert fn2 is not fn1 and fn2.F0 == 6
    out = net.forward(np.ones((2, 6)))
    assert out.shape == (2, 2)


# ---------------------------------------------------------------------- kernel twins

def test_pairwise_sum_is_numpys(dtype):
    rng = np.random.RandomState(0)
    for n in list(range(1, 40)) + [127, 128, 129, 255, 256, 257, 1000, 4097]:
        a = (rng.rand(n) * 10.0 ** rng.uniform(-3, 3, n)).astype(dtype)
        assert _mlp.pairwise_sum(a) == float(a.sum())


def test_all_finite():
    assert _mlp.all_finite(np.zeros((2, 3), np.float32))
    a = np.zeros((2, 3))
    a[1, 2] = np.nan
    assert not _mlp.all_finite(a)
    a[1, 2] = -np.inf
    assert not _mlp.all_finite(a)
    with pytest.raises(TypeError):
        _mlp.all_finite(np.zeros(3, np.int64))
    with pytest.raises(ValueError):
        _mlp.all_finite(np.zeros((3, 2)).T)


def _good_plan():
    net = _net("relu2", "mse", 2, 4, np.float64)
    return net, _mlp_fast._get_plan(net)


@pytest.mark.parametrize("row,col,value,match", [
    (0, "W", 10 ** 6, "outside the buffer"),
    (2, "b", -1, "outside the buffer"),
    (2, "out", 10 ** 6, "outside the workspace"),
    (0, "in", 0, "previous layer|in place"),
    (2, "in", -1, "previous layer"),
    (0, "kind", 7, "unknown kind"),
    (1, "act", 9, "unknown activation"),
    (0, "F", 3, "widths"),
    (4, "U", 5, "outside the buffer|expected K"),
    (2, "out", 0, "cannot run in place"),
])
def test_check_plan_rejects_bad_plans(row, col, value, match):
    net, plan = _good_plan()
    desc = plan.desc.copy()
    if col == "out" and value == 0:
        value = desc[2, _mlp.COLUMNS["in"]]
    desc[row, _mlp.COLUMNS[col]] = value
    with pytest.raises(ValueError, match=match):
        _mlp.check_plan(desc, net.params.size, plan.F0, plan.K, plan.units)


def test_check_plan_rejects_in_place_after_activation():
    net = nnc.Sequential([Dense(4), Tanh(), Sigmoid(), Dense(2)], loss="mse", input_shape=(3,))
    plan = _mlp_fast._get_plan(net)
    desc = plan.desc.copy()
    desc[2, _mlp.COLUMNS["out"]] = desc[2, _mlp.COLUMNS["in"]]
    with pytest.raises(ValueError, match="in place only after a dense"):
        _mlp.check_plan(desc, net.params.size, plan.F0, plan.K, plan.units)


def test_train_epoch_twin_rejects_bad_labels_and_buffers():
    net = _net("relu2", "softmax_cross_entropy", 3, 4, np.float64)
    plan = _mlp_fast._get_plan(net)
    n, B = 10, 4
    X = np.zeros((n, 4))
    labels = np.zeros(n, np.int32)
    labels[5] = 3
    opt = SGD()
    bufs = _mlp_fast._train_buffers(net, plan, B, False, np.float64)
    args = dict(desc=plan.desc, slopes=plan.slopes, X=X, Y=None, labels=labels,
                sample_weight=None, indices=None, batch_size=B, params_out=net.params,
                grads_out=net.grads, s1_out=None, s2_out=None,
                config=opt._kernel_config(1.0, net.n_decay), loss=_losses.SOFTMAX_CE,
                loss_scale=1.0, clip=0.0, ws_out=bufs["ws"], D_out=bufs["D"], Xg_out=bufs["Xg"],
                Yg_out=None, labg_out=bufs["labg"], swg_out=bufs["swg"],
                result_out=bufs["result"])
    with pytest.raises(ValueError, match="labels must lie"):
        _mlp.train_epoch(*args.values())
    labels[5] = 1
    params = net.params.copy()
    assert _mlp.train_epoch(*args.values()) == _mlp.STATUS_OK
    assert not np.array_equal(params, net.params)
    bad = dict(args, D_out=np.empty((2, 3)))
    with pytest.raises(ValueError):
        _mlp.train_epoch(*bad.values())
    bad = dict(args, ws_out=np.empty(B * plan.units - B))
    with pytest.raises(ValueError):
        _mlp.train_epoch(*bad.values())
    bad = dict(args, indices=np.arange(n, dtype=np.int64), Xg_out=np.empty((B - 1, 4)))
    with pytest.raises(ValueError, match="Xg_out"):
        _mlp.train_epoch(*bad.values())
    bad = dict(args, config=Adam()._kernel_config(1.0, net.n_decay))
    with pytest.raises(ValueError, match="s1_out"):
        _mlp.train_epoch(*bad.values())
    bad = dict(args, grads_out=np.empty(3))
    with pytest.raises(ValueError, match="grads"):
        _mlp.train_epoch(*bad.values())
