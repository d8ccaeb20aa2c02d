"""Safe model files: ``save(obj, path)`` / ``load(path)`` for Sequential and every nnc estimator.

A model file is one ``.npz`` archive (``numpy.savez``) read back with ``allow_pickle=False``:

* ``__nnc_model__``  a uint8 array holding a UTF-8 JSON document: the format name and version, the
  nnc version that wrote it, and the object, described as JSON values;
* ``a0``, ``a1``, ...  the arrays the document refers to (the flat parameter buffer of each network,
  fitted arrays such as ``classes_``), all of bool, integer, float or unicode dtype.

The document describes an object as tagged JSON: ``{"__nnc__": "estimator",
"class": "MLPClassifier", "params": {...get_params()...}, "state": {...fitted attributes...}}``;
a network as its layer specs ``{"__nnc__": "layer", "class": "Dense", "config": {...}}`` plus
loss, input shape, dtype and the parameter array; an optimizer as its ``get_config()`` and
``state_dict()``; tuples, dicts, dtypes, RandomState states and arrays each have their own tag.
An object met twice (``layers_`` holds the layers of ``network_``) is written once with an
``"id"`` and then referred to as ``{"__nnc__": "ref", "id": k}``; references only point
backwards, in document order.
Classes are looked up by name in allow-lists of nnc's own public classes (estimators, Sequential,
nnc.layers, nnc.optimizers), never imported by name, and objects are rebuilt through their
constructors (layers: ``from_config``), so loading never runs code taken from the file.  Anything
unexpected (unknown tag or class, an array of the wrong size or dtype, an object array, bad JSON,
missing keys) raises ValueError.

Loading mirrors unpickling: a network is rebuilt from its specs, the saved buffer copied into its
fresh ``params`` (views rebound by construction); an estimator is created with its saved params and
then receives its decoded state through ``__setstate__``, the hook that rebinds its views after a
pickle round trip too (STYLE.md, Persistence).

Model files sit above what they save: this module imports the network, the layers, the
optimizers and the estimators at module level, and none of them imports it at module level
(``Sequential.save`` and the estimators' ``SaveMixin.save`` import it when called), so the
package imports in one direction (tests/test_layering.py checks it).
"""
import json
import numbers
import os
import tempfile

import numpy as np

import nnc.layers
import nnc.optimizers
from nnc import _estimators
from nnc._estimators._base import SaveMixin  # noqa: F401  (nnc._io.SaveMixin, as before)
from nnc._network import Sequential
from nnc._version import __version__
from nnc.layers._base import Layer
from nnc.losses import Loss
from nnc.optimizers import Optimizer

FORMAT_NAME = "nnc-model"
FORMAT_VERSION = 1
_DOC_KEY = "__nnc_model__"
_TAG = "__nnc__"
#: array dtype kinds a model file may hold: bool, signed / unsigned int, float, unicode
_ARRAY_KINDS = "biufU"
#: attributes of a Sequential rebuilt by its constructor / build() rather than stored
_NETWORK_REBUILT = {"layers", "loss", "_loss", "dtype", "random_state", "input_shape",
                    "output_shape", "params", "grads", "n_decay", "_batch_size", "_layout"}
_SCALAR_TYPES = {"float32": np.float32, "float64": np.float64}


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
    """Object → tagged JSON + arrays.  Shared objects (arrays, RandomStates, layers, networks,
    optimizers) are written once with an ``"id"`` and referred to afterwards by
    ``{"__nnc__": "ref", "id": k}``, so aliasing (``layers_`` is ``network_.layers``) survives."""

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
        return self.shared(arr, lambda: self._array(arr, where), where)

    def _array(self, arr, where):
        was_object = arr.dtype.kind == "O"
        plain = _object_to_plain(arr, where) if was_object else arr
        if plain.dtype.kind not in _ARRAY_KINDS or plain.dtype.fields is not None:
            raise ValueError(f"cannot save {where}: arrays of dtype {plain.dtype} are not "
                             "supported (bool, int, float and str only)")
        key = f"a{len(self.arrays)}"
        self.arrays[key] = np.ascontiguousarray(plain)
        return {_TAG: "array", "key": key, "object": was_object}

    def value(self, v, where):
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
            return {_TAG: "tuple", "items": [self.value(x, f"{where}[{i}]")
                                             for i, x in enumerate(v)]}
        if isinstance(v, list):
            return [self.value(x, f"{where}[{i}]") for i, x in enumerate(v)]
        if isinstance(v, dict):
            if all(isinstance(k, str) for k in v) and _TAG not in v:
                return {k: self.value(x, f"{where}[{k!r}]") for k, x in v.items()}
            return {_TAG: "dict", "items": [[self.value(k, f"{where} key"),
                                             self.value(x, f"{where}[{k!r}]")]
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
            return self.shared(v, lambda: self.optimizer(v, where), where)
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
                "config": self.value(dict(layer.get_config()), f"{where}.get_config()")}

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
        extra = {}
        for key, val in net.__dict__.items():
            if key in _NETWORK_REBUILT or key.startswith("_"):
                continue  # rebuilt on load, or private caches (workspaces, compiled-loop state)
            extra[key] = self.value(val, f"{where}.{key}")
        out["extra"] = extra
        return out

    def optimizer(self, opt, where):
        name = _registered_name(opt, self.optimizers, f"{where} (an optimizer)")
        return {_TAG: "optimizer", "class": name,
                "config": self.value(dict(opt.get_config()), f"{where}.get_config()"),
                "state": self.value(dict(opt.state_dict()), f"{where}.state_dict()")}

    def estimator(self, est, where):
        name = _registered_name(est, self.models, where)
        params = est.get_params(deep=False)
        state = est.__getstate__() if hasattr(est, "__getstate__") else dict(est.__dict__)
        if state is None:  # object.__getstate__ of an instance without attributes
            state = {}
        # params first: the decoder reads them first too (references point backwards only)
        return {_TAG: "estimator", "class": name,
                "params": {k: self.value(v, f"{name}.{k}") for k, v in params.items()},
                "state": {k: self.value(v, f"{name}.{k}") for k, v in state.items()}}


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


# --------------------------------------------------------------------------- decoding (load)
class _Decoder:
    """Tagged JSON + arrays → objects, validating every field; see _Encoder for the format."""

    def __init__(self, arrays, source):
        self.arrays = arrays
        self.used = set()
        self.objects = {}   # ref number -> decoded shared object
        self.source = source
        self.models, self.layers, self.optimizers = _registries()

    def fail(self, msg):
        raise ValueError(f"{self.source}: not a valid nnc model file: {msg}")

    def field(self, d, key, types, where):
        if not isinstance(d, dict) or key not in d:
            self.fail(f"{where} lacks the key {key!r}")
        val = d[key]
        types = types if isinstance(types, tuple) else (types,)
        if not isinstance(val, types) or (isinstance(val, bool) and bool not in types):
            self.fail(f"{where}[{key!r}] has the wrong type ({type(val).__name__})")
        return val

    def register(self, d, obj, where):
        ref = self.field(d, "id", int, where)
        if ref in self.objects:
            self.fail(f"{where}: object id {ref} is defined twice")
        self.objects[ref] = obj
        return obj

    def array(self, d, where):
        if isinstance(d, dict) and d.get(_TAG) == "ref":
            arr = self.ref(d, where)
            if not isinstance(arr, np.ndarray):
                self.fail(f"{where} must refer to an array")
            return arr
        if not isinstance(d, dict) or d.get(_TAG) != "array":
            self.fail(f"{where} must be an array")
        key = self.field(d, "key", str, where)
        if key not in self.arrays or key == _DOC_KEY:
            self.fail(f"{where} refers to a missing array {key!r}")
        if key in self.used:
            self.fail(f"{where}: array {key!r} is used twice")
        self.used.add(key)
        arr = self.arrays[key]
        if self.field(d, "object", bool, where):
            if arr.dtype.kind not in "biufU":
                self.fail(f"{where}: bad dtype for an object array")
            arr = arr.astype(object)
        return self.register(d, arr, where)

    def ref(self, d, where):
        ref = self.field(d, "id", int, where)
        if ref not in self.objects:
            self.fail(f"{where} refers to object {ref}, which is not defined before it")
        return self.objects[ref]

    def value(self, v, where):
        if v is None or isinstance(v, (bool, int, float, str)):
            return v
        if isinstance(v, list):
            return [self.value(x, f"{where}[{i}]") for i, x in enumerate(v)]
        if not isinstance(v, dict):
            self.fail(f"{where} holds an unexpected JSON value")
        if _TAG not in v:  # a dict with string keys
            return {k: self.value(x, f"{where}[{k!r}]") for k, x in v.items()}
        tag = v[_TAG]
        if tag == "ref":
            return self.ref(v, where)
        if tag == "array":
            return self.array(v, where)
        if tag == "tuple":
            items = self.field(v, "items", list, where)
            return tuple(self.value(x, f"{where}[{i}]") for i, x in enumerate(items))
        if tag == "dict":
            out = {}
            for i, pair in enumerate(self.field(v, "items", list, where)):
                if not isinstance(pair, list) or len(pair) != 2:
                    self.fail(f"{where} item {i} is not a [key, value] pair")
                key = self.value(pair[0], f"{where} key {i}")
                try:
                    hash(key)
                except TypeError:
                    self.fail(f"{where} key {i} is not hashable")
                out[key] = self.value(pair[1], f"{where}[{key!r}]")
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
        if tag == "sequential":
            return self.network(v, where)  # registers itself (before its params alias)
        if tag == "optimizer":
            return self.register(v, self.optimizer(v, where), where)
        self.fail(f"{where} has an unknown tag {tag!r}")

    def kwargs(self, v, where):
        config = self.value(v, where)
        if not isinstance(config, dict) or not all(isinstance(k, str) and k.isidentifier()
                                                   for k in config):
            self.fail(f"{where} is not a dict of keyword arguments")
        return config

    def random_state(self, v, where):
        name = self.field(v, "bit_generator", str, where)
        keys = self.array(self.field(v, "keys", dict, where), f"{where}.keys")
        pos = self.field(v, "pos", int, where)
        has_gauss = self.field(v, "has_gauss", int, where)
        cached = self.field(v, "cached_gaussian", (int, float), where)
        if name != "MT19937" or keys.dtype != np.uint32 or keys.shape != (624,) or \
                not 0 <= pos <= 624 or has_gauss not in (0, 1):
            self.fail(f"{where} is not a valid MT19937 state")
        rs = np.random.RandomState()
        rs.set_state((name, keys, pos, has_gauss, float(cached)))
        return rs

    def layer(self, v, where):
        name = self.field(v, "class", str, where)
        cls = self.layers.get(name)
        if cls is None:
            self.fail(f"{where}: unknown layer class {name!r} (known: {sorted(self.layers)})")
        config = self.kwargs(self.field(v, "config", dict, where), f"{where}.config")
        try:
            return cls.from_config(config)
        except (TypeError, ValueError) as exc:
            self.fail(f"{where}: invalid config for {name}: {exc}")

    def network(self, v, where):
        layers = [self.value(x, f"{where}.layers[{i}]")
                  for i, x in enumerate(self.field(v, "layers", list, where))]
        if not layers or not all(isinstance(layer, Layer) for layer in layers):
            self.fail(f"{where}.layers must be a non-empty list of layer specs")
        if any(layer.params for layer in layers):
            self.fail(f"{where}: a layer appears in two networks")
        loss = self.field(v, "loss", str, where)
        dtype = self.field(v, "dtype", str, where)
        if dtype not in ("float32", "float64"):
            self.fail(f"{where}.dtype must be 'float32' or 'float64', got {dtype!r}")
        shape = self.field(v, "input_shape", (list, type(None)), where)
        if shape is not None and not (shape and all(isinstance(s, int) and not isinstance(s, bool)
                                                    and s >= 1 for s in shape)):
            self.fail(f"{where}.input_shape must be a list of positive ints, got {shape!r}")
        random_state = self.value(self.field(v, "random_state", (int, dict, type(None)), where),
                                  f"{where}.random_state")
        params_ref = self.field(v, "params", (dict, type(None)), where)
        if (params_ref is None) != (shape is None):
            self.fail(f"{where}: a built network needs both input_shape and params")
        params = None
        if params_ref is not None:
            if params_ref.get(_TAG) != "array" or params_ref.get("object") is not False:
                self.fail(f"{where}.params must be a float array")
            params = self.array(params_ref, f"{where}.params")
            # sizes first, so a tampered shape cannot make the rebuild allocate gigabytes
            try:
                size = _count_params(layers, shape, dtype)
            except (TypeError, ValueError, OverflowError) as exc:
                self.fail(f"{where}: the network cannot be rebuilt: {exc}")
            if params.dtype != np.dtype(dtype) or params.shape != (size,):
                self.fail(f"{where}.params is {params.dtype}{list(params.shape)} but the rebuilt "
                          f"network needs {dtype}[{size}]")
        try:
            # a throwaway seed for build(): the weights are overwritten below
            net = Sequential(layers, loss=loss, dtype=dtype, random_state=0,
                             input_shape=None if shape is None else tuple(shape))
        except (TypeError, ValueError, MemoryError) as exc:
            self.fail(f"{where}: the network cannot be rebuilt: {exc}")
        net.random_state = random_state
        if params is not None:
            if params.shape != net.params.shape:  # pragma: no cover - _count_params agrees
                self.fail(f"{where}.params does not fit the rebuilt network")
            net.params[...] = params
            # later references to the saved buffer mean the live buffer
            self.objects[params_ref["id"]] = net.params
        for key, val in self.field(v, "extra", dict, where).items():
            if key in _NETWORK_REBUILT or key.startswith("_") or not key.isidentifier():
                self.fail(f"{where}: attribute {key!r} may not be set from a file")
            setattr(net, key, self.value(val, f"{where}.{key}"))
        return self.register(v, net, where)

    def optimizer(self, v, where):
        name = self.field(v, "class", str, where)
        cls = self.optimizers.get(name)
        if cls is None:
            self.fail(f"{where}: unknown optimizer class {name!r} (known: "
                      f"{sorted(self.optimizers)})")
        config = self.kwargs(self.field(v, "config", dict, where), f"{where}.config")
        state = self.value(self.field(v, "state", dict, where), f"{where}.state")
        try:
            opt = cls(**config)
            opt.load_state_dict(state)
        except (TypeError, ValueError) as exc:
            self.fail(f"{where}: invalid config or state for {name}: {exc}")
        return opt

    def estimator(self, v, where):
        name = self.field(v, "class", str, where)
        cls = self.models.get(name)
        if cls is None or name == "Sequential":
            self.fail(f"{where}: unknown estimator class {name!r} (known: "
                      f"{sorted(k for k in self.models if k != 'Sequential')})")
        params = self.kwargs(self.field(v, "params", dict, where), f"{where}.params")
        try:
            est = cls(**params)
        except (TypeError, ValueError) as exc:
            self.fail(f"{where}: invalid parameters for {name}: {exc}")
        raw_state = self.field(v, "state", dict, where)
        state = {}
        for key, val in raw_state.items():
            if not key.isidentifier() or key.startswith("__"):
                self.fail(f"{where}: attribute {key!r} may not be set from a file")
            state[key] = self.value(val, f"{where}.{key}")
        try:
            if hasattr(est, "__setstate__"):  # the estimator's own unpickling hook rebinds views
                est.__setstate__(state)
            else:
                est.__dict__.update(state)
        except (TypeError, ValueError, KeyError, AttributeError, IndexError) as exc:
            self.fail(f"{where}: the fitted state cannot be restored: {exc}")
        return est


def _count_params(layers, input_shape, dtype):
    """Parameter count of `layers` built on `input_shape` (declaration only, nothing allocated)."""
    shape = tuple(input_shape)
    total = 0
    for layer in layers:
        shape = tuple(layer.build(shape, np.dtype(dtype)))
        for spec in layer.param_specs():
            total += int(np.prod(spec.shape, dtype=object))
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
        written atomically (a temporary file in the same folder, then renamed).

    Raises
    ------
    ValueError
        When ``obj`` is not an nnc model or holds a value the format cannot store safely (a
        user-defined class, a callable, an object array of mixed items).
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
    text = json.dumps(doc, allow_nan=True)
    arrays = dict(enc.arrays)
    arrays[_DOC_KEY] = np.frombuffer(text.encode("utf-8"), dtype=np.uint8)
    if hasattr(path, "write"):
        np.savez(path, **arrays)
        return
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".nnc-", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, "wb") as fh:
            np.savez(fh, **arrays)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def load(path):
    """Load a model written by :func:`save`; returns the estimator or Sequential.

    The file is read with ``allow_pickle=False``; classes are resolved through allow-lists of nnc's
    own classes and rebuilt from their specs, so no code from the file runs.

    Parameters
    ----------
    path : str, os.PathLike or binary file object

    Raises
    ------
    FileNotFoundError
        When ``path`` does not exist.
    ValueError
        When the file is not a valid nnc model file (not an npz, pickled or object arrays, bad
        JSON, unknown class names, wrong array sizes or dtypes, missing keys, a newer format).
    """
    source = repr(path) if hasattr(path, "read") else os.fspath(path)
    if not hasattr(path, "read") and not os.path.exists(source):
        raise FileNotFoundError(f"No such model file: {source!r}")
    arrays = _read_arrays(path, source)

    def fail(msg):
        raise ValueError(f"{source}: not a valid nnc model file: {msg}")

    raw = arrays.get(_DOC_KEY)
    if raw is None:
        fail(f"the {_DOC_KEY!r} entry is missing")
    if raw.dtype != np.uint8 or raw.ndim != 1:
        fail(f"the {_DOC_KEY!r} entry must be a 1-D uint8 array")
    try:
        doc = json.loads(raw.tobytes().decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
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
    dec = _Decoder(arrays, source)
    top = doc["object"]
    if not isinstance(top, dict) or top.get(_TAG) not in ("sequential", "estimator"):
        fail("the top-level object must be a Sequential or an estimator")
    try:
        obj = dec.estimator(top, "object") if top[_TAG] == "estimator" else \
            dec.value(top, "object")
    except RecursionError:
        fail("the model description is nested too deeply")
    unused = set(arrays) - dec.used - {_DOC_KEY}
    if unused:
        fail(f"unexpected arrays {sorted(unused)}")
    return obj


def _reason(exc):
    """numpy's message, unless it advises an ``allow_pickle=`` argument (nnc.load has none and
    never unpickles)."""
    if "allow_pickle" in str(exc):
        return "numpy reads it only by unpickling, which nnc never does"
    return str(exc)


def _read_arrays(path, source):
    """Every array of the npz at `path`, read without pickle; ValueError for anything else."""
    try:
        loaded = np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise
    except Exception as exc:  # ValueError (pickled data), OSError, EOFError, zipfile.BadZipFile
        raise ValueError(f"{source}: not a valid nnc model file (not an npz archive, or it holds "
                         f"pickled data): {_reason(exc)}") from None
    if not isinstance(loaded, np.lib.npyio.NpzFile):
        raise ValueError(f"{source}: not a valid nnc model file: a single .npy array, not an "
                         "npz archive")
    arrays = {}
    with loaded:
        for key in loaded.files:
            try:
                arr = loaded[key]
            except (ValueError, OSError, EOFError, KeyError) as exc:
                # object arrays refuse to load without pickle: "Object arrays cannot be loaded..."
                raise ValueError(f"{source}: not a valid nnc model file: array {key!r} cannot be "
                                 f"read without pickle: {_reason(exc)}") from None
            except Exception as exc:  # zipfile errors (BadZipFile, CRC) and the like
                raise ValueError(f"{source}: not a valid nnc model file: array {key!r} is "
                                 f"corrupt: {exc}") from None
            if arr.dtype.kind not in _ARRAY_KINDS or arr.dtype.fields is not None:
                raise ValueError(f"{source}: not a valid nnc model file: array {key!r} has "
                                 f"dtype {arr.dtype} (only bool, int, float and str are allowed)")
            arrays[key] = arr
    return arrays

