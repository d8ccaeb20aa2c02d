"""Thread-safety cases, run in a subprocess by tests/test_threads.py (a hang then fails the test
instead of stalling the run).  ``python -c "from tests._thread_cases import main; main()" NAME...``
prints one JSON line: {name: "ok" or a description of what went wrong}.

The hammer cases fit or build a small model per layer family, compute the serial answers, then
have N_THREADS threads call the prediction methods many times on the same model, on inputs of
different lengths (so the shadow stacks are grown and reused), and compare every answer with the
serial one bit for bit; the GIL switch interval is made tiny so that threads interleave often.
Races are probabilistic, so the interleave cases add deterministic ones: a _Pause layer (an
identity that holds one thread) stops a predict in the middle of the stack while another predict
runs to completion; with workspaces shared between calls the held predict would then read the
other's activations.  The fit cases hold a fit in the middle of its update or its commit the same
way and check what a prediction sees meanwhile.
"""
import json
import sys
import threading
import traceback

import numpy as np

import nnc
from nnc import layers as L
from nnc import _network

N_THREADS = 8
ROUNDS = 6
#: seconds any wait may take before the case reports a hang
WAIT = 20


def _rows(i):
    """Rows predicted by thread i in one round (different per thread: 23..170 of 200)."""
    return slice(0, 23 + 21 * i)


def _hammer(calls):
    """Run each (name, fn, X) of `calls` from N_THREADS threads, ROUNDS times each on the
    thread's own slice of X, against serial answers on the same slices (a batch of another length
    may round differently: BLAS blocks by size); return the list of mismatches / exceptions.
    The threads run under the caller's nnc config (it is per thread, as scikit-learn's)."""
    problems = []
    config = nnc.get_config()
    start = threading.Barrier(N_THREADS)
    expected = {(name, i): fn(X[_rows(i)]) for name, fn, X in calls for i in range(N_THREADS)}

    def work(i):
        try:
            nnc.set_config(**config)
            start.wait()
            rows = _rows(i)
            for _ in range(ROUNDS):
                for name, fn, X in calls:
                    got = fn(X[rows])
                    if not np.array_equal(got, expected[name, i]):
                        problems.append(f"{name} (thread {i}): differs from the serial answer")
                        return
        except Exception as exc:  # reported, not raised: the thread must not die silently
            problems.append(f"thread {i}: {type(exc).__name__}: {exc}")

    threads = [threading.Thread(target=work, args=(i,)) for i in range(N_THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return problems


def _count_shadows():
    """Patch _network._Shadow to count the stacks made; returns the counter list."""
    made = [0]
    original = _network._Shadow.__init__

    def counting(self, layers, params):
        made[0] += 1
        original(self, layers, params)

    _network._Shadow.__init__ = counting
    return made


def _sequential_case(layers, shape, loss="mse", dtype="float64"):
    rng = np.random.RandomState(0)
    net = nnc.Sequential(layers, loss=loss, input_shape=shape, dtype=dtype, random_state=0)
    X = rng.standard_normal((200,) + shape).astype(dtype)
    made = _count_shadows()
    calls = [("Sequential.predict", net.predict, X), ("Sequential.forward", net.forward, X)]
    problems = _hammer(calls)
    if made[0] > N_THREADS:
        problems.append(f"{made[0]} shadow stacks for {N_THREADS} threads (pool cap "
                        f"{_network._SHADOW_POOL_CAP})")
    return problems


def _estimator_case(est, X, y):
    est.fit(X, y)
    calls = [("predict", est.predict, X)]
    if hasattr(est, "predict_proba"):
        calls.append(("predict_proba", est.predict_proba, X))
    return _hammer(calls)


def _digits_like(shape, n=200, classes=3, seed=0):
    rng = np.random.RandomState(seed)
    X = rng.standard_normal((n,) + shape)
    y = (X.reshape(n, -1)[:, :3].sum(axis=1) > 0).astype(int) + (X.reshape(n, -1)[:, 3] > 1)
    return X, y % classes


# ------------------------------------------------------------------------- the layer families
def case_dense_compiled():
    X, y = _digits_like((6,))
    return _estimator_case(nnc.MLPClassifier((16, 8), max_iter=30, random_state=0), X, y)


def case_dense_generic():
    with nnc.config_context(fast_path=False):
        return _sequential_case([L.Dense(12), L.Tanh(), L.Dense(7), L.LeakyReLU(0.1),
                                 L.Dense(3), L.Sigmoid()], (6,))


def case_dropout():
    return _sequential_case([L.Dense(12), L.ReLU(), L.Dropout(0.5), L.Dense(3)], (6,),
                            loss="softmax_cross_entropy")


def case_conv1d():
    X, y = _digits_like((2, 12))
    est = nnc.NeuralNetClassifier(layers=[L.Conv1D(4, 3), L.ReLU(), L.Flatten(), L.Dense(8)],
                                  max_epochs=3, random_state=0, dtype="float32")
    return _estimator_case(est, X, y)


def case_conv2d_maxpool():
    return _sequential_case([L.Conv2D(3, 3, padding=1), L.ReLU(), L.MaxPool2D(2), L.Flatten(),
                             L.Dense(4)], (2, 6, 6), dtype="float32")


def case_conv2d_avgpool():
    return _sequential_case([L.Conv2D(4, (2, 3), stride=(1, 2)), L.AvgPool2D(2, stride=1),
                             L.Flatten(), L.Dense(4)], (3, 5, 7))


def case_pool_padding_1d_global():
    """Padded 2-D pools, 1-D pools and global pools (argmax workspaces in the shadows)."""
    problems = _sequential_case([L.MaxPool2D(3, stride=2, padding=1),
                                 L.AvgPool2D(2, stride=1, padding=1, count_include_pad=False),
                                 L.GlobalMaxPool(), L.Dense(3)], (2, 6, 5))
    problems += _sequential_case([L.Conv1D(3, 3), L.MaxPool1D(2, padding=1), L.AvgPool1D(3, 1, 1),
                                  L.GlobalAvgPool("channels_first"), L.Dense(2)], (2, 11),
                                 dtype="float32")
    rng = np.random.RandomState(0)
    X = rng.randint(0, 9, (200, 7))
    y = (X[:, 0] > X[:, 1]).astype(int)
    est = nnc.NeuralNetClassifier(layers=[L.Embedding(9, 4), L.GlobalMaxPool("channels_last"),
                                          L.Dense(6)], max_epochs=2, random_state=0)
    return problems + _estimator_case(est, X, y)


def case_simple_rnn():
    return _sequential_case([L.SimpleRNN(6, return_sequences=True), L.Flatten(), L.Dense(3)],
                            (7, 4))


def case_lstm():
    X, y = _digits_like((7, 4))
    est = nnc.NeuralNetClassifier(layers=[L.LSTM(8)], max_epochs=2, random_state=0)
    return _estimator_case(est, X, y)


def case_gru():
    return _sequential_case([L.GRU(5), L.Dense(2)], (6, 3), dtype="float32")


def case_bidirectional():
    X, y = _digits_like((6, 3))
    est = nnc.NeuralNetClassifier(layers=[L.Bidirectional(L.GRU(5))], max_epochs=2,
                                  random_state=0)
    problems = _estimator_case(est, X, y)
    problems += _sequential_case([L.Bidirectional(L.LSTM(4, return_sequences=True), merge="mul"),
                                  L.Flatten(), L.Dense(2)], (6, 3))
    return problems


def case_embedding_layernorm():
    """Integer token ids through Embedding (+ LayerNorm), on an estimator and a Sequential."""
    rng = np.random.RandomState(0)
    X = rng.randint(0, 9, (200, 6))
    y = (X[:, 0] > X[:, 1]).astype(int) + (X[:, 2] > 6)
    est = nnc.NeuralNetClassifier(layers=[L.Embedding(9, 4, padding_idx=0), L.LayerNorm(),
                                          L.Flatten(), L.Dense(8)],
                                  max_epochs=2, random_state=0)
    problems = _estimator_case(est, X, y)
    net = nnc.Sequential([L.Embedding(9, 5), L.GRU(4), L.LayerNorm(), L.Dense(3)],
                         input_shape=(6,), dtype="float32", random_state=0)
    made = _count_shadows()
    problems += _hammer([("Sequential.predict", net.predict, X)])
    if made[0] > N_THREADS:
        problems.append(f"{made[0]} shadow stacks for {N_THREADS} threads")
    return problems


def case_attention():
    """Padded token ids through Embedding(padding_idx) + transformer block (each call's own
    mask), on an estimator and on a float Sequential with predict blocks shorter than a call."""
    X = _padded_ids(np.random.RandomState(0), n=200)
    y = (X[:, 0] > X[:, 1]).astype(int) + (X[:, 2] > 6)
    est = nnc.NeuralNetClassifier(
        layers=[L.Embedding(9, 8, padding_idx=0), L.PositionalEmbedding(8, 8),
                L.TransformerEncoderBlock(8, 2, 12, dropout=0.1), L.Flatten(), L.Dense(8)],
        max_epochs=2, random_state=0)
    problems = _estimator_case(est, X, y)
    problems += _sequential_case([L.MultiHeadSelfAttention(2, 4, causal=True),
                                  L.Residual([L.Dense(6), L.ReLU(), L.Dense(4)]), L.Flatten(),
                                  L.Dense(2)], (130, 4), dtype="float32")
    return problems


def case_batchnorm():
    """BatchNorm in prediction mode reads the running statistics through its shadows' views."""
    X, y = _digits_like((2, 5, 5))
    est = nnc.NeuralNetClassifier(layers=[L.Conv2D(3, 3), L.BatchNorm(), L.ReLU(), L.Flatten(),
                                          L.Dense(6), L.BatchNorm(), L.Sigmoid()],
                                  max_epochs=2, batch_size=32, random_state=0)
    problems = _estimator_case(est, X, y)
    problems += _sequential_case([L.Dense(7), L.BatchNorm(affine=False), L.Tanh(), L.Dense(2)],
                                 (5,), dtype="float32")
    return problems


# ------------------------------------------------------------------------- fits while predicting
def _predict_during(train, est, X, refs):
    """Run train() in one thread while N_THREADS - 1 threads call est.predict_proba(X); every
    answer must equal one of the arrays in refs (a list the trainer may extend)."""
    problems = []
    done = threading.Event()

    def predictor(i):
        try:
            while not done.is_set():
                P = est.predict_proba(X)
                if not any(P.shape == r.shape and np.array_equal(P, r) for r in list(refs)):
                    # the trainer may have just committed a state it has not recorded yet
                    done.wait()
                    if not any(P.shape == r.shape and np.array_equal(P, r) for r in refs):
                        problems.append(f"predictor {i}: an answer from no committed model")
                        return
        except Exception as exc:
            problems.append(f"predictor {i}: {type(exc).__name__}: {exc}")

    def trainer():
        try:
            train()
        except Exception:
            problems.append("trainer: " + traceback.format_exc(limit=3))
        finally:
            done.set()

    threads = [threading.Thread(target=predictor, args=(i,)) for i in range(N_THREADS - 1)]
    threads.append(threading.Thread(target=trainer))
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return problems


def case_fresh_fit_while_predicting():
    """fit() swaps in a new model (here with another number of classes): predictions see the
    old one or the new one, never a mix."""
    XA, yA = _digits_like((6,), classes=3, seed=1)
    XB, yB = _digits_like((6,), classes=2, seed=2)
    make = lambda: nnc.MLPClassifier((12,), max_iter=20, random_state=0)  # noqa: E731
    import warnings
    warnings.simplefilter("ignore")
    refs = [make().fit(XA, yA).predict_proba(XA), make().fit(XB, yB).predict_proba(XA)]
    est = make().fit(XA, yA)

    def train():
        for k in range(6):
            est.fit(*((XB, yB) if k % 2 == 0 else (XA, yA)))

    return _predict_during(train, est, XA, refs)


def case_partial_fit_while_predicting():
    """partial_fit updates the weights in place: predictions see the weights from before a call
    or after it, never a mix, and the training is exactly the serial one."""
    problems = []
    for make in (lambda: nnc.MLPClassifier((12,), random_state=0),
                 lambda: nnc.NeuralNetClassifier(layers=[L.LSTM(6)], random_state=0),
                 # training updates BatchNorm's running statistics in place too
                 lambda: nnc.NeuralNetClassifier(layers=[L.BatchNorm(), L.Flatten(), L.Dense(6),
                                                         L.BatchNorm()], random_state=0)):
        X, y = _digits_like((6,) if "MLP" in repr(make()) else (5, 3), seed=3)
        classes = np.unique(y)
        serial = make().partial_fit(X, y, classes=classes)
        for _ in range(8):
            serial.partial_fit(X, y)
        est = make().partial_fit(X, y, classes=classes)
        refs = [est.predict_proba(X)]

        def train():
            for _ in range(8):
                est.partial_fit(X, y)
                refs.append(est.predict_proba(X))

        problems += _predict_during(train, est, X, refs)
        if not np.array_equal(est.network_.params, serial.network_.params):
            problems.append(f"{type(est).__name__}: partial_fit under concurrent predictions "
                            "differs from the serial run")
    return problems


def case_warm_early_stopping_while_predicting():
    """A warm-start fit with early stopping scores the weights it is training (its own
    predictions read the live buffer) while other threads read the weights from before."""
    import warnings
    warnings.simplefilter("ignore")
    X, y = _digits_like((6,), n=300, seed=4)
    make = lambda: nnc.MLPClassifier((12,), max_iter=15, early_stopping=True,  # noqa: E731
                                     warm_start=True, random_state=0)
    serial = make().fit(X, y)
    serial.fit(X, y)
    est = make().fit(X, y)
    refs = [est.predict_proba(X)]
    problems = _predict_during(lambda: refs.append(est.fit(X, y).predict_proba(X)), est, X, refs)
    if not (np.array_equal(est.network_.params, serial.network_.params)
            and est.validation_scores_ == serial.validation_scores_):
        problems.append("warm early-stopping fit under concurrent predictions differs from the "
                        "serial run")
    return problems


# ------------------------------------------------------------------------- deterministic interleavings
class _Pause(L.Layer):
    """Identity layer that holds the thread registered in ``hold[0]`` until ``resume`` is set.  It
    declares no workspaces; its shadows share ``hold`` and the events (shared objects, mutated in
    place: the protocol needs nothing more)."""

    def __init__(self):
        super().__init__()
        self.hold = [None]
        self.paused = threading.Event()
        self.resume = threading.Event()

    keeps_mask = True       # passes a sequence mask on (the attention case)

    def _forward(self, X, training):
        if threading.get_ident() == self.hold[0]:
            self.paused.set()
            if not self.resume.wait(WAIT):
                raise RuntimeError("_Pause: never resumed")
        return X

    def _backward(self, dY, need_dX):
        return dY if need_dX else None


def _interleave(head, tail, shape, dtype="float64", make_X=None):
    """Thread A predicts XA and is held after `head`; meanwhile this thread predicts XB; then A
    finishes.  A's answer must be the serial one.  make_X(rng): one input (default: 40 normal
    samples)."""
    pause = _Pause()
    net = nnc.Sequential(head + [pause] + tail, input_shape=shape, dtype=dtype, random_state=0)
    rng = np.random.RandomState(1)
    if make_X is None:
        def make_X(rng):
            return rng.standard_normal((40,) + shape).astype(dtype)
    XA, XB = make_X(rng), make_X(rng)
    want_a, want_b = net.predict(XA), net.predict(XB)
    got = {}

    def thread_a():
        pause.hold[0] = threading.get_ident()
        got["A"] = net.predict(XA)

    t = threading.Thread(target=thread_a, daemon=True)
    t.start()
    problems = []
    if not pause.paused.wait(WAIT):
        return ["thread A never reached the pause"]
    got["B"] = net.predict(XB)
    pause.resume.set()
    t.join(WAIT)
    if t.is_alive() or "A" not in got:
        return ["thread A did not finish"]
    if not np.array_equal(got["A"], want_a):
        problems.append("the held predict read another call's activations")
    if not np.array_equal(got["B"], want_b):
        problems.append("the concurrent predict differs from the serial answer")
    return problems


def case_interleave_dense_and_activations():
    return _interleave([L.Dense(9), L.Tanh()], [L.Dense(3), L.ReLU()], (5,))


def case_interleave_dropout():
    return _interleave([L.Dense(9), L.ReLU(), L.Dropout(0.3)], [L.Dense(3)], (5,))


def case_interleave_conv_pool():
    problems = _interleave([L.Conv2D(3, 3, padding=1), L.ReLU(), L.MaxPool2D(2)],
                           [L.Flatten(), L.Dense(2)], (2, 6, 6), "float32")
    problems += _interleave([L.Conv2D(3, 2), L.AvgPool2D(2)], [L.Flatten(), L.Dense(2)],
                            (2, 5, 5))
    problems += _interleave([L.Conv1D(4, 3, stride=2), L.Flatten()], [L.Dense(2)], (3, 11))
    problems += _interleave([L.MaxPool1D(3, 2, 1), L.GlobalMaxPool("channels_last")],
                            [L.Dense(2)], (4, 9))
    problems += _interleave([L.AvgPool2D(3, 1, 1, count_include_pad=False), L.GlobalAvgPool()],
                            [L.Dense(2)], (2, 5, 5))
    return problems


def case_interleave_layernorm():
    return _interleave([L.Dense(7), L.LayerNorm()], [L.Dense(2)], (5,))


def _padded_ids(rng, n=40, T=8, n_tokens=9):
    """Token ids with a padded tail (0) of a different length per sample."""
    X = rng.randint(1, n_tokens, (n, T))
    X[np.arange(T)[None, :] >= rng.randint(1, T + 1, (n, 1))] = 0
    return X


def case_interleave_attention():
    """Held after the attention block, with each call's own sequence mask (padded ids): the other
    predict's mask and workspaces must not leak into the held one."""
    problems = _interleave([L.Embedding(9, 8, padding_idx=0), L.PositionalEmbedding(8, 8),
                            L.TransformerEncoderBlock(8, 2, 12)],
                           [L.MultiHeadSelfAttention(2, 8, causal=True), L.Flatten(),
                            L.Dense(3)], (8,), make_X=_padded_ids)
    problems += _interleave([L.Residual([L.LayerNorm(), L.MultiHeadSelfAttention(4, 8)])],
                            [L.Dense(2)], (6, 8), "float32")
    # held before the masked pools: each call's own mask must reach its own pool
    problems += _interleave([L.Embedding(9, 8, padding_idx=0), L.TransformerEncoderBlock(8, 2, 12)],
                            [L.GlobalAvgPool("channels_last"), L.Dense(3)], (8,),
                            make_X=_padded_ids)
    problems += _interleave([L.Embedding(9, 4, padding_idx=0)],
                            [L.GlobalMaxPool("channels_last"), L.Dense(2)], (8,),
                            make_X=_padded_ids)
    return problems


def case_interleave_batchnorm():
    problems = _interleave([L.Dense(7), L.BatchNorm()], [L.BatchNorm(), L.Dense(2)], (5,))
    problems += _interleave([L.Conv2D(2, 2), L.BatchNorm()], [L.Flatten(), L.Dense(2)],
                            (2, 4, 4))
    return problems


def case_interleave_recurrent():
    problems = []
    for layer in (L.SimpleRNN(5), L.LSTM(5, return_sequences=True), L.GRU(5),
                  L.Bidirectional(L.GRU(4)), L.Bidirectional(L.LSTM(3), merge="ave")):
        tail = [L.Flatten(), L.Dense(2)] if getattr(layer, "return_sequences", False) else \
            [L.Dense(2)]
        problems += _interleave([layer], tail, (6, 3))
    return problems


def case_prediction_during_partial_fit():
    """A partial_fit held right after its weights changed in place: a prediction from another
    thread meanwhile gives the answer of the weights from before the call."""
    problems = []
    for est, X in ((nnc.MLPClassifier((10,), random_state=0), _digits_like((6,), seed=5)[0]),
                   (nnc.NeuralNetClassifier(layers=[L.GRU(4)], random_state=0),
                    _digits_like((5, 3), seed=5)[0])):
        y = _digits_like(X.shape[1:], seed=5)[1]
        est.partial_fit(X, y, classes=np.unique(y))
        before = est.predict_proba(X)
        net = est.network_
        paused, resume = threading.Event(), threading.Event()
        original = net.train_epoch

        def held_epoch(*args, **kwargs):
            loss = original(*args, **kwargs)        # the weights have changed in place
            paused.set()
            resume.wait(WAIT)
            return loss

        net.train_epoch = held_epoch
        t = threading.Thread(target=est.partial_fit, args=(X, y), daemon=True)
        t.start()
        if not paused.wait(WAIT):
            return ["partial_fit never reached its epoch"]
        during = est.predict_proba(X)
        resume.set()
        t.join(WAIT)
        del net.train_epoch
        after = est.predict_proba(X)
        name = type(est).__name__
        if not np.array_equal(during, before):
            problems.append(f"{name}: a prediction during partial_fit saw half-trained weights")
        if np.array_equal(after, before):
            problems.append(f"{name}: partial_fit changed nothing (the check is void)")
    return problems


def case_prediction_during_commit():
    """A fit held inside its commit (holding the lock, its attributes not written yet): a
    prediction from another thread waits and then sees the new model whole."""
    XA, yA = _digits_like((6,), classes=3, seed=6)
    XB, yB = _digits_like((6,), classes=2, seed=7)
    yB = np.where(yB == 0, 5, 7)                  # other labels, another output layer
    make = lambda: nnc.MLPClassifier((8,), max_iter=5, random_state=0)  # noqa: E731
    import warnings
    warnings.simplefilter("ignore")
    want = make().fit(XB, yB).predict(XA)
    est = make().fit(XA, yA)
    paused, resume = threading.Event(), threading.Event()
    original = est._target_attributes

    def held_target_attributes(targets):
        paused.set()
        resume.wait(WAIT)
        return original(targets)

    est._target_attributes = held_target_attributes
    fitter = threading.Thread(target=est.fit, args=(XB, yB), daemon=True)
    fitter.start()
    if not paused.wait(WAIT):
        return ["fit never reached its commit"]
    got = {}

    def predictor():
        try:
            got["labels"] = est.predict(XA)
        except Exception as exc:
            got["error"] = f"{type(exc).__name__}: {exc}"

    p = threading.Thread(target=predictor, daemon=True)
    p.start()
    p.join(0.2)          # a predict that does not wait for the commit finishes in this time
    resume.set()
    fitter.join(WAIT)
    p.join(WAIT)
    del est._target_attributes
    if "error" in got:
        return [f"prediction during the commit failed: {got['error']}"]
    if "labels" not in got:
        return ["prediction during the commit did not finish"]
    if not np.array_equal(got["labels"], want):
        return ["a prediction during the commit mixed the old and the new model"]
    return []


CASES = {name[5:]: fn for name, fn in globals().items() if name.startswith("case_")}


def main(names=None):
    sys.setswitchinterval(1e-5)     # switch threads often: more interleavings per round
    names = names or sys.argv[1:] or sorted(CASES)
    results = {}
    for name in names:
        try:
            problems = CASES[name]()
            results[name] = "ok" if not problems else "; ".join(sorted(set(problems))[:5])
        except Exception:
            results[name] = "error: " + traceback.format_exc(limit=4)
    print(json.dumps(results))
