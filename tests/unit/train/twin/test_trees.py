"""train.twin.trees: forest classifiers write each tree once, several classes'
exact integer counts to one TreeEnsemble target, where the leaf fractions allow
it; elsewhere one target per class. Either way the twin gives scikit-learn's
labels and probabilities."""

from __future__ import annotations

from typing import Any

import numpy as np
import onnx
import pandas as pd
import pytest
from sklearn.compose import ColumnTransformer
from sklearn.datasets import load_iris, make_classification, make_regression
from sklearn.ensemble import (
    ExtraTreesClassifier,
    RandomForestClassifier,
    RandomForestRegressor,
)
from sklearn.impute import SimpleImputer
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler
from sklearn.tree import DecisionTreeClassifier

from skserve.schema import InputSchema
from train.schema import accepted_rows, infer_schema, to_table
from train.twin import NoTwin, Twin, build_twin
from train.twin.common import session
from train.twin.encoding import encoded, model_input
from train.twin.trees import EXACT_INTEGERS, packing


def _frame(X: np.ndarray) -> pd.DataFrame:
    return pd.DataFrame(X, columns=[f"x{j}" for j in range(X.shape[1])])


def _twin(model: Any, frame: pd.DataFrame) -> tuple[Twin, InputSchema]:
    schema = infer_schema(model, frame)
    reference = to_table(accepted_rows(frame, schema), schema)
    built = build_twin(model, reference, schema=schema)
    assert isinstance(built, Twin), built
    return built, schema


def _fresh(X: np.ndarray, count: int = 3_000) -> np.ndarray:
    """Rows the gate never saw: another seed, twice the spread."""
    rng = np.random.default_rng(2026)
    return rng.normal(X.mean(axis=0), 2 * X.std(axis=0), (count, X.shape[1]))


def _compare(model: Any, frame: pd.DataFrame, rows: list[list[Any]]) -> Twin:
    """The twin's answers on `rows` (encoded as the function encodes them) equal
    the model's own on a DataFrame of the same rows with the training dtypes."""
    built, schema = _twin(model, frame)
    table = to_table(rows, schema)
    labels, probabilities = session(built.data).run(None, {"X": encoded(table, schema)})
    X = model_input(model, table, schema)
    if isinstance(X, np.ndarray):  # fitted on an array: its frame, as trained
        X = pd.DataFrame(X, columns=frame.columns).astype(frame.dtypes)
    assert labels.tolist() == model.predict(X).tolist()
    assert np.abs(probabilities - model.predict_proba(X)).max() <= 1e-6
    return built


def _ensemble(built: Twin) -> dict[str, Any]:
    """The twin's one TreeEnsemble node's attributes, as Python values."""
    graph = onnx.load_from_string(built.data).graph
    (node,) = [n for n in graph.node if n.op_type == "TreeEnsemble"]
    return {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}


def _internal_nodes(model: Any) -> int:
    members = model.estimators_ if hasattr(model, "estimators_") else [model]
    return sum(int((m.tree_.children_left >= 0).sum()) for m in members)


def test_binary_forest_writes_each_tree_once() -> None:
    X, y = make_classification(n_samples=600, n_features=8, random_state=0)
    model = RandomForestClassifier(n_estimators=40, random_state=0)
    frame = _frame(X)

    built = _compare(model.fit(frame, y), frame, _fresh(X).tolist())

    ensemble = _ensemble(built)
    assert ensemble["n_targets"] == 1
    assert set(ensemble["leaf_targetids"]) == {0}
    # One copy of each tree's splits, not one per class.
    assert len(ensemble["nodes_featureids"]) == _internal_nodes(model)
    assert built.facts["parity"]["max_abs_difference"] == 0.0


def test_three_classes_share_one_target_as_exact_counts() -> None:
    X, y = load_iris(return_X_y=True)
    model = ExtraTreesClassifier(n_estimators=30, random_state=0)
    frame = _frame(X)

    built = _compare(model.fit(frame, y), frame, _fresh(X).tolist())

    ensemble = _ensemble(built)
    assert ensemble["n_targets"] == 1
    weights = onnx.numpy_helper.to_array(ensemble["leaf_weights"])
    # A pure leaf of class k counts base ** k, base = trees + 1.
    assert set(np.unique(weights)) <= {1.0, 31.0, 31.0**2}


def test_many_classes_take_as_few_targets_as_2_to_the_53_allows() -> None:
    X, y = make_classification(
        n_samples=900, n_features=8, n_informative=6, n_classes=9, random_state=0
    )
    model = RandomForestClassifier(n_estimators=200, random_state=0)
    frame = _frame(X)

    built = _compare(model.fit(frame, y), frame, _fresh(X).tolist())

    # base 201: 201 ** 6 < 2 ** 53 < 201 ** 7, so six classes to a target.
    assert _ensemble(built)["n_targets"] == 2


def test_leaves_with_fractions_like_a_third_keep_one_target_per_class() -> None:
    X, y = make_classification(n_samples=600, n_features=8, random_state=0)
    model = RandomForestClassifier(n_estimators=25, max_depth=3, random_state=0)
    frame = _frame(X)

    built = _compare(model.fit(frame, y), frame, _fresh(X).tolist())

    ensemble = _ensemble(built)
    assert ensemble["n_targets"] == 2
    assert len(ensemble["nodes_featureids"]) == 2 * _internal_nodes(model)


def test_tied_votes_go_to_the_first_class_as_in_scikit_learn() -> None:
    """Two trees: wherever they disagree both classes get exactly 0.5, and
    scikit-learn answers the first; the twin's sums are exact, so it does too."""
    X, y = make_classification(n_samples=400, n_features=6, random_state=3)
    model = RandomForestClassifier(n_estimators=2, random_state=0)
    frame = _frame(X)
    rows = _fresh(X)
    model.fit(frame, y)
    tied = model.predict_proba(_frame(rows))[:, 0] == 0.5
    assert tied.sum() > 50  # the rows do test ties

    built = _compare(model, frame, rows[tied].tolist())

    assert _ensemble(built)["n_targets"] == 1


def test_a_tree_with_string_classes_and_a_pipeline_with_missing_and_unseen() -> None:
    """The canonical pipeline (imputed numbers, one-hot text) in front of a tree
    with string labels: fresh rows with missing values and an unseen plan."""
    rng = np.random.default_rng(5)
    n = 400
    frame = pd.DataFrame(
        {
            "income": rng.normal(50, 12, n),
            "age": rng.integers(18, 80, n).astype(float),
            "plan": rng.choice(["basic", "standard", "premium"], n),
            "region": rng.choice(["north", "south", "east"], n),
        }
    )
    frame.loc[::7, "income"] = np.nan
    frame.loc[2::9, "plan"] = np.nan
    y = np.where((frame.income.fillna(50) > 50) ^ (frame.plan == "basic"), "yes", "no")
    model = make_pipeline(
        ColumnTransformer(
            [
                (
                    "num",
                    make_pipeline(SimpleImputer(), StandardScaler()),
                    ["income", "age"],
                ),
                ("cat", OneHotEncoder(handle_unknown="ignore"), ["plan", "region"]),
            ]
        ),
        DecisionTreeClassifier(random_state=0),
    ).fit(frame, y)
    rows = [
        [None, 30.0, "basic", "north"],
        [75.5, 40.0, "gold", "south"],  # a plan the model never saw
        [41.0, 66.0, None, "east"],
        [52.0, 23.0, "premium", "north"],
        [63.0, 35.0, "standard", "south"],
    ]

    built = _compare(model, frame, rows)

    assert built.facts["input"]["encoding"] == "codes"
    assert _ensemble(built)["n_targets"] == 1


def test_regression_forest_values_stay_within_tolerance() -> None:
    X, y = make_regression(n_samples=300, n_features=5, random_state=1)
    model = RandomForestRegressor(n_estimators=20, random_state=0).fit(X, y)
    built = build_twin(model, X)
    assert isinstance(built, Twin), built
    rows = _fresh(X)

    (values,) = session(built.data).run(None, {"X": rows})

    assert np.abs(values.ravel() - model.predict(rows)).max() <= 1e-6


def test_packing_holds_only_fractions_it_can_sum_exactly() -> None:
    pure = np.array([[1.0, 0.0], [0.0, 1.0]])
    quarters = np.array([[0.25, 0.75], [0.5, 0.5]])
    thirds = np.array([[1 / 3, 2 / 3]])
    short = np.array([[0.5, 0.25]])  # fractions that do not sum to 1

    assert packing([pure], 100) is not None
    assert packing([pure], 100).base == 101  # type: ignore[union-attr]
    quarter = packing([quarters, pure], 10)
    assert quarter is not None and (quarter.scale, quarter.base) == (4, 41)
    assert packing([thirds], 10) is None
    assert packing([short], 10) is None
    # Two classes' digits must fit below 2 ** 53 in one target.
    too_many = int(EXACT_INTEGERS**0.5)
    assert packing([pure], too_many) is None


def test_multi_output_forest_is_refused_in_one_line_naming_the_cause() -> None:
    X, y = make_classification(n_samples=200, n_features=4, random_state=0)
    model = RandomForestClassifier(n_estimators=5, random_state=0)
    model.fit(X, np.column_stack([y, 1 - y]))

    built = build_twin(model, X)

    assert isinstance(built, NoTwin)
    assert "\n" not in built.reason
    assert "multi-output trees get no twin" in built.reason


@pytest.mark.parametrize("n_estimators", [1, 3])
def test_single_and_few_tree_forests_keep_scikit_learns_probabilities(
    n_estimators: int,
) -> None:
    X, y = load_iris(return_X_y=True)
    model = RandomForestClassifier(n_estimators=n_estimators, random_state=1)
    frame = _frame(X)

    _compare(model.fit(frame, y), frame, _fresh(X).tolist())
