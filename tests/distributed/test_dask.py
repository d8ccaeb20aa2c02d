"""nnc estimators on Dask: a real ``distributed.LocalCluster`` with two worker processes of one
thread each (module-scoped, started once).

* ``dask_ml.wrappers.Incremental`` drives ``partial_fit`` over the blocks of a chunked dask array:
  the model equals calling partial_fit block by block in this process;
* ``ParallelPostFit`` predicts a dask array of several chunks on the workers: the same labels and
  probabilities as ``predict`` / ``predict_proba`` here;
* ``GridSearchCV(..., n_jobs=-1)`` inside ``joblib.parallel_backend("dask")`` runs its fits as
  tasks on the workers (MLP and CNN NeuralNetClassifier) with the serial search's results;
* the workers' thread limits: Dask's nanny sets OMP_NUM_THREADS / OPENBLAS_NUM_THREADS = 1 in
  every worker process, and nnc's kernels see it (OpenMP's max threads, SciPy's BLAS threads),
  so two workers never run more threads than the two cores.
"""
import warnings

import numpy as np
import pytest

pytest.importorskip("dask.array", reason="dask is not installed (pip install 'nnc[dask]')")
pytest.importorskip("distributed", reason="distributed is not installed (pip install 'nnc[dask]')")
pytest.importorskip("dask_ml", reason="dask-ml is not installed (pip install 'nnc[dask]')")
pytest.importorskip("sklearn")

import dask.array as da                                          # noqa: E402
import joblib                                                    # noqa: E402
from distributed import Client, LocalCluster, get_task_stream    # noqa: E402
from dask_ml.wrappers import Incremental, ParallelPostFit        # noqa: E402
from sklearn.model_selection import GridSearchCV                 # noqa: E402

import nnc                                                       # noqa: E402
from nnc.layers import Conv2D, Flatten, MaxPool2D, ReLU          # noqa: E402


@pytest.fixture(scope="module")
def client():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")      # dask's own deprecation / port notices
        cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                               dashboard_address=None)
        c = Client(cluster)
    try:
        yield c
    finally:
        c.close()
        cluster.close()


def _blobs(n=600, seed=0):
    rng = np.random.RandomState(seed)
    centers = rng.randn(3, 8) * 2.5
    y = rng.randint(0, 3, n)
    X = centers[y] + rng.randn(n, 8)
    return X, y


def test_incremental_partial_fit_over_blocks(client):
    X, y = _blobs()
    dX, dy = da.from_array(X, chunks=150), da.from_array(y, chunks=150)
    assert dX.numblocks[0] == 4

    def make():
        return nnc.MLPClassifier((16,), learning_rate_init=0.01, random_state=0,
                                 dtype="float64")

    inc = Incremental(make(), shuffle_blocks=False).fit(dX, dy, classes=[0, 1, 2])
    local = make()
    for a in range(0, 600, 150):
        local.partial_fit(X[a:a + 150], y[a:a + 150], classes=[0, 1, 2])
    np.testing.assert_allclose(inc.estimator_.network_.params, local.network_.params,
                               rtol=1e-12, atol=1e-14)
    assert inc.estimator_.t_ == 600 and inc.estimator_.n_iter_ == 1
    assert inc.estimator_.score(X, y) > 0.7           # one pass: learning, not converged


def test_parallel_post_fit_predicts_many_chunks_on_the_workers(client):
    X, y = _blobs(n=2000, seed=1)
    clf = nnc.MLPClassifier((16,), max_iter=30, random_state=0).fit(X[:500], y[:500])
    wrapped = ParallelPostFit(estimator=clf)
    dX = da.from_array(X, chunks=300)
    assert dX.numblocks[0] > 1
    with get_task_stream(client) as tasks:
        labels = wrapped.predict(dX)
        proba = wrapped.predict_proba(dX)
        assert isinstance(labels, da.Array)
        labels, proba = labels.compute(), proba.compute()
    assert len(tasks.data) >= 2 * dX.numblocks[0]       # one task per chunk and method
    np.testing.assert_array_equal(labels, clf.predict(X))
    np.testing.assert_allclose(proba, clf.predict_proba(X), rtol=1e-12)


@pytest.mark.parametrize("kind", ["mlp", "cnn"])
def test_grid_search_on_the_dask_backend(client, kind):
    rng = np.random.RandomState(0)
    if kind == "mlp":
        X, y = _blobs(n=240, seed=2)
        est = nnc.MLPClassifier(max_iter=30, learning_rate_init=0.01, random_state=0)
        grid = {"hidden_layer_sizes": [(8,), (16,)], "alpha": [1e-4, 1e-2]}
    else:
        y = rng.randint(0, 2, 160)
        X = rng.randn(160, 1, 8, 8) * 0.3
        X[y == 1, :, 2:6, 2:6] += 1.0                       # a bright square means class 1
        est = nnc.NeuralNetClassifier([Conv2D(4, 3), ReLU(), MaxPool2D(2), Flatten()],
                                      max_epochs=4, random_state=0)
        grid = {"learning_rate": [1e-2, 3e-2]}
    serial = GridSearchCV(est, grid, cv=2).fit(X, y)
    with get_task_stream(client) as tasks, joblib.parallel_backend("dask"):
        search = GridSearchCV(est, grid, cv=2, n_jobs=-1).fit(X, y)
    assert len(tasks.data) > 0                              # the fits ran on the workers
    np.testing.assert_allclose(search.cv_results_["mean_test_score"],
                               serial.cv_results_["mean_test_score"])
    assert search.best_params_ == serial.best_params_
    assert search.best_score_ > 0.8


def _worker_threads():
    import os

    from nnc._kernels._openmp_helpers import omp_max_threads
    out = {"env": {k: os.environ.get(k) for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS")},
           "omp": int(omp_max_threads())}
    try:
        from threadpoolctl import threadpool_info
        out["blas"] = sorted({p["num_threads"] for p in threadpool_info()
                              if p["user_api"] == "blas"})
    except ImportError:
        out["blas"] = None
    from nnc import _threads
    out["budget"] = int(_threads.budget())
    return out


def test_workers_run_one_thread_each(client):
    info = client.run(_worker_threads)
    assert len(info) == 2
    for worker, threads in info.items():
        assert threads["env"] == {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}, worker
        assert threads["omp"] == 1, (worker, threads)
        assert threads["blas"] in (None, [1]), (worker, threads)
        assert threads["budget"] == 1, (worker, threads)     # nnc's policy sees the cap
