"""Hostile model files: decompression bombs are refused before anything is inflated, and every
field is validated at load time (a file sets data, never behaviour).  Files are crafted small."""
import io
import json
import struct
import tracemalloc
import warnings
import zipfile

import numpy as np
import pytest

import nnc
import nnc.layers as L
from nnc import _io
from nnc import MLPClassifier, NeuralNetClassifier, NeuralNetRegressor

MiB = 1 << 20


@pytest.fixture(autouse=True)
def _quiet():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ConvergenceWarning of the short fits
        yield


def _data(n=60, seed=0):
    rng = np.random.RandomState(seed)
    X = rng.randn(n, 4)
    return X, (X[:, 0] + X[:, 1] > 0).astype(int) + (X[:, 2] > 1)


@pytest.fixture(scope="module")
def mlp_bytes():
    X, y = _data()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        clf = MLPClassifier(hidden_layer_sizes=(5,), max_iter=5, random_state=0).fit(X, y)
    buf = io.BytesIO()
    nnc.save(clf, buf)
    return buf.getvalue()


def _members(data):
    """{key: raw .npy bytes} of a model file, and its document."""
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        raw = {info.filename[:-4]: zf.read(info) for info in zf.infolist()}
    doc = json.loads(np.load(io.BytesIO(raw[_io._DOC_KEY])).tobytes().decode())
    return raw, doc


def _npy(arr):
    buf = io.BytesIO()
    np.lib.format.write_array(buf, np.asarray(arr), allow_pickle=False)
    return buf.getvalue()


def _npy_header(dtype, shape):
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        buf, {"descr": np.lib.format.dtype_to_descr(np.dtype(dtype)), "fortran_order": False,
              "shape": tuple(shape)})
    return buf.getvalue()


def _zeros_member(zf, key, dtype, shape, chunk=4 * MiB):
    """A deflated member holding a real .npy of zeros (it inflates to its full size)."""
    nbytes = int(np.prod(shape)) * np.dtype(dtype).itemsize
    with zf.open(key + ".npy", "w", force_zip64=True) as fh:
        fh.write(_npy_header(dtype, shape))
        zeros = bytes(chunk)
        while nbytes > 0:
            fh.write(zeros[:min(chunk, nbytes)])
            nbytes -= chunk


def _archive(raw, doc=None, replace=(), extra=(), compression=zipfile.ZIP_STORED):
    """A model file from members `raw` (and a new document), members in `replace` written by a
    callable(zf, key), `extra` members added the same way."""
    raw = dict(raw)
    if doc is not None:
        raw[_io._DOC_KEY] = _npy(np.frombuffer(json.dumps(doc).encode(), dtype=np.uint8))
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=compression) as zf:
        for key, data in raw.items():
            if key in dict(replace):
                dict(replace)[key](zf, key)
            else:
                zf.writestr(key + ".npy", data)
        for key, write in extra:
            write(zf, key)
    return buf.getvalue()


def _claim_size(data, key, size):
    """The archive with member `key`'s uncompressed size in the zip directory set to `size`."""
    data = bytearray(data)
    name = (key + ".npy").encode()
    pos = 0
    while True:
        pos = data.index(b"PK\x01\x02", pos)
        name_len = struct.unpack_from("<H", data, pos + 28)[0]
        if bytes(data[pos + 46:pos + 46 + name_len]) == name:
            struct.pack_into("<I", data, pos + 24, size)
            return bytes(data)
        pos += 4


def _load_peak(data):
    """(exception, peak traced bytes) of nnc.load(data); numpy's buffers are traced too."""
    tracemalloc.start()
    try:
        nnc.load(io.BytesIO(data))
        exc = None
    except ValueError as err:
        exc = err
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    return exc, peak


def _params_key(doc):
    return doc["object"]["state"]["network_"]["params"]["key"]


# --------------------------------------------------------------------------- decompression bombs
def test_inflating_params_member_is_refused_unread(mlp_bytes):
    """A params member that really inflates to 64 MiB (a few hundred KiB on disk) where the
    layer specs need 43 values: refused from its header, nothing inflated."""
    raw, doc = _members(mlp_bytes)
    key = _params_key(doc)
    bomb = _archive(raw, replace=[(key, lambda zf, k: _zeros_member(zf, k, "<f8", (8 * MiB,)))],
                    compression=zipfile.ZIP_DEFLATED)
    assert len(bomb) < MiB
    exc, peak = _load_peak(bomb)
    assert exc is not None and "the rebuilt network needs float64[43]" in str(exc)
    assert peak < 8 * MiB


def test_gigabyte_claims_are_refused_unread(mlp_bytes):
    """Members whose directory entry claims 1 GiB: the params buffer (header and size agree,
    the description does not), and a header contradicting its member's size."""
    raw, doc = _members(mlp_bytes)
    key = _params_key(doc)
    shape = ((1 << 30) // 8,)
    header = _npy_header("<f8", shape)
    lying = _archive(raw, replace=[(key, lambda zf, k: zf.writestr(k + ".npy", header))],
                     compression=zipfile.ZIP_DEFLATED)
    lying = _claim_size(lying, key, len(header) + (1 << 30))
    exc, peak = _load_peak(lying)
    assert exc is not None and "the rebuilt network needs float64[43]" in str(exc)
    assert peak < 8 * MiB
    # the header says 43 values, the directory 1 GiB
    small = _claim_size(_archive(raw, compression=zipfile.ZIP_DEFLATED), key, 1 << 30)
    exc, peak = _load_peak(small)
    assert exc is not None and "does not match the member's size" in str(exc)
    assert peak < 8 * MiB


def test_json_document_is_capped(mlp_bytes):
    """A 256 MiB document claimed in 300 bytes, and a real 8 MiB one deflated to a few KiB:
    both refused before the JSON is read or parsed."""
    raw, doc = _members(mlp_bytes)
    header = _npy_header("|u1", (256 * MiB,))
    claimed = _archive(raw, replace=[(_io._DOC_KEY, lambda zf, k: zf.writestr(k + ".npy",
                                                                             header))])
    claimed = _claim_size(claimed, _io._DOC_KEY, len(header) + 256 * MiB)
    exc, peak = _load_peak(claimed)
    assert exc is not None and "more than the" in str(exc) and peak < 8 * MiB
    padded = json.dumps(doc) + " " * (8 * MiB)

    def write(zf, k):
        zf.writestr(k + ".npy", _npy(np.frombuffer(padded.encode(), dtype=np.uint8)))

    real = _archive(raw, replace=[(_io._DOC_KEY, write)], compression=zipfile.ZIP_DEFLATED)
    assert len(real) < MiB
    exc, peak = _load_peak(real)
    assert exc is not None and "more than the" in str(exc) and peak < 8 * MiB
    # and nnc.save refuses to write what nnc.load would refuse
    clf = MLPClassifier(hidden_layer_sizes=[1] * (_io.MAX_DOC_BYTES // 3))
    with pytest.raises(ValueError, match="model description takes"):
        nnc.save(clf, io.BytesIO())


def test_unreferenced_member_is_never_inflated(mlp_bytes):
    raw, _ = _members(mlp_bytes)
    bomb = _archive(raw, extra=[("a999", lambda zf, k: _zeros_member(zf, k, "<f8", (8 * MiB,)))],
                    compression=zipfile.ZIP_DEFLATED)
    exc, peak = _load_peak(bomb)
    assert exc is not None and "unexpected arrays ['a999']" in str(exc)
    assert peak < 8 * MiB


def test_free_size_arrays_may_not_inflate(mlp_bytes):
    """The loss curve's length is not fixed by the model: above 1 MiB it must be stored, so it
    costs what the file does."""
    raw, doc = _members(mlp_bytes)
    state = doc["object"]["state"]
    state["t_"] = 10 ** 9
    key = state["loss_curve_"]["key"]
    bomb = _archive(raw, doc, replace=[(key, lambda zf, k: _zeros_member(zf, k, "<f8",
                                                                         (MiB,)))],
                    compression=zipfile.ZIP_DEFLATED)
    exc, peak = _load_peak(bomb)
    assert exc is not None and "must be stored uncompressed" in str(exc)
    assert peak < 4 * MiB
    # stored uncompressed, the same curve loads (it is as large as the file)
    stored = _archive(raw, doc, replace=[(key, lambda zf, k: zf.writestr(
        k + ".npy", _npy(np.ones(MiB // 8 + 1))))])
    assert len(nnc.load(io.BytesIO(stored)).loss_curve_) == MiB // 8 + 1


def test_long_strings_and_other_compressions_are_refused(mlp_bytes):
    raw, doc = _members(mlp_bytes)
    key = doc["object"]["state"]["classes_"]["key"]
    wide = _archive(raw, replace=[(key, lambda zf, k: zf.writestr(
        k + ".npy", _npy(np.array(["a", "b", "c"], dtype="<U100000"))))])
    with pytest.raises(ValueError, match="strings of up to 100000 characters"):
        nnc.load(io.BytesIO(wide))
    bz = _archive(raw, compression=zipfile.ZIP_BZIP2)
    with pytest.raises(ValueError, match="compression method 12"):
        nnc.load(io.BytesIO(bz))
    # a normal, deflated file still loads
    assert isinstance(nnc.load(io.BytesIO(_archive(raw, compression=zipfile.ZIP_DEFLATED))),
                      MLPClassifier)


# --------------------------------------------------------------------------- validation at load
def _sequential_bytes():
    net = nnc.Sequential([L.Dense(4), L.ReLU(), L.Dropout(0.2), L.Dense(2)],
                         loss="softmax_cross_entropy", input_shape=(3,), random_state=0)
    net.clip_grad_norm = 2.0
    buf = io.BytesIO()
    nnc.save(net, buf)
    return buf.getvalue()


def _nn_bytes():
    X, y = _data()
    clf = NeuralNetClassifier(layers=[L.Dense(5), L.Dropout(0.1)], max_epochs=2,
                              random_state=0, clip_grad_norm=1.0).fit(X, y)
    buf = io.BytesIO()
    nnc.save(clf, buf)
    return buf.getvalue()


def _state(doc):
    return doc["object"]["state"]


def _net(doc):
    return doc["object"] if doc["object"]["__nnc__"] == "sequential" else \
        _state(doc)["network_"]


def _set_array(raw, doc, where, value):
    """Replace the array member referred to by the array tag `where` (a dict in doc)."""
    raw[where["key"]] = _npy(value)


def _nan_params(raw, doc):
    p = np.load(io.BytesIO(raw[_params_key(doc)]))
    p[3] = np.nan
    raw[_params_key(doc)] = _npy(p)


def _inf_best(raw, doc):
    key = _state(doc)["_best_params"]["key"]
    p = np.load(io.BytesIO(raw[key]))
    p[0] = np.inf
    raw[key] = _npy(p)


def _nan_moment(raw, doc):
    key = _state(doc)["_optimizer"]["state"]["m"]["key"]
    m = np.load(io.BytesIO(raw[key]))
    m[-1] = np.nan
    raw[key] = _npy(m)


def _wrong_coefs(raw, doc):
    # an assigned coefs_[0] (not a view) of the wrong shape
    raw["a900"] = _npy(np.zeros((5, 4)))
    _state(doc)["coefs_"][0] = {"__nnc__": "array", "key": "a900", "object": False}


def _long_classes(raw, doc):
    _set_array(raw, doc, _state(doc)["classes_"], np.arange(4))


def _unsorted_classes(raw, doc):
    _set_array(raw, doc, _state(doc)["classes_"], np.array([2, 0, 1]))


def _dropout_in_mlp(raw, doc):
    _net(doc)["layers"].insert(1, {"__nnc__": "layer", "class": "Dropout",
                                   "config": {"rate": 0.5}, "id": 999})
    _state(doc)["layers_"].insert(1, {"__nnc__": "ref", "id": 999})


# (file maker, edit of (raw members, document), expected message)
_CASES = {
    # a file sets data, never behaviour: no method, property or private cache
    "state names predict": ("mlp", lambda r, d: _state(d).update({"predict": "x"}),
                            "'predict' may not be set"),
    "state names _check_is_fitted": ("mlp", lambda r, d: _state(d).update(
        {"_check_is_fitted": 0}), "'_check_is_fitted' may not be set"),
    "state names predict_proba in params": ("mlp", lambda r, d: d["object"]["params"].update(
        {"predict_proba": 1}), "unknown parameters"),
    "sequential extra forward": ("seq", lambda r, d: _net(d)["extra"].update({"forward": 1}),
                                 "'forward' may not be set"),
    "sequential extra property": ("seq", lambda r, d: _net(d)["extra"].update({"built": False}),
                                  "'built' may not be set"),
    "sequential extra n_params": ("seq", lambda r, d: _net(d)["extra"].update({"n_params": 3}),
                                  "'n_params' may not be set"),
    # numbers
    "NaN parameters": ("mlp", _nan_params, "contains NaN or infinity"),
    "inf best weights": ("mlp", _inf_best, "_best_params contains NaN or infinity"),
    "NaN optimizer moment": ("mlp", _nan_moment, "contains NaN or infinity"),
    "optimizer step count 2**70": ("mlp", lambda r, d: _state(d)["_optimizer"]["state"].update(
        {"t": 2 ** 70}), r"state\['t'\] must be an int in \[0, 9007199254740992\]"),
    "negative t_": ("mlp", lambda r, d: _state(d).update({"t_": -1}), "t_ must be an int"),
    "float n_iter_": ("mlp", lambda r, d: _state(d).update({"n_iter_": 2.5}),
                      "n_iter_ must be an int"),
    "NaN loss_": ("mlp", lambda r, d: _state(d).update({"loss_": float("nan")}),
                  "loss_ must be a finite number"),
    "non-numeric clip_grad_norm (network)": ("seq", lambda r, d: _net(d)["extra"].update(
        {"clip_grad_norm": "abc"}), "clip_grad_norm must be a number"),
    "negative clip_grad_norm (network)": ("seq", lambda r, d: _net(d)["extra"].update(
        {"clip_grad_norm": -1.0}), "clip_grad_norm must be None or > 0"),
    "non-numeric clip_grad_norm (param)": ("nn", lambda r, d: d["object"]["params"].update(
        {"clip_grad_norm": "abc"}), "invalid parameters for NeuralNetClassifier"),
    "invalid hyper-parameter": ("mlp", lambda r, d: d["object"]["params"].update(
        {"alpha": -1.0}), "invalid parameters for MLPClassifier"),
    # targets and shapes
    "classes_ longer than the output layer": ("mlp", _long_classes,
                                              "classes_ is int64\\[4\\]: more than the 3"),
    "unsorted classes_": ("mlp", _unsorted_classes, "sorted and unique"),
    "unknown target mode": ("mlp", lambda r, d: _state(d).update({"_target_mode": "regression"}),
                            "_target_mode must be one of"),
    "target mode of another loss": ("mlp", lambda r, d: _state(d).update(
        {"_target_mode": "ovr"}), "target mode 'ovr' trains 'binary_cross_entropy'"),
    "label type mismatch": ("mlp", lambda r, d: _state(d).update({"_label_type": "binary"}),
                            "does not match 3 classes"),
    "coefs_ of the wrong shape": ("mlp", _wrong_coefs, r"coefs_\[0\] is float64\[5, 4\], "
                                                       r"expected shape \[4, 5\]"),
    "n_features_in_ mismatch": ("mlp", lambda r, d: _state(d).update({"n_features_in_": 7}),
                                r"n_features_in_ must be an int in \[4, 4\]"),
    "n_outputs_ mismatch": ("mlp", lambda r, d: _state(d).update({"n_outputs_": 1}),
                            r"n_outputs_ must be an int in \[3, 3\]"),
    "out_activation_ mismatch": ("mlp", lambda r, d: _state(d).update(
        {"out_activation_": "identity"}), "out_activation_ must be 'softmax'"),
    "n_layers_ mismatch": ("mlp", lambda r, d: _state(d).update({"n_layers_": 5}),
                           "n_layers_ must be an int"),
    "layers_ not the network's": ("mlp", lambda r, d: _state(d).update({"layers_": []}),
                                  "layers_ must be the layers of network_"),
    "missing fitted attribute": ("mlp", lambda r, d: _state(d).pop("classes_"),
                                 r"lacks the fitted attributes \['classes_'\]"),
    "network of another estimator": ("mlp", _dropout_in_mlp, "not a multi-layer perceptron"),
    "unbuilt network_": ("mlp", lambda r, d: _net(d).update({"input_shape": None,
                                                              "params": None}),
                         "must be a built network"),
    "layer shared by reference": ("mlp", lambda r, d: _net(d)["layers"].__setitem__(
        2, {"__nnc__": "ref", "id": 0}), "must be a layer spec"),
    "array by reference": ("mlp", lambda r, d: d["object"]["params"].update(
        {"hidden_layer_sizes": {"__nnc__": "ref", "id": 0}}), "not defined before it"),
    "seed out of range": ("seq", lambda r, d: _net(d).update({"random_state": 2 ** 40}),
                          "random_state must be an int"),
    "bad Dropout generator": ("seq", lambda r, d: _net(d)["layers"][2]["state"]["generator"]
                              .update({"inc": "2"}), "'inc' odd"),
    "state on a stateless layer": ("seq", lambda r, d: _net(d)["layers"][0].update(
        {"state": {"x": 1}}), "Dense has no state to load"),
    "history longer than t_": ("mlp", lambda r, d: _state(d).update({"t_": 2}),
                               "more than the fit's counters allow"),
}

_MAKERS = {"mlp": None, "seq": _sequential_bytes, "nn": _nn_bytes}


@pytest.mark.parametrize("case", sorted(_CASES))
def test_load_validates_every_field(case, mlp_bytes):
    maker, edit, message = _CASES[case]
    data = mlp_bytes if maker == "mlp" else _MAKERS[maker]()
    raw, doc = _members(data)
    nnc.load(io.BytesIO(data))              # the untouched file loads
    edit(raw, doc)
    with pytest.raises(ValueError, match=message):
        nnc.load(io.BytesIO(_archive(raw, doc)))


def test_fitted_attribute_lists_match_what_fit_sets():
    """The allow-lists name exactly what the estimators' fits set, in every mode."""
    X, y = _data()
    Y = np.column_stack([y == 0, y == 1]).astype(int)
    for est, target in [
            (MLPClassifier(hidden_layer_sizes=(3,), max_iter=2), y),
            (MLPClassifier(hidden_layer_sizes=(3,), max_iter=2, solver="lbfgs"), y),
            (MLPClassifier(hidden_layer_sizes=(3,), max_iter=2, early_stopping=True), y),
            (MLPClassifier(hidden_layer_sizes=(3,), max_iter=2), Y),
            (NeuralNetClassifier(max_epochs=1, loss="binary_cross_entropy"), y),
            (NeuralNetRegressor(max_epochs=1), X[:, :2])]:
        est.fit(X, target)
        name = type(est).__name__
        fitted = set(est.__dict__) - set(est.get_params())
        assert fitted <= set(_io._fitted_attributes(name)), fitted - set(
            _io._fitted_attributes(name))
        buf = io.BytesIO()
        nnc.save(est, buf)
        buf.seek(0)
        loaded = nnc.load(buf)
        assert set(loaded.__dict__) == set(est.__dict__)
