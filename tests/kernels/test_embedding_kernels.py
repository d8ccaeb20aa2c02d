"""Embedding kernels against the NumPy references; duplicates, padding, threads, bad ids."""
import numpy as np
import pytest

from nnc._kernels import _embedding
from tests import _reference_norm as ref
from tests._reference_conv import assert_close


@pytest.mark.parametrize("N, V, D", [(1, 1, 1), (7, 5, 3), (50, 11, 8), (3000, 40, 32)])
@pytest.mark.parametrize("n_threads", [1, 2])
def test_embedding_kernels_match_reference(N, V, D, n_threads, dtype, rng):
    ids = rng.randint(0, V, N).astype(np.int64)      # duplicates whenever N > V
    W = rng.standard_normal((V, D)).astype(dtype)
    Y = np.full((N, D), np.nan, dtype)
    _embedding.embedding_forward(ids, W, Y, n_threads)
    np.testing.assert_array_equal(Y, ref.embedding_forward(ids, W))
    dY = rng.standard_normal((N, D)).astype(dtype)
    dW = np.full((V, D), np.nan, dtype)            # every row is written, touched or not
    _embedding.embedding_backward(ids, dY, dW, -1, n_threads)
    assert dW.dtype == dtype
    assert_close(dW, ref.embedding_backward(ids, dY, V), dtype)
    pad = int(ids[0])
    _embedding.embedding_backward(ids, dY, dW, pad, n_threads)
    assert_close(dW, ref.embedding_backward(ids, dY, V, padding_idx=pad), dtype)
    assert not dW[pad].any()


def test_embedding_backward_threads_are_bitwise_equal(rng):
    """Threads own rows of the table, each row sums its ids in order: any split, same bits."""
    ids = rng.randint(0, 300, 5000).astype(np.int64)
    dY = rng.standard_normal((5000, 16)).astype(np.float32)
    out = []
    for n_threads in (1, 2, 3):
        dW = np.empty((300, 16), np.float32)
        _embedding.embedding_backward(ids, dY, dW, 7, n_threads)
        out.append(dW)
    np.testing.assert_array_equal(out[0], out[1])
    np.testing.assert_array_equal(out[0], out[2])


def test_embedding_kernels_check_every_id_before_touching_memory():
    W = np.arange(12.0).reshape(4, 3)
    Y = np.zeros((3, 3))
    dW = np.full((4, 3), 5.0)
    for bad in ([0, 4, 1], [0, -1, 1], [2**62, 0, 0], [-(2**63), 0, 1]):
        ids = np.array(bad, dtype=np.int64)
        with pytest.raises(ValueError, match=r"outside \[0, 4\)"):
            _embedding.embedding_forward(ids, W, Y)
        with pytest.raises(ValueError, match=r"outside \[0, 4\)"):
            _embedding.embedding_backward(ids, Y, dW)
        assert not Y.any() and (dW == 5.0).all()       # nothing written


def test_embedding_kernels_reject_bad_buffers():
    ids = np.array([0, 1, 2], dtype=np.int64)
    W = np.zeros((4, 3))
    bad = [
        lambda: _embedding.embedding_forward(ids, W, np.zeros((3, 2))),
        lambda: _embedding.embedding_forward(ids, W, np.zeros((2, 3))),
        lambda: _embedding.embedding_forward(ids, W, np.zeros((3, 3)), 0),
        lambda: _embedding.embedding_backward(ids, np.zeros((3, 2)), W),
        lambda: _embedding.embedding_backward(ids, np.zeros((2, 3)), W),
        lambda: _embedding.embedding_backward(ids, np.zeros((3, 3)), W, 4),
        lambda: _embedding.embedding_backward(ids, np.zeros((3, 3)), W, -2),
        lambda: _embedding.embedding_backward(ids, np.zeros((3, 3)), W, -1, 0),
    ]
    for call in bad:
        with pytest.raises(ValueError):
            call()
    with pytest.raises((ValueError, TypeError)):
        _embedding.embedding_forward(ids.astype(np.int32), W, np.zeros((3, 3)))
