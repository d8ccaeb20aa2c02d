"""scikit-learn compatibility: check_estimator on every estimator, meta-estimators, clone, pickle.
Skipped without scikit-learn (tests/estimators/test_robustness.py covers that case)."""
import pickle
import warnings

import numpy as np
import pytest

sklearn = pytest.importorskip("sklearn")
from sklearn.base import clone, is_classifier, is_regressor  # noqa: E402
from sklearn.datasets import load_iris, make_regression  # noqa: E402
from sklearn.exceptions import ConvergenceWarning, NotFittedError  # noqa: E402
from sklearn.model_selection import GridSearchCV, cross_val_score  # noqa: E402
from sklearn.pipeline import make_pipeline  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402
from sklearn.utils.estimator_checks import parametrize_with_checks  # noqa: E402
from sklearn.utils.estimator_checks import \
    check_sample_weight_equivalence_on_dense_data  # noqa: E402

import nnc  # noqa: E402
from nnc import MLPClassifier, MLPRegressor, NeuralNetClassifier, NeuralNetRegressor  # noqa: E402

_FLOAT32_SW = ("float32 rounding: fitting with weights vs. repeated rows differs by ~2e-7 "
               "relative, the check's rtol is 1e-7 (passes in float64, see the float64 instances)")


_FEW_EPOCHS = ("the check raises max_iter to 1000 where an estimator has one; NeuralNet's "
               "max_epochs=10 is too few for it to learn the weighted problem (passes with "
               "max_epochs=200: test_class_weight_check_with_enough_epochs)")


def _expected_failures(est):
    failures = {}
    if isinstance(est, NeuralNetClassifier):
        failures["check_class_weight_classifiers"] = _FEW_EPOCHS
        if est.dtype == "float32":
            failures.update({"check_sample_weight_equivalence_on_dense_data": _FLOAT32_SW,
                             "check_sample_weight_equivalence_on_sparse_data": _FLOAT32_SW})
    return failures


def test_class_weight_check_with_enough_epochs():
    from sklearn.utils.estimator_checks import check_class_weight_classifiers
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        check_class_weight_classifiers("NeuralNetClassifier",
                                       NeuralNetClassifier(max_epochs=200))


@parametrize_with_checks(
    [MLPClassifier(), MLPRegressor(), NeuralNetClassifier(), NeuralNetRegressor(),
     NeuralNetClassifier(dtype="float64"), NeuralNetRegressor(dtype="float64")],
    expected_failed_checks=_expected_failures)
def test_sklearn_estimator_checks(estimator, check):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        check(estimator)


@pytest.mark.parametrize("est", [MLPClassifier(solver="lbfgs"),
                                 MLPRegressor(solver="sgd", tol=1e-2, random_state=42)],
                         ids=["clf-lbfgs", "reg-sgd"])
def test_sample_weight_equivalence_like_sklearn(est):
    # the instances scikit-learn itself runs this check with for its MLPs
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        check_sample_weight_equivalence_on_dense_data(type(est).__name__, est)


def test_estimator_types_and_exports():
    assert is_classifier(MLPClassifier()) and is_classifier(NeuralNetClassifier())
    assert is_regressor(MLPRegressor()) and is_regressor(NeuralNetRegressor())
    assert issubclass(NotFittedError, ValueError)
    with pytest.raises(NotFittedError):
        MLPClassifier().predict(np.zeros((2, 3)))
    assert hasattr(MLPClassifier(solver="sgd"), "partial_fit")
    assert not hasattr(MLPClassifier(solver="lbfgs"), "partial_fit")
    assert not hasattr(MLPRegressor(solver="lbfgs"), "partial_fit")


@pytest.fixture(scope="module")
def iris():
    return load_iris(return_X_y=True)


def test_pipeline_grid_search_cross_val(iris):
    X, y = iris
    mlp = MLPClassifier(hidden_layer_sizes=(10,), max_iter=300, random_state=0)
    pipe = make_pipeline(StandardScaler(), mlp)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        pipe.fit(X, y)
        assert pipe.score(X, y) > 0.9
        scores = cross_val_score(pipe, X, y, cv=3)
        assert scores.mean() > 0.85
        grid = GridSearchCV(pipe, {"mlpclassifier__alpha": [1e-4, 1e-1]}, cv=2, n_jobs=2)
        grid.fit(X, y)
    assert grid.best_score_ > 0.8
    assert grid.best_estimator_.steps[-1][1].alpha in (1e-4, 1e-1)


def test_neural_net_in_pipeline_with_input_shape():
    from nnc.layers import Dense, Flatten, ReLU
    X, y = make_regression(n_samples=120, n_features=6, random_state=0)
    y = y / y.std()
    reg = NeuralNetRegressor(layers=[Flatten(), Dense(16), ReLU()], input_shape=(2, 3), max_epochs=40,
                             learning_rate=0.01, random_state=0)
    pipe = make_pipeline(StandardScaler(), reg).fit(X, y)   # 2-D X reshaped to (n, 2, 3)
    assert pipe.score(X, y) > 0.8
    assert pipe[-1].network_.input_shape == (2, 3)


@pytest.mark.parametrize("Est", [MLPClassifier, MLPRegressor, NeuralNetClassifier,
                                 NeuralNetRegressor])
def test_clone_and_pickle(Est, iris):
    X, y = iris
    X = (X - X.mean(0)) / X.std(0)
    est = Est(random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        est.fit(X, y)
    twin = clone(est)
    assert twin.get_params() == est.get_params()
    assert not hasattr(twin, "network_")
    restored = pickle.loads(pickle.dumps(est))
    np.testing.assert_array_equal(restored.predict(X), est.predict(X))
    if is_classifier(est):
        np.testing.assert_array_equal(restored.predict_proba(X), est.predict_proba(X))
    # the restored model is fully functional: views rebound, training continues
    if isinstance(est, (MLPClassifier, MLPRegressor)):
        assert np.shares_memory(restored.coefs_[0], restored.network_.params)
    restored.partial_fit(X, y)
    assert restored.n_iter_ == 1


def test_get_set_params_nested_names():
    est = MLPClassifier()
    est.set_params(alpha=0.5, hidden_layer_sizes=(3, 2))
    assert est.get_params()["alpha"] == 0.5
    assert "dtype" in est.get_params() and "class_weight" in est.get_params()
    with pytest.raises(ValueError):
        est.set_params(not_a_param=1)
    assert nnc.NeuralNetClassifier().get_params()["max_epochs"] == 10
