"""Dense-network training and prediction speed: nnc against scikit-learn, plain NumPy and PyTorch.

Every (library, workload) pair runs in its own subprocess with the same BLAS / OpenMP thread
count (threadpoolctl ``threadpool_limits(N)``, ``torch.set_num_threads(N)`` and the *_NUM_THREADS
variables), warms up first, then repeats; the table shows min and median and the ratio of each
library's median to nnc's (> 1: nnc is faster), all from the same run.

Workloads (float32, Adam lr 1e-3, shuffling on):

* tabular    20,000 x 30 (make_classification, 2 classes), hidden (64, 64) relu, batch 32, 3 epochs
* mnist      60,000 x 784 random data, 10 classes, hidden (256, 128) relu, batch 128, 1 epoch
* predict    the tabular model: one-row latency (median of many calls, validation included) and
             the throughput of predict on 10,000 rows

nnc runs ``nnc.MLPClassifier`` (``--nnc-api estimator``, what users run) or ``Sequential`` +
``train_epoch`` directly (``--nnc-api sequential``).  The NumPy baseline is
benchmarks/_numpy_mlp.py.  PyTorch is skipped when not installed.

Usage::

    python benchmarks/bench_mlp.py                      # all workloads, 1 thread, 3 repeats
    python benchmarks/bench_mlp.py --threads 2 --repeat 5 --workloads tabular,predict
    python benchmarks/bench_mlp.py --clock cpu          # process CPU time (loaded machine)
"""
import argparse
import json
import os
import sys
import time
import warnings
from statistics import median

from _harness import spawn_worker, torch_epoch

HERE = os.path.dirname(os.path.abspath(__file__))
try:  # run from a source checkout without installing: the repository root holds nnc/
    import nnc  # noqa: F401
except ImportError:
    sys.path.insert(0, os.path.dirname(HERE))
    os.environ["PYTHONPATH"] = os.pathsep.join(
        [os.path.dirname(HERE)] + [p for p in [os.environ.get("PYTHONPATH")] if p])
LIBS = ("nnc", "sklearn", "numpy", "torch")
WORKLOADS = {
    "tabular": dict(n=20000, F=30, classes=2, hidden=(64, 64), batch=32, epochs=3),
    "mnist": dict(n=60000, F=784, classes=10, hidden=(256, 128), batch=128, epochs=1),
    "predict": dict(n=20000, F=30, classes=2, hidden=(64, 64), batch=32, epochs=1),
}
LR = 1e-3


# ---------------------------------------------------------------------- data

def make_data(name):
    import numpy as np
    w = WORKLOADS[name]
    if name == "mnist":
        rng = np.random.RandomState(0)
        X = rng.random_sample((w["n"], w["F"])).astype(np.float32)
        y = rng.randint(0, w["classes"], w["n"])
    else:
        from sklearn.datasets import make_classification
        X, y = make_classification(n_samples=w["n"], n_features=w["F"], n_informative=10,
                                   n_classes=w["classes"], random_state=0)
        X = X.astype(np.float32)
    return X, y


# ---------------------------------------------------------------------- trainers per library
# Each returns fit(X, y, epochs) -> model and predict(model, X) -> labels.

def _nnc(w, api):
    import numpy as np
    import nnc

    if api == "estimator":
        def fit(X, y, epochs):
            clf = nnc.MLPClassifier(hidden_layer_sizes=w["hidden"], solver="adam",
                                    learning_rate_init=LR, batch_size=w["batch"],
                                    max_iter=epochs, tol=0.0, n_iter_no_change=10 ** 9,
                                    shuffle=True, dtype="float32", random_state=0)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                return clf.fit(X, y)

        return fit, lambda clf, X: clf.predict(X)

    from nnc.layers import Dense, ReLU
    from nnc.optimizers import Adam

    def fit(X, y, epochs):
        K = 1 if w["classes"] == 2 else w["classes"]
        layers = []
        for h in w["hidden"]:
            layers += [Dense(h), ReLU()]
        layers.append(Dense(K))
        loss = "binary_cross_entropy" if K == 1 else "softmax_cross_entropy"
        net = nnc.Sequential(layers, loss=loss, input_shape=(X.shape[1],), dtype="float32",
                             random_state=0)
        Xv = net._check_X(X)
        yv = net._check_y(y.astype(np.float32) if K == 1 else y, X.shape[0])
        opt = Adam(LR)
        rng = np.random.RandomState(0)
        for _ in range(epochs):
            net.train_epoch(Xv, yv, opt, w["batch"], None, rng.permutation(X.shape[0]))
        return net

    def predict(net, X):
        P = net.predict(X)
        return (P[:, 0] > 0.5).astype(np.intp) if P.shape[1] == 1 else P.argmax(axis=1)

    return fit, predict


def _sklearn(w):
    from sklearn.neural_network import MLPClassifier

    def fit(X, y, epochs):
        clf = MLPClassifier(hidden_layer_sizes=w["hidden"], solver="adam", learning_rate_init=LR,
                            batch_size=w["batch"], max_iter=epochs, tol=0.0,
                            n_iter_no_change=10 ** 9, shuffle=True, random_state=0)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return clf.fit(X, y)

    return fit, lambda clf, X: clf.predict(X)


def _numpy(w):
    import numpy as np
    sys.path.insert(0, HERE)
    from _numpy_mlp import NumpyMLP

    def fit(X, y, epochs):
        mlp = NumpyMLP(X.shape[1], w["hidden"], w["classes"], dtype=np.float32,
                       batch_size=w["batch"], random_state=0)
        mlp.fit_epochs(X, y, epochs=epochs, lr=LR, rng=np.random.RandomState(0))
        return mlp

    return fit, lambda mlp, X: mlp.predict(X)


def _torch(w):
    import torch
    from torch import nn

    def fit(X, y, epochs):
        torch.manual_seed(0)
        K = 1 if w["classes"] == 2 else w["classes"]
        layers, fan_in = [], X.shape[1]
        for h in w["hidden"]:
            layers += [nn.Linear(fan_in, h), nn.ReLU()]
            fan_in = h
        layers.append(nn.Linear(fan_in, K))
        model = nn.Sequential(*layers)
        opt = torch.optim.Adam(model.parameters(), lr=LR)
        if K == 1:
            loss_fn = nn.BCEWithLogitsLoss()
            yt = torch.from_numpy(y.astype("float32")).reshape(-1, 1)
        else:
            loss_fn = nn.CrossEntropyLoss()
            yt = torch.from_numpy(y.astype("int64"))
        Xt = torch.from_numpy(X)
        n, B = X.shape[0], w["batch"]
        gen = torch.Generator().manual_seed(0)
        model.train()
        epoch = torch_epoch(model, opt, loss_fn, Xt, yt, B,
                            lambda m: torch.randperm(m, generator=gen))
        for _ in range(epochs):
            epoch(n)
        model.eval()
        return model

    def predict(model, X):
        with torch.inference_mode():
            Z = model(torch.from_numpy(X))
            return (Z[:, 0] > 0).numpy() if Z.shape[1] == 1 else Z.argmax(1).numpy()

    return fit, predict


def _library(lib, w, api):
    if lib == "nnc":
        return _nnc(w, api)
    if lib == "sklearn":
        return _sklearn(w)
    if lib == "numpy":
        return _numpy(w)
    return _torch(w)


# ---------------------------------------------------------------------- the worker

def worker(lib, workload, threads, repeat, api, clock):
    """Run one (library, workload) pair; print one JSON line."""
    import numpy as np
    from threadpoolctl import threadpool_limits
    # import every library first: threadpool_limits only reaches BLAS libraries already loaded
    import scipy.linalg  # noqa: F401  (SciPy's OpenBLAS: nnc's BLAS)
    import sklearn.neural_network  # noqa: F401
    import nnc  # noqa: F401
    if lib == "torch":
        try:
            import torch
        except ImportError:
            print(json.dumps({"skipped": "torch is not installed"}))
            return
        torch.set_num_threads(threads)
    threadpool_limits(threads)
    clock = time.process_time if clock == "cpu" else time.perf_counter
    w = WORKLOADS[workload]
    X, y = make_data(workload)
    fit, predict = _library(lib, w, api)
    # warm-up: imports, code paths, allocator (a short fit on a slice)
    model = fit(X[: 20 * w["batch"]], y[: 20 * w["batch"]], 1)
    predict(model, X[:100])
    res = {"lib": lib, "workload": workload}
    if workload == "predict":
        model = fit(X, y, w["epochs"])
        x1 = np.ascontiguousarray(X[:1])
        for _ in range(200):
            predict(model, x1)
        calls = 3000
        lat = []
        for _ in range(repeat):
            t = clock()
            for _ in range(calls):
                predict(model, x1)
            lat.append((clock() - t) / calls)
        X10 = np.ascontiguousarray(X[:10000])
        big = []
        for _ in range(max(5, repeat)):
            t = clock()
            predict(model, X10)
            big.append(clock() - t)
        res.update(latency=lat, throughput=big)
    else:
        times = []
        for _ in range(repeat):
            t = clock()
            fit(X, y, w["epochs"])
            times.append((clock() - t) / w["epochs"])
        res.update(epoch=times, n=X.shape[0])
    print(json.dumps(res))


# ---------------------------------------------------------------------- the driver

def _run_worker(lib, workload, args):
    worker_args = ["--worker", lib, "--workloads", workload, "--threads", args.threads,
                   "--repeat", args.repeat, "--nnc-api", args.nnc_api, "--clock", args.clock]
    # PYTHONPATH as set above: an installed nnc, else this checkout
    return spawn_worker(__file__, worker_args, args.threads, checkout_first=False)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--libs", default=",".join(LIBS))
    p.add_argument("--workloads", default=",".join(WORKLOADS))
    p.add_argument("--nnc-api", choices=("estimator", "sequential"), default="estimator")
    p.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                   help="wall: time.perf_counter; cpu: time.process_time (steadier on a loaded "
                        "machine; with --threads 1 it equals wall time on a quiet one)")
    p.add_argument("--worker", choices=LIBS, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        worker(args.worker, args.workloads, args.threads, args.repeat, args.nnc_api, args.clock)
        return
    libs = [lib for lib in args.libs.split(",") if lib]
    if "nnc" not in libs:
        libs.insert(0, "nnc")
    print(f"threads={args.threads} repeat={args.repeat} nnc-api={args.nnc_api} "
          f"clock={args.clock} python={sys.version.split()[0]}")
    rows = []
    for workload in args.workloads.split(","):
        results = {lib: _run_worker(lib, workload, args) for lib in libs}
        base = results["nnc"]
        for lib in libs:
            r = results[lib]
            if "skipped" in r or "error" in r:
                rows.append((workload, lib, r.get("skipped") or r.get("error")))
                continue
            if workload == "predict":
                lat, thr = median(r["latency"]), median(r["throughput"])
                ratio_l = lat / median(base["latency"]) if "latency" in base else float("nan")
                ratio_t = thr / median(base["throughput"]) if "throughput" in base else \
                    float("nan")
                rows.append(("predict 1 row", lib, f"{min(r['latency']) * 1e6:10.2f} us",
                             f"{lat * 1e6:10.2f} us", f"{1 / lat:12,.0f} calls/s",
                             f"{ratio_l:6.2f}x"))
                rows.append(("predict 10k rows", lib, f"{min(r['throughput']) * 1e3:10.2f} ms",
                             f"{thr * 1e3:10.2f} ms", f"{1e4 / thr:12,.0f} rows/s",
                             f"{ratio_t:6.2f}x"))
            else:
                med = median(r["epoch"])
                ratio = med / median(base["epoch"]) if "epoch" in base else float("nan")
                rows.append((workload, lib, f"{min(r['epoch']):10.4f} s", f"{med:10.4f} s",
                             f"{r['n'] / med:12,.0f} samples/s", f"{ratio:6.2f}x"))
    header = ("workload", "library", "min (per epoch/call)", "median", "rate",
              "median / nnc")
    widths = [18, 9, 22, 14, 24, 12]
    print("".join(h.ljust(wd) for h, wd in zip(header, widths)))
    for row in rows:
        print("".join(str(c).ljust(wd) for c, wd in zip(row, widths)))


if __name__ == "__main__":
    main()
