"""Pieces the bench_*.py scripts share: thread limits, timing loops and the worker subprocess.

Each benchmark runs every library in a fresh ``python benchmarks/bench_X.py --worker LIB ...``
process that prints one JSON line; ``spawn_worker`` starts it with the thread count in
OMP/OPENBLAS/MKL_NUM_THREADS and returns the parsed line (or ``{"error": last stderr line}``).
The scripts run as ``python benchmarks/bench_X.py``, so this folder is on ``sys.path``.
"""
import json
import os
import resource
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def limit_threads(threads):
    """threadpoolctl limits for BLAS/OpenMP; keep the returned object alive while timing."""
    from threadpoolctl import threadpool_limits
    return threadpool_limits(threads)


def maxrss_mb():
    """Peak resident set size of this process in MB."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # KiB on Linux


def cpu_time(fn, number, repeat):
    """Best thread CPU time of one ``fn()`` call in µs (one untimed call first)."""
    fn()
    best = float("inf")
    for _ in range(repeat):
        t0 = time.thread_time()
        for _ in range(number):
            fn()
        best = min(best, (time.thread_time() - t0) / number)
    return best * 1e6  # µs


def time_epochs(epoch, repeat):
    """Run ``epoch()`` (returns the epoch's loss) ``repeat`` times: dict(times, cpu, losses)."""
    times, cpu, losses = [], [], []
    for _ in range(repeat):
        t0, c0 = time.perf_counter(), time.process_time()
        losses.append(epoch())
        times.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    return dict(times=times, cpu=cpu, losses=losses)


def spawn_worker(script, worker_args, threads, checkout_first=True):
    """Run ``python script *worker_args`` with ``threads`` in the *_NUM_THREADS variables and
    return its last stdout line parsed as JSON, or ``{"error": ...}`` if it failed.
    ``checkout_first`` puts the repository root (an in-place build) before any installed nnc."""
    env = dict(os.environ)
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        env[var] = str(threads)
    if checkout_first:
        env["PYTHONPATH"] = os.pathsep.join(p for p in (ROOT, env.get("PYTHONPATH")) if p)
    cmd = [sys.executable, os.path.abspath(script)] + [str(a) for a in worker_args]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        return dict(error=proc.stderr.strip().splitlines()[-1] if proc.stderr else "failed")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def ratio_line(nnc, torch):
    """'ratio nnc / torch: min .., median .., CPU time ..  (torch VERSION)' from two results."""
    import numpy as np
    a, b = np.asarray(nnc["times"]), np.asarray(torch["times"])
    ca, cb = min(nnc["cpu"]), min(torch["cpu"])
    return (f"ratio nnc / torch: min {a.min() / b.min():.2f}, median "
            f"{np.median(a) / np.median(b):.2f}, CPU time {ca / cb:.2f}  "
            f"(torch {torch['version']})")


def torch_epoch(forward, opt, loss_fn, Xt, yt, batch, permutation):
    """A PyTorch training epoch as ``epoch(n)``: the first n samples in ``permutation(n)``'s
    order, in batches of ``batch``; ``forward(Xb)`` gives the logits; returns the mean loss."""
    def epoch(n):
        perm = permutation(n)
        total = 0.0
        for start in range(0, n, batch):
            idx = perm[start:start + batch]
            opt.zero_grad(set_to_none=True)
            loss = loss_fn(forward(Xt[idx]), yt[idx])
            loss.backward()
            opt.step()
            total += float(loss) * len(idx)
        return total / n
    return epoch
