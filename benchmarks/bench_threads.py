"""Default threads against one thread, on a quiet machine and beside a busy process: nnc and PyTorch.

For every workload of bench_mlp / bench_cnn / bench_rnn, two MNIST-1D-shaped models (issue 9) and
two larger ones whose work is big enough to split (a CNN with 32/64 channels, LSTM(256)), each
library runs in its own process four times:

* ``1t``: OMP_NUM_THREADS = OPENBLAS_NUM_THREADS = MKL_NUM_THREADS = 1 (and
  ``torch.set_num_threads(1)``), the setting of the README's other tables;
* ``def``: no thread variable set and no thread call: what a user gets;

each on the quiet machine and beside a busy-loop process that this script starts pinned to one
CPU and stops after the run (the loop also stops itself when this script dies or after
``--busy-max`` seconds, so it can never outlive a crash by long).  Reported: seconds per epoch
(median of ``--repeat``, min in brackets), the ratios def / 1t (< 1: the default threads help),
and for the "split" workloads the gain the policy must reach: at least half of the gain a 2-thread
sgemm (2048^3, SciPy's BLAS, measured at the start of the same run) has over a 1-thread one.
Synthetic data everywhere (mnist1d's data set when the package is installed: ``pip install
mnist1d``); the sizes are smaller than the single-library benchmarks' (``--scale``) since only
ratios matter here.

    python benchmarks/bench_threads.py                          # everything, ~10 minutes
    python benchmarks/bench_threads.py --workloads cnn,gru --libs nnc --loads quiet
    python benchmarks/bench_threads.py --quick                  # smaller data, 2 repeats
    python benchmarks/bench_threads.py --quickstart             # the README Quickstart CNN
    python benchmarks/bench_threads.py --phases 50 --workloads mnist,cnn,lstm256
                                            # 1 / 2 threads / policy, near and far cores

Run it on an otherwise idle machine; the last line says how much CPU other processes used
during the run (from /proc/stat, the busy loop and this script's workers excluded).
"""
import argparse
import json
import os
import resource
import subprocess
import sys
import time

import numpy as np

from _harness import ROOT

HERE = os.path.dirname(os.path.abspath(__file__))

# name: (description, kind, split) -- split: big enough that 2 threads must gain (issue 9 item 1)
WORKLOADS = {
    "tabular": ("bench_mlp tabular: MLPClassifier 20,000x30, (64, 64) relu, batch 32", "mlp",
                False),
    "mnist": ("bench_mlp mnist: MLPClassifier 60,000x784, (256, 128) relu, batch 128", "mlp",
              True),
    "predict": ("bench_mlp predict: tabular model, 10,000 rows per call", "predict", False),
    "predict1": ("bench_mlp predict: tabular model, one row per call", "predict", False),
    "cnn": ("bench_cnn: 1x28x28, Conv(8,3)-Pool-Conv(16,3)-Pool-Dense(10), batch 64", "cnn",
            False),
    "cnn32": ("1x28x28, Conv(32,3)-Pool-Conv(64,3)-Pool-Dense(10), batch 64", "cnn", True),
    "lstm": ("bench_rnn: 28x28 sequences, LSTM(128) -> Dense(10), batch 64", "rnn", False),
    "gru": ("bench_rnn: 28x28 sequences, GRU(128) -> Dense(10), batch 64", "rnn", False),
    "lstm256": ("28x28 sequences, LSTM(256) -> Dense(10), batch 64", "rnn", True),
    "mnist1d_cnn": ("MNIST-1D CNN: 3x Conv2D(25) (1,5)/(1,3)/(1,3) stride (1,2), batch 100",
                    "m1d", False),
    "mnist1d_gru": ("MNIST-1D GRU(12, return_sequences) -> Flatten -> Dense(10), batch 100",
                    "m1d", False),
}
#: samples per workload at --scale 1, and epochs per timed run (each run ~0.2-0.5 s at the default
#: scale, so a run spans a few governor windows)
SIZES = {"tabular": (20000, 6), "mnist": (60000, 1), "predict": (20000, 1),
         "predict1": (20000, 1), "cnn": (10000, 2), "cnn32": (2000, 1), "lstm": (5000, 1),
         "gru": (5000, 1), "lstm256": (2000, 1), "mnist1d_cnn": (4000, 12),
         "mnist1d_gru": (4000, 20)}
LIBS = ("nnc", "torch")
THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")

BUSY_LOOP = r"""
import ctypes, os, signal, sys, time
cpu, deadline, parent = int(sys.argv[1]), float(sys.argv[2]), int(sys.argv[3])
try:
    ctypes.CDLL(None).prctl(1, signal.SIGKILL)   # PR_SET_PDEATHSIG: die with the benchmark
except Exception:
    pass
try:
    os.sched_setaffinity(0, {cpu})
except Exception:
    pass
x = 0
while time.monotonic() < deadline and os.getppid() == parent:
    for _ in range(200000):
        x += 1
"""


# ------------------------------------------------------------------------------------ data

def _mnist1d(n):
    """(X (n, 40) float32, y) from the mnist1d package when installed, else synthetic signals of
    the same shape: ten smooth templates, shifted, scaled, with noise."""
    try:
        from mnist1d.data import make_dataset, get_dataset_args
        args = get_dataset_args()
        args.num_samples = max(n, 5000)
        data = make_dataset(args)
        return data["x"][:n].astype(np.float32), data["y"][:n].astype(np.int64)
    except Exception:
        rng = np.random.RandomState(0)
        t = np.linspace(0, 1, 40)
        templates = np.stack([np.sin(2 * np.pi * (k + 1) * t / 3 + k) for k in range(10)])
        y = rng.randint(0, 10, n)
        shift = rng.randint(-4, 5, n)
        X = np.stack([np.roll(templates[c], s) for c, s in zip(y, shift)])
        X = X * rng.uniform(0.7, 1.3, (n, 1)) + 0.25 * rng.standard_normal((n, 40))
        return X.astype(np.float32), y


def _data(workload, n):
    rng = np.random.RandomState(0)
    kind = WORKLOADS[workload][1]
    if kind in ("mlp", "predict"):
        if workload == "mnist":
            return rng.random_sample((n, 784)).astype(np.float32), rng.randint(0, 10, n)
        from sklearn.datasets import make_classification
        X, y = make_classification(n_samples=n, n_features=30, n_informative=10, n_classes=2,
                                   random_state=0)
        return X.astype(np.float32), y
    if kind == "cnn":
        return rng.rand(n, 1, 28, 28).astype(np.float32), rng.randint(0, 10, n)
    if kind == "rnn":
        return rng.rand(n, 28, 28).astype(np.float32), rng.randint(0, 10, n)
    X, y = _mnist1d(n)
    if workload == "mnist1d_cnn":
        return X.reshape(n, 1, 1, 40), y
    return X.reshape(n, 40, 1), y


# ------------------------------------------------------------------------------------ models

def _nnc_layers(workload):
    from nnc.layers import Conv2D, Dense, Flatten, GRU, LSTM, MaxPool2D, ReLU
    if workload == "cnn":
        return [Conv2D(8, 3), ReLU(), MaxPool2D(2), Conv2D(16, 3), ReLU(), MaxPool2D(2),
                Flatten(), Dense(10)], (1, 28, 28), 64, 1e-3
    if workload == "cnn32":
        return [Conv2D(32, 3), ReLU(), MaxPool2D(2), Conv2D(64, 3), ReLU(), MaxPool2D(2),
                Flatten(), Dense(10)], (1, 28, 28), 64, 1e-3
    if workload in ("lstm", "gru", "lstm256"):
        cell = GRU if workload == "gru" else LSTM
        return [cell(256 if workload == "lstm256" else 128), Dense(10)], (28, 28), 64, 1e-3
    if workload == "mnist1d_cnn":
        return [Conv2D(25, (1, 5), stride=(1, 2), padding=(0, 1)), ReLU(),
                Conv2D(25, (1, 3), stride=(1, 2), padding=(0, 1)), ReLU(),
                Conv2D(25, (1, 3), stride=(1, 2), padding=(0, 1)), ReLU(),
                Flatten(), Dense(10)], (1, 1, 40), 100, 1e-2
    return [GRU(12, return_sequences=True), Flatten(), Dense(10)], (40, 1), 100, 1e-2


def _torch_model(workload):
    import torch
    from torch import nn
    if workload in ("cnn", "cnn32"):
        a, b = (8, 16) if workload == "cnn" else (32, 64)
        return nn.Sequential(nn.Conv2d(1, a, 3), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(a, b, 3),
                             nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                             nn.Linear(b * 25, 10)), 64, 1e-3
    if workload in ("lstm", "gru", "lstm256"):
        units = 256 if workload == "lstm256" else 128
        cell = nn.GRU if workload == "gru" else nn.LSTM

        class Last(nn.Module):
            def __init__(self):
                super().__init__()
                self.rnn = cell(28, units, batch_first=True)
                self.head = nn.Linear(units, 10)

            def forward(self, x):
                return self.head(self.rnn(x)[0][:, -1])
        return Last(), 64, 1e-3
    if workload == "mnist1d_cnn":
        return nn.Sequential(
            nn.Conv2d(1, 25, (1, 5), stride=(1, 2), padding=(0, 1)), nn.ReLU(),
            nn.Conv2d(25, 25, (1, 3), stride=(1, 2), padding=(0, 1)), nn.ReLU(),
            nn.Conv2d(25, 25, (1, 3), stride=(1, 2), padding=(0, 1)), nn.ReLU(),
            nn.Flatten(), nn.Linear(125, 10)), 100, 1e-2

    class Seq(nn.Module):
        def __init__(self):
            super().__init__()
            self.rnn = nn.GRU(1, 12, batch_first=True)
            self.head = nn.Linear(480, 10)

        def forward(self, x):
            return self.head(self.rnn(x)[0].reshape(x.shape[0], -1))
    return Seq(), 100, 1e-2


# ------------------------------------------------------------------------------------ workers

def _alternate(run, repeat, settings):
    """Time run() under each of `settings` ({name: context manager factory}) in turn, `repeat`
    rounds, the order flipped every round; {name: [seconds per run]}."""
    names = list(settings)
    out = {name: [] for name in names}
    with settings[names[-1]]():     # warm up (the governor's first windows included): 0.5 s
        t_end = time.perf_counter() + 0.5
        while time.perf_counter() < t_end:
            run()
    for r in range(repeat):
        for name in (names if r % 2 == 0 else names[::-1]):
            with settings[name]():
                t0 = time.perf_counter()
                run()
                out[name].append(time.perf_counter() - t0)
    return out


def _apply_policy_overrides():
    """NNC_BENCH_THRESHOLDS="gemm=1e9,im2col=0" (experiments only): change the thread policy's
    thresholds in this worker, to measure what a threshold buys."""
    spec = os.environ.get("NNC_BENCH_THRESHOLDS")
    if not spec:
        return
    from nnc._kernels import _parallel
    for item in spec.split(","):
        kind, value = item.split("=")
        _parallel.set_threshold(kind.strip(), float(value))


def _worker_nnc(workload, n, epochs, repeat, separate):
    import contextlib
    import warnings
    import nnc
    _apply_policy_overrides()
    X, y = _data(workload, n)
    kind = WORKLOADS[workload][1]
    if separate:   # this process has one setting (the environment's)
        settings = {"run": contextlib.nullcontext}
    else:          # both, alternating: nnc's own one-thread setting and its default
        settings = {"1t": lambda: nnc.config_context(n_threads=1),
                    "def": contextlib.nullcontext}
    out = {}
    if kind in ("mlp", "predict"):
        hidden = (256, 128) if workload == "mnist" else (64, 64)
        batch = 128 if workload == "mnist" else 32

        def fit(Xf, yf, max_iter):
            clf = nnc.MLPClassifier(hidden_layer_sizes=hidden, learning_rate_init=1e-3,
                                    batch_size=batch, max_iter=max_iter, tol=0.0,
                                    n_iter_no_change=10 ** 9, dtype="float32", random_state=0)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                return clf.fit(Xf, yf)
        fit(X[:20 * batch], y[:20 * batch], 1)                      # warm-up
        if kind == "mlp":
            out = _alternate(lambda: fit(X, y, epochs), repeat, settings)
        else:
            clf = fit(X, y, 1)
            rows = np.ascontiguousarray(X[:1] if workload == "predict1" else X[:10000])
            calls = 2000 if workload == "predict1" else 20
            for _ in range(calls // 10 + 1):
                clf.predict(rows)

            def pred():
                for _ in range(calls):
                    clf.predict(rows)
            out = _alternate(pred, repeat, settings)
            out = {k: [t / calls for t in v] for k, v in out.items()}
            epochs = 1
    else:
        from nnc.optimizers import Adam
        layers, shape, batch, lr = _nnc_layers(workload)
        net = nnc.Sequential(layers, loss="softmax_cross_entropy", input_shape=shape,
                             dtype="float32", random_state=0)
        opt = Adam(learning_rate=lr)
        Xv = net._check_X(X)
        yv = net._check_y(y, n)
        rng = np.random.RandomState(1)
        warm = min(n, 20 * batch)
        net.train_epoch(Xv[:warm], yv[:warm], opt, batch_size=batch,
                        indices=rng.permutation(warm))

        def run():
            for _ in range(epochs):
                net.train_epoch(Xv, yv, opt, batch_size=batch, indices=rng.permutation(n))
        out = _alternate(run, repeat, settings)
    out = {k: [t / epochs for t in v] for k, v in out.items()}
    from nnc import _threads
    info = _threads.info()
    out["policy"] = {"budget": info["budget"], "governor_windows": info["governor"]["windows"],
                     "others": info["governor"]["others"], "blas": info["blas_control"]}
    return out


def _worker_torch(workload, n, epochs, repeat, threads, separate):
    import contextlib
    import torch
    if threads is not None:
        torch.set_num_threads(threads)
    default = torch.get_num_threads()

    @contextlib.contextmanager
    def one_thread():
        torch.set_num_threads(1)
        try:
            yield
        finally:
            torch.set_num_threads(default)
    settings = ({"run": contextlib.nullcontext} if separate
                else {"1t": one_thread, "def": contextlib.nullcontext})
    X, y = _data(workload, n)
    kind = WORKLOADS[workload][1]
    torch.manual_seed(0)
    if kind in ("mlp", "predict"):
        from torch import nn
        hidden = (256, 128) if workload == "mnist" else (64, 64)
        batch = 128 if workload == "mnist" else 32
        K = 10 if workload == "mnist" else 2
        layers, fan_in = [], X.shape[1]
        for h in hidden:
            layers += [nn.Linear(fan_in, h), nn.ReLU()]
            fan_in = h
        model = nn.Sequential(*layers, nn.Linear(fan_in, K))
        lr = 1e-3
    else:
        model, batch, lr = _torch_model(workload)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    loss_fn = torch.nn.CrossEntropyLoss()
    Xt = torch.from_numpy(X)
    yt = torch.from_numpy(np.asarray(y, dtype=np.int64))
    gen = torch.Generator().manual_seed(0)

    def epoch(m):
        perm = torch.randperm(m, generator=gen)
        total = 0.0
        for start in range(0, m, batch):
            idx = perm[start:start + batch]
            opt.zero_grad(set_to_none=True)
            loss = loss_fn(model(Xt[idx]), yt[idx])
            loss.backward()
            opt.step()
            total += float(loss) * len(idx)
        return total / m

    epoch(min(n, 20 * batch))
    if kind == "predict":
        model.eval()
        rows = Xt[:1] if workload == "predict1" else Xt[:10000]
        calls = 2000 if workload == "predict1" else 20

        def pred():
            with torch.inference_mode():
                for _ in range(calls):
                    model(rows).argmax(1)
        pred()
        out = _alternate(pred, repeat, settings)
        out = {k: [t / calls for t in v] for k, v in out.items()}
        out["version"] = torch.__version__
        return out

    def run():
        for _ in range(epochs):
            epoch(n)
    out = _alternate(run, repeat, settings)
    out = {k: [t / epochs for t in v] for k, v in out.items()}
    out["version"] = torch.__version__
    return out


QUICKSTART = """
import time
t0 = time.perf_counter()
from sklearn.datasets import load_digits
from nnc import NeuralNetClassifier
from nnc.layers import Conv2D, ReLU, MaxPool2D, Flatten, Dense
X, y = load_digits(return_X_y=True)
X = X / 16.0
t1 = time.perf_counter()
cnn = NeuralNetClassifier(
    layers=[Conv2D(8, 3, padding=1), ReLU(), MaxPool2D(2), Flatten(), Dense(64), ReLU()],
    input_shape=(1, 8, 8), max_epochs=20, random_state=0).fit(X, y)
cnn.predict(X[:5])
t2 = time.perf_counter()
print(f"{t2 - t1:.3f} {cnn.score(X, y):.4f} {t1 - t0:.3f}")
"""


def quickstart(args):
    """The README Quickstart's CNN (digits, 20 epochs), fit + predict, in fresh processes."""
    print("README Quickstart CNN (NeuralNetClassifier on the digits, 20 epochs): seconds for "
          "fit + predict, each run a fresh process (imports and data loading not counted)")
    env0 = dict(os.environ)
    env0["PYTHONPATH"] = os.pathsep.join(p for p in (ROOT, env0.get("PYTHONPATH")) if p)
    for load in [x for x in args.loads.split(",") if x]:
        for threads in (1, None):
            env = dict(env0)
            for var in THREAD_VARS:
                env.pop(var, None)
                if threads is not None:
                    env[var] = str(threads)
            times, acc = [], None
            for _ in range(args.repeat):
                if load == "busy":
                    with Busy(args.busy_max):
                        out = subprocess.run([sys.executable, "-c", QUICKSTART], env=env,
                                             capture_output=True, text=True, timeout=args.timeout)
                else:
                    out = subprocess.run([sys.executable, "-c", QUICKSTART], env=env,
                                         capture_output=True, text=True, timeout=args.timeout)
                if out.returncode != 0:
                    print(f"  failed: {out.stderr.strip().splitlines()[-1:]}")
                    break
                t, acc, _ = out.stdout.split()
                times.append(float(t))
            if times:
                print(f"  {load:6s} {'1 thread' if threads else 'default':9s} "
                      f"{', '.join(f'{t:.2f}' for t in times)} s  (training accuracy {acc})")


def _worker_phases(workload, n, epochs, seconds):
    """Alternate one thread, two threads with the governor off, and the policy, epoch by epoch,
    for `seconds`; each round is tagged by the governor's core-distance probe."""
    import contextlib
    import warnings
    import nnc
    from nnc._kernels import _parallel
    X, y = _data(workload, n)
    if WORKLOADS[workload][1] == "mlp":
        hidden = (256, 128) if workload == "mnist" else (64, 64)
        batch = 128 if workload == "mnist" else 32

        def run():
            clf = nnc.MLPClassifier(hidden_layer_sizes=hidden, batch_size=batch, max_iter=epochs,
                                    tol=0.0, n_iter_no_change=10 ** 9, dtype="float32",
                                    random_state=0)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                clf.fit(X, y)
    else:
        from nnc.optimizers import Adam
        layers, shape, batch, lr = _nnc_layers(workload)
        net = nnc.Sequential(layers, loss="softmax_cross_entropy", input_shape=shape,
                             dtype="float32", random_state=0)
        opt = Adam(learning_rate=lr)
        Xv, yv = net._check_X(X), net._check_y(y, n)
        rng = np.random.RandomState(1)

        def run():
            for _ in range(epochs):
                net.train_epoch(Xv, yv, opt, batch_size=batch, indices=rng.permutation(n))
    run()

    @contextlib.contextmanager
    def two_threads():
        old = _parallel.set_governor(False)
        try:
            yield
        finally:
            _parallel.set_governor(old)
    modes = {"1t": lambda: nnc.config_context(n_threads=1), "2t": two_threads,
             "policy": contextlib.nullcontext}
    rows = []
    t_end = time.perf_counter() + seconds
    while time.perf_counter() < t_end:
        lat = _parallel.probe_latency()
        r = {}
        for name, ctx in modes.items():
            with ctx():
                t0 = time.perf_counter()
                run()
                r[name] = time.perf_counter() - t0
        rows.append((999.0 if lat is None else lat, r["2t"] / r["1t"], r["policy"] / r["1t"]))
    return {"rows": rows}


def phases(args):
    print("Per workload, one process alternating epochs on 1 thread, on 2 threads with the "
          "governor off, and with the policy, for --phases seconds; rounds are split by the "
          "governor's probe: 'near' (< 100 ns per cache-line hand-over) and 'far'")
    print(f"{'workload':<13}{'phase':<6}{'rounds':>7}{'2 threads / 1':>15}{'policy / 1':>12}"
          f"{'policy max':>12}")
    for w in [x for x in args.workloads.split(",") if x]:
        r = _spawn(args, "phases", w, None, separate=False)
        if "error" in r:
            print(f"{w:<13} failed: {r['error']}")
            continue
        a = np.array(r["rows"])
        for label, sel in (("near", a[:, 0] < 100), ("far", a[:, 0] >= 100)):
            if sel.any():
                print(f"{w:<13}{label:<6}{int(sel.sum()):>7}{np.median(a[sel, 1]):>15.2f}"
                      f"{np.median(a[sel, 2]):>12.2f}{a[sel, 2].max():>12.2f}", flush=True)


def _worker_sgemm(threads):
    """GFLOP/s of a 2048^3 sgemm through SciPy's BLAS (the one nnc calls) with `threads`."""
    from scipy.linalg import blas
    from threadpoolctl import threadpool_limits
    n = 2048
    rng = np.random.RandomState(0)
    a = np.asfortranarray(rng.rand(n, n).astype(np.float32))
    b = np.asfortranarray(rng.rand(n, n).astype(np.float32))
    c = np.asfortranarray(np.zeros((n, n), np.float32))
    with threadpool_limits(threads, user_api="blas"):
        blas.sgemm(1.0, a, b, 0.0, c, overwrite_c=1)
        best = float("inf")
        for _ in range(5):
            t0 = time.perf_counter()
            blas.sgemm(1.0, a, b, 0.0, c, overwrite_c=1)
            best = min(best, time.perf_counter() - t0)
    return {"gflops": 2 * n ** 3 / best / 1e9}


# ------------------------------------------------------------------------------------ driver

class Busy:
    """A busy-loop process pinned to one CPU, stopped on exit (and by itself: parent death,
    deadline)."""

    def __init__(self, max_seconds):
        self.max_seconds = max_seconds
        self.proc = None

    def __enter__(self):
        try:
            cpu = max(os.sched_getaffinity(0))
        except (AttributeError, OSError):
            cpu = (os.cpu_count() or 1) - 1
        deadline = time.monotonic() + self.max_seconds
        self.proc = subprocess.Popen([sys.executable, "-c", BUSY_LOOP, str(cpu), repr(deadline),
                                      str(os.getpid())])
        time.sleep(0.3)
        return self

    def __exit__(self, *exc):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
        if self.proc is not None:
            self.proc.wait()
        return False


def _spawn(args, lib, workload, threads, separate=True):
    env = dict(os.environ)
    for var in THREAD_VARS:
        env.pop(var, None)
        if threads is not None:
            env[var] = str(threads)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (ROOT, env.get("PYTHONPATH")) if p)
    cmd = [sys.executable, os.path.abspath(__file__), "--worker", lib, "--workloads", workload,
           "--repeat", str(args.repeat), "--scale", str(args.scale), "--phases", str(args.phases),
           "--worker-threads", "default" if threads is None else str(threads)]
    if separate:
        cmd.append("--separate")
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=args.timeout)
    if proc.returncode != 0:
        tail = proc.stderr.strip().splitlines()
        return {"error": tail[-1] if tail else f"exit code {proc.returncode}"}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _busy_jiffies():
    """(busy seconds of all CPUs from /proc/stat, or None)."""
    try:
        with open("/proc/stat") as fh:
            v = [int(x) for x in fh.readline().split()[1:9]]
    except (OSError, ValueError):
        return None
    return (v[0] + v[1] + v[2] + v[5] + v[6] + v[7]) / os.sysconf("SC_CLK_TCK")


def _children_cpu():
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    me = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime + me.ru_utime + me.ru_stime


def _fmt(r, key):
    if "error" in r:
        return "failed"
    t = np.asarray(r[key])
    med = np.median(t)
    unit, scale = ("ms", 1e3) if med < 0.1 else ("s", 1.0)
    if med < 1e-4:
        unit, scale = ("us", 1e6)
    return f"{med * scale:.3g} {unit} ({t.min() * scale:.3g})"


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workloads", default=",".join(WORKLOADS))
    ap.add_argument("--libs", default=",".join(LIBS))
    ap.add_argument("--loads", default="quiet,busy", help="quiet, busy or both")
    ap.add_argument("--repeat", type=int, default=7)
    ap.add_argument("--scale", type=float, default=0.4, help="fraction of each workload's samples")
    ap.add_argument("--quick", action="store_true", help="--scale 0.2 --repeat 3")
    ap.add_argument("--busy-max", type=float, default=300.0,
                    help="the busy loop stops itself after this many seconds")
    ap.add_argument("--timeout", type=float, default=600.0, help="per worker process")
    ap.add_argument("--no-sgemm", action="store_true")
    ap.add_argument("--separate", action="store_true",
                    help="1t and def in separate processes (1t: OMP/OPENBLAS/MKL_NUM_THREADS=1) "
                         "instead of alternating in one process")
    ap.add_argument("--quickstart", action="store_true",
                    help="only time the README Quickstart's CNN (quiet / busy, default / 1 thread)")
    ap.add_argument("--phases", type=float, default=0.0, metavar="SECONDS",
                    help="nnc only: per workload, 1 thread / 2 threads / the policy over time, "
                         "split by how far apart the governor's probe finds the cores")
    ap.add_argument("--worker", choices=LIBS + ("sgemm", "phases"), help=argparse.SUPPRESS)
    ap.add_argument("--worker-threads", default="default", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.quick:
        args.scale, args.repeat = 0.2, 3

    if args.worker:
        threads = None if args.worker_threads == "default" else int(args.worker_threads)
        if args.worker == "sgemm":
            print(json.dumps(_worker_sgemm(threads)))
            return
        if args.worker == "phases":
            n, epochs = SIZES[args.workloads]
            print(json.dumps(_worker_phases(args.workloads, max(200, int(n * args.scale)),
                                            epochs, args.phases)))
            return
        workload = args.workloads
        n, epochs = SIZES[workload]
        n = max(200, int(n * args.scale))
        b0, c0, t0 = _busy_jiffies(), time.process_time(), time.perf_counter()
        if args.worker == "nnc":
            out = _worker_nnc(workload, n, epochs, args.repeat, args.separate)
        else:
            try:
                import torch  # noqa: F401
            except ImportError:
                print(json.dumps({"error": "torch is not installed"}))
                return
            out = _worker_torch(workload, n, epochs, args.repeat, threads, args.separate)
        b1, c1, t1 = _busy_jiffies(), time.process_time(), time.perf_counter()
        if b0 is not None:   # other processes' CPU use during this worker (busy loop included)
            out["others"] = max(0.0, (b1 - b0) - (c1 - c0)) / (t1 - t0)
        print(json.dumps(out))
        return

    if args.quickstart:
        quickstart(args)
        return
    if args.phases:
        phases(args)
        return
    workloads = [w for w in args.workloads.split(",") if w]
    for w in workloads:
        if w not in WORKLOADS:
            ap.error(f"unknown workload {w!r}; choose from {', '.join(WORKLOADS)}")
    libs = [lib for lib in args.libs.split(",") if lib]
    loads = [x for x in args.loads.split(",") if x]
    busy0, cpu0, t0 = _busy_jiffies(), _children_cpu(), time.perf_counter()
    print(f"bench_threads: {os.cpu_count()} CPUs, python {sys.version.split()[0]}, scale "
          f"{args.scale}, {args.repeat} repeats, load average {os.getloadavg()[0]:.2f}")
    gain = None
    if not args.no_sgemm:
        g = {t: _spawn(args, "sgemm", "tabular", t).get("gflops") for t in (1, 2)}
        if g[1] and g[2]:
            gain = g[2] / g[1]
            print(f"sgemm 2048^3 (SciPy's BLAS): 1 thread {g[1]:.1f} GFLOP/s, 2 threads "
                  f"{g[2]:.1f} GFLOP/s: 2-thread gain {gain:.2f}x; the split workloads must "
                  f"gain >= {1 + (gain - 1) / 2:.2f}x (def / 1t <= {1 / (1 + (gain - 1) / 2):.2f})")
    print("s/epoch (per call for predict): median (min) of the repeats; ratio = def / 1t, "
          "< 1 means the default threads are faster")
    if args.separate:
        print("1t: a process with OMP/OPENBLAS/MKL_NUM_THREADS=1 (torch.set_num_threads(1)); def: "
              "a process with none of them set")
    else:
        print("1t and def alternate epoch by epoch in one process per library and load: 1t = "
              "nnc.config_context(n_threads=1) / torch.set_num_threads(1), def = no thread "
              "setting anywhere (so both see the same machine state; a '*' marks a run during "
              "which other processes took > 0.1 CPU beside the busy loop)")
    head = f"{'workload':<13}{'lib':<7}"
    for load in loads:
        head += f"{load + ' 1t':>17}{load + ' def':>17}{'ratio':>7} "
    print(head)
    results = {}
    for w in workloads:
        for lib in libs:
            line = f"{w:<13}{lib:<7}"
            for load in loads:
                if args.separate:
                    res = {}
                    for threads in (1, None):
                        if load == "busy":
                            with Busy(args.busy_max):
                                res[threads] = _spawn(args, lib, w, threads)
                        else:
                            res[threads] = _spawn(args, lib, w, threads)
                    one = dict(res[1], times=res[1].get("run"))
                    dflt = dict(res[None], times=res[None].get("run"))
                else:
                    if load == "busy":
                        with Busy(args.busy_max):
                            r = _spawn(args, lib, w, None, separate=False)
                    else:
                        r = _spawn(args, lib, w, None, separate=False)
                    one = dict(r, times=r.get("1t"))
                    dflt = dict(r, times=r.get("def"))
                results[(w, lib, load)] = (one, dflt)
                ratio = float("nan")
                if "error" not in one and "error" not in dflt:
                    ratio = np.median(dflt["times"]) / np.median(one["times"])
                mark = ""
                busy_share = 1.0 if load == "busy" else 0.0
                if max(one.get("others", 0.0), dflt.get("others", 0.0)) > busy_share + 0.1:
                    mark = "*"
                line += (f"{_fmt(one, 'times'):>17}{_fmt(dflt, 'times'):>17}{ratio:>7.2f}"
                         f"{mark:1s}")
                for r in {id(one): one, id(dflt): dflt}.values():
                    if "error" in r:
                        line += f"  [{r['error']}]"
            if WORKLOADS[w][2] and gain is not None and lib == "nnc":
                line += f"   (split: needs <= {1 / (1 + (gain - 1) / 2):.2f} quiet)"
            print(line, flush=True)
    busy1, cpu1, t1 = _busy_jiffies(), _children_cpu(), time.perf_counter()
    if busy0 is not None:
        others = max(0.0, (busy1 - busy0) - (cpu1 - cpu0))
        print(f"other processes used {others:.1f} CPU-s in {t1 - t0:.0f} s "
              f"({100 * others / (t1 - t0):.1f}% of one CPU; this script, its workers and the "
              "busy loop excluded)")


if __name__ == "__main__":
    main()
