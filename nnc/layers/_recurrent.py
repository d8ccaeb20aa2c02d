"""Recurrent layers: SimpleRNN, LSTM, GRU and the Bidirectional wrapper.

Input is batch-first: X (n_samples, n_timesteps, n_features), per-sample ``input_shape``
(n_timesteps, n_features).  Output is the last hidden state (n_samples, units), or every state
(n_samples, n_timesteps, units) with ``return_sequences=True``.  Initial states are zero.

The layers own the views and workspaces; the compiled kernels in ``nnc._kernels._recurrent`` do all
the work (one GEMM for the input projection of every step, one GEMM per step for the recurrence,
fused gate kernels, backward through time with one GEMM for both weight gradients).  The gate
history is consumed by backward, so backward must follow a forward call.  On CPUs with AVX2 and
FMA the same kernels compiled for that ISA (``nnc._kernels._recurrent_avx2``) are used.
"""
import abc

import numpy as np

from nnc._kernels import _recurrent as _K
from nnc.layers._base import Layer, ParamSpec, _check_positive_int

if _K.cpu_has_avx2_fma():  # same kernels compiled for AVX2 + FMA (see _recurrent_avx2.pyx)
    try:
        from nnc._kernels import _recurrent_avx2 as _K
    except ImportError:  # pragma: no cover - module not built
        pass


def _check_sequence_shape(layer, input_shape):
    """(T, F) from a per-sample input shape, else ValueError/TypeError."""
    name = type(layer).__name__
    try:
        shape = tuple(input_shape)
    except TypeError:
        raise TypeError(f"{name}: input_shape must be a tuple (n_timesteps, n_features), "
                        f"got {input_shape!r}") from None
    if len(shape) != 2:
        raise ValueError(f"{name} expects a per-sample input_shape (n_timesteps, n_features) "
                         f"(input of rank 3 with the batch axis), got {shape!r}")
    for s in shape:
        if not isinstance(s, (int, np.integer)) or isinstance(s, bool):
            raise TypeError(f"{name}: input_shape entries must be ints, got {shape!r}")
        if s < 1:
            raise ValueError(f"{name}: input_shape entries must be >= 1, got {shape!r}")
    return int(shape[0]), int(shape[1])


def _check_dtype(layer, dtype):
    dt = np.dtype(dtype)
    if dt not in (np.float32, np.float64):
        raise ValueError(f"{type(layer).__name__}: dtype must be float32 or float64, got {dt}")
    return dt


def _padded_stride(m, itemsize):
    """Row stride (elements) >= m spanning an odd number of 64-byte lines.

    Feature-major histories are read one (rows, n) block per step; with rows exactly T*n apart
    (7 KiB at T = 28, n = 64, float32) the rows of a block fall into a quarter of the cache sets.
    Padding made the LSTM forward + backward ~1-2% faster at that size."""
    per_line = max(1, 64 // itemsize)
    lines = -(-m // per_line)
    if lines % 2 == 0:
        lines += 1
    return lines * per_line


def _staggered_empty(size, dtype, slot):
    """Flat uninitialised array of `size` elements starting `slot` * 704 bytes (mod 4 KiB) into a
    page.

    Large NumPy allocations all start at the same offset within a page, so row r of two histories
    (e.g. the GRU's P and Q) shares its low 12 address bits: a load from one right after a store
    to the other then waits on a false dependency ("4K aliasing").  Staggering the starts removed
    it; the GRU backward gate kernel got ~2x faster at batch 64."""
    dtype = np.dtype(dtype)
    raw = np.empty(size + 4096 // dtype.itemsize, dtype=dtype)
    target = (slot * 704) % 4096
    shift = ((target - raw.ctypes.data) % 4096) // dtype.itemsize
    return raw[shift:shift + size]


def _orthogonal(rng, n, dtype):
    """A random (n, n) orthogonal matrix (QR of a Gaussian matrix, signs fixed by diag(R))."""
    q, r = np.linalg.qr(rng.standard_normal((n, n)))
    q *= np.sign(np.diag(r))
    return q.astype(dtype, copy=False)


class _Recurrent(Layer):
    """Shared machinery of SimpleRNN, LSTM and GRU (see the module docstring)."""

    _n_gates = 1
    _n_acc = 1              # bias-gradient accumulators in backward (GRU: 2)
    _bias_names = ("b",)

    def __init__(self, units, return_sequences=False):
        super().__init__()
        self.units = _check_positive_int(units, "units")
        if not isinstance(return_sequences, (bool, np.bool_)):
            raise TypeError(f"return_sequences must be a bool, got "
                            f"{type(return_sequences).__name__}")
        self.return_sequences = bool(return_sequences)
        self._reverse = False      # True for the backward copy inside Bidirectional
        self._n_ready = 0          # rows of the last forward whose history backward may consume

    def get_config(self):
        return {"units": self.units, "return_sequences": self.return_sequences}

    def __getstate__(self):
        state = super().__getstate__()
        state["_n_ready"] = 0       # the gate history is a workspace: not pickled
        return state

    # -- declaration ---------------------------------------------------------------------------
    def build(self, input_shape, dtype):
        T, F = _check_sequence_shape(self, input_shape)
        self.dtype = _check_dtype(self, dtype)
        self.input_shape = (T, F)
        self.output_shape = (T, self.units) if self.return_sequences else (self.units,)
        return self.output_shape

    def param_specs(self):
        if self.input_shape is None:
            raise ValueError(f"{type(self).__name__} is not built yet")
        F = self.input_shape[1]
        U = self.units
        G = self._n_gates * U
        specs = [ParamSpec("W_x", (F, G), True), ParamSpec("W_h", (U, G), True)]
        specs += [ParamSpec(name, (G,), False) for name in self._bias_names]
        return specs

    def init_params(self, rng):
        """W_x Glorot-uniform, W_h orthogonal per gate block, biases zero."""
        W_x, W_h = self.params[0], self.params[1]
        F, G = W_x.shape
        U = self.units
        limit = np.sqrt(6.0 / (F + G))
        W_x[...] = rng.uniform(-limit, limit, size=(F, G))
        for k in range(self._n_gates):
            W_h[:, k * U:(k + 1) * U] = _orthogonal(rng, U, W_h.dtype)
        for b in self.params[2:]:
            b[...] = 0

    def allocate(self, batch_size):
        super().allocate(batch_size)
        B = self.batch_size
        T, F = self.input_shape
        U = self.units
        G = self._n_gates * U
        dt = self.dtype
        # Histories are feature-major (rows, T, n) with the sample axis innermost: each is a flat
        # buffer whose leading rows*ld elements hold the (rows, T, n) view of a batch of n, rows
        # ld = _padded_stride(T*n) apart (see _hist).
        self._ws_z = _staggered_empty((F + U) * self._ld(T + 1, B), dt, 0)    # [x_s; h_{s-1}]
        self._ws_p = _staggered_empty(G * self._ld(T, B), dt, 1)
        self._ws_wht = np.empty((G, U), dtype=dt)
        self._ws_dh = _staggered_empty(U * B, dt, 2)
        self._ws_acc = _staggered_empty(self._n_acc * G * B, dt, 3)
        self._ws_dxf = np.empty(F * T * B, dtype=dt)
        self._ws_dx = np.empty((B, T, F), dtype=dt)
        self._ws_out = np.empty((B,) + self.output_shape, dtype=dt)
        self._allocate_cell(B, T, U, G, dt)

    def _allocate_cell(self, B, T, U, G, dt):
        """Cell-specific workspaces."""

    # -- computation ---------------------------------------------------------------------------
    def _check_input(self, X):
        if not isinstance(X, np.ndarray) or X.ndim != 3 or X.shape[1:] != self.input_shape:
            raise ValueError(f"{type(self).__name__}: X must have shape (n, {self.input_shape[0]}, "
                             f"{self.input_shape[1]}), got {getattr(X, 'shape', None)}")
        if X.dtype != self.dtype:
            raise ValueError(f"{type(self).__name__}: X has dtype {X.dtype}, the layer uses "
                             f"{self.dtype}")
        n = X.shape[0]
        if not 1 <= n <= self.batch_size:
            raise ValueError(f"{type(self).__name__}: {n} samples, workspaces hold 1 to "
                             f"{self.batch_size} (call allocate)")
        return n

    @staticmethod
    def _view(buf, *shape):
        """Contiguous view of the leading prod(shape) elements of a flat workspace."""
        return buf[:int(np.prod(shape))].reshape(shape)

    def _ld(self, slots, n):
        return _padded_stride(slots * n, self.dtype.itemsize)

    def _hist(self, buf, rows, slots, n):
        """(rows, slots, n) view of a flat workspace, rows _ld(slots, n) elements apart."""
        ld = self._ld(slots, n)
        return buf[:rows * ld].reshape(rows, ld)[:, :slots * n].reshape(rows, slots, n)

    def _forward(self, X, training):
        n = self._check_input(X)
        Y = self._ws_out[:n]
        self._run_forward(X, Y if self.return_sequences else Y.reshape(n, 1, self.units))
        return Y

    def _backward(self, dY, need_dX):
        n = self._n_ready
        if n == 0:
            raise RuntimeError(f"{type(self).__name__}.backward needs a preceding forward (the "
                               "gate history is consumed by backward)")
        if dY.shape != (n,) + self.output_shape or dY.dtype != self.dtype:
            raise ValueError(f"{type(self).__name__}: dY must have shape "
                             f"{(n,) + self.output_shape} and dtype {self.dtype}, got {dY.shape} "
                             f"{dY.dtype}")
        return self._run_backward(dY if self.return_sequences else dY.reshape(n, 1, self.units),
                                  need_dX)

    @abc.abstractmethod
    def _run_forward(self, X, Y3):
        """Kernel call writing the states into Y3 (n, T or 1, U): any strides, contiguous last
        axis (Bidirectional passes halves of its output)."""

    @abc.abstractmethod
    def _run_backward(self, dY3, need_dX):
        """Kernel call for backprop through time; returns dX or None."""

    def _common(self, n):
        """(Z, P, dh, acc, dXf, dX) views for a batch of n (dXf, dX None unless requested)."""
        T, F = self.input_shape
        U = self.units
        G = self._n_gates * U
        return (self._hist(self._ws_z, F + U, T + 1, n), self._hist(self._ws_p, G, T, n),
                self._view(self._ws_dh, U, n), self._view(self._ws_acc, self._n_acc * G, n))

    def _dx_views(self, n, need_dX):
        if not need_dX:
            return None, None
        T, F = self.input_shape
        return self._view(self._ws_dxf, F, T, n), self._ws_dx[:n]


class SimpleRNN(_Recurrent):
    """Fully recurrent layer: h_t = tanh(x_t W_x + h_{t-1} W_h + b), h_0 = 0.

    Parameters
    ----------
    units : int
        Size U of the hidden state.
    return_sequences : bool, default=False
        Output every state (n_samples, n_timesteps, U) instead of the last one (n_samples, U).

    Notes
    -----
    Parameter tensors: W_x (n_features, U), W_h (U, U), b (U,).
    """

    def _run_forward(self, X, Y3):
        n = X.shape[0]
        Z, P, _, _ = self._common(n)
        W_x, W_h, b = self.params
        _K.rnn_forward(X, W_x, W_h, b, Z, P, self._ws_wht, Y3, self._reverse)
        self._n_ready = n

    def _run_backward(self, dY3, need_dX):
        n = self._n_ready
        Z, P, dh, acc = self._common(n)
        dXf, dX = self._dx_views(n, need_dX)
        self._n_ready = 0
        _K.rnn_backward(Z, self.params[0], self.params[1], P, dY3, self.grads[0], self.grads[1],
                        self.grads[2], dh, acc, dXf, dX, self._reverse)
        return dX


class LSTM(_Recurrent):
    """Long short-term memory layer, gates in the order i, f, g, o.

    i, f, o = sigmoid(.), g = tanh(.) of x_t W_x + h_{t-1} W_h + b (column blocks of width U);
    c_t = f c_{t-1} + i g;  h_t = o tanh(c_t);  h_0 = c_0 = 0.

    Parameters
    ----------
    units : int
        Size U of the hidden and cell states.
    return_sequences : bool, default=False
        Output every state (n_samples, n_timesteps, U) instead of the last one (n_samples, U).

    Notes
    -----
    Parameter tensors: W_x (n_features, 4U), W_h (U, 4U), b (4U,) (forget block initialised to 1).
    """

    _n_gates = 4

    def init_params(self, rng):
        super().init_params(rng)
        U = self.units
        self.params[2][U:2 * U] = 1

    def _allocate_cell(self, B, T, U, G, dt):
        self._ws_c = _staggered_empty(U * self._ld(T + 1, B), dt, 4)
        self._ws_tc = _staggered_empty(U * self._ld(T, B), dt, 5)
        self._ws_dc = _staggered_empty(U * B, dt, 6)

    def _cell_views(self, n):
        T, U = self.input_shape[0], self.units
        return (self._hist(self._ws_c, U, T + 1, n), self._hist(self._ws_tc, U, T, n),
                self._view(self._ws_dc, U, n))

    def _run_forward(self, X, Y3):
        n = X.shape[0]
        Z, P, _, _ = self._common(n)
        C, TC, _ = self._cell_views(n)
        W_x, W_h, b = self.params
        _K.lstm_forward(X, W_x, W_h, b, Z, P, C, TC, self._ws_wht, Y3, self._reverse)
        self._n_ready = n

    def _run_backward(self, dY3, need_dX):
        n = self._n_ready
        Z, P, dh, acc = self._common(n)
        C, TC, dc = self._cell_views(n)
        dXf, dX = self._dx_views(n, need_dX)
        self._n_ready = 0
        _K.lstm_backward(Z, self.params[0], self.params[1], P, C, TC, dY3, self.grads[0],
                         self.grads[1], self.grads[2], dh, dc, acc, dXf, dX, self._reverse)
        return dX


class GRU(_Recurrent):
    """Gated recurrent unit (PyTorch / cuDNN variant), gates in the order r, z, n.

    r, z = sigmoid(x_t W_x + b_x + h_{t-1} W_h + b_h) (blocks r, z);
    n = tanh(x_t W_xn + b_xn + r * (h_{t-1} W_hn + b_hn));  h_t = (1 - z) n + z h_{t-1};  h_0 = 0.

    Parameters
    ----------
    units : int
        Size U of the hidden state.
    return_sequences : bool, default=False
        Output every state (n_samples, n_timesteps, U) instead of the last one (n_samples, U).

    Notes
    -----
    Parameter tensors: W_x (n_features, 3U), W_h (U, 3U), b_x (3U,), b_h (3U,).
    """

    _n_gates = 3
    _n_acc = 2
    _bias_names = ("b_x", "b_h")

    def _allocate_cell(self, B, T, U, G, dt):
        self._ws_hh = _staggered_empty(G * B, dt, 4)
        self._ws_hn = _staggered_empty(U * self._ld(T, B), dt, 5)
        self._ws_q = _staggered_empty(G * self._ld(T, B), dt, 6)

    def _cell_views(self, n):
        T, U = self.input_shape[0], self.units
        return (self._view(self._ws_hh, 3 * U, n), self._hist(self._ws_hn, U, T, n),
                self._hist(self._ws_q, 3 * U, T, n))

    def _run_forward(self, X, Y3):
        n = X.shape[0]
        Z, P, _, _ = self._common(n)
        HH, HN, _ = self._cell_views(n)
        W_x, W_h, b_x, b_h = self.params
        _K.gru_forward(X, W_x, W_h, b_x, b_h, Z, P, HH, HN, self._ws_wht, Y3, self._reverse)
        self._n_ready = n

    def _run_backward(self, dY3, need_dX):
        n = self._n_ready
        Z, P, dh, acc = self._common(n)
        _, HN, Q = self._cell_views(n)
        dXf, dX = self._dx_views(n, need_dX)
        self._n_ready = 0
        _K.gru_backward(Z, self.params[0], self.params[1], P, Q, HN, dY3, self.grads[0],
                        self.grads[1], self.grads[2], self.grads[3], dh, acc, dXf, dX,
                        self._reverse)
        return dX


_RECURRENT_CLASSES = {cls.__name__: cls for cls in (SimpleRNN, LSTM, GRU)}
_MERGE_MODES = ("concat", "sum", "ave", "mul")


class Bidirectional(Layer):
    """Run a recurrent layer over the sequence and a second copy over the reversed sequence.

    Parameters
    ----------
    layer : SimpleRNN, LSTM or GRU instance, or {"class_name": ..., "config": {...}}
        Template of both directions: each direction is a fresh layer with this configuration and
        its own parameters.
    merge : {'concat', 'sum', 'ave', 'mul'}, default='concat'
        How the two outputs are combined; 'concat' joins them along the last axis, giving
        (n_samples, 2U) or (n_samples, n_timesteps, 2U).

    Notes
    -----
    With ``return_sequences=True`` the backward direction's outputs are re-reversed so that
    position t of both halves belongs to input step t (PyTorch's bidirectional output); otherwise
    each half is that direction's final state (PyTorch's h_n).  Parameter tensors: the forward
    layer's, prefixed ``fw_``, then the backward layer's, prefixed ``bw_``.
    """

    def __init__(self, layer, merge="concat"):
        super().__init__()
        if isinstance(layer, dict):
            if set(layer) != {"class_name", "config"}:
                raise ValueError("layer given as a dict needs exactly the keys 'class_name' and "
                                 f"'config', got {sorted(layer)}")
            cls = _RECURRENT_CLASSES.get(layer["class_name"])
            if cls is None:
                raise ValueError(f"layer class_name must be one of {sorted(_RECURRENT_CLASSES)}, "
                                 f"got {layer['class_name']!r}")
            config = dict(layer["config"])
        elif isinstance(layer, _Recurrent):
            cls, config = type(layer), layer.get_config()
        else:
            raise TypeError(f"layer must be a SimpleRNN, LSTM or GRU instance, got "
                            f"{type(layer).__name__}")
        if not isinstance(merge, str) or merge not in _MERGE_MODES:
            raise ValueError(f"merge must be one of {_MERGE_MODES}, got {merge!r}")
        self.merge = merge
        self.forward_layer = cls(**config)
        self.backward_layer = cls(**config)
        self.backward_layer._reverse = True

    def get_config(self):
        return {"layer": {"class_name": type(self.forward_layer).__name__,
                          "config": self.forward_layer.get_config()},
                "merge": self.merge}

    def build(self, input_shape, dtype):
        out = self.forward_layer.build(input_shape, dtype)
        self.backward_layer.build(input_shape, dtype)
        self.input_shape = self.forward_layer.input_shape
        self.dtype = self.forward_layer.dtype
        if self.merge == "concat":
            out = out[:-1] + (2 * out[-1],)
        self.output_shape = out
        return out

    def param_specs(self):
        return ([ParamSpec("fw_" + s.name, s.shape, s.decay)
                 for s in self.forward_layer.param_specs()]
                + [ParamSpec("bw_" + s.name, s.shape, s.decay)
                   for s in self.backward_layer.param_specs()])

    def bind(self, params, grads):
        super().bind(params, grads)
        k = len(self.forward_layer.param_specs())
        self.forward_layer.bind(self.params[:k], self.grads[:k])
        self.backward_layer.bind(self.params[k:], self.grads[k:])

    def init_params(self, rng):
        self.forward_layer.init_params(rng)
        self.backward_layer.init_params(rng)

    def allocate(self, batch_size):
        super().allocate(batch_size)
        self.forward_layer.allocate(batch_size)
        self.backward_layer.allocate(batch_size)
        self._ws_out = np.empty((self.batch_size,) + self.output_shape, dtype=self.dtype)
        if self.merge == "mul":
            self._ws_dyb = np.empty_like(self.forward_layer._ws_out)

    def _forward(self, X, training):
        fw, bw = self.forward_layer, self.backward_layer
        n = fw._check_input(X)
        Y = self._ws_out[:n]
        if self.merge == "concat":
            U = fw.units
            Y3 = Y if fw.return_sequences else Y.reshape(n, 1, 2 * U)
            fw._run_forward(X, Y3[:, :, :U])
            bw._run_forward(X, Y3[:, :, U:])
            return Y
        yf = fw._forward(X, training)
        yb = bw._forward(X, training)
        if self.merge == "mul":
            np.multiply(yf, yb, out=Y)
        else:
            np.add(yf, yb, out=Y)
            if self.merge == "ave":
                Y *= 0.5
        return Y

    def _backward(self, dY, need_dX):
        fw, bw = self.forward_layer, self.backward_layer
        n = fw._n_ready
        if n == 0 or bw._n_ready != n:
            raise RuntimeError("Bidirectional.backward needs a preceding forward")
        if dY.shape != (n,) + self.output_shape or dY.dtype != self.dtype:
            raise ValueError(f"Bidirectional: dY must have shape {(n,) + self.output_shape} and "
                             f"dtype {self.dtype}, got {dY.shape} {dY.dtype}")
        if self.merge == "concat":
            U = fw.units
            dY3 = dY if fw.return_sequences else dY.reshape(n, 1, 2 * U)
            dXf = fw._run_backward(dY3[:, :, :U], need_dX)
            dXb = bw._run_backward(dY3[:, :, U:], need_dX)
        else:
            if self.merge == "ave":
                dY *= 0.5
            dYb = dY
            if self.merge == "mul":
                dYb = self._ws_dyb[:n]
                np.multiply(dY, fw._ws_out[:n], out=dYb)
                dY *= bw._ws_out[:n]
            dXf = fw._backward(dY, need_dX)
            dXb = bw._backward(dYb, need_dX)
        if not need_dX:
            return None
        np.add(dXf, dXb, out=dXf)
        return dXf
