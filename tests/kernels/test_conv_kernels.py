"""Kernel twins of nnc._kernels._conv / _pool / _dropout against the NumPy references."""
import numpy as np
import pytest

from nnc._kernels import _conv, _pool, _dropout
from tests import _reference_conv as ref
from tests._reference_conv import assert_close

# (N, C, H, W, F, (KH, KW), (SH, SW), (PH, PW))
CONV_CASES = [
    (1, 1, 5, 5, 1, (3, 3), (1, 1), (0, 0)),
    (2, 1, 7, 6, 3, (3, 2), (1, 2), (1, 0)),
    (3, 4, 9, 8, 2, (3, 3), (2, 3), (2, 1)),
    (4, 2, 6, 7, 3, (2, 3), (3, 1), (1, 2)),
    (2, 3, 5, 5, 4, (5, 5), (1, 1), (2, 2)),
    (1, 4, 1, 11, 2, (1, 4), (1, 3), (0, 1)),   # a 1-D convolution as Conv1D runs it
    (3, 2, 4, 4, 2, (4, 4), (1, 1), (0, 0)),    # kernel == input: a 1x1 output
    (2, 1, 3, 3, 2, (1, 1), (2, 2), (2, 2)),    # output pixels entirely in the padding
    # stride 1, no padding: the full-width grid path
    (3, 2, 7, 9, 3, (2, 4), (1, 1), (0, 0)),
    (2, 3, 6, 5, 2, (6, 1), (1, 1), (0, 0)),    # one output row
    (2, 2, 5, 7, 2, (1, 7), (1, 1), (0, 0)),    # one output column
    (2, 1, 1, 9, 2, (1, 3), (1, 1), (0, 0)),    # 1-D
]


def _conv_inputs(case, dtype, rng):
    N, C, H, W, F, (KH, KW), (SH, SW), (PH, PW) = case
    X = rng.standard_normal((N, C, H, W)).astype(dtype)
    Wt = rng.standard_normal((F, C, KH, KW)).astype(dtype)
    b = rng.standard_normal(F).astype(dtype)
    OH, OW = ref.out_size(H, KH, SH, PH), ref.out_size(W, KW, SW, PW)
    return X, Wt, b, (OH, OW)


@pytest.mark.parametrize("case", CONV_CASES)
@pytest.mark.parametrize("n_threads", [1, 2])
def test_im2col_col2im_match_reference(case, n_threads, dtype, rng):
    X, Wt, b, (OH, OW) = _conv_inputs(case, dtype, rng)
    N, C, H, W = X.shape
    _, _, KH, KW = Wt.shape
    S, P = case[6], case[7]
    cols = np.full((N, C * KH * KW, OH * OW), np.nan, dtype=dtype)
    _conv.im2col(X, cols, KH, KW, S[0], S[1], P[0], P[1], n_threads)
    expected = ref.im2col(X, KH, KW, S, P).reshape(C * KH * KW, N, OH * OW).transpose(1, 0, 2)
    np.testing.assert_array_equal(cols, expected)
    G = rng.standard_normal(cols.shape).astype(dtype)
    dX = np.full(X.shape, np.nan, dtype=dtype)
    _conv.col2im(G, dX, KH, KW, S[0], S[1], P[0], P[1], n_threads)
    G2 = G.transpose(1, 0, 2).reshape(C * KH * KW, N * OH * OW)
    assert_close(dX, ref.col2im(G2, X.shape, KH, KW, S, P), dtype)
    # adjointness: <im2col(X), G> == <X, col2im(G)>
    lhs = float(np.sum(cols.astype(np.float64) * G))
    rhs = float(np.sum(X.astype(np.float64) * dX))
    assert abs(lhs - rhs) <= ref.TOL[np.dtype(dtype)] * max(1.0, abs(lhs)) * 10


@pytest.mark.parametrize("case", [c for c in CONV_CASES if c[6] == (1, 1) and c[7] == (0, 0)])
@pytest.mark.parametrize("n_threads", [1, 2])
def test_grid_im2col_col2im_match_reference(case, n_threads, dtype, rng):
    X, Wt, b, (OH, OW) = _conv_inputs(case, dtype, rng)
    N, C, H, W = X.shape
    _, _, KH, KW = Wt.shape
    cols = np.full((N, C * KH * KW, (OH - 1) * W + OW), np.nan, dtype=dtype)
    _conv.im2col_grid(X, cols, KH, KW, n_threads)
    np.testing.assert_array_equal(cols, ref.im2col_grid(X, KH, KW))
    # the grid's valid columns (ow < OW) are the ordinary columns
    q = (np.arange(OH)[:, None] * W + np.arange(OW)[None, :]).ravel()
    plain = np.empty((N, C * KH * KW, OH * OW), dtype=dtype)
    _conv.im2col(X, plain, KH, KW)
    np.testing.assert_array_equal(cols[:, :, q], plain)
    G = rng.standard_normal(cols.shape).astype(dtype)
    dX = np.full(X.shape, np.nan, dtype=dtype)
    _conv.col2im_grid(G, dX, KH, KW, n_threads)
    assert_close(dX, ref.col2im_grid(G, X.shape, KH, KW), dtype)
    with pytest.raises(ValueError):
        _conv.im2col_grid(X, cols[:, :, 1:].copy(), KH, KW)
    with pytest.raises(ValueError):
        _conv.col2im_grid(G[:, 1:].copy(), dX, KH, KW)


@pytest.mark.parametrize("case", CONV_CASES)
@pytest.mark.parametrize("chunk", [None, 1, 2])
@pytest.mark.parametrize("n_threads", [1, 2])
def test_conv2d_kernels_match_reference(case, chunk, n_threads, dtype, rng):
    X, Wt, b, (OH, OW) = _conv_inputs(case, dtype, rng)
    N, C = X.shape[:2]
    F, _, KH, KW = Wt.shape
    (SH, SW), (PH, PW) = case[6], case[7]
    Nc = N if chunk is None else chunk
    cshape, tshape = _conv.conv2d_workspace_shapes(Nc, C, X.shape[2], X.shape[3], F, KH, KW,
                                                   SH, SW, PH, PW)
    cols = np.full(cshape, np.nan, dtype=dtype)
    tmp = np.full(tshape, np.nan, dtype=dtype)
    Y = np.full((N, F, OH, OW), np.nan, dtype=dtype)
    _conv.conv2d_forward(X, Wt, b, cols, tmp, Y, SH, SW, PH, PW, n_threads)
    assert Y.dtype == dtype
    assert_close(Y, ref.conv2d_forward(X, Wt, b, (SH, SW), (PH, PW)), dtype)

    dY = rng.standard_normal(Y.shape).astype(dtype)
    rdX, rdW, rdb = ref.conv2d_backward(X, Wt, dY, (SH, SW), (PH, PW))
    for need_dx in (False, True):
        dW = np.full(Wt.shape, np.nan, dtype=dtype)
        db = np.full(F, np.nan, dtype=dtype)
        dX = np.full(X.shape, np.nan, dtype=dtype) if need_dx else None
        # columns left by forward are reused only if one chunk holds the batch; after a backward
        # with dX they hold d(cols), so recompute (cols_ready=False) on the second pass
        ready = Nc >= N and not need_dx
        _conv.conv2d_backward(X, Wt, dY, cols, tmp, dW, db, dX, SH, SW, PH, PW, ready, n_threads)
        assert_close(dW, rdW, dtype)
        assert_close(db, rdb, dtype)
        if need_dx:
            assert_close(dX, rdX, dtype)


def test_conv2d_backward_gradients_are_overwritten(rng):
    X, Wt, b, (OH, OW) = _conv_inputs(CONV_CASES[2], np.float64, rng)
    cols = np.empty((1, Wt[0].size, OH * OW))
    tmp = np.empty((1, Wt.shape[0], 0))
    dY = rng.standard_normal((X.shape[0], Wt.shape[0], OH, OW))
    out = []
    for _ in range(2):
        dW, db, dX = np.empty_like(Wt), np.empty_like(b), np.empty_like(X)
        _conv.conv2d_backward(X, Wt, dY, cols, tmp, dW, db, dX, 2, 3, 2, 1)
        out.append((dW, db, dX))
    for a, b_ in zip(*out):
        np.testing.assert_array_equal(a, b_)


def test_conv2d_workspace_shapes():
    # general path: (Nc, CKK, OH OW) columns, no GEMM scratch
    assert _conv.conv2d_workspace_shapes(4, 3, 9, 8, 2, 3, 3, 2, 3, 2, 1) == \
        ((4, 27, 6 * 3), (4, 2, 0))
    # stride-1 unpadded path: full-width grid of (OH - 1) W + OW columns, scratch for the GEMM
    assert _conv.conv2d_workspace_shapes(2, 8, 13, 13, 16, 3, 3) == ((2, 72, 141), (2, 16, 141))
    with pytest.raises(ValueError):
        _conv.conv2d_workspace_shapes(0, 8, 13, 13, 16, 3, 3)
    with pytest.raises(ValueError):
        _conv.conv2d_workspace_shapes(1, 8, 13, 13, 16, 14, 3)


@pytest.mark.parametrize("grid", [True, False], ids=["stride1_unpadded", "general"])
def test_conv2d_kernels_reject_inconsistent_buffers(grid):
    X = np.zeros((2, 3, 6, 6))
    Wt = np.zeros((4, 3, 3, 3))
    b = np.zeros(4)
    S, P = ((1, 1), (0, 0)) if grid else ((1, 1), (1, 0))
    cshape, tshape = _conv.conv2d_workspace_shapes(2, 3, 6, 6, 4, 3, 3, *S, *P)
    cols, tmp = np.zeros(cshape), np.zeros(tshape)
    OH, OW = 6 + 2 * P[0] - 2, 6 + 2 * P[1] - 2
    Y = np.zeros((2, 4, OH, OW))
    dW, db, dX = np.zeros_like(Wt), np.zeros_like(b), np.zeros_like(X)
    kw = dict(SH=S[0], SW=S[1], PH=P[0], PW=P[1])
    _conv.conv2d_forward(X, Wt, b, cols, tmp, Y, **kw)  # consistent: fine
    _conv.conv2d_backward(X, Wt, Y, cols, tmp, dW, db, dX, **kw)
    short = cshape[:2] + (cshape[2] - 1,)
    bad_calls = [
        lambda: _conv.conv2d_forward(X, Wt, b, cols, tmp, np.zeros((2, 4, OH, OW + 1)), **kw),
        lambda: _conv.conv2d_forward(X, Wt, np.zeros(3), cols, tmp, Y, **kw),
        lambda: _conv.conv2d_forward(X, np.zeros((4, 2, 3, 3)), b, cols, tmp, Y, **kw),
        lambda: _conv.conv2d_forward(X, Wt, b, np.zeros(short), tmp, Y, **kw),
        lambda: _conv.conv2d_forward(X, Wt, b, np.zeros((0,) + cshape[1:]), tmp, Y, **kw),
        lambda: _conv.conv2d_forward(X, Wt, b, cols, np.zeros((2, 4, 7)), Y, **kw),
        lambda: _conv.conv2d_forward(X, Wt, b, cols, np.zeros((1,) + tshape[1:]), Y, **kw),
        lambda: _conv.conv2d_forward(X, Wt, b, cols, tmp, Y, 0, 1, P[0], P[1]),   # zero stride
        lambda: _conv.conv2d_forward(X, Wt, b, cols, tmp, Y, 1, 1, -1, 0),        # negative pad
        lambda: _conv.conv2d_forward(X, np.zeros((4, 3, 9, 3)), b, cols, tmp, Y, **kw),  # kernel
        lambda: _conv.conv2d_forward(X, Wt, b, cols, tmp, Y, n_threads=0, **kw),
        lambda: _conv.conv2d_backward(X, Wt, np.zeros((2, 4, OH, OW - 1)), cols, tmp, dW, db,
                                      dX, **kw),
        lambda: _conv.conv2d_backward(X, Wt, Y, cols, tmp, np.zeros((4, 3, 3, 2)), db, dX, **kw),
        lambda: _conv.conv2d_backward(X, Wt, Y, cols, tmp, dW, np.zeros(5), dX, **kw),
        lambda: _conv.conv2d_backward(X, Wt, Y, cols, tmp, dW, db, np.zeros((2, 3, 6, 5)), **kw),
        lambda: _conv.conv2d_backward(X, Wt, Y, np.zeros((1,) + cshape[1:]),
                                      np.zeros((1,) + tshape[1:]), dW, db, dX,
                                      cols_ready=True, **kw),          # cols cannot hold N
        lambda: _conv.conv2d_backward(X, Wt, Y, np.zeros(short), tmp, dW, db, dX, **kw),
        lambda: _conv.im2col(X, np.zeros((2, 27, 17)), 3, 3),
        lambda: _conv.im2col(X, np.zeros((2, 27, 16)), 3, 3, 0, 1),
        lambda: _conv.col2im(np.zeros((2, 27, 15)), dX, 3, 3),
        lambda: _conv.col2im(np.zeros((2, 27, 16)), dX, 7, 3),
    ]
    # the same buffers under the other geometry (grid <-> general) have the wrong shapes
    bad_calls.append(lambda: _conv.conv2d_forward(X, Wt, b, cols, tmp, np.zeros((2, 4, 4, 4)),
                                                  **({} if not grid else dict(PH=1, PW=1))))
    for call in bad_calls:
        with pytest.raises(ValueError):
            call()
    with pytest.raises((ValueError, TypeError)):
        _conv.conv2d_forward(X.astype(np.float32), Wt, b, cols, tmp, Y, **kw)   # mixed dtypes


# shapes above the kernels' parallel threshold (32K elements per pass), so prange really runs
BIG_CONV_CASES = [
    (8, 4, 16, 16, 6, (3, 3), (1, 1), (0, 0)),     # grid path
    (8, 4, 16, 16, 40, (3, 3), (1, 1), (0, 0)),    # stride 1, unpadded, CKK <= 2 F: general
    (8, 3, 17, 15, 5, (3, 2), (2, 1), (1, 1)),
]


@pytest.mark.parametrize("case", BIG_CONV_CASES)
def test_conv2d_kernels_threads_agree(case, rng):
    X, Wt, b, (OH, OW) = _conv_inputs(case, np.float64, rng)
    N, C, H, W = X.shape
    F, _, KH, KW = Wt.shape
    (SH, SW), (PH, PW) = case[6], case[7]
    dY = rng.standard_normal((N, F, OH, OW))
    results = []
    for n_threads in (1, 2):
        cshape, tshape = _conv.conv2d_workspace_shapes(N, C, H, W, F, KH, KW, SH, SW, PH, PW)
        cols, tmp = np.empty(cshape), np.empty(tshape)
        Y = np.empty((N, F, OH, OW))
        _conv.conv2d_forward(X, Wt, b, cols, tmp, Y, SH, SW, PH, PW, n_threads)
        dW, db, dX = np.empty_like(Wt), np.empty_like(b), np.empty_like(X)
        _conv.conv2d_backward(X, Wt, dY, cols, tmp, dW, db, dX, SH, SW, PH, PW, True, n_threads)
        results.append((Y, dW, db, dX))
    for a, b_ in zip(*results):
        np.testing.assert_array_equal(a, b_)
    Y, dW, db, dX = results[0]
    rdX, rdW, rdb = ref.conv2d_backward(X, Wt, dY, (SH, SW), (PH, PW))
    assert_close(Y, ref.conv2d_forward(X, Wt, b, (SH, SW), (PH, PW)), np.float64)
    assert_close(dX, rdX, np.float64)
    assert_close(dW, rdW, np.float64)


@pytest.mark.parametrize("pool,stride", [((2, 2), (2, 2)), ((3, 3), (2, 2))])
def test_pool_kernels_threads_agree(pool, stride, rng):
    N, C, H, W = 8, 8, 32, 33
    X = rng.permutation(N * C * H * W).reshape(N, C, H, W) / 1000.0
    OH, OW = ref.out_size(H, pool[0], stride[0], 0), ref.out_size(W, pool[1], stride[1], 0)
    dY = rng.standard_normal((N, C, OH, OW))
    out = []
    for n_threads in (1, 2):
        Y, arg = np.empty((N, C, OH, OW)), np.empty((N, C, OH, OW), dtype=np.intc)
        dX, Ya, dXa = np.empty_like(X), np.empty((N, C, OH, OW)), np.empty_like(X)
        _pool.maxpool2d_forward(X, Y, arg, *pool, *stride, n_threads)
        _pool.maxpool2d_backward(dY, arg, dX, n_threads)
        _pool.avgpool2d_forward(X, Ya, *pool, *stride, n_threads)
        _pool.avgpool2d_backward(dY, dXa, *pool, *stride, n_threads)
        out.append((Y, arg, dX, Ya, dXa))
    for a, b_ in zip(*out):
        np.testing.assert_array_equal(a, b_)
    np.testing.assert_array_equal(out[0][0], ref.maxpool2d_forward(X, pool, stride)[0])


# ------------------------------------------------------------------------------------ pooling

POOL_CASES = [
    (2, 3, 6, 6, (2, 2), (2, 2)),
    (1, 1, 7, 5, (2, 2), (2, 2)),      # odd sizes: floor
    (2, 2, 7, 8, (3, 3), (2, 2)),      # overlapping windows
    (3, 1, 9, 7, (2, 3), (3, 1)),
    (1, 4, 5, 5, (5, 5), (1, 1)),      # global pooling
    (2, 2, 6, 9, (1, 2), (1, 3)),
    (1, 2, 3, 100, (2, 3), (1, 1)),      # several 32-output segments per row
    (1, 1, 5, 120, (3, 2), (2, 3)),
]


@pytest.mark.parametrize("case", POOL_CASES)
@pytest.mark.parametrize("n_threads", [1, 2])
def test_maxpool_kernels_match_reference(case, n_threads, dtype, rng):
    N, C, H, W, (KH, KW), (SH, SW) = case
    X = rng.permutation(N * C * H * W).reshape(N, C, H, W).astype(dtype) / 7  # no ties
    OH, OW = ref.out_size(H, KH, SH, 0), ref.out_size(W, KW, SW, 0)
    Y = np.full((N, C, OH, OW), np.nan, dtype=dtype)
    arg = np.full((N, C, OH, OW), -1, dtype=np.intc)
    _pool.maxpool2d_forward(X, Y, arg, KH, KW, SH, SW, n_threads)
    rY, rarg = ref.maxpool2d_forward(X, (KH, KW), (SH, SW))
    assert Y.dtype == dtype
    np.testing.assert_array_equal(Y, rY)
    np.testing.assert_array_equal(arg, rarg)
    dY = rng.standard_normal(Y.shape).astype(dtype)
    dX = np.full(X.shape, np.nan, dtype=dtype)
    _pool.maxpool2d_backward(dY, arg, dX, n_threads)
    assert_close(dX, ref.maxpool2d_backward(dY, X, (KH, KW), (SH, SW)), dtype)


def test_maxpool_ties_pick_the_first_and_nan_propagates():
    # PyTorch's rule, scanning the window row-major: take v if v > best or v is NaN
    X = np.array([[[[1.0, 1.0], [0.0, 1.0]]], [[[0.0, np.nan], [np.nan, 5.0]]],
                  [[[np.nan, 2.0], [3.0, 1.0]]]])
    Y = np.empty((3, 1, 1, 1))
    arg = np.empty((3, 1, 1, 1), dtype=np.intc)
    _pool.maxpool2d_forward(X, Y, arg, 2, 2, 2, 2)           # the unrolled 2x2 path
    assert arg.ravel().tolist() == [0, 2, 0]
    assert Y[0].item() == 1.0 and np.isnan(Y[1].item()) and np.isnan(Y[2].item())
    X = np.array([[[[1.0, np.nan, 3.0, np.nan, 3.0]]], [[[2.0, 3.0, 3.0, 1.0, 0.0]]]])
    Y = np.empty((2, 1, 1, 1))
    arg = np.empty((2, 1, 1, 1), dtype=np.intc)
    _pool.maxpool2d_forward(X, Y, arg, 1, 5, 1, 1)           # the generic path
    assert arg.ravel().tolist() == [3, 1]
    assert np.isnan(Y[0].item()) and Y[1].item() == 3.0


@pytest.mark.parametrize("case", POOL_CASES)
@pytest.mark.parametrize("n_threads", [1, 2])
def test_avgpool_kernels_match_reference(case, n_threads, dtype, rng):
    N, C, H, W, (KH, KW), (SH, SW) = case
    X = rng.standard_normal((N, C, H, W)).astype(dtype)
    OH, OW = ref.out_size(H, KH, SH, 0), ref.out_size(W, KW, SW, 0)
    Y = np.full((N, C, OH, OW), np.nan, dtype=dtype)
    _pool.avgpool2d_forward(X, Y, KH, KW, SH, SW, n_threads)
    assert Y.dtype == dtype
    assert_close(Y, ref.avgpool2d_forward(X, (KH, KW), (SH, SW)), dtype)
    dY = rng.standard_normal(Y.shape).astype(dtype)
    dX = np.full(X.shape, np.nan, dtype=dtype)
    _pool.avgpool2d_backward(dY, dX, KH, KW, SH, SW, n_threads)
    assert_close(dX, ref.avgpool2d_backward(dY, X.shape, (KH, KW), (SH, SW)), dtype)


def test_pool_kernels_reject_inconsistent_buffers():
    X = np.zeros((2, 3, 6, 6))
    Y = np.zeros((2, 3, 3, 3))
    arg = np.zeros((2, 3, 3, 3), dtype=np.intc)
    dX = np.zeros_like(X)
    bad_calls = [
        lambda: _pool.maxpool2d_forward(X, np.zeros((2, 3, 3, 2)), arg, 2, 2, 2, 2),
        lambda: _pool.maxpool2d_forward(X, Y, np.zeros((2, 3, 3, 2), np.intc), 2, 2, 2, 2),
        lambda: _pool.maxpool2d_forward(X, Y, arg, 7, 2, 2, 2),       # window > input
        lambda: _pool.maxpool2d_forward(X, Y, arg, 2, 2, 0, 2),       # zero stride
        lambda: _pool.maxpool2d_backward(Y, np.zeros((2, 3, 3, 2), np.intc), dX),
        lambda: _pool.maxpool2d_backward(Y, arg, np.zeros((2, 2, 6, 6))),
        lambda: _pool.avgpool2d_forward(X, np.zeros((2, 3, 2, 3)), 2, 2, 2, 2),
        lambda: _pool.avgpool2d_backward(Y, np.zeros((2, 3, 6, 5)), 2, 2, 2, 2),
        lambda: _pool.avgpool2d_forward(X, Y, 2, 2, 2, 2, n_threads=0),
    ]
    for call in bad_calls:
        with pytest.raises(ValueError):
            call()


@pytest.mark.parametrize("bad", [-1, 36, 2**31 - 1])
def test_maxpool_backward_rejects_out_of_range_indices(bad):
    dY = np.ones((2, 3, 3, 3))
    arg = np.zeros((2, 3, 3, 3), dtype=np.intc)
    arg[1, 2, 0, 1] = bad
    dX = np.full((2, 3, 6, 6), 7.0)
    with pytest.raises(ValueError, match="argmax"):
        _pool.maxpool2d_backward(dY, arg, dX)
    assert np.all(dX == 7.0)  # nothing written


# ------------------------------------------------------------------------------------ dropout

@pytest.mark.parametrize("rate", [0.0, 0.3, 0.9])
@pytest.mark.parametrize("n", [1, 37, 70000])
def test_dropout_kernels_match_reference(rate, n, dtype, rng):
    X = rng.standard_normal(n).astype(dtype)
    U = rng.uniform(size=n).astype(dtype)
    Y = np.empty_like(X)
    mask = np.empty_like(X)
    _dropout.dropout_forward(X, U, rate, mask, Y, 2)
    rY, rmask = ref.dropout_forward(X, U, rate)
    assert Y.dtype == dtype
    assert_close(Y, rY, dtype)
    assert_close(mask, rmask, dtype)
    dY = rng.standard_normal(n).astype(dtype)
    dX = np.empty_like(dY)
    _dropout.dropout_backward(dY, mask, dX, 2)
    assert_close(dX, dY * rmask, dtype)
    # in place: U -> mask and X -> Y, dY -> dX
    _dropout.dropout_forward(X, U, rate, U, X)
    assert_close(X, rY, dtype)
    _dropout.dropout_backward(dY, U, dY)
    assert_close(dY, dX, dtype)


def test_dropout_kernels_reject_inconsistent_buffers():
    a = np.zeros(5)
    with pytest.raises(ValueError):
        _dropout.dropout_forward(a, np.zeros(4), 0.5, a, a)
    with pytest.raises(ValueError):
        _dropout.dropout_forward(a, a, 1.0, a, a)
    with pytest.raises(ValueError):
        _dropout.dropout_forward(a, a, -0.1, a, a)
    with pytest.raises(ValueError):
        _dropout.dropout_backward(a, a, np.zeros(6))


# ------------------------------------------------------------------------------------ padding
# (N, C, H, W, pool, stride, padding); the last case is large enough for the threaded passes
PAD_POOL_CASES = [
    (2, 3, 5, 5, (2, 2), (2, 2), (1, 1)),
    (1, 2, 7, 6, (3, 3), (2, 1), (1, 0)),
    (2, 1, 1, 9, (1, 4), (1, 3), (0, 2)),
    (4, 8, 32, 33, (3, 3), (2, 2), (1, 1)),
    (1, 2, 4, 150, (2, 3), (1, 1), (1, 1)),      # rows of several 32-output segments
    (2, 1, 6, 110, (3, 5), (2, 3), (1, 2)),
]


@pytest.mark.parametrize("case", PAD_POOL_CASES)
@pytest.mark.parametrize("include_pad", [True, False])
def test_padded_pool_kernels_match_reference_at_any_thread_count(case, include_pad, dtype, rng):
    N, C, H, W, pool, stride, pad = case
    X = rng.permutation(N * C * H * W).reshape(N, C, H, W).astype(dtype) / 7  # no ties
    OH, OW = (ref.out_size(H, pool[0], stride[0], pad[0]),
              ref.out_size(W, pool[1], stride[1], pad[1]))
    dY = rng.standard_normal((N, C, OH, OW)).astype(dtype)
    rY, rarg = ref.maxpool2d_forward(X, pool, stride, pad)
    rYa = ref.avgpool2d_forward(X, pool, stride, pad, include_pad)
    rdXa = ref.avgpool2d_backward(dY, X.shape, pool, stride, padding=pad,
                                  count_include_pad=include_pad)
    out = []
    for n_threads in (1, 2):
        Y, arg = np.full(rY.shape, np.nan, dtype), np.full(rY.shape, -1, np.intc)
        Ya, dX, dXa = np.full(rY.shape, np.nan, dtype), np.full_like(X, np.nan), \
            np.full_like(X, np.nan)
        _pool.maxpool2d_forward(X, Y, arg, *pool, *stride, n_threads, *pad)
        _pool.maxpool2d_backward(dY, arg, dX, n_threads)
        _pool.avgpool2d_forward(X, Ya, *pool, *stride, n_threads, *pad, include_pad)
        _pool.avgpool2d_backward(dY, dXa, *pool, *stride, n_threads, *pad, include_pad)
        np.testing.assert_array_equal(Y, rY)
        np.testing.assert_array_equal(arg, rarg)
        assert_close(dX, ref.maxpool2d_backward(dY, X, pool, stride, pad), dtype)
        assert_close(Ya, rYa, dtype)
        assert_close(dXa, rdXa, dtype)
        out.append((Y, arg, dX, Ya, dXa))
    for a, b_ in zip(*out):
        np.testing.assert_array_equal(a, b_)


def test_padded_pool_kernels_reject_bad_geometry():
    X = np.zeros((1, 1, 5, 5))
    Y = np.zeros((1, 1, 3, 3))
    arg = np.zeros((1, 1, 3, 3), np.intc)
    for call in [lambda: _pool.maxpool2d_forward(X, Y, arg, 2, 2, 2, 2, 1, 2, 0),  # pad > K/2
                 lambda: _pool.avgpool2d_forward(X, Y, 2, 2, 2, 2, 1, -1, 0),
                 lambda: _pool.avgpool2d_backward(Y, X, 3, 3, 2, 2, 1, 1, 2),
                 lambda: _pool.maxpool2d_forward(X, np.zeros((1, 1, 2, 2)), arg, 2, 2, 2, 2, 1,
                                                 1, 1)]:                           # Y wrong size
        with pytest.raises(ValueError):
            call()


# ------------------------------------------------------------------------------------ global pools

GLOBAL_KERNEL_CASES = [(3, 4, 5, False), (3, 4, 5, True), (2, 1, 1, False), (1, 7, 1, True),
                       (16, 64, 40, False), (16, 40, 64, True)]     # last two: threaded


@pytest.mark.parametrize("N,A,B,channels_last", GLOBAL_KERNEL_CASES)
def test_global_pool_kernels_match_reference_at_any_thread_count(N, A, B, channels_last, dtype,
                                                                  rng):
    X = rng.permutation(N * A * B).reshape(N, A, B).astype(dtype) / 7      # no ties
    C = B if channels_last else A
    dY = rng.standard_normal((N, C)).astype(dtype)
    rY, rarg = ref.global_pool_forward(X, True, channels_last)
    rYa = ref.global_pool_forward(X, False, channels_last)[0]
    rdX = ref.global_pool_backward(dY, X, True, channels_last)
    rdXa = ref.global_pool_backward(dY, X, False, channels_last)
    for n_threads in (1, 2, 3):
        Y, arg, Ya = np.full((N, C), np.nan, dtype), np.full((N, C), -1, np.intc), \
            np.full((N, C), np.nan, dtype)
        dX, dXa = np.full_like(X, np.nan), np.full_like(X, np.nan)
        _pool.global_maxpool_forward(X, Y, arg, channels_last, n_threads)
        _pool.global_maxpool_backward(dY, arg, dX, channels_last, n_threads)
        _pool.global_avgpool_forward(X, Ya, channels_last, n_threads)
        _pool.global_avgpool_backward(dY, dXa, channels_last, n_threads)
        np.testing.assert_array_equal(Y, rY)
        np.testing.assert_array_equal(arg, rarg)
        np.testing.assert_array_equal(dX, rdX)
        assert_close(Ya, rYa, dtype)
        assert_close(dXa, rdXa, dtype)


def test_global_pool_kernels_reject_bad_buffers():
    X = np.zeros((2, 3, 4))
    Y = np.zeros((2, 3))
    arg = np.zeros((2, 3), np.intc)
    bad = [lambda: _pool.global_avgpool_forward(X, np.zeros((2, 4))),
           lambda: _pool.global_avgpool_forward(X, np.zeros((2, 3)), True),    # C is 4 then
           lambda: _pool.global_maxpool_forward(X, Y, np.zeros((2, 4), np.intc)),
           lambda: _pool.global_avgpool_backward(Y, np.zeros((3, 3, 4))),
           lambda: _pool.global_maxpool_backward(Y, np.zeros((1, 3), np.intc), X),
           lambda: _pool.global_avgpool_forward(X, Y, n_threads=0),
           lambda: _pool.global_avgpool_forward(np.zeros((2, 3, 0)), Y)]
    for call in bad:
        with pytest.raises(ValueError):
            call()
    for value in (-1, 4, 2**31 - 1):
        arg[1, 2] = value
        dX = np.full_like(X, 7.0)
        with pytest.raises(ValueError, match="argmax"):
            _pool.global_maxpool_backward(Y, arg, dX)
        assert np.all(dX == 7.0)     # nothing written


def test_padded_and_segmented_maxpool_keep_the_tie_and_nan_rules():
    # the row-major scan's rule in every path: first maximum on ties, the last NaN wins
    X = np.zeros((1, 1, 2, 70))
    X[0, 0, 1, 40] = X[0, 0, 0, 41] = 3.0         # tie inside one window: the earlier row wins
    X[0, 0, 0, 10] = X[0, 0, 1, 11] = np.nan      # two NaNs in one window: the later one
    X[0, 0, 1, 0] = np.nan                        # a NaN in a padded edge window
    Y = np.empty((1, 1, 3, 70))
    arg = np.empty((1, 1, 3, 70), dtype=np.intc)
    _pool.maxpool2d_forward(X, Y, arg, 2, 3, 1, 1, 1, 1, 1)
    rY, rarg = ref.maxpool2d_forward(X, (2, 3), (1, 1), (1, 1))
    np.testing.assert_array_equal(Y, rY)           # NaN == NaN for assert_array_equal
    torch = pytest.importorskip("torch")
    tY, targ = torch.nn.functional.max_pool2d(torch.tensor(X), (2, 3), 1, 1, return_indices=True)
    np.testing.assert_array_equal(Y, tY.numpy())
    np.testing.assert_array_equal(arg, targ.numpy())
    assert arg[0, 0, 1, 41] == 41 and arg[0, 0, 2, 41] == 70 + 40 and arg[0, 0, 1, 10] == 81
