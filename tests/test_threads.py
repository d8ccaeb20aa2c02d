"""predict is thread-safe, and a fit may run while other threads predict (issue 14.1).

The threaded cases live in tests/_thread_cases.py and run in ONE subprocess with a timeout, so a
deadlock fails these tests instead of stalling the run; each case is reported as its own test.
The allocation checks below are single-threaded and run here.
"""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

import nnc
from nnc import layers as L
from nnc import _network
from tests._thread_cases import CASES

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def thread_results():
    env = dict(os.environ)
    pkg_parent = os.path.dirname(os.path.dirname(os.path.abspath(nnc.__file__)))
    env["PYTHONPATH"] = os.pathsep.join([pkg_parent, ROOT] + [p for p in
                                                              [env.get("PYTHONPATH")] if p])
    try:
        proc = subprocess.run([sys.executable, "-W", "ignore", "-c",
                               "from tests._thread_cases import main; main()"],
                              cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    except subprocess.TimeoutExpired:
        pytest.fail("the thread cases did not finish within 300 s (a deadlock?)")
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("case", sorted(CASES))
def test_threads(thread_results, case):
    assert thread_results[case] == "ok", thread_results[case]


# ------------------------------------------------------------------------- allocations
def _workspace_ids(net):
    """ids of every workspace array of the idle shadow stacks of `net`."""
    ids = set()
    for stack in net.__dict__.get("_ws_shadows", []):
        for layer in stack.layers:
            for part in _network._layer_tree(layer):
                ids.update(id(v) for k, v in part.__dict__.items()
                           if k.startswith("_ws") and isinstance(v, np.ndarray))
    return ids


@pytest.mark.parametrize("layers, shape", [
    ([L.Conv2D(3, 3), L.ReLU(), L.MaxPool2D(2), L.Flatten(), L.Dense(2)], (1, 8, 8)),
    ([L.Bidirectional(L.LSTM(4)), L.Dense(2)], (5, 3)),
    ([L.Dense(8), L.Dropout(0.2), L.Dense(2)], (4,)),
], ids=["conv", "recurrent", "generic-dense"])
def test_steady_state_predicts_allocate_no_workspaces(layers, shape, monkeypatch):
    net = nnc.Sequential(layers, input_shape=shape, random_state=0)
    X = np.random.RandomState(0).standard_normal((30,) + shape)
    first = net.predict(X)
    ids = _workspace_ids(net)
    assert ids, "the pool keeps the stack of the first predict"
    calls = []
    original = L.Layer.allocate
    monkeypatch.setattr(L.Layer, "allocate", lambda self, n: (calls.append(n),
                                                              original(self, n)))
    for n in (30, 7, 1, 30):        # shorter batches reuse leading rows
        out = net.predict(X[:n])
        np.testing.assert_array_equal(out, net.predict(X[:n]))
    np.testing.assert_array_equal(net.predict(X), first)
    assert calls == []
    assert _workspace_ids(net) == ids
    assert len(net._ws_shadows) == 1


def test_steady_state_compiled_predicts_allocate_no_workspaces():
    net = nnc.Sequential([L.Dense(8), L.ReLU(), L.Dense(2)], input_shape=(4,), random_state=0)
    X = np.random.RandomState(0).standard_normal((50, 4))
    net.predict(X)
    fn = net._ws_forward[1]
    assert fn is not None and fn.n_workspaces == 1
    for n in (50, 3, 50):
        net.predict(X[:n])
    assert net._ws_forward[1] is fn and fn.n_workspaces == 1


def test_a_new_build_or_assigned_weights_are_seen_by_pooled_shadows():
    net = nnc.Sequential([L.Conv1D(2, 3), L.Flatten(), L.Dense(2)], input_shape=(1, 6),
                         random_state=0)
    X = np.random.RandomState(0).standard_normal((5, 1, 6))
    before = net.predict(X)
    net.params = net.params * 2          # copied into the buffer the shadows read
    assert not np.allclose(net.predict(X), before)
    net.set_weights([[w / 2 for w in ws] for ws in net.get_weights()])
    np.testing.assert_allclose(net.predict(X), before, rtol=1e-12)
    net.build((1, 8))                    # new buffers: the old shadows are not reused
    assert net.predict(np.zeros((2, 1, 8))).shape == (2, 2)
    assert all(s.params is net.params for s in net._ws_shadows)
