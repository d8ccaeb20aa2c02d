"""The measurements behind the thread policy's thresholds (nnc/_threads.py): 1 against 2 threads
for each kind of parallel work nnc does, at the sizes its layers produce, plus the load
governor's cost and what it reads on this machine.

Each piece is timed in this process through the kernels' Python twins with the governor off and
the kind's threshold set to 0 (2 threads) or to infinity (1 thread), so only the thread count
differs.  Two timings per size:

* ``hot``: the piece repeated back to back (the pool threads are still spinning from the last
  call, as inside a training epoch whose pieces are all parallel);
* ``cold``: 2 ms of sleep before each call (the worker threads have gone to sleep, as when the
  parallel pieces of an epoch are separated by serial work).

A size is worth a second thread when both gains are clearly above 1; the policy's threshold is
the smallest such size (rounded to a power of two).  Run it on a quiet machine::

    python benchmarks/bench_thresholds.py                 # everything (~2 minutes)
    python benchmarks/bench_thresholds.py --only gemm,governor
    python benchmarks/bench_thresholds.py --only topology --seconds 60

Beyond the thresholds: ``mixed`` (an Adam step right after a threaded GEMM, its jobs on
OpenBLAS's pool or an OpenMP team), ``spin`` (the CPU each pool's workers burn after one piece),
``governor`` (the cost of a window and what it reads), ``topology`` (the governor's core-distance
probe against the real 2-thread gain of a dense fit, over time).
"""
import argparse
import os
import sys
import threading
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
try:  # run from a source checkout without installing: the repository root holds nnc/
    import nnc  # noqa: F401
except ImportError:
    sys.path.insert(0, os.path.dirname(HERE))
    import nnc  # noqa: F401
from nnc._kernels import _blas, _conv, _dropout, _optim, _parallel, _pool  # noqa: E402

INF = float("inf")


def _time(fn, number, repeat, cold):
    """(min, median) seconds per call."""
    fn()
    per = []
    for _ in range(repeat):
        if cold:
            total = 0.0
            for _ in range(number):
                time.sleep(0.002)
                t0 = time.perf_counter()
                fn()
                total += time.perf_counter() - t0
        else:
            t0 = time.perf_counter()
            for _ in range(number):
                fn()
            total = time.perf_counter() - t0
        per.append(total / number)
    per.sort()
    return per[0], per[len(per) // 2]


def _compare(kind, fn, work, args):
    """Print 1- vs 2-thread times of fn for one size."""
    out = []
    for cold in (False, True):
        res = {}
        for threads in (1, 2):
            old = _parallel.set_threshold(kind, 0.0 if threads == 2 else INF)
            try:
                number = max(1, min(200, int(2e-3 / max(_probe(fn), 1e-7)))) if not cold else 20
                res[threads] = _time(fn, number, args.repeat, cold)
            finally:
                _parallel.set_threshold(kind, old)
        out.append(res)
    hot, cold = out
    print(f"  {work:>14,.0f}  hot 1t {hot[1][1] * 1e6:9.1f} us  2t {hot[2][1] * 1e6:9.1f} us  "
          f"gain {hot[1][1] / hot[2][1]:5.2f}   cold 1t {cold[1][1] * 1e6:9.1f} us  "
          f"2t {cold[2][1] * 1e6:9.1f} us  gain {cold[1][1] / cold[2][1]:5.2f}", flush=True)


def _probe(fn):
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def bench_gemm(args):
    print("GEMM (float32, row-major C (m, n) = A (m, k) @ B (k, n) through _blas._gemm); "
          "work = m n k")
    shapes = [(100, 480, 10), (64, 64, 128), (32, 676, 27), (128, 128, 64), (64, 121, 288),
              (64, 512, 64), (128, 128, 256), (64, 512, 128), (128, 256, 256), (64, 1024, 128),
              (64, 1024, 256), (128, 256, 784), (1792, 512, 28)]
    rng = np.random.RandomState(0)
    for m, n, k in shapes:
        A = rng.rand(m, k).astype(np.float32)
        B = rng.rand(k, n).astype(np.float32)
        C = np.zeros((m, n), np.float32)
        print(f"  {m}x{n}x{k}", end="")
        _compare("gemm", lambda: _blas.gemm_memview(False, False, 1.0, A, B, 0.0, C),
                 m * n * k, args)


def bench_im2col(args):
    print("im2col + col2im (float32, 3x3 kernels, stride 1, padding 1); work = elements "
          "written per pass")
    rng = np.random.RandomState(0)
    for N, C, H in [(8, 1, 16), (16, 4, 16), (64, 1, 28), (32, 8, 16), (64, 8, 26),
                    (64, 16, 28), (64, 32, 28)]:
        X = rng.rand(N, C, H, H).astype(np.float32)
        cols = np.empty((N, C * 9, H * H), np.float32)
        dX = np.empty_like(X)

        def run():
            _conv.im2col(X, cols, 3, 3, 1, 1, 1, 1, 2)
            _conv.col2im(cols, dX, 3, 3, 1, 1, 1, 1, 2)
        print(f"  N={N} C={C} {H}x{H}", end="")
        _compare("im2col", run, cols.size, args)


def bench_pool(args):
    print("max pooling 2x2 forward + backward (float32); work = input elements")
    rng = np.random.RandomState(0)
    for N, C, H in [(16, 8, 16), (64, 8, 13), (64, 8, 26), (64, 16, 26), (64, 32, 26),
                    (64, 64, 26)]:
        X = rng.rand(N, C, H, H).astype(np.float32)
        Y = np.empty((N, C, H // 2, H // 2), np.float32)
        arg = np.empty(Y.shape, np.int32)
        dX = np.empty_like(X)

        def run():
            _pool.maxpool2d_forward(X, Y, arg, 2, 2, 2, 2, 2)
            _pool.maxpool2d_backward(Y, arg, dX, 2)
        print(f"  N={N} C={C} {H}x{H}", end="")
        _compare("pool", run, X.size, args)


def bench_elementwise(args):
    print("dropout forward + backward (float32); work = elements")
    rng = np.random.RandomState(0)
    for n in [2 ** 14, 2 ** 16, 2 ** 17, 2 ** 18, 2 ** 20, 2 ** 22]:
        X = rng.rand(n).astype(np.float32)
        U = rng.rand(n).astype(np.float32)
        mask = np.empty_like(X)
        Y = np.empty_like(X)

        def run():
            _dropout.dropout_forward(X, U, 0.5, mask, Y, 2)
            _dropout.dropout_backward(Y, mask, Y, 2)
        _compare("elementwise", run, n, args)


def bench_optim(args):
    print("Adam step (float32); work = parameters")
    rng = np.random.RandomState(0)
    for n in [2 ** 16, 2 ** 18, 2 ** 19, 2 ** 20, 2 ** 21, 2 ** 22]:
        p = rng.rand(n).astype(np.float32)
        g = rng.rand(n).astype(np.float32) * 1e-3
        m = np.zeros_like(p)
        v = np.zeros_like(p)
        cfg = dict(kind=_optim.ADAM, lr=1e-3, momentum=0.9, beta2=0.999, eps=1e-8, nesterov=0,
                   alpha=0.0, decay=0.0, n_decay=0, t=0, n_threads=2)
        _compare("optim", lambda: _optim.optimizer_step(cfg, p, g, m, v), n, args)


def bench_governor(args):
    print("load governor: cost of closing one window, and what it reads (others' CPU use)")
    _parallel.governor_reset()
    t_end = time.perf_counter() + args.seconds
    reads = []
    costs = []
    window = _parallel.governor_state()["window"]
    while time.perf_counter() < t_end:
        t_due = time.perf_counter() + window * 1.01
        while time.perf_counter() < t_due:   # busy, as a fit is when a window closes
            pass
        t0 = time.perf_counter()
        _parallel.threads_for("gemm", 1e12)
        costs.append(time.perf_counter() - t0)
        others = _parallel.governor_state()["others"]
        if others is not None:
            reads.append(others)
    reads = np.array(reads)
    costs = np.array(costs) * 1e6
    print(f"  {len(reads)} windows of {_parallel.governor_state()['window']} s: others' use "
          f"min {reads.min():.3f}, median {np.median(reads):.3f}, 90% {np.percentile(reads, 90):.3f}, "
          f"max {reads.max():.3f} CPUs; closing a window costs median {np.median(costs):.1f} us "
          f"(max {costs.max():.1f})")
    t0 = time.perf_counter()
    for _ in range(100000):
        _parallel.threads_for("gemm", 1e12)
    print(f"  a decision between windows (Python twin, incl. call overhead): "
          f"{(time.perf_counter() - t0) * 10:.3f} us")


def bench_mixed(args):
    print("an Adam step (262,144 float32 parameters) right after a 2-thread GEMM (128x256x784), "
          "its jobs on OpenBLAS's pool or on an OpenMP team")
    rng = np.random.RandomState(0)
    A = rng.rand(128, 784).astype(np.float32)
    B = rng.rand(784, 256).astype(np.float32)
    C = np.zeros((128, 256), np.float32)
    n = 262144
    p = rng.rand(n).astype(np.float32)
    g = rng.rand(n).astype(np.float32) * 1e-3
    m = np.zeros_like(p)
    v = np.zeros_like(p)
    cfg = dict(kind=_optim.ADAM, lr=1e-3, momentum=0.9, beta2=0.999, eps=1e-8, nesterov=0,
               alpha=0.0, decay=0.0, n_decay=0, t=0, n_threads=2)
    old_gemm = _parallel.set_threshold("gemm", 0.0)
    try:
        for label, optim_thr, pool in (("serial step", INF, True), ("pool", 0.0, True),
                                       ("OpenMP", 0.0, False)):
            old_opt = _parallel.set_threshold("optim", optim_thr)
            old_pool = _parallel.set_pool_enabled(pool)
            try:
                tg, ta = [], []
                for _ in range(300):
                    t0 = time.perf_counter()
                    _blas.gemm_memview(False, False, 1.0, A, B, 0.0, C)
                    t1 = time.perf_counter()
                    _optim.optimizer_step(cfg, p, g, m, v)
                    ta.append(time.perf_counter() - t1)
                    tg.append(t1 - t0)
                print(f"  {label:12s} GEMM median {np.median(tg[50:]) * 1e6:8.1f} us   Adam step "
                      f"median {np.median(ta[50:]) * 1e6:8.1f} us", flush=True)
            finally:
                _parallel.set_pool_enabled(old_pool)
                _parallel.set_threshold("optim", old_opt)
    finally:
        _parallel.set_threshold("gemm", old_gemm)


def _thread_cpu():
    out = {}
    for t in os.listdir("/proc/self/task"):
        try:
            with open(f"/proc/self/task/{t}/schedstat") as fh:
                out[t] = int(fh.read().split()[0]) / 1e6   # ms on the CPU
        except OSError:
            pass
    return out


def bench_spin(args):
    print("CPU the worker threads burn after one parallel piece (Linux schedstat, ms in the "
          "0.3 s after it; the caller sleeps)")
    rng = np.random.RandomState(0)
    X = rng.rand(1 << 20).astype(np.float32)
    U = rng.rand(1 << 20).astype(np.float32)
    mask = np.empty_like(X)
    Y = np.empty_like(X)
    A = rng.rand(128, 784).astype(np.float32)
    B = rng.rand(784, 256).astype(np.float32)
    C = np.zeros((128, 256), np.float32)
    me = str(threading.get_native_id())
    pieces = (("OpenMP region (dropout, 2 threads)", False,
               lambda: _dropout.dropout_forward(X, U, 0.5, mask, Y, 2)),
              ("OpenBLAS pool job (dropout, 2 threads)", True,
               lambda: _dropout.dropout_forward(X, U, 0.5, mask, Y, 2)),
              ("OpenBLAS GEMM (2 threads)", True,
               lambda: _blas.gemm_memview(False, False, 1.0, A, B, 0.0, C)))
    olds = {k: _parallel.set_threshold(k, 0.0) for k in ("elementwise", "gemm")}
    try:
        for label, pool, fn in pieces:
            old_pool = _parallel.set_pool_enabled(pool)
            try:
                fn()
                time.sleep(0.5)
                fn()
                c0 = _thread_cpu()
                time.sleep(0.3)
                c1 = _thread_cpu()
            finally:
                _parallel.set_pool_enabled(old_pool)
            burnt = max(c1[t] - c0.get(t, 0.0) for t in c1 if t != me)
            print(f"  {label:40s} {burnt:6.1f} ms")
    finally:
        for k, v in olds.items():
            _parallel.set_threshold(k, v)


def bench_topology(args):
    print("how far apart the cores are (the governor's probe) against what 2 threads give a "
          "dense-network fit (MLPClassifier 12,000x784, (256, 128), 1 epoch), every second")
    import warnings
    import nnc
    rng = np.random.RandomState(0)
    X = rng.random_sample((12000, 784)).astype(np.float32)
    y = rng.randint(0, 10, 12000)

    def fit():
        clf = nnc.MLPClassifier(hidden_layer_sizes=(256, 128), max_iter=1, tol=0.0,
                                n_iter_no_change=10 ** 9, dtype="float32", random_state=0)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            clf.fit(X, y)
    defaults = _parallel.thresholds()
    t_end = time.perf_counter() + args.seconds
    rows = []
    while time.perf_counter() < t_end:
        lat = [_parallel.probe_latency() for _ in range(3)]
        out = {}
        for mode in ("serial", "forced", "policy"):
            for k in _parallel.WORK_KINDS:
                _parallel.set_threshold(k, INF if mode == "serial" else defaults[k])
            _parallel.set_governor(mode == "policy")
            t0 = time.perf_counter()
            fit()
            out[mode] = time.perf_counter() - t0
        _parallel.set_governor(False)
        med = float(np.median([x for x in lat if x is not None] or [float("nan")]))
        rows.append((med, out["forced"] / out["serial"], out["policy"] / out["serial"]))
        print(f"  probe {med:6.0f} ns   2 threads / 1: {rows[-1][1]:.2f}   policy / 1: "
              f"{rows[-1][2]:.2f}", flush=True)
    r = np.array(rows)
    near = r[:, 0] < 100
    for label, sel in (("near", near), ("far", ~near)):
        if sel.any():
            print(f"  {label}: {sel.sum()} fits, probe median {np.median(r[sel, 0]):.0f} ns, "
                  f"2 threads / 1 median {np.median(r[sel, 1]):.2f}, policy / 1 median "
                  f"{np.median(r[sel, 2]):.2f} (max {r[sel, 2].max():.2f})")


BENCHES = {"gemm": bench_gemm, "im2col": bench_im2col, "pool": bench_pool,
           "elementwise": bench_elementwise, "optim": bench_optim, "governor": bench_governor,
           "mixed": bench_mixed, "spin": bench_spin, "topology": bench_topology}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", default=",".join(BENCHES))
    ap.add_argument("--repeat", type=int, default=7)
    ap.add_argument("--openmp", action="store_true",
                    help="run nnc's passes on an OpenMP team even when OpenBLAS lends its pool")
    ap.add_argument("--seconds", type=float, default=5.0,
                    help="governor / topology: how long to watch")
    args = ap.parse_args(argv)
    was = _parallel.set_governor(False)
    if args.openmp:
        _parallel.set_pool_enabled(False)
    print(f"thresholds now: {_parallel.thresholds()}; CPUs {_parallel.cpus()}; "
          f"load average {os.getloadavg()[0]:.2f}")
    try:
        for name in args.only.split(","):
            if name == "governor":
                _parallel.set_governor(True)
                _parallel.governor_reset()
            BENCHES[name](args)
            _parallel.set_governor(False)
    finally:
        _parallel.set_governor(was)


if __name__ == "__main__":
    main()
