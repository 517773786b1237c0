"""train/twin/hist_gradient_boosting.py: HistGradientBoosting's twin answers as
its own predict does, missing values and categories included."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from typing import Any

import numpy as np
import pandas as pd
import pytest
from onnx import load_model_from_string
from sklearn._loss.link import IdentityLink
from sklearn._loss.loss import HalfSquaredError
from sklearn.datasets import load_breast_cancer, load_diabetes, load_iris
from sklearn.ensemble import (
    HistGradientBoostingClassifier,
    HistGradientBoostingRegressor,
)
from threadpoolctl import threadpool_limits

from skserve.schema import InputSchema
from train.schema import accepted_rows, infer_schema, to_table
from train.twin import NoTwin, Twin, build_twin, gate
from train.twin.common import session
from train.twin.encoding import encoded

UNSEEN = "never-seen"  # a category no model below was fitted with


@pytest.fixture(autouse=True, scope="module")
def _one_openmp_thread() -> Iterator[None]:
    """HistGradientBoosting fits and predicts with OpenMP; beside other test
    workers on two cores, its spinning threads make each test several times
    slower (measured: 23 s against 6 s for one build)."""
    with threadpool_limits(limits=1, user_api="openmp"):
        yield


def _twin(model: Any, frame: pd.DataFrame) -> tuple[Twin, InputSchema]:
    """The twin built as the trainer builds it: schema and typed reference rows
    from the training frame."""
    schema = infer_schema(model, frame)
    table = to_table(accepted_rows(frame, schema), schema)
    built = build_twin(model, table, schema=schema)
    assert isinstance(built, Twin), built
    return built, schema


def _fresh(frame: pd.DataFrame, count: int = 3_000, seed: int = 2026) -> pd.DataFrame:
    """Rows the gate never saw: numbers spread twice as wide, known categories,
    an unseen one, and every column missing in some rows (the last row in all)."""
    rng = np.random.default_rng(seed)
    data: dict[str, Any] = {}
    for name, column in frame.items():
        if isinstance(column.dtype, pd.CategoricalDtype) or column.dtype == object:
            known = sorted(column.dropna().unique())
            values = np.array([*known, UNSEEN], dtype=object)[
                rng.integers(len(known) + 1, size=count)
            ]
        else:
            centre, spread = column.mean(), column.std()
            values = rng.normal(centre, 2 * spread, count).astype(object)
        values[rng.random(count) < 0.1] = None
        values[-1] = None
        data[name] = values
    return pd.DataFrame(data)


def _as_trained(rows: pd.DataFrame, frame: pd.DataFrame) -> pd.DataFrame:
    """`rows` with the training frame's dtypes (a category column keeps the
    training categories: an unseen value is missing, as pandas makes it)."""
    typed = {}
    for name, column in frame.items():
        values = rows[name]
        if isinstance(column.dtype, pd.CategoricalDtype):
            typed[name] = pd.Categorical(values, categories=column.cat.categories)
        elif column.dtype == object:  # strings: an unseen one reaches the model
            typed[name] = values.astype(object).where(values.notna(), np.nan)
        else:
            typed[name] = pd.to_numeric(values).astype(np.float64)
    return pd.DataFrame(typed)


def _run_twin(built: Twin, schema: InputSchema, rows: pd.DataFrame) -> list[Any]:
    """The twin's outputs for `rows` as the function sends them (JSON values,
    encoded: NaN for missing, -1 for an unseen category)."""
    json_rows = [
        [None if v is None or (isinstance(v, float) and np.isnan(v)) else v for v in r]
        for r in rows.itertuples(index=False)
    ]
    matrix = encoded(to_table(json_rows, schema), schema)
    return session(built.data).run(None, {"X": matrix})


def _assert_classifier_matches(
    model: Any, built: Twin, schema: InputSchema, frame: pd.DataFrame
) -> None:
    rows = _fresh(frame)
    labels, probabilities = _run_twin(built, schema, rows)
    truth = _as_trained(rows, frame)
    assert labels.tolist() == model.predict(truth).tolist()
    assert probabilities.dtype == np.float64
    assert np.abs(probabilities - model.predict_proba(truth)).max() <= 1e-6


def _assert_regressor_matches(
    model: Any, built: Twin, schema: InputSchema, frame: pd.DataFrame
) -> None:
    rows = _fresh(frame)
    (values,) = _run_twin(built, schema, rows)
    assert values.dtype == np.float64
    expected = model.predict(_as_trained(rows, frame))
    assert np.abs(values.ravel() - expected).max() <= 1e-6


def _mixed(n: int = 400, seed: int = 1) -> pd.DataFrame:
    """The issue's mixed rows: two numbers (income missing in every eighth row),
    two categories."""
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(
        {
            "income": rng.normal(50, 12, n),
            "age": rng.integers(18, 80, n).astype(float),
            "plan": rng.choice(["basic", "standard", "premium"], n),
            "region": rng.choice(["north", "south", "east"], n),
        }
    )
    frame.loc[::8, "income"] = np.nan
    return frame.astype({"plan": "category", "region": "category"})


def _mixed_target(frame: pd.DataFrame) -> np.ndarray:
    return (
        (frame.income.fillna(50) > 50) ^ (frame.plan.astype(object) == "basic")
    ).to_numpy(dtype=int)


@pytest.fixture(scope="module")
def categorical() -> tuple[Any, pd.DataFrame, Twin, InputSchema]:
    frame = _mixed()
    model = HistGradientBoostingClassifier(
        categorical_features="from_dtype", random_state=0
    ).fit(frame, _mixed_target(frame))
    built, schema = _twin(model, frame)
    return model, frame, built, schema


def test_binary_classifier_with_missing_values_matches_predict_proba() -> None:
    frame, target = load_breast_cancer(return_X_y=True, as_frame=True)
    rng = np.random.default_rng(0)
    frame = frame.mask(rng.random(frame.shape) < 0.05)
    model = HistGradientBoostingClassifier(random_state=0).fit(frame, target)
    built, schema = _twin(model, frame)
    assert built.facts["parity"]["rows"]["thresholds"] > 0
    _assert_classifier_matches(model, built, schema, frame)


def test_regressor_matches_predict_on_fresh_rows_with_missing_values() -> None:
    frame, target = load_diabetes(return_X_y=True, as_frame=True)
    model = HistGradientBoostingRegressor(random_state=0).fit(frame, target)
    built, schema = _twin(model, frame)
    _assert_regressor_matches(model, built, schema, frame)


def test_regressor_trained_with_missing_values_matches_predict() -> None:
    frame, target = load_diabetes(return_X_y=True, as_frame=True)
    frame = frame.mask(np.random.default_rng(3).random(frame.shape) < 0.15)
    model = HistGradientBoostingRegressor(max_iter=60, random_state=0)
    model.fit(frame, target)
    built, schema = _twin(model, frame)
    assert built.facts["parity"]["max_abs_difference"] <= 1e-6
    _assert_regressor_matches(model, built, schema, frame)


def test_categorical_classifier_matches_on_unseen_and_missing_categories(
    categorical: Any,
) -> None:
    model, frame, built, schema = categorical
    assert [c.kind for c in schema.columns] == ["number", "number"] + ["category"] * 2
    assert built.facts["input"]["encoding"] == "codes"
    _assert_classifier_matches(model, built, schema, frame)


def test_categorical_splits_are_set_membership_nodes(categorical: Any) -> None:
    _, _, built, _ = categorical
    graph = load_model_from_string(built.data).graph
    (ensemble,) = [node for node in graph.node if node.op_type == "TreeEnsemble"]
    modes = next(a for a in ensemble.attribute if a.name == "nodes_modes")
    assert 6 in np.frombuffer(modes.t.raw_data, dtype=np.uint8)  # BRANCH_MEMBER


def test_unseen_category_follows_the_missing_branch_as_in_scikit_learn(
    categorical: Any,
) -> None:
    """HistGradientBoosting treats an unknown category as missing: the twin's
    -1 and NaN codes answer alike, and as scikit-learn does for both."""
    model, frame, built, schema = categorical
    rows = frame.head(50).astype(object)
    rows["plan"] = UNSEEN
    unseen = _run_twin(built, schema, rows)
    rows["plan"] = None
    missing = _run_twin(built, schema, rows)
    assert unseen[0].tolist() == missing[0].tolist()
    assert np.array_equal(unseen[1], missing[1])
    truth = _as_trained(rows, frame)
    assert unseen[0].tolist() == model.predict(truth).tolist()
    assert np.abs(unseen[1] - model.predict_proba(truth)).max() <= 1e-6


def test_string_column_listed_as_categorical_matches_on_unseen_strings() -> None:
    """Strings in an object column, named in categorical_features: the model's
    own encoder makes an unseen string and None missing; so does the twin."""
    rng = np.random.default_rng(8)
    n = 500
    frame = pd.DataFrame(
        {
            "x": rng.normal(0, 1, n),
            "plan": rng.choice(["basic", "premium", "standard"], n).astype(object),
        }
    )
    frame.loc[::7, "plan"] = None
    target = ((frame.x > 0) ^ (frame.plan == "premium")).to_numpy(dtype=int)
    model = HistGradientBoostingClassifier(
        categorical_features=["plan"], random_state=0
    ).fit(frame, target)
    built, schema = _twin(model, frame)
    assert schema.columns[1].categories == ("basic", "premium", "standard")
    _assert_classifier_matches(model, built, schema, frame)


def test_multiclass_with_string_labels_matches_softmax_and_argmax() -> None:
    frame, target = load_iris(return_X_y=True, as_frame=True)
    frame = frame.mask(np.random.default_rng(5).random(frame.shape) < 0.1)
    labels = np.array(["setosa", "versicolor", "virginica"])[target]
    model = HistGradientBoostingClassifier(max_iter=50, random_state=0)
    model.fit(frame, labels)
    built, schema = _twin(model, frame)
    _assert_classifier_matches(model, built, schema, frame)


def test_multiclass_with_many_categories_matches_predict_proba() -> None:
    """60 categories: onnxruntime tests large sets differently from small ones."""
    rng = np.random.default_rng(7)
    n = 900
    frame = pd.DataFrame(
        {
            "x": rng.normal(0, 1, n),
            "city": rng.choice([f"c{i:02d}" for i in range(60)], n),
        }
    )
    frame.loc[::13, "city"] = None
    frame = frame.astype({"city": "category"})
    codes = frame.city.cat.codes.to_numpy()
    target = np.where(codes < 0, 0, (codes * 7 + (frame.x > 0)) % 3)
    model = HistGradientBoostingClassifier(
        categorical_features="from_dtype", max_iter=40, random_state=0
    ).fit(frame, target)
    built, schema = _twin(model, frame)
    assert built.facts["parity"]["rows"]["categories"] == 62  # 60, unseen, missing
    _assert_classifier_matches(model, built, schema, frame)


def _integer_coded(n: int = 600, seed: int = 11) -> tuple[pd.DataFrame, np.ndarray]:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(
        {
            "x": rng.normal(0, 1, n),
            "code": rng.integers(0, 6, n).astype(float),
            "grade": rng.choice([1.0, 2.0, 3.0, 7.0], n),
        }
    )
    frame.loc[::9, "x"] = np.nan
    frame.loc[::11, "code"] = np.nan
    target = (frame.x.fillna(0) > 0) ^ frame.code.isin([1, 4]) ^ (frame.grade == 7)
    return frame, target.to_numpy(dtype=int)


def _with_unseen_codes(rows: pd.DataFrame) -> pd.DataFrame:
    """Codes as the function would get them: known ones, unseen whole numbers
    (HistGradientBoosting's encoder makes them missing) and missing."""
    rng = np.random.default_rng(99)
    rows = rows.copy()
    rows["code"] = rng.choice([0, 1, 2, 3, 4, 5, 6, 9, np.nan], len(rows))
    rows["grade"] = rng.choice([1, 2, 3, 7, 4, 0, np.nan], len(rows))
    rows.iloc[-1] = np.nan
    return rows


def test_integer_coded_categorical_features_route_unseen_codes_as_missing() -> None:
    frame, target = _integer_coded()
    model = HistGradientBoostingClassifier(
        categorical_features=["code", "grade"], random_state=0
    ).fit(frame, target)
    built, schema = _twin(model, frame)
    assert schema.columns[1].categories == (0, 1, 2, 3, 4, 5)
    rows = _with_unseen_codes(_fresh(frame).astype(np.float64))
    labels, probabilities = _run_twin(built, schema, rows)
    assert labels.tolist() == model.predict(rows).tolist()
    assert np.abs(probabilities - model.predict_proba(rows)).max() <= 1e-6


def test_integer_coded_categorical_features_of_an_array_match_predict() -> None:
    frame, target = _integer_coded(seed=12)
    matrix = frame.to_numpy(dtype=np.float64)
    model = HistGradientBoostingRegressor(
        categorical_features=[1, 2], random_state=0
    ).fit(matrix, target + frame.grade.to_numpy())
    schema = infer_schema(model)
    table = to_table(accepted_rows(pd.DataFrame(matrix), schema), schema)
    built = build_twin(model, table, schema=schema)
    assert isinstance(built, Twin), built
    rows = _with_unseen_codes(_fresh(frame).astype(np.float64)).to_numpy()
    (values,) = session(built.data).run(None, {"X": rows})
    assert np.abs(values.ravel() - model.predict(rows)).max() <= 1e-6


@pytest.mark.parametrize("loss", ["poisson", "gamma", "quantile", "absolute_error"])
def test_regressor_losses_predict_through_their_link(loss: str) -> None:
    frame, target = load_diabetes(return_X_y=True, as_frame=True)
    frame = frame.mask(np.random.default_rng(4).random(frame.shape) < 0.05)
    quantile = 0.8 if loss == "quantile" else None
    model = HistGradientBoostingRegressor(
        loss=loss, quantile=quantile, max_iter=50, random_state=0
    )
    model.fit(frame, target)
    built, schema = _twin(model, frame)
    _assert_regressor_matches(model, built, schema, frame)


def test_gate_threshold_rows_hold_numeric_splits_in_input_columns(
    categorical: Any,
) -> None:
    """The predictors read the categorical columns first; the gate's threshold
    rows must land on the input columns the splits are about."""
    model, _, _, _ = categorical
    splits = gate._splits_of(model)
    assert sorted(splits) == [0, 1]  # income, age: never plan or region
    nodes = np.concatenate([p.nodes for it in model._predictors for p in it])
    numeric = (nodes["is_leaf"] == 0) & (nodes["is_categorical"] == 0)
    order = list(model._preprocessor._transformer_to_input_indices["encoder"])
    income = len(order)  # the first numeric column after the encoded ones
    expected = nodes["num_threshold"][numeric & (nodes["feature_idx"] == income)]
    assert sorted(splits[0].tolist()) == sorted(expected.tolist())


class _SinhLink(IdentityLink):
    """A link the twin does not know."""

    def inverse(self, raw_prediction: Any, out: Any = None) -> Any:
        return np.sinh(raw_prediction)


class _SinhLoss(HalfSquaredError):
    def __init__(self, sample_weight: Any = None) -> None:
        super().__init__(sample_weight=sample_weight)
        self.link = _SinhLink()


def test_regressor_with_an_unknown_link_gets_a_one_line_refusal() -> None:
    frame, target = load_diabetes(return_X_y=True, as_frame=True)
    model = HistGradientBoostingRegressor(loss=_SinhLoss(), max_iter=5)
    model.fit(frame, target / 100)
    schema = infer_schema(model, frame)
    refused = build_twin(
        model, to_table(accepted_rows(frame, schema), schema), schema=schema
    )
    assert isinstance(refused, NoTwin)
    assert "\n" not in refused.reason
    assert "_SinhLink" in refused.reason and "_SinhLoss" in refused.reason


def test_schema_categories_unlike_the_encoders_get_a_one_line_refusal(
    categorical: Any,
) -> None:
    """Codes are indices among the schema's categories: in another order they
    would name other categories than the model's encoder learned."""
    model, frame, _, schema = categorical
    plan = schema.columns[2]
    reordered = dataclasses.replace(plan, categories=tuple(reversed(plan.categories)))
    columns = (*schema.columns[:2], reordered, *schema.columns[3:])
    other = dataclasses.replace(schema, columns=columns)
    table = to_table(accepted_rows(frame, schema), schema)
    refused = build_twin(model, table, schema=other)
    assert isinstance(refused, NoTwin)
    assert "\n" not in refused.reason
    assert "'plan'" in refused.reason and "categories" in refused.reason
