"""Low-level misuse gets clear errors (issue 14.9): layers called out of order or with the wrong
arrays, assignments to the flat buffers, one layer in two networks, geometries whose sizes would
wrap around."""
import gc
import pickle

import numpy as np
import pytest

import nnc
from nnc import layers as L
from tests._harness import build_layer


# ------------------------------------------------------------------------- layer calls
@pytest.mark.parametrize("make, shape", [
    (lambda: L.Dense(3), (4,)), (lambda: L.ReLU(), (4,)), (lambda: L.Conv2D(2, 3), (1, 5, 5)),
    (lambda: L.MaxPool2D(2), (1, 4, 4)), (lambda: L.Flatten(), (2, 3)),
    (lambda: L.Dropout(0.5), (4,)), (lambda: L.LSTM(3), (4, 2)),
    (lambda: L.Bidirectional(L.GRU(2)), (4, 2)),
], ids=["Dense", "ReLU", "Conv2D", "MaxPool2D", "Flatten", "Dropout", "LSTM", "Bidirectional"])
def test_forward_before_build_and_backward_before_forward(make, shape):
    X = np.zeros((2,) + shape)
    layer = make()
    with pytest.raises(RuntimeError, match="not built"):
        layer.forward(X)
    with pytest.raises(RuntimeError, match="not built"):
        layer.backward(X)
    # in a network that is not built yet
    layer = make()
    nnc.Sequential([layer])
    with pytest.raises(RuntimeError, match="not built"):
        layer.forward(X)
    # built but no workspaces yet (the network allocates them on its first call)
    layer = make()
    nnc.Sequential([layer], input_shape=shape)
    with pytest.raises(ValueError, match=r"call allocate\(2\)"):
        layer.forward(X)
    layer.allocate(2)
    with pytest.raises(RuntimeError, match="needs a preceding forward"):
        layer.backward(np.zeros((2,) + layer.output_shape))
    Y = layer.forward(X, True)
    assert Y.shape == (2,) + layer.output_shape
    layer.backward(np.ones_like(Y), True)


def test_forward_and_backward_check_their_arrays():
    layer = L.Dense(3)
    build_layer(layer, (4,), 5)
    with pytest.raises(TypeError, match="numpy.ndarray, got list"):
        layer.forward([[1.0, 2.0, 3.0, 4.0]])
    with pytest.raises(ValueError, match="dtype float32"):
        layer.forward(np.zeros((2, 4), np.float32))
    with pytest.raises(ValueError, match=r"shape \(n, 4\), got \(2, 5\)"):
        layer.forward(np.zeros((2, 5)))
    with pytest.raises(ValueError, match="C-contiguous"):
        layer.forward(np.zeros((4, 2)).T)
    with pytest.raises(ValueError, match=r"hold 5: call allocate\(6\)"):
        layer.forward(np.zeros((6, 4)))
    with pytest.raises(ValueError, match="no samples"):
        layer.forward(np.zeros((0, 4)))
    layer.forward(np.zeros((2, 4)))
    with pytest.raises(TypeError, match="dY must be a numpy.ndarray"):
        layer.backward([[0.0] * 3] * 2)
    with pytest.raises(ValueError, match="dY has 3 samples, the last forward had 2"):
        layer.backward(np.zeros((3, 3)))
    with pytest.raises(ValueError, match=r"dY must have shape \(n, 3\)"):
        layer.backward(np.zeros((2, 4)))


def test_unbound_parameters_are_reported():
    layer = L.Dense(3)
    layer.build((4,), np.float64)
    layer.allocate(2)
    with pytest.raises(RuntimeError, match="not bound"):
        layer.forward(np.zeros((2, 4)))


# ------------------------------------------------------------------------- params / grads
def test_assigning_params_copies_into_the_buffer():
    net = nnc.Sequential([L.Dense(3), L.Tanh(), L.Dense(2)], input_shape=(4,), random_state=0)
    X = np.random.RandomState(0).standard_normal((5, 4))
    buf, views = net.params, [w for ws in net.get_weights() for w in ws]
    new = np.random.RandomState(1).standard_normal(net.n_params)
    net.params = new
    assert net.params is buf and np.array_equal(buf, new)
    twin = nnc.Sequential([L.Dense(3), L.Tanh(), L.Dense(2)], input_shape=(4,))
    twin.params[...] = new
    np.testing.assert_array_equal(net.predict(X), twin.predict(X))   # predict sees it
    assert not np.array_equal(views[0], net.layers[0].params[0])     # the views follow the buffer
    net.params = list(new * 0)           # any array-like of the right length
    assert not net.params.any()
    net.params = new.astype(np.float32)  # a real dtype that casts
    net.grads = np.ones(net.n_params)
    assert net.grads.all()


@pytest.mark.parametrize("name", ["params", "grads"])
def test_assigning_bad_buffers_is_refused(name):
    net = nnc.Sequential([L.Dense(3)], input_shape=(4,), random_state=0)
    before = net.params.copy()
    with pytest.raises(ValueError, match=r"must have shape \(15,\)"):
        setattr(net, name, np.zeros(14))
    with pytest.raises(ValueError, match="NaN or inf"):
        setattr(net, name, np.full(15, np.nan))
    with pytest.raises(TypeError, match="real numeric dtype"):
        setattr(net, name, np.zeros(15, complex))
    with pytest.raises(TypeError, match="real numeric dtype"):
        setattr(net, name, np.array(["a"] * 15))
    np.testing.assert_array_equal(net.params, before)
    with pytest.raises(ValueError, match="not built"):
        setattr(nnc.Sequential([L.Dense(3)]), name, np.zeros(15))


# ------------------------------------------------------------------------- layer ownership
def test_a_layer_belongs_to_one_network():
    dense = L.Dense(3)
    net = nnc.Sequential([dense, L.ReLU()], input_shape=(4,))
    with pytest.raises(ValueError, match="already belongs to another network.*Create a new "
                                         "layer.*from_config"):
        nnc.Sequential([L.Flatten(), dense])
    bi = L.Bidirectional(L.LSTM(2))
    owner = nnc.Sequential([bi])
    with pytest.raises(ValueError, match="already belongs"):
        nnc.Sequential([bi.forward_layer])          # a child of a container too
    # a network may be rebuilt with its own layers; copies own copies
    net.build((6,))
    clone = pickle.loads(pickle.dumps(net))
    nnc.Sequential([L.Dense.from_config(dense.get_config())], input_shape=(4,))
    with pytest.raises(ValueError, match="already belongs"):
        nnc.Sequential([clone.layers[0]])
    # a network that failed to construct does not keep the layers; a dropped one frees them
    free = L.Dense(2)
    with pytest.raises(ValueError):
        nnc.Sequential([free], loss="softmax_cross_entropy",
                       input_shape=(2, 3))       # cross-entropy needs 1-D outputs
    nnc.Sequential([free], input_shape=(3,))
    del net, clone, owner
    gc.collect()
    nnc.Sequential([dense], input_shape=(4,))


# ------------------------------------------------------------------------- sizes
@pytest.mark.parametrize("layers, shape", [
    ([L.Conv2D(2, 3, padding=2**62)], (1, 4, 4)),                       # 2 * padding wraps
    ([L.Conv2D(2, 3, padding=2**40), L.Flatten(), L.Dense(2)], (1, 4, 4)),
    ([L.Conv2D(1, 1), L.Flatten(), L.Dense(2)], (1, 2**32, 2**32)),      # used to divide by 0
    ([L.Conv1D(2, 2**62, padding=2**61)], (1, 8)),
    ([L.MaxPool2D(2), L.Flatten(), L.Dense(2)], (1, 2**33, 2**33)),
    ([L.Flatten(), L.Dense(2)], (2**32, 2**32)),                         # used to flatten to 0
    ([L.Flatten(), L.Dense(2)], (2**21, 2**21)),
    ([L.LSTM(3)], (2**40, 2**30)),
])
def test_geometries_whose_sizes_wrap_are_refused(layers, shape):
    with pytest.raises(ValueError, match="overflows|more than the 2147483647|too many"):
        nnc.Sequential(layers, input_shape=shape)


def test_flatten_output_size_is_exact():
    layer = L.Flatten()
    with pytest.raises(ValueError, match="18446744073709551616 values"):
        layer.build((2**32, 2**32), np.float64)
    assert layer.build((3, 2**10, 2**10), np.float64) == (3 * 2**20,)
