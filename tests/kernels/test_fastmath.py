"""The vectorised exp / tanh / logistic (nnc._kernels._fastmath) against the C library.

The bounds are the maxima stated in _fastmath.pyx (measured over every float32 and 4e7 float64 by
``python benchmarks/bench_elementwise.py --accuracy``); here a sample of a million arguments per
dtype covers every exponent (uniform bit patterns) and the range where the functions vary.
"""
import numpy as np
import pytest

from nnc._kernels import _activations, _fastmath

#: maximum error in units in the last place of the C library's result (stated in _fastmath.pyx)
MAX_ULP = {"exp": 1.0, "tanh": 3.0, "logistic": 2.0}
DTYPES = [np.float32, np.float64]


def _logistic_libm(x):
    """1 / (1 + exp(-x)) for x >= 0, e / (1 + e) with e = exp(x) below: the C-library formula."""
    e = -np.abs(x)
    _fastmath.exp_libm(e)
    one = np.ones_like(x)
    return np.where(x >= 0, one / (one + e), e / (one + e))


def _fast(name, x):
    out = np.array(x, copy=True)
    if name == "exp":
        _fastmath.exp_fast(out)
    elif name == "tanh":
        _fastmath.tanh_fast(out)
    else:
        _fastmath.sigmoid_fast(out)
    return out


def _libm(name, x):
    out = np.array(x, copy=True)
    if name == "exp":
        _fastmath.exp_libm(out)
        return out
    if name == "tanh":
        _fastmath.tanh_libm(out)
        return out
    return _logistic_libm(out)


def _sample(dtype, n=1 << 20):
    rng = np.random.default_rng(12345)
    if dtype == np.float32:
        bits = rng.integers(0, 1 << 32, n // 2, dtype=np.uint64).astype(np.uint32).view(dtype)
    else:
        bits = rng.integers(0, 1 << 64, n // 2, dtype=np.uint64, endpoint=False).view(dtype)
    spread = rng.standard_normal(n // 2) * 10.0 ** rng.uniform(-3, 3, n // 2)
    return np.concatenate([bits, spread.astype(dtype)])


def _ulp_error(got, ref):
    """(max error in ulps over finite references, number of non-finite mismatches)."""
    fin = np.isfinite(ref)
    same = (got == ref) | (np.isnan(got) & np.isnan(ref))
    r = ref[fin]
    err = np.abs(got[fin].astype(np.float64) - r.astype(np.float64)) / np.spacing(np.abs(r))
    err[~np.isfinite(got[fin])] = np.inf
    return float(err.max()), int(np.count_nonzero(~fin & ~same))


@pytest.mark.parametrize("name", sorted(MAX_ULP))
@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
def test_within_stated_error_of_c_library(name, dtype):
    x = _sample(dtype)
    got = _fast(name, x)
    assert got.dtype == dtype
    ulp, mismatches = _ulp_error(got, _libm(name, x))
    assert mismatches == 0
    assert ulp <= MAX_ULP[name], f"{name} {np.dtype(dtype).name}: {ulp} ulp"


@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
def test_special_values(dtype):
    info = np.finfo(dtype)
    inf, nan = np.inf, np.nan
    x = np.array([0.0, -0.0, inf, -inf, nan, -nan, info.tiny, -info.tiny,
                  info.smallest_subnormal, -info.smallest_subnormal, info.max, -info.max],
                 dtype=dtype)
    t = _fast("tanh", x)
    np.testing.assert_array_equal(t, [0, 0, 1, -1, nan, nan, info.tiny, -info.tiny,
                                      info.smallest_subnormal, -info.smallest_subnormal, 1, -1])
    assert list(np.signbit(t[:2])) == [False, True]          # tanh(-0) = -0
    np.testing.assert_array_equal(_fast("exp", x)[:6], [1, 1, inf, 0, nan, nan])
    np.testing.assert_array_equal(_fast("exp", x)[-2:], [inf, 0])
    s = _fast("logistic", x)
    np.testing.assert_array_equal(s[:6], [0.5, 0.5, 1, 0, nan, nan])
    np.testing.assert_array_equal(s[-2:], [1, 0])


@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
def test_exp_underflow_and_overflow_edges(dtype):
    """Around the smallest subnormal result and the largest finite one, exp matches the C
    library within its bound (2^k is assembled in two halves, so nothing flushes early)."""
    if dtype == np.float32:
        lo, hi = np.log(np.float64(2.0 ** -149)), np.log(np.float64(np.finfo(dtype).max))
    else:
        lo, hi = -745.1332191019411, 709.782712893384
    x = np.concatenate([np.linspace(lo - 2, lo + 30, 20001), np.linspace(hi - 5, hi + 1, 20001)])
    x = x.astype(dtype)
    got, ref = _fast("exp", x), _libm("exp", x)
    sub = (ref != 0) & (np.abs(ref) < np.finfo(dtype).tiny)
    assert np.any(sub) and np.any(np.isinf(ref)) and np.any(ref == 0)
    np.testing.assert_array_equal(np.isinf(got), np.isinf(ref))
    # subnormal results: within one unit of the subnormal spacing (a second rounding)
    assert np.max(np.abs(got[sub].astype(np.float64) - ref[sub])) <= np.finfo(dtype).smallest_subnormal
    ulp, mismatches = _ulp_error(got[~sub], ref[~sub])
    assert mismatches == 0 and ulp <= MAX_ULP["exp"]


@pytest.mark.parametrize("n", [1, 2, 3, 5, 7, 8, 15, 17, 33, 1000])
@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
def test_every_length_fills_every_element(n, dtype):
    """The vector loops' remainders: every element is computed, none beyond n is touched."""
    rng = np.random.RandomState(n)
    buf = np.full(n + 8, 7.0, dtype=dtype)
    x = (4 * rng.standard_normal(n)).astype(dtype)
    for name in sorted(MAX_ULP):
        buf[:n] = x
        view = buf[:n]
        {"exp": _fastmath.exp_fast, "tanh": _fastmath.tanh_fast,
         "logistic": _fastmath.sigmoid_fast}[name](view)
        ulp, mismatches = _ulp_error(view.copy(), _libm(name, x))
        assert mismatches == 0 and ulp <= MAX_ULP[name]
        assert np.all(buf[n:] == 7.0)


@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
def test_activation_kernels_use_the_vectorised_functions(dtype):
    x = (3 * np.random.RandomState(0).standard_normal(999)).astype(dtype)
    for code, name in ((_activations.TANH, "tanh"), (_activations.LOGISTIC, "logistic")):
        z = x.copy()
        _activations.activation_forward(code, z)
        np.testing.assert_array_equal(z, _fast(name, x))


def test_twins_accept_empty_and_reject_strided():
    for fn in (_fastmath.exp_fast, _fastmath.tanh_fast, _fastmath.sigmoid_fast,
               _fastmath.exp_libm, _fastmath.tanh_libm):
        fn(np.empty(0))
        with pytest.raises(ValueError):
            fn(np.zeros(10)[::2])
    assert _fastmath.simd_clone() in ("x86-64-v4", "x86-64-v3", "baseline")
