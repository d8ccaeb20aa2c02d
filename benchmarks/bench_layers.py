"""Per-layer forward + backward time: nnc against PyTorch, each in its own process.

One training step of a lone layer at typical sizes, float32: the forward in training mode and the
backward that computes the input gradient (except after integer ids) and every parameter
gradient.  nnc calls the layer's ``_forward`` / ``_backward`` on preallocated workspaces, as its
training loop does; PyTorch runs the module's forward and ``Y.backward(dY)`` (autograd, its
training path), with ``.grad`` cleared between steps.  Rows (``CASES``; more layers add theirs):

  BatchNorm2d       (64, 32, 16, 16), batch statistics, affine
  Embedding         20,000 x 64 table, ids (64, 50)
  LayerNorm         (64, 64, 64) over the last 64, affine
  MaxPool2D 2       (64, 16, 32, 32), 2x2 stride 2
  MaxPool2D 3/2/1   (64, 16, 32, 32), 3x3 stride 2 padding 1
  AvgPool2D 3/1/1   (64, 16, 16, 16), 3x3 stride 1 padding 1 (count_include_pad)
  MaxPool1D 3/2/1   (64, 32, 128)
  GlobalAvgPool     (64, 64, 8, 8) channels first   (torch: mean over H, W)
  GlobalMaxPool     (64, 50, 64) channels last      (torch: amax over T)
  SelfAttention     (64, 64, 64): dim 64, 4 heads, T = 64 (torch: nn.MultiheadAttention,
                    batch_first, called with x as query, key and value, need_weights=False)
  TransformerBlock  (64, 64, 64): dim 64, 4 heads, ffn 256, no dropout, pre-norm (torch:
                    nn.TransformerEncoderLayer(norm_first=True, batch_first=True))

Each library runs in a fresh subprocess per thread setting (``threadpoolctl`` limits,
``torch.set_num_threads``, OMP/OPENBLAS/MKL_NUM_THREADS in its environment); every row warms up,
then takes the min and the median over ``--repeat`` repeats of ``--number`` steps (wall time: with
more than one thread, CPU time would add the threads up).  Printed: µs per step and the ratio
torch / nnc (> 1: nnc is faster), at 1 thread and at ``--threads`` (default: every core).

    python benchmarks/bench_layers.py [--threads N] [--repeat 7] [--only BatchNorm,Embedding]
"""
import argparse
import os
import time

import numpy as np

from _harness import limit_threads, spawn_worker

#: name -> (nnc layer factory, torch (module factory or None, op), sample shape, batch, kind)
#: kind: "float" (dX wanted) or ("ids", n_tokens)
CASES = {
    "BatchNorm2d": (lambda L: L.BatchNorm(), lambda nn: nn.BatchNorm2d(32), (32, 16, 16), 64,
                    "float"),
    "Embedding": (lambda L: L.Embedding(20000, 64), lambda nn: nn.Embedding(20000, 64), (50,),
                  64, ("ids", 20000)),
    "LayerNorm": (lambda L: L.LayerNorm(), lambda nn: nn.LayerNorm(64), (64, 64), 64, "float"),
    "MaxPool2D 2": (lambda L: L.MaxPool2D(2), lambda nn: nn.MaxPool2d(2), (16, 32, 32), 64,
                    "float"),
    "MaxPool2D 3/2/1": (lambda L: L.MaxPool2D(3, 2, 1), lambda nn: nn.MaxPool2d(3, 2, 1),
                        (16, 32, 32), 64, "float"),
    "AvgPool2D 3/1/1": (lambda L: L.AvgPool2D(3, 1, 1), lambda nn: nn.AvgPool2d(3, 1, 1),
                        (16, 16, 16), 64, "float"),
    "MaxPool1D 3/2/1": (lambda L: L.MaxPool1D(3, 2, 1), lambda nn: nn.MaxPool1d(3, 2, 1),
                        (32, 128), 64, "float"),
    "GlobalAvgPool": (lambda L: L.GlobalAvgPool(), lambda nn: _Reduce("mean", (2, 3)),
                      (64, 8, 8), 64, "float"),
    "GlobalMaxPool": (lambda L: L.GlobalMaxPool("channels_last"), lambda nn: _Reduce("amax", 1),
                      (50, 64), 64, "float"),
    "SelfAttention": (lambda L: L.MultiHeadSelfAttention(4, 64),
                      lambda nn: _SelfAttention(nn.MultiheadAttention(64, 4, batch_first=True)),
                      (64, 64), 64, "float"),
    "TransformerBlock": (lambda L: L.TransformerEncoderBlock(64, 4, 256),
                         lambda nn: nn.TransformerEncoderLayer(64, 4, 256, dropout=0.0,
                                                               batch_first=True,
                                                               norm_first=True),
                         (64, 64), 64, "float"),
}


class _SelfAttention:
    """torch.nn.MultiheadAttention as self-attention (x is query, key and value), attention
    weights not returned, as a module-like callable."""

    def __init__(self, module):
        self.module = module

    def __call__(self, x):
        return self.module(x, x, x, need_weights=False)[0]

    def parameters(self):
        return self.module.parameters()


class _Reduce:
    """torch.mean / torch.amax over `dim` as a module-like callable (no parameters)."""

    def __init__(self, op, dim):
        self.op, self.dim = op, dim

    def __call__(self, x):
        import torch
        return getattr(torch, self.op)(x, dim=self.dim)

    def parameters(self):
        return []


def _inputs(shape, batch, kind, rng):
    if kind == "float":
        return rng.standard_normal((batch,) + shape).astype(np.float32)
    return rng.randint(0, kind[1], (batch,) + shape).astype(np.int64)


def _time(step, number, repeat):
    """(min, median) wall µs of one step() over `repeat` repeats of `number` steps, after a
    warm-up of at least 0.5 s (nnc's load governor decides its thread budget within its first
    ~0.2 s of work; a shorter run would time its serial start)."""
    t_end = time.perf_counter() + 0.5
    n_warm = 0
    while n_warm < max(3, number // 4) or time.perf_counter() < t_end:
        step()
        n_warm += 1
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        for _ in range(number):
            step()
        times.append((time.perf_counter() - t0) / number * 1e6)
    return min(times), float(np.median(times))


# ------------------------------------------------------------------------------------ workers

def _nnc_step(name):
    from nnc import layers as L
    make, _, shape, batch, kind = CASES[name]
    rng = np.random.RandomState(0)
    layer = make(L)
    layer.build(shape, np.dtype(np.float32))
    specs = layer.param_specs()
    sizes = [int(np.prod(s.shape)) for s in specs]
    params = np.zeros(sum(sizes), np.float32)
    grads = np.zeros_like(params)
    views, gviews, off = [], [], 0
    for spec, size in zip(specs, sizes):
        views.append(params[off:off + size].reshape(spec.shape))
        gviews.append(grads[off:off + size].reshape(spec.shape))
        off += size
    layer.bind(views, gviews)
    layer.init_params(rng)
    layer.allocate(batch)
    X = _inputs(shape, batch, kind, rng)
    dY = rng.standard_normal((batch,) + tuple(layer.output_shape)).astype(np.float32)
    need_dX = kind == "float"

    def step():
        layer._forward(X, True)
        layer._backward(dY, need_dX)
    return step


def _torch_step(name):
    import torch
    _, make, shape, batch, kind = CASES[name]
    rng = np.random.RandomState(0)
    module = make(torch.nn)
    X = torch.from_numpy(_inputs(shape, batch, kind, rng))
    if kind == "float":
        X.requires_grad_(True)
    params = list(module.parameters())
    with torch.no_grad():
        out_shape = module(X).shape
    dY = torch.from_numpy(rng.standard_normal(tuple(out_shape)).astype(np.float32))

    def step():
        for p in params:
            p.grad = None
        X.grad = None
        module(X).backward(dY)
    return step


def _worker(args):
    _limit = limit_threads(args.threads)  # noqa: F841 - keep the limits alive
    result = {}
    if args.worker == "torch":
        import torch
        torch.set_num_threads(args.threads)
        result["version"] = torch.__version__
    make_step = _torch_step if args.worker == "torch" else _nnc_step
    for name in args.only.split(","):
        result[name] = _time(make_step(name), args.number, args.repeat)
    print(__import__("json").dumps(result))


# ------------------------------------------------------------------------------------ main

def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=os.cpu_count(),
                    help="the second thread setting (default: every core)")
    ap.add_argument("--repeat", type=int, default=7)
    ap.add_argument("--number", type=int, default=20, help="steps per repeat")
    ap.add_argument("--only", default=",".join(CASES), help="comma-separated row names")
    ap.add_argument("--worker", choices=["nnc", "torch"], default=None, help="internal")
    args = ap.parse_args(argv)
    unknown = [n for n in args.only.split(",") if n not in CASES]
    if unknown:
        ap.error(f"unknown rows {unknown}; rows: {', '.join(CASES)}")
    if args.worker:
        return _worker(args)
    settings = [1] if args.threads == 1 else [1, args.threads]
    print("forward + backward of one training step, float32, µs per step (min / median of "
          f"{args.repeat} x {args.number} steps)")
    for threads in settings:
        worker_args = ["--threads", threads, "--repeat", args.repeat, "--number", args.number,
                       "--only", args.only]
        res = {lib: spawn_worker(__file__, ["--worker", lib] + worker_args, threads)
               for lib in ("nnc", "torch")}
        for lib, r in res.items():
            if "error" in r:
                print(f"{lib} worker failed: {r['error']}")
        if any("error" in r for r in res.values()):
            continue
        print(f"\n{threads} thread{'s' if threads > 1 else ''} (torch {res['torch']['version']})")
        print(f"{'layer':<18}{'nnc min':>10}{'nnc med':>10}{'torch min':>11}{'torch med':>11}"
              f"{'torch / nnc':>13}")
        for name in args.only.split(","):
            (a, am), (b, bm) = res["nnc"][name], res["torch"][name]
            print(f"{name:<18}{a:>10.1f}{am:>10.1f}{b:>11.1f}{bm:>11.1f}{b / a:>13.2f}")


if __name__ == "__main__":
    main()
