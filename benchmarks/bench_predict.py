"""Prediction latency and threaded throughput of fitted models (the serving case).

For each model (an MLP on the compiled dense path, a small CNN and an LSTM on the generic path):
the time of one ``predict_proba`` call on 1 row and on 64 rows (best of repeats, one thread), and
the rows per second that T threads reach calling ``predict_proba`` on 64-row batches of ONE shared
model (each call runs on workspaces of its own; the kernels release the GIL).  ``--compare PATH``
runs the same worker against another nnc checkout (built in place) in the same run and prints
the ratios, e.g. against the version before shadow stacks:

    python benchmarks/bench_predict.py [--threads-list 1,2,8] [--compare /path/to/other/checkout]

BLAS/OpenMP threads are 1 in the workers (prediction threads are the parallelism measured).
"""
import argparse
import json
import os
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _harness import ROOT  # noqa: E402


def _models():
    import warnings
    import numpy as np
    import nnc
    from nnc import layers as L
    warnings.simplefilter("ignore")
    rng = np.random.RandomState(0)
    out = {}
    X = rng.standard_normal((512, 20))
    y = rng.randint(0, 3, 512)
    out["mlp 20-64-64-3"] = (nnc.MLPClassifier((64, 64), max_iter=5, random_state=0).fit(X, y), X)
    X = rng.standard_normal((512, 1, 12, 12))
    out["cnn conv8-pool-dense"] = (nnc.NeuralNetClassifier(
        layers=[L.Conv2D(8, 3), L.ReLU(), L.MaxPool2D(2), L.Flatten(), L.Dense(16), L.ReLU()],
        max_epochs=1, random_state=0).fit(X, y), X)
    X = rng.standard_normal((512, 10, 8))
    out["lstm 32"] = (nnc.NeuralNetClassifier(layers=[L.LSTM(32)], max_epochs=1,
                                              random_state=0).fit(X, y), X)
    return out


def _best(fn, number, repeat=7):
    fn()
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        for _ in range(number):
            fn()
        best = min(best, (time.perf_counter() - t0) / number)
    return best * 1e6


def _throughput(est, X, threads, seconds=1.0):
    """Rows per second of `threads` threads predicting 64-row batches for about `seconds`."""
    counts = [0] * threads
    stop = threading.Event()
    start = threading.Barrier(threads + 1)

    def work(i):
        start.wait()
        k = 0
        while not stop.is_set():
            est.predict_proba(X[(k * 64) % 448:(k * 64) % 448 + 64])
            counts[i] += 64
            k += 1

    ts = [threading.Thread(target=work, args=(i,)) for i in range(threads)]
    for t in ts:
        t.start()
    start.wait()
    t0 = time.perf_counter()
    time.sleep(seconds)
    stop.set()
    for t in ts:
        t.join()
    return sum(counts) / (time.perf_counter() - t0)


def worker(threads_list):
    result = {}
    for name, (est, X) in _models().items():
        row = {"1 row us": _best(lambda: est.predict_proba(X[:1]), 200),
               "64 rows us": _best(lambda: est.predict_proba(X[:64]), 50)}
        for t in threads_list:
            row[f"{t} thr rows/s"] = _throughput(est, X, t)
        result[name] = row
    print(json.dumps(result))


def _spawn(checkout, threads_list):
    import subprocess
    env = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1",
               PYTHONPATH=checkout)
    proc = subprocess.run([sys.executable, os.path.abspath(__file__), "--worker",
                           "--threads-list", ",".join(map(str, threads_list))],
                          env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(proc.stderr[-2000:])
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads-list", default="1,2,8")
    ap.add_argument("--compare", default=None, help="another nnc checkout (built in place)")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    threads_list = [int(t) for t in args.threads_list.split(",")]
    if args.worker:
        return worker(threads_list)
    runs = {"this": _spawn(ROOT, threads_list)}
    if args.compare:
        runs["other"] = _spawn(os.path.abspath(args.compare), threads_list)
    cols = list(next(iter(runs["this"].values())))
    print(f"{'model':<22}{'':<7}" + "".join(f"{c:>16}" for c in cols))
    for name in runs["this"]:
        for label, res in runs.items():
            print(f"{name:<22}{label:<7}" + "".join(f"{res[name][c]:>16.1f}" for c in cols))
        if "other" in runs:
            print(f"{name:<22}{'ratio':<7}" + "".join(
                f"{runs['this'][name][c] / runs['other'][name][c]:>16.2f}" for c in cols))


if __name__ == "__main__":
    main()
