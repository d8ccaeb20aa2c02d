"""Compiled whole-epoch training loop and forward pass for dense networks.

Why: a dense network's mini-batch step is a handful of small GEMMs (about 11 us in total for a
30-64-64-1 net at batch 32); driving it from Python (gather, forward, loss, backward, optimizer:
dozens of Python-to-Cython crossings of 0.4-0.7 us each) would cost more than the arithmetic.  Here
one nogil call runs the whole epoch; Python is touched once per epoch (nnc/_mlp_fast.py validates
and builds the plan).  The loop calls exactly the kernels of the generic path (``_dense``,
``_activations``, ``_losses``, ``_optim``) in the same order, so both paths give the same numbers.

Dimensions: N samples in the epoch, B batch size, m rows of the current batch (m <= B),
F0 input features, F / U a layer's input / output width, K outputs (logits), P parameters.

The plan (``desc``, int64 (L, NCOL), one row per layer, built by nnc/_mlp_fast.py):

* COL_KIND   KIND_DENSE or KIND_ACT;     COL_ACT  activation code (``_activations``)
* COL_F, COL_U  per-sample input / output widths (F == U for activations)
* COL_W, COL_B  offsets of W (F, U) and b (U,) in the flat params / grads (dense only)
* COL_IN, COL_OUT  offsets in ROW UNITS of the layer's input / output in the workspace ``ws``:
  the buffer starts at ``ws + rows * offset`` and holds (rows, width); COL_IN = -1 is the batch
  input.  An activation right after a Dense runs in place (COL_OUT == COL_IN) as Sequential does.
* COL_BACK   1 when the layer's backward must run below the top: an earlier layer has parameters
  (Dense: compute dX; activation: apply f').  The first Dense skips dX.

Buffers written: ``ws`` (layer outputs), ``D`` (2, B * maxw): ping-pong gradients w.r.t. layer
outputs (D[0] receives the loss gradient), the gather buffers ``Xg`` (B, F0), ``Yg`` (B, K),
``labg`` (B,), ``swg`` (B,), params / grads / optimizer state in place, and ``result_out``.
Element-wise passes are serial: at these sizes (a few thousand elements per pass) an OpenMP
barrier costs more than the pass; the GEMMs use BLAS's own threads.  The epoch runs in
flush-to-zero mode (``nnc_ftz_enter`` below): results differ from the generic loop's only where
a value would be subnormal.

Measured (2-core AMD EPYC, 1 thread, float32, Adam): a 30-64-64-1 net at batch 32 costs ~19 us per
batch, of which the GEMMs ~11 us and the Adam pass ~3.5 us; a 784-256-128-10 net at batch 128
~1.66 ms per batch against ~1.43 ms for its GEMMs alone.

Ctrl-C: without the GIL Python's SIGINT handler cannot run before the call returns (a long epoch
took 10.6 s to notice it).  With ``poll`` set (the caller holds nnc._interrupt's deferred-SIGINT
guard, so it is the main thread) a C handler is installed for the duration of the nogil call: it
sets a flag and chains to the handler it replaced (Python's, which records the signal for the
guard).  The loop reads the flag after every batch (one load of a volatile int: free) and returns
STATUS_INTERRUPTED after the batch in progress, its update applied and counted; the caller resumes
with ``start`` when the Python handler decides not to stop.  The handler goes through
``PyOS_setsig`` (sigaction on POSIX, the CRT's ``signal`` on Windows, where the CRT resets a handler
before calling it, so ours re-installs itself).  ``result_out[RES_DONE]`` counts the samples done
so far, updated after every batch.
"""
cimport numpy as cnp
from cpython.exc cimport PyErr_CheckSignals
from libc.string cimport memcpy, memset
from libc.math cimport isfinite

from nnc._kernels._blas cimport floating, _dot, blas_int
from nnc._kernels._dense cimport _dense_forward, _dense_backward
from nnc._kernels._activations cimport _activation_forward, _activation_backward
from nnc._kernels._losses cimport _loss_gradient, LOSS_SOFTMAX_CE, LOSS_POISSON
from nnc._kernels._optim cimport OptimConfig, _optimizer_step, _clip_grad_norm, OPT_SGD, OPT_ADAM
from nnc._kernels._sizes cimport _checked_mul, _checked_add
from nnc._kernels._comm cimport Allreduce, allreduce_fn

import numpy as np

cnp.import_array()

ctypedef cnp.int64_t i64

# Flush-to-zero / denormals-are-zero for the duration of one compiled epoch (x86 MXCSR, restored
# afterwards; a no-op elsewhere).  Why: when ReLU units die, Adam's first moment of their weights
# decays by beta_1 per step into the subnormal range (then the second moment, by beta_2), where
# every float32 operation costs extra.  Measured: 784-256-128-10 relu net on random labels, batch
# 128, float32: after 2 epochs 115k-179k of 235k moments were subnormal and the epoch took 7%
# longer (0.75 -> 0.80 s); an Adam step on all-subnormal moments is 1.8-2.6x slower.  Only values
# below 1.2e-38 (float32) / 2.2e-308 (float64) change, by less than that: far below any update.
cdef extern from *:
    """
    #if defined(__SSE2__) || defined(_M_X64) || (defined(_M_IX86_FP) && _M_IX86_FP >= 2)
    #include <xmmintrin.h>
    static unsigned int nnc_ftz_enter(void) {
        unsigned int old = _mm_getcsr();
        _mm_setcsr(old | 0x8040u);   /* FTZ (bit 15) | DAZ (bit 6) */
        return old;
    }
    static void nnc_ftz_leave(unsigned int old) { _mm_setcsr(old); }
    #else
    static unsigned int nnc_ftz_enter(void) { return 0u; }
    static void nnc_ftz_leave(unsigned int old) { (void)old; }
    #endif
    """
    unsigned int nnc_ftz_enter() noexcept nogil
    void nnc_ftz_leave(unsigned int old) noexcept nogil

# SIGINT flag for the compiled epoch (see the module docstring).  Install / restore run with the
# GIL on the main thread only; the handler itself only stores to a volatile sig_atomic_t and calls
# the handler it replaced (Python's C-level handler, written to run in a signal handler).
cdef extern from *:
    """
    #include <signal.h>
    static volatile sig_atomic_t nnc_sigint_flag = 0;
    static PyOS_sighandler_t nnc_sigint_previous = NULL;

    static void nnc_sigint_handler(int sig) {
        PyOS_sighandler_t previous = nnc_sigint_previous;
        nnc_sigint_flag = 1;
        if (previous != NULL && previous != SIG_DFL && previous != SIG_IGN && previous != SIG_ERR
                && previous != nnc_sigint_handler)
            previous(sig);
    #if defined(_WIN32)
        signal(sig, nnc_sigint_handler);   /* the CRT reset it to SIG_DFL before the call */
    #endif
    }
    /* 1 when installed; 0 when SIGINT is ignored / default / not a function (left alone) */
    static int nnc_sigint_install(void) {
        PyOS_sighandler_t previous = PyOS_getsig(SIGINT);
        if (previous == NULL || previous == SIG_DFL || previous == SIG_IGN || previous == SIG_ERR
                || previous == nnc_sigint_handler)
            return 0;
        nnc_sigint_flag = 0;
        nnc_sigint_previous = previous;
        if (PyOS_setsig(SIGINT, nnc_sigint_handler) == SIG_ERR)
            return 0;
        return 1;
    }
    static void nnc_sigint_restore(void) {
        PyOS_setsig(SIGINT, nnc_sigint_previous);
        nnc_sigint_previous = NULL;
    }
    static int nnc_sigint_pending(void) { return nnc_sigint_flag != 0; }
    """
    int nnc_sigint_install()
    void nnc_sigint_restore()
    int nnc_sigint_pending() noexcept nogil

cdef enum:
    COL_KIND = 0
    COL_ACT = 1
    COL_F = 2
    COL_U = 3
    COL_W = 4
    COL_B = 5
    COL_IN = 6
    COL_OUT = 7
    COL_BACK = 8
    NCOL_ = 9

cdef enum:
    KIND_DENSE_ = 0
    KIND_ACT_ = 1

cdef enum:
    STATUS_OK_ = 0
    STATUS_NONFINITE_ = 1
    STATUS_ZERO_WEIGHT_ = 2
    STATUS_INTERRUPTED_ = 3
    STATUS_COMM_ERROR_ = 4

NCOL = NCOL_
#: Python names of the plan columns
COLUMNS = {"kind": COL_KIND, "act": COL_ACT, "F": COL_F, "U": COL_U, "W": COL_W, "b": COL_B,
           "in": COL_IN, "out": COL_OUT, "back": COL_BACK}
KIND_DENSE = KIND_DENSE_
KIND_ACT = KIND_ACT_
STATUS_OK = STATUS_OK_
STATUS_NONFINITE = STATUS_NONFINITE_
STATUS_ZERO_WEIGHT = STATUS_ZERO_WEIGHT_
STATUS_INTERRUPTED = STATUS_INTERRUPTED_
STATUS_COMM_ERROR = STATUS_COMM_ERROR_
#: trailing slots of the gradient buffer in data-parallel epochs: loss share, Ctrl-C flag
SYNC_TAIL = 2
_N_ACT = 5          # activation codes 0..4 (``_activations``)

# result_out slots of train_epoch
cdef enum:
    RES_TOTAL = 0       # sum over applied batches of batch_loss * m (input too when resuming)
    RES_LOSS = 1        # loss of the failing batch (status != OK)
    RES_START = 2       # first sample index of the failing batch
    RES_T = 3           # optimizer step counter after the epoch (OptimConfig.t)
    RES_DONE = 4        # samples of the epoch done (applied batches), updated after every batch
    N_RESULT_ = 5

N_RESULT = N_RESULT_
RESULT_SLOTS = {"total": RES_TOTAL, "loss": RES_LOSS, "start": RES_START, "t": RES_T,
                "done": RES_DONE}


# ---------------------------------------------------------------- numpy-identical sum

cdef floating _pairwise_sum(const floating* a, Py_ssize_t n) noexcept nogil:
    """NumPy's pairwise summation (``np.add.reduce`` on a contiguous array), bit for bit.

    The generic loop passes ``float(sw.sum())`` to the L2 term and the optimizer; this reproduces
    that number (in the array's own type) so both loops agree to the last bit."""
    cdef Py_ssize_t i, n2
    cdef floating res
    cdef floating r[8]
    if n < 8:
        res = 0
        for i in range(n):
            res = res + a[i]
        return res
    elif n <= 128:
        for i in range(8):
            r[i] = a[i]
        i = 8
        while i < n - (n % 8):
            r[0] += a[i]
            r[1] += a[i + 1]
            r[2] += a[i + 2]
            r[3] += a[i + 3]
            r[4] += a[i + 4]
            r[5] += a[i + 5]
            r[6] += a[i + 6]
            r[7] += a[i + 7]
            i += 8
        res = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]))
        while i < n:
            res = res + a[i]
            i += 1
        return res
    else:
        n2 = n // 2
        n2 -= n2 % 8
        return _pairwise_sum(a, n2) + _pairwise_sum(a + n2, n - n2)


# ---------------------------------------------------------------- forward / backward

cdef floating* _forward(const i64* desc, const floating* slopes, Py_ssize_t L,
                        const floating* X, const floating* params, floating* ws,
                        Py_ssize_t rows, Py_ssize_t m) noexcept nogil:
    """Run every layer on m rows of X (m, F0); returns the last output (m, K) inside ws.

    ws holds buffers of `rows` rows (offsets in row units), rows >= m."""
    cdef Py_ssize_t i, U
    cdef const i64* d
    cdef const floating* inp
    cdef floating* out = NULL
    for i in range(L):
        d = desc + i * NCOL_
        inp = X if d[COL_IN] < 0 else ws + rows * d[COL_IN]
        out = ws + rows * d[COL_OUT]
        U = d[COL_U]
        if d[COL_KIND] == KIND_DENSE_:
            _dense_forward(inp, params + d[COL_W], params + d[COL_B], out, m, d[COL_F], U)
        else:
            if out != inp:
                memcpy(out, inp, m * U * sizeof(floating))
            _activation_forward(<int>d[COL_ACT], out, m * U, slopes[i])
    return out


cdef void _backward(const i64* desc, const floating* slopes, Py_ssize_t L,
                    const floating* X, const floating* params, floating* grads, floating* ws,
                    Py_ssize_t rows, Py_ssize_t m, floating* d0, floating* d1) noexcept nogil:
    """Backward from d0 (m, K) = d(loss)/d(logits): overwrite grads; d0/d1 are scratch."""
    cdef Py_ssize_t i
    cdef const i64* d
    cdef const floating* inp
    cdef floating* cur = d0
    cdef floating* other = d1
    cdef floating* tmp
    for i in range(L - 1, -1, -1):
        d = desc + i * NCOL_
        if d[COL_KIND] == KIND_DENSE_:
            inp = X if d[COL_IN] < 0 else ws + rows * d[COL_IN]
            _dense_backward(inp, params + d[COL_W], cur, grads + d[COL_W], grads + d[COL_B],
                            other if d[COL_BACK] else <floating*>NULL, m, d[COL_F], d[COL_U])
            if not d[COL_BACK]:
                return
            tmp = cur
            cur = other
            other = tmp
        else:
            if not d[COL_BACK]:
                return
            _activation_backward(<int>d[COL_ACT], ws + rows * d[COL_OUT], cur, m * d[COL_U],
                                 slopes[i])


# ---------------------------------------------------------------- the epoch

cdef inline void _gather(const floating* X, const floating* Y, const int* labels,
                         const floating* sw, const i64* idx, Py_ssize_t start, Py_ssize_t m,
                         Py_ssize_t F0, Py_ssize_t K, floating* Xg, floating* Yg, int* labg,
                         floating* swg, const floating** Xb, const floating** Yb,
                         const int** labb, const floating** swb) noexcept nogil:
    """The batch of rows start..start+m of the visiting order: copied into the leading rows of
    the gather buffers (idx given), or contiguous slices of the inputs.  Outputs the pointers
    Xb, Yb, labb, swb (left as they are for inputs that are NULL)."""
    cdef Py_ssize_t r, k, row
    cdef size_t xrow = F0 * sizeof(floating)
    if idx != NULL:
        for r in range(m):
            row = idx[start + r]
            memcpy(Xg + r * F0, X + row * F0, xrow)
        Xb[0] = Xg
        if labels != NULL:
            for r in range(m):
                labg[r] = labels[idx[start + r]]
            labb[0] = labg
        if Y != NULL:
            for r in range(m):
                row = idx[start + r]
                for k in range(K):
                    Yg[r * K + k] = Y[row * K + k]
            Yb[0] = Yg
        if sw != NULL:
            for r in range(m):
                swg[r] = sw[idx[start + r]]
            swb[0] = swg
    else:
        Xb[0] = X + start * F0
        if labels != NULL:
            labb[0] = labels + start
        if Y != NULL:
            Yb[0] = Y + start * K
        if sw != NULL:
            swb[0] = sw + start

cdef inline int _epoch_end(double* result_out, double total, double loss, double start,
                           double t, int status) noexcept nogil:
    """Record where an epoch ended (the loss sum so far, the failing loss or 0, the sample or
    step it stopped at (-1: it finished), the optimizer's step count) and return `status`."""
    result_out[RES_TOTAL] = total
    result_out[RES_LOSS] = loss
    result_out[RES_START] = start
    result_out[RES_T] = t
    return status


cdef int _train_epoch(const i64* desc, const floating* slopes, Py_ssize_t L,
                      const floating* X, const floating* Y, const int* labels,
                      const floating* sw, const i64* idx,
                      Py_ssize_t N, Py_ssize_t F0, Py_ssize_t K, Py_ssize_t B,
                      floating* params, floating* grads, Py_ssize_t P,
                      floating* s1, floating* s2, OptimConfig* cfg, double alpha,
                      int loss, double loss_scale, double clip,
                      floating* ws, floating* d0, floating* d1, floating* Xg, floating* Yg,
                      int* labg, floating* swg, double* result_out, Py_ssize_t start,
                      int poll) noexcept nogil:
    """One epoch of mini-batch training from sample `start` (see train_epoch); returns a STATUS_*
    code.  poll: stop after a batch when the SIGINT flag is set (STATUS_INTERRUPTED)."""
    cdef Py_ssize_t m, r
    cdef const floating* Xb = NULL
    cdef const floating* Yb = NULL
    cdef const int* labb = NULL
    cdef const floating* swb = NULL
    cdef const floating* Z
    cdef double sw_sum_loss, sw_sum, batch_loss, total = result_out[RES_TOTAL]
    cdef Py_ssize_t n_decay = cfg.n_decay
    result_out[RES_DONE] = <double>start
    while start < N:
        m = min(B, N - start)
        # ---- the batch: leading rows of the gather buffers, or contiguous slices
        _gather(X, Y, labels, sw, idx, start, m, F0, K, Xg, Yg, labg, swg, &Xb, &Yb, &labb, &swb)
        # ---- batch weight: the loss kernel's double sum, and NumPy's sum for L2 / optimizer
        if swb == NULL:
            sw_sum_loss = <double>m
            sw_sum = <double>m
        else:
            sw_sum_loss = 0.0
            for r in range(m):
                sw_sum_loss += swb[r]
            if not (sw_sum_loss > 0.0 and isfinite(sw_sum_loss)):
                return _epoch_end(result_out, total, sw_sum_loss, start, cfg.t,
                                  STATUS_ZERO_WEIGHT_)
            sw_sum = <double>_pairwise_sum(swb, m)
        # ---- forward, fused loss + d(logits), L2 term
        Z = _forward(desc, slopes, L, Xb, params, ws, B, m)
        batch_loss = loss_scale * _loss_gradient(loss, Z, Yb, labb, swb, sw_sum_loss, d0, m, K)
        if alpha != 0.0:
            batch_loss = batch_loss + alpha * (0.5 * <double>_dot(<blas_int>n_decay, params,
                                                                  params)) / sw_sum
        if not isfinite(batch_loss):
            return _epoch_end(result_out, total, batch_loss, start, cfg.t, STATUS_NONFINITE_)
        # ---- backward, clipping, one fused optimizer step (L2 fused with decay = alpha / sw)
        _backward(desc, slopes, L, Xb, params, grads, ws, B, m, d0, d1)
        if clip > 0.0:
            _clip_grad_norm(grads, P, clip)
        cfg.decay = alpha / sw_sum
        _optimizer_step(cfg, params, grads, s1, s2, P)
        total += batch_loss * <double>m
        start += m
        result_out[RES_DONE] = <double>start
        if poll and start < N and nnc_sigint_pending():
            return _epoch_end(result_out, total, 0.0, start, cfg.t, STATUS_INTERRUPTED_)
    return _epoch_end(result_out, total, 0.0, -1.0, cfg.t, STATUS_OK_)


cdef int _train_epoch_synced(const i64* desc, const floating* slopes, Py_ssize_t L,
                             const floating* X, const floating* Y, const int* labels,
                             const floating* sw, const i64* idx,
                             Py_ssize_t N, Py_ssize_t F0, Py_ssize_t K, Py_ssize_t B,
                             const double* plan, Py_ssize_t n_steps,
                             floating* params, floating* grads, Py_ssize_t P,
                             floating* s1, floating* s2, OptimConfig* cfg, double alpha,
                             int loss, double loss_scale, double clip,
                             floating* ws, floating* d0, floating* d1, floating* Xg,
                             floating* Yg, int* labg, floating* swg, double* result_out,
                             Py_ssize_t step, int poll, allreduce_fn reduce,
                             void* reduce_ctx) noexcept nogil:
    """One data-parallel epoch from step `step` (see train_epoch): this rank's batch s holds its
    rows s*B .. s*B+B-1 (possibly none), ``plan[2s]`` / ``plan[2s+1]`` are the sample-weight sum
    W and the row count M of step s over ALL ranks.  Per step: forward, the loss gradient
    normalised by W (so this rank's gradient and loss are its share of the global mean), backward
    into grads[:P], grads[P] <- this rank's loss share, grads[P+1] <- 1 when Ctrl-C is pending;
    ONE in-place allreduce (SUM) of grads[:P+2]; then on every rank the same global loss check,
    clipping and optimizer step.  Returns a STATUS_* code."""
    cdef Py_ssize_t m, a
    cdef const floating* Xb = NULL
    cdef const floating* Yb = NULL
    cdef const int* labb = NULL
    cdef const floating* swb = NULL
    cdef const floating* Z
    cdef double W, M, part, batch_loss, total = result_out[RES_TOTAL]
    cdef double done = result_out[RES_DONE]
    cdef Py_ssize_t n_decay = cfg.n_decay
    cdef int rc
    cdef int is_double = floating is double
    while step < n_steps:
        a = step * B
        m = N - a if N - a < B else B
        W = plan[2 * step]
        M = plan[2 * step + 1]
        if m > 0:
            _gather(X, Y, labels, sw, idx, a, m, F0, K, Xg, Yg, labg, swg, &Xb, &Yb, &labb,
                    &swb)
            Z = _forward(desc, slopes, L, Xb, params, ws, B, m)
            part = loss_scale * _loss_gradient(loss, Z, Yb, labb, swb, W, d0, m, K)
            _backward(desc, slopes, L, Xb, params, grads, ws, B, m, d0, d1)
        else:
            memset(grads, 0, P * sizeof(floating))
            part = 0.0
        grads[P] = <floating>part
        grads[P + 1] = 1 if (poll and nnc_sigint_pending()) else 0
        rc = reduce(reduce_ctx, grads, P + 2, is_double)
        if rc != 0:
            return _epoch_end(result_out, total, rc, step, cfg.t, STATUS_COMM_ERROR_)
        batch_loss = <double>grads[P]
        if alpha != 0.0:
            batch_loss = batch_loss + alpha * (0.5 * <double>_dot(<blas_int>n_decay, params,
                                                                  params)) / W
        if not isfinite(batch_loss):
            return _epoch_end(result_out, total, batch_loss, step, cfg.t, STATUS_NONFINITE_)
        if clip > 0.0:
            _clip_grad_norm(grads, P, clip)
        cfg.decay = alpha / W
        _optimizer_step(cfg, params, grads, s1, s2, P)
        total += batch_loss * M
        done += M
        step += 1
        result_out[RES_DONE] = done
        if grads[P + 1] != 0 and step < n_steps:
            return _epoch_end(result_out, total, 0.0, step, cfg.t, STATUS_INTERRUPTED_)
    return _epoch_end(result_out, total, 0.0, -1.0, cfg.t, STATUS_OK_)


# ---------------------------------------------------------------- plan validation

def check_plan(const i64[:, ::1] desc, Py_ssize_t n_params, Py_ssize_t F0, Py_ssize_t K,
               Py_ssize_t ws_units):
    """Validate a plan against the buffers it will address; returns max width (for D).

    Raises ValueError on anything that could make a kernel read or write out of bounds, or that
    breaks the chain of shapes.  ws_units: number of row units of the workspace (its length is
    rows * ws_units)."""
    cdef Py_ssize_t L = desc.shape[0], i, F, U, prev_out = -1, maxw = F0, kind
    if desc.shape[1] != NCOL_:
        raise ValueError(f"plan: desc must have {NCOL_} columns, got {desc.shape[1]}")
    if L < 1:
        raise ValueError("plan: no layers")
    if F0 < 1 or K < 1:
        raise ValueError(f"plan: F0={F0} and K={K} must be positive")
    cdef Py_ssize_t width = F0
    for i in range(L):
        kind = desc[i, COL_KIND]
        F = desc[i, COL_F]
        U = desc[i, COL_U]
        if F != width or U < 1:
            raise ValueError(f"plan: layer {i} has widths ({F}, {U}), its input is {width} wide")
        if kind == KIND_DENSE_:
            if (desc[i, COL_W] < 0 or desc[i, COL_B] < 0
                    or _checked_add(desc[i, COL_W], _checked_mul(F, U, "plan: a layer's W"),
                                    "plan: a layer's W") > n_params
                    or _checked_add(desc[i, COL_B], U, "plan: a layer's b") > n_params):
                raise ValueError(f"plan: layer {i}'s parameters lie outside the buffer")
            if desc[i, COL_OUT] == desc[i, COL_IN]:
                raise ValueError(f"plan: dense layer {i} cannot run in place")
        elif kind == KIND_ACT_:
            if F != U:
                raise ValueError(f"plan: activation layer {i} changes the width")
            if desc[i, COL_ACT] < 0 or desc[i, COL_ACT] >= _N_ACT:
                raise ValueError(f"plan: layer {i} has an unknown activation code")
            if desc[i, COL_OUT] == desc[i, COL_IN] and (
                    i == 0 or desc[i - 1, COL_KIND] != KIND_DENSE_):
                raise ValueError(f"plan: activation layer {i} may run in place only after a "
                                 "dense layer")
        else:
            raise ValueError(f"plan: layer {i} has an unknown kind {kind}")
        if desc[i, COL_IN] != prev_out:
            raise ValueError(f"plan: layer {i} does not read the previous layer's output")
        if desc[i, COL_OUT] < 0 or _checked_add(desc[i, COL_OUT], U,
                                                "plan: a layer's output") > ws_units:
            raise ValueError(f"plan: layer {i}'s output lies outside the workspace")
        prev_out = desc[i, COL_OUT]
        width = U
        maxw = max(maxw, U)
    if width != K:
        raise ValueError(f"plan: the last layer gives {width} outputs, expected K={K}")
    return maxw


# ---------------------------------------------------------------- Python twins

def train_epoch(const i64[:, ::1] desc, const floating[::1] slopes,
                const floating[:, ::1] X, const floating[:, ::1] Y, const int[::1] labels,
                const floating[::1] sample_weight, const i64[::1] indices,
                Py_ssize_t batch_size, floating[::1] params_out, floating[::1] grads_out,
                floating[::1] s1_out, floating[::1] s2_out, dict config,
                int loss, double loss_scale, double clip,
                floating[::1] ws_out, floating[:, ::1] D_out, floating[:, ::1] Xg_out,
                floating[:, ::1] Yg_out, int[::1] labg_out, floating[::1] swg_out,
                double[::1] result_out, Py_ssize_t start=0, bint poll=False,
                const double[::1] plan=None, Allreduce comm=None):
    """One epoch of mini-batch training on a dense network; returns a STATUS_* code.

    For each batch (rows indices[start:start+B], or contiguous rows when indices is None): gather,
    forward, fused loss + d(logits), L2 term alpha * 0.5 ||params[:n_decay]||^2 / sw_sum (alpha =
    config['alpha']), stop WITHOUT updating at a non-finite loss (STATUS_NONFINITE) or a batch
    whose weights sum to <= 0 (STATUS_ZERO_WEIGHT), backward, optional global gradient clipping
    (clip > 0), one fused optimizer step (``_optim``; config holds the OptimConfig fields).
    result_out (N_RESULT,) <- [sum of batch_loss * m, failing loss, failing start, final t,
    samples done].  start > 0 resumes an interrupted epoch at that sample (its running sum
    read from result_out[RES_TOTAL]).  poll (main thread only): Ctrl-C stops the epoch after
    the batch in progress (STATUS_INTERRUPTED; RES_START / RES_DONE say where), and Python's
    signal handlers run before this returns.

    Data-parallel (``comm`` given, an ``_comm.Allreduce``; see _train_epoch_synced): ``plan``
    (2 * n_steps,) holds the global sample-weight sum and row count of every step (all ranks run
    n_steps steps, a rank's batch may be empty), ``grads_out`` has SYNC_TAIL extra trailing
    slots for the in-band loss share and Ctrl-C flag, ``start`` is a STEP index, RES_DONE counts
    the global samples of the steps done, and a failed allreduce is STATUS_COMM_ERROR (its code
    in RES_LOSS).
    Every shape, offset, index and label is checked here before the nogil call."""
    cdef Py_ssize_t N = X.shape[0], F0 = X.shape[1], L = desc.shape[0], B = batch_size
    cdef Py_ssize_t P = params_out.shape[0], i, maxw, K, units
    cdef OptimConfig cfg
    cdef i64 lo, hi
    cdef int lab_lo, lab_hi
    cdef const floating* Y_ptr = NULL
    cdef const int* lab_ptr = NULL
    cdef const floating* sw_ptr = NULL
    cdef const i64* idx_ptr = NULL
    cdef floating* s1_ptr = NULL
    cdef floating* s2_ptr = NULL
    cdef int status
    cdef Py_ssize_t n_steps = 0
    cdef Py_ssize_t P_grads = P
    if N < 1 or B < 1:
        raise ValueError(f"train_epoch: need N >= 1 and batch_size >= 1, got {N}, {B}")
    if (plan is None) != (comm is None):
        raise ValueError("train_epoch: plan and comm go together (data-parallel epochs)")
    if comm is not None:
        if comm.fn == NULL:
            raise ValueError("train_epoch: comm has no allreduce function")
        if plan.shape[0] % 2 != 0 or plan.shape[0] == 0:
            raise ValueError("train_epoch: plan must hold (W, M) for every step")
        n_steps = plan.shape[0] // 2
        if _checked_mul(n_steps, B, "train_epoch: n_steps * batch_size") < N:
            raise ValueError(f"train_epoch: {n_steps} steps of {B} rows do not cover {N} rows")
        for i in range(n_steps):
            if not (plan[2 * i] > 0.0 and isfinite(plan[2 * i])) or not (plan[2 * i + 1] >= 0.0):
                raise ValueError(f"train_epoch: step {i} has weight sum {plan[2 * i]} and "
                                 f"{plan[2 * i + 1]} rows; need a positive finite sum")
        if start < 0 or start >= n_steps:
            raise ValueError(f"train_epoch: start must lie in [0, {n_steps}), got {start}")
        P_grads = P + SYNC_TAIL
    elif start < 0 or start >= N:
        raise ValueError(f"train_epoch: start must lie in [0, {N}), got {start}")
    K = desc[L - 1, COL_U] if L > 0 else 0
    if D_out.shape[0] != 2 or ws_out.shape[0] % B != 0:
        raise ValueError("train_epoch: D_out must be (2, B * maxw) and ws_out B * units long")
    units = ws_out.shape[0] // B
    maxw = check_plan(desc, P, F0, K, units)
    if slopes.shape[0] != L:
        raise ValueError("train_epoch: slopes must have one entry per layer")
    if D_out.shape[1] < _checked_mul(B, maxw, "train_epoch: B * maxw"):
        raise ValueError(f"train_epoch: D_out rows must hold {B * maxw} values")
    if grads_out.shape[0] != P_grads:
        raise ValueError(f"train_epoch: grads must hold {P_grads} values (params: {P}"
                         + (f" + {SYNC_TAIL} trailing slots)" if comm is not None else ")"))
    if result_out.shape[0] != N_RESULT_:
        raise ValueError(f"train_epoch: result_out must have {N_RESULT_} slots")
    cfg = config
    if cfg.kind < OPT_SGD or cfg.kind > OPT_ADAM:
        raise ValueError(f"train_epoch: unknown optimizer kind {cfg.kind}")
    if cfg.n_decay < 0 or cfg.n_decay > P:
        raise ValueError(f"train_epoch: n_decay={cfg.n_decay} is outside [0, {P}]")
    if cfg.t < 0:
        raise ValueError("train_epoch: t must be >= 0")
    if cfg.n_threads < 1:
        cfg.n_threads = 1
    if not (cfg.kind == OPT_SGD and cfg.momentum == 0.0):
        if s1_out is None or s1_out.shape[0] != P:
            raise ValueError(f"train_epoch: optimizer state s1_out must have length {P}")
        s1_ptr = &s1_out[0]
    if cfg.kind == OPT_ADAM:
        if s2_out is None or s2_out.shape[0] != P:
            raise ValueError(f"train_epoch: optimizer state s2_out must have length {P}")
        s2_ptr = &s2_out[0]
    if loss < 0 or loss > LOSS_POISSON:
        raise ValueError(f"train_epoch: unknown loss code {loss}")
    if loss == LOSS_SOFTMAX_CE:
        if labels is None or labels.shape[0] != N:
            raise ValueError(f"train_epoch: softmax cross-entropy needs labels of shape ({N},)")
        lab_lo = labels[0]
        lab_hi = labels[0]
        for i in range(N):
            lab_lo = min(lab_lo, labels[i])
            lab_hi = max(lab_hi, labels[i])
        if lab_lo < 0 or lab_hi >= K:
            raise ValueError(f"train_epoch: labels must lie in [0, {K}), got [{lab_lo}, {lab_hi}]")
        if labg_out is None or labg_out.shape[0] < B:
            raise ValueError(f"train_epoch: labg_out must hold {B} labels")
        lab_ptr = &labels[0]
    else:
        if Y is None or Y.shape[0] != N or Y.shape[1] != K:
            raise ValueError(f"train_epoch: Y must have shape ({N}, {K})")
        if Yg_out is None or Yg_out.shape[0] < B or Yg_out.shape[1] != K:
            raise ValueError(f"train_epoch: Yg_out must have shape ({B}, {K})")
        Y_ptr = &Y[0, 0]
    if sample_weight is not None:
        if sample_weight.shape[0] != N:
            raise ValueError(f"train_epoch: sample_weight must have shape ({N},)")
        if swg_out is None or swg_out.shape[0] < B:
            raise ValueError(f"train_epoch: swg_out must hold {B} weights")
        sw_ptr = &sample_weight[0]
    if indices is not None:
        if indices.shape[0] != N:
            raise ValueError(f"train_epoch: indices must have shape ({N},)")
        lo = indices[0]
        hi = indices[0]
        for i in range(N):
            lo = min(lo, indices[i])
            hi = max(hi, indices[i])
        if lo < 0 or hi >= N:
            raise IndexError(f"train_epoch: indices must lie in [0, {N}), got [{lo}, {hi}]")
        if Xg_out is None or Xg_out.shape[0] < B or Xg_out.shape[1] != F0:
            raise ValueError(f"train_epoch: Xg_out must have shape ({B}, {F0})")
        idx_ptr = &indices[0]
    if start == 0:
        result_out[RES_TOTAL] = 0.0
    cdef unsigned int csr
    cdef int polling = nnc_sigint_install() if poll else 0
    cdef allreduce_fn reduce = NULL
    cdef void* reduce_ctx = NULL
    if comm is not None:
        reduce = comm.fn
        reduce_ctx = comm.ctx
        if start == 0:
            result_out[RES_DONE] = 0.0
        with nogil:
            csr = nnc_ftz_enter()
            status = _train_epoch_synced(
                &desc[0, 0], &slopes[0], L, &X[0, 0], Y_ptr, lab_ptr, sw_ptr, idx_ptr, N, F0, K,
                B, &plan[0], n_steps, &params_out[0], &grads_out[0], P, s1_ptr, s2_ptr, &cfg,
                cfg.alpha, loss, loss_scale, clip, &ws_out[0], &D_out[0, 0], &D_out[1, 0],
                &Xg_out[0, 0] if idx_ptr != NULL else <floating*>NULL,
                &Yg_out[0, 0] if (idx_ptr != NULL and Y_ptr != NULL) else <floating*>NULL,
                &labg_out[0] if (idx_ptr != NULL and lab_ptr != NULL) else <int*>NULL,
                &swg_out[0] if (idx_ptr != NULL and sw_ptr != NULL) else <floating*>NULL,
                &result_out[0], start, polling, reduce, reduce_ctx)
            nnc_ftz_leave(csr)
        if polling:
            nnc_sigint_restore()
            PyErr_CheckSignals()   # Python's handler runs now (the guard records the signal)
        return status
    with nogil:
        csr = nnc_ftz_enter()
        status = _train_epoch(
            &desc[0, 0], &slopes[0], L, &X[0, 0], Y_ptr, lab_ptr, sw_ptr, idx_ptr, N, F0, K, B,
            &params_out[0], &grads_out[0], P, s1_ptr, s2_ptr, &cfg, cfg.alpha, loss, loss_scale,
            clip, &ws_out[0], &D_out[0, 0], &D_out[1, 0],
            &Xg_out[0, 0] if idx_ptr != NULL else <floating*>NULL,
            &Yg_out[0, 0] if (idx_ptr != NULL and Y_ptr != NULL) else <floating*>NULL,
            &labg_out[0] if (idx_ptr != NULL and lab_ptr != NULL) else <int*>NULL,
            &swg_out[0] if (idx_ptr != NULL and sw_ptr != NULL) else <floating*>NULL,
            &result_out[0], start, polling)
        nnc_ftz_leave(csr)
    if polling:
        nnc_sigint_restore()
        if status == STATUS_INTERRUPTED_:
            PyErr_CheckSignals()   # Python's handler runs now (the guard records the signal)
    return status


def all_finite(cnp.ndarray X):
    """True when every element of the C-contiguous float32/float64 array X is finite.

    ~0.1 us for a small array, where ``np.isfinite(X).all()`` costs ~1.4 us (the lean input check
    of a one-row predict, nnc/_validation.py)."""
    cdef Py_ssize_t i, n
    cdef const float* f
    cdef const double* d
    cdef bint ok = True
    if not cnp.PyArray_IS_C_CONTIGUOUS(X):
        raise ValueError("all_finite: X must be C-contiguous")
    n = cnp.PyArray_SIZE(X)
    if cnp.PyArray_TYPE(X) == cnp.NPY_FLOAT32:
        f = <const float*>cnp.PyArray_DATA(X)
        with nogil:
            for i in range(n):
                if not isfinite(f[i]):
                    ok = False
                    break
    elif cnp.PyArray_TYPE(X) == cnp.NPY_FLOAT64:
        d = <const double*>cnp.PyArray_DATA(X)
        with nogil:
            for i in range(n):
                if not isfinite(d[i]):
                    ok = False
                    break
    else:
        raise TypeError(f"all_finite: X must be float32 or float64, got {X.dtype}")
    return ok


def pairwise_sum(const floating[::1] a):
    """NumPy's pairwise sum of a (the number ``a.sum()`` gives), in a's own type."""
    if a.shape[0] == 0:
        return 0.0
    return _pairwise_sum(&a[0], a.shape[0])


# idle workspaces a DenseForward keeps for later calls (more concurrent calls allocate their own)
cdef Py_ssize_t _POOL_CAP = 8
FORWARD_POOL_CAP = _POOL_CAP


cdef class DenseForward:
    """Callable ``fn(X, out)``: out (n, K) <- the network's output for X (n, F0) (or any
    C-contiguous (n, ...) with F0 values per sample), one nogil call per chunk of at most
    ``max_rows`` rows.

    Holds the plan, the parameter array (read at call time, so weight updates are seen) and a
    small pool of workspaces.  Typed ``cnp.ndarray`` arguments keep the crossing at ~0.1 us: a
    one-row predict is a few microseconds in total.  Thread-safe: each call takes a workspace of
    its own from the pool (``list.pop`` / ``append`` are atomic under the GIL), allocating one only
    when the pool is empty or its workspace too small, and gives it back afterwards; at most
    FORWARD_POOL_CAP idle workspaces are kept.  ``n_workspaces`` counts the allocations."""
    cdef readonly object params
    cdef object desc, slopes
    cdef list idle
    cdef readonly Py_ssize_t F0, K, L, units, max_rows, n_workspaces
    cdef int typenum

    def __init__(self, desc, slopes, cnp.ndarray params, Py_ssize_t F0, Py_ssize_t K,
                 Py_ssize_t units, Py_ssize_t max_rows=4096):
        if params.ndim != 1 or not params.flags.c_contiguous or params.dtype not in (
                np.float32, np.float64):
            raise ValueError("DenseForward: params must be a C-contiguous float32/float64 vector")
        self.desc = np.ascontiguousarray(desc, dtype=np.int64)
        check_plan(self.desc, params.shape[0], F0, K, units)
        self.slopes = np.ascontiguousarray(slopes, dtype=params.dtype)
        if self.slopes.shape != (self.desc.shape[0],):
            raise ValueError("DenseForward: slopes must have one entry per layer")
        if max_rows < 1:
            raise ValueError("DenseForward: max_rows must be positive")
        _checked_mul(max_rows, units, "DenseForward: max_rows * units")
        self.params = params
        self.typenum = cnp.PyArray_TYPE(params)
        self.F0 = F0
        self.K = K
        self.L = self.desc.shape[0]
        self.units = units
        self.max_rows = max_rows
        self.idle = []
        self.n_workspaces = 0

    @property
    def dtype(self):
        return self.params.dtype

    def __call__(self, cnp.ndarray X, cnp.ndarray out):
        cdef Py_ssize_t n, rows, size
        cdef cnp.ndarray ws = None
        size = cnp.PyArray_SIZE(X)
        n = cnp.PyArray_DIM(X, 0) if cnp.PyArray_NDIM(X) >= 1 else 0
        # size == n * F0, tested without the product (a zero-size X may have a huge first axis)
        if (cnp.PyArray_TYPE(X) != self.typenum or cnp.PyArray_NDIM(X) < 2
                or not cnp.PyArray_IS_C_CONTIGUOUS(X)
                or size % self.F0 != 0 or size // self.F0 != n
                or (cnp.PyArray_NDIM(X) == 2 and cnp.PyArray_DIM(X, 1) != self.F0)):
            raise ValueError(f"DenseForward: X must be a C-contiguous (n, {self.F0}) array (or "
                             f"(n, ...) with {self.F0} values per sample) of {self.params.dtype}")
        if (cnp.PyArray_TYPE(out) != self.typenum or cnp.PyArray_NDIM(out) != 2
                or not cnp.PyArray_IS_C_CONTIGUOUS(out) or not cnp.PyArray_ISWRITEABLE(out)
                or cnp.PyArray_DIM(out, 0) != n or cnp.PyArray_DIM(out, 1) != self.K):
            raise ValueError(f"DenseForward: out must be a writeable C-contiguous ({n}, "
                             f"{self.K}) array of {self.params.dtype}")
        if n == 0:
            return out
        rows = min(n, self.max_rows)
        try:
            ws = self.idle.pop()
        except IndexError:
            pass
        if ws is None or cnp.PyArray_DIM(ws, 0) < rows * self.units:
            ws = np.empty(rows * self.units, dtype=self.params.dtype)
            self.n_workspaces += 1
        try:
            # chunks as long as the workspace holds (it may be longer than this call needs)
            self._run(X, out, ws, n, min(self.max_rows, cnp.PyArray_DIM(ws, 0) // self.units))
        finally:
            if len(self.idle) < _POOL_CAP:
                self.idle.append(ws)
        return out

    cdef _run(self, cnp.ndarray X, cnp.ndarray out, cnp.ndarray ws, Py_ssize_t n,
              Py_ssize_t rows):
        if self.typenum == cnp.NPY_FLOAT32:
            _forward_chunks(<const i64*>cnp.PyArray_DATA(self.desc),
                            <const float*>cnp.PyArray_DATA(self.slopes), self.L,
                            <const float*>cnp.PyArray_DATA(X),
                            <const float*>cnp.PyArray_DATA(self.params),
                            <float*>cnp.PyArray_DATA(ws), <float*>cnp.PyArray_DATA(out),
                            n, rows, self.F0, self.K)
        else:
            _forward_chunks(<const i64*>cnp.PyArray_DATA(self.desc),
                            <const double*>cnp.PyArray_DATA(self.slopes), self.L,
                            <const double*>cnp.PyArray_DATA(X),
                            <const double*>cnp.PyArray_DATA(self.params),
                            <double*>cnp.PyArray_DATA(ws), <double*>cnp.PyArray_DATA(out),
                            n, rows, self.F0, self.K)


cdef void _forward_chunks(const i64* desc, const floating* slopes, Py_ssize_t L,
                          const floating* X, const floating* params, floating* ws,
                          floating* out, Py_ssize_t n, Py_ssize_t rows, Py_ssize_t F0,
                          Py_ssize_t K) noexcept:
    """out (n, K) <- forward of X (n, F0), `rows` rows at a time, without the GIL."""
    cdef const floating* Z
    cdef Py_ssize_t start, m
    with nogil:
        start = 0
        while start < n:
            m = min(rows, n - start)
            Z = _forward(desc, slopes, L, X + start * F0, params, ws, rows, m)
            memcpy(out + start * K, Z, m * K * sizeof(floating))
            start += rows
