"""Element-wise kernels: speed per element, and (``--accuracy``) the error of the vectorised math.

Speed (one thread): nnc's vectorised exp / tanh / logistic (``nnc._kernels._fastmath``, the SIMD
clone this CPU runs is printed) against the C library's scalar exp / tanh over the same loop and
against NumPy's ufuncs, on 2,048 elements (one 32×64 hidden layer) and on 100,000; ReLU forward
and backward on 64×8×26×26 float32 (346,112 elements, the first convolution's output in
bench_cnn.py); one optimizer step (SGD with momentum, AdaGrad, RMSprop, Adam) over 10,000
parameters.  Each call runs through its Python twin, in place; the copy that restores the input is
timed alone and subtracted.  Min of 7 repeats.

Accuracy (``--accuracy``): exp, tanh and logistic against the C library (logistic: the formula
the kernel used before, 1 / (1 + exp(-x)) for x >= 0 and e / (1 + e), e = exp(x), below), in
units in the last place of the C library's result: over every float32 (2^32 values; a few
minutes) and over ``--n64`` float64 arguments, half of them uniform over the bit patterns (every
exponent, subnormals, inf, NaN), half standard normals times 10^U(-3, 3).  Non-finite results
must match exactly (inf for inf, NaN for NaN).

    python benchmarks/bench_elementwise.py [--n 2048,100000]
    python benchmarks/bench_elementwise.py --accuracy [--n64 40000000]
"""
import argparse
import sys
import timeit

import numpy as np


def _ns_per_element(fn, x, repeat=7):
    """min over repeats of (copy x into a buffer, fn(buffer)) minus the copy alone, ns/element."""
    buf = x.copy()
    number = max(1, int(2e6 // x.size))

    def run():
        buf[...] = x
        fn(buf)

    t = min(timeit.repeat(run, number=number, repeat=repeat)) / number
    c = min(timeit.repeat(lambda: buf.__setitem__(Ellipsis, x), number=number,
                          repeat=repeat)) / number
    return max(t - c, 0.0) / x.size * 1e9


def speed(sizes):
    from nnc._kernels import _activations, _fastmath, _optim

    print(f"SIMD clone of the vectorised kernels: {_fastmath.simd_clone()}; 1 thread")
    rng = np.random.RandomState(0)
    funcs = [
        ("exp", _fastmath.exp_fast, _fastmath.exp_libm, lambda z: np.exp(z, out=z)),
        ("tanh", _fastmath.tanh_fast, _fastmath.tanh_libm, lambda z: np.tanh(z, out=z)),
        ("logistic", lambda z: _activations.activation_forward(_activations.LOGISTIC, z),
         None, None),
    ]
    print(f"\n{'ns per element':<16}{'dtype':>8}{'n':>8}{'nnc':>9}{'C library':>11}"
          f"{'NumPy':>8}{'C lib / nnc':>13}")
    for dt in (np.float32, np.float64):
        for n in sizes:
            x = (rng.standard_normal(n) * 3).astype(dt)
            for name, fast, libm, npf in funcs:
                a = _ns_per_element(fast, x)
                b = _ns_per_element(libm, x) if libm else float("nan")
                c = _ns_per_element(npf, x) if npf else float("nan")
                print(f"{name:<16}{np.dtype(dt).name:>8}{n:>8}{a:>9.2f}{b:>11.2f}{c:>8.2f}"
                      f"{b / a:>13.1f}")

    Z = rng.standard_normal(64 * 8 * 26 * 26).astype(np.float32)
    Y = np.maximum(Z, 0)
    dY = rng.standard_normal(Z.size).astype(np.float32)
    fwd = _ns_per_element(lambda z: _activations.activation_forward(_activations.RELU, z), Z)
    bwd = _ns_per_element(lambda d: _activations.activation_backward(_activations.RELU, Y, d), dY)
    print(f"\nReLU on 64×8×26×26 float32 ({Z.size} elements): forward "
          f"{fwd * Z.size / 1e3:.1f} µs, backward {bwd * Z.size / 1e3:.1f} µs")

    print(f"\n{'optimizer step, 10,000 parameters':<36}{'float32 µs':>12}{'float64 µs':>12}")
    for name, kind, mom in (("SGD (momentum 0.9)", _optim.SGD, 0.9),
                            ("AdaGrad", _optim.ADAGRAD, 0.0),
                            ("RMSprop", _optim.RMSPROP, 0.9),
                            ("Adam", _optim.ADAM, 0.9)):
        us = []
        for dt in (np.float32, np.float64):
            p = rng.standard_normal(10000).astype(dt)
            g = rng.standard_normal(10000).astype(dt)
            s1, s2 = np.zeros_like(p), np.zeros_like(p)
            cfg = dict(kind=kind, lr=1e-3, momentum=mom, beta2=0.999, eps=1e-8, nesterov=0,
                       alpha=0.0, decay=0.0, n_decay=0, t=0, n_threads=1)
            us.append(min(timeit.repeat(lambda: _optim.optimizer_step(cfg, p, g, s1, s2),
                                        number=500, repeat=7)) / 500 * 1e6)
        print(f"{name:<36}{us[0]:>12.2f}{us[1]:>12.2f}")


# ---------------------------------------------------------------------- accuracy

def _sigmoid_libm(x):
    """The C-library formula the logistic kernel used before (numpy's + and / round like C's)."""
    from nnc._kernels import _fastmath
    e = np.abs(x)
    np.negative(e, out=e)
    _fastmath.exp_libm(e)                               # e = exp(-|x|) <= 1
    one = np.ones_like(x)
    return np.where(x >= 0, one / (one + e), e / (one + e))


class _Worst:
    def __init__(self):
        self.ulp, self.x, self.bad = 0.0, None, 0

    def update(self, x, got, ref, dt):
        fin = np.isfinite(ref)
        same = (got == ref) | (np.isnan(got) & np.isnan(ref))
        self.bad += int(np.count_nonzero(~fin & ~same))
        if fin.any():
            r = ref[fin]
            err = (np.abs(got[fin].astype(np.float64) - r.astype(np.float64))
                   / np.spacing(np.abs(r)).astype(np.float64))
            err[~np.isfinite(got[fin])] = np.inf
            i = int(np.argmax(err))
            if err[i] > self.ulp:
                self.ulp, self.x = float(err[i]), x[fin][i]


def _check_chunk(x, worst):
    from nnc._kernels import _activations, _fastmath
    for name, fast, ref in (
            ("exp", _fastmath.exp_fast, lambda z: (_fastmath.exp_libm(z), z)[1]),
            ("tanh", _fastmath.tanh_fast, lambda z: (_fastmath.tanh_libm(z), z)[1]),
            ("logistic", lambda z: _activations.activation_forward(_activations.LOGISTIC, z),
             _sigmoid_libm)):
        got = x.copy()
        fast(got)
        worst[name].update(x, got, ref(x.copy()), x.dtype)


def accuracy(n64):
    from nnc._kernels import _fastmath
    print(f"SIMD clone: {_fastmath.simd_clone()}; error in ulps of the C library's result")
    for dt in (np.float32, np.float64):
        worst = {name: _Worst() for name in ("exp", "tanh", "logistic")}
        if dt == np.float32:
            chunk = 1 << 24
            label = "every float32 (2^32)"
            for start in range(0, 1 << 32, chunk):
                bits = np.arange(start, start + chunk, dtype=np.uint64).astype(np.uint32)
                _check_chunk(bits.view(np.float32), worst)
        else:
            rng = np.random.default_rng(0)
            label = f"{n64:,} float64"
            chunk = 1 << 22
            for start in range(0, n64, chunk):
                m = min(chunk, n64 - start)
                h = m // 2
                x = np.empty(m)
                x[:h] = rng.integers(0, 1 << 64, h, dtype=np.uint64, endpoint=False).view(
                    np.float64)
                x[h:] = rng.standard_normal(m - h) * 10.0 ** rng.uniform(-3, 3, m - h)
                _check_chunk(x, worst)
        for name, w in worst.items():
            print(f"{np.dtype(dt).name:<8}{name:<10}{label:<24} max {w.ulp:.2f} ulp "
                  f"(at x = {w.x!r}), non-finite mismatches: {w.bad}")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", default="2048,100000", help="comma-separated array sizes")
    ap.add_argument("--accuracy", action="store_true")
    ap.add_argument("--n64", type=int, default=40_000_000)
    args = ap.parse_args(argv)
    try:
        from threadpoolctl import threadpool_limits
        _limits = threadpool_limits(1)  # noqa: F841 - keep the limits alive
    except ImportError:
        pass
    if args.accuracy:
        accuracy(args.n64)
    else:
        speed([int(s) for s in args.n.split(",")])


if __name__ == "__main__":
    sys.exit(main())
