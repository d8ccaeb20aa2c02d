"""One ONNX exporter per layer class: the registry ``nnc.to_onnx`` walks a network with.

An exporter is ``fn(g, layer, x) -> y``: ``g`` is a ``_graph.Graph``, ``x`` the name of the
layer's input tensor (n, *layer.input_shape) and ``y`` the name of its output tensor
(n, *layer.output_shape), both batch-first as in nnc.  Exporters read a layer only through its
public face (``get_weights()`` in ``param_specs`` order, ``get_config()`` values, the built
``input_shape`` / ``output_shape``), never its workspaces.  ``register(cls, input_dtype=...)``
adds one; ``input_dtype(layer, dtype)`` (default: the network dtype) types the graph input when
the layer comes first, so a layer reading integer ids (an embedding) declares int64 there.

A new layer class adds its exporter here (and an ONNX Runtime parity case in
tests/onnx/test_layers.py); tests/onnx/test_registry.py fails for a public layer without one.

Layouts.  nnc's weights are laid out for its own kernels and mapped onto ONNX's here:
Dense W (in, out) -> MatMul + Add; Conv2D W (F, C, KH, KW) and Conv1D W (F, C, k) are ONNX's
Conv weights as they are; recurrent W_x (F, G), W_h (U, G) become ONNX's W (dirs, G, F) and
R (dirs, G, U) with the gate blocks reordered (LSTM nnc i, f, g, o -> ONNX i, o, f, c; GRU nnc
r, z, n -> ONNX z, r, h with ``linear_before_reset=1``, which is nnc's GRU: the reset gate
multiplies h W_hn + b_hn); nnc's batch-first (n, T, F) sequences are transposed to ONNX's
(T, n, F) and back.  float64 graphs use exact decompositions for the operators ONNX Runtime has
no double kernel for (``Graph.native``).
"""
import itertools
from collections import namedtuple

import numpy as np

from nnc.layers import (AvgPool1D, AvgPool2D, BatchNorm, Bidirectional, Conv1D, Conv2D, Dense,
                        Dropout, Embedding, Flatten, GlobalAvgPool, GlobalMaxPool, GRU, Identity,
                        LayerNorm, LeakyReLU, LSTM, MaxPool1D, MaxPool2D, MultiHeadSelfAttention,
                        PositionalEmbedding, ReLU, Residual, Sigmoid, SimpleRNN, Tanh,
                        TransformerEncoderBlock)
from nnc.layers._positional import sinusoidal_table

LayerExporter = namedtuple("LayerExporter", ["export", "input_dtype"])

_EXPORTERS = {}


def register(*classes, input_dtype=None):
    """Decorator: ``fn(g, layer, x) -> y`` exports layers of exactly these classes.

    ``input_dtype(layer, dtype) -> numpy dtype`` types the graph input when such a layer is
    first (None: the network dtype)."""
    def decorate(fn):
        for cls in classes:
            _EXPORTERS[cls] = LayerExporter(fn, input_dtype)
        return fn
    return decorate


def get_exporter(layer, position=None):
    """The LayerExporter of ``layer``'s exact class; TypeError naming the class otherwise (a
    subclass may compute something else, so it needs its own exporter)."""
    entry = _EXPORTERS.get(type(layer))
    if entry is None:
        where = "" if position is None else f" (layer {position})"
        raise TypeError(f"cannot export {type(layer).__name__}{where} to ONNX: no exporter is "
                        f"registered for {type(layer).__module__}.{type(layer).__qualname__} "
                        "(exporters live in nnc/_onnx/_layers.py)")
    return entry


def registered_classes():
    return set(_EXPORTERS)


def export_layers(g, layers, x):
    """Export ``layers`` in order from tensor ``x``; returns the last output.  Carries the
    sequence mask in ``g.mask`` as the layers carry theirs: a source (Embedding with a
    padding_idx) makes it from its input ids, a layer that keeps positions keeps it, any other
    layer drops it."""
    for i, layer in enumerate(layers):
        ids = x
        x = get_exporter(layer, i).export(g, layer, x)
        if layer.mask_source:
            pad = g.ints(layer.get_config()["padding_idx"], "padding_idx")
            g.mask = g.op("Not", [g.op("Equal", [ids, pad], "is_padding")], "sequence_mask")
        elif not layer.keeps_mask:
            g.mask = None
    return x


# --------------------------------------------------------------------------- dense, activations
@register(Dense)
def _dense(g, layer, x):
    W, b = layer.get_weights()
    y = g.op("MatMul", [x, g.const(W, "dense_W")], "dense_xw")
    return g.op("Add", [y, g.const(b, "dense_b")], "dense")


@register(Identity, Dropout)
def _passthrough(g, layer, x):
    """Identity, and Dropout at inference (inverted dropout scales in training only)."""
    return x


@register(ReLU)
def _relu(g, layer, x):
    return g.op("Relu", [x], "relu")


@register(Sigmoid)
def _sigmoid(g, layer, x):
    return g.op("Sigmoid", [x], "sigmoid")


@register(Tanh)
def _tanh(g, layer, x):
    return g.op("Tanh", [x], "tanh")


@register(LeakyReLU)
def _leaky_relu(g, layer, x):
    slope = layer.get_config()["negative_slope"]
    if g.dtype == np.float32:
        return g.op("LeakyRelu", [x], "leaky_relu", alpha=slope)
    # ONNX float attributes are 32-bit: alpha=0.2 would be 0.2000000029 in a float64 model.
    # With 0 < slope < 1, max(x, slope x) is x for x > 0 and slope x otherwise, exactly.
    return g.op("Max", [x, g.op("Mul", [x, g.const(slope, "slope")], "slope_x")], "leaky_relu")


@register(Flatten)
def _flatten(g, layer, x):
    return g.op("Flatten", [x], "flatten", axis=1)


# --------------------------------------------------------------------------- convolution, pooling
def _conv_geometry(layer):
    """(kernel, strides, pads per spatial axis) of Conv2D / Conv1D from their config."""
    cfg = layer.get_config()
    if isinstance(layer, Conv1D):
        return [cfg["kernel_size"]], [cfg["stride"]], [cfg["padding"]]
    return list(cfg["kernel_size"]), list(cfg["stride"]), list(cfg["padding"])


def _window_slices(g, x, kernel, strides, out_spatial):
    """One strided Slice of x (n, C, *S) per kernel offset, row-major over the offsets: slice k
    holds x[:, :, k_1 + s_1 o_1, ...] for every output position o."""
    axes = list(range(2, 2 + len(kernel)))
    slices = []
    for offset in itertools.product(*[range(k) for k in kernel]):
        ends = [o + (n - 1) * s + 1 for o, n, s in zip(offset, out_spatial, strides)]
        slices.append(g.slice(x, list(offset), ends, axes, strides, "window"))
    return slices


def _pad_spatial(g, x, pads):
    if not any(pads):
        return x
    return g.op("Pad", [x, g.ints([0, 0] + list(pads) + [0, 0] + list(pads))], "pad")


@register(Conv2D, Conv1D)
def _conv(g, layer, x):
    W, b = layer.get_weights()                       # (F, C, *K), (F,)
    kernel, strides, pads = _conv_geometry(layer)
    if g.native("Conv"):
        return g.op("Conv", [x, g.const(W, "conv_W"), g.const(b, "conv_b")], "conv",
                    kernel_shape=kernel, strides=strides, pads=pads + pads)
    # exact decomposition: im2col by strided slices, one MatMul, the bias
    F, C = W.shape[:2]
    out_spatial = list(layer.output_shape[1:])
    KK = int(np.prod(kernel))
    cols = g.op("Concat", _window_slices(g, _pad_spatial(g, x, pads), kernel, strides,
                                         out_spatial), "im2col", axis=1)   # (n, KK*C, *O)
    cols = g.reshape(cols, [0, KK * C, -1], "im2col_2d")                   # (n, KK*C, P)
    # row k*C + c of the columns is channel c at kernel offset k: W as (F, KK*C) in that order
    Wm = np.moveaxis(W, 1, -1).reshape(F, KK * C)
    y = g.op("MatMul", [g.const(Wm, "conv_Wm"), cols], "conv_mm")        # (n, F, P)
    y = g.op("Add", [y, g.const(b.reshape(F, 1), "conv_b")], "conv_b_add")
    return g.reshape(y, [0, F] + out_spatial, "conv")


def _pool_config(layer):
    """(kernel, strides, pads per spatial axis) of a 1-D or 2-D pool from its config."""
    cfg = layer.get_config()
    if isinstance(layer, (MaxPool1D, AvgPool1D)):
        kernel, pads = [cfg["pool_size"]], [cfg.get("padding", 0)]
        return kernel, kernel if cfg["stride"] is None else [cfg["stride"]], pads
    kernel = list(cfg["pool_size"])
    strides = kernel if cfg["stride"] is None else list(cfg["stride"])
    return kernel, strides, list(cfg.get("padding", [0, 0]))


@register(MaxPool2D, MaxPool1D)
def _max_pool(g, layer, x):
    """MaxPool (it has a float64 kernel); its pads are -inf, as nnc's."""
    kernel, strides, pads = _pool_config(layer)
    return g.op("MaxPool", [x], "max_pool", kernel_shape=kernel, strides=strides,
                pads=pads + pads)


@register(AvgPool2D, AvgPool1D)
def _avg_pool(g, layer, x):
    """AveragePool (with count_include_pad) in float32; in float64 the window sum by strided
    slices of the zero-padded input, divided by the window size or by each window's count of
    input values (a constant)."""
    kernel, strides, pads = _pool_config(layer)
    include_pad = layer.get_config()["count_include_pad"]
    if g.native("AveragePool"):
        return g.op("AveragePool", [x], "avg_pool", kernel_shape=kernel, strides=strides,
                    pads=pads + pads, count_include_pad=int(include_pad))
    out_spatial = list(layer.output_shape[1:])
    slices = _window_slices(g, _pad_spatial(g, x, pads), kernel, strides, out_spatial)
    total = slices[0] if len(slices) == 1 else g.op("Sum", slices, "window_sum")
    if include_pad or not any(pads):
        return g.op("Mul", [total, g.const(1.0 / np.prod(kernel), "inv_window")], "avg_pool")
    # input values per window: the same window sums over a padded map of ones
    ones = np.pad(np.ones(layer.input_shape[1:]), [(p, p) for p in pads])
    count = np.zeros(out_spatial)
    for offset in itertools.product(*[range(k) for k in kernel]):
        index = tuple(slice(o, o + (n - 1) * s + 1, s)
                      for o, n, s in zip(offset, out_spatial, strides))
        count += ones[index]
    return g.op("Div", [total, g.const(count, "window_count")], "avg_pool")


@register(GlobalAvgPool, GlobalMaxPool)
def _global_pool(g, layer, x):
    """ReduceMean / ReduceMax over the positions (both have float64 kernels): every sample axis
    but the first (channels first) or the last (channels last).  With a sequence mask (``g.mask``
    reaching a (T, F) pool that reads it): the padded positions are replaced (Where) by 0 for
    the mean, whose ReduceSum is divided by the number of real positions, or by the dtype's
    lowest value for the max; a sample with no real position gives 0, as nnc does."""
    rank = len(layer.input_shape)
    axes = list(range(1, rank)) if layer._channels_last else list(range(2, rank + 1))
    is_max = isinstance(layer, GlobalMaxPool)
    if g.mask is None or not layer.takes_mask:
        op = "ReduceMax" if is_max else "ReduceMean"
        return g.reduce(op, x, axes, "global_pool", keepdims=0)
    real = g.unsqueeze(g.mask, [2], "real_positions")                        # (n, T, 1)
    count = g.reduce("ReduceSum", g.op("Where", [real, g.const(1.0, "one"), g.const(0.0, "zero")],
                                       "real_ones"), [1], "real_count", keepdims=0)  # (n, 1)
    if is_max:
        kept = g.op("Where", [real, x, g.const(np.finfo(g.dtype).min, "lowest")], "masked_x")
        y = g.reduce("ReduceMax", kept, [1], "masked_max", keepdims=0)
    else:
        kept = g.op("Where", [real, x, g.const(0.0, "zero")], "masked_x")
        total = g.reduce("ReduceSum", kept, [1], "masked_sum", keepdims=0)
        y = g.op("Div", [total, g.op("Max", [count, g.const(1.0, "one")], "real_count_1")],
                 "masked_mean")
    any_real = g.op("Greater", [count, g.const(0.0, "zero")], "any_real")    # (n, 1)
    return g.op("Where", [any_real, y, g.const(0.0, "zero")], "global_pool")


# --------------------------------------------------------------------------- recurrent
# ONNX gate order as a permutation of nnc's gate blocks
_ONNX_GATES = {SimpleRNN: [0], LSTM: [0, 3, 1, 2], GRU: [1, 0, 2]}
_ONNX_OP = {SimpleRNN: "RNN", LSTM: "LSTM", GRU: "GRU"}


def _gate_blocks(a, order, U):
    """Reorder the gate blocks (width U) of the last axis of a."""
    return np.concatenate([a[..., k * U:(k + 1) * U] for k in order], axis=-1)


def _onnx_weights(layer):
    """(W (G, F), R (G, U), B (2G,)) of one direction in ONNX's gate order."""
    weights = layer.get_weights()
    W_x, W_h = weights[0], weights[1]
    U = layer.units
    order = _ONNX_GATES[type(layer)]
    W = _gate_blocks(W_x, order, U).T
    R = _gate_blocks(W_h, order, U).T
    if isinstance(layer, GRU):
        b_x, b_h = weights[2], weights[3]
        B = np.concatenate([_gate_blocks(b_x, order, U), _gate_blocks(b_h, order, U)])
    else:   # one bias, applied once: ONNX's Wb, with Rb = 0
        B = np.concatenate([_gate_blocks(weights[2], order, U), np.zeros_like(weights[2])])
    return W, R, B


def _native_recurrent(g, layers, x):
    """One ONNX RNN / LSTM / GRU node for one direction or both (Bidirectional); returns, per
    direction, its output in nnc's layout: (n, T, U) or the final state (n, U)."""
    cell = layers[0]
    U = cell.units
    Ws, Rs, Bs = zip(*(_onnx_weights(layer) for layer in layers))
    direction = "bidirectional" if len(layers) == 2 else "forward"
    attrs = dict(hidden_size=U, direction=direction)
    if isinstance(cell, GRU):
        attrs["linear_before_reset"] = 1
    if isinstance(cell, SimpleRNN):
        attrs["activations"] = ["Tanh"] * len(layers)
    xt = g.op("Transpose", [x], "time_major", perm=[1, 0, 2])            # (T, n, F)
    kind = _ONNX_OP[type(cell)]
    n_out = 3 if kind == "LSTM" else 2
    outs = g.op(kind, [xt, g.const(np.stack(Ws), kind + "_W"), g.const(np.stack(Rs), kind + "_R"),
                       g.const(np.stack(Bs), kind + "_B")], kind.lower(), n_outputs=n_out,
                **attrs)
    Y, Y_h = outs[0], outs[1]            # (T, dirs, n, U), (dirs, n, U)
    results = []
    for d in range(len(layers)):
        if cell.return_sequences:
            y = g.op("Gather", [Y, g.ints(d)], "direction", axis=1)           # (T, n, U)
            results.append(g.op("Transpose", [y], "batch_major", perm=[1, 0, 2]))
        else:
            results.append(g.op("Gather", [Y_h, g.ints(d)], "last_state", axis=0))
    return results


def _cols(g, a, k, U, hint):
    """Gate block k (columns k U .. (k+1) U) of a (n, G) tensor."""
    return g.slice(a, [k * U], [(k + 1) * U], [1], hint=hint)


def _unrolled_recurrent(g, layer, x, reverse):
    """The recurrence unrolled over the T steps in plain operators (exact, any dtype);
    returns (n, T, U) or the final state (n, U), as nnc's kernels (h_0 = c_0 = 0)."""
    weights = layer.get_weights()
    W_x, W_h = weights[0], weights[1]
    U = layer.units
    T = layer.input_shape[0]
    is_gru = isinstance(layer, GRU)
    # input projection of every step at once: (n, T, G)
    xp = g.op("MatMul", [x, g.const(W_x, "rnn_Wx")], "x_proj")
    xp = g.op("Add", [xp, g.const(weights[2], "rnn_b")], "x_proj_b")
    W_h = g.const(W_h, "rnn_Wh")
    if is_gru:   # the hidden-side biases of r, z, n (added to h W_h, inside r * (.) for n)
        b_h = [g.const(weights[3][k * U:(k + 1) * U], "rnn_bh") for k in range(3)]
    h = c = None
    states = [None] * T
    for s in range(T):
        t = T - 1 - s if reverse else s
        p = g.op("Gather", [xp, g.ints(t)], "x_t", axis=1)                    # (n, G)
        hp = None if h is None else g.op("MatMul", [h, W_h], "h_proj")
        if is_gru:
            hh = [b_h[k] if hp is None else
                  g.op("Add", [_cols(g, hp, k, U, "h_gate"), b_h[k]], "h_gate_b")
                  for k in range(3)]
            r = g.op("Sigmoid", [g.op("Add", [_cols(g, p, 0, U, "xr"), hh[0]], "r_pre")], "r")
            z = g.op("Sigmoid", [g.op("Add", [_cols(g, p, 1, U, "xz"), hh[1]], "z_pre")], "z")
            rh = g.op("Mul", [r, hh[2]], "r_hn")
            n = g.op("Tanh", [g.op("Add", [_cols(g, p, 2, U, "xn"), rh], "n_pre")], "n")
            one_minus_z = g.op("Sub", [g.const(1.0, "one"), z], "one_minus_z")
            new_h = g.op("Mul", [one_minus_z, n], "h_new")
            if h is not None:
                new_h = g.op("Add", [new_h, g.op("Mul", [z, h], "z_h")], "h")
            h = new_h
        else:
            a = p if hp is None else g.op("Add", [p, hp], "pre")
            if isinstance(layer, SimpleRNN):
                h = g.op("Tanh", [a], "h")
            else:   # LSTM, blocks i, f, g, o
                i = g.op("Sigmoid", [_cols(g, a, 0, U, "i_pre")], "i")
                f = g.op("Sigmoid", [_cols(g, a, 1, U, "f_pre")], "f")
                gg = g.op("Tanh", [_cols(g, a, 2, U, "g_pre")], "g")
                o = g.op("Sigmoid", [_cols(g, a, 3, U, "o_pre")], "o")
                ig = g.op("Mul", [i, gg], "i_g")
                c = ig if c is None else g.op("Add", [g.op("Mul", [f, c], "f_c"), ig], "c")
                h = g.op("Mul", [o, g.op("Tanh", [c], "tanh_c")], "h")
        states[t] = h
    if not layer.return_sequences:
        return h
    return g.op("Concat", [g.unsqueeze(state, [1], "h_t") for state in states], "sequence",
                axis=1)


def _recurrent_outputs(g, layers, x):
    """Per direction (layers[1] runs over the reversed sequence), nnc's output layout."""
    if g.native(_ONNX_OP[type(layers[0])]):
        return _native_recurrent(g, layers, x)
    return [_unrolled_recurrent(g, layer, x, reverse=(d == 1)) for d, layer in enumerate(layers)]


@register(SimpleRNN, LSTM, GRU)
def _recurrent(g, layer, x):
    return _recurrent_outputs(g, [layer], x)[0]


@register(Bidirectional)
def _bidirectional(g, layer, x):
    yf, yb = _recurrent_outputs(g, [layer.forward_layer, layer.backward_layer], x)
    merge = layer.get_config()["merge"]
    if merge == "concat":
        return g.op("Concat", [yf, yb], "bidirectional", axis=-1)
    if merge == "mul":
        return g.op("Mul", [yf, yb], "bidirectional")
    y = g.op("Add", [yf, yb], "bidirectional_sum")
    if merge == "ave":
        y = g.op("Mul", [y, g.const(0.5, "half")], "bidirectional")
    return y


# --------------------------------------------------------------------------- normalization, embedding
@register(LayerNorm)
def _layer_norm(g, layer, x):
    """ONNX's LayerNormalization (opset >= 17) in float32; in float64 (its epsilon attribute is a
    32-bit float) and for older opsets the same formula in plain operators, eps a constant of the
    graph dtype: y = (x - mean) (1 / sqrt(var + eps)) gamma + beta over the trailing axes."""
    cfg = layer.get_config()
    shape = layer.input_shape
    k = 1 if cfg["normalized_shape"] is None else len(cfg["normalized_shape"])
    norm_shape = shape[len(shape) - k:]
    if cfg["elementwise_affine"]:
        gamma, beta = layer.get_weights()
    else:
        gamma, beta = np.ones(norm_shape), np.zeros(norm_shape)
    if g.dtype == np.float32 and g.opset >= 17:
        return g.op("LayerNormalization", [x, g.const(gamma, "ln_gamma"), g.const(beta, "ln_beta")],
                    "layer_norm", axis=-k, epsilon=cfg["eps"])
    axes = list(range(-k, 0))
    mean = g.reduce("ReduceMean", x, axes, "ln_mean", keepdims=1)
    d = g.op("Sub", [x, mean], "ln_centred")
    var = g.reduce("ReduceMean", g.op("Mul", [d, d], "ln_sq"), axes, "ln_var", keepdims=1)
    std = g.op("Sqrt", [g.op("Add", [var, g.const(cfg["eps"], "ln_eps")], "ln_var_eps")], "ln_std")
    rstd = g.op("Div", [g.const(1.0, "one"), std], "ln_rstd")
    y = g.op("Mul", [d, g.op("Mul", [rstd, g.const(gamma, "ln_gamma")], "ln_scale")], "ln_scaled")
    return g.op("Add", [y, g.const(beta, "ln_beta")], "layer_norm")


@register(BatchNorm)
def _batch_norm(g, layer, x):
    """Prediction mode (running statistics).  float32: ONNX's BatchNormalization; float64 (its
    epsilon attribute is a 32-bit float): y = (x - running_mean) a + beta with
    a = gamma / sqrt(running_var + eps) computed here in float64, as the kernel computes it."""
    cfg = layer.get_config()
    weights = layer.get_weights()
    mean, var = weights[-2], weights[-1]
    C = mean.shape[0]
    gamma, beta = (weights[0], weights[1]) if cfg["affine"] else (np.ones(C), np.zeros(C))
    if g.dtype == np.float32:
        return g.op("BatchNormalization", [x, g.const(gamma, "bn_gamma"), g.const(beta, "bn_beta"),
                                           g.const(mean, "bn_mean"), g.const(var, "bn_var")],
                    "batch_norm", epsilon=cfg["eps"])
    channel = (C,) + (1,) * (len(layer.input_shape) - 1)     # broadcast over the positions
    a = gamma * (1.0 / np.sqrt(var + cfg["eps"]))
    d = g.op("Sub", [x, g.const(mean.reshape(channel), "bn_mean")], "bn_centred")
    y = g.op("Mul", [d, g.const(a.reshape(channel), "bn_scale")], "bn_scaled")
    return g.op("Add", [y, g.const(beta.reshape(channel), "bn_beta")], "batch_norm")


@register(Embedding, input_dtype=lambda layer, dtype: np.int64)
def _embedding(g, layer, x):
    """Gather the rows of the table by the int64 ids: (n, *S) -> (n, *S, dim)."""
    (W,) = layer.get_weights()
    return g.op("Gather", [g.const(W, "embedding_W"), x], "embedding", axis=0)


# --------------------------------------------------------------------------- sequences, attention
@register(PositionalEmbedding)
def _positional(g, layer, x):
    cfg = layer.get_config()
    T = layer.input_shape[0]
    table = (sinusoidal_table(T, cfg["dim"], np.float64) if cfg["kind"] == "sinusoidal"
             else layer.get_weights()[0][:T])
    return g.op("Add", [x, g.const(table, "positions")], "positional")


@register(Residual)
def _residual(g, layer, x):
    mask = g.mask
    y = export_layers(g, layer.layers, x)
    g.mask = mask
    return g.op("Add", [x, y], "residual")


@register(TransformerEncoderBlock)
def _transformer_block(g, layer, x):
    return export_layers(g, layer.layers, x)


@register(MultiHeadSelfAttention)
def _attention(g, layer, x):
    """MatMul / Softmax decomposition: [q | k | v] = x W_in^T + b_in, heads split by Reshape and
    Transpose to (n, H, T, E), S = q k^T / sqrt(E), masked positions set to the dtype's lowest
    value before the Softmax (and the probabilities zeroed there again, so a row with no key gives
    0 as nnc does), context (n, T, D) = heads merged back, y = context W_out^T + b_out."""
    W_in, b_in, W_out, b_out = layer.get_weights()
    cfg = layer.get_config()
    T, D = layer.input_shape
    H = cfg["n_heads"]
    E = D // H
    qkv = g.op("Add", [g.op("MatMul", [x, g.const(W_in.T, "attn_W_in")], "qkv_x"),
                       g.const(b_in, "attn_b_in")], "qkv")
    part = [g.slice(qkv, [j * D], [(j + 1) * D], [2], hint=name)
            for j, name in enumerate(("q", "k", "v"))]
    split = [g.reshape(t, [0, T, H, E], "heads") for t in part]
    q = g.op("Transpose", [split[0]], "q_heads", perm=[0, 2, 1, 3])          # (n, H, T, E)
    kt = g.op("Transpose", [split[1]], "k_heads_t", perm=[0, 2, 3, 1])       # (n, H, E, T)
    v = g.op("Transpose", [split[2]], "v_heads", perm=[0, 2, 1, 3])
    S = g.op("Mul", [g.op("MatMul", [q, kt], "qk"), g.const(1.0 / np.sqrt(E), "scale")],
             "scores")
    allowed = None
    if cfg["causal"]:
        allowed = g.const(np.tril(np.ones((T, T), dtype=bool)), "causal")
    if g.mask is not None:
        keys = g.reshape(g.mask, [-1, 1, 1, T], "key_mask")                  # (n, 1, 1, T)
        allowed = keys if allowed is None else g.op("And", [allowed, keys], "allowed")
    if allowed is not None:
        S = g.op("Where", [allowed, S, g.const(np.finfo(g.dtype).min, "lowest")], "masked")
    P = g.op("Softmax", [S], "probabilities", axis=-1)
    if g.mask is not None:   # rows with no key to attend to: 0 (the Softmax made them uniform)
        P = g.op("Where", [allowed, P, g.const(0.0, "zero")], "probabilities_masked")
    O = g.op("Transpose", [g.op("MatMul", [P, v], "context_heads")], "context_t",
             perm=[0, 2, 1, 3])
    C = g.reshape(O, [0, T, D], "context")
    y = g.op("MatMul", [C, g.const(W_out.T, "attn_W_out")], "attn_out")
    return g.op("Add", [y, g.const(b_out, "attn_b_out")], "attention")

