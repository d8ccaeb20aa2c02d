"""BatchNorm: NumPy reference and PyTorch parity in training and prediction mode (outputs, every
gradient, running statistics), gradient checks, running statistics as state (estimators switch
modes, model files, early stopping, set_weights), errors, and the deep sigmoid MLP it rescues."""
import json
import warnings

import numpy as np
import pytest

import nnc
from nnc import NeuralNetClassifier, Sequential
from nnc.layers import BatchNorm, Conv1D, Dense, Flatten, ReLU, Sigmoid
from tests import _reference_norm as ref
from tests._harness import build_layer, check_layer_gradients
from tests._reference_conv import assert_close

# (sample shape, layer factory): BatchNorm1d on (n, F) and (n, C, L), BatchNorm2d, a 3-D one
CASES = [
    ((5,), lambda: BatchNorm()),
    ((3, 7), lambda: BatchNorm(momentum=0.3, eps=1e-3)),
    ((2, 4, 5), lambda: BatchNorm()),
    ((4, 3, 3), lambda: BatchNorm(affine=False)),
    ((2, 2, 3, 2), lambda: BatchNorm(momentum=1.0)),
]


def _gamma_beta(layer, C, dtype):
    if layer.affine:
        return layer.params[0], layer.params[1]
    return np.ones(C, dtype), np.zeros(C, dtype)


@pytest.mark.parametrize("case", range(len(CASES)))
@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("n", [2, 5])
def test_batchnorm_matches_reference(case, training, n, dtype, rng):
    shape, make = CASES[case]
    layer = make()
    build_layer(layer, shape, n, dtype)
    C = shape[0]
    gamma, beta = _gamma_beta(layer, C, dtype)
    rm0, rv0 = layer.params[-2].copy(), layer.params[-1].copy()
    X = (rng.standard_normal((n,) + shape) * 2 + 0.5).astype(dtype)
    Y = layer.forward(X, training)
    rY, rm, rv, _, _ = ref.batchnorm_forward(X, gamma, beta, rm0, rv0, training,
                                             layer.momentum, layer.eps)
    assert Y.dtype == dtype and Y.shape == X.shape
    assert_close(Y, rY, dtype)
    assert_close(layer.params[-2], rm, dtype)          # updated in place (training only)
    assert_close(layer.params[-1], rv, dtype)
    dY = rng.standard_normal(X.shape).astype(dtype)
    for g in layer.grads:
        g[...] = np.nan                                  # overwritten, never accumulated
    dX = layer.backward(dY.copy(), True)
    rdX, rdg, rdb, rdm, rdv = ref.batchnorm_backward(dY, X, gamma, rm0, rv0, training, layer.eps)
    assert_close(dX, rdX, dtype)
    if layer.affine:
        assert_close(layer.grads[0], rdg, dtype)
        assert_close(layer.grads[1], rdb, dtype)
    assert_close(layer.grads[-2], rdm, dtype)
    assert_close(layer.grads[-1], rdv, dtype)
    assert layer.backward(dY.copy(), False) is None


@pytest.mark.parametrize("case", range(len(CASES)))
@pytest.mark.parametrize("training", [True, False])
def test_batchnorm_gradients(case, training):
    shape, make = CASES[case]
    err_x, err_p = check_layer_gradients(make(), shape, n=3, training=training)
    assert err_x < 1e-6 and err_p < 1e-6


@pytest.mark.parametrize("case", range(len(CASES) - 1))
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_batchnorm_matches_torch(case, dtype, rng):
    """Two training steps, then prediction: outputs, dX, dgamma, dbeta and the running
    statistics, against BatchNorm1d / BatchNorm2d / BatchNorm3d."""
    torch = pytest.importorskip("torch")
    shape, make = CASES[case]
    layer = make()
    build_layer(layer, shape, 6, dtype)
    layer.params[-2][...] = 0     # the harness perturbs every parameter: start as torch does
    layer.params[-1][...] = 1
    tdt = torch.float32 if dtype == np.float32 else torch.float64
    cls = {1: torch.nn.BatchNorm1d, 2: torch.nn.BatchNorm1d, 3: torch.nn.BatchNorm2d,
           4: torch.nn.BatchNorm3d}[len(shape)]
    t = cls(shape[0], eps=layer.eps, momentum=layer.momentum, affine=layer.affine, dtype=tdt)
    if layer.affine:
        with torch.no_grad():
            t.weight.copy_(torch.from_numpy(layer.params[0]))
            t.bias.copy_(torch.from_numpy(layer.params[1]))
    tol = 2e-5 if dtype == np.float32 else 1e-12
    for training in (True, True, False):
        t.train(training)
        X = (rng.standard_normal((6,) + shape) * 3 - 1).astype(dtype)
        dY = rng.standard_normal(X.shape).astype(dtype)
        tX = torch.tensor(X, requires_grad=True)
        if layer.affine:
            t.weight.grad = t.bias.grad = None
        tY = t(tX)
        tY.backward(torch.from_numpy(dY))
        Y = np.array(layer.forward(X, training))
        dX = layer.backward(dY.copy(), True)
        np.testing.assert_allclose(Y, tY.detach().numpy(), rtol=tol, atol=tol)
        np.testing.assert_allclose(dX, tX.grad.numpy(), rtol=tol, atol=tol)
        if layer.affine:
            np.testing.assert_allclose(layer.grads[0], t.weight.grad.numpy(), rtol=tol, atol=tol)
            np.testing.assert_allclose(layer.grads[1], t.bias.grad.numpy(), rtol=tol, atol=tol)
        np.testing.assert_allclose(layer.params[-2], t.running_mean.numpy(), rtol=tol, atol=tol)
        np.testing.assert_allclose(layer.params[-1], t.running_var.numpy(), rtol=tol, atol=tol)


def test_batchnorm_one_value_per_channel_keeps_the_running_variance():
    """(n, F) with a batch of one sample: PyTorch raises; nnc normalises to beta and leaves
    the running variance alone (the batch gives no estimate of it)."""
    layer = BatchNorm()
    build_layer(layer, (3,), 1)
    rv = layer.params[-1].copy()
    rm = layer.params[-2].copy()
    X = np.array([[1.0, -2.0, 5.0]])
    Y = layer.forward(X, True)
    np.testing.assert_allclose(Y[0], layer.params[1])
    np.testing.assert_array_equal(layer.params[-1], rv)
    np.testing.assert_allclose(layer.params[-2], 0.9 * rm + 0.1 * X[0])
    assert np.isfinite(layer.backward(np.ones((1, 3)), True)).all()


def test_batchnorm_float32_statistics_are_accurate():
    """Mean far from zero, small spread: the shifted one-pass sums in double keep the variance."""
    rng = np.random.RandomState(0)
    X = (500.0 + 0.05 * rng.standard_normal((64, 4, 8, 8))).astype(np.float32)
    layer = BatchNorm(momentum=1.0)
    build_layer(layer, (4, 8, 8), 64, np.float32)
    layer.forward(X, True)
    var = X.astype(np.float64).var(axis=(0, 2, 3))
    n = X.size // 4
    np.testing.assert_allclose(layer.params[-1], var * n / (n - 1), rtol=1e-5)
    np.testing.assert_allclose(layer.params[-2], X.astype(np.float64).mean(axis=(0, 2, 3)),
                               rtol=1e-7)


def test_batchnorm_threads_agree(rng):
    """Channels (or column blocks) are split between threads; each is computed alone."""
    from nnc._kernels import _norm
    for shape in [(64, 32, 40), (2048, 64, 1)]:
        X = rng.standard_normal(shape)
        dY = rng.standard_normal(shape)
        C = shape[1]
        outs = []
        for n_threads in (1, 2):
            run = [np.zeros(C), np.ones(C)]
            Y, stats = np.empty(shape), np.empty((2, C))
            dX, grads = np.empty(shape), np.empty((4, C))
            _norm.batchnorm_forward(X, Y, np.ones(C), np.zeros(C), run[0], run[1], stats[0],
                                    stats[1], np.empty((2, C)), True, 0.1, 1e-5, n_threads)
            _norm.batchnorm_backward(dY, X, stats[0], stats[1], np.ones(C), dX, *grads,
                                     np.empty((3, C)), np.empty((2, C)), True, True, n_threads)
            outs.append((Y, dX, grads, run[0], run[1]))
        for a, b in zip(*outs):
            np.testing.assert_array_equal(a, b)


# ------------------------------------------------------------------------------------ as a layer

def test_batchnorm_parameters_state_and_no_decay():
    net = Sequential([Conv1D(3, 2), BatchNorm(), ReLU(), Flatten(), Dense(2)], input_shape=(2, 5),
                     random_state=0)
    bn = net.layers[1]
    assert [s.name for s in bn.param_specs()] == ["gamma", "beta", "running_mean", "running_var"]
    assert not any(s.decay for s in bn.param_specs())
    gamma, beta, mean, var = bn.get_weights()
    assert (gamma == 1).all() and (beta == 0).all() and (mean == 0).all() and (var == 1).all()
    plain = BatchNorm(affine=False)
    plain.build((3, 4), np.float64)
    assert [s.name for s in plain.param_specs()] == ["running_mean", "running_var"]
    with pytest.raises(ValueError, match="running_var must be >= 0"):
        bn.set_weights([gamma, beta, mean, -var])
    np.testing.assert_array_equal(bn.get_weights()[3], var)      # nothing copied


def test_training_updates_running_statistics_and_prediction_uses_them(rng):
    """fit trains in training mode (batch statistics, running averages updated), predict runs in
    prediction mode (the running averages): automatic, as for Dropout."""
    X = rng.standard_normal((64, 3)) * 4 + 2
    y = (X[:, 0] > 2).astype(int)
    clf = NeuralNetClassifier(layers=[BatchNorm(momentum=0.5)], batch_size=16, max_epochs=3,
                              random_state=0, dtype="float64").fit(X, y)
    bn = clf.network_.layers[0]
    gamma, beta, mean, var = bn.get_weights()
    np.testing.assert_allclose(mean, X.mean(axis=0), atol=1.5)   # moved from 0 towards the data
    assert (var > 4).all()
    W, b = clf.network_.layers[1].get_weights()
    expected = ((X - mean) / np.sqrt(var + 1e-5) * gamma + beta) @ W + b
    np.testing.assert_allclose(clf.network_.forward(X), expected, rtol=1e-12, atol=1e-12)
    before = bn.get_weights()
    clf.predict(X)
    for a, b_ in zip(before, bn.get_weights()):
        np.testing.assert_array_equal(a, b_)          # predictions leave the statistics alone


def test_running_statistics_in_model_files_and_checked_at_load(tmp_path, rng):
    X = rng.standard_normal((40, 2, 6))
    y = (X[:, 0].sum(axis=1) > 0).astype(int)
    clf = NeuralNetClassifier(layers=[Conv1D(3, 3), BatchNorm(), ReLU(), Flatten()],
                              max_epochs=2, random_state=0).fit(X, y)
    path = tmp_path / "bn.npz"
    clf.save(path)
    loaded = nnc.load(path)
    np.testing.assert_array_equal(loaded.network_.params, clf.network_.params)
    np.testing.assert_array_equal(loaded.predict_proba(X), clf.predict_proba(X))
    # a running variance made negative in the file: refused at load, naming the layer
    with np.load(path) as data:
        arrays = {k: data[k] for k in data.files}
    doc = json.loads(bytes(arrays["__nnc_model__"]).decode())
    key = doc["object"]["state"]["network_"]["params"]["key"]
    var = clf.network_.layers[1].params[-1]
    offset = var.__array_interface__["data"][0] - clf.network_.params.__array_interface__["data"][0]
    arrays[key][offset // var.itemsize] = -1.0
    np.savez(tmp_path / "bad.npz", **arrays)
    with pytest.raises(ValueError, match=r"layers\[1\]: invalid weights: .*running_var"):
        nnc.load(tmp_path / "bad.npz")


def test_early_stopping_restores_statistics_with_the_best_weights(rng):
    X = rng.standard_normal((120, 4)) * 3
    y = (X[:, 0] + X[:, 1] > 0).astype(int)
    clf = NeuralNetClassifier(layers=[Dense(8), BatchNorm(), ReLU()], max_epochs=12,
                              early_stopping=True, n_iter_no_change=2, learning_rate=0.05,
                              batch_size=16, random_state=0).fit(X, y)
    np.testing.assert_array_equal(clf.network_.params, clf._best_params)   # stats included


def test_batchnorm_config_and_constructor_errors():
    for layer in (BatchNorm(), BatchNorm(momentum=0.0, eps=1e-3, affine=False)):
        config = json.loads(json.dumps(layer.get_config()))
        assert BatchNorm(**config).get_config() == layer.get_config()
    for kwargs, err in [({"momentum": 1.5}, ValueError), ({"momentum": -0.1}, ValueError),
                        ({"momentum": float("nan")}, ValueError), ({"momentum": "0.1"}, TypeError),
                        ({"eps": 0.0}, ValueError), ({"eps": -1.0}, ValueError),
                        ({"affine": "yes"}, TypeError)]:
        with pytest.raises(err):
            BatchNorm(**kwargs)


# ------------------------------------------------------------------------------------ learning

def _deep_sigmoid(use_bn):
    body = []
    for _ in range(8):
        body += [Dense(32)] + ([BatchNorm()] if use_bn else []) + [Sigmoid()]
    return body


def test_batchnorm_makes_a_deep_sigmoid_mlp_trainable():
    """Eight sigmoid layers: plain SGD barely moves the loss (vanishing gradients); with
    BatchNorm after every Dense the same training learns the task."""
    rng = np.random.RandomState(0)
    X = rng.standard_normal((600, 10))
    y = (X[:, :3].sum(axis=1) > 0).astype(int)
    scores = {}
    for use_bn in (False, True):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            clf = NeuralNetClassifier(layers=_deep_sigmoid(use_bn), optimizer="sgd",
                                      learning_rate=0.01, batch_size=32, max_epochs=10,
                                      random_state=0).fit(X[:400], y[:400])
        scores[use_bn] = (clf.loss_curve_[0], clf.loss_curve_[-1], clf.score(X[400:], y[400:]))
    first, last, acc = scores[False]
    assert last > first - 0.01 and acc < 0.7, scores          # stalled
    first, last, acc = scores[True]
    assert last < 0.65 * first and acc > 0.9, scores         # learned
