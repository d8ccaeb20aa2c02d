"""The kernels' Python entry points compute size products with overflow checks (issue 14.10).

Sizes whose product wraps around in C arithmetic come from scalar arguments (kernel sizes,
padding, strides, a plan's widths and offsets, a batch size) combined with array dimensions;
zero-size arrays may have large other axes (``np.empty((2**59, 0))`` allocates nothing; NumPy
itself keeps the product of one array's non-zero axes representable).  A wrapped product could
match a small buffer and send a kernel far outside it; every such call must raise ValueError
before touching memory.
"""
import numpy as np
import pytest

from nnc._kernels import (_activations, _conv, _dense, _dropout, _losses, _mlp, _optim, _pool,
                          _recurrent)

BIG = 2**59      # the largest power of two NumPy accepts as an axis of a zero-size float64 array


def _empty(*shape, dtype=np.float64):
    """A zero-size array with the given (possibly huge) shape: allocates nothing."""
    return np.empty(shape, dtype=dtype)


# ------------------------------------------------------------------------- conv
def test_conv_output_size_checks_the_padded_size():
    with pytest.raises(ValueError, match="overflows"):
        _conv.conv_output_size(4, 3, 1, 2**62)
    with pytest.raises(ValueError, match="overflows"):
        _conv.conv_output_size(2**62, 3, 1, 2**61)
    assert _conv.conv_output_size(4, 3, 1, 2**40) == 2**41 + 2


@pytest.mark.parametrize("fn", ["im2col", "col2im"])
def test_im2col_col2im_huge_kernels(fn):
    X = np.zeros((1, 1, 4, 4))
    # C*KH*KW = 2**64 and OH*OW wrap; before the checks a cols array of the wrapped shape
    # (zero-size, so it exists) passed the shape test and the kernel wrote far outside it
    OH = 4 + 2**33 - 2**32 + 1
    cols = _empty(1, 0, (OH * OH) % 2**64)
    kw = dict(KH=2**32, KW=2**32, PH=2**32, PW=2**32)
    with pytest.raises(ValueError, match="overflows"):
        if fn == "im2col":
            _conv.im2col(X, cols, **kw)
        else:
            _conv.col2im(cols, X.copy(), **kw)


def test_grid_twins_check_the_kernel_against_the_input():
    X = np.zeros((1, 1, 4, 4))
    with pytest.raises(ValueError, match="larger than the padded input"):
        _conv.im2col_grid(X, _empty(1, 0, 0), 2**62, 2**62)
    with pytest.raises(ValueError, match="larger than the padded input"):
        _conv.col2im_grid(_empty(1, 0, 0), X, 2**62, 1)


def test_conv2d_workspace_shapes_and_twins_check_products():
    with pytest.raises(ValueError, match="overflows"):
        _conv.conv2d_workspace_shapes(2**40, 2**20, 8, 8, 1, 3, 3)
    with pytest.raises(ValueError, match="overflows"):
        _conv.conv2d_workspace_shapes(1, 1, 4, 4, 2, 3, 3, PH=2**62)
    X = np.zeros((2, 1, 4, 4))
    Wt = np.zeros((2, 1, 3, 3))
    b = np.zeros(2)
    cols, tmp = _empty(1, 9, 0), _empty(1, 2, 0)
    for fn in (lambda: _conv.conv2d_forward(X, Wt, b, cols, tmp, _empty(2, 2, 0, 0), PH=2**62),
               lambda: _conv.conv2d_backward(X, Wt, _empty(2, 2, 0, 0), cols, tmp,
                                             np.zeros_like(Wt), b.copy(), PH=2**62, PW=1)):
        with pytest.raises(ValueError, match="overflows"):
            fn()
    # a legitimate huge (but representable) geometry is a plain shape mismatch, not a crash
    with pytest.raises(ValueError, match="has shape"):
        _conv.conv2d_forward(X, Wt, b, cols, tmp, _empty(2, 2, 0, 0), PH=2**40)


# ------------------------------------------------------------------------- pooling
def test_pool_twins_with_huge_scalar_sizes():
    X = np.arange(16.0).reshape(1, 1, 4, 4)
    with pytest.raises(ValueError, match="larger than the input"):
        _pool.maxpool2d_forward(X, _empty(1, 1, 1, 0), _empty(1, 1, 1, 0, dtype=np.intc),
                                2**62, 2**62, 1, 1)
    with pytest.raises(ValueError, match="larger than the input"):
        _pool.avgpool2d_backward(_empty(1, 1, 0, 0), X.copy(), 2**40, 1, 1, 1)
    # a huge stride leaves one window per axis: computed, nothing wraps
    Y, idx = np.empty((1, 1, 1, 1)), np.empty((1, 1, 1, 1), dtype=np.intc)
    _pool.maxpool2d_forward(X, Y, idx, 2, 2, 2**62, 2**62)
    assert Y[0, 0, 0, 0] == 5.0 and idx[0, 0, 0, 0] == 5
    _pool.avgpool2d_forward(X, Y, 2, 2, 2**62, 2**62)
    assert Y[0, 0, 0, 0] == 2.5


# ------------------------------------------------------------------------- dense plan
def _plan(F, U):
    desc = np.zeros((1, _mlp.NCOL), dtype=np.int64)
    c = _mlp.COLUMNS
    desc[0, [c["kind"], c["F"], c["U"], c["W"], c["b"], c["in"], c["out"]]] = \
        [_mlp.KIND_DENSE, F, U, 0, 0, -1, 0]
    return desc


def test_check_plan_and_dense_forward_check_products():
    # F * U = 2**64 wraps to 0: before the checks "W lies inside a 10-element buffer" passed
    with pytest.raises(ValueError, match="overflows"):
        _mlp.check_plan(_plan(2**62, 4), 10, 2**62, 4, 4)
    desc = _plan(2, 3)
    desc[0, _mlp.COLUMNS["out"]] = 2**63 - 2        # out + U wraps negative: "inside" ws
    with pytest.raises(ValueError, match="overflows"):
        _mlp.check_plan(desc, 10, 2, 3, 10)
    with pytest.raises(ValueError, match="overflows"):
        _mlp.DenseForward(_plan(2, 3), np.zeros(1), np.zeros(9), 2, 3, 3, max_rows=2**62)
    fn = _mlp.DenseForward(_plan(64, 3), np.zeros(1), np.zeros(64 * 3 + 3), 64, 3, 3)
    # n * F0 = 2**59 * 64 wraps to 0 = the size of this zero-size X
    with pytest.raises(ValueError, match="X must be|out must be"):
        fn(_empty(BIG, 0, 1), np.empty((1, 3)))
    with pytest.raises(ValueError, match="X must be"):
        fn(_empty(BIG, 0, 1), _empty(BIG, 0))
    out = fn(np.ones((2, 64)), np.empty((2, 3)))
    assert out.shape == (2, 3)


def test_train_epoch_checks_batch_products():
    desc = _plan(4, 3)
    X, Y = np.zeros((5, 4)), np.zeros((5, 3))
    p, g = np.zeros(15), np.zeros(15)
    config = {"kind": _optim.SGD, "lr": 0.1, "momentum": 0.0, "beta2": 0.0, "eps": 1.0,
              "nesterov": 0, "alpha": 0.0, "decay": 0.0, "n_decay": 12, "t": 0, "n_threads": 1}
    with pytest.raises(ValueError):
        _mlp.train_epoch(desc, np.zeros(1), X, Y, None, None, None, BIG, p, g, None, None, config,
                         0, 1.0, 0.0, np.zeros(0), np.zeros((2, 0)), None, None, None, None,
                         np.zeros(_mlp.N_RESULT))


# ------------------------------------------------------------------------- the rest
def test_recurrent_twins_with_huge_zero_size_inputs():
    W_x, W_h, b = np.zeros((0, 3)), np.zeros((3, 3)), np.zeros(3)
    with pytest.raises(ValueError, match="empty dimension"):
        _recurrent.rnn_forward(_empty(2**30, 2**28, 0), W_x, W_h, b, _empty(3, 1, 0),
                               _empty(3, 1, 0), np.zeros((3, 3)), _empty(2**30, 1, 0))


@pytest.mark.parametrize("call", [
    lambda: _dense.dense_forward(_empty(BIG, 0), _empty(0, 0), _empty(0), _empty(BIG, 0)),
    lambda: _dense.dense_backward(_empty(BIG, 0), _empty(0, 0), _empty(BIG, 0), _empty(0, 0),
                                  _empty(0)),
    lambda: _activations.activation_forward(_activations.RELU, _empty(0)),
    lambda: _dropout.dropout_forward(_empty(0), _empty(0), 0.5, _empty(0), _empty(0)),
    lambda: _losses.loss_gradient(0, _empty(BIG, 0), _empty(BIG, 0), None, None,
                                  _empty(BIG, 0)),
    lambda: _losses.softmax_forward(_empty(BIG, 0)),
    lambda: _optim.clip_grad_norm(_empty(0), 1.0),
], ids=["dense_forward", "dense_backward", "activation", "dropout", "loss_gradient", "softmax",
        "clip_grad_norm"])
def test_other_entry_points_never_touch_memory_for_huge_empty_arrays(call):
    try:
        call()           # returning without work is fine ...
    except ValueError:   # ... and so is a clear error
        pass
