"""Per-kernel cost of one training step of a 30→64→64→1 network at batch 32 (binary CE, Adam).

Each kernel is timed through its Python twin (so every number includes ~0.5-1 µs of call and
shape-check overhead), then the whole step three ways: kernel twins called one by one, the
Python per-batch loop (Sequential), and the compiled whole-epoch loop (per batch).

``--activation`` picks the hidden activation (relu, tanh or logistic).  A second table times each
activation's forward and backward on one 32×64 hidden layer, tanh and logistic also through the C
library's scalar tanh / exp over the same loop (what the kernels ran before they were vectorised;
``nnc._kernels._fastmath``).  A third compares whole L-BFGS training with scikit-learn's
MLPClassifier on the same problem (2,000 × 30 make_classification, hidden (64, 64), float64,
50 iterations, same initial weights, so both take the same iterations), each library in its own
process: ms per iteration for tanh, logistic and relu (``--no-lbfgs`` skips it).

    python benchmarks/bench_step.py [--dtype float32|float64] [--threads 1]
                                    [--activation relu|tanh|logistic] [--no-lbfgs]
"""
import argparse
import json
import sys
import time
import timeit
import warnings

import numpy as np

LBFGS = dict(n_samples=2000, n_features=30, hidden=(64, 64), max_iter=50, repeat=5)


def _time(fn, number=2000, repeat=7):
    return min(timeit.repeat(fn, number=number, repeat=repeat)) / number * 1e6  # µs


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dtype", default="float64", choices=["float32", "float64"])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--activation", default="relu", choices=sorted(ACTS))
    ap.add_argument("--no-lbfgs", action="store_true", help="skip the L-BFGS comparison")
    ap.add_argument("--worker", choices=["nnc", "sklearn"], help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        return lbfgs_worker(args.worker, args.threads)
    try:
        from threadpoolctl import threadpool_limits
        _limits = threadpool_limits(args.threads)  # noqa: F841 - keep the limits alive
    except ImportError:
        pass
    from nnc import Sequential
    import nnc.layers as nnc_layers
    from nnc.layers import Dense
    from nnc.optimizers import Adam
    from nnc._kernels import _dense, _activations, _losses, _optim, _fastmath

    dt = np.dtype(args.dtype)
    B, sizes = 32, [30, 64, 64, 1]
    rng = np.random.RandomState(0)
    X = rng.standard_normal((B, 30)).astype(dt)
    y = rng.randint(0, 2, (B, 1)).astype(dt)
    Ws = [rng.standard_normal((a, b)).astype(dt) * 0.1 for a, b in zip(sizes, sizes[1:])]
    bs = [np.zeros(b, dt) for b in sizes[1:]]
    As = [np.empty((B, b), dt) for b in sizes[1:]]
    dAs = [np.empty((B, b), dt) for b in sizes[1:]]
    dXs = [np.empty((B, a), dt) for a in sizes[:-1]]
    dWs = [np.empty_like(W) for W in Ws]
    dbs = [np.empty_like(b) for b in bs]
    n_params = sum(W.size + b.size for W, b in zip(Ws, bs))
    p = rng.standard_normal(n_params).astype(dt)
    g = rng.standard_normal(n_params).astype(dt)
    m, v = np.zeros_like(p), np.zeros_like(p)
    cfg = dict(kind=_optim.ADAM, lr=1e-3, momentum=0.9, beta2=0.999, eps=1e-8, nesterov=0,
               alpha=0.0, decay=0.0, n_decay=0, t=0, n_threads=1)

    act_name = args.activation
    Act = getattr(nnc_layers, ACTS[act_name][0])
    code = getattr(_activations, ACTS[act_name][1])
    rows = []
    for i in range(3):
        rows.append((f"dense_forward  layer {i + 1} ({sizes[i]}→{sizes[i + 1]})",
                     _time(lambda i=i: _dense.dense_forward(As[i - 1] if i else X, Ws[i], bs[i],
                                                            As[i]))))
    for i in range(2):
        rows.append((f"{act_name} forward layer {i + 1}",
                     _time(lambda i=i: _activations.activation_forward(
                         code, As[i].reshape(-1), 0.0))))
    rows.append(("loss: sigmoid BCE + d(logits)",
                 _time(lambda: _losses.loss_gradient(_losses.BCE, As[2], y, None, None, dAs[2]))))
    for i in (2, 1, 0):
        if i < 2:
            rows.append((f"{act_name} backward layer {i + 1}",
                         _time(lambda i=i: _activations.activation_backward(
                             code, As[i].reshape(-1), dAs[i].reshape(-1), 0.0))))
        rows.append((f"dense_backward layer {i + 1}" + (" (no dX)" if i == 0 else ""),
                     _time(lambda i=i: _dense.dense_backward(
                         As[i - 1] if i else X, Ws[i], dAs[i], dWs[i], dbs[i],
                         dXs[i] if i else None))))
    rows.append((f"adam step ({n_params} params, one fused pass)",
                 _time(lambda: _optim.optimizer_step(cfg, p, g, m, v))))

    net = Sequential([Dense(64), Act(), Dense(64), Act(), Dense(1)],
                     loss="binary_cross_entropy", input_shape=(30,), dtype=dt, random_state=0)
    opt = Adam(1e-3)
    Xc, yc = net._check_X(X), net._check_y(y, B)
    net._ensure_batch(B)

    def python_step():
        net._batch_loss_gradient(Xc, yc, None)
        opt.step(net.params, net.grads, n_decay=net.n_decay, n_samples=B)

    Xe = rng.standard_normal((B * 200, 30)).astype(dt)
    ye = rng.randint(0, 2, (B * 200, 1)).astype(dt)
    Xe, ye = net._check_X(Xe), net._check_y(ye, len(Xe))
    epoch = min(timeit.repeat(lambda: net.train_epoch(Xe, ye, opt, batch_size=B),
                              number=5, repeat=5)) / 5 / 200 * 1e6

    print(f"one training step, 30→64→64→1 {act_name}, batch {B}, {dt.name}, "
          f"{args.threads} thread(s)")
    print(f"{'kernel':<48}{'µs':>8}")
    for name, us in rows:
        print(f"{name:<48}{us:>8.2f}")
    print(f"{'sum of kernel twins':<48}{sum(us for _, us in rows):>8.2f}")
    print(f"{'Sequential step (Python per-batch loop)':<48}{_time(python_step, 1000):>8.2f}")
    print(f"{'train_epoch per batch (fast path if available)':<48}{epoch:>8.2f}")

    # ---- activations on one hidden layer (B x 64), against the C library's scalar loop
    Z0 = rng.standard_normal(B * 64).astype(dt) * 2
    Zw = Z0.copy()
    dY = rng.standard_normal(B * 64).astype(dt)

    def fwd(fn):
        def run():
            Zw[...] = Z0
            fn(Zw)
        return _time(run) - _time(lambda: Zw.__setitem__(Ellipsis, Z0))

    print(f"\nactivations on one {B}×64 layer ({B * 64} elements), {dt.name}; "
          f"SIMD clone: {_fastmath.simd_clone()}")
    print(f"{'':<48}{'µs':>8}")
    for name in sorted(ACTS):
        c = getattr(_activations, ACTS[name][1])
        us = fwd(lambda z, c=c: _activations.activation_forward(c, z))
        print(f"{name + ' forward':<48}{us:>8.2f}")
        if name == "tanh":
            us = fwd(_fastmath.tanh_libm)
            print(f"{'  tanh through the C library (scalar loop)':<48}{us:>8.2f}")
        if name == "logistic":
            us = fwd(_fastmath.exp_libm)
            print(f"{'  exp alone through the C library (scalar loop)':<48}{us:>8.2f}")
        Y = Z0.copy()
        _activations.activation_forward(c, Y)
        us = (_time(lambda c=c, Y=Y: _activations.activation_backward(c, Y, dY.copy()))
              - _time(dY.copy))
        print(f"{name + ' backward':<48}{us:>8.2f}")

    if not args.no_lbfgs:
        lbfgs_table(args.threads)


# ---------------------------------------------------------------------- L-BFGS against sklearn

def _lbfgs_data():
    from sklearn.datasets import make_classification
    return make_classification(n_samples=LBFGS["n_samples"], n_features=LBFGS["n_features"],
                               n_informative=10, random_state=0)


def lbfgs_worker(lib, threads):
    """Fit MLPClassifier(solver='lbfgs') with each activation; print one JSON line."""
    from threadpoolctl import threadpool_limits
    if lib == "nnc":
        from nnc import MLPClassifier
    else:
        from sklearn.neural_network import MLPClassifier
    import scipy.optimize  # noqa: F401 - loaded before the limits and the timing
    _limits = threadpool_limits(threads)  # noqa: F841
    X, y = _lbfgs_data()
    out = {}
    for act in ("tanh", "logistic", "relu"):
        best = None
        for _ in range(LBFGS["repeat"] + 1):        # the first fit is a warm-up
            clf = MLPClassifier(hidden_layer_sizes=LBFGS["hidden"], activation=act,
                                solver="lbfgs", max_iter=LBFGS["max_iter"], random_state=0)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                t0 = time.perf_counter()
                clf.fit(X, y)
                t = time.perf_counter() - t0
            best = t if best is None or t < best else best
        out[act] = dict(seconds=best, n_iter=int(clf.n_iter_), loss=float(clf.loss_))
    print(json.dumps(out))


def lbfgs_table(threads):
    from _harness import spawn_worker
    res = {lib: spawn_worker(__file__, ["--worker", lib, "--threads", threads], threads)
           for lib in ("nnc", "sklearn")}
    for lib, r in res.items():
        if "error" in r:
            print(f"\nL-BFGS comparison skipped: {lib} worker failed ({r['error']})")
            return
    print(f"\nL-BFGS, MLPClassifier hidden {LBFGS['hidden']}, {LBFGS['n_samples']}×"
          f"{LBFGS['n_features']}, float64, max_iter {LBFGS['max_iter']}, {threads} thread(s), "
          f"best of {LBFGS['repeat']} fits, each library in its own process")
    print(f"{'activation':<12}{'nnc ms/iter':>12}{'sklearn ms/iter':>16}{'sklearn / nnc':>15}"
          f"{'iters nnc, sklearn':>20}{'final loss nnc, sklearn':>26}")
    for act in ("tanh", "logistic", "relu"):
        a, b = res["nnc"][act], res["sklearn"][act]
        ma, mb = a["seconds"] / a["n_iter"] * 1e3, b["seconds"] / b["n_iter"] * 1e3
        print(f"{act:<12}{ma:>12.3f}{mb:>16.3f}{mb / ma:>15.2f}"
              f"{a['n_iter']:>11}, {b['n_iter']:<7}{a['loss']:>15.6f}, {b['loss']:.6f}")


ACTS = {"relu": ("ReLU", "RELU"), "tanh": ("Tanh", "TANH"), "logistic": ("Sigmoid", "LOGISTIC")}


if __name__ == "__main__":
    sys.exit(main())
