"""Per-kernel cost of one training step of a 30→64→64→1 network at batch 32 (binary CE, Adam).

Each kernel is timed through its Python twin (so every number includes ~0.5-1 µs of call and
shape-check overhead), then the whole step three ways: kernel twins called one by one, the
Python per-batch loop (Sequential), and the compiled whole-epoch loop (per batch).

    python benchmarks/bench_step.py [--dtype float32|float64] [--threads 1]
"""
import argparse
import timeit

import numpy as np


def _time(fn, number=2000, repeat=7):
    return min(timeit.repeat(fn, number=number, repeat=repeat)) / number * 1e6  # µs


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dtype", default="float64", choices=["float32", "float64"])
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)
    try:
        from threadpoolctl import threadpool_limits
        threadpool_limits(args.threads)
    except ImportError:
        pass
    from nnc import Sequential
    from nnc.layers import Dense, ReLU
    from nnc.optimizers import Adam
    from nnc._kernels import _dense, _activations, _losses, _optim

    dt = np.dtype(args.dtype)
    B, sizes = 32, [30, 64, 64, 1]
    rng = np.random.RandomState(0)
    X = rng.standard_normal((B, 30)).astype(dt)
    y = rng.randint(0, 2, (B, 1)).astype(dt)
    Ws = [rng.standard_normal((a, b)).astype(dt) * 0.1 for a, b in zip(sizes, sizes[1:])]
    bs = [np.zeros(b, dt) for b in sizes[1:]]
    As = [np.empty((B, b), dt) for b in sizes[1:]]
    dAs = [np.empty((B, b), dt) for b in sizes[1:]]
    dXs = [np.empty((B, a), dt) for a in sizes[:-1]]
    dWs = [np.empty_like(W) for W in Ws]
    dbs = [np.empty_like(b) for b in bs]
    n_params = sum(W.size + b.size for W, b in zip(Ws, bs))
    p = rng.standard_normal(n_params).astype(dt)
    g = rng.standard_normal(n_params).astype(dt)
    m, v = np.zeros_like(p), np.zeros_like(p)
    cfg = dict(kind=_optim.ADAM, lr=1e-3, momentum=0.9, beta2=0.999, eps=1e-8, nesterov=0,
               alpha=0.0, decay=0.0, n_decay=0, t=0, n_threads=1)

    rows = []
    for i in range(3):
        rows.append((f"dense_forward  layer {i + 1} ({sizes[i]}→{sizes[i + 1]})",
                     _time(lambda i=i: _dense.dense_forward(As[i - 1] if i else X, Ws[i], bs[i],
                                                            As[i]))))
    for i in range(2):
        rows.append((f"relu forward   layer {i + 1}",
                     _time(lambda i=i: _activations.activation_forward(
                         _activations.RELU, As[i].reshape(-1), 0.0))))
    rows.append(("loss: sigmoid BCE + d(logits)",
                 _time(lambda: _losses.loss_gradient(_losses.BCE, As[2], y, None, None, dAs[2]))))
    for i in (2, 1, 0):
        if i < 2:
            rows.append((f"relu backward  layer {i + 1}",
                         _time(lambda i=i: _activations.activation_backward(
                             _activations.RELU, As[i].reshape(-1), dAs[i].reshape(-1), 0.0))))
        rows.append((f"dense_backward layer {i + 1}" + (" (no dX)" if i == 0 else ""),
                     _time(lambda i=i: _dense.dense_backward(
                         As[i - 1] if i else X, Ws[i], dAs[i], dWs[i], dbs[i],
                         dXs[i] if i else None))))
    rows.append((f"adam step ({n_params} params, one fused pass)",
                 _time(lambda: _optim.optimizer_step(cfg, p, g, m, v))))

    net = Sequential([Dense(64), ReLU(), Dense(64), ReLU(), Dense(1)],
                     loss="binary_cross_entropy", input_shape=(30,), dtype=dt, random_state=0)
    opt = Adam(1e-3)
    Xc, yc = net._check_X(X), net._check_y(y, B)
    net._ensure_batch(B)

    def python_step():
        net._batch_loss_gradient(Xc, yc, None)
        opt.step(net.params, net.grads, n_decay=net.n_decay, n_samples=B)

    Xe = rng.standard_normal((B * 200, 30)).astype(dt)
    ye = rng.randint(0, 2, (B * 200, 1)).astype(dt)
    Xe, ye = net._check_X(Xe), net._check_y(ye, len(Xe))
    epoch = min(timeit.repeat(lambda: net.train_epoch(Xe, ye, opt, batch_size=B),
                              number=5, repeat=5)) / 5 / 200 * 1e6

    print(f"one training step, 30→64→64→1, batch {B}, {dt.name}, {args.threads} thread(s)")
    print(f"{'kernel':<48}{'µs':>8}")
    for name, us in rows:
        print(f"{name:<48}{us:>8.2f}")
    print(f"{'sum of kernel twins':<48}{sum(us for _, us in rows):>8.2f}")
    print(f"{'Sequential step (Python per-batch loop)':<48}{_time(python_step, 1000):>8.2f}")
    print(f"{'train_epoch per batch (fast path if available)':<48}{epoch:>8.2f}")


if __name__ == "__main__":
    main()
