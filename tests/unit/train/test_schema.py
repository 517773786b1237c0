"""train.schema: the schema is what the fitted model and the data show, and
each promise in it (missing values, unknown categories, a float array) was
proved on the model itself before publishing."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.cluster import KMeans
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import (
    HistGradientBoostingClassifier,
    IsolationForest,
    RandomForestClassifier,
)
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder, OrdinalEncoder, StandardScaler

from skserve.schema import Column, InputSchema
from train.schema import (
    SchemaError,
    correct,
    describe_schema,
    example_row,
    infer_schema,
    read_schema_file,
    settle,
)


@pytest.fixture(scope="module")
def frame() -> tuple[pd.DataFrame, np.ndarray]:
    """Customers: NaN in the numbers, strings in the categorical columns."""
    rng = np.random.default_rng(0)
    n = 200
    data = pd.DataFrame(
        {
            "income": rng.normal(50, 10, n),
            "age": rng.integers(18, 80, n).astype(float),
            "plan": rng.choice(["basic", "standard", "premium"], n),
            "region": rng.choice(["n", "s"], n),
        }
    )
    data.loc[::9, "income"] = np.nan
    y = ((data.income.fillna(50) > 50) ^ (data.plan == "basic")).astype(int)
    return data, y.to_numpy()


def _canonical(**categorical: Any) -> Any:
    """scikit-learn's documented mixed-type pipeline."""
    encode = categorical.pop("encode", OneHotEncoder(handle_unknown="ignore"))
    return make_pipeline(
        ColumnTransformer(
            [
                (
                    "num",
                    make_pipeline(SimpleImputer(), StandardScaler()),
                    ["income", "age"],
                ),
                ("cat", encode, ["plan", "region"]),
            ]
        ),
        LogisticRegression(),
    )


def test_the_canonical_pipeline_takes_a_dataframe_of_strings_and_imputed_numbers(
    frame: tuple[pd.DataFrame, np.ndarray],
) -> None:
    data, y = frame
    model = _canonical().fit(data, y)

    schema = infer_schema(model, data)

    assert schema.format == "dataframe" and schema.named
    assert schema.to_json()["columns"] == [
        {"name": "income", "kind": "number", "nullable": True},
        {"name": "age", "kind": "number", "nullable": True},
        {
            "name": "plan",
            "kind": "string",
            "nullable": False,
            "categories": ["basic", "premium", "standard"],
            "unknown": True,
        },
        {
            "name": "region",
            "kind": "string",
            "nullable": False,
            "categories": ["n", "s"],
            "unknown": True,
        },
    ]


def test_a_model_alone_without_data_shows_the_same_schema(
    frame: tuple[pd.DataFrame, np.ndarray],
) -> None:
    data, y = frame
    model = _canonical().fit(data, y)

    assert infer_schema(model) == infer_schema(model, data)


def test_imputed_categories_may_be_missing_and_refused_unknowns_are_refused(
    frame: tuple[pd.DataFrame, np.ndarray],
) -> None:
    data, y = frame
    encode = make_pipeline(SimpleImputer(strategy="most_frequent"), OrdinalEncoder())
    model = _canonical(encode=encode).fit(data, y)

    plan = infer_schema(model, data).columns[2]

    assert plan.nullable and plan.kind == "string"
    assert plan.refuses_unknown


def test_hist_gradient_boosting_takes_missing_numbers_as_a_float_array(
    frame: tuple[pd.DataFrame, np.ndarray],
) -> None:
    data, y = frame
    numbers = data[["income", "age"]]
    model = HistGradientBoostingClassifier(max_iter=20).fit(numbers, y)

    schema = infer_schema(model, numbers)

    assert schema.format == "array"
    assert [(c.kind, c.nullable) for c in schema.columns] == [("number", True)] * 2


def test_hist_gradient_boostings_pandas_categories_are_category_columns(
    frame: tuple[pd.DataFrame, np.ndarray],
) -> None:
    data, y = frame
    typed = data.astype({"plan": "category", "region": "category"})
    model = HistGradientBoostingClassifier(
        max_iter=20, categorical_features="from_dtype"
    ).fit(typed, y)

    for given in (typed, None):
        schema = infer_schema(model, given)
        plan = schema.columns[2]
        assert schema.format == "dataframe"
        assert plan.kind == "category" and plan.nullable and plan.unknown
        assert plan.categories == ("basic", "premium", "standard")


def test_a_forest_fitted_on_a_complete_dataframe_takes_complete_float_rows(
    frame: tuple[pd.DataFrame, np.ndarray],
) -> None:
    data, y = frame
    numbers = data[["income", "age"]].fillna(0)
    model = RandomForestClassifier(n_estimators=5, random_state=0).fit(numbers, y)

    schema = infer_schema(model, numbers)

    assert schema.format == "array" and schema.strict_numeric
    assert schema.names == ["income", "age"]


def test_a_forest_trained_with_missing_values_may_be_given_them(
    frame: tuple[pd.DataFrame, np.ndarray],
) -> None:
    data, y = frame
    numbers = data[["income", "age"]]
    model = RandomForestClassifier(n_estimators=5, random_state=0).fit(numbers, y)

    schema = infer_schema(model, numbers)

    assert [c.nullable for c in schema.columns] == [True, False]


@pytest.mark.parametrize(
    "model", [KMeans(3, n_init=1, random_state=0), IsolationForest(random_state=0)]
)
def test_clusterers_and_outlier_detectors_get_numeric_schemas(model: Any) -> None:
    X = np.random.default_rng(1).normal(size=(50, 3))

    schema = infer_schema(model.fit(X))

    assert schema.names == ["x0", "x1", "x2"] and not schema.named
    assert schema.strict_numeric and schema.format == "array"


def test_names_from_a_csv_label_a_model_fitted_on_an_array() -> None:
    X = np.random.default_rng(1).normal(size=(50, 2))
    model = LogisticRegression().fit(X, X[:, 0] > 0)

    schema = infer_schema(model, names=["rooms", "area"])

    assert schema.names == ["rooms", "area"] and schema.named
    assert schema.format == "array"


def test_an_example_row_is_typical_not_a_real_row(
    frame: tuple[pd.DataFrame, np.ndarray],
) -> None:
    data, y = frame
    schema = infer_schema(_canonical().fit(data, y), data)

    example = example_row(schema, data)

    assert example[0] == pytest.approx(data.income.median(), rel=1e-5)
    assert example[1] == data.age.median()
    assert example[2:] == [data.plan.mode()[0], data.region.mode()[0]]
    assert not (data == example).all(axis=1).any()


def test_the_cli_shows_each_columns_promises(
    frame: tuple[pd.DataFrame, np.ndarray],
) -> None:
    data, y = frame
    schema = infer_schema(_canonical().fit(data, y), data)

    lines = describe_schema(schema)

    assert (
        lines[0] == "input schema: the model takes a pandas DataFrame of these columns"
    )
    assert lines[1].split() == ["income", "number,", "may", "be", "missing"]
    assert "categories basic, premium, standard (others accepted)" in lines[3]


def test_plain_numbers_are_one_line() -> None:
    lines = describe_schema(InputSchema.numeric(3, None))

    assert lines == [
        "input schema: 3 numbers (unnamed), none may be missing; the model takes a "
        "float array"
    ]


# --- corrections from a schema file


def _fitted(frame: tuple[pd.DataFrame, np.ndarray]) -> tuple[Any, InputSchema]:
    data, y = frame
    model = _canonical().fit(data, y)
    return model, infer_schema(model, data)


def test_a_correction_the_model_honours_is_kept(
    frame: tuple[pd.DataFrame, np.ndarray],
) -> None:
    model, schema = _fitted(frame)
    corrections = {"columns": {"plan": {"unknown": False}}}

    corrected = settle(model, correct(schema, corrections, "f.json"), frame[0])

    assert corrected.columns[2].refuses_unknown
    assert corrected.columns[3] == schema.columns[3]


@pytest.mark.parametrize(
    ("corrections", "problem"),
    [
        ({"columns": {"colour": {}}}, "names columns the model does not have: colour"),
        ({"columns": {"plan": {"kind": "text"}}}, "choose one of number, integer"),
        ({"columns": {"plan": {"shade": 1}}}, "must be an object of kind, nullable"),
        ({"format": "csv"}, "format must be array or dataframe"),
    ],
)
def test_a_correction_that_contradicts_the_model_is_refused(
    frame: tuple[pd.DataFrame, np.ndarray], corrections: dict[str, Any], problem: str
) -> None:
    model, schema = _fitted(frame)

    with pytest.raises(SchemaError) as raised:
        settle(model, correct(schema, corrections, "f.json"), frame[0])

    assert problem in raised.value.message


def test_a_column_corrected_to_missing_must_be_one_the_model_takes_missing() -> None:
    X = np.random.default_rng(1).normal(size=(40, 2))
    model = LogisticRegression().fit(X, X[:, 0] > 0)
    schema = infer_schema(model, names=["a", "b"])

    corrected = correct(schema, {"columns": {"b": {"nullable": True}}}, "f.json")
    with pytest.raises(SchemaError) as raised:
        settle(model, corrected, None)

    assert raised.value.message.startswith(
        "the schema says 'b' may be missing, but the model refuses it missing "
        "(ValueError: Input X contains NaN."
    )


def test_an_ignored_unknown_category_may_be_corrected_to_missing(
    frame: tuple[pd.DataFrame, np.ndarray],
) -> None:
    """OneHotEncoder(handle_unknown="ignore") encodes a missing value as it does
    an unknown one: all zeros. The model takes it, so the correction holds."""
    model, schema = _fitted(frame)

    corrected = correct(schema, {"columns": {"plan": {"nullable": True}}}, "f.json")

    assert settle(model, corrected, frame[0]).columns[2].nullable


def test_a_float_array_is_refused_for_a_model_that_selects_columns_by_name(
    frame: tuple[pd.DataFrame, np.ndarray],
) -> None:
    data, y = frame
    numbers = data[["income", "age"]]
    model = make_pipeline(
        ColumnTransformer([("num", SimpleImputer(), ["income", "age"])]),
        LogisticRegression(),
    ).fit(numbers, y)
    schema = infer_schema(model, numbers)
    assert schema.format == "dataframe"

    forced = correct(schema, {"format": "array"}, "f.json")
    with pytest.raises(SchemaError, match="refuses one or answers it differently"):
        settle(model, forced, numbers, fixed_format=True)


def test_a_schema_file_must_be_a_json_object_of_corrections(tmp_path: Path) -> None:
    path = tmp_path / "schema.json"
    path.write_text(json.dumps({"columns": {"plan": {"nullable": True}}}))
    assert read_schema_file(str(path)) == {"columns": {"plan": {"nullable": True}}}

    path.write_text("[1]")
    with pytest.raises(SchemaError, match='must be a JSON object with "columns"'):
        read_schema_file(str(path))
    with pytest.raises(SchemaError, match="no such file"):
        read_schema_file(str(tmp_path / "absent.json"))


def test_a_model_that_refuses_every_row_cannot_get_a_schema() -> None:
    class Refuses(LogisticRegression):
        def predict(self, X: Any) -> Any:
            raise ValueError("never")

    X = np.random.default_rng(1).normal(size=(20, 2))
    model = Refuses().fit(X, X[:, 0] > 0)

    with pytest.raises(SchemaError, match="it refuses rows made from its own"):
        infer_schema(model)


def test_columns_of_the_same_kind_are_probed_together() -> None:
    """A model that accepts missing values in every column is asked once, not
    once per column: wide models publish in seconds."""
    X = np.random.default_rng(1).normal(size=(60, 300))
    model = HistGradientBoostingClassifier(max_iter=5).fit(X, X[:, 0] > 0)
    calls = 0
    original = model.predict

    def counted(rows: Any) -> Any:
        nonlocal calls
        calls += 1
        return original(rows)

    model.predict = counted  # type: ignore[method-assign]
    schema = infer_schema(model)

    assert all(c.nullable for c in schema.columns)
    assert calls <= 3
    assert schema.columns[0] == Column("x0", nullable=True)


@pytest.mark.parametrize("kind", ["voting", "stacking", "calibrated"])
def test_ensembles_of_pipelines_show_their_members_categories(
    frame: tuple[pd.DataFrame, np.ndarray], kind: str
) -> None:
    from sklearn.calibration import CalibratedClassifierCV
    from sklearn.ensemble import StackingClassifier, VotingClassifier

    data, y = frame
    members = [("a", _canonical()), ("b", _canonical())]
    model = {
        "voting": lambda: VotingClassifier(members, voting="soft"),
        "stacking": lambda: StackingClassifier(members),
        "calibrated": lambda: CalibratedClassifierCV(_canonical(), cv=3),
    }[kind]().fit(data, y)

    schema = infer_schema(model, data)

    assert schema.columns[2].categories == ("basic", "premium", "standard")
    assert schema.columns[0].nullable and schema.format == "dataframe"


def test_many_named_numbers_show_whole_names_then_how_many_more() -> None:
    names = [f"sepal length {i} (cm)" for i in range(6)]

    lines = describe_schema(InputSchema.numeric(6, names))

    assert lines == [
        "input schema: 6 numbers (sepal length 0 (cm), sepal length 1 (cm) and 4 "
        "more), none may be missing; the model takes a float array"
    ]
