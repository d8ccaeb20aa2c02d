"""Safe model files (nnc.save / nnc.load): round trips, tampered files, pickle and joblib."""
import io
import json
import os
import pickle
import warnings

import numpy as np
import pytest

import nnc
import nnc.layers as L
from nnc import _io
from nnc.optimizers import SGD, Adam

_est = pytest.importorskip("nnc._estimators")
MLPClassifier, MLPRegressor = _est.MLPClassifier, _est.MLPRegressor
NeuralNetClassifier, NeuralNetRegressor = _est.NeuralNetClassifier, _est.NeuralNetRegressor


def _needs(*names):
    missing = [n for n in names if not hasattr(L, n)]
    return pytest.mark.skipif(bool(missing), reason=f"nnc.layers lacks {missing}")


@pytest.fixture(autouse=True)
def _quiet():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ConvergenceWarning of the short fits
        yield


def _data(n=60, f=4, seed=0):
    rng = np.random.RandomState(seed)
    X = rng.randn(n, f)
    y = (X[:, 0] + X[:, 1] > 0).astype(int) + (X[:, 2] > 1)
    return X, y


def _roundtrip(obj, tmp_path, name="model.npz"):
    path = tmp_path / name
    if hasattr(obj, "save"):
        obj.save(path)
    else:
        nnc.save(obj, path)
    return nnc.load(path)


def _assert_same_predictions(a, b, X):
    for method in ("predict", "predict_proba", "forward"):
        if hasattr(a, method):
            pa, pb = getattr(a, method)(X), getattr(b, method)(X)
            assert pa.dtype == pb.dtype, method
            np.testing.assert_array_equal(pa, pb, err_msg=method)


# --------------------------------------------------------------------------- Sequential
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_sequential_roundtrip(tmp_path, dtype):
    net = nnc.Sequential([L.Dense(8), L.Tanh(), L.Dense(5), L.LeakyReLU(0.1), L.Dense(3)],
                         loss="softmax_cross_entropy", input_shape=(4,), dtype=dtype,
                         random_state=np.random.RandomState(3))
    X, y = _data()
    net.loss_and_gradients(X, y)
    Adam(learning_rate=0.01).step(net.params, net.grads, n_decay=net.n_decay)
    net2 = _roundtrip(net, tmp_path)
    assert isinstance(net2, nnc.Sequential) and net2.dtype == np.dtype(dtype)
    assert [type(a) for a in net.layers] == [type(b) for b in net2.layers]
    assert [a.get_config() for a in net.layers] == [b.get_config() for b in net2.layers]
    assert net2.input_shape == net.input_shape and net2.output_shape == net.output_shape
    np.testing.assert_array_equal(net.params, net2.params)
    assert net2.params.dtype == np.dtype(dtype)
    _assert_same_predictions(net, net2, X)
    # the parameter buffer is live: layer views alias it
    assert np.shares_memory(net2.layers[0].params[0], net2.params)
    # the RandomState's position is restored too
    assert net.random_state.randint(10 ** 6) == net2.random_state.randint(10 ** 6)
    # gradients equal after load
    l1, g1 = net.loss_and_gradients(X, y)
    l2, g2 = net2.loss_and_gradients(X, y)
    assert l1 == l2
    np.testing.assert_array_equal(net.grads, net2.grads)


def test_sequential_unbuilt_and_file_objects(tmp_path):
    net = nnc.Sequential([L.Dense(3), L.ReLU(), L.Dense(1)], loss="mse", random_state=7)
    buf = io.BytesIO()
    nnc.save(net, buf)
    buf.seek(0)
    net2 = nnc.load(buf)
    assert not net2.built and net2.random_state == 7 and net2.loss == "mse"
    # no suffix is appended to the given path
    path = tmp_path / "model.nnc"
    net.save(str(path))
    assert os.listdir(tmp_path) == ["model.nnc"]
    assert not nnc.load(path).built


def test_file_layout_is_plain(tmp_path):
    """The file is an npz of plain arrays plus a JSON document, readable without nnc."""
    clf = MLPClassifier(hidden_layer_sizes=(5,), max_iter=5, random_state=0)
    X, y = _data()
    clf.fit(X, np.array(["apple", "orange", "pear"])[y])
    path = tmp_path / "m.npz"
    nnc.save(clf, path)
    with np.load(path, allow_pickle=False) as npz:
        arrays = {k: npz[k] for k in npz.files}
    doc = json.loads(arrays.pop(_io._DOC_KEY).tobytes().decode())
    assert doc["format"] == "nnc-model" and doc["format_version"] == _io.FORMAT_VERSION
    assert doc["nnc_version"] == nnc.__version__
    top = doc["object"]
    assert top["class"] == "MLPClassifier"
    assert top["params"]["hidden_layer_sizes"] == {"__nnc__": "tuple", "items": [5]}
    assert top["state"]["n_features_in_"] == 4
    net = top["state"]["network_"]
    assert [layer["class"] for layer in net["layers"]] == ["Dense", "ReLU", "Dense"]
    assert net["input_shape"] == [4] and net["dtype"] == "float64"
    assert all(a.dtype.kind in "biufU" for a in arrays.values())
    assert any(a.dtype.kind == "U" and set(a.tolist()) == {"apple", "orange", "pear"}
               for a in arrays.values())
    assert arrays[net["params"]["key"]].size == clf.network_.n_params


# --------------------------------------------------------------------------- MLP estimators
@pytest.mark.parametrize("labels", ["int", "str", "object", "bool"])
@pytest.mark.parametrize("solver", ["adam", "sgd", "lbfgs"])
def test_mlp_classifier_roundtrip(tmp_path, labels, solver):
    X, y = _data()
    if labels == "str":
        y = np.array(["a", "bb", "ccc"])[y]
    elif labels == "object":
        y = np.array(["a", "bb", "ccc"], dtype=object)[y]
    elif labels == "bool":
        y = y > 0
    clf = MLPClassifier(hidden_layer_sizes=(6, 5), solver=solver, max_iter=20, random_state=0)
    clf.fit(X, y)
    clf2 = _roundtrip(clf, tmp_path)
    assert clf2.get_params() == clf.get_params()
    assert clf2.classes_.dtype == clf.classes_.dtype
    np.testing.assert_array_equal(clf2.classes_, clf.classes_)
    for attr in ("n_features_in_", "n_outputs_", "out_activation_", "n_layers_", "n_iter_",
                 "t_", "loss_"):
        assert getattr(clf2, attr) == getattr(clf, attr), attr
    if solver != "lbfgs":
        assert clf2.loss_curve_ == clf.loss_curve_
    _assert_same_predictions(clf, clf2, X)
    # coefs_ are views of the restored buffer again
    assert all(np.shares_memory(c, clf2.network_.params) for c in clf2.coefs_)
    assert all(a is b for a, b in zip(clf2.layers_, clf2.network_.layers))
    if solver != "lbfgs":  # training continues exactly as it would have (optimizer state kept)
        clf.partial_fit(X, y)
        clf2.partial_fit(X, y)
        np.testing.assert_array_equal(clf.network_.params, clf2.network_.params)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_mlp_regressor_roundtrip(tmp_path, dtype):
    X, _ = _data()
    Y = np.column_stack([X[:, 0] * 2, X[:, 1] - X[:, 2]])
    reg = MLPRegressor(hidden_layer_sizes=(7,), max_iter=30, random_state=0, dtype=dtype,
                       early_stopping=True, n_iter_no_change=3)
    reg.fit(X, Y)
    reg2 = _roundtrip(reg, tmp_path)
    _assert_same_predictions(reg, reg2, X)
    assert reg2.network_.dtype == np.dtype(dtype)
    assert reg2.validation_scores_ == reg.validation_scores_
    reg.set_params(warm_start=True, max_iter=3)
    reg2.set_params(warm_start=True, max_iter=3)
    reg.fit(X, Y)
    reg2.fit(X, Y)
    np.testing.assert_array_equal(reg.network_.params, reg2.network_.params)


def test_unfitted_estimator_roundtrip(tmp_path):
    clf = NeuralNetClassifier(layers=[L.Dense(4), L.ReLU()], optimizer=SGD(0.05, momentum=0.5),
                              random_state=np.random.RandomState(1), max_epochs=3)
    clf2 = _roundtrip(clf, tmp_path)
    assert not hasattr(clf2, "network_")
    assert isinstance(clf2.optimizer, SGD) and clf2.optimizer.get_config() == \
        clf.optimizer.get_config()
    assert [layer.get_config() for layer in clf2.layers] == \
        [layer.get_config() for layer in clf.layers]
    X, y = _data()
    np.testing.assert_array_equal(clf.fit(X, y).predict_proba(X), clf2.fit(X, y).predict_proba(X))


# --------------------------------------------------------------------------- NeuralNet estimators
def test_neural_net_dense_roundtrip(tmp_path):
    X, y = _data(80)
    clf = NeuralNetClassifier(layers=[L.Dense(8), L.Tanh(), L.Dense(8), L.ReLU()],
                              optimizer=Adam(learning_rate=0.01), max_epochs=4, batch_size=16,
                              random_state=0, dtype="float64", clip_grad_norm=5.0)
    clf.fit(X, y)
    clf2 = _roundtrip(clf, tmp_path)
    _assert_same_predictions(clf, clf2, X)
    assert clf2.network_.clip_grad_norm == 5.0
    clf.partial_fit(X, y)
    clf2.partial_fit(X, y)
    np.testing.assert_array_equal(clf.network_.params, clf2.network_.params)


@_needs("Conv2D", "MaxPool2D", "Flatten")
def test_neural_net_cnn_roundtrip(tmp_path):
    rng = np.random.RandomState(0)
    X = rng.rand(40, 1, 8, 8).astype(np.float32)
    y = (X[:, 0, :4].mean(axis=(1, 2)) > X[:, 0, 4:].mean(axis=(1, 2))).astype(int)
    layers = [L.Conv2D(4, 3, padding=1), L.ReLU(), L.MaxPool2D(2), L.Flatten(), L.Dense(8),
              L.ReLU()]
    if hasattr(L, "Dropout"):
        layers.insert(4, L.Dropout(0.2))
    clf = NeuralNetClassifier(layers=layers, input_shape=(1, 8, 8), max_epochs=2,
                              batch_size=16, random_state=0)
    clf.fit(X, y)
    clf2 = _roundtrip(clf, tmp_path)
    _assert_same_predictions(clf, clf2, X)
    _assert_same_predictions(clf, clf2, X.reshape(40, -1))
    assert [type(layer).__name__ for layer in clf2.network_.layers] == \
        [type(layer).__name__ for layer in clf.network_.layers]


@_needs("LSTM", "GRU", "Bidirectional")
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_neural_net_recurrent_roundtrip(tmp_path, dtype):
    rng = np.random.RandomState(0)
    X = rng.randn(30, 5, 3)
    Y = X.sum(axis=(1, 2))
    reg = NeuralNetRegressor(layers=[L.LSTM(6, return_sequences=True),
                                     L.Bidirectional(L.GRU(4), merge="concat")],
                             max_epochs=2, batch_size=8, random_state=0, dtype=dtype)
    reg.fit(X, Y)
    reg2 = _roundtrip(reg, tmp_path)
    _assert_same_predictions(reg, reg2, X)
    assert reg2.network_.layers[1].merge == "concat"
    clf = NeuralNetClassifier(layers=[L.SimpleRNN(5)] if hasattr(L, "SimpleRNN") else
                              [L.LSTM(5)], max_epochs=2, random_state=0, dtype=dtype)
    clf.fit(X, Y > 0)
    _assert_same_predictions(clf, _roundtrip(clf, tmp_path, "c.npz"), X)


# --------------------------------------------------------------------------- pickle and joblib
def _fitted_estimators():
    X, y = _data()
    yield MLPClassifier(hidden_layer_sizes=(5,), max_iter=10, random_state=0).fit(X, y), X
    yield MLPRegressor(hidden_layer_sizes=(5,), max_iter=10, random_state=0).fit(
        X, X[:, 0]), X
    yield NeuralNetClassifier(layers=[L.Dense(5), L.ReLU()], max_epochs=2,
                              random_state=0).fit(X, y), X
    yield NeuralNetRegressor(layers=[L.Dense(5), L.ReLU()], max_epochs=2,
                             random_state=0).fit(X, X[:, :2]), X


@pytest.mark.parametrize("how", ["pickle", "joblib", "nnc"])
def test_pickle_joblib_and_nnc_agree(tmp_path, how):
    for est, X in _fitted_estimators():
        if how == "pickle":
            est2 = pickle.loads(pickle.dumps(est))
        elif how == "joblib":
            joblib = pytest.importorskip("joblib")
            joblib.dump(est, tmp_path / "m.joblib")
            est2 = joblib.load(tmp_path / "m.joblib")
        else:
            est2 = _roundtrip(est, tmp_path)
        _assert_same_predictions(est, est2, X)
        # a loaded model pickles and saves again
        est3 = pickle.loads(pickle.dumps(_roundtrip(est2, tmp_path, "again.npz")))
        _assert_same_predictions(est, est3, X)


# --------------------------------------------------------------------------- what save refuses
def test_save_refuses_foreign_objects(tmp_path):
    sklearn_nn = pytest.importorskip("sklearn.neural_network")
    with pytest.raises(ValueError, match="only nnc's own classes"):
        nnc.save(sklearn_nn.MLPClassifier(), tmp_path / "x.npz")
    with pytest.raises(ValueError, match="nnc estimator or Sequential"):
        nnc.save({"a": 1}, tmp_path / "x.npz")

    class MyMLP(MLPClassifier):
        pass

    with pytest.raises(ValueError, match="only nnc's own classes"):
        nnc.save(MyMLP(), tmp_path / "x.npz")

    class MyDense(L.Dense):
        pass

    with pytest.raises(ValueError, match="only nnc's own classes"):
        nnc.save(nnc.Sequential([MyDense(2)], input_shape=(3,)), tmp_path / "x.npz")
    clf = MLPClassifier()
    clf.callback_ = print
    with pytest.raises(ValueError, match="callback_"):
        nnc.save(clf, tmp_path / "x.npz")
    clf = MLPClassifier()
    clf.mixed_ = np.array([1, "a", None], dtype=object)
    with pytest.raises(ValueError, match="mixed_"):
        nnc.save(clf, tmp_path / "x.npz")
    assert not os.path.exists(tmp_path / "x.npz")
    assert not [p for p in os.listdir(tmp_path) if p.endswith(".tmp")]


# --------------------------------------------------------------------------- tampered files
@pytest.fixture
def model_file(tmp_path):
    X, y = _data()
    clf = MLPClassifier(hidden_layer_sizes=(5,), max_iter=5, random_state=0).fit(X, y)
    path = tmp_path / "good.npz"
    nnc.save(clf, path)
    return path


def _read(path):
    with np.load(path, allow_pickle=False) as npz:
        arrays = {k: npz[k] for k in npz.files}
    return arrays, json.loads(arrays[_io._DOC_KEY].tobytes().decode())


def _write(path, arrays, doc=None, raw=None):
    arrays = dict(arrays)
    text = raw if raw is not None else json.dumps(doc)
    arrays[_io._DOC_KEY] = np.frombuffer(text.encode(), dtype=np.uint8)
    with open(path, "wb") as fh:
        np.savez(fh, **arrays)
    return path


def _tamper(model_file, edit):
    arrays, doc = _read(model_file)
    edit(doc, arrays)
    return _write(model_file.parent / "bad.npz", arrays, doc)


def _net(doc):
    return doc["object"]["state"]["network_"]


_EDITS = {
    "unknown estimator": (lambda d, a: d["object"].update({"class": "os.system"}),
                          "unknown estimator class"),
    "Sequential as estimator": (lambda d, a: d["object"].update({"class": "Sequential"}),
                                "unknown estimator class"),
    "unknown layer": (lambda d, a: _net(d)["layers"][0].update({"class": "subprocess.Popen"}),
                      "unknown layer class"),
    "base Layer": (lambda d, a: _net(d)["layers"][0].update({"class": "Layer"}),
                   "unknown layer class"),
    "unknown optimizer": (lambda d, a: d["object"]["state"]["_optimizer"].update(
        {"class": "Optimizer"}), "unknown optimizer class"),
    "bad layer config": (lambda d, a: _net(d)["layers"][0]["config"].update({"units": -3}),
                         "invalid config for Dense"),
    "layer config dunder": (lambda d, a: _net(d)["layers"][0]["config"].update(
        {"__init__": 1}), "invalid config for Dense"),
    "layer config kwargs": (lambda d, a: _net(d)["layers"][0]["config"].update(
        {"a b": 1}), "keyword arguments"),
    "unknown tag": (lambda d, a: d["object"]["params"].update(
        {"alpha": {"__nnc__": "eval", "code": "1"}}), "unknown tag"),
    "missing params": (lambda d, a: _net(d).pop("params"), "lacks the key 'params'"),
    "missing layers": (lambda d, a: _net(d).pop("layers"), "lacks the key 'layers'"),
    "missing state": (lambda d, a: d["object"].pop("state"), "lacks the key 'state'"),
    "missing object": (lambda d, a: d.pop("object"), "'object' entry is missing"),
    "wrong format": (lambda d, a: d.update({"format": "pickle"}), "format name"),
    "newer format": (lambda d, a: d.update({"format_version": 99}), "newer nnc"),
    "bad version": (lambda d, a: d.update({"format_version": "1"}), "format_version"),
    "wrong size": (lambda d, a: a.update({_net(d)["params"]["key"]:
                                          a[_net(d)["params"]["key"]][:-1]}),
                   "rebuilt network needs"),
    "wrong dtype": (lambda d, a: a.update({_net(d)["params"]["key"]:
                                           a[_net(d)["params"]["key"]].astype(np.float32)}),
                    "rebuilt network needs"),
    "str params": (lambda d, a: a.update({_net(d)["params"]["key"]:
                                          np.array(["x"] * a[_net(d)["params"]["key"]].size)}),
                   "rebuilt network needs"),
    "wrong input shape": (lambda d, a: _net(d).update({"input_shape": [5]}),
                          "rebuilt network needs"),
    "bad dtype": (lambda d, a: _net(d).update({"dtype": "object"}), "dtype must be"),
    "missing array": (lambda d, a: a.pop(_net(d)["params"]["key"]), "missing array"),
    "extra array": (lambda d, a: a.update({"zz": np.zeros(3)}), "unexpected arrays"),
    "dangling ref": (lambda d, a: d["object"]["state"].update(
        {"layers_": [{"__nnc__": "ref", "id": 999}]}), "not defined before it"),
    "dunder attribute": (lambda d, a: d["object"]["state"].update({"__class__": "x"}),
                         "may not be set"),
    "private network attribute": (lambda d, a: _net(d)["extra"].update({"_loss": "mse"}),
                                  "may not be set"),
    "negative shape": (lambda d, a: _net(d).update({"input_shape": [-4]}),
                       "positive ints"),
    "bad random state": (lambda d, a: _net(d)["random_state"].update({"pos": 10 ** 6}),
                         "MT19937"),
    "bad loss": (lambda d, a: _net(d).update({"loss": "eval"}), "cannot be rebuilt"),
    "top-level list": (lambda d, a: d.update({"object": [1, 2]}), "top-level object"),
}


@pytest.mark.parametrize("case", sorted(_EDITS))
def test_tampered_file_raises_value_error(model_file, case):
    edit, message = _EDITS[case]
    bad = _tamper(model_file, edit)
    with pytest.raises(ValueError, match=message):
        nnc.load(bad)


def test_not_a_model_file(tmp_path, model_file):
    arrays, doc = _read(model_file)
    cases = {
        "empty": b"",
        "text": b"hello world",
        "truncated zip": model_file.read_bytes()[:200],
    }
    for name, content in cases.items():
        (tmp_path / name).write_bytes(content)
        with pytest.raises(ValueError, match="not a valid nnc model file"):
            nnc.load(tmp_path / name)
    # a bare .npy
    np.save(tmp_path / "a.npy", np.zeros(3))
    with pytest.raises(ValueError, match="npz archive"):
        nnc.load(tmp_path / "a.npy")
    # bad JSON, a non-uint8 document, no document
    with pytest.raises(ValueError, match="not valid JSON"):
        nnc.load(_write(tmp_path / "j.npz", arrays, raw="{not json"))
    del arrays[_io._DOC_KEY]
    np.savez(tmp_path / "nodoc.npz", **arrays)
    with pytest.raises(ValueError, match="missing"):
        nnc.load(tmp_path / "nodoc.npz")
    np.savez(tmp_path / "f.npz", __nnc_model__=np.zeros(4))
    with pytest.raises(ValueError, match="uint8"):
        nnc.load(tmp_path / "f.npz")
    with pytest.raises(FileNotFoundError):
        nnc.load(tmp_path / "does-not-exist.npz")


class _Boom:
    """Unpickling this would create a marker file: loading must never get that far."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_pickled_payloads_never_run(tmp_path, model_file):
    marker = str(tmp_path / "pwned")
    # a pickle file
    with open(tmp_path / "p.pkl", "wb") as fh:
        pickle.dump(_Boom(marker), fh)
    with pytest.raises(ValueError, match="pickle"):
        nnc.load(tmp_path / "p.pkl")
    # an object array inside an otherwise valid model file
    arrays, doc = _read(model_file)
    arrays["a0"] = np.array([_Boom(marker)], dtype=object)
    arrays[_io._DOC_KEY] = np.frombuffer(json.dumps(doc).encode(), dtype=np.uint8)
    np.savez(tmp_path / "obj.npz", **arrays)  # allow_pickle=True by default when saving
    with pytest.raises(ValueError, match="without pickle"):
        nnc.load(tmp_path / "obj.npz")
    # a pickled document
    arrays, doc = _read(model_file)
    arrays[_io._DOC_KEY] = np.array([_Boom(marker)], dtype=object)
    np.savez(tmp_path / "doc.npz", **arrays)
    with pytest.raises(ValueError):
        nnc.load(tmp_path / "doc.npz")
    assert not os.path.exists(marker)


def test_random_corruptions_only_raise_value_error(model_file):
    """Mutating the JSON at random either still loads or raises ValueError, nothing else."""
    arrays, doc = _read(model_file)
    text = json.dumps(doc)
    rng = np.random.RandomState(0)
    alphabet = list('{}[]":,0123456789-.eE ntfalsu_abcdxyz')
    outcomes = {"loaded": 0, "ValueError": 0}
    for _ in range(150):
        chars = list(text)
        for _ in range(rng.randint(1, 4)):
            chars[rng.randint(len(chars))] = alphabet[rng.randint(len(alphabet))]
        bad = _write(model_file.parent / "fuzz.npz", arrays, raw="".join(chars))
        try:
            nnc.load(bad)
            outcomes["loaded"] += 1
        except ValueError:
            outcomes["ValueError"] += 1
    assert outcomes["ValueError"] > 0


# --------------------------------------------------------------------------- save methods
def test_save_methods(tmp_path):
    X, y = _data()
    clf = MLPClassifier(hidden_layer_sizes=(4,), max_iter=3, random_state=0).fit(X, y)
    # the mixin the estimators' base class carries
    assert _io.SaveMixin.save(clf, tmp_path / "m.npz") is clf
    _assert_same_predictions(clf, nnc.load(tmp_path / "m.npz"), X)
    net = nnc.Sequential([L.Dense(2)], input_shape=(4,))
    assert net.save(tmp_path / "n.npz") is net
    _assert_same_predictions(net, nnc.load(tmp_path / "n.npz"), X)
    missing = [cls.__name__ for cls in (MLPClassifier, MLPRegressor, NeuralNetClassifier,
                                        NeuralNetRegressor) if not hasattr(cls, "save")]
    if missing:
        pytest.skip(f"{missing} lack .save(): add nnc._io.SaveMixin to their base class")
    for cls in (MLPClassifier, MLPRegressor, NeuralNetClassifier, NeuralNetRegressor):
        assert issubclass(cls, _io.SaveMixin)


def test_feature_names_roundtrip(tmp_path):
    class Frame:  # the two things scikit-learn reads from a DataFrame
        def __init__(self, values, columns):
            self.values, self.columns = values, columns

        def __array__(self, dtype=None, copy=None):
            return self.values if dtype is None else self.values.astype(dtype)

        def __len__(self):
            return len(self.values)

    X, y = _data()
    df = Frame(X, ["radius", "colour", "weight", "shine"])
    clf = MLPClassifier(hidden_layer_sizes=(4,), max_iter=3, random_state=0).fit(df, y)
    clf2 = _roundtrip(clf, tmp_path)
    assert clf2.feature_names_in_.dtype == object
    np.testing.assert_array_equal(clf2.feature_names_in_, clf.feature_names_in_)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "X has feature names" warning
        np.testing.assert_array_equal(clf2.predict_proba(df), clf.predict_proba(df))


# --------------------------------------------------------------------------- continuing after load
def _continue_identically(est, X, y, steps=("partial", "partial", "warm")):
    """Save, load, then train the original and the loaded copy side by side: partial_fit calls
    and a warm-start fit; every step must give bit-identical weights, outputs and counters."""
    buf = io.BytesIO()
    nnc.save(est, buf)
    buf.seek(0)
    copy = nnc.load(buf)
    kwargs = {"classes": np.unique(y)} if hasattr(est, "classes_") and y.ndim == 1 else {}
    for step in steps:
        for model in (est, copy):
            if step == "partial":
                model.partial_fit(X, y, **kwargs)
            else:
                model.set_params(warm_start=True)
                model.fit(X, y)
        np.testing.assert_array_equal(est.network_.params, copy.network_.params, err_msg=step)
        assert (est.n_iter_, est.t_, est.loss_) == (copy.n_iter_, copy.t_, copy.loss_), step
        assert est.loss_curve_ == copy.loss_curve_, step
        if hasattr(est, "_optimizer"):
            assert est._optimizer.t == copy._optimizer.t, step
        _assert_same_predictions(est, copy, X)
    return copy


def _sequences(n=24, T=4, F=3, seed=0):
    rng = np.random.RandomState(seed)
    X = rng.randn(n, T, F)
    return X, (X.sum(axis=(1, 2)) > 0).astype(int)


def _images(n=24, seed=0):
    rng = np.random.RandomState(seed)
    X = rng.rand(n, 1, 6, 6)
    return X, (X[:, 0, :3].mean(axis=(1, 2)) > X[:, 0, 3:].mean(axis=(1, 2))).astype(int)


def _tokens(n=24, T=5, seed=0):
    rng = np.random.RandomState(seed)
    X = rng.randint(0, 7, (n, T))
    return X, (X == 3).any(axis=1).astype(int)


# every layer class of nnc.layers appears in one of these bodies (checked below)
_BODIES = {
    "dense": (lambda: [L.Dense(6), L.Identity(), L.Dense(6), L.ReLU(), L.Dropout(0.3),
                       L.Dense(5), L.LeakyReLU(0.1), L.Sigmoid(), L.Dense(4), L.Tanh()],
              lambda: _data(24)),
    "conv2d": (lambda: [L.Conv2D(3, 3, padding=1), L.ReLU(), L.MaxPool2D(2),
                        L.Conv2D(2, 2), L.AvgPool2D(2), L.Flatten(), L.Dropout(0.2)],
               _images),
    "pools": (lambda: [L.MaxPool2D(3, stride=1, padding=1),
                       L.AvgPool2D(2, padding=1, count_include_pad=False), L.GlobalMaxPool(),
                       L.Dense(3)],
              _images),
    "conv1d_pools": (lambda: [L.Conv1D(3, 2, padding=1), L.MaxPool1D(2, padding=1),
                              L.AvgPool1D(3, 1, 1), L.GlobalAvgPool("channels_first")],
                     _sequences),
    "conv1d": (lambda: [L.Conv1D(3, 2), L.BatchNorm(momentum=0.3), L.Tanh(), L.Flatten(),
                        L.Dropout(0.25, random_state=5), L.Dense(4)],
               _sequences),
    "recurrent": (lambda: [L.LSTM(4, return_sequences=True), L.Dropout(0.3),
                           L.Bidirectional(L.GRU(3, return_sequences=True), merge="sum"),
                           L.SimpleRNN(3)],
                  _sequences),
    "tokens": (lambda: [L.Embedding(7, 3, padding_idx=0), L.LayerNorm(), L.Flatten(),
                        L.Dense(4)],
               _tokens),
    "attention": (lambda: [L.Embedding(7, 8, padding_idx=0), L.PositionalEmbedding(6, 8),
                           L.TransformerEncoderBlock(8, 2, 12, dropout=0.2),
                           L.Residual([L.MultiHeadSelfAttention(4, 8, dropout=0.1, causal=True),
                                       L.Dropout(0.1)]),
                           L.PositionalEmbedding(5, 8, kind="sinusoidal"), L.Flatten(),
                           L.Dense(4)],
                  _tokens),
    "tokens_pooled": (lambda: [L.Embedding(7, 3), L.GlobalAvgPool("channels_last"), L.Dense(4)],
                      _tokens),
    "tokens_masked_pool": (lambda: [L.Embedding(7, 3, padding_idx=0), L.LayerNorm(),
                                    L.GlobalMaxPool("channels_last"), L.Dense(4)],
                           _tokens),
}


def test_continuation_bodies_cover_every_layer():
    from nnc._network import _layer_tree       # containers' children too (Bidirectional, ...)
    used = {type(inner).__name__ for make, _ in _BODIES.values() for layer in make()
            for inner in _layer_tree(layer)}
    assert used | {"Layer", "ParamSpec"} == set(L.__all__)


@pytest.mark.parametrize("body", sorted(_BODIES))
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_loaded_model_continues_identically_every_layer(body, dtype):
    """Save -> load -> keep training == never saved, for every layer type (Dropout's generator,
    the optimizer's moments and step count, the shuffles all carry over)."""
    make, data = _BODIES[body]
    X, y = data()
    clf = NeuralNetClassifier(layers=make(), max_epochs=2, batch_size=8, random_state=0,
                              dtype=dtype)
    clf.fit(X, y)
    _continue_identically(clf, X, y)
    reg = NeuralNetRegressor(layers=make(), max_epochs=1, batch_size=8,
                             random_state=np.random.RandomState(1), dtype=dtype)
    reg.fit(X, y.astype(float))
    _continue_identically(reg, X, y.astype(float), steps=("warm", "partial"))


_OPTIMIZERS = {
    "sgd": lambda: SGD(0.05),
    "momentum": lambda: SGD(0.05, momentum=0.9),
    "nesterov": lambda: SGD(0.05, momentum=0.9, nesterov=True),
    "adagrad": lambda: nnc.optimizers.AdaGrad(0.05),
    "rmsprop": lambda: nnc.optimizers.RMSprop(0.01),
    "adam": lambda: Adam(0.01),
}


def test_continuation_covers_every_optimizer():
    assert set(type(make()).__name__ for make in _OPTIMIZERS.values()) == \
        set(nnc.optimizers.__all__) - {"Optimizer", "get_optimizer"}


@pytest.mark.parametrize("name", sorted(_OPTIMIZERS))
@pytest.mark.parametrize("path", ["compiled", "generic"])
def test_loaded_model_continues_identically_every_optimizer(name, path):
    X, y = _data(40)
    body = [L.Dense(6), L.ReLU()] + ([L.Dropout(0.2)] if path == "generic" else [])
    reg = NeuralNetRegressor(layers=body, optimizer=_OPTIMIZERS[name](), max_epochs=2,
                             batch_size=8, random_state=0, alpha=1e-3, dtype="float64")
    reg.fit(X, X[:, :2])
    loaded = _continue_identically(reg, X, X[:, :2])
    assert type(loaded._optimizer) is type(reg._optimizer)


@pytest.mark.parametrize("make", [
    lambda: MLPClassifier(hidden_layer_sizes=(6, 5), solver="sgd", learning_rate="invscaling",
                          max_iter=3, batch_size=16, random_state=0),
    lambda: MLPClassifier(hidden_layer_sizes=(5,), solver="adam", max_iter=3, random_state=3,
                          n_iter_no_change=1, tol=10.0),
    lambda: MLPRegressor(hidden_layer_sizes=(5,), solver="sgd", learning_rate="adaptive",
                         max_iter=4, batch_size=8, random_state=np.random.RandomState(2),
                         n_iter_no_change=1, tol=10.0),
    lambda: MLPRegressor(hidden_layer_sizes=(4,), solver="rmsprop", max_iter=3,
                         random_state=0, dtype="float32"),
], ids=["mlpc-sgd-invscaling", "mlpc-adam-stopping", "mlpr-sgd-adaptive", "mlpr-rmsprop-f32"])
def test_loaded_mlp_continues_identically(make):
    """fit(warm_start) and partial_fit of the drop-ins, with the stopping counters, the
    learning-rate schedules and a RandomState random_state in play."""
    X, y = _data(50)
    est = make()
    target = y if isinstance(est, MLPClassifier) else X[:, 0] - X[:, 1]
    est.fit(X, target)
    _continue_identically(est, X, target, steps=("partial", "warm", "partial"))


def test_loaded_early_stopping_model_continues_identically():
    """Warm starts with early stopping: the validation curve, best score and best weights."""
    X, y = _data(60)
    for est in (MLPClassifier(hidden_layer_sizes=(5,), max_iter=4, early_stopping=True,
                              n_iter_no_change=2, random_state=0),
                NeuralNetRegressor(layers=[L.Dense(5), L.Dropout(0.2)], max_epochs=3,
                                   early_stopping=True, random_state=0)):
        target = y if isinstance(est, MLPClassifier) else X[:, :2]
        est.fit(X, target)
        copy = _continue_identically(est, X, target, steps=("warm", "warm"))
        assert copy.validation_scores_ == est.validation_scores_
        np.testing.assert_array_equal(copy._best_params, est._best_params)


def test_reads_version_1_files(tmp_path):
    """Version 1 wrote loss curves as JSON lists, the hyper-parameters into the state too, and
    no layer states: such files still load (a Dropout then restarts from a fresh generator)."""
    X, y = _data()
    clf = NeuralNetClassifier(layers=[L.Dense(5), L.Dropout(0.2)], max_epochs=3,
                              random_state=0).fit(X, y)
    path = tmp_path / "v2.npz"
    nnc.save(clf, path)
    arrays, doc = _read(path)
    doc["format_version"] = 1
    state = doc["object"]["state"]
    for key in ("loss_curve_",):
        member = state[key]["key"]
        state[key] = arrays.pop(member).tolist()
    state.update({k: v for k, v in doc["object"]["params"].items() if k != "layers"})
    for spec in state["network_"]["layers"]:
        spec.pop("state")
    loaded = nnc.load(_write(tmp_path / "v1.npz", arrays, doc))
    _assert_same_predictions(clf, loaded, X)
    assert loaded.loss_curve_ == clf.loss_curve_
    loaded.partial_fit(X, y)
