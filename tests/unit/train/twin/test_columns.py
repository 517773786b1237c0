"""train.twin.columns: ColumnTransformer pipelines get float64 twins that read
strings as category codes: imputed, one-hot and ordinal encoded exactly as
scikit-learn does, unseen categories and missing values included."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import RandomForestClassifier
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import (
    MinMaxScaler,
    OneHotEncoder,
    OrdinalEncoder,
    StandardScaler,
)

from train.schema import accepted_rows, infer_schema, to_table
from train.twin import NoTwin, Twin, build_twin
from train.twin.common import session
from train.twin.encoding import encoded, model_input


def _customers(n: int = 300) -> tuple[pd.DataFrame, np.ndarray]:
    rng = np.random.default_rng(5)
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
    y = ((frame.income.fillna(50) > 50) ^ (frame.plan == "basic")).astype(int)
    return frame, y.to_numpy()


FRESH = [
    {"income": None, "age": 30.0, "plan": "basic", "region": "north"},
    {"income": 75.5, "age": None, "plan": "gold", "region": "south"},
    {"income": 41.0, "age": 66.0, "plan": None, "region": "east"},
    {"income": 52.0, "age": 23.0, "plan": "premium", "region": "west"},
]


def _twin(model: Any, frame: pd.DataFrame) -> tuple[Twin, Any]:
    schema = infer_schema(model, frame)
    built = build_twin(
        model, to_table(accepted_rows(frame, schema), schema), schema=schema
    )
    assert isinstance(built, Twin), built
    return built, schema


def _compare(model: Any, frame: pd.DataFrame, rows: list[dict[str, Any]]) -> None:
    """The twin's answers on `rows` equal the model's own on their DataFrame."""
    built, schema = _twin(model, frame)
    usable = [r for r in rows if accepted_rows(pd.DataFrame([r]), schema)]
    table = to_table([[r[c] for c in schema.names] for r in usable], schema)
    outputs = session(built.data).run(None, {"X": encoded(table, schema)})
    X = model_input(model, table, schema)
    if hasattr(model, "predict_proba"):
        assert outputs[0].tolist() == model.predict(X).tolist()
        assert np.abs(outputs[1] - model.predict_proba(X)).max() <= 1e-6
    else:
        assert np.abs(outputs[0].ravel() - model.predict(X)).max() <= 1e-6
    assert built.facts["input"]["encoding"] == "codes"


def _pipeline(categorical: Any, final: Any, numeric: Any = None) -> Any:
    numeric = numeric or make_pipeline(SimpleImputer(), StandardScaler())
    return make_pipeline(
        ColumnTransformer(
            [
                ("num", numeric, ["income", "age"]),
                ("cat", categorical, ["plan", "region"]),
            ]
        ),
        final,
    )


def test_the_canonical_pipeline_answers_missing_and_unseen_values_as_fitted() -> None:
    frame, y = _customers()
    model = _pipeline(OneHotEncoder(handle_unknown="ignore"), LogisticRegression())

    _compare(model.fit(frame, y), frame, FRESH)


def test_a_forest_behind_the_pipeline_gets_a_twin_too() -> None:
    frame, y = _customers()
    model = _pipeline(
        OneHotEncoder(handle_unknown="ignore"),
        RandomForestClassifier(n_estimators=20, random_state=0),
    )

    _compare(model.fit(frame, y), frame, FRESH)


def test_strings_imputed_with_their_most_frequent_value() -> None:
    frame, y = _customers()
    categorical = make_pipeline(
        SimpleImputer(strategy="most_frequent"),
        OneHotEncoder(handle_unknown="ignore", drop="first"),
    )
    model = _pipeline(categorical, LogisticRegression()).fit(frame, y)

    _compare(model, frame, FRESH)


def test_ordinal_codes_with_an_unknown_value_and_min_max_scaled_numbers() -> None:
    frame, y = _customers()
    categorical = make_pipeline(
        SimpleImputer(strategy="constant", fill_value="none"),
        OrdinalEncoder(handle_unknown="use_encoded_value", unknown_value=-1),
    )
    numeric = make_pipeline(SimpleImputer(strategy="median"), MinMaxScaler())
    model = _pipeline(categorical, Ridge(), numeric).fit(frame, y.astype(float))

    _compare(model, frame, FRESH)


def test_missing_numbers_are_imputed_and_flagged_with_add_indicator() -> None:
    frame, y = _customers()
    numeric = make_pipeline(SimpleImputer(add_indicator=True), StandardScaler())
    categorical = OneHotEncoder(handle_unknown="ignore")
    model = _pipeline(categorical, LogisticRegression(), numeric).fit(frame, y)

    _compare(model, frame, FRESH)


def test_remaining_columns_pass_through_by_position() -> None:
    frame, y = _customers()
    complete = frame.fillna({"income": 50.0, "plan": "basic"})
    model = make_pipeline(
        ColumnTransformer(
            [("cat", OneHotEncoder(handle_unknown="ignore"), ["plan"])],
            remainder="passthrough",
        ),
        LogisticRegression(max_iter=1000),
    ).fit(complete[["plan", "income", "age"]], y)

    rows = [{"plan": "gold", "income": 50.5, "age": 40.0}]
    _compare(model, complete[["plan", "income", "age"]], rows)


def _refused(model: Any, frame: pd.DataFrame) -> str:
    schema = infer_schema(model, frame)
    built = build_twin(
        model, to_table(accepted_rows(frame, schema), schema), schema=schema
    )
    assert isinstance(built, NoTwin)
    assert "\n" not in built.reason
    return built.reason


def test_infrequent_categories_are_refused_in_one_line() -> None:
    frame, y = _customers()
    encode = OneHotEncoder(handle_unknown="infrequent_if_exist", min_frequency=0.4)
    model = _pipeline(encode, LogisticRegression()).fit(frame, y)

    assert _refused(model, frame) == (
        "cannot convert Pipeline to ONNX: NotImplementedError: OneHotEncoder with "
        "infrequent categories"
    )


def test_ordinal_codes_of_numbers_are_refused_in_one_line() -> None:
    frame, y = _customers()
    complete = frame.fillna({"income": 50.0, "age": 40.0, "plan": "basic"})
    model = make_pipeline(
        ColumnTransformer(
            [
                ("age", OrdinalEncoder(), ["age"]),
                ("cat", OneHotEncoder(handle_unknown="ignore"), ["plan", "region"]),
            ]
        ),
        LogisticRegression(),
    ).fit(complete, y)

    assert _refused(model, complete).endswith("OrdinalEncoder of numbers")


def test_free_text_columns_get_no_twin() -> None:
    from dataclasses import replace

    frame, y = _customers()
    model = _pipeline(OneHotEncoder(handle_unknown="ignore"), LogisticRegression())
    schema = infer_schema(model.fit(frame, y), frame)
    columns = list(schema.columns)
    columns[3] = replace(columns[3], categories=None)
    free = type(schema)(tuple(columns), schema.format, schema.named)

    built = build_twin(model, to_table(accepted_rows(frame, free), free), schema=free)

    assert isinstance(built, NoTwin)
    assert built.reason == (
        "Pipeline takes free text in 'region' (no known categories); twins take "
        "numbers and categories"
    )
