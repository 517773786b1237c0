"""skserve.runtimes.sklearn: only a compatible, fitted estimator is served."""

from __future__ import annotations

import json
import pickle
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import sklearn
from sklearn.linear_model import LinearRegression
from sklearn.tree import DecisionTreeClassifier

from skserve.errors import BadRequest, IncompatibleModel
from skserve.manifest import Manifest
from skserve.rows import Table
from skserve.runtimes.base import LoadOptions
from skserve.runtimes.sklearn import ARTIFACT, SklearnRuntime

X = np.array([[0.0, 0.0], [1.0, 1.0], [2.0, 0.5], [3.0, 2.0]])


def _manifest(model: Any, **changes: Any) -> Manifest:
    classes = getattr(model, "classes_", None)
    facts = {
        "name": "m",
        "version": "v1",
        "task": "classification" if classes is not None else "regression",
        "n_features": 2,
        "files": {},
        "environment": {"scikit-learn": sklearn.__version__},
        **changes,
    }
    return Manifest(json.loads(json.dumps(facts)))


def _load(
    model: Any, data: bytes | None = None, *, allow: bool = False, **changes: Any
) -> SklearnRuntime:
    files = {ARTIFACT: pickle.dumps(model) if data is None else data}
    return SklearnRuntime.load(
        _manifest(model, **changes), files, LoadOptions(allow_version_mismatch=allow)
    )


@pytest.fixture(scope="module")
def tree() -> DecisionTreeClassifier:
    return DecisionTreeClassifier(random_state=0).fit(X, ["no", "no", "yes", "yes"])


def test_predictions_keep_the_class_labels_and_their_order(
    tree: DecisionTreeClassifier,
) -> None:
    prediction = _load(tree).predict(Table.of_matrix(X), probabilities=True)

    assert prediction.labels.tolist() == ["no", "no", "yes", "yes"]
    assert prediction.classes == ["no", "yes"]
    assert prediction.probabilities is not None
    assert prediction.probabilities.dtype == np.float64
    assert prediction.probabilities.tolist() == [[1, 0], [1, 0], [0, 1], [0, 1]]


def test_probabilities_are_left_out_unless_asked(tree: DecisionTreeClassifier) -> None:
    prediction = _load(tree).predict(Table.of_matrix(X), probabilities=False)

    assert prediction.probabilities is None and prediction.classes is None


def test_a_pickle_from_another_scikit_learn_is_refused_naming_both(
    tree: DecisionTreeClassifier,
) -> None:
    with pytest.raises(IncompatibleModel) as raised:
        _load(tree, environment={"scikit-learn": "0.24.2"})

    message = raised.value.message
    assert "0.24.2" in message and sklearn.__version__ in message
    assert "ALLOW_SKLEARN_VERSION_MISMATCH=true" in message


def test_a_version_mismatch_can_be_allowed_and_is_logged(
    tree: DecisionTreeClassifier, capsys: pytest.CaptureFixture[str]
) -> None:
    runtime = _load(tree, allow=True, environment={"scikit-learn": "0.24.2"})

    assert runtime.predict(
        Table.of_matrix(X[:1]), probabilities=False
    ).labels.tolist() == ["no"]
    (entry,) = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert entry["severity"] == "WARNING" and "0.24.2" in entry["message"]


def test_a_pickle_that_is_not_an_estimator_is_refused(
    tree: DecisionTreeClassifier,
) -> None:
    with pytest.raises(IncompatibleModel, match="is a dict, not an estimator"):
        _load(tree, pickle.dumps({"weights": [1, 2]}))


def test_an_estimator_fitted_on_other_features_than_the_manifest_says_is_refused(
    tree: DecisionTreeClassifier,
) -> None:
    with pytest.raises(IncompatibleModel, match="expects 2 features, its manifest"):
        _load(tree, n_features=3)


def test_a_pickle_needing_a_missing_module_names_the_module(
    tree: DecisionTreeClassifier,
) -> None:
    # Protocol 0: GLOBAL skserve_test_gone.Thing, called with no arguments.
    data = b"cskserve_test_gone\nThing\n(tR."

    with pytest.raises(IncompatibleModel) as raised:
        _load(tree, data)

    assert "module 'skserve_test_gone' is not installed" in raised.value.message


def test_a_regressor_refuses_probabilities() -> None:
    regressor = LinearRegression().fit(X, X.sum(axis=1))

    with pytest.raises(BadRequest) as raised:
        _load(regressor).predict(Table.of_matrix(X), probabilities=True)

    assert raised.value.code == "probabilities_unsupported"
    assert "task: regression" in raised.value.message


def test_values_a_tree_cannot_take_are_a_bad_request(
    tree: DecisionTreeClassifier,
) -> None:
    """1e39 is a finite float64 but not a float32, which trees compute in."""
    with pytest.raises(BadRequest) as raised:
        _load(tree).predict(
            Table.of_matrix(np.array([[1e39, 0.0]])), probabilities=False
        )

    assert raised.value.code == "invalid_value"


def test_an_output_that_is_not_finite_is_a_bad_request() -> None:
    steep = LinearRegression().fit(X, X.sum(axis=1))
    steep.coef_ = np.array([1e300, 1e300])

    with pytest.raises(BadRequest, match="not a finite number"):
        _load(steep).predict(
            Table.of_matrix(np.array([[1e10, 1e10]])), probabilities=False
        )


def test_a_model_fitted_on_a_dataframe_gets_its_own_answers_to_the_last_bit() -> None:
    """A float array in row-major order sums a linear model's products in
    another order than the DataFrame's values: probabilities differ in their
    last bits. The runtime gives the DataFrame's column-major layout."""
    from sklearn.datasets import load_breast_cancer
    from sklearn.linear_model import LogisticRegression

    frame, y = load_breast_cancer(return_X_y=True, as_frame=True)
    model = LogisticRegression(max_iter=5000).fit(frame, y)
    names = [str(n) for n in frame.columns]
    runtime = _load(model, n_features=len(names), feature_names=names)
    rows = frame.to_numpy()

    proba = runtime.predict(Table.of_matrix(rows), probabilities=True).probabilities

    assert runtime.schema.format == "array"
    assert proba is not None
    assert np.array_equal(proba, model.predict_proba(frame))
    # ... which a row-major copy of the same values does not get here.
    row_major = model.predict_proba(np.ascontiguousarray(rows))
    assert not np.array_equal(row_major, model.predict_proba(frame))


def test_a_numeric_model_loads_without_importing_pandas() -> None:
    # In a fresh interpreter: this one imported pandas long ago.
    code = (
        "import json, pickle, sys\n"
        "sys.path.insert(0, 'function')\n"
        "import numpy as np\n"
        "from skserve.manifest import Manifest\n"
        "from skserve.runtimes.base import LoadOptions\n"
        "from skserve.runtimes.sklearn import SklearnRuntime\n"
        "from importlib.metadata import version\n"
        f"data = {pickle.dumps(DecisionTreeClassifier().fit(X, [0, 0, 1, 1]))!r}\n"
        "manifest = Manifest({'name': 'm', 'version': 'v1', 'task': 'classification',"
        " 'n_features': 2, 'files': {}, 'classes': [0, 1],"
        " 'environment': {'scikit-learn': version('scikit-learn')}})\n"
        "SklearnRuntime.load(manifest, {'model.pkl': data}, LoadOptions())\n"
        "print(json.dumps('pandas' in sys.modules))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=Path(__file__).resolve().parents[3],
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "false"


def test_a_pickle_that_holds_a_pandas_object_still_loads() -> None:
    import pandas as pd

    from skserve.runtimes.sklearn import _unpickle

    model = DecisionTreeClassifier().fit(X, [0, 0, 1, 1])
    model.note = pd.Series([1, 2])  # a user's extra attribute

    loaded = _unpickle(pickle.dumps(model), hide_pandas=True)

    assert isinstance(loaded.note, pd.Series)
