import pickle
import copy

import numpy as np
import pytest

from nnc import Sequential, check_gradients
from nnc.layers import Dense, ReLU, LeakyReLU, Sigmoid, Tanh
from nnc.optimizers import SGD, AdaGrad, RMSprop, Adam


def _spiral(n_per_class=100, k=3, seed=0):
    rng = np.random.RandomState(seed)
    X, y = [], []
    for c in range(k):
        r = np.linspace(0.05, 1, n_per_class)
        t = np.linspace(c * 4, (c + 1) * 4, n_per_class) + 0.2 * rng.standard_normal(n_per_class)
        X.append(np.c_[r * np.sin(t), r * np.cos(t)])
        y.append(np.full(n_per_class, c))
    return np.vstack(X), np.concatenate(y)


def test_forward_shapes_and_flat_buffers():
    net = Sequential([Dense(16), ReLU(), Dense(3)], loss="softmax_cross_entropy",
                     input_shape=(4,), dtype="float64", random_state=0)
    X = np.random.RandomState(0).standard_normal((10, 4))
    out = net.forward(X)
    assert out.shape == (10, 3) and out.dtype == np.float64
    assert net.params.shape == net.grads.shape == (4 * 16 + 16 + 16 * 3 + 3,)
    # decayed weights first, then biases
    assert net.n_decay == 4 * 16 + 16 * 3
    W0 = net.layers[0].params[0]
    assert np.shares_memory(W0, net.params)
    W0[0, 0] = 123.0
    assert 123.0 in net.params


def test_loss_and_gradients_layout_matches_get_weights():
    net = Sequential([Dense(5), Tanh(), Dense(2)], loss="mse", input_shape=(3,), random_state=1)
    X = np.random.RandomState(0).standard_normal((7, 3))
    y = np.random.RandomState(1).standard_normal((7, 2))
    loss, grads = net.loss_and_gradients(X, y)
    weights = net.get_weights()
    assert len(grads) == len(weights) == 2
    for g, w in zip(grads, weights):
        assert [a.shape for a in g] == [a.shape for a in w]
    # mse: mean over samples of 0.5 * sum over outputs
    pred = net.forward(X)
    assert loss == pytest.approx(0.5 * np.mean(np.sum((pred - y) ** 2, axis=1)), rel=1e-12)


@pytest.mark.parametrize("loss,act", [("softmax_cross_entropy", ReLU), ("mse", Tanh),
                                      ("binary_cross_entropy", Sigmoid),
                                      ("poisson", LeakyReLU)])
def test_three_layer_net_gradient_check(loss, act):
    rng = np.random.RandomState(0)
    X = rng.standard_normal((6, 4))
    if loss == "softmax_cross_entropy":
        y = rng.randint(0, 3, 6)
    elif loss == "binary_cross_entropy":
        y = rng.randint(0, 2, (6, 3))
    elif loss == "poisson":
        y = rng.poisson(2.0, (6, 3)).astype(float)
    else:
        y = rng.standard_normal((6, 3))
    net = Sequential([Dense(8), act(), Dense(7), act(), Dense(3)], loss=loss, input_shape=(4,),
                     random_state=0)
    assert check_gradients(net, X, y) < 1e-6
    sw = rng.uniform(0.1, 2, 6)
    assert check_gradients(net, X, y, sample_weight=sw) < 1e-6


def test_chained_activations_are_not_corrupted_in_place():
    # Sigmoid after Tanh: Tanh's output must survive for its own backward
    rng = np.random.RandomState(0)
    X = rng.standard_normal((5, 3))
    y = rng.standard_normal((5, 2))
    net = Sequential([Dense(4), Tanh(), Sigmoid(), Dense(2)], loss="mse", input_shape=(3,),
                     random_state=0)
    assert net.layers[1].inplace and not net.layers[2].inplace
    assert check_gradients(net, X, y) < 1e-6


def test_float32_network_gradcheck_runs_in_float64_copy():
    rng = np.random.RandomState(0)
    X = rng.standard_normal((4, 3))
    y = rng.randint(0, 2, 4)
    net = Sequential([Dense(5), ReLU(), Dense(2)], loss="softmax_cross_entropy",
                     input_shape=(3,), dtype="float32", random_state=0)
    before = net.params.copy()
    assert check_gradients(net, X, y) < 1e-6
    np.testing.assert_array_equal(net.params, before)
    assert net.forward(X).dtype == np.float32


OPTIMIZERS = [lambda: SGD(learning_rate=0.5), lambda: SGD(learning_rate=0.1, momentum=0.9),
              lambda: SGD(learning_rate=0.1, momentum=0.9, nesterov=True),
              lambda: AdaGrad(learning_rate=0.3), lambda: RMSprop(learning_rate=0.01),
              lambda: Adam(learning_rate=0.02)]


@pytest.mark.parametrize("make_opt", OPTIMIZERS, ids=["sgd", "momentum", "nesterov", "adagrad",
                                                     "rmsprop", "adam"])
def test_hand_written_loop_solves_xor(make_opt):
    X = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], dtype=float)
    y = np.array([0, 1, 1, 0])
    net = Sequential([Dense(8), Tanh(), Dense(2)], loss="softmax_cross_entropy",
                     input_shape=(2,), random_state=0)
    opt = make_opt()
    for _ in range(1500):
        net.loss_and_gradients(X, y)
        opt.step(net.params, net.grads, n_decay=net.n_decay, n_samples=len(X))
    assert (net.forward(X).argmax(1) == y).mean() == 1.0


@pytest.mark.parametrize("make_opt", OPTIMIZERS, ids=["sgd", "momentum", "nesterov", "adagrad",
                                                     "rmsprop", "adam"])
def test_mini_batch_training_solves_spiral(make_opt):
    X, y = _spiral()
    net = Sequential([Dense(64), ReLU(), Dense(64), ReLU(), Dense(3)],
                     loss="softmax_cross_entropy", input_shape=(2,), random_state=0)
    opt = make_opt()
    rng = np.random.RandomState(0)
    Xc, yc = net._check_X(X), net._check_y(y, len(X))
    for _ in range(300):
        net.train_epoch(Xc, yc, opt, batch_size=32, indices=rng.permutation(len(X)))
    assert (net.forward(X).argmax(1) == y).mean() > 0.95


def test_bad_input_raises_before_kernels():
    net = Sequential([Dense(3), ReLU(), Dense(2)], loss="softmax_cross_entropy",
                     input_shape=(4,), random_state=0)
    X = np.zeros((5, 4))
    y = np.zeros(5, dtype=int)
    with pytest.raises(ValueError, match="3 features.*expecting 4|expecting 4"):
        net.forward(np.zeros((5, 3)))
    Xn = X.copy()
    Xn[1, 2] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        net.forward(Xn)
    with pytest.raises(ValueError, match="infinity|NaN"):
        net.loss_and_gradients(np.full((5, 4), np.inf), y)
    with pytest.raises(ValueError, match="inconsistent"):
        net.loss_and_gradients(X, np.zeros(4, dtype=int))
    with pytest.raises(ValueError):
        net.loss_and_gradients(X, np.full(5, 7))  # class index out of range
    with pytest.raises((ValueError, TypeError)):
        net.loss_and_gradients(X, np.array(["a"] * 5))
    with pytest.raises(ValueError, match="1D"):
        net.forward(np.zeros(4))
    with pytest.raises(ValueError, match="0 sample"):
        net.forward(np.zeros((0, 4)))
    with pytest.raises(ValueError, match="[Cc]omplex"):
        net.forward(np.zeros((2, 4), dtype=complex))
    with pytest.raises(ValueError, match="loss"):
        Sequential([Dense(2)], loss="hinge")
    with pytest.raises(TypeError, match="layers\\[1\\]"):
        Sequential([Dense(2), "relu"])
    with pytest.raises(ValueError, match="dtype"):
        Sequential([Dense(2)], dtype="float16")


@pytest.mark.parametrize("kind", ["fortran", "strided", "list", "int", "bool", "float16"])
def test_input_layouts_give_identical_results(kind):
    rng = np.random.RandomState(0)
    X = rng.randint(0, 2, (6, 4)).astype(float)
    net = Sequential([Dense(3), Dense(2)], loss="mse", input_shape=(4,), random_state=0)
    expect = net.forward(X)
    alt = {"fortran": np.asfortranarray(X), "strided": np.repeat(X, 2, axis=1)[:, ::2],
           "list": X.tolist(), "int": X.astype(int), "bool": X.astype(bool),
           "float16": X.astype(np.float16)}[kind]
    np.testing.assert_array_equal(net.forward(alt), expect)


def test_pickle_and_deepcopy_keep_views_tied():
    net = Sequential([Dense(4), ReLU(), Dense(2)], loss="mse", input_shape=(3,), random_state=0)
    X = np.random.RandomState(0).standard_normal((5, 3))
    expect = net.forward(X)
    for clone in (pickle.loads(pickle.dumps(net)), copy.deepcopy(net)):
        np.testing.assert_array_equal(clone.forward(X), expect)
        assert np.shares_memory(clone.layers[0].params[0], clone.params)
        clone.params[...] = 0
        assert np.all(clone.forward(X) == 0)
    np.testing.assert_array_equal(net.forward(X), expect)


def test_set_weights_roundtrip_and_validation():
    net = Sequential([Dense(4), ReLU(), Dense(2)], loss="mse", input_shape=(3,), random_state=0)
    w = net.get_weights()
    w[0][0] = np.ones((3, 4))
    net.set_weights(w)
    np.testing.assert_array_equal(net.layers[0].params[0], 1)
    before = net.params.copy()
    bad = net.get_weights()
    bad[1][0] = np.ones((5, 2))
    with pytest.raises(ValueError, match="shape"):
        net.set_weights(bad)
    np.testing.assert_array_equal(net.params, before)


def test_random_state_reproducible():
    a = Sequential([Dense(4), Dense(2)], input_shape=(3,), random_state=42)
    b = Sequential([Dense(4), Dense(2)], input_shape=(3,), random_state=42)
    np.testing.assert_array_equal(a.params, b.params)


def test_non_finite_loss_stops_with_clear_error_and_keeps_weights():
    rng = np.random.RandomState(0)
    X = rng.standard_normal((64, 3)) * 1e3
    y = rng.standard_normal(64) * 1e3
    net = Sequential([Dense(8), ReLU(), Dense(1)], loss="poisson", input_shape=(3,),
                     random_state=0)
    Xc, yc = net._check_X(X), net._check_y(np.abs(y), 64)
    opt = SGD(learning_rate=10.0)
    with pytest.raises(FloatingPointError, match="loss became"):
        for _ in range(50):
            net.train_epoch(Xc, yc, opt, batch_size=8)
    assert np.all(np.isfinite(net.params))
