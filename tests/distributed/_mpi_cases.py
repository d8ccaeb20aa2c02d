"""Cases of the data-parallel tests, run by tests/distributed/test_mpi.py as
``mpiexec -n 2 python _mpi_cases.py CASE[,CASE...]`` (or without mpiexec: one rank).  Each
rank prints ``RESULT <json>`` lines (case, rank, results); the test reads them.  Not collected by
pytest (it starts real MPI processes).

Shards: the one-process reference visits the rows in order with batches of B rows; step s of
rank r takes the r-th block of b = B / K rows of that batch (``interleave``), so the ranks'
batches of a step are exactly the reference's batch of that step.
"""
import json
import os
import signal
import sys
import threading
import time
import warnings

import numpy as np

from mpi4py import MPI

import nnc
from nnc import Sequential
from nnc.layers import Conv2D, Dense, Flatten, LSTM, MaxPool2D, ReLU, SimpleRNN

warnings.simplefilter("ignore")
COMM = MPI.COMM_WORLD
RANK, SIZE = COMM.rank, COMM.size


def report(**kw):
    print("RESULT " + json.dumps({"case": CASE, "rank": RANK, **kw}), flush=True)


def interleave(n, B, K):
    """Row indices of each rank's shard (see the module docstring)."""
    shards = [[] for _ in range(K)]
    for start in range(0, n, B):
        block = np.arange(start, min(n, start + B))
        assert block.size % K == 0, "choose n so that every batch splits evenly"
        for r, part in enumerate(np.split(block, K)):
            shards[r].extend(part.tolist())
    return [np.array(s) for s in shards]


def rel(a, b):
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return float(np.abs(a - b).max() / max(np.abs(a).max(), 1e-300))


def digest_equal(est):
    """Every rank holds bit-identical weights."""
    digests = COMM.allgather(est.network_.params.tobytes())
    return all(d == digests[0] for d in digests)


def compare(dist, ref):
    """Relative differences of weights, optimizer state, loss curve; counters."""
    out = {"params": rel(ref.network_.params, dist.network_.params),
           "n_iter": [ref.n_iter_, dist.n_iter_], "t": [ref.t_, dist.t_]}
    if getattr(ref, "loss_curve_", None):
        out["loss_curve"] = rel(ref.loss_curve_, dist.loss_curve_)
    sa, sb = ref._optimizer.state_dict(), dist._optimizer.state_dict()
    out["opt_t"] = [sa["t"], sb["t"]]
    out["opt_state"] = max([rel(sa[k], sb[k]) for k in sa if isinstance(sa[k], np.ndarray)]
                           or [0.0])
    return out


# ---------------------------------------------------------------------- equal shards

def problems(rng):
    N, F = 100, 6
    X = rng.randn(N, F)
    y3 = rng.randint(0, 3, N)
    sw = rng.rand(N) + 0.5
    Y2 = np.c_[X[:, 0] - X[:, 1], X[:, 2] * 0.5] + 0.1 * rng.randn(N, 2)
    img = rng.randn(N, 1, 6, 6)
    seq = rng.randn(N, 4, 3)
    return {
        "mlp_adam": (lambda b: nnc.MLPClassifier((12,), max_iter=3, batch_size=b, alpha=1e-3,
                                                 shuffle=False, random_state=0),
                     X, y3, sw),
        "mlp_nesterov_invscaling": (
            lambda b: nnc.MLPRegressor(hidden_layer_sizes=(10,), solver="sgd",
                                       learning_rate="invscaling", learning_rate_init=0.05,
                                       max_iter=3, batch_size=b, shuffle=False, random_state=1),
            X, Y2, None),
        "dense_net_rmsprop_clip": (
            lambda b: nnc.NeuralNetClassifier([Dense(9), ReLU()], optimizer="rmsprop",
                                              max_epochs=2, batch_size=b, shuffle=False,
                                              clip_grad_norm=0.5, random_state=2,
                                              dtype="float64"),
            X, y3, sw),
        "cnn_adam": (lambda b: nnc.NeuralNetClassifier(
            [Conv2D(3, 3), ReLU(), MaxPool2D(2), Flatten()], max_epochs=2, batch_size=b,
            shuffle=False, alpha=1e-3, random_state=3, dtype="float64"), img, y3, sw),
        "lstm_regressor": (lambda b: nnc.NeuralNetRegressor(
            [LSTM(5)], optimizer="rmsprop", max_epochs=2, batch_size=b, shuffle=False,
            random_state=4, dtype="float64"), seq, Y2, None),
    }


def case_equal():
    rng = np.random.RandomState(0)
    B = 20
    results = {}
    for name, (make, X, y, sw) in problems(rng).items():
        mine = interleave(X.shape[0], B, SIZE)[RANK]
        kw = {} if sw is None else {"sample_weight": sw[mine]}
        with nnc.distributed() as comm:
            dist = make(B // SIZE).fit(X[mine], y[mine], **kw)
            hook = type(comm.hook()).__name__ if comm._hook is not None else None
        ref = make(B).fit(X, y, **({} if sw is None else {"sample_weight": sw}))
        results[name] = dict(compare(dist, ref), same_on_ranks=digest_equal(dist), hook=hook)
    # partial_fit twice, and the Python allreduce in place of the direct call
    make, X, y, sw = problems(rng)["mlp_adam"]
    mine = interleave(X.shape[0], B, SIZE)[RANK]
    ref = make(B)
    for _ in range(2):
        ref.partial_fit(X, y, sample_weight=sw, classes=[0, 1, 2])
    with nnc.distributed() as comm:
        from nnc._kernels import _comm
        comm._hook = _comm.PyAllreduce(comm.allreduce_grads)
        dist = make(B // SIZE)
        for _ in range(2):
            dist.partial_fit(X[mine], y[mine], sample_weight=sw[mine], classes=[0, 1, 2])
        hook = type(comm.hook()).__name__
    results["partial_fit_python_hook"] = dict(compare(dist, ref), same_on_ranks=digest_equal(dist),
                                              hook=hook)
    report(results=results)


# ---------------------------------------------------------------------- uneven shards

def manual_reference(make_est, X_shards, y_shards, sw_shards, b, epochs, n_outputs, loss):
    """One process, variable batch sizes: step s's batch is the union of every shard's rows
    s*b .. s*b+b-1; the optimizer sees the union's sample-weight sum (scikit-learn's rule)."""
    est = make_est()
    net = Sequential(est._make_layers(n_outputs), loss=loss, input_shape=X_shards[0].shape[1:],
                     dtype=np.float64, random_state=np.random.RandomState(est.random_state))
    opt = est._make_optimizer()
    n_steps = max(-(-len(x) // b) for x in X_shards)
    N = sum(len(x) for x in X_shards)
    alpha = float(opt.alpha)
    curve = []
    for _ in range(epochs):
        total = 0.0
        for s in range(n_steps):
            Xu = np.concatenate([x[s * b:(s + 1) * b] for x in X_shards])
            yu = np.concatenate([y[s * b:(s + 1) * b] for y in y_shards])
            swu = np.concatenate([w[s * b:(s + 1) * b] for w in sw_shards])
            loss_value, _ = net.loss_and_gradients(Xu, yu, swu)
            W = float(swu.sum())
            total += (loss_value + alpha * net.l2_penalty() / W) * len(Xu)
            opt.step(net.params, net.grads, n_decay=net.n_decay, n_samples=W)
        curve.append(total / N)
    return net, opt, curve


def case_uneven():
    rng = np.random.RandomState(5)
    sizes = [37, 23, 30, 11][:SIZE]
    b, epochs = 8, 3
    X_all = [rng.randn(n, 5) for n in sizes]
    y_all = [rng.randint(0, 3, n) for n in sizes]
    sw_all = [rng.rand(n) * (rng.rand(n) > 0.2) for n in sizes]   # some zero weights
    seq_all = [rng.randn(n, 3, 4) for n in sizes]
    results = {}
    cases = {
        "mlp_momentum": (lambda: nnc.MLPClassifier((7,), solver="sgd", momentum=0.8,
                                                   learning_rate_init=0.05, alpha=1e-2,
                                                   max_iter=epochs, batch_size=b, shuffle=False,
                                                   random_state=6), X_all),
        "rnn_adam": (lambda: nnc.NeuralNetClassifier(
            [SimpleRNN(4)], max_epochs=epochs, batch_size=b, shuffle=False, alpha=1e-2,
            learning_rate=0.01, random_state=7, dtype="float64"), seq_all),
    }
    for name, (make, data) in cases.items():
        with nnc.distributed():
            dist = make().fit(data[RANK], y_all[RANK], sample_weight=sw_all[RANK])
        net, opt, curve = manual_reference(make, data, y_all, sw_all, b, epochs, 3,
                                           "softmax_cross_entropy")
        results[name] = {"params": rel(net.params, dist.network_.params),
                         "loss_curve": rel(curve, dist.loss_curve_),
                         "opt_t": [opt.t, dist._optimizer.t],
                         "t": [epochs * sum(sizes), dist.t_],
                         "same_on_ranks": digest_equal(dist)}
    report(results=results)


# ---------------------------------------------------------------------- disagreements

def attempt(fn):
    try:
        fn()
    except Exception as exc:         # reported, then the next sub-case runs
        return [type(exc).__name__, str(exc)]
    return None


def case_mismatch():
    rng = np.random.RandomState(0)
    X = rng.randn(40, 4)
    y = rng.randint(0, 3, 40)
    out = {}
    with nnc.distributed():
        def est(**kw):
            return nnc.MLPClassifier((5,), max_iter=2, random_state=0, **kw)
        Xf = X if RANK == 0 else np.c_[X, X[:, :1]]
        out["features"] = attempt(lambda: est().fit(Xf, y))
        Xn = X.copy()
        if RANK == 1:
            Xn[3, 2] = np.nan
        out["nan_on_one_rank"] = attempt(lambda: est().fit(Xn, y))
        Xd = X.astype(np.float32) if RANK == 0 else X
        out["dtype"] = attempt(lambda: est(dtype=None).fit(Xd, y))
        out["hyper_parameter"] = attempt(
            lambda: nnc.MLPClassifier((5 + RANK,), max_iter=2, random_state=0).fit(X, y))
        out["partial_fit_classes"] = attempt(
            lambda: est().partial_fit(X, y, classes=[0, 1, 2, 3 + RANK]))
        ys = y.astype(str) if RANK == 1 else y
        out["label_types"] = attempt(lambda: est().fit(X, ys))
        # the union of the ranks' labels is classes_ (rank 0 sees 0/1, rank 1 sees 1/2)
        yu = np.where(y == 2, 1, y) if RANK == 0 else np.where(y == 0, 1, y)
        union = est().fit(X, yu)
        out["union_classes"] = union.classes_.tolist()
        out["union_same"] = digest_equal(union)
        # a continued fit whose weights differ between the ranks
        warm = est(warm_start=True).fit(X, y)
        warm.network_.params[0] += RANK
        out["warm_weights"] = attempt(lambda: warm.fit(X, y))
    report(results=out)


# ---------------------------------------------------------------------- failures

def _failing_epoch(after):
    """Patch the compiled data-parallel epoch so that rank 1 fails in epoch `after`."""
    from nnc import _mlp_fast
    original = _mlp_fast._train_epoch_synced
    calls = [0]

    def epoch(*args, **kw):
        calls[0] += 1
        if calls[0] == after:
            if CASE == "kill":
                os.kill(os.getpid(), signal.SIGKILL)
            raise RuntimeError("injected failure on rank 1")
        return original(*args, **kw)
    _mlp_fast._train_epoch_synced = epoch


def case_failure():
    rng = np.random.RandomState(0)
    X, y = rng.randn(400, 8), rng.randint(0, 2, 400)
    if RANK == 1:
        if CASE in ("die", "kill"):
            _failing_epoch(3)
        elif CASE == "hang":
            time.sleep(120)          # never joins the fit: rank 0's watchdog must end the job
    with nnc.distributed(timeout=2.0 if CASE == "hang" else None):
        nnc.MLPClassifier((8,), max_iter=1000, tol=0, n_iter_no_change=10**6,
                          random_state=0).fit(X, y)
    report(finished=True)


# ---------------------------------------------------------------------- Ctrl-C, verbose, stopping

def case_interrupt():
    """Rank 1 alone gets SIGINT in the middle of a fit: both ranks stop after the same step."""
    rng = np.random.RandomState(0)
    X, y = rng.randn(2000, 20), rng.randint(0, 2, 2000)
    if RANK == 1:      # SIGINT 0.2 s into the second epoch (surely inside training)
        from nnc import _mlp_fast
        original = _mlp_fast._train_epoch_synced
        calls = [0]

        def epoch(*args, **kw):
            calls[0] += 1
            if calls[0] == 2:
                threading.Timer(0.2, lambda: os.kill(os.getpid(), signal.SIGINT)).start()
            return original(*args, **kw)
        _mlp_fast._train_epoch_synced = epoch
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with nnc.distributed():
            est = nnc.MLPClassifier((32,), max_iter=100000, tol=0, n_iter_no_change=10**9,
                                    batch_size=16, random_state=0).fit(X, y)
    report(n_iter=est.n_iter_, t=est.t_, opt_t=est._optimizer.t, same_on_ranks=digest_equal(est),
           interrupted=any("interrupted" in str(w.message) for w in caught))


def case_stopping():
    import contextlib
    import io
    rng = np.random.RandomState(0)
    X = rng.randn(300, 5)
    y = (X[:, 0] + X[:, 1] > 0).astype(int)
    yr = X[:, 0] - 2 * X[:, 1]
    mine = slice(RANK, None, SIZE)
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf), nnc.distributed():
        clf = nnc.MLPClassifier((8,), early_stopping=True, max_iter=30, verbose=True,
                                learning_rate_init=0.01, random_state=0).fit(X[mine], y[mine])
        reg = nnc.MLPRegressor(hidden_layer_sizes=(8,), early_stopping=True, max_iter=30,
                               random_state=0, learning_rate_init=0.01).fit(X[mine], yr[mine])
        lbfgs = nnc.MLPClassifier((8,), solver="lbfgs", max_iter=20,
                                  random_state=0).fit(X[mine], y[mine])
    report(lines=buf.getvalue().count("Iteration"), clf_scores=clf.validation_scores_,
           reg_scores=reg.validation_scores_, clf_score=clf.score(X, y),
           reg_score=reg.score(X, yr), lbfgs_score=lbfgs.score(X, y),
           lbfgs_iter=lbfgs.n_iter_, same_on_ranks=[digest_equal(e) for e in (clf, reg, lbfgs)])


def case_self():
    """One rank (no mpiexec): a fit inside nnc.distributed(COMM_SELF) equals the plain fit."""
    from sklearn.base import clone
    rng = np.random.RandomState(0)
    X = rng.randn(150, 6)
    y = rng.randint(0, 3, 150)
    sw = rng.rand(150)
    ests = {
        "mlp": nnc.MLPClassifier((9,), max_iter=4, random_state=0),
        "mlp_early": nnc.MLPClassifier((9,), max_iter=6, early_stopping=True, random_state=0),
        "mlp_lbfgs": nnc.MLPClassifier((9,), solver="lbfgs", max_iter=10, random_state=0),
        "regressor_early": nnc.MLPRegressor(hidden_layer_sizes=(9,), max_iter=4,
                                            early_stopping=True, random_state=0),
        "cnn": nnc.NeuralNetClassifier([Conv2D(2, 2), ReLU(), Flatten()], input_shape=(1, 2, 3),
                                       max_epochs=3, random_state=0, dtype="float64"),
    }
    out = {}
    for name, est in ests.items():
        yy = X[:, 0] if "regressor" in name else y
        a = clone(est).fit(X, yy, sample_weight=sw)
        with nnc.distributed(MPI.COMM_SELF):
            b = clone(est).fit(X, yy, sample_weight=sw)
        out[name] = rel(a.network_.params, b.network_.params)
        if getattr(a, "validation_scores_", None):
            out[name + "_scores"] = rel(a.validation_scores_, b.validation_scores_)
    report(results=out)


# ---------------------------------------------------------------------- callbacks and validation

class _StopAt(nnc.callbacks.Callback):
    """Asks to stop at the end of one task: an epoch (`epoch`), a batch of an epoch (`epoch`,
    `batch`) or an L-BFGS iteration (`lbfgs`); counts the tasks it saw end."""

    def __init__(self, epoch=None, batch=None, lbfgs=None):
        self.epoch, self.batch, self.lbfgs = epoch, batch, lbfgs
        self.ends = {}

    def on_fit_task_end(self, estimator, context, *, fitted_estimator=None):
        name = context.task_name
        self.ends[name] = self.ends.get(name, 0) + 1
        if name == "epoch" and self.batch is None:
            return context.task_id == self.epoch
        if name == "batch":
            return context.parent.task_id == self.epoch and context.task_id == self.batch
        if name == "lbfgs-iter":
            return context.task_id == self.lbfgs
        return False


def _val_problem(rng, N=120, F=5):
    X = rng.randn(N, F)
    y = (X[:, 0] - X[:, 1] > 0).astype(int) + (X[:, 2] > 1)
    yr = X[:, 0] - 2 * X[:, 1] + 0.1 * rng.randn(N)
    return X, y, yr


def case_callbacks():
    """Callbacks and validation sets under nnc.distributed (see test_mpi.py)."""
    from nnc.callbacks import EarlyStopping
    rng = np.random.RandomState(0)
    B = 20
    X, y, yr = _val_problem(rng)
    Xv, yv, yrv = _val_problem(rng, N=41)
    mine = interleave(X.shape[0], B, SIZE)[RANK]
    vmine = slice(RANK, None, SIZE)          # uneven validation shards (21 / 20 rows)
    out = {}

    # 1. user-given validation sets: score and loss over every rank's rows equal one process
    #    scoring the union (dense net: compiled loop; CNN-free regressor: compiled too)
    def clf(b, **kw):
        return nnc.NeuralNetClassifier([Dense(8), ReLU()], max_epochs=4, batch_size=b,
                                       shuffle=False, random_state=0, dtype="float64", **kw)

    def reg(b, **kw):
        return nnc.NeuralNetRegressor([Dense(8), ReLU()], max_epochs=4, batch_size=b,
                                      shuffle=False, random_state=0, dtype="float64", **kw)

    sw_v = rng.rand(41) + 0.5
    for name, make, yy, yyv, kw in (
            ("clf_val", clf, y, yv, {}),
            ("reg_val", reg, yr, yrv, {}),
            ("clf_val_early", clf, y, yv, {"early_stopping": True, "n_iter_no_change": 2})):
        with nnc.distributed():
            dist = make(B // SIZE, **kw).fit(X[mine], yy[mine], X_val=Xv[vmine],
                                             y_val=yyv[vmine], sample_weight_val=sw_v[vmine])
        ref = make(B, **kw).fit(X, yy, X_val=np.r_[Xv[0::2], Xv[1::2]] if SIZE == 2 else Xv,
                                y_val=np.r_[yyv[0::2], yyv[1::2]] if SIZE == 2 else yyv,
                                sample_weight_val=(np.r_[sw_v[0::2], sw_v[1::2]] if SIZE == 2
                                                   else sw_v))
        out[name] = dict(compare(dist, ref), same_on_ranks=digest_equal(dist),
                         scores=rel(ref.validation_scores_, dist.validation_scores_),
                         val_loss=rel(ref.validation_loss_curve_, dist.validation_loss_curve_),
                         n_scores=[len(ref.validation_scores_), len(dist.validation_scores_)])

    # 2. a validation set on one rank only: the same clear error on every rank
    try:
        with nnc.distributed():
            kw = {"X_val": Xv, "y_val": yv} if RANK == 0 else {}
            clf(10).fit(X[mine], y[mine], **kw)
        out["val_on_one_rank"] = None
    except ValueError as exc:
        out["val_on_one_rank"] = [type(exc).__name__, str(exc)]

    # 3. an epoch-level stop asked by a callback on rank 1 only ends every rank's fit there
    est = nnc.MLPClassifier((8,), max_iter=10, batch_size=10, random_state=0)
    if RANK == SIZE - 1:
        est.set_callbacks(_StopAt(epoch=2))
    with nnc.distributed():
        est.fit(X[mine], y[mine])
    out["epoch_stop"] = dict(n_iter=est.n_iter_, t=est.t_, curve=len(est.loss_curve_),
                             same_on_ranks=digest_equal(est))

    # 4. a batch-level stop on rank 0 only (Python loop: a CNN): every rank ends that epoch after
    #    the same step, and the fit equals one process whose callback stops the same batch
    img = rng.randn(X.shape[0], 1, 5, 5)

    def cnn(b):
        return nnc.NeuralNetClassifier([Conv2D(2, 3), ReLU(), Flatten()], max_epochs=3,
                                       batch_size=b, shuffle=False, random_state=1,
                                       dtype="float64")
    dist = cnn(B // SIZE)
    stopper = _StopAt(epoch=1, batch=2)
    if RANK == 0:
        dist.set_callbacks(stopper)
    with nnc.distributed():
        dist.fit(img[mine], y[mine])
    ref = cnn(B).set_callbacks(_StopAt(epoch=1, batch=2)).fit(img, y)
    out["batch_stop"] = dict(compare(dist, ref), same_on_ranks=digest_equal(dist),
                             batch_ends=stopper.ends.get("batch") if RANK == 0 else None)

    # 5. nnc.callbacks.EarlyStopping (every rank) on the global validation loss: the same epoch
    #    and restored weights everywhere, equal to one process
    def es(b):
        return nnc.NeuralNetClassifier([Dense(16), ReLU()], max_epochs=40, batch_size=b,
                                       shuffle=False, learning_rate=0.05, random_state=0,
                                       dtype="float64").set_callbacks(
            EarlyStopping(monitor="val_loss", patience=2))
    with nnc.distributed():
        dist = es(B // SIZE).fit(X[mine], y[mine], X_val=Xv[vmine], y_val=yv[vmine])
    ref = es(B).fit(X, y, X_val=np.r_[Xv[0::2], Xv[1::2]], y_val=np.r_[yv[0::2], yv[1::2]])
    out["early_stopping_callback"] = dict(compare(dist, ref), same_on_ranks=digest_equal(dist))

    # 6. an L-BFGS iteration stop asked on rank 1 only
    est = nnc.MLPClassifier((8,), solver="lbfgs", max_iter=50, random_state=0)
    if RANK == SIZE - 1:
        est.set_callbacks(_StopAt(lbfgs=3))
    with nnc.distributed():
        est.fit(X[mine], y[mine])
    out["lbfgs_stop"] = dict(n_iter=est.n_iter_, same_on_ranks=digest_equal(est))

    # 7. a diverging fit with early_stopping: every rank keeps the best weights (scikit-learn's
    #    rule), records NaN and warns alike
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with nnc.distributed():
            est = nnc.MLPRegressor(hidden_layer_sizes=(8,), solver="sgd", momentum=0.0,
                                   learning_rate_init=1e3, early_stopping=True, max_iter=20,
                                   random_state=0).fit(X[mine], yr[mine] * 1e3)
    out["diverging"] = dict(n_iter=est.n_iter_, last_score=repr(est.validation_scores_[-1]),
                            finite=bool(np.isfinite(est.network_.params).all()),
                            same_on_ranks=digest_equal(est),
                            warned=any("training stopped" in str(w.message) for w in caught))
    report(results=out)


CASES = {"equal": case_equal, "uneven": case_uneven, "mismatch": case_mismatch,
         "die": case_failure, "kill": case_failure, "hang": case_failure,
         "interrupt": case_interrupt, "stopping": case_stopping, "self": case_self,
         "callbacks": case_callbacks}
# several cases in one launch (comma-separated, run in order: one process start-up for all)
for CASE in sys.argv[1].split(","):
    CASES[CASE]()
