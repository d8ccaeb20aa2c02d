"""The mini-batch epoch loop.

Generic path: Python drives the batches (one gather into preallocated buffers, forward, fused loss,
backward, one fused optimizer step per batch); fine when a batch costs far more than the ~20 µs of
Python around it (conv and recurrent nets).  Dense-only networks take the compiled path in
nnc._kernels._mlp, which runs the whole epoch without the GIL.

Ctrl-C (nnc/_interrupt.py): both paths run under a deferred-SIGINT guard and stop at a batch
boundary, raising ``EpochInterrupted`` (a KeyboardInterrupt) that says how many samples the applied
batches held and their mean loss (all n samples when the signal came during the last batch); the
weights and the optimizer's step count then describe exactly those batches.  Both paths notice the
signal after the batch in progress (the check is one flag read per batch).

A loss that is not finite stops the epoch before that batch's update with ``NonFiniteEpoch`` (a
FloatingPointError saying how many samples the applied batches held and the loss found).

Batch callbacks (``on_batch``, the estimators' batch tasks, nnc/_estimators/_callbacks.py) run
on the generic path only: ``on_batch.begin()`` before a batch and ``on_batch.end(n_done)``
after it; ``end`` returning True ends the epoch there (the epoch loss is then the mean over the
samples done, and ``on_batch.n_done`` says how many).  The compiled path never calls Python per
batch, so ``compiled_epoch(net, optimizer)`` tells the estimators which path an epoch takes.
Data-parallel epochs (``sync``, nnc/_distributed.py) run the hooks once per step on every rank
and agree on a stop inside the step's gradient allreduce (``_python_epoch_synced``).
"""
import numpy as np

from nnc import _mlp_fast
from nnc._interrupt import EpochInterrupted, deferred_sigint
from nnc._kernels import _optim

__all__ = ["run_epoch", "compiled_epoch", "NonFiniteEpoch"]


class NonFiniteEpoch(FloatingPointError):
    """The loss of a batch was not finite: the epoch stopped before that batch's update, after
    ``n_samples`` samples in whole batches; ``loss`` is the non-finite batch loss."""

    def __init__(self, message, n_samples, loss):
        super().__init__(message)
        self.n_samples = int(n_samples)
        self.loss = float(loss)


def compiled_epoch(net, optimizer):
    """True when ``run_epoch(net, ..., optimizer)`` takes the compiled whole-epoch path."""
    return _mlp_fast.select(net, optimizer) is not None


def _gather_buffers(net, X, y, sample_weight, batch_size):
    key = (batch_size, X.shape[1:], y.shape[1:], y.dtype, sample_weight is not None)
    bufs = getattr(net, "_ws_gather", None)
    if bufs is None or bufs[0] != key:
        bufs = (key,
                np.empty((batch_size,) + X.shape[1:], dtype=X.dtype),
                np.empty((batch_size,) + y.shape[1:], dtype=y.dtype),
                None if sample_weight is None else np.empty(batch_size, dtype=X.dtype))
        net._ws_gather = bufs
    return bufs[1:]


def _batch(X, y, sample_weight, indices, start, stop, Xg, yg, swg):
    """Rows start:stop of the epoch's order: views of X, y, sample_weight when `indices` is None,
    else gathered into the preallocated buffers Xg, yg, swg (``_gather_buffers``)."""
    if indices is None:
        return (X[start:stop], y[start:stop],
                None if sample_weight is None else sample_weight[start:stop])
    idx = indices[start:stop]
    m = stop - start
    Xb, yb = Xg[:m], yg[:m]
    np.take(X, idx, axis=0, out=Xb)
    np.take(y, idx, axis=0, out=yb)
    swb = None
    if sample_weight is not None:
        swb = swg[:m]
        np.take(sample_weight, idx, axis=0, out=swb)
    return Xb, yb, swb


def run_epoch(net, X, y, optimizer, batch_size, sample_weight=None, indices=None, loss_scale=1.0,
              on_batch=None, sync=None):
    n = X.shape[0]
    batch_size = int(max(1, min(batch_size, n)))
    net._ensure_batch(batch_size)
    # one copy per epoch: if a batch blows up, the weights go back to the last finite state
    snapshot = net.params.copy()
    try:
        with deferred_sigint() as guard:
            fast = _mlp_fast.select(net, optimizer)
            if fast is not None:
                loss = fast(net, X, y, optimizer, batch_size, sample_weight, indices, loss_scale,
                            guard, sync)
            elif sync is not None:
                loss = _python_epoch_synced(net, X, y, optimizer, batch_size, sample_weight,
                                            indices, loss_scale, guard, sync, on_batch)
            else:
                loss = _python_epoch(net, X, y, optimizer, batch_size, sample_weight, indices,
                                     loss_scale, guard, on_batch)
            # during the last batch (data-parallel: the estimators ask every rank at the
            # epoch boundary, so all ranks stop together)
            if sync is None and guard is not None and guard.pending is not None:
                try:
                    guard.deliver()
                except KeyboardInterrupt:
                    raise EpochInterrupted(n, loss) from None
            return loss
    except FloatingPointError:
        if not np.isfinite(net.params).all():
            net.params[...] = snapshot
        raise


def _python_epoch(net, X, y, optimizer, batch_size, sample_weight, indices, loss_scale,
                  guard=None, on_batch=None):
    n = X.shape[0]
    alpha = float(getattr(optimizer, "alpha", 0.0))
    clip = net.clip_grad_norm
    Xg, yg, swg = _gather_buffers(net, X, y, sample_weight, batch_size)
    total = 0.0
    for start in range(0, n, batch_size):
        stop = min(n, start + batch_size)
        m = stop - start
        if on_batch is not None:
            on_batch.begin()
        Xb, yb, swb = _batch(X, y, sample_weight, indices, start, stop, Xg, yg, swg)
        sw_sum = float(m) if swb is None else float(swb.sum())
        loss = loss_scale * net._batch_loss_gradient(Xb, yb, swb)
        if alpha:
            loss += alpha * net.l2_penalty() / sw_sum
        if not np.isfinite(loss):
            raise NonFiniteEpoch(
                f"the training loss became {loss} (batch starting at sample {start}); the "
                "weights are those before this batch. Lower the learning rate, scale the inputs "
                "or set clip_grad_norm.", start, loss)
        if clip:
            _optim.clip_grad_norm(net.grads, clip)
        optimizer.step(net.params, net.grads, n_decay=net.n_decay, n_samples=sw_sum)
        total += loss * m
        if on_batch is not None and on_batch.end(stop) and stop < n:
            return total / stop      # a callback ended the epoch after this batch
        if guard is not None and guard.pending is not None and stop < n:
            try:
                guard.deliver()          # Python's handler raises KeyboardInterrupt here
            except KeyboardInterrupt:
                raise EpochInterrupted(stop, total / stop) from None
    return total / n



def consume_sigint(guard):
    """Run the handler of a pending Ctrl-C without letting it raise: a data-parallel epoch stops
    on every rank together when any rank saw Ctrl-C (the ranks that saw it consume it here)."""
    if guard is not None and guard.pending is not None:
        try:
            guard.deliver()
        except KeyboardInterrupt:
            pass


def _python_epoch_synced(net, X, y, optimizer, batch_size, sample_weight, indices, loss_scale,
                         guard, sync, on_batch=None):
    """One data-parallel epoch driven from Python (convolutional and recurrent networks).

    Step s: this rank's rows s*B .. s*B+B-1 (possibly none); the local mean loss and gradient,
    scaled by (local weight sum / W_s), are this rank's share of the step's global mean
    (``sync.plan``); ONE in-place allreduce of the gradient buffer with its two trailing slots
    (loss share, flags); then the same loss check, clipping and optimizer step on every rank
    (see nnc/_distributed.py).  Returns the global epoch loss.

    Batch hooks (``on_batch``): every rank runs one batch task per step (also for an empty
    batch of an exhausted shard, so every rank counts the same n_steps tasks); ``begin()``
    before the rank's share of the step, ``end(n_done)`` after it and BEFORE the allreduce, so
    that a stop it asks for travels in that allreduce: the flag slot holds (ranks that saw
    Ctrl-C) + (size + 1) * (ranks whose hook asked to stop).  Then every rank applies the step
    and ends the epoch there (``sync.n_done``: the global samples done; the ranks without
    hooks have no ``on_batch``), as one process
    ends it after the batch whose hook asked.  Ctrl-C on any rank wins over a stop."""
    n = X.shape[0]
    alpha = float(getattr(optimizer, "alpha", 0.0))
    clip = net.clip_grad_norm
    plan = sync.plan
    Xg, yg, swg = _gather_buffers(net, X, y, sample_weight, batch_size)
    buf = net._grads_buf
    P = net.params.shape[0]
    grads = net.grads
    base = float(sync.comm.size + 1)       # flag slot: Ctrl-C count + base * stop count
    total = 0.0
    done = 0.0
    for step in range(sync.n_steps):
        start = step * batch_size
        stop = min(n, start + batch_size)
        m = max(0, stop - start)
        W, M = float(plan[2 * step]), float(plan[2 * step + 1])
        part = 0.0
        local = 0.0
        if on_batch is not None:
            on_batch.begin()
        if m:
            Xb, yb, swb = _batch(X, y, sample_weight, indices, start, stop, Xg, yg, swg)
            local = float(m) if swb is None else float(swb.sum(dtype=np.float64))
        if local > 0:
            share = local / W
            part = share * loss_scale * float(net._batch_loss_gradient(Xb, yb, swb))
            grads *= grads.dtype.type(share)
        else:
            grads[...] = 0
        asked = on_batch is not None and bool(on_batch.end(int(done + M)))
        buf[P] = part
        buf[P + 1] = (1.0 if (guard is not None and guard.pending is not None) else 0.0) \
            + (base if asked else 0.0)
        sync.comm.allreduce_grads(buf)
        loss = float(buf[P])
        flags = int(round(float(buf[P + 1])))
        if alpha:
            loss += alpha * net.l2_penalty() / W
        if not np.isfinite(loss):
            raise NonFiniteEpoch(
                f"the training loss became {loss} (step {step}, over every rank); the weights "
                "are those before this step. Lower the learning rate, scale the inputs or set "
                "clip_grad_norm.", done, loss)
        if clip:
            _optim.clip_grad_norm(grads, clip)
        optimizer.step(net.params, grads, n_decay=net.n_decay, n_samples=W)
        total += loss * M
        done += M
        if flags and step + 1 < sync.n_steps:
            if flags % int(base):             # Ctrl-C on some rank
                consume_sigint(guard)
                raise EpochInterrupted(done, total / done)
            sync.n_done = int(done)           # a hook on some rank ended the epoch here
            if on_batch is not None:
                on_batch.n_done = int(done)
            return total / done
    return total / sync.n_total
