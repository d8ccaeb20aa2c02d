"""Small CNN training epoch: nnc against PyTorch, each in its own process.

Workload: 10,000 random 1x28x28 images, 10 random classes,
Conv2D(8, 3) - ReLU - MaxPool2D(2) - Conv2D(16, 3) - ReLU - MaxPool2D(2) - Flatten - Dense(10),
softmax cross-entropy, Adam (lr 1e-3), batch 64, float32, shuffled every epoch.

Each library runs in a fresh subprocess with the same thread count (``threadpoolctl`` limits for
BLAS/OpenMP, ``torch.set_num_threads``, and OMP/OPENBLAS/MKL_NUM_THREADS in its environment), does a
warm-up of 20 batches, then times ``--repeat`` full epochs.  Reported: min and median wall seconds
per epoch, the min process CPU time per epoch (steadier on a shared machine; with one thread it
equals the wall time of a quiet one), the ratios nnc / torch, and the peak resident set size of
each process (``getrusage`` ``ru_maxrss``: interpreter + library + the 31 MB data set + training
state), next to the peak reached before the first training batch (model and data built).

``--profile`` adds nnc's time split per layer (forward / backward of each layer called directly at
batch 64) and, for the convolutions, the part spent in im2col / col2im (kernel twins on the same
shapes; the rest of a conv layer is GEMM, bias and gradient sums).  Timings use thread CPU time so a
busy machine disturbs them less.

    python benchmarks/bench_cnn.py [--threads 1] [--repeat 3] [--n-samples 10000] [--profile]
"""
import argparse
import json

import numpy as np

from _harness import (cpu_time, limit_threads, maxrss_mb, ratio_line, spawn_worker, time_epochs,
                      torch_epoch)

BATCH = 64
WARMUP_BATCHES = 20


def _data(n_samples):
    rng = np.random.RandomState(0)
    X = rng.rand(n_samples, 1, 28, 28).astype(np.float32)
    y = rng.randint(0, 10, n_samples)
    return X, y


# ------------------------------------------------------------------------------------ workers

def _run_nnc(args):
    _limit = limit_threads(args.threads)  # noqa: F841 - keep the limits alive
    import nnc
    from nnc.layers import Conv2D, ReLU, MaxPool2D, Flatten, Dense
    from nnc.optimizers import Adam

    X, y = _data(args.n_samples)
    net = nnc.Sequential([Conv2D(8, 3), ReLU(), MaxPool2D(2), Conv2D(16, 3), ReLU(), MaxPool2D(2),
                          Flatten(), Dense(10)],
                         loss="softmax_cross_entropy", input_shape=(1, 28, 28), dtype="float32",
                         random_state=0)
    opt = Adam(learning_rate=1e-3)
    Xv = net._check_X(X)
    yv = net._check_y(y, X.shape[0])
    rng = np.random.RandomState(1)
    rss_before = maxrss_mb()
    n_warm = min(len(X), WARMUP_BATCHES * BATCH)
    net.train_epoch(Xv[:n_warm], yv[:n_warm], opt, batch_size=BATCH,
                    indices=rng.permutation(n_warm))
    out = time_epochs(lambda: net.train_epoch(Xv, yv, opt, batch_size=BATCH,
                                              indices=rng.permutation(len(X))), args.repeat)
    out.update(rss=maxrss_mb(), rss_before=rss_before)
    if args.profile:
        out["profile"] = _profile_nnc(net, X[:BATCH], y[:BATCH])
    return out


def _cpu_time(fn):
    return cpu_time(fn, number=10, repeat=20)


def _profile_nnc(net, X, y):
    from nnc.layers import Conv2D
    from nnc._kernels import _conv
    from nnc._kernels._openmp_helpers import omp_max_threads

    rows = []
    inputs = [np.ascontiguousarray(X)]
    for layer in net.layers:   # copies: in-place layers (ReLU) would overwrite their input
        inputs.append(np.array(layer.forward(inputs[-1].copy(), True), copy=True))
    for i, layer in enumerate(net.layers):
        x_in, x_work = inputs[i], inputs[i].copy()
        dy = np.random.RandomState(i).standard_normal(inputs[i + 1].shape).astype(np.float32)
        dy_work = dy.copy()

        def restore():      # fresh input and dY every call (in-place layers overwrite them)
            x_work[...] = x_in
            dy_work[...] = dy

        def fwd():
            restore()
            layer.forward(x_work, True)

        def fwd_bwd():
            restore()
            layer.forward(x_work, True)
            layer.backward(dy_work, i > 0)

        t_r = _cpu_time(restore)
        t_f = max(0.0, _cpu_time(fwd) - t_r)
        t_b = max(0.0, _cpu_time(fwd_bwd) - t_r - t_f)
        extra = ""
        if isinstance(layer, Conv2D):
            cols = np.empty((X.shape[0],) + layer._ws_cols.shape[1:], dtype=np.float32)
            x4 = x_in.reshape((X.shape[0],) + layer._in3)
            dx4 = np.empty_like(x4)
            nt = omp_max_threads()
            geo = (layer._KH, layer._KW, layer._SH, layer._SW, layer._PH, layer._PW)
            if layer._ws_tmp.shape[2]:   # stride-1 unpadded: full-width grid columns
                t_i = _cpu_time(lambda: _conv.im2col_grid(x4, cols, *geo[:2], n_threads=nt))
                t_c = _cpu_time(lambda: _conv.col2im_grid(cols, dx4, *geo[:2], n_threads=nt))
            else:
                t_i = _cpu_time(lambda: _conv.im2col(x4, cols, *geo, n_threads=nt))
                t_c = _cpu_time(lambda: _conv.col2im(cols, dx4, *geo, n_threads=nt))
            extra = f"im2col {t_i:.0f}" + (f", col2im {t_c:.0f}" if i > 0 else "") + \
                " (rest: GEMMs, bias, gradient sums, grid copies)"
        rows.append((type(layer).__name__, t_f, t_b, extra))
    opt_state = net.params.copy()
    from nnc.optimizers import Adam
    opt = Adam(1e-3)
    t_step = _cpu_time(lambda: opt.step(net.params, net.grads, n_decay=net.n_decay,
                                        n_samples=float(BATCH)))
    net.params[...] = opt_state
    yv = net._check_y(y, X.shape[0])
    t_batch = _cpu_time(lambda: net._batch_loss_gradient(X, yv, None))
    return dict(rows=rows, step=t_step, batch=t_batch)


def _run_torch(args):
    import torch
    torch.set_num_threads(args.threads)
    _limit = limit_threads(args.threads)  # noqa: F841
    torch.manual_seed(0)
    X, y = _data(args.n_samples)
    Xt = torch.from_numpy(X)
    yt = torch.from_numpy(y)
    net = torch.nn.Sequential(
        torch.nn.Conv2d(1, 8, 3), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
        torch.nn.Conv2d(8, 16, 3), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
        torch.nn.Flatten(), torch.nn.Linear(400, 10))
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    loss_fn = torch.nn.CrossEntropyLoss()
    rng = np.random.RandomState(1)

    epoch = torch_epoch(net, opt, loss_fn, Xt, yt, BATCH,
                        lambda n: torch.from_numpy(rng.permutation(n)))

    rss_before = maxrss_mb()
    epoch(min(len(X), WARMUP_BATCHES * BATCH))
    out = time_epochs(lambda: epoch(len(X)), args.repeat)
    out.update(rss=maxrss_mb(), rss_before=rss_before, version=torch.__version__)
    return out


# ------------------------------------------------------------------------------------ driver

def _spawn(lib, args):
    worker_args = ["--worker", lib, "--threads", args.threads, "--repeat", args.repeat,
                   "--n-samples", args.n_samples] + (["--profile"] if args.profile else [])
    return spawn_worker(__file__, worker_args, args.threads)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--n-samples", type=int, default=10000)
    ap.add_argument("--profile", action="store_true")
    ap.add_argument("--only", choices=["nnc", "torch"], default=None)
    ap.add_argument("--worker", choices=["nnc", "torch"], default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)

    if args.worker:
        result = (_run_nnc if args.worker == "nnc" else _run_torch)(args)
        print(json.dumps(result))
        return

    libs = [args.only] if args.only else ["nnc", "torch"]
    print(f"CNN epoch: {args.n_samples} x 1x28x28, batch {BATCH}, float32, Adam, "
          f"{args.threads} thread(s), {args.repeat} timed epochs after a {WARMUP_BATCHES}-batch "
          "warm-up")
    results = {lib: _spawn(lib, args) for lib in libs}
    print(f"{'library':<10}{'min s/epoch':>13}{'median':>10}{'min CPU s':>11}{'peak RSS MB':>13}"
          f"{'before training':>17}{'last loss':>11}")
    for lib, r in results.items():
        if "error" in r:
            print(f"{lib:<10} failed: {r['error']}")
            continue
        t = np.asarray(r["times"])
        print(f"{lib:<10}{t.min():>13.3f}{np.median(t):>10.3f}{min(r['cpu']):>11.3f}"
              f"{r['rss']:>13.0f}{r['rss_before']:>17.0f}{r['losses'][-1]:>11.4f}")
    ok = [lib for lib in ("nnc", "torch") if lib in results and "error" not in results[lib]]
    if len(ok) == 2:
        print(ratio_line(results["nnc"], results["torch"]))
    prof = results.get("nnc", {}).get("profile")
    if prof:
        print("\nnnc time split at batch 64 (thread CPU time, µs):")
        print(f"{'layer':<12}{'forward':>10}{'backward':>10}   conv kernels")
        total = 0.0
        for name, t_f, t_b, extra in prof["rows"]:
            total += t_f + t_b
            print(f"{name:<12}{t_f:>10.0f}{t_b:>10.0f}   {extra}")
        print(f"{'layers':<12}{total:>20.0f}")
        print(f"{'Adam step':<12}{prof['step']:>20.0f}")
        print(f"{'whole batch':<12}{prof['batch']:>20.0f}   (forward + loss + backward, "
              "through Sequential)")


if __name__ == "__main__":
    main()
