"""Self-attention layers on sequences (n, T, dim), batch-first: MultiHeadSelfAttention and the
pre-norm TransformerEncoderBlock built from it.

Compute lives in ``nnc._kernels._attention`` (the input projection as one GEMM, per-(sample,
head) score and context products, the masked softmax and its fused backward, the output
projection as one GEMM); the layer owns the views and workspaces.

Workspaces.  Training keeps, for backward, the projections QKV (n, T, 3 dim), the attention
probabilities P (n, heads, T, T), the context C (n, T, dim) and, with attention dropout, the
keep-masks (n, heads, T, T).  Inference on a shadow stack (predict) keeps none of them: it runs
blocks of ``_BLOCK_ROWS`` positions through two block-sized buffers and one (T, T) slab, so a
prediction chunk of 4096 sequences needs no (4096, heads, T, T) buffer.  The network's own layers
always use the training form (``check_gradients`` runs an inference-mode forward and then
backward on them).

Masks.  The layer reads the sequence mask of its input (layers/_base.py, "Sequence masks"): a
padded position is never attended to (its key is masked); its own output row is still computed
(as PyTorch does) and the mask is carried on to the output, so a masked pooling ignores it.
``causal=True`` lets position t attend to positions <= t only.
"""
import numbers

import numpy as np

from nnc._kernels import _attention as _K
from nnc.layers._base import Layer, ParamSpec, _check_positive_int
from nnc.layers._container import _Container, Residual
from nnc.layers._dropout import generator_state, load_generator_state

#: positions per block of the inference form (~1000: the projections stay efficient GEMMs)
_BLOCK_ROWS = 1024


def _check_rate(value, name):
    if not isinstance(value, numbers.Real) or isinstance(value, bool):
        raise TypeError(f"{name} must be a float, got {type(value).__name__}")
    if not 0.0 <= float(value) < 1.0:
        raise ValueError(f"{name} must be in [0, 1), got {value}")
    return float(value)


def _check_bool(value, name):
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be a bool, got {type(value).__name__}")
    return bool(value)


def _check_seed(value):
    if value is not None and (not isinstance(value, numbers.Integral)
                              or isinstance(value, bool)):
        raise TypeError(f"random_state must be an int or None, got {value!r}")
    if value is not None and value < 0:
        raise ValueError(f"random_state must be >= 0, got {value}")
    return None if value is None else int(value)


def _check_sequence_input(layer, input_shape, dim):
    name = type(layer).__name__
    shape = tuple(input_shape)
    if len(shape) != 2 or shape[1] != dim:
        raise ValueError(f"{name} expects sequences of per-sample shape (n_timesteps, {dim}) "
                         f"(input (n, T, {dim}), batch first), got sample shape {shape}")
    return shape


class MultiHeadSelfAttention(Layer):
    """Multi-head scaled dot-product self-attention with input and output projections, as
    ``torch.nn.MultiheadAttention(dim, n_heads, batch_first=True)`` called with the same
    sequence as query, key and value.

    Y = concat_h(softmax(Q_h K_h^T / sqrt(dim / n_heads) + mask) V_h) W_out^T + b_out, with
    [Q | K | V] = X W_in^T + b_in and head h the h-th block of dim / n_heads columns.

    Parameters
    ----------
    n_heads : int
        Number of heads; must divide dim.
    dim : int
        Width of the input and output (the last axis of (n, T, dim)).
    dropout : float in [0, 1), default=0
        Dropout on the attention probabilities in training (inverted: scaled by 1 / (1 -
        dropout)), as PyTorch's ``dropout`` argument.
    causal : bool, default=False
        Position t attends to positions <= t only.
    random_state : int or None, default=None
        Seed of the dropout generator; None: seeded from the network's random_state.

    Notes
    -----
    Parameter tensors, in PyTorch's layout: W_in (3 dim, dim) = ``in_proj_weight``, b_in (3
    dim,) = ``in_proj_bias``, W_out (dim, dim) = ``out_proj.weight``, b_out (dim,) =
    ``out_proj.bias``.  Padded positions (the sequence mask, see ``nnc.layers.Embedding``'s
    ``padding_idx``) are never attended to; a position with nothing to attend to (every key
    padded) gets a zero context, so its output is b_out (PyTorch gives NaN there).
    """

    takes_mask = True
    keeps_mask = True
    #: the next layer may overwrite Y in place: backward needs X and the kept workspaces only
    output_reusable = True

    def __init__(self, n_heads, dim, dropout=0.0, causal=False, random_state=None):
        super().__init__()
        self.n_heads = _check_positive_int(n_heads, "n_heads")
        self.dim = _check_positive_int(dim, "dim")
        if self.dim % self.n_heads:
            raise ValueError(f"n_heads ({self.n_heads}) must divide dim ({self.dim})")
        self.dropout = _check_rate(dropout, "dropout")
        self.causal = _check_bool(causal, "causal")
        self.random_state = _check_seed(random_state)
        self._rng = None
        self._inference_only = False    # True on shadows (see _shadow)

    def get_config(self):
        return {"n_heads": self.n_heads, "dim": self.dim, "dropout": self.dropout,
                "causal": self.causal, "random_state": self.random_state}

    # -- declaration ---------------------------------------------------------------------------
    def build(self, input_shape, dtype):
        super().build(input_shape, dtype)
        if self.dtype not in (np.float32, np.float64):
            raise ValueError(f"MultiHeadSelfAttention: dtype must be float32 or float64, got "
                             f"{self.dtype}")
        _check_sequence_input(self, self.input_shape, self.dim)
        T = self.input_shape[0]
        if T * T > 2**31 - 1:
            raise ValueError(f"MultiHeadSelfAttention: {T} positions give a {T} x {T} score "
                             "matrix, more than the kernels support")
        self.output_shape = self.input_shape
        return self.output_shape

    def param_specs(self):
        D = self.dim
        return [ParamSpec("W_in", (3 * D, D), True), ParamSpec("b_in", (3 * D,), False),
                ParamSpec("W_out", (D, D), True), ParamSpec("b_out", (D,), False)]

    def init_params(self, rng):
        """PyTorch's: W_in Glorot-uniform over (3 dim, dim), W_out uniform in +-1/sqrt(dim),
        biases zero."""
        D = self.dim
        W_in, b_in, W_out, b_out = self.params
        limit = np.sqrt(6.0 / (D + 3 * D))
        W_in[...] = rng.uniform(-limit, limit, size=(3 * D, D))
        W_out[...] = rng.uniform(-1.0 / np.sqrt(D), 1.0 / np.sqrt(D), size=(D, D))
        b_in[...] = 0
        b_out[...] = 0
        # always draw, so the other layers' weights do not depend on random_state here
        seed = int(rng.randint(0, 2**31 - 1))
        self._rng = np.random.default_rng(seed if self.random_state is None
                                          else self.random_state)

    def _shadow(self):
        twin = super()._shadow()
        twin._inference_only = True
        return twin

    def allocate(self, batch_size):
        super().allocate(batch_size)
        B, (T, D), dt = self.batch_size, self.input_shape, self.dtype
        self._ws_out = np.empty((B, T, D), dtype=dt)
        self._ws_scratch = np.empty((2, T, T), dtype=dt)   # (T, T) scratch slabs
        self._ws_slab = np.empty((1, 1, T, T), dtype=dt)   # P of the inference form
        self._ws_train_rows = 0
        if not self._inference_only:
            self._allocate_training(B)
        nb = max(1, min(B, _BLOCK_ROWS // T))
        self._ws_qkv_block = np.empty((nb, T, 3 * D), dtype=dt)
        self._ws_c_block = np.empty((nb, T, D), dtype=dt)

    def _allocate_training(self, B):
        """The buffers backward reads (and its own), for B samples."""
        (T, D), H, dt = self.input_shape, self.n_heads, self.dtype
        self._ws_qkv = np.empty((B, T, 3 * D), dtype=dt)
        self._ws_p = np.empty((B, H, T, T), dtype=dt)
        self._ws_c = np.empty((B, T, D), dtype=dt)
        self._ws_m = np.empty((B, H, T, T), dtype=dt) if self.dropout > 0 else None
        self._ws_dc = np.empty((B, T, D), dtype=dt)
        self._ws_dqkv = np.empty((B, T, 3 * D), dtype=dt)
        self._ws_dX = np.empty((B, T, D), dtype=dt)
        self._ws_train_rows = B

    # -- computation ---------------------------------------------------------------------------
    def _forward(self, X, training):
        n = X.shape[0]
        mask = self._mask_rows(n)
        kmask = None if mask is None else mask.view(np.uint8)
        W_in, b_in, W_out, b_out = self.params
        Y = self._ws_out[:n]
        self._cache_ready = 0
        if training or not self._inference_only:
            if self._ws_train_rows < self.batch_size:   # a shadow asked to train: once
                self._allocate_training(self.batch_size)
            M = None
            if training and self.dropout > 0:
                if self._rng is None:
                    self._rng = np.random.default_rng(self.random_state)
                M = self._ws_m[:n]
                self._rng.random(out=M, dtype=self.dtype)
            _K.mha_forward(X, W_in, b_in, W_out, b_out, kmask, self.causal, self.n_heads, True,
                           self._ws_qkv[:n], self._ws_p[:n], self._ws_c[:n],
                           self._ws_scratch[0], Y, M, self.dropout)
            self._cache_X = X
            self._cache_dropout = M is not None
            self._cache_ready = n
        else:
            _K.mha_forward(X, W_in, b_in, W_out, b_out, kmask, self.causal, self.n_heads, False,
                           self._ws_qkv_block, self._ws_slab, self._ws_c_block,
                           self._ws_scratch[0], Y)
        return Y

    def _backward(self, dY, need_dX):
        n = self.__dict__.get("_cache_ready", 0)
        if n == 0 or dY.shape[0] != n:
            raise RuntimeError("MultiHeadSelfAttention.backward needs a preceding forward of the "
                               "same samples on this layer (an inference copy keeps nothing for "
                               "backward)")
        W_in, _, W_out, _ = self.params
        dW_in, db_in, dW_out, db_out = self.grads
        _K.mha_backward(self._cache_X, W_in, W_out, self._ws_qkv[:n], self._ws_p[:n],
                        self._ws_c[:n], dY, self.causal, self.n_heads, dW_in, db_in, dW_out,
                        db_out, self._ws_dc[:n], self._ws_dqkv[:n], self._ws_scratch,
                        self._ws_m[:n] if self._cache_dropout else None,
                        self._ws_dX[:n] if need_dX else None)
        return self._ws_dX[:n] if need_dX else None

    # -- state ---------------------------------------------------------------------------------
    def state_dict(self):
        """{'generator': the dropout generator's state} when dropout > 0, else {}."""
        return {"generator": generator_state(self._rng)} if self.dropout > 0 else {}

    def load_state_dict(self, state):
        if self.dropout == 0:
            return super().load_state_dict(state)
        if not isinstance(state, dict) or set(state) != {"generator"}:
            raise ValueError(f"MultiHeadSelfAttention state must be {{'generator': ...}}, got "
                             f"{state!r}")
        self._rng = load_generator_state(self._rng, state["generator"],
                                         "MultiHeadSelfAttention")


class TransformerEncoderBlock(_Container):
    """Pre-norm transformer encoder block on sequences (n, T, dim), as
    ``torch.nn.TransformerEncoderLayer(dim, n_heads, ffn_dim, dropout, activation="relu",
    batch_first=True, norm_first=True)``:

        x = x + Dropout(MultiHeadSelfAttention(LayerNorm(x)))
        x = x + Dropout(Dense(dim)(Dropout(ReLU(Dense(ffn_dim)(LayerNorm(x))))))

    Parameters
    ----------
    dim : int
        Width of each position (the last axis of the input).
    n_heads : int
        Attention heads; must divide dim.
    ffn_dim : int
        Width of the position-wise feed-forward layer.
    dropout : float in [0, 1), default=0
        Dropout rate at the four places PyTorch has it (the attention probabilities, the
        attention branch's output, after the ReLU, the feed-forward branch's output).
    causal : bool, default=False
        Each position attends to itself and earlier positions only.
    eps : float, default=1e-5
        The LayerNorms' eps.

    Notes
    -----
    Built from nnc's layers: ``layers`` holds Residual([LayerNorm, MultiHeadSelfAttention,
    Dropout]) and Residual([LayerNorm, Dense(ffn_dim), ReLU, Dropout, Dense(dim), Dropout]); the
    Dense layers work position by position (one GEMM over all n T positions).  Parameter tensors,
    in that order, are theirs with the prefixes "0." and "1." (norm1 ``0.0.gamma``, attention
    ``0.1.W_in`` ... ``0.1.b_out``, norm2 ``1.0.gamma``, linear1 ``1.1.W`` (dim, ffn_dim) =
    PyTorch's ``linear1.weight.T`` ...).  Padded positions (the sequence mask) are never
    attended to; the mask is carried to the output.
    """

    keeps_mask = True
    #: the last child is a Residual, whose output buffer nothing reads again
    output_reusable = True

    def __init__(self, dim, n_heads, ffn_dim, dropout=0.0, causal=False, eps=1e-5):
        from nnc.layers._dense import Dense
        from nnc.layers._activations import ReLU
        from nnc.layers._dropout import Dropout
        from nnc.layers._norm import LayerNorm
        dim = _check_positive_int(dim, "dim")
        n_heads = _check_positive_int(n_heads, "n_heads")
        ffn_dim = _check_positive_int(ffn_dim, "ffn_dim")
        dropout = _check_rate(dropout, "dropout")
        causal = _check_bool(causal, "causal")
        super().__init__([
            Residual([LayerNorm(dim, eps=eps),
                      MultiHeadSelfAttention(n_heads, dim, dropout=dropout, causal=causal),
                      Dropout(dropout)]),
            Residual([LayerNorm(dim, eps=eps), Dense(ffn_dim), ReLU(), Dropout(dropout),
                      Dense(dim), Dropout(dropout)])])
        self.dim, self.n_heads, self.ffn_dim = dim, n_heads, ffn_dim
        self.dropout, self.causal = dropout, causal
        self.eps = self.layers[0].layers[0].eps

    def get_config(self):
        return {"dim": self.dim, "n_heads": self.n_heads, "ffn_dim": self.ffn_dim,
                "dropout": self.dropout, "causal": self.causal, "eps": self.eps}

    def build(self, input_shape, dtype):
        _check_sequence_input(self, input_shape, self.dim)
        return super().build(input_shape, dtype)

    def _output_mask(self, mask):
        return mask
