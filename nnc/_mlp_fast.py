"""Fast paths for dense networks: a whole training epoch, or a whole forward pass, in one nogil call.

``select(net, optimizer)`` returns ``epoch(net, X, y, optimizer, batch_size, sample_weight,
indices, loss_scale) -> epoch loss`` when the network is made only of Dense and activation layers
(Identity, Sigmoid, Tanh, ReLU, LeakyReLU, exact classes, any arrangement Sequential allows) and
the optimizer is one of nnc's (its ``step`` not overridden); otherwise None, and
``nnc._trainer.run_epoch`` drives the generic Python loop.  ``forward_fn(net)`` returns a callable
``fn(X, out)`` for inference (or None).  ``nnc.set_config(fast_path=False)`` (or
NNC_DISABLE_FAST_PATH=1 in the environment when nnc is imported) turns both off.

Everything the kernels will read is validated here and again in the Cython twins (shapes, dtypes,
contiguity, index and label ranges), so a kernel never reads or writes out of bounds.  The plan
(one row of ``_mlp.NCOL`` ints per layer, see nnc/_kernels/_mlp.pyx) is built once per network and
cached on it as ``_ws_mlp_plan``; training workspaces once per batch size (``_ws_mlp_train``);
the forward callables as ``_ws_forward`` / ``_ws_forward_copy``.  All ``_ws*`` attributes are
dropped on pickling.
"""
import numpy as np

from nnc._config import _LOCAL as _CONFIG
from nnc._interrupt import EpochInterrupted
from nnc._kernels import _mlp
from nnc.layers._dense import Dense
from nnc.layers._activations import Identity, Sigmoid, Tanh, ReLU, LeakyReLU
from nnc.layers._reshape import Flatten

__all__ = ["select", "forward_fn", "enabled"]

#: exact layer classes the compiled loop implements (subclasses may change behaviour: no)
_ACTIVATION_CLASSES = (Identity, Sigmoid, Tanh, ReLU, LeakyReLU)
#: predictions are computed this many rows at a time (as Sequential.forward does)
_FORWARD_CHUNK = 4096
#: slots of the compiled loop's result array
_TOTAL, _T, _DONE, _LOSS, _START = (_mlp.RESULT_SLOTS[k]
                                    for k in ("total", "t", "done", "loss", "start"))


def enabled():
    """The calling thread's ``fast_path`` config (``nnc.set_config``): one attribute read of a
    threading.local, as cheap as the environment lookup it replaced."""
    return _CONFIG.fast_path


# ---------------------------------------------------------------------- the plan

class _Plan:
    """The network compiled to a layer table.

    desc (L, NCOL) int64, slopes (L,) in the network dtype, F0 input width, K outputs,
    units = row units of the layer-output workspace, maxw = widest layer (delta buffers)."""

    __slots__ = ("params", "desc", "slopes", "F0", "K", "units", "maxw")


def _param_offset(view, params):
    """Element offset of `view` inside the flat `params`, or None when it does not alias it."""
    base = params.__array_interface__["data"][0]
    addr = view.__array_interface__["data"][0]
    off, rem = divmod(addr - base, params.itemsize)
    if rem or off < 0 or off + view.size > params.size or not view.flags.c_contiguous:
        return None
    return off


def _build_plan(net):
    if not net.built:
        return None
    layers = net.layers
    params = net.params
    rows = []
    slopes = []
    units = 0
    prev_out = -1
    seen_dense = False
    # C-contiguous samples of any shape are rows of prod(shape) values: Flatten (a view) and the
    # element-wise activations work on them as they are; a Dense on multi-dimensional samples
    # (position-wise on sequences) is left to the generic loop.
    width = int(np.prod(net.input_shape))
    producer = None          # the last layer that is not a Flatten (Flatten is a pure view)
    for i, layer in enumerate(layers):
        cls = type(layer)
        F = width
        if cls is Flatten:
            continue
        if cls is Dense:
            if len(layer.params) != 2 or len(layer.input_shape) != 1:
                return None         # Dense on sequences (position-wise): the generic loop
            W, b = layer.params
            U = layer.units
            w_off = _param_offset(W, params)
            b_off = _param_offset(b, params)
            if w_off is None or b_off is None or W.shape != (F, U) or b.shape != (U,):
                return None
            out = units
            units += U
            rows.append((_mlp.KIND_DENSE, 0, F, U, w_off, b_off, prev_out, out, int(seen_dense)))
            slopes.append(0.0)
            seen_dense = True
        elif cls in _ACTIVATION_CLASSES:
            U = F
            # in place exactly where Sequential runs it in place: right after a Dense (seen
            # through Flatten views, whose output is reusable exactly when their input is)
            if producer is not None and type(producer) is Dense:
                out = prev_out
            else:
                out = units
                units += U
            rows.append((_mlp.KIND_ACT, int(layer._code), F, U, -1, -1, prev_out, out,
                         int(seen_dense)))
            slopes.append(float(layer._slope()))
        else:
            return None
        producer = layer
        prev_out = out
        width = U
    if not seen_dense or net.output_shape != (width,):
        return None
    plan = _Plan()
    plan.params = params
    plan.desc = np.array(rows, dtype=np.int64).reshape(len(rows), _mlp.NCOL)
    plan.slopes = np.array(slopes, dtype=net.dtype)
    plan.F0 = int(np.prod(net.input_shape))
    plan.K = int(width)
    plan.units = int(units)
    plan.maxw = int(_mlp.check_plan(plan.desc, params.size, plan.F0, plan.K, plan.units))
    return plan


def _get_plan(net):
    """The cached plan of `net` (rebuilt when the parameter buffer changed), or None."""
    cached = net.__dict__.get("_ws_mlp_plan")
    if cached is not None and cached[0] is net.params:
        return cached[1]
    plan = _build_plan(net) if net.built else None
    if net.built:
        net._ws_mlp_plan = (net.params, plan)
    return plan


# ---------------------------------------------------------------------- training

def _optimizer_supported(optimizer):
    from nnc.optimizers import Optimizer, SGD, AdaGrad, RMSprop, Adam
    return (isinstance(optimizer, (SGD, AdaGrad, RMSprop, Adam))
            and type(optimizer).step is Optimizer.step
            and type(optimizer)._kernel_config is Optimizer._kernel_config)


def select(net, optimizer):
    """The compiled epoch function for (net, optimizer), or None when unsupported/disabled."""
    if not enabled() or not _optimizer_supported(optimizer):
        return None
    clip = net.clip_grad_norm
    if clip and not (isinstance(clip, (int, float, np.floating)) and clip > 0):
        return None          # the generic loop reports the bad value
    if _get_plan(net) is None:
        return None
    return train_epoch


def _train_buffers(net, plan, batch_size, float_targets, dtype):
    key = (plan.params, batch_size, float_targets)
    cached = net.__dict__.get("_ws_mlp_train")
    if cached is not None and cached[0][0] is key[0] and cached[0][1:] == key[1:]:
        return cached[1]
    B = batch_size
    bufs = {
        "ws": np.empty(B * plan.units, dtype=dtype),
        "D": np.empty((2, B * plan.maxw), dtype=dtype),
        "Xg": np.empty((B, plan.F0), dtype=dtype),
        "Yg": np.empty((B, plan.K), dtype=dtype) if float_targets else None,
        "labg": None if float_targets else np.empty(B, dtype=np.int32),
        "swg": np.empty(B, dtype=dtype),
        "result": np.zeros(_mlp.N_RESULT, dtype=np.float64),
    }
    net._ws_mlp_train = (key, bufs)
    return bufs


def _check_array(a, name, dtype, shape):
    if not isinstance(a, np.ndarray) or a.dtype != dtype or a.shape != shape \
            or not a.flags.c_contiguous:
        got = f"{a.dtype} {a.shape}" if isinstance(a, np.ndarray) else type(a).__name__
        raise ValueError(f"{name} must be a C-contiguous {np.dtype(dtype).name} array of shape "
                         f"{shape} (validated as Sequential does), got {got}")


def train_epoch(net, X, y, optimizer, batch_size, sample_weight=None, indices=None,
                loss_scale=1.0, guard=None, sync=None):
    """One compiled epoch; same contract and result as ``nnc._trainer.run_epoch``.

    guard: nnc._interrupt's deferred-SIGINT guard (main thread), or None: with it the loop stops
    after the batch in progress on Ctrl-C and ``guard.deliver()`` runs there (EpochInterrupted
    when it raises; training resumes at the next batch when it does not).
    sync: a data-parallel epoch (``nnc._distributed.EpochSync``): every step ends with one
    allreduce of ``net._grads_buf`` called from the compiled loop; Ctrl-C on any rank stops
    every rank after the same step (EpochInterrupted; the handler runs but cannot resume)."""
    plan = _get_plan(net)
    if plan is None:
        raise ValueError("this network has no compiled training loop")
    dtype = net.dtype
    n = X.shape[0] if isinstance(X, np.ndarray) and X.ndim >= 1 else -1
    _check_array(X, "X", dtype, (n,) + tuple(net.input_shape))
    X = X.reshape(n, plan.F0)                  # a view: X is C-contiguous
    B = int(max(1, min(int(batch_size), n)))
    loss = net._loss
    if loss.integer_targets:
        _check_array(y, "y", np.int32, (n,))
        Y, labels = None, y
    else:
        _check_array(y, "y", dtype, (n, plan.K))
        Y, labels = y, None
    if sample_weight is not None:
        _check_array(sample_weight, "sample_weight", dtype, (n,))
    if indices is not None:
        indices = np.asarray(indices)
        if indices.ndim != 1 or indices.shape[0] != n or indices.dtype.kind not in "iu":
            raise ValueError(f"indices must be a 1-D integer array of length {n}")
        indices = np.ascontiguousarray(indices, dtype=np.int64)
        if n and indices.min() < 0:          # np.take semantics: negative counts from the end
            indices = np.where(indices < 0, indices + n, indices)
    clip = float(net.clip_grad_norm) if net.clip_grad_norm else 0.0
    bufs = _train_buffers(net, plan, B, Y is not None, dtype)
    s1, s2 = optimizer._kernel_state(net.params)
    result = bufs["result"]
    if sync is not None:
        return _train_epoch_synced(net, plan, X, Y, labels, sample_weight, indices, B, loss,
                                   loss_scale, clip, bufs, s1, s2, optimizer, guard, sync)
    start = 0
    while True:
        config = optimizer._kernel_config(1.0, net.n_decay)
        result[_T] = -1.0
        try:
            status = _mlp.train_epoch(
                plan.desc, plan.slopes, X, Y, labels, sample_weight, indices, B, net.params,
                net.grads, s1, s2, config, int(loss.code), float(loss_scale), clip, bufs["ws"],
                bufs["D"], bufs["Xg"], bufs["Yg"], bufs["labg"], bufs["swg"], result, start,
                guard is not None)
        finally:
            if result[_T] >= 0:          # the loop ran: its steps are applied, count them
                optimizer._kernel_sync(int(result[_T]))
        if status != _mlp.STATUS_INTERRUPTED:
            break
        start = int(result[_DONE])
        try:
            guard.deliver()              # Python's handler raises KeyboardInterrupt here
        except KeyboardInterrupt:
            raise EpochInterrupted(start, result[_TOTAL] / start) from None
    if status == _mlp.STATUS_NONFINITE:
        from nnc._trainer import NonFiniteEpoch      # (the trainer imports this module)
        raise NonFiniteEpoch(
            f"the training loss became {result[1]} (batch starting at sample {int(result[2])}); "
            "the weights are those before this batch. Lower the learning rate, scale the inputs "
            "or set clip_grad_norm.", int(result[2]), result[1])
    if status == _mlp.STATUS_ZERO_WEIGHT:
        raise ValueError(f"loss_gradient: sample_weight must have a positive finite sum, "
                         f"got {result[1]}")
    return float(result[0]) / n


def _train_epoch_synced(net, plan, X, Y, labels, sample_weight, indices, B, loss, loss_scale,
                        clip, bufs, s1, s2, optimizer, guard, sync):
    """The data-parallel compiled epoch (``_mlp.train_epoch`` with a plan and an allreduce)."""
    from nnc._trainer import consume_sigint
    result = bufs["result"]
    buf = net._grads_buf
    hook = sync.hook(buf)
    config = optimizer._kernel_config(1.0, net.n_decay)
    result[_T] = -1.0
    try:
        status = _mlp.train_epoch(
            plan.desc, plan.slopes, X, Y, labels, sample_weight, indices, B, net.params, buf,
            s1, s2, config, int(loss.code), float(loss_scale), clip, bufs["ws"], bufs["D"],
            bufs["Xg"], bufs["Yg"], bufs["labg"], bufs["swg"], result, 0, guard is not None,
            sync.plan, hook)
    finally:
        if result[_T] >= 0:
            optimizer._kernel_sync(int(result[_T]))
    if status == _mlp.STATUS_INTERRUPTED:
        consume_sigint(guard)
        done = result[_DONE]
        raise EpochInterrupted(done, result[_TOTAL] / done)
    if status == _mlp.STATUS_COMM_ERROR:
        hook._check(int(result[_LOSS]))     # raises the allreduce's error
        raise RuntimeError(f"the allreduce failed with code {int(result[_LOSS])}")
    if status == _mlp.STATUS_NONFINITE:
        from nnc._trainer import NonFiniteEpoch      # (the trainer imports this module)
        raise NonFiniteEpoch(
            f"the training loss became {result[_LOSS]} (step {int(result[_START])}, over every "
            "rank); the weights are those before this step. Lower the learning rate, scale the "
            "inputs or set clip_grad_norm.", int(result[_DONE]), result[_LOSS])
    return float(result[_TOTAL]) / sync.n_total


# ---------------------------------------------------------------------- inference

def forward_fn(net, params=None):
    """A callable ``fn(X, out)`` (X C-contiguous (n, *input_shape) of the network dtype, out (n, K))
    computing the whole forward pass in compiled code with the weights in ``params`` (default
    ``net.params``; or a copy with the same layout, see ``Sequential._begin_update``), or None
    when unsupported/disabled.  Cached per buffer: one slot for ``net.params``, one for a copy."""
    if not enabled():
        return None
    live = net.params
    if params is None or params is live:
        params, slot = live, "_ws_forward"
    else:
        slot = "_ws_forward_copy"
    cached = net.__dict__.get(slot)
    if cached is not None and cached[0] is params:
        return cached[1]
    plan = _get_plan(net)
    fn = None
    if plan is not None:
        fn = _mlp.DenseForward(plan.desc, plan.slopes, params, plan.F0, plan.K, plan.units,
                               _FORWARD_CHUNK)
    net.__dict__[slot] = (params, fn)
    return fn
