"""POST /predict with typed rows, through the function as Google's samples call
it: strings, nulls and categories reach the model as the DataFrame it was
fitted on, answers equal its own, and everything the schema forbids is a 400
naming row, column, what was expected and what came."""

from __future__ import annotations

import json
import os
import pickle
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.cluster import KMeans
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import HistGradientBoostingClassifier, IsolationForest
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder, OrdinalEncoder, StandardScaler

from skserve.storage import open_store
from tests.support import call
from train.artifact import describe
from train.publish import publish
from train.schema import example_row, infer_schema

COLUMNS = ["income", "age", "plan", "region"]


def _customers(n: int = 200) -> tuple[pd.DataFrame, np.ndarray]:
    rng = np.random.default_rng(7)
    frame = pd.DataFrame(
        {
            "income": rng.normal(50, 10, n),
            "age": rng.integers(18, 80, n).astype(float),
            "plan": rng.choice(["basic", "standard", "premium"], n),
            "region": rng.choice(["n", "s"], n),
        }
    )
    frame.loc[::9, "income"] = np.nan
    y = ((frame.income.fillna(50) > 50) ^ (frame.plan == "basic")).astype(int)
    return frame, y.to_numpy()


def _publish(root: Path, model: Any, frame: pd.DataFrame) -> None:
    schema = infer_schema(model, frame)
    facts = {
        **describe(model),
        "input_schema": schema.to_json(),
        "example": example_row(schema, frame),
    }
    publish(open_store(str(root)), pickle.dumps(model), facts, name=root.name)


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The shapes users deploy, each published with its inferred schema."""
    root = tmp_path_factory.mktemp("typed")
    frame, y = _customers()
    numbers = frame[["income", "age"]]
    categorical = frame.astype({"plan": "category", "region": "category"})
    models = {
        "canonical": make_pipeline(
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
            LogisticRegression(),
        ).fit(frame, y),
        "strict": make_pipeline(
            ColumnTransformer(
                [
                    ("num", SimpleImputer(), ["income", "age"]),
                    ("cat", OrdinalEncoder(), ["plan", "region"]),
                ]
            ),
            LogisticRegression(),
        ).fit(frame, y),
        "hgb_categories": HistGradientBoostingClassifier(
            max_iter=30, categorical_features="from_dtype", random_state=0
        ).fit(categorical, y),
        "hgb_missing": HistGradientBoostingClassifier(max_iter=30).fit(numbers, y),
        "kmeans": KMeans(3, n_init=2, random_state=0).fit(numbers.fillna(50)),
        "isolation": IsolationForest(random_state=0).fit(numbers.fillna(50)),
    }
    inputs = {
        "canonical": frame,
        "strict": frame,
        "hgb_categories": categorical,
        "hgb_missing": numbers,
        "kmeans": numbers.fillna(50),
        "isolation": numbers.fillna(50),
    }
    for name, model in models.items():
        _publish(root / name, model, inputs[name])
    return {"root": root, "models": models, "inputs": inputs}


def _serve(store: dict[str, Any], name: str) -> Any:
    os.environ["MODEL_URI"] = str(store["root"] / name)
    return store["models"][name]


def _frame_like(rows: list[dict[str, Any]], fitted: pd.DataFrame) -> pd.DataFrame:
    """The rows as a DataFrame with the training dtypes (missing: NaN)."""
    frame = pd.DataFrame(rows, columns=list(fitted.columns))
    for name, dtype in fitted.dtypes.items():
        if isinstance(dtype, pd.CategoricalDtype):
            frame[name] = pd.Categorical(frame[name], categories=dtype.categories)
        elif dtype is np.dtype(object):
            frame[name] = frame[name].astype(object).where(frame[name].notna(), np.nan)
        else:
            frame[name] = frame[name].astype(dtype)
    return frame


ROWS = [
    {"income": None, "age": 31, "plan": "basic", "region": "n"},
    {"income": 72.5, "age": 45.0, "plan": "gold", "region": "s"},  # unseen plan
    {"income": 48.0, "age": None, "plan": "premium", "region": "n"},
]


@pytest.mark.parametrize("name", ["canonical", "hgb_categories"])
def test_named_rows_with_nulls_and_unseen_categories_get_the_models_own_answers(
    store: dict[str, Any], name: str
) -> None:
    model = _serve(store, name)

    response = call(json={"instances": ROWS, "probabilities": True})

    assert response.status_code == 200, response.get_json()
    body = response.get_json()
    expected = _frame_like(ROWS, store["inputs"][name])
    assert body["predictions"] == model.predict(expected).tolist()
    assert body["probabilities"] == model.predict_proba(expected).tolist()
    assert body["classes"] == [0, 1]


def test_positional_rows_are_the_same_rows_in_the_models_order(
    store: dict[str, Any],
) -> None:
    model = _serve(store, "canonical")
    lists = [[row[c] for c in COLUMNS] for row in ROWS]

    by_list = call(json={"instances": lists}).get_json()
    one = call(json={"features": lists[1]}).get_json()

    expected = model.predict(_frame_like(ROWS, store["inputs"]["canonical"]))
    assert by_list["predictions"] == expected.tolist()
    assert one["prediction"] == expected[1]


def test_missing_numbers_reach_hist_gradient_boosting_as_nan(
    store: dict[str, Any],
) -> None:
    model = _serve(store, "hgb_missing")
    rows = [[None, 40], [61.0, None], [None, None]]

    body = call(json={"instances": rows, "probabilities": True}).get_json()

    X = pd.DataFrame(
        [[np.nan, 40], [61.0, np.nan], [np.nan, np.nan]], columns=["income", "age"]
    )
    assert body["predictions"] == model.predict(X).tolist()
    assert body["probabilities"] == model.predict_proba(X).tolist()


def test_a_clusterer_answers_the_cluster(store: dict[str, Any]) -> None:
    model = _serve(store, "kmeans")

    body = call(json={"instances": [[50, 30], [20, 70]]}).get_json()

    X = pd.DataFrame([[50.0, 30.0], [20.0, 70.0]], columns=["income", "age"])
    assert body["predictions"] == model.predict(X).tolist()
    refused = call(json={"features": [50, 30], "probabilities": True})
    assert refused.status_code == 400
    assert refused.get_json()["error"]["code"] == "probabilities_unsupported"


def test_an_outlier_detector_answers_labels_and_scores_when_asked(
    store: dict[str, Any],
) -> None:
    model = _serve(store, "isolation")
    X = pd.DataFrame([[50.0, 40.0], [500.0, -40.0]], columns=["income", "age"])

    batch = call(json={"instances": X.to_numpy().tolist(), "scores": True})
    one = call(json={"features": [50, 40], "scores": True}).get_json()

    assert batch.get_json()["predictions"] == model.predict(X).tolist() == [1, -1]
    assert batch.get_json()["scores"] == model.decision_function(X).tolist()
    assert one == {
        "prediction": 1,
        "score": model.decision_function(X.head(1))[0],
        "model_version": one["model_version"],
    }


def test_scores_are_refused_for_a_model_that_is_not_an_outlier_detector(
    store: dict[str, Any],
) -> None:
    _serve(store, "canonical")

    response = call(json={"features": [1, 2, "basic", "n"], "scores": True})

    assert response.status_code == 400
    assert response.get_json()["error"] == {
        "code": "scores_unsupported",
        "message": "only outlier detectors give scores (task: classification); "
        'remove "scores"',
    }


@pytest.mark.parametrize(
    ("name", "row", "message"),
    [
        (
            "canonical",
            [50, 30, None, "n"],
            "features[2] ('plan') may not be missing: this model needs a string "
            "there, got null",
        ),
        (
            "canonical",
            [50, 30, 3, "n"],
            "features[2] ('plan') must be a string, got 3",
        ),
        (
            "canonical",
            ["50", 30, "basic", "n"],
            "features[0] ('income') must be a finite number, got \"50\"",
        ),
        (
            "strict",
            [50, 30, "gold", "n"],
            'features[2] (\'plan\') must be one of "basic", "premium", "standard", '
            'got "gold"',
        ),
        (
            "hgb_missing",
            [50, True],
            "features[1] ('age') must be a finite number, got true",
        ),
        (
            "kmeans",
            [None, 30],
            "features[0] ('income') may not be missing: this model needs a finite "
            "number there, got null",
        ),
    ],
)
def test_each_value_the_schema_forbids_is_a_400_saying_what_was_expected(
    store: dict[str, Any], name: str, row: list[Any], message: str
) -> None:
    _serve(store, name)

    response = call(json={"features": row})

    assert response.status_code == 400
    assert response.get_json()["error"] == {"code": "invalid_value", "message": message}


def test_a_model_that_raises_on_valid_looking_input_is_a_400_not_a_500(
    store: dict[str, Any], tmp_path: Path
) -> None:
    """A string column the model turns into numbers: the schema cannot know."""
    frame = pd.DataFrame({"size": ["1", "2", "3", "4"] * 5, "x": np.arange(20.0)})
    model = make_pipeline(
        ColumnTransformer([("size", "passthrough", ["size"]), ("x", "drop", ["x"])]),
        LogisticRegression(),
    ).fit(frame, np.arange(20) % 2)
    _publish(tmp_path / "converts", model, frame)
    os.environ["MODEL_URI"] = str(tmp_path / "converts")

    response = call(json={"features": {"size": "large", "x": 1.0}})

    assert response.status_code == 400
    error = response.get_json()["error"]
    assert error["code"] == "invalid_value"
    assert error["message"].startswith("the model cannot use these values: ")
    assert "could not convert string to float" in error["message"]


def test_metadata_shows_the_schema_and_an_example_row(store: dict[str, Any]) -> None:
    _serve(store, "canonical")

    body = call("GET", "/metadata").get_json()

    assert body["input_schema"]["format"] == "dataframe"
    assert [c["name"] for c in body["input_schema"]["columns"]] == COLUMNS
    assert body["input_schema"]["columns"][2]["categories"] == [
        "basic",
        "premium",
        "standard",
    ]
    assert len(body["example"]) == 4
    example = call(json={"features": body["example"]})
    assert example.status_code == 200


def test_a_manifest_published_before_schemas_takes_finite_numbers_as_before(
    model_dir: Path, tmp_path: Path, seed_model: Any
) -> None:
    old = tmp_path / "old" / "seed"
    shutil.copytree(model_dir, old)
    version = (old / "LATEST").read_text().strip()
    path = old / "versions" / version / "manifest.json"
    manifest = json.loads(path.read_text())
    for key in ("input_schema", "example"):
        manifest.pop(key)
    path.write_text(json.dumps(manifest))
    os.environ["MODEL_URI"] = str(old)
    row = [0.1, -0.5, 1.2, -0.8, 0.3, 0.9, -1.1, 0.4, -0.2, 1.5]

    ok = call(json={"features": row})
    missing = call(json={"features": [None, *row[1:]]})
    metadata = call("GET", "/metadata").get_json()

    assert ok.get_json()["prediction"] == seed_model.predict([row])[0]
    assert missing.status_code == 400
    assert "may not be missing" in missing.get_json()["error"]["message"]
    assert metadata["input_schema"]["columns"][0] == {
        "name": "x0",
        "kind": "number",
        "nullable": False,
    }
