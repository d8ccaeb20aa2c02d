"""How long Ctrl-C takes to stop training: time from SIGINT to the KeyboardInterrupt in the caller.

    python benchmarks/bench_interrupt.py [--threads 1] [--repeat 5]

For the compiled dense epoch (the loop polls a C flag after every batch) and the generic Python
loop (Dropout in the network), the signal is sent by a watcher thread once the epoch has done a
few batches; the table shows the median and worst latency next to one batch's time (the bound:
the batch in progress finishes) and the whole epoch's (what waiting for the end of the epoch
would cost).  Synthetic data, 784-256-128-10 ReLU networks, batch 128, float32, Adam.
"""
import argparse
import os
import signal
import statistics
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402

import nnc  # noqa: E402
import nnc.layers as L  # noqa: E402
from nnc._interrupt import EpochInterrupted  # noqa: E402
from nnc.optimizers import Adam  # noqa: E402


def _network(dropout):
    body = [L.Dense(256), L.ReLU(), L.Dense(128), L.ReLU()]
    if dropout:
        body.append(L.Dropout(0.1))
    return nnc.Sequential(body + [L.Dense(10)], loss="softmax_cross_entropy",
                          input_shape=(784,), dtype="float32", random_state=0)


def measure(dropout, X, y, batch, repeat, after):
    """(latencies s, batch time s, epoch time s)."""
    net, opt = _network(dropout), Adam(1e-3)
    Xv, yv = net._check_X(X), net._check_y(y, X.shape[0])
    t0 = time.perf_counter()
    net.train_epoch(Xv, yv, opt, batch)
    epoch = time.perf_counter() - t0
    per_batch = epoch / -(-X.shape[0] // batch)
    latencies = []
    for _ in range(repeat):
        sent = []

        def watcher():
            time.sleep(after)
            sent.append(time.perf_counter())
            signal.raise_signal(signal.SIGINT)

        threading.Thread(target=watcher, daemon=True).start()
        try:
            net.train_epoch(Xv, yv, opt, batch)
            continue                       # the epoch ended first
        except EpochInterrupted:
            latencies.append(time.perf_counter() - sent[0])
    return latencies, per_batch, epoch


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--samples", type=int, default=30000)
    args = parser.parse_args()
    from threadpoolctl import threadpool_limits
    limits = threadpool_limits(args.threads)  # noqa: F841 (kept alive while timing)
    rng = np.random.RandomState(0)
    X = rng.rand(args.samples, 784).astype(np.float32)
    y = rng.randint(0, 10, args.samples)
    print(f"threads={args.threads}, {args.samples} samples, batch 128, float32, Adam")
    print(f"{'loop':<34}{'latency median':>16}{'worst':>10}{'one batch':>11}{'epoch':>9}")
    for name, dropout in (("compiled (Dense + ReLU)", False), ("generic (with Dropout)", True)):
        lat, per_batch, epoch = measure(dropout, X, y, 128, args.repeat, after=0.1)
        if not lat:
            print(f"{name:<34}{'(epoch ended first)':>16}")
            continue
        print(f"{name:<34}{statistics.median(lat) * 1e3:>13.2f} ms{max(lat) * 1e3:>7.2f} ms"
              f"{per_batch * 1e3:>8.2f} ms{epoch:>7.2f} s")


if __name__ == "__main__":
    main()
