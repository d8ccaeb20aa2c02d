"""Networks the ONNX parity tests export, one or more per layer class (no onnx needed here).

``CASES`` maps a case id to (layers factory, per-sample input shape, loss).  Every public layer
class must appear in at least one case (tests/onnx/test_registry.py checks it), alone or in a
small stack; ``DECOMPOSED`` lists the classes that have an exact float64 decomposition (run in
float32 too, against the native operator).
"""
import nnc.layers as L

_RNNS = {"SimpleRNN": L.SimpleRNN, "LSTM": L.LSTM, "GRU": L.GRU}

CASES = {
    "dense": (lambda: [L.Dense(3)], (4,), "mse"),
    "identity": (lambda: [L.Identity()], (4,), "mse"),
    "relu": (lambda: [L.ReLU()], (4,), "mse"),
    "sigmoid": (lambda: [L.Sigmoid()], (4,), "mse"),
    "tanh": (lambda: [L.Tanh()], (4,), "mse"),
    "leaky_relu": (lambda: [L.LeakyReLU(0.2)], (4,), "mse"),
    "dropout": (lambda: [L.Dropout(0.5)], (4,), "mse"),
    "flatten": (lambda: [L.Flatten()], (2, 3, 2), "mse"),
    "mlp_softmax": (lambda: [L.Dense(6), L.LeakyReLU(0.1), L.Dropout(0.2), L.Dense(5), L.Tanh(),
                             L.Dense(3)], (4,), "softmax_cross_entropy"),
    "mlp_bce": (lambda: [L.Dense(6), L.Sigmoid(), L.Dense(3)], (4,), "binary_cross_entropy"),
    "mlp_poisson": (lambda: [L.Dense(6), L.ReLU(), L.Dense(2)], (4,), "poisson"),
    "conv2d": (lambda: [L.Conv2D(3, 3)], (2, 6, 5), "mse"),
    "conv2d_stride_pad": (lambda: [L.Conv2D(3, (2, 3), stride=(1, 2), padding=1)], (2, 5, 6),
                          "mse"),
    "conv2d_asym": (lambda: [L.Conv2D(2, 3, stride=2, padding=(0, 2))], (1, 7, 6), "mse"),
    "conv1d": (lambda: [L.Conv1D(3, 3)], (2, 9), "mse"),
    "conv1d_stride_pad": (lambda: [L.Conv1D(2, 4, stride=2, padding=1)], (3, 10), "mse"),
    "maxpool": (lambda: [L.MaxPool2D(2)], (2, 5, 5), "mse"),
    "maxpool_overlap": (lambda: [L.MaxPool2D((2, 3), stride=1)], (2, 5, 6), "mse"),
    "avgpool": (lambda: [L.AvgPool2D(2)], (2, 5, 5), "mse"),
    "avgpool_strided": (lambda: [L.AvgPool2D((2, 3), stride=(1, 2))], (2, 5, 7), "mse"),
    "maxpool_pad": (lambda: [L.MaxPool2D(3, stride=2, padding=1)], (2, 6, 7), "mse"),
    "avgpool_pad": (lambda: [L.AvgPool2D((2, 3), stride=1, padding=(1, 1))], (2, 4, 5), "mse"),
    "avgpool_pad_exclude": (lambda: [L.AvgPool2D(3, stride=2, padding=1,
                                                 count_include_pad=False)], (2, 6, 5), "mse"),
    "maxpool1d_pad": (lambda: [L.MaxPool1D(3, stride=2, padding=1)], (2, 9), "mse"),
    "avgpool1d": (lambda: [L.AvgPool1D(2)], (3, 7), "mse"),
    "avgpool1d_pad_exclude": (lambda: [L.AvgPool1D(4, stride=1, padding=2,
                                                   count_include_pad=False)], (2, 6), "mse"),
    "global_avg_2d": (lambda: [L.GlobalAvgPool()], (3, 4, 5), "mse"),
    "global_max_seq": (lambda: [L.GlobalMaxPool("channels_last")], (6, 4), "mse"),
    "global_avg_seq_stack": (lambda: [L.Embedding(9, 4), L.GlobalAvgPool("channels_last"),
                                      L.Dense(2)], (7,), "softmax_cross_entropy"),
    "global_avg_masked_stack": (lambda: [L.Embedding(3, 6, padding_idx=0),
                                         L.TransformerEncoderBlock(6, 2, 8),
                                         L.GlobalAvgPool("channels_last"), L.Dense(2)], (4,),
                                "softmax_cross_entropy"),
    "global_max_masked_stack": (lambda: [L.Embedding(3, 4, padding_idx=0), L.Dense(5),
                                         L.GlobalMaxPool("channels_last"), L.Dense(2)], (4,),
                                "mse"),
    "global_max_conv1d_stack": (lambda: [L.Conv1D(3, 3, padding=1), L.GlobalMaxPool(
        "channels_first"), L.Dense(2)], (2, 8), "mse"),
    "cnn_stack": (lambda: [L.Conv2D(4, 3, padding=1), L.ReLU(), L.MaxPool2D(2),
                           L.Conv2D(3, 2), L.Tanh(), L.AvgPool2D(2), L.Flatten(), L.Dense(3)],
                  (1, 8, 8), "softmax_cross_entropy"),
    "conv1d_stack": (lambda: [L.Conv1D(4, 3, padding=1), L.ReLU(), L.Flatten(), L.Dense(2)],
                     (2, 7), "binary_cross_entropy"),
    "rnn_stack": (lambda: [L.LSTM(4, return_sequences=True),
                           L.Bidirectional(L.GRU(3, return_sequences=True), merge="concat"),
                           L.SimpleRNN(3), L.Dense(2)], (5, 3), "softmax_cross_entropy"),
    "layer_norm": (lambda: [L.LayerNorm()], (3, 5), "mse"),
    "layer_norm_2d_plain": (lambda: [L.LayerNorm((3, 4), eps=1e-3, elementwise_affine=False)],
                            (2, 3, 4), "mse"),
    "batch_norm_1d": (lambda: [L.BatchNorm()], (5,), "mse"),
    "batch_norm_seq_plain": (lambda: [L.BatchNorm(affine=False, eps=1e-3)], (3, 7), "mse"),
    "batch_norm_2d_stack": (lambda: [L.Conv2D(3, 3, padding=1), L.BatchNorm(momentum=0.3),
                                     L.ReLU(), L.Flatten(), L.Dense(2)], (2, 5, 4),
                            "softmax_cross_entropy"),
    "embedding": (lambda: [L.Embedding(11, 4)], (6,), "mse"),
    "embedding_stack": (lambda: [L.Embedding(9, 5, padding_idx=0), L.LayerNorm(), L.GRU(3),
                                 L.Dense(2)], (7,), "softmax_cross_entropy"),
    "attention": (lambda: [L.MultiHeadSelfAttention(2, 6)], (5, 6), "mse"),
    "attention_causal_1head": (lambda: [L.MultiHeadSelfAttention(1, 4, causal=True)], (6, 4),
                               "mse"),
    "residual": (lambda: [L.Residual([L.Dense(5), L.Tanh(), L.Dense(3)])], (4, 3), "mse"),
    "residual_flat": (lambda: [L.Residual([L.Dense(4), L.Sigmoid()]), L.Dense(2)], (4,),
                      "binary_cross_entropy"),
    "positional": (lambda: [L.PositionalEmbedding(9, 4), L.Dense(3)], (6, 4), "mse"),
    "positional_sinusoidal": (lambda: [L.PositionalEmbedding(6, 5, kind="sinusoidal")], (6, 5),
                              "mse"),
    "transformer_block": (lambda: [L.TransformerEncoderBlock(8, 2, 12, dropout=0.1)], (5, 8),
                          "mse"),
    "transformer_padded": (lambda: [L.Embedding(4, 8, padding_idx=0),
                                    L.PositionalEmbedding(7, 8, kind="sinusoidal"),
                                    L.TransformerEncoderBlock(8, 4, 16, causal=True),
                                    L.Residual([L.MultiHeadSelfAttention(2, 8)]),
                                    L.Flatten(), L.Dense(3)], (7,), "softmax_cross_entropy"),
}
for _name, _cls in _RNNS.items():
    for _seq in (False, True):
        CASES[f"{_name.lower()}_seq{int(_seq)}"] = (
            lambda cls=_cls, seq=_seq: [cls(3, return_sequences=seq)], (5, 2), "mse")
        for _merge in ("concat", "sum", "ave", "mul"):
            CASES[f"bi_{_name.lower()}_{_merge}_seq{int(_seq)}"] = (
                lambda cls=_cls, seq=_seq, merge=_merge: [
                    L.Bidirectional(cls(3, return_sequences=seq), merge=merge)],
                (4, 2), "mse")

DECOMPOSED = (L.Conv2D, L.Conv1D, L.AvgPool2D, L.AvgPool1D, L.SimpleRNN, L.LSTM, L.GRU,
              L.Bidirectional)
