"""Data-parallel scaling: seconds per epoch with 1 process x 1 thread, 1 process x 2 threads and
2 MPI ranks x 1 thread, the allreduce's time and bytes per step, and a projection to 8 and 64
nodes.

Workloads (the definitions of bench_mlp.py "mnist" and bench_cnn.py): an MLPClassifier on
60,000 x 784 random float32 rows, 10 classes, hidden (256, 128) relu, Adam lr 1e-3, batch 128;
a NeuralNetClassifier CNN on 10,000 x 1x28x28 random images, Conv2D(8, 3)-ReLU-MaxPool2D(2)-
Conv2D(16, 3)-ReLU-MaxPool2D(2)-Flatten-Dense(10), Adam lr 1e-3, batch 64; float32, shuffled.
With 2 ranks each rank holds half the rows and takes batches of half the size, so a step
processes the same global batch as one process (the same training, see nnc.distributed).

Each setting runs in fresh processes (``mpiexec -n 2`` for the ranks, one thread each by
nnc.distributed's default and OMP/OPENBLAS_NUM_THREADS=1): one warm-up epoch of 20 batches, then
``--repeat`` epochs, each a ``partial_fit`` (one pass over the rows; its per-call validation and
end-of-call checks included alike in every setting).  Also measured in the 2-rank processes:

* the same epochs with the allreduce replaced by a no-op (each rank then trains alone, but both
  compute at once): the per-step compute of two ranks side by side;
* the allreduce alone, both ranks calling it back to back on the gradient buffer: through the
  C function pointer the compiled epoch uses (MPI_Allreduce's address) and through mpi4py's
  ``Allreduce`` from Python;
* an epoch with the allreduce called from Python (the GIL taken once per step), to compare the
  two ways of calling it from the compiled loop.

"one rank's work alone": one process with every other row and half the batch (what each rank
computes), to separate the arithmetic from the cost of two ranks sharing the machine.

Projection (weak scaling: every node = this 2-core machine running 2 ranks, 2 x the per-rank
batch per step; an epoch of the same rows takes 1/N of the steps on N nodes): step time =
the measured 2-rank step with the allreduce skipped + the measured on-node allreduce + a ring
allreduce between nodes, 2 (N-1)/N * bytes / bandwidth + 2 (N-1) * latency, for two stated
networks (10 Gb/s Ethernet, 25 us per message; 100 Gb/s InfiniBand, 2 us per message).

Machine load: the busy CPU time of the whole machine during each run (/proc/stat) minus the run's
own processes' CPU time is printed as "others" (seconds of CPU used by other processes).

    python benchmarks/bench_distributed.py [--repeat 3] [--workloads mlp,cnn]
"""
import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HERE = os.path.dirname(os.path.abspath(__file__))

WORKLOADS = {
    "mlp": dict(n=60000, shape=(784,), classes=10, batch=128),
    "cnn": dict(n=10000, shape=(1, 28, 28), classes=10, batch=64),
}
WARMUP_BATCHES = 20
NETWORKS = {"10 Gb/s Ethernet (25 us)": (1.25e9, 25e-6),
            "100 Gb/s InfiniBand (2 us)": (12.5e9, 2e-6)}


def _data(name):
    w = WORKLOADS[name]
    rng = np.random.RandomState(0)
    X = rng.rand(w["n"], *w["shape"]).astype(np.float32)
    y = rng.randint(0, w["classes"], w["n"])
    return X, y


def _estimator(name, batch):
    import nnc
    if name == "mlp":
        return nnc.MLPClassifier(hidden_layer_sizes=(256, 128), solver="adam",
                                 learning_rate_init=1e-3, batch_size=batch, random_state=0)
    from nnc.layers import Conv2D, Flatten, MaxPool2D, ReLU
    return nnc.NeuralNetClassifier(
        [Conv2D(8, 3), ReLU(), MaxPool2D(2), Conv2D(16, 3), ReLU(), MaxPool2D(2), Flatten()],
        input_shape=(1, 28, 28), optimizer="adam", learning_rate=1e-3, batch_size=batch,
        dtype="float32", random_state=0)


def _epochs(est, X, y, classes, repeat):
    """Warm-up epoch on 20 batches, then `repeat` timed one-epoch partial_fits."""
    n_warm = min(len(X), WARMUP_BATCHES * est.batch_size)
    est.partial_fit(X[:n_warm], y[:n_warm], classes=classes)
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        est.partial_fit(X, y)
        times.append(time.perf_counter() - t0)
    return times


# ---------------------------------------------------------------------- workers

def worker_single(name, threads, repeat, half=False):
    """One process; `half`: the work of one of two ranks alone (every other row, half batch)."""
    import nnc
    nnc.set_config(n_threads=threads)    # nnc's own limit, as nnc.distributed sets per rank
    X, y = _data(name)
    batch = WORKLOADS[name]["batch"]
    if half:
        X, y, batch = np.ascontiguousarray(X[::2]), y[::2], batch // 2
    est = _estimator(name, batch)
    times = _epochs(est, X, y, np.arange(WORKLOADS[name]["classes"]), repeat)
    out = dict(times=times, steps=-(-len(X) // batch), n_params=int(est.network_.n_params))
    # the optimizer step alone (Adam over the whole flat buffer, as every step runs it)
    net, opt = est.network_, est._optimizer
    grads = np.full_like(net.params, 1e-3)
    params = net.params.copy()
    for _ in range(20):
        opt.step(params, grads, n_decay=net.n_decay, n_samples=float(batch))
    t0 = time.perf_counter()
    for _ in range(500):
        opt.step(params, grads, n_decay=net.n_decay, n_samples=float(batch))
    out["optimizer_step"] = (time.perf_counter() - t0) / 500
    return out


def worker_ranks(name, repeat):
    from mpi4py import MPI
    import nnc
    from nnc._kernels import _comm

    comm = MPI.COMM_WORLD
    X, y = _data(name)
    X, y = np.ascontiguousarray(X[comm.rank::comm.size]), y[comm.rank::comm.size]
    batch = WORKLOADS[name]["batch"] // comm.size
    classes = np.arange(WORKLOADS[name]["classes"])
    out = {}
    with nnc.distributed(comm) as c:
        est = _estimator(name, batch)
        out["times"] = _epochs(est, X, y, classes, repeat)
        out["n_threads"] = c.n_threads
        out["hook"] = type(c.hook()).__name__ if c._hook is not None else "mpi4py (Python loop)"
        net = est.network_
        buf = net._grads_buf
        out["n_params"] = int(net.n_params)
        out["bytes"] = int(buf.nbytes)
        out["steps"] = -(-len(X) // batch)

        # the allreduce alone, both ranks back to back (after a barrier)
        direct = c.hook()      # MPI_Allreduce through its address (as the compiled epoch)
        for label, call in (("allreduce_c", direct),
                            ("allreduce_mpi4py", c.allreduce_grads)):
            for _ in range(20):
                call(buf)
            comm.Barrier()
            t0 = time.perf_counter()
            for _ in range(200):
                call(buf)
            out[label] = (time.perf_counter() - t0) / 200
        # the same epochs with the allreduce skipped (dense nets: a no-op hook; CNN: a no-op
        # Python allreduce): both ranks compute side by side, neither waits for the other
        saved = (c._hook, c.allreduce_grads)
        c._hook = _comm.PyAllreduce(lambda a: None)
        c.allreduce_grads = lambda a: a
        comm.Barrier()
        out["times_no_allreduce"] = _time_partial(est, X, y, repeat)
        c._hook, c.allreduce_grads = saved
        if name == "mlp":   # the compiled loop calling mpi4py from Python every step
            c._hook = _comm.PyAllreduce(c.allreduce_grads)
            comm.Barrier()
            out["times_python_hook"] = _time_partial(est, X, y, repeat)
            c._hook = saved[0]
    return out if comm.rank == 0 else None


def _time_partial(est, X, y, repeat):
    """Epoch times; with the allreduce skipped the ranks' weights drift apart, which the end of
    partial_fit reports (DistributedError, the model left as before): timed all the same."""
    from nnc._distributed import DistributedError
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        try:
            est.partial_fit(X, y)
        except DistributedError:
            pass
        times.append(time.perf_counter() - t0)
    return times


# ---------------------------------------------------------------------- driver

def _busy_seconds():
    """Busy CPU seconds of the whole machine so far (/proc/stat: all but idle and iowait)."""
    try:
        with open("/proc/stat") as fh:
            fields = [float(v) for v in fh.readline().split()[1:]]
    except OSError:
        return None
    busy = sum(fields) - fields[3] - (fields[4] if len(fields) > 4 else 0.0)
    return busy / os.sysconf("SC_CLK_TCK")


def _children_cpu():
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def _mpiexec():
    path = os.pathsep.join([os.path.dirname(sys.executable), os.environ.get("PATH", "")])
    return shutil.which("mpiexec", path=path)


def _spawn(args, threads, ranks=None):
    env = dict(os.environ)
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        env[var] = str(threads)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (ROOT, env.get("PYTHONPATH")) if p)
    cmd = [sys.executable, os.path.abspath(__file__)] + [str(a) for a in args]
    if ranks:
        cmd = [_mpiexec(), "-n", str(ranks)] + cmd
    busy0, own0 = _busy_seconds(), _children_cpu()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    busy1, own1 = _busy_seconds(), _children_cpu()
    if proc.returncode != 0:
        return dict(error=(proc.stderr.strip().splitlines() or ["failed"])[-1])
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    if busy0 is not None:
        out["others"] = max(0.0, (busy1 - busy0) - (own1 - own0))
    return out


def _ring(nbytes, nodes, bandwidth, latency):
    if nodes < 2:
        return 0.0
    return 2 * (nodes - 1) / nodes * nbytes / bandwidth + 2 * (nodes - 1) * latency


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--workloads", default="mlp,cnn")
    ap.add_argument("--worker", choices=["single", "ranks"])
    ap.add_argument("--workload", choices=sorted(WORKLOADS))
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--half", action="store_true")
    args = ap.parse_args(argv)
    if args.worker == "single":
        print(json.dumps(worker_single(args.workload, args.threads, args.repeat, args.half)))
        return
    if args.worker == "ranks":
        result = worker_ranks(args.workload, args.repeat)
        if result is not None:
            print(json.dumps(result))
        return

    if _mpiexec() is None:
        sys.exit("bench_distributed needs mpi4py and mpiexec (pip install mpi4py mpich)")
    print(f"data-parallel epochs, float32, {args.repeat} timed epochs after a "
          f"{WARMUP_BATCHES}-batch warm-up; s/epoch as min (median); 'others' = CPU seconds "
          "other processes used during the run (/proc/stat)\n")
    for name in args.workloads.split(","):
        w = WORKLOADS[name]
        common = ["--workload", name, "--repeat", args.repeat]
        runs = {
            "1 process x 1 thread": _spawn(["--worker", "single", "--threads", 1] + common, 1),
            "1 process x 2 threads": _spawn(["--worker", "single", "--threads", 2] + common, 2),
            "2 MPI ranks x 1 thread": _spawn(["--worker", "ranks"] + common, 1, ranks=2),
            "one rank's work alone": _spawn(["--worker", "single", "--threads", 1, "--half"]
                                            + common, 1),
        }
        base = runs["1 process x 1 thread"]
        print(f"{name}: {w['n']} x {w['shape']}, batch {w['batch']} (2 ranks: "
              f"{w['batch'] // 2} per rank)")
        print(f"  {'setting':<26}{'s/epoch':>18}{'speed-up vs 1x1':>18}{'others (s)':>12}")
        for label, r in runs.items():
            if "error" in r:
                print(f"  {label:<26} failed: {r['error']}")
                continue
            t = np.asarray(r["times"])
            speed = np.min(base["times"]) / t.min() if "times" in base else float("nan")
            print(f"  {label:<26}{t.min():>9.3f} ({np.median(t):.3f}){speed:>17.2f}x"
                  f"{r.get('others', float('nan')):>12.2f}")
        ranks = runs["2 MPI ranks x 1 thread"]
        if "error" in ranks:
            continue
        steps = ranks["steps"]
        step = np.min(ranks["times"]) / steps
        compute = np.min(ranks["times_no_allreduce"]) / steps
        single_step = np.min(base["times"]) / base["steps"]
        alone = runs["one rank's work alone"]
        alone_step = np.min(alone["times"]) / alone["steps"] if "times" in alone else np.nan
        opt_step = alone.get("optimizer_step", np.nan)
        print(f"  where a step's time goes, 1 x 1: {single_step * 1e3:.3f} ms per step of "
              f"{w['batch']} rows, of which the optimizer step {opt_step * 1e3:.3f} ms")
        print(f"  2 ranks: {step * 1e3:.3f} ms per step = {alone_step * 1e3:.3f} ms one rank's "
              f"step alone (optimizer {opt_step * 1e3:.3f} ms: every rank runs it whole) + "
              f"{(compute - alone_step) * 1e3:.3f} ms running beside the other rank + "
              f"{(step - compute) * 1e3:.3f} ms allreduce and waiting")
        print(f"  allreduce of {ranks['n_params']:,} parameters + 2 slots = "
              f"{ranks['bytes']:,} bytes per rank per step ({ranks['hook']}): "
              f"{ranks['allreduce_c'] * 1e6:.0f} us from C, "
              f"{ranks['allreduce_mpi4py'] * 1e6:.0f} us through mpi4py; a 2-rank ring moves "
              f"{ranks['bytes']:,} bytes per rank")
        if "times_python_hook" in ranks:
            tp = np.min(ranks["times_python_hook"])
            print(f"  compiled epoch calling the allreduce from Python each step: {tp:.3f} "
                  f"s/epoch against {np.min(ranks['times']):.3f} through the C pointer")
        print(f"  projection, weak scaling (each node: 2 ranks, {w['batch']} rows per step; "
              f"step = {compute * 1e3:.3f} ms compute + "
              f"{ranks['allreduce_c'] * 1e3:.3f} ms on-node allreduce + ring between nodes):")
        print(f"    {'network':<28}{'nodes':>6}{'ring (ms)':>11}{'step (ms)':>11}"
              f"{'s/epoch':>10}{'speed-up':>10}{'efficiency':>12}")
        for net_name, (bw, lat) in NETWORKS.items():
            one = steps * (compute + ranks["allreduce_c"])
            for nodes in (1, 8, 64):
                ring = _ring(ranks["bytes"], nodes, bw, lat)
                t_step = compute + ranks["allreduce_c"] + ring
                epoch = steps / nodes * t_step
                print(f"    {net_name:<28}{nodes:>6}{ring * 1e3:>11.3f}{t_step * 1e3:>11.3f}"
                      f"{epoch:>10.4f}{one / epoch:>9.1f}x{one / epoch / nodes:>11.0%}")
        print()


if __name__ == "__main__":
    main()
