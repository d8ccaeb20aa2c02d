"""Safe model files: ``save(obj, path)`` / ``load(path)`` for Sequential and every nnc estimator.

A model file is one ``.npz`` archive (``numpy.savez``, members stored uncompressed):

* ``__nnc_model__``  a uint8 array holding a UTF-8 JSON document: the format name and version, the
  nnc version that wrote it, and the object, described as JSON values;
* ``a0``, ``a1``, ...  the arrays the document refers to (the flat parameter buffer of each network,
  fitted arrays such as ``classes_``, optimizer moments, loss curves), all of bool, integer, float
  or unicode dtype.

The document describes an object as tagged JSON: ``{"__nnc__": "estimator",
"class": "MLPClassifier", "params": {...get_params()...}, "state": {...fitted attributes...}}``;
a network as its layer specs ``{"__nnc__": "layer", "class": "Dense", "config": {...},
"state": {...}}`` plus loss, input shape, dtype, random state and the parameter array; an optimizer
as its ``get_config()`` and ``state_dict()``; tuples, dicts, dtypes, RandomState states and arrays
each have their own tag.  A RandomState, layer, network or optimizer met twice (``layers_`` holds
the layers of ``network_``) is written once with an ``"id"`` and then referred to as
``{"__nnc__": "ref", "id": k}``; references only point backwards, in document order.  Arrays are
never shared: each occurrence is its own member.

Continuing after a load is continuing without the save: the file holds every piece of state that
training reads later (weights, the optimizer's moments and step count, the network's RandomState,
each Dropout's generator, the stopping counters, the best weights, the loss curve).

Loading checks everything before it builds anything, and a file sets data, never behaviour:

* Sizes first (no decompression bombs).  The zip directory and each member's ``.npy`` header are
  read before any data: a member must be stored or deflated, its header must account for its size
  exactly, and its dtype and shape must be what the description implies where the array sits
  (``params``: the size of the network its layer specs and input shape build, optimizer moments
  and best weights: the same, ``classes_``: at most the output width, ...).  Arrays whose length
  the model does not fix (loss curves, user-assigned initial weights, array hyper-parameters) must
  not inflate: above ``_FREE_ARRAY_BYTES`` they must be stored uncompressed, so they cost what the
  file does.  The JSON document is capped at ``MAX_DOC_BYTES`` (its parsed form takes up to ~25x).
* Classes come from allow-lists of nnc's own public classes (estimators, Sequential, nnc.layers,
  nnc.optimizers), never imported by name; objects are rebuilt through their constructors (layers:
  ``from_config``), whose argument checks run, and estimators' hyper-parameters are checked as
  ``fit`` checks them.
* Each estimator class has an explicit allow-list of the attributes its fit sets, each with its
  type, range and shape checks and the cross-checks between them (``classes_`` against the output
  width and target mode, ``coefs_`` against the layers, counters within [0, 2**53], finite
  weights, ...).  Nothing else is set: no method, property or private cache can be replaced.  A
  network sets its layers, loss, dtype, input shape, random state, weights, layer states and
  ``clip_grad_norm`` only.
* Anything unexpected raises ValueError naming what was wrong.

Model files sit above what they save: this module imports the network, the layers, the
optimizers and the estimators at module level, and none of them imports it at module level
(``Sequential.save`` and the estimators' ``SaveMixin.save`` import it when called), so the
package imports in one direction (tests/test_layering.py checks it).
"""
import json
import math
import numbers
import os
import tempfile
import zipfile

import numpy as np
from numpy.lib import format as _npy

import nnc.layers
import nnc.optimizers
from nnc import _estimators
from nnc._estimators._base import SaveMixin  # noqa: F401  (nnc._io.SaveMixin, as before)
from nnc._network import Sequential
from nnc._version import __version__
from nnc.layers._activations import ACTIVATIONS
from nnc.layers._base import Layer
from nnc.layers._dense import Dense
from nnc.losses import LOSSES, Loss, get_loss
from nnc.optimizers import Optimizer

FORMAT_NAME = "nnc-model"
#: 2: layer states (Dropout generators), loss curves as arrays, the allow-listed attributes only.
#: Version 1 files are read too.
FORMAT_VERSION = 2
_DOC_KEY = "__nnc_model__"
_TAG = "__nnc__"
#: array dtype kinds a model file may hold: bool, signed / unsigned int, float, unicode
_ARRAY_KINDS = "biufU"
_SCALAR_TYPES = {"float32": np.float32, "float64": np.float64}

#: the JSON document's size limit (bytes); nnc's own documents take a few KiB
MAX_DOC_BYTES = 2 << 20
#: members of the zip archive, at most
_MAX_MEMBERS = 1 << 16
#: an .npy header's size limit (numpy's default)
_MAX_HEADER = 10000
#: arrays whose length the model does not fix may exceed this many bytes only when stored
_FREE_ARRAY_BYTES = 1 << 20
#: longest string in a unicode array (class labels, feature names)
_MAX_STR_CHARS = 4096
#: largest array hyper-parameter (elements)
_MAX_PARAM_ARRAY = 1 << 16
#: counters (n_iter_, t_, step counts) lie in [0, _MAX_COUNT] (optimizers.MAX_STEPS)
_MAX_COUNT = 2**53
#: attributes of a Sequential a file may set besides what its constructor and build() make
_SEQUENTIAL_EXTRAS = ("clip_grad_norm",)

# The fitted attributes of the estimators, in the order they are written (network_ first: other
# attributes refer to its layers).  MLP* add coefs_ / intercepts_ / n_layers_, classifiers the
# target encoding.  An unfitted MLP may hold user-assigned initial coefs_ / intercepts_.
_FITTED_COMMON = ("network_", "layers_", "n_features_in_", "feature_names_in_", "n_outputs_",
                  "out_activation_", "n_iter_", "t_", "loss_", "loss_curve_", "best_loss_",
                  "validation_scores_", "best_validation_score_", "validation_loss_curve_",
                  "_no_improvement_count", "_best_params", "_optimizer")
_FITTED_CLASSIFIER = ("classes_", "_label_type", "_target_mode")
_FITTED_MLP = ("coefs_", "intercepts_", "n_layers_")
_FITTED_REQUIRED = ("network_", "n_features_in_", "n_outputs_", "out_activation_", "n_iter_",
                    "t_", "loss_", "_best_params")
_HISTORY = ("loss_curve_", "validation_scores_", "validation_loss_curve_")
#: what set_callbacks and a fit in progress keep on an estimator (scikit-learn's callback API):
#: run-time behaviour, never written to a model file (a Checkpoint saves its estimator mid-fit)
_CALLBACK_ATTRS = ("_skl_callbacks", "_callback_fit_ctx", "_skl_callbacks_to_teardown",
                   "_parent_callback_ctx")
_LABEL_TYPES = ("binary", "multiclass", "multilabel-indicator")
_TARGET_MODES = ("softmax", "sigmoid", "ovr", "multilabel")
_MLP_CLASSES = ("MLPClassifier", "MLPRegressor")
_CLASSIFIERS = ("MLPClassifier", "NeuralNetClassifier")


def _fitted_attributes(class_name):
    names = list(_FITTED_COMMON)
    if class_name in _CLASSIFIERS:
        names[1:1] = _FITTED_CLASSIFIER
    if class_name in _MLP_CLASSES:
        names += _FITTED_MLP
    return tuple(names)


def _unfitted_attributes(class_name):
    return ("coefs_", "intercepts_") if class_name in _MLP_CLASSES else ()


# --------------------------------------------------------------------------- allow-lists
def _is_nnc_class(obj):
    return isinstance(obj, type) and (obj.__module__ or "").split(".")[0] == "nnc"


def _registries():
    """(models, layers, optimizers): name -> class, from the ``__all__`` lists of nnc's packages."""
    models = {"Sequential": Sequential}
    for name in _estimators.__all__:
        cls = getattr(_estimators, name)
        if _is_nnc_class(cls):
            models[name] = cls
    layers = {}
    for name in nnc.layers.__all__:
        cls = getattr(nnc.layers, name, None)
        if _is_nnc_class(cls) and issubclass(cls, Layer) and cls is not Layer:
            layers[name] = cls
    optimizers = {}
    for name in nnc.optimizers.__all__:
        cls = getattr(nnc.optimizers, name, None)
        if _is_nnc_class(cls) and issubclass(cls, Optimizer) and cls is not Optimizer:
            optimizers[name] = cls
    return models, layers, optimizers


def _registered_name(obj, registry, what):
    name = type(obj).__name__
    if registry.get(name) is not type(obj):
        raise ValueError(f"cannot save {what} of class {type(obj).__module__}.{name}: only nnc's "
                         f"own classes ({', '.join(sorted(registry))}) can go in a model file")
    return name


# --------------------------------------------------------------------------- encoding (save)
class _Encoder:
    """Object → tagged JSON + arrays.  RandomStates, layers, networks and optimizers are written
    once with an ``"id"`` and referred to afterwards by ``{"__nnc__": "ref", "id": k}``, so
    aliasing (``layers_`` is ``network_.layers``) survives; arrays are written per occurrence."""

    def __init__(self):
        self.arrays = {}
        self.memo = {}      # id(obj) -> ref number
        self.keep = []      # keeps memoised objects alive, so their ids stay unique
        self.active = set()
        self.models, self.layers, self.optimizers = _registries()

    def shared(self, obj, encode, where):
        key = id(obj)
        if key in self.memo:
            return {_TAG: "ref", "id": self.memo[key]}
        if key in self.active:
            raise ValueError(f"cannot save {where}: it contains itself")
        self.active.add(key)
        try:
            out = encode()
        finally:
            self.active.discard(key)
        out["id"] = self.memo[key] = len(self.memo)
        self.keep.append(obj)
        return out

    def array(self, arr, where):
        was_object = arr.dtype.kind == "O"
        plain = _object_to_plain(arr, where) if was_object else arr
        if plain.dtype.kind not in _ARRAY_KINDS or plain.dtype.fields is not None:
            raise ValueError(f"cannot save {where}: arrays of dtype {plain.dtype} are not "
                             "supported (bool, int, float and str only)")
        if plain.dtype.kind == "U" and plain.dtype.itemsize > 4 * _MAX_STR_CHARS:
            raise ValueError(f"cannot save {where}: strings longer than {_MAX_STR_CHARS} "
                             "characters")
        key = f"a{len(self.arrays)}"
        self.arrays[key] = np.ascontiguousarray(plain)
        return {_TAG: "array", "key": key, "object": was_object}

    def value(self, v, where, params=False):
        if v is None or isinstance(v, (bool, str)):
            return v
        if isinstance(v, np.bool_):
            return bool(v)
        if isinstance(v, numbers.Integral):
            return int(v)
        if isinstance(v, numbers.Real):
            return float(v)
        if type(v) is np.ndarray:
            return self.array(v, where)
        if isinstance(v, np.dtype):
            return {_TAG: "dtype", "name": _dtype_name(v, where)}
        if isinstance(v, type) and v in _SCALAR_TYPES.values():
            return {_TAG: "scalar_type", "name": np.dtype(v).name}
        if isinstance(v, tuple):
            return {_TAG: "tuple", "items": [self.value(x, f"{where}[{i}]", params)
                                             for i, x in enumerate(v)]}
        if isinstance(v, list):
            return [self.value(x, f"{where}[{i}]", params) for i, x in enumerate(v)]
        if isinstance(v, dict):
            if all(isinstance(k, str) for k in v) and _TAG not in v:
                return {k: self.value(x, f"{where}[{k!r}]", params) for k, x in v.items()}
            return {_TAG: "dict", "items": [[self.value(k, f"{where} key", params),
                                             self.value(x, f"{where}[{k!r}]", params)]
                                            for k, x in v.items()]}
        if isinstance(v, Loss):
            return v.name
        if type(v) is np.random.RandomState:
            return self.shared(v, lambda: self.random_state(v, where), where)
        if isinstance(v, Sequential):
            return self.shared(v, lambda: self.network(v, where), where)
        if isinstance(v, Layer):
            return self.shared(v, lambda: self.layer(v, where), where)
        if type(v).__name__ in self.optimizers:
            return self.shared(v, lambda: self.optimizer(v, where, with_state=not params), where)
        raise ValueError(f"cannot save {where}: values of type {type(v).__module__}."
                         f"{type(v).__qualname__} are not supported by nnc's safe model format")

    def random_state(self, rs, where):
        name, keys, pos, has_gauss, cached = rs.get_state()
        return {_TAG: "random_state", "bit_generator": str(name),
                "keys": self.array(np.asarray(keys, dtype=np.uint32), f"{where} state"),
                "pos": int(pos), "has_gauss": int(has_gauss), "cached_gaussian": float(cached)}

    def layer(self, layer, where):
        name = _registered_name(layer, self.layers, f"{where} (a layer)")
        return {_TAG: "layer", "class": name,
                "config": self.value(dict(layer.get_config()), f"{where}.get_config()"),
                "state": self.value(dict(layer.state_dict()), f"{where}.state_dict()")}

    def network(self, net, where):
        _registered_name(net, self.models, where)
        out = {_TAG: "sequential",
               "layers": [self.value(layer, f"{where}.layers[{i}]")
                          for i, layer in enumerate(net.layers)],
               "loss": self.value(net.loss, f"{where}.loss"),
               "dtype": np.dtype(net.dtype).name,
               "input_shape": None if net.input_shape is None else list(net.input_shape),
               "random_state": self.value(net.random_state, f"{where}.random_state"),
               "params": None if net.params is None else self.array(net.params,
                                                                    f"{where}.params")}
        out["extra"] = {key: self.value(getattr(net, key, None), f"{where}.{key}")
                        for key in _SEQUENTIAL_EXTRAS}
        return out

    def optimizer(self, opt, where, with_state=True):
        """An optimizer's config, and its state_dict() unless it is a hyper-parameter (fits copy
        only the config of an optimizer they are given)."""
        name = _registered_name(opt, self.optimizers, f"{where} (an optimizer)")
        out = {_TAG: "optimizer", "class": name,
               "config": self.value(dict(opt.get_config()), f"{where}.get_config()")}
        if with_state:
            out["state"] = self.value(dict(opt.state_dict()), f"{where}.state_dict()")
        return out

    def history(self, values, where):
        """A loss curve / validation score list as a float64 array (keeps the JSON small)."""
        if not isinstance(values, (list, tuple)) or not all(
                isinstance(x, numbers.Real) and not isinstance(x, (bool, np.bool_))
                for x in values):
            raise ValueError(f"cannot save {where}: expected a list of numbers")
        return self.array(np.array(values, dtype=np.float64), where)

    def estimator(self, est, where):
        name = _registered_name(est, self.models, where)
        params = est.get_params(deep=False)
        state = est.__getstate__() if hasattr(est, "__getstate__") else dict(est.__dict__)
        if state is None:  # object.__getstate__ of an instance without attributes
            state = {}
        state = {k: v for k, v in state.items()    # params are written under "params"
                 if k not in params and k not in _CALLBACK_ATTRS}
        fitted = "network_" in state
        allowed = _fitted_attributes(name) if fitted else _unfitted_attributes(name)
        for key in state:
            if key not in allowed:
                raise ValueError(
                    f"cannot save {name}.{key}: not an attribute that {name}.fit sets (a model "
                    f"file holds the hyper-parameters and the fitted state only)")
        # params first: the decoder reads them first too (references point backwards only)
        out_params = {k: self.value(v, f"{name}.{k}", params=True) for k, v in params.items()}
        out_state = {}
        for key in allowed:      # network_ first: layers_ refers to its layers
            if key not in state:
                continue
            val = state[key]
            if key in _HISTORY and val is not None:
                out_state[key] = self.history(val, f"{name}.{key}")
            else:
                out_state[key] = self.value(val, f"{name}.{key}")
        return {_TAG: "estimator", "class": name, "params": out_params, "state": out_state}


def _dtype_name(dt, where):
    dt = np.dtype(dt)
    if dt.kind not in _ARRAY_KINDS or dt.fields is not None:
        raise ValueError(f"cannot save {where}: dtype {dt} is not supported")
    return dt.str


def _object_to_plain(arr, where):
    """Object array of str (or of numbers) -> unicode (or numeric) array; else ValueError."""
    items = arr.ravel().tolist()
    if all(isinstance(x, str) for x in items):
        return np.array(items, dtype=str).reshape(arr.shape) if items else \
            np.empty(arr.shape, dtype="<U1")
    if all(isinstance(x, (bool, numbers.Integral, numbers.Real)) and not isinstance(x, complex)
           for x in items):
        return np.array(items).reshape(arr.shape)
    raise ValueError(f"cannot save {where}: an object array whose items are not all strings or "
                     "all numbers")


# --------------------------------------------------------------------------- reading the archive
class _Archive:
    """The zip archive of a model file: directory and .npy headers checked up front, data read
    only for members the document refers to, each after its header met the expectation."""

    def __init__(self, path, source):
        self.source = source
        try:
            self.zip = zipfile.ZipFile(path)
        except FileNotFoundError:
            raise
        except Exception as exc:  # BadZipFile, OSError, EOFError, ValueError ...
            raise ValueError(self._not_npz(path, exc)) from None
        self.members = {}
        self.headers = {}
        try:
            infos = self.zip.infolist()
            if len(infos) > _MAX_MEMBERS:
                self.fail(f"{len(infos)} members (at most {_MAX_MEMBERS})")
            for info in infos:
                if not info.filename.endswith(".npy"):
                    self.fail(f"unexpected member {info.filename!r} (only .npy arrays)")
                key = info.filename[:-4]
                if key in self.members:
                    self.fail(f"member {info.filename!r} appears twice")
                if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
                    self.fail(f"member {info.filename!r} uses compression method "
                              f"{info.compress_type} (only stored or deflated)")
                if info.flag_bits & 0x1:
                    self.fail(f"member {info.filename!r} is encrypted")
                self.members[key] = info
        except BaseException:
            self.zip.close()
            raise

    def _not_npz(self, path, exc):
        head = b""
        try:
            if hasattr(path, "read"):
                path.seek(0)
                head = path.read(6)
            else:
                with open(path, "rb") as fh:
                    head = fh.read(6)
        except Exception:  # pragma: no cover - unreadable twice
            pass
        if head == b"\x93NUMPY":
            return f"{self.source}: not a valid nnc model file: a single .npy array, not an " \
                   "npz archive"
        return f"{self.source}: not a valid nnc model file (not an npz archive, or it holds " \
               f"pickled data): {exc}"

    def fail(self, msg):
        raise ValueError(f"{self.source}: not a valid nnc model file: {msg}")

    def close(self):
        self.zip.close()

    def header(self, key):
        """(dtype, shape) of member `key` from its .npy header, checked against its size."""
        if key in self.headers:
            return self.headers[key]
        info = self.members.get(key)
        if info is None:
            self.fail(f"the array {key!r} is missing")
        try:
            with self.zip.open(info) as fh:
                version = _npy.read_magic(fh)
                if version == (1, 0):
                    shape, fortran, dtype = _npy.read_array_header_1_0(fh, _MAX_HEADER)
                elif version == (2, 0):
                    shape, fortran, dtype = _npy.read_array_header_2_0(fh, _MAX_HEADER)
                else:
                    self.fail(f"array {key!r} has .npy format version {version}")
                offset = fh.tell()
        except ValueError as exc:
            if str(exc).startswith(self.source):
                raise
            self.fail(f"array {key!r} has a bad .npy header: {exc}")
        except Exception as exc:  # zipfile errors (BadZipFile, CRC, zlib) and the like
            self.fail(f"array {key!r} is corrupt: {exc}")
        if dtype.hasobject:
            self.fail(f"array {key!r} holds Python objects, which cannot be read without "
                      "pickle")
        if dtype.kind not in _ARRAY_KINDS or dtype.fields is not None or dtype.shape != ():
            self.fail(f"array {key!r} has dtype {dtype} (only bool, int, float and str are "
                      "allowed)")
        if dtype.kind == "U" and dtype.itemsize > 4 * _MAX_STR_CHARS:
            self.fail(f"array {key!r} holds strings of up to {dtype.itemsize // 4} characters "
                      f"(at most {_MAX_STR_CHARS})")
        count = math.prod(shape)
        if offset + count * dtype.itemsize != info.file_size:
            self.fail(f"array {key!r}: its header ({dtype}{list(shape)}) does not match the "
                      f"member's size ({info.file_size} bytes)")
        self.headers[key] = (dtype, tuple(shape))
        return self.headers[key]

    def inflates(self, key):
        """True when member `key` is compressed and larger than _FREE_ARRAY_BYTES."""
        info = self.members[key]
        return info.compress_type != zipfile.ZIP_STORED and info.file_size > _FREE_ARRAY_BYTES

    def read(self, key):
        """The array of member `key` (call header(key) and check it first)."""
        try:
            with self.zip.open(self.members[key]) as fh:
                return _npy.read_array(fh, allow_pickle=False, max_header_size=_MAX_HEADER)
        except Exception as exc:  # zipfile / zlib errors, truncated data
            self.fail(f"array {key!r} is corrupt: {exc}")


# --------------------------------------------------------------------------- decoding (load)
#: tags the generic decoder accepts in hyper-parameters (get_params values)
_PARAM_TAGS = frozenset({"ref", "array", "tuple", "dict", "dtype", "scalar_type", "random_state",
                         "layer", "optimizer"})
#: tags inside layer / optimizer configs and states: plain values only
_CONFIG_TAGS = frozenset({"tuple", "dict"})


class _Decoder:
    """Tagged JSON + arrays → objects, validating every field; see the module docstring."""

    def __init__(self, archive, source, version=FORMAT_VERSION):
        self.archive = archive
        self.version = version
        self.used = set()
        self.objects = {}   # ref number -> decoded shared object
        self.source = source
        self.models, self.layers, self.optimizers = _registries()

    def fail(self, msg):
        raise ValueError(f"{self.source}: not a valid nnc model file: {msg}")

    # ---------------------------------------------------------------- primitives
    def field(self, d, key, types, where):
        if not isinstance(d, dict) or key not in d:
            self.fail(f"{where} lacks the key {key!r}")
        val = d[key]
        types = types if isinstance(types, tuple) else (types,)
        if not isinstance(val, types) or (isinstance(val, bool) and bool not in types):
            self.fail(f"{where}[{key!r}] has the wrong type ({type(val).__name__})")
        return val

    def keys(self, d, allowed, where):
        unknown = set(d) - set(allowed)
        if unknown:
            self.fail(f"{where} has unexpected keys {sorted(unknown)}")

    def register(self, d, obj, where):
        ref = self.field(d, "id", int, where)
        if ref in self.objects:
            self.fail(f"{where}: object id {ref} is defined twice")
        self.objects[ref] = obj
        return obj

    def ref(self, d, where):
        ref = self.field(d, "id", int, where)
        if ref not in self.objects:
            self.fail(f"{where} refers to object {ref}, which is not defined before it")
        return self.objects[ref]

    def integer(self, v, where, low=0, high=_MAX_COUNT):
        if not isinstance(v, int) or isinstance(v, bool) or not low <= v <= high:
            self.fail(f"{where} must be an int in [{low}, {high}], got {v!r}")
        return v

    def real(self, v, where, none=False, nan=False, posinf=False, neginf=False):
        """A JSON number as a float: finite, unless NaN / +inf / -inf are allowed here."""
        if v is None and none:
            return None
        if not isinstance(v, (int, float)) or isinstance(v, bool):
            self.fail(f"{where} must be a number, got {type(v).__name__}")
        try:
            v = float(v)
        except OverflowError:
            self.fail(f"{where} is too large")
        if math.isnan(v):
            ok = nan
        elif math.isinf(v):
            ok = posinf if v > 0 else neginf
        else:
            ok = True
        if not ok:
            self.fail(f"{where} must be a finite number, got {v!r}")
        return v

    def array(self, d, where, kinds="biuf", dtype=None, shape=None, ndim=None, max_size=None,
              free=False, finite=False, object_ok=False, need=None):
        """The array tagged by `d`, after its header matched: dtype (or kind among `kinds`),
        `shape` (or `ndim` and at most `max_size` elements); `free`: the model does not fix its
        length, so it may not inflate; `need`: says why in the error.  Checked before its data
        is read."""
        if not isinstance(d, dict) or d.get(_TAG) != "array":
            self.fail(f"{where} must be an array")
        self.keys(d, (_TAG, "key", "object", "id"), where)
        key = self.field(d, "key", str, where)
        if key == _DOC_KEY or key not in self.archive.members:
            self.fail(f"{where} refers to a missing array {key!r}")
        if key in self.used:
            self.fail(f"{where}: array {key!r} is used twice")
        is_object = self.field(d, "object", bool, where)
        got_dtype, got_shape = self.archive.header(key)
        described = f"{got_dtype}{list(got_shape)}"
        if need is not None and ((dtype is not None and got_dtype != np.dtype(dtype)) or
                                 (shape is not None and got_shape != tuple(shape))):
            self.fail(f"{where} is {described} but {need}")
        if dtype is not None and got_dtype != np.dtype(dtype):
            self.fail(f"{where} is {described}, expected dtype {np.dtype(dtype)}")
        if got_dtype.kind not in kinds:
            self.fail(f"{where} is {described}, expected a {kinds!r} kind dtype")
        if shape is not None and got_shape != tuple(shape):
            self.fail(f"{where} is {described}, expected shape {list(shape)}")
        if ndim is not None and len(got_shape) != ndim:
            self.fail(f"{where} is {described}, expected {ndim} dimension(s)")
        if max_size is not None and math.prod(got_shape) > max_size:
            self.fail(f"{where} is {described}: more than the {max_size} elements the model "
                      "allows there")
        if free and self.archive.inflates(key):
            self.fail(f"{where} ({described}) is compressed: an array whose size the model does "
                      f"not fix must be stored uncompressed above {_FREE_ARRAY_BYTES} bytes")
        if is_object and not object_ok:
            self.fail(f"{where} may not be an object array")
        self.used.add(key)
        arr = self.archive.read(key)
        if finite and arr.dtype.kind == "f" and not np.isfinite(arr).all():
            self.fail(f"{where} contains NaN or infinity")
        if is_object:
            arr = arr.astype(object)
        if "id" in d:
            self.register(d, arr, where)
        return arr

    def value(self, v, where, tags=_CONFIG_TAGS):
        """A generic JSON value; `tags`: the tagged objects allowed here."""
        if v is None or isinstance(v, (bool, int, float, str)):
            return v
        if isinstance(v, list):
            return [self.value(x, f"{where}[{i}]", tags) for i, x in enumerate(v)]
        if not isinstance(v, dict):
            self.fail(f"{where} holds an unexpected JSON value")
        if _TAG not in v:  # a dict with string keys
            return {k: self.value(x, f"{where}[{k!r}]", tags) for k, x in v.items()}
        tag = v[_TAG]
        if tag not in tags:
            known = tag in _PARAM_TAGS or tag in ("sequential", "estimator")
            self.fail(f"{where} has {'a' if known else 'an unknown'} tag {tag!r}"
                      f"{' that is not allowed there' if known else ''}")
        if tag == "ref":
            obj = self.ref(v, where)
            if isinstance(obj, np.ndarray):
                self.fail(f"{where} refers to an array (arrays are never shared)")
            return obj
        if tag == "array":   # hyper-parameters only (e.g. hidden_layer_sizes as an array)
            return self.array(v, where, kinds="biufU", max_size=_MAX_PARAM_ARRAY, free=True,
                              object_ok=True)
        if tag == "tuple":
            items = self.field(v, "items", list, where)
            return tuple(self.value(x, f"{where}[{i}]", tags) for i, x in enumerate(items))
        if tag == "dict":
            out = {}
            for i, pair in enumerate(self.field(v, "items", list, where)):
                if not isinstance(pair, list) or len(pair) != 2:
                    self.fail(f"{where} item {i} is not a [key, value] pair")
                key = self.value(pair[0], f"{where} key {i}", tags)
                try:
                    hash(key)
                except TypeError:
                    self.fail(f"{where} key {i} is not hashable")
                out[key] = self.value(pair[1], f"{where}[{key!r}]", tags)
            return out
        if tag == "dtype":
            name = self.field(v, "name", str, where)
            try:
                dt = np.dtype(name)
            except TypeError:
                self.fail(f"{where}: unknown dtype {name!r}")
            if dt.kind not in _ARRAY_KINDS or dt.fields is not None:
                self.fail(f"{where}: dtype {name!r} is not allowed")
            return dt
        if tag == "scalar_type":
            name = self.field(v, "name", str, where)
            if name not in _SCALAR_TYPES:
                self.fail(f"{where}: scalar type {name!r} is not allowed")
            return _SCALAR_TYPES[name]
        if tag == "random_state":
            return self.register(v, self.random_state(v, where), where)
        if tag == "layer":
            return self.register(v, self.layer(v, where), where)
        if tag == "optimizer":   # a hyper-parameter: config (and a step count) only
            return self.register(v, self.optimizer(v, where, n_params=None), where)
        self.fail(f"{where} has an unknown tag {tag!r}")  # pragma: no cover - tags checked

    def kwargs(self, v, where, tags=_CONFIG_TAGS):
        config = self.value(v, where, tags)
        if not isinstance(config, dict) or not all(isinstance(k, str) and k.isidentifier()
                                                   for k in config):
            self.fail(f"{where} is not a dict of keyword arguments")
        return config

    # ---------------------------------------------------------------- objects
    def random_state(self, v, where):
        self.keys(v, (_TAG, "bit_generator", "keys", "pos", "has_gauss", "cached_gaussian",
                      "id"), where)
        name = self.field(v, "bit_generator", str, where)
        keys = self.array(self.field(v, "keys", dict, where), f"{where}.keys", dtype=np.uint32,
                          kinds="u", shape=(624,))
        pos = self.field(v, "pos", int, where)
        has_gauss = self.field(v, "has_gauss", int, where)
        cached = self.real(self.field(v, "cached_gaussian", (int, float), where),
                           f"{where}.cached_gaussian")
        if name != "MT19937" or not 0 <= pos <= 624 or has_gauss not in (0, 1):
            self.fail(f"{where} is not a valid MT19937 state")
        rs = np.random.RandomState()
        rs.set_state((name, keys, pos, has_gauss, cached))
        return rs

    def layer(self, v, where, load_state=True):
        """A fresh layer from its spec (and its state; a network loads the states of its layers
        after building them)."""
        self.keys(v, (_TAG, "class", "config", "state", "id"), where)
        name = self.field(v, "class", str, where)
        cls = self.layers.get(name)
        if cls is None:
            self.fail(f"{where}: unknown layer class {name!r} (known: {sorted(self.layers)})")
        config = self.kwargs(self.field(v, "config", dict, where), f"{where}.config")
        try:
            layer = cls.from_config(config)
        except Exception as exc:  # the constructor's checks (TypeError, ValueError, ...)
            self.fail(f"{where}: invalid config for {name}: {exc}")
        if load_state and "state" in v:
            state = self.value(self.field(v, "state", dict, where), f"{where}.state")
            try:
                layer.load_state_dict(state)
            except (TypeError, ValueError) as exc:
                self.fail(f"{where}: invalid state for {name}: {exc}")
        return layer

    def network(self, v, where, built=False):
        """A Sequential: sizes checked against its specs before anything is read or built."""
        self.keys(v, (_TAG, "layers", "loss", "dtype", "input_shape", "random_state", "params",
                      "extra", "id"), where)
        specs = self.field(v, "layers", list, where)
        if not specs:
            self.fail(f"{where}.layers must be a non-empty list of layer specs")
        layers = []
        for i, spec in enumerate(specs):
            if not isinstance(spec, dict) or spec.get(_TAG) != "layer":
                self.fail(f"{where}.layers[{i}] must be a layer spec (a network owns its layers)")
            layers.append(self.register(spec, self.layer(spec, f"{where}.layers[{i}]", False),
                                        f"{where}.layers[{i}]"))
        loss = self.field(v, "loss", str, where)
        if loss not in LOSSES and loss != "squared_error":
            self.fail(f"{where}: the network cannot be rebuilt: unknown loss {loss!r}")
        dtype = self.field(v, "dtype", str, where)
        if dtype not in ("float32", "float64"):
            self.fail(f"{where}.dtype must be 'float32' or 'float64', got {dtype!r}")
        shape = self.field(v, "input_shape", (list, type(None)), where)
        if shape is not None and not (shape and all(isinstance(s, int) and not isinstance(s, bool)
                                                    and 1 <= s <= 2**40 for s in shape)):
            self.fail(f"{where}.input_shape must be a list of positive ints, got {shape!r}")
        if built and shape is None:
            self.fail(f"{where} must be a built network (a fitted estimator's network_)")
        rs_spec = self.field(v, "random_state", (int, dict, type(None)), where)
        if isinstance(rs_spec, int):
            random_state = self.integer(rs_spec, f"{where}.random_state", 0, 2**32 - 1)
        elif isinstance(rs_spec, dict):
            random_state = self.value(rs_spec, f"{where}.random_state",
                                      frozenset({"ref", "random_state"}))
            if type(random_state) is not np.random.RandomState:
                self.fail(f"{where}.random_state must be None, an int or a RandomState")
        else:
            random_state = None
        params_ref = self.field(v, "params", (dict, type(None)), where)
        if (params_ref is None) != (shape is None):
            self.fail(f"{where}: a built network needs both input_shape and params")
        params = None
        if params_ref is not None:
            # sizes first: the parameter count the specs build, before the array is read
            try:
                size = _count_params(layers, shape, dtype)
            except Exception as exc:  # the layers' geometry checks
                self.fail(f"{where}: the network cannot be rebuilt: {exc}")
            params = self.array(params_ref, f"{where}.params", kinds="f", dtype=dtype,
                                shape=(size,), finite=True,
                                need=f"the rebuilt network needs {dtype}[{size}]")
        try:
            # a throwaway seed for build(): the weights and layer states are overwritten below
            net = Sequential(layers, loss=loss, dtype=dtype, random_state=0,
                             input_shape=None if shape is None else tuple(shape))
        except Exception as exc:  # TypeError, ValueError, MemoryError ...
            self.fail(f"{where}: the network cannot be rebuilt: {exc}")
        net.random_state = random_state
        if params is not None:
            if params.shape != net.params.shape:  # pragma: no cover - _count_params agrees
                self.fail(f"{where}.params does not fit the rebuilt network")
            net.params[...] = params
        for i, (layer, spec) in enumerate(zip(layers, specs)):
            # build() re-initialised the layer states (Dropout's generator): load them again
            if "state" in spec:
                state = self.value(spec["state"], f"{where}.layers[{i}].state")
                try:
                    layer.load_state_dict(state)
                except (TypeError, ValueError) as exc:
                    self.fail(f"{where}.layers[{i}]: invalid state: {exc}")
        extra = self.field(v, "extra", dict, where)
        for key, val in extra.items():
            if key not in _SEQUENTIAL_EXTRAS:
                self.fail(f"{where}: attribute {key!r} may not be set from a file (a network "
                          f"file sets only {list(_SEQUENTIAL_EXTRAS)} besides its specs)")
            if key == "clip_grad_norm":
                val = self.real(val, f"{where}.clip_grad_norm", none=True)
                if val is not None and val <= 0:
                    self.fail(f"{where}.clip_grad_norm must be None or > 0, got {val}")
                net.clip_grad_norm = val
        return self.register(v, net, where)

    def optimizer(self, v, where, n_params, dtype=None):
        """An optimizer from its config and state; `n_params` None: a hyper-parameter (no state
        arrays), else its state arrays must be (n_params,) of `dtype`."""
        self.keys(v, (_TAG, "class", "config", "state", "id"), where)
        name = self.field(v, "class", str, where)
        cls = self.optimizers.get(name)
        if cls is None:
            self.fail(f"{where}: unknown optimizer class {name!r} (known: "
                      f"{sorted(self.optimizers)})")
        config = self.kwargs(self.field(v, "config", dict, where), f"{where}.config")
        try:
            opt = cls(**config)
        except (TypeError, ValueError) as exc:
            self.fail(f"{where}: invalid config for {name}: {exc}")
        if "state" not in v:
            return opt
        raw = self.field(v, "state", dict, where)
        names = tuple(cls._state_names)
        self.keys(raw, ("t",) + names, f"{where}.state")
        state = {"t": self.integer(self.field(raw, "t", int, f"{where}.state"),
                                   f"{where}.state['t']")}
        for key in names:
            spec = raw.get(key)
            if spec is None:
                state[key] = None
            elif n_params is None:
                self.fail(f"{where}.state[{key!r}]: an optimizer given as a hyper-parameter "
                          "carries no state arrays")
            else:
                state[key] = self.array(spec, f"{where}.state[{key!r}]", kinds="f", dtype=dtype,
                                        shape=(n_params,), finite=True)
        try:
            opt.load_state_dict(state)
        except (TypeError, ValueError) as exc:
            self.fail(f"{where}: invalid state for {name}: {exc}")
        return opt

    # ---------------------------------------------------------------- estimators
    def estimator(self, v, where):
        self.keys(v, (_TAG, "class", "params", "state"), where)
        name = self.field(v, "class", str, where)
        cls = self.models.get(name)
        if cls is None or name == "Sequential":
            self.fail(f"{where}: unknown estimator class {name!r} (known: "
                      f"{sorted(k for k in self.models if k != 'Sequential')})")
        params = self.kwargs(self.field(v, "params", dict, where), f"{where}.params",
                             _PARAM_TAGS)
        unknown = set(params) - set(cls._get_param_names())
        if unknown:
            self.fail(f"{where}: unknown parameters {sorted(unknown)} for {name}")
        try:
            est = cls(**params)
            est._check_params()          # the hyper-parameters as fit checks them
        except (TypeError, ValueError) as exc:
            self.fail(f"{where}: invalid parameters for {name}: {exc}")
        raw = self.field(v, "state", dict, where)
        if self.version == 1:   # version 1 wrote the hyper-parameters into the state as well
            raw = {k: x for k, x in raw.items() if k not in params}
        state = self.estimator_state(est, name, raw, f"{where}.state")
        # the estimator's unpickling hook rebinds its views (without scikit-learn a NeuralNet
        # estimator has none: object's default sets the attributes)
        setstate = getattr(est, "__setstate__", None) or est.__dict__.update
        try:
            setstate(state)
        except (TypeError, ValueError, KeyError, AttributeError, IndexError) as exc:
            self.fail(f"{where}: the fitted state cannot be restored: {exc}")
        return est

    def estimator_state(self, est, name, raw, where):
        """The fitted attributes of `est`, each decoded and checked (see _fitted_attributes)."""
        fitted = "network_" in raw
        allowed = _fitted_attributes(name) if fitted else _unfitted_attributes(name)
        for key in raw:
            if key not in allowed:
                self.fail(f"{where}: attribute {key!r} may not be set from a file ({name} "
                          f"{'fits' if fitted else 'before fit holds'} only "
                          f"{sorted(allowed) if allowed else 'no attributes'})")
        if not fitted:
            return self.user_weights(raw, where)
        missing = [k for k in _FITTED_REQUIRED + (
            _FITTED_CLASSIFIER if name in _CLASSIFIERS else ()) + (
            _FITTED_MLP if name in _MLP_CLASSES else ()) if k not in raw]
        if missing:
            self.fail(f"{where} lacks the fitted attributes {missing}")
        spec = raw["network_"]
        if not isinstance(spec, dict) or spec.get(_TAG) != "sequential":
            self.fail(f"{where}.network_ must be a network")
        net = self.network(spec, f"{where}.network_", built=True)
        K = net.output_shape[0] if len(net.output_shape) == 1 else None
        if K is None:
            self.fail(f"{where}.network_ must give 1-D outputs (an output Dense layer)")
        P = net.params.shape[0]
        dt = net.dtype
        st = {"network_": net}
        get = lambda key: raw[key]  # noqa: E731
        if "layers_" in raw:
            layers = self.value(get("layers_"), f"{where}.layers_", frozenset({"ref"}))
            if not (isinstance(layers, list) and len(layers) == len(net.layers)
                    and all(a is b for a, b in zip(layers, net.layers))):
                self.fail(f"{where}.layers_ must be the layers of network_")
        st["layers_"] = net.layers
        n_features = math.prod(net.input_shape)
        st["n_features_in_"] = self.integer(get("n_features_in_"), f"{where}.n_features_in_",
                                            n_features, n_features)
        if "feature_names_in_" in raw:
            names = self.array(get("feature_names_in_"), f"{where}.feature_names_in_",
                               kinds="U", shape=(n_features,), object_ok=True)
            st["feature_names_in_"] = names.astype(object)
        st["n_outputs_"] = self.integer(get("n_outputs_"), f"{where}.n_outputs_", K, K)
        loss = get_loss(net.loss)
        link = loss.out_activation
        if get("out_activation_") != link:
            self.fail(f"{where}.out_activation_ must be {link!r} (the network's loss link), got "
                      f"{get('out_activation_')!r}")
        st["out_activation_"] = link
        self.check_head(est, name, net, K, where)
        if name in _CLASSIFIERS:
            st.update(self.classifier_targets(est, raw, loss, K, where))
        elif loss.name != get_loss(est._regression_loss()).name:
            self.fail(f"{where}.network_ has the loss {loss.name!r}, but {name} fits "
                      f"{est._regression_loss()!r}")
        st["n_iter_"] = self.integer(get("n_iter_"), f"{where}.n_iter_")
        st["t_"] = self.integer(get("t_"), f"{where}.t_")
        st["loss_"] = self.real(get("loss_"), f"{where}.loss_", none=True, nan=True,
                                posinf=True)
        if "loss_curve_" in raw:    # a diverged epoch's loss is NaN or +inf (as scikit-learn's)
            st["loss_curve_"] = self.history(get("loss_curve_"), f"{where}.loss_curve_",
                                             max_len=st["t_"], nan=True, posinf=True)
        if "best_loss_" in raw:
            st["best_loss_"] = self.real(get("best_loss_"), f"{where}.best_loss_", none=True,
                                         posinf=True)
        if "validation_scores_" in raw:
            st["validation_scores_"] = self.history(
                get("validation_scores_"), f"{where}.validation_scores_",
                max_len=len(st.get("loss_curve_") or ()), nan=True, neginf=True, none=True)
        if "validation_loss_curve_" in raw:
            st["validation_loss_curve_"] = self.history(
                get("validation_loss_curve_"), f"{where}.validation_loss_curve_",
                max_len=len(st.get("loss_curve_") or ()), nan=True, posinf=True, none=True)
        loss = st["loss_"]
        if loss is not None and not math.isfinite(loss):
            # only the record of a fit that diverged with early stopping: its last epoch
            curve = st.get("loss_curve_") or [0.0]
            scores = st.get("validation_scores_") or [0.0]
            if not (str(curve[-1]) == str(loss) and math.isnan(scores[-1])):
                self.fail(f"{where}.loss_ must be a finite number, got {loss!r} (a non-finite "
                          "loss is only the last epoch of a fit that diverged with "
                          "early_stopping)")
        if "best_validation_score_" in raw:
            st["best_validation_score_"] = self.real(
                get("best_validation_score_"), f"{where}.best_validation_score_", none=True,
                neginf=True)
        if "_no_improvement_count" in raw:
            st["_no_improvement_count"] = self.integer(get("_no_improvement_count"),
                                                       f"{where}._no_improvement_count")
        st["_best_params"] = self.array(get("_best_params"), f"{where}._best_params", kinds="f",
                                        dtype=dt, shape=(P,), finite=True)
        if "_optimizer" in raw:
            spec = get("_optimizer")
            if not isinstance(spec, dict) or spec.get(_TAG) != "optimizer" or "state" not in spec:
                self.fail(f"{where}._optimizer must be an optimizer with its state")
            st["_optimizer"] = self.register(spec, self.optimizer(spec, f"{where}._optimizer",
                                                                  P, dt), f"{where}._optimizer")
        if name in _MLP_CLASSES:
            dense = est._dense_layers(net)
            for key, k in (("coefs_", 0), ("intercepts_", 1)):
                st[key] = self.weight_list(get(key), f"{where}.{key}",
                                           [layer.params[k].shape for layer in dense])
            st["n_layers_"] = self.integer(get("n_layers_"), f"{where}.n_layers_",
                                           len(dense) + 1, len(dense) + 1)
        return st

    def check_head(self, est, name, net, K, where):
        """The network is one this estimator class builds: MLP* alternate Dense and activation
        layers on 1-D input; every estimator ends in a Dense of n_outputs_ units."""
        layers = net.layers
        if type(layers[-1]) is not Dense or layers[-1].units != K:
            self.fail(f"{where}.network_ must end in the output Dense layer of {K} units")
        if name in _MLP_CLASSES:
            acts = tuple(ACTIVATIONS.values())
            ok = len(net.input_shape) == 1 and len(layers) % 2 == 1 and all(
                (type(layer) is Dense) if i % 2 == 0 else (type(layer) in acts)
                for i, layer in enumerate(layers))
            if not ok:
                self.fail(f"{where}.network_ is not a multi-layer perceptron (Dense layers "
                          "alternating with activations on 1-D input)")

    def classifier_targets(self, est, raw, loss, K, where):
        """classes_, _label_type and _target_mode, against each other and the output width."""
        mode = raw["_target_mode"]
        if mode not in _TARGET_MODES:
            self.fail(f"{where}._target_mode must be one of {list(_TARGET_MODES)}, got {mode!r}")
        label_type = raw["_label_type"]
        if label_type not in _LABEL_TYPES:
            self.fail(f"{where}._label_type must be one of {list(_LABEL_TYPES)}, got "
                      f"{label_type!r}")
        want_loss = est._loss_for_mode(mode)
        if loss.name != want_loss:
            self.fail(f"{where}.network_ has the loss {loss.name!r}, but target mode {mode!r} "
                      f"trains {want_loss!r}")
        # the most classes the output layer can tell apart in this mode
        limit = {"softmax": K, "sigmoid": 2, "ovr": K, "multilabel": K}[mode]
        classes = self.array(raw["classes_"], f"{where}.classes_", kinds="biufU", ndim=1,
                             max_size=limit, finite=True, object_ok=True)
        n = classes.shape[0]
        sizes_ok = {"softmax": n == K or (K == 2 and n == 1), "sigmoid": K == 1 and n >= 1,
                    "ovr": n == K, "multilabel": n == K}[mode]
        if not sizes_ok or n == 0:
            self.fail(f"{where}.classes_ has {n} classes, which a {mode} output layer of {K} "
                      "units does not fit")
        plain = np.array(classes.tolist()) if classes.dtype == object else classes
        if n > 1 and not np.all(plain[1:] > plain[:-1]):
            self.fail(f"{where}.classes_ must be sorted and unique (as np.unique gives them)")
        if (mode == "multilabel") != (label_type == "multilabel-indicator") or (
                mode != "multilabel" and (label_type == "multiclass") != (n > 2)):
            self.fail(f"{where}: _label_type {label_type!r} does not match {n} classes in "
                      f"mode {mode!r}")
        if mode == "multilabel" and not (classes.dtype.kind in "iu"
                                         and np.array_equal(classes, np.arange(K))):
            self.fail(f"{where}.classes_ of a multilabel model must be 0..{K - 1}")
        return {"classes_": classes, "_label_type": label_type, "_target_mode": mode}

    def history(self, v, where, max_len, nan=False, neginf=False, none=False, posinf=False):
        """A loss curve / score list: a float64 array (or, in version 1 files, a JSON list)."""
        if v is None and none:
            return None
        if isinstance(v, list):
            values = [self.real(x, f"{where}[{i}]", nan=nan, neginf=neginf, posinf=posinf)
                      for i, x in enumerate(v)]
        else:
            arr = self.array(v, where, kinds="f", dtype=np.float64, ndim=1, free=True)
            ok = np.isfinite(arr)
            if nan:
                ok |= np.isnan(arr)
            if neginf:
                ok |= arr == -np.inf
            if posinf:
                ok |= arr == np.inf
            if not ok.all():
                self.fail(f"{where} holds values out of range (NaN or infinity)")
            values = arr.tolist()
        if len(values) > max_len:
            self.fail(f"{where} has {len(values)} entries, more than the fit's counters allow "
                      f"({max_len})")
        return values

    def weight_list(self, v, where, shapes):
        """coefs_ / intercepts_ of a fitted MLP: None (a view, rebound on load) or an array the
        user assigned, of the layer's shape."""
        if not isinstance(v, list) or len(v) != len(shapes):
            self.fail(f"{where} must be a list of {len(shapes)} entries")
        return [None if a is None else self.array(a, f"{where}[{i}]", kinds="iuf", shape=shape,
                                                  finite=True)
                for i, (a, shape) in enumerate(zip(v, shapes))]

    def user_weights(self, raw, where):
        """coefs_ / intercepts_ assigned to an unfitted MLP (initial weights of the first
        partial_fit or warm start): lists of 2-D / 1-D arrays, checked again when used."""
        st = {}
        for key, ndim in (("coefs_", 2), ("intercepts_", 1)):
            if key not in raw:
                continue
            v = raw[key]
            if not isinstance(v, list) or not v:
                self.fail(f"{where}.{key} must be a non-empty list of arrays")
            st[key] = [self.array(a, f"{where}.{key}[{i}]", kinds="iuf", ndim=ndim, free=True,
                                  finite=True) for i, a in enumerate(v)]
        return st


def _count_params(layers, input_shape, dtype):
    """Parameter count of `layers` built on `input_shape` (declaration only, nothing allocated)."""
    shape = tuple(input_shape)
    total = 0
    for layer in layers:
        shape = tuple(layer.build(shape, np.dtype(dtype)))
        for spec in layer.param_specs():
            total += math.prod(int(s) for s in spec.shape)
    return total


# --------------------------------------------------------------------------- public API
def save(obj, path):
    """Save an nnc estimator or Sequential to a safe model file (an ``.npz`` without pickles).

    Parameters
    ----------
    obj : Sequential, MLPClassifier, MLPRegressor, NeuralNetClassifier or NeuralNetRegressor
        Fitted or not.
    path : str, os.PathLike or binary file object
        Written as given (no suffix is added); ``.npz`` or ``.nnc`` are good suffixes.  A path is
        written atomically (a temporary file in the same folder, flushed to disk, then renamed
        over the previous file): a crash while writing leaves the previous file as it was.

    Raises
    ------
    ValueError
        When ``obj`` is not an nnc model or holds a value the format cannot store safely (a
        user-defined class, a callable, an object array of mixed items, an attribute its class
        does not fit).
    """
    enc = _Encoder()
    if isinstance(obj, Sequential):
        top = enc.value(obj, "Sequential")
    elif hasattr(obj, "get_params"):  # checked against the allow-list by estimator()
        top = enc.estimator(obj, type(obj).__name__)
    else:
        raise ValueError(f"nnc.save expects an nnc estimator or Sequential, got "
                         f"{type(obj).__module__}.{type(obj).__qualname__}")
    doc = {"format": FORMAT_NAME, "format_version": FORMAT_VERSION, "nnc_version": __version__,
           "object": top}
    # key order matters: objects are defined before the references to them
    text = json.dumps(doc, allow_nan=True).encode("utf-8")
    if len(text) > MAX_DOC_BYTES:
        raise ValueError(f"cannot save: the model description takes {len(text)} bytes, more than "
                         f"the {MAX_DOC_BYTES} a model file may hold (hyper-parameters too large)")
    arrays = dict(enc.arrays)
    arrays[_DOC_KEY] = np.frombuffer(text, dtype=np.uint8)
    if hasattr(path, "write"):
        np.savez(path, **arrays)
        return
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".nnc-", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, "wb") as fh:
            np.savez(fh, **arrays)
            fh.flush()
            os.fsync(fh.fileno())    # on disk before it replaces the previous file
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def load(path):
    """Load a model written by :func:`save`; returns the estimator or Sequential.

    No pickle is read and no code from the file runs: classes are resolved through allow-lists
    of nnc's own classes and rebuilt from their specs.  Every member's size is checked against
    what the description implies before it is read (no decompression bombs), and every field is
    validated before the model is returned (see the module docstring).  A loaded model continues
    training exactly as the saved one would have.

    Parameters
    ----------
    path : str, os.PathLike or binary file object

    Raises
    ------
    FileNotFoundError
        When ``path`` does not exist.
    ValueError
        When the file is not a valid nnc model file (not an npz, pickled or object arrays, bad
        JSON, unknown class names or attributes, wrong array sizes, dtypes or values, a
        description larger than MAX_DOC_BYTES, a newer format).
    """
    source = repr(path) if hasattr(path, "read") else os.fspath(path)
    if not hasattr(path, "read") and not os.path.exists(source):
        raise FileNotFoundError(f"No such model file: {source!r}")
    archive = _Archive(path, source)
    try:
        return _load(archive, source)
    finally:
        archive.close()


def _load(archive, source):
    def fail(msg):
        raise ValueError(f"{source}: not a valid nnc model file: {msg}")

    if _DOC_KEY not in archive.members:
        fail(f"the {_DOC_KEY!r} entry is missing")
    dtype, shape = archive.header(_DOC_KEY)
    if dtype != np.uint8 or len(shape) != 1:
        fail(f"the {_DOC_KEY!r} entry must be a 1-D uint8 array")
    if shape[0] > MAX_DOC_BYTES:
        fail(f"the model description takes {shape[0]} bytes, more than the {MAX_DOC_BYTES} "
             "allowed")
    raw = archive.read(_DOC_KEY)
    try:
        doc = json.loads(raw.tobytes().decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:  # JSONDecodeError too
        fail(f"the model description is not valid JSON: {exc}")
    if not isinstance(doc, dict) or doc.get("format") != FORMAT_NAME:
        fail("the format name is missing or wrong")
    version = doc.get("format_version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        fail(f"bad format_version {version!r}")
    if version > FORMAT_VERSION:
        fail(f"format_version {version} was written by a newer nnc "
             f"({doc.get('nnc_version')}); this nnc reads up to {FORMAT_VERSION}")
    if "object" not in doc:
        fail("the 'object' entry is missing")
    dec = _Decoder(archive, source, version)
    top = doc["object"]
    if not isinstance(top, dict) or top.get(_TAG) not in ("sequential", "estimator"):
        fail("the top-level object must be a Sequential or an estimator")
    try:
        obj = dec.estimator(top, "object") if top[_TAG] == "estimator" else \
            dec.network(top, "object")
    except RecursionError:
        fail("the model description is nested too deeply")
    unused = set(archive.members) - dec.used - {_DOC_KEY}
    if unused:
        fail(f"unexpected arrays {sorted(unused)}")
    return obj
