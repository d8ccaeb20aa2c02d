"""Prediction latency of an nnc model against the same model exported to ONNX Runtime.

Every (runtime, workload) pair runs in its own subprocess with the same thread count (threadpoolctl
``threadpool_limits(N)`` and the *_NUM_THREADS variables for nnc; ``intra_op_num_threads = N``,
``inter_op_num_threads = 1`` for ONNX Runtime), warms up, then repeats; the table shows min and
median and the ratio of each runtime's median to nnc's (> 1: nnc is faster), all from one run.
Both runtimes serve the same fitted float32 model: nnc through ``clf.predict(X)`` (validation
included), ONNX Runtime through ``session.run(["label"], {"X": X})`` on ``nnc.to_onnx(clf)``.

Workloads (float32):

* mlp   bench_mlp.py's predict model: MLPClassifier (64, 64) relu on 20,000 x 30
        make_classification (2 classes), one epoch of Adam
* lstm  NeuralNetClassifier [LSTM(128)] + Dense(10) on T=28 x F=28 sequences (bench_rnn.py's
        shape), one epoch on 512 random rows (latency does not depend on the weights)

For each: one-row latency (median of many calls) and the time of one call on 10,000 rows
(1,000 rows for lstm).

Usage::

    python benchmarks/bench_onnx.py                     # 1 thread, 3 repeats, both workloads
    python benchmarks/bench_onnx.py --threads 2 --workloads mlp
"""
import argparse
import json
import os
import sys
import time
import warnings
from statistics import median

from _harness import spawn_worker

HERE = os.path.dirname(os.path.abspath(__file__))
try:  # run from a source checkout without installing: the repository root holds nnc/
    import nnc  # noqa: F401
except ImportError:
    sys.path.insert(0, os.path.dirname(HERE))
    os.environ["PYTHONPATH"] = os.pathsep.join(
        [os.path.dirname(HERE)] + [p for p in [os.environ.get("PYTHONPATH")] if p])
RUNTIMES = ("nnc", "onnxruntime")
WORKLOADS = {"mlp": dict(big=10000, calls=3000), "lstm": dict(big=1000, calls=300)}


def _fit(workload):
    """(fitted float32 classifier, X) for a workload."""
    import numpy as np
    import nnc
    from nnc.layers import LSTM
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if workload == "mlp":
            from sklearn.datasets import make_classification
            X, y = make_classification(n_samples=20000, n_features=30, n_informative=10,
                                       random_state=0)
            X = X.astype(np.float32)
            clf = nnc.MLPClassifier((64, 64), batch_size=32, max_iter=1, random_state=0,
                                    dtype="float32").fit(X, y)
            return clf, X
        rng = np.random.RandomState(0)
        X = rng.standard_normal((WORKLOADS["lstm"]["big"], 28, 28)).astype(np.float32)
        y = rng.randint(0, 10, X.shape[0])
        clf = nnc.NeuralNetClassifier([LSTM(128)], max_epochs=1, random_state=0,
                                      dtype="float32").fit(X[:512], y[:512])
        return clf, X


def worker(runtime, workload, threads, repeat):
    """Time one (runtime, workload) pair; print one JSON line."""
    import numpy as np
    from threadpoolctl import threadpool_limits
    import scipy.linalg  # noqa: F401  (SciPy's OpenBLAS: nnc's BLAS, loaded before the limit)
    import nnc
    threadpool_limits(threads)
    clf, X = _fit(workload)
    if runtime == "nnc":
        predict = clf.predict
    else:
        import onnxruntime as ort
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        sess = ort.InferenceSession(nnc.to_onnx(clf).SerializeToString(), opts,
                                    providers=["CPUExecutionProvider"])

        def predict(x):
            return sess.run(["label"], {"X": x})[0]
    w = WORKLOADS[workload]
    x1 = np.ascontiguousarray(X[:1])
    xb = np.ascontiguousarray(X[:w["big"]])
    assert np.array_equal(predict(xb), clf.predict(xb))    # same model, same answers
    for _ in range(max(50, w["calls"] // 10)):
        predict(x1)
    lat = []
    for _ in range(repeat):
        t = time.perf_counter()
        for _ in range(w["calls"]):
            predict(x1)
        lat.append((time.perf_counter() - t) / w["calls"])
    big = []
    for _ in range(max(5, repeat)):
        t = time.perf_counter()
        predict(xb)
        big.append(time.perf_counter() - t)
    version = nnc.__version__ if runtime == "nnc" else __import__("onnxruntime").__version__
    print(json.dumps({"latency": lat, "big": big, "version": version}))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--workloads", default=",".join(WORKLOADS))
    p.add_argument("--worker", choices=RUNTIMES, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        worker(args.worker, args.workloads, args.threads, args.repeat)
        return
    print(f"threads={args.threads} repeat={args.repeat} python={sys.version.split()[0]}")
    header = ("workload", "runtime", "min", "median", "median / nnc")
    widths = [22, 22, 14, 14, 12]
    print("".join(h.ljust(wd) for h, wd in zip(header, widths)))
    for workload in args.workloads.split(","):
        res = {}
        for runtime in RUNTIMES:
            res[runtime] = spawn_worker(__file__, ["--worker", runtime, "--workloads", workload,
                                                   "--threads", args.threads,
                                                   "--repeat", args.repeat],
                                        args.threads, checkout_first=False)
        for key, label, scale, unit in (("latency", "1 row", 1e6, "us"),
                                        ("big", f"{WORKLOADS[workload]['big']:,} rows", 1e3,
                                         "ms")):
            for runtime in RUNTIMES:
                r = res[runtime]
                name = f"{runtime} {r.get('version', '')}"
                if "error" in r:
                    print(f"{workload} {label}".ljust(widths[0]) + name.ljust(widths[1])
                          + r["error"])
                    continue
                med = median(r[key])
                base = res["nnc"].get(key)
                ratio = med / median(base) if base else float("nan")
                print("".join(str(c).ljust(wd) for c, wd in zip(
                    (f"{workload} {label}", name, f"{min(r[key]) * scale:.2f} {unit}",
                     f"{med * scale:.2f} {unit}", f"{ratio:.2f}x"), widths)))


if __name__ == "__main__":
    main()
