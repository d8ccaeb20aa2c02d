"""Recurrent training epoch: nnc against PyTorch, each in its own process.

Workload: 10,000 random sequences of T = 28 steps x F = 28 features (an MNIST-row-sized problem),
10 random classes, LSTM(128) (last state) - Dense(10), softmax cross-entropy, Adam (lr 1e-3),
batch 64, float32, shuffled every epoch; then the same with GRU(128).  PyTorch runs
torch.nn.LSTM / torch.nn.GRU (batch_first) + torch.nn.Linear on the last output.

Each library runs in a fresh subprocess with the same thread count (``threadpoolctl`` limits for
BLAS/OpenMP, ``torch.set_num_threads``, and OMP/OPENBLAS/MKL_NUM_THREADS in its environment), does a
warm-up of 20 batches, then times ``--repeat`` full epochs.  Reported: min and median seconds per
epoch (wall clock), the least process CPU time per epoch (steadier on a busy machine: both runs
are single-threaded by default), the ratios nnc / torch, and the fraction of GEMM peak each run
reaches: the FLOPs of the model's matrix products (input projection, recurrent products forward
and backward, the two weight gradients, the Dense layer; no input gradient for the first layer,
as in PyTorch) divided by the epoch time, relative to the rate of a 2048^3 float32 matmul through
NumPy (OpenBLAS, like the SciPy BLAS nnc calls) under the same thread limit.

``--profile`` adds nnc's time split per batch of 64 (thread CPU time, so a busy machine disturbs it
less): recurrent forward, recurrent backward, the rest of the step, and the GEMM-only time of the
recurrent layer (the same products through SciPy's BLAS), so the gate kernels' share is visible.

    python benchmarks/bench_rnn.py [--threads 1] [--repeat 3] [--n-samples 10000]
                                   [--cells lstm,gru] [--profile]
"""
import argparse
import json
import os
import time

import numpy as np

from _harness import cpu_time, limit_threads, ratio_line, spawn_worker, time_epochs, torch_epoch

BATCH = 64
T, F, UNITS, N_CLASSES = 28, 28, 128, 10
WARMUP_BATCHES = 20
GATES = {"lstm": 4, "gru": 3}


def _data(n_samples):
    rng = np.random.RandomState(0)
    X = rng.rand(n_samples, T, F).astype(np.float32)
    y = rng.randint(0, N_CLASSES, n_samples)
    return X, y


def gemm_flops_per_epoch(cell, n_samples):
    """FLOPs of the model's GEMMs in one epoch (2 per multiply-add)."""
    G = GATES[cell] * UNITS
    total = 0
    for start in range(0, n_samples, BATCH):
        n = min(BATCH, n_samples - start)
        rnn = (2 * n * T * F * G                      # input projection, all steps at once
               + 2 * n * (T - 1) * UNITS * G          # h_{t-1} W_h, forward (h_0 = 0)
               + 2 * n * (T - 1) * G * UNITS          # dPre W_h^T, backward
               + 2 * F * G * n * T                    # dW_x
               + 2 * UNITS * G * n * (T - 1))         # dW_h
        dense = 3 * 2 * n * UNITS * N_CLASSES         # forward, dW, dX
        total += rnn + dense
    return total


# ------------------------------------------------------------------------------------ workers

def _run_peak(args):
    """GFLOP/s of a 2048^3 float32 matmul through NumPy's BLAS under the thread limit."""
    _limit = limit_threads(args.threads)  # noqa: F841 - keep the limits alive
    n = 2048
    rng = np.random.RandomState(0)
    a = rng.rand(n, n).astype(np.float32)
    b = rng.rand(n, n).astype(np.float32)
    c = np.empty((n, n), np.float32)
    np.matmul(a, b, out=c)
    best = float("inf")
    for _ in range(5):
        t0 = time.perf_counter()
        np.matmul(a, b, out=c)
        best = min(best, time.perf_counter() - t0)
    return dict(gflops=2 * n ** 3 / best / 1e9)


def _run_nnc(args):
    _limit = limit_threads(args.threads)  # noqa: F841
    import nnc
    from nnc.layers import Dense, GRU, LSTM
    from nnc.optimizers import Adam

    X, y = _data(args.n_samples)
    cls = LSTM if args.cell == "lstm" else GRU
    net = nnc.Sequential([cls(UNITS), Dense(N_CLASSES)], loss="softmax_cross_entropy",
                         input_shape=(T, F), dtype="float32", random_state=0)
    opt = Adam(learning_rate=1e-3)
    Xv = net._check_X(X)
    yv = net._check_y(y, X.shape[0])
    rng = np.random.RandomState(1)
    n_warm = min(len(X), WARMUP_BATCHES * BATCH)
    net.train_epoch(Xv[:n_warm], yv[:n_warm], opt, batch_size=BATCH,
                    indices=rng.permutation(n_warm))
    out = time_epochs(lambda: net.train_epoch(Xv, yv, opt, batch_size=BATCH,
                                              indices=rng.permutation(len(X))), args.repeat)
    if args.profile:
        out["profile"] = _profile_nnc(net, opt, Xv[:BATCH], yv[:BATCH], args.cell)
    return out


def _cpu_time(fn, number=5, repeat=10):
    return cpu_time(fn, number, repeat)


def _gemm_only(cell, dtype=np.float32):
    """The recurrent layer's GEMMs at batch 64 through SciPy's BLAS, in the orientation nnc issues
    them (feature-major histories; a row-major (r, c) array is a Fortran (c, r) one here);
    returns a function running one forward + backward's worth of products."""
    from scipy.linalg import blas
    G = GATES[cell] * UNITS
    n = BATCH
    rng = np.random.RandomState(0)
    f = lambda *s: np.asfortranarray(rng.rand(*s).astype(dtype))  # noqa: E731
    Wx, WhT, Wh = f(G, F), f(UNITS, G), f(G, UNITS)
    Z, P = f(T * n, F + UNITS), f(T * n, G)
    h, Ps, dPs, dh = f(n, UNITS), f(n, G), f(n, G), f(n, UNITS)

    def run():
        blas.sgemm(1.0, Z[:, :F], Wx, trans_b=1, c=P, overwrite_c=1)     # P = W_x^T Z[:F]
        for _ in range(T - 1):
            blas.sgemm(1.0, h, WhT, beta=1.0, c=Ps, overwrite_c=1)       # P[:, s] += W_h^T h
        for _ in range(T - 1):
            blas.sgemm(1.0, dPs, Wh, c=dh, overwrite_c=1)                # dh = W_h dP[:, s]
        blas.sgemm(1.0, P, Z, trans_a=1)                                 # [dW_x; dW_h] = Z dP^T
    return run


def _profile_nnc(net, opt, X, y, cell):
    rnn = net.layers[0]
    Y = np.array(rnn.forward(X, True), copy=True)
    dY = np.random.RandomState(0).standard_normal(Y.shape).astype(np.float32)
    dY_work = dY.copy()

    def fwd():
        rnn.forward(X, True)

    def fwd_bwd():
        rnn.forward(X, True)
        dY_work[...] = dY
        rnn.backward(dY_work, False)

    t_f = _cpu_time(fwd)
    t_fb = _cpu_time(fwd_bwd)
    t_gemm = _cpu_time(_gemm_only(cell), number=2)
    saved = net.params.copy()
    t_batch = _cpu_time(lambda: net._batch_loss_gradient(X, y, None))
    t_step = _cpu_time(lambda: opt.step(net.params, net.grads, n_decay=net.n_decay,
                                        n_samples=float(BATCH)))
    net.params[...] = saved
    return dict(forward=t_f, backward=t_fb - t_f, gemm=t_gemm, batch=t_batch, step=t_step)


def _run_torch(args):
    import torch
    torch.set_num_threads(args.threads)
    _limit = limit_threads(args.threads)  # noqa: F841
    torch.manual_seed(0)
    X, y = _data(args.n_samples)
    Xt = torch.from_numpy(X)
    yt = torch.from_numpy(y)
    rnn = (torch.nn.LSTM if args.cell == "lstm" else torch.nn.GRU)(F, UNITS, batch_first=True)
    head = torch.nn.Linear(UNITS, N_CLASSES)
    opt = torch.optim.Adam(list(rnn.parameters()) + list(head.parameters()), lr=1e-3)
    loss_fn = torch.nn.CrossEntropyLoss()
    rng = np.random.RandomState(1)

    epoch = torch_epoch(lambda Xb: head(rnn(Xb)[0][:, -1]), opt, loss_fn, Xt, yt, BATCH,
                        lambda n: torch.from_numpy(rng.permutation(n)))

    epoch(min(len(X), WARMUP_BATCHES * BATCH))
    out = time_epochs(lambda: epoch(len(X)), args.repeat)
    out.update(version=torch.__version__)
    return out


# ------------------------------------------------------------------------------------ driver

def _spawn(lib, args, cell=None):
    worker_args = ["--worker", lib, "--threads", args.threads, "--repeat", args.repeat,
                   "--n-samples", args.n_samples, "--cell", cell or "lstm"]
    if args.profile:
        worker_args.append("--profile")
    return spawn_worker(__file__, worker_args, args.threads)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--n-samples", type=int, default=10000)
    ap.add_argument("--cells", default="lstm,gru")
    ap.add_argument("--profile", action="store_true")
    ap.add_argument("--only", choices=["nnc", "torch"], default=None)
    ap.add_argument("--worker", choices=["nnc", "torch", "peak"], default=None,
                    help=argparse.SUPPRESS)
    ap.add_argument("--cell", choices=sorted(GATES), default="lstm", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)

    if args.worker:
        run = {"nnc": _run_nnc, "torch": _run_torch, "peak": _run_peak}[args.worker]
        print(json.dumps(run(args)))
        return

    cells = [c.strip() for c in args.cells.split(",") if c.strip()]
    for c in cells:
        if c not in GATES:
            ap.error(f"unknown cell {c!r}; choose from {sorted(GATES)}")
    libs = [args.only] if args.only else ["nnc", "torch"]
    print(f"RNN epoch: {args.n_samples} x T={T} x F={F}, {UNITS} units -> Dense({N_CLASSES}), "
          f"batch {BATCH}, float32, Adam, {args.threads} thread(s), {args.repeat} timed epochs "
          f"after a {WARMUP_BATCHES}-batch warm-up (load average {os.getloadavg()[0]:.2f})")
    peak = _spawn("peak", args).get("gflops", float("nan"))
    print(f"GEMM peak (2048^3 float32 matmul, NumPy): {peak:.1f} GFLOP/s")
    print(f"{'model':<8}{'library':<9}{'min s/epoch':>13}{'median':>10}{'min CPU s':>11}"
          f"{'GFLOP/s':>10}{'% peak':>8}{'last loss':>11}")
    for cell in cells:
        flops = gemm_flops_per_epoch(cell, args.n_samples)
        results = {lib: _spawn(lib, args, cell) for lib in libs}
        for lib, r in results.items():
            if "error" in r:
                print(f"{cell.upper():<8}{lib:<9} failed: {r['error']}")
                continue
            t = np.asarray(r["times"])
            rate = flops / t.min() / 1e9
            print(f"{cell.upper():<8}{lib:<9}{t.min():>13.3f}{np.median(t):>10.3f}"
                  f"{min(r['cpu']):>11.3f}{rate:>10.1f}{100 * rate / peak:>7.0f}%"
                  f"{r['losses'][-1]:>11.4f}")
        if all(lib in results and "error" not in results[lib] for lib in ("nnc", "torch")):
            print(f"{'':<8}{ratio_line(results['nnc'], results['torch'])}")
        prof = results.get("nnc", {}).get("profile")
        if prof:
            rnn = prof["forward"] + prof["backward"]
            print(f"{'':<8}nnc per batch of {BATCH} (thread CPU µs): {cell.upper()} forward "
                  f"{prof['forward']:.0f}, backward {prof['backward']:.0f} (its GEMMs alone "
                  f"{prof['gemm']:.0f}, so gates/copies ~{rnn - prof['gemm']:.0f}); whole batch "
                  f"{prof['batch']:.0f}; Adam step {prof['step']:.0f}")


if __name__ == "__main__":
    main()
