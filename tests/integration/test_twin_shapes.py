"""The 25 model shapes scikit-learn users deploy most each publish with an ONNX
twin that passed its gate, and the function answers the same through the twin
as through the pickle, on rows with missing values and an unseen category
wherever the model's schema allows them."""

from __future__ import annotations

import os
import pickle
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.calibration import CalibratedClassifierCV
from sklearn.cluster import KMeans
from sklearn.compose import ColumnTransformer
from sklearn.datasets import load_breast_cancer, load_diabetes
from sklearn.ensemble import (
    ExtraTreesClassifier,
    GradientBoostingClassifier,
    HistGradientBoostingClassifier,
    HistGradientBoostingRegressor,
    RandomForestClassifier,
    RandomForestRegressor,
    StackingClassifier,
    VotingClassifier,
)
from sklearn.impute import SimpleImputer
from sklearn.linear_model import (
    LinearRegression,
    LogisticRegression,
    Ridge,
    SGDClassifier,
)
from sklearn.naive_bayes import GaussianNB
from sklearn.neighbors import KNeighborsClassifier
from sklearn.neural_network import MLPClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder, PolynomialFeatures, StandardScaler
from sklearn.svm import SVC, LinearSVC
from sklearn.tree import DecisionTreeClassifier

from skserve.storage import open_store
from tests.support import call
from train.artifact import describe
from train.publish import publish
from train.schema import accepted_rows, example_row, infer_schema, to_table
from train.twin import Twin, build_twin

pytestmark = pytest.mark.slow  # 25 fits, twins and gates: about a minute


def _datasets() -> dict[str, tuple[pd.DataFrame, Any]]:
    Xc, yc = load_breast_cancer(return_X_y=True, as_frame=True)
    Xr, yr = load_diabetes(return_X_y=True, as_frame=True)
    rng = np.random.default_rng(0)
    gaps = Xc.mask(rng.random(Xc.shape) < 0.05)
    rng = np.random.default_rng(1)
    n = 400
    mixed = pd.DataFrame(
        {
            "income": rng.normal(50, 12, n),
            "age": rng.integers(18, 80, n).astype(float),
            "plan": rng.choice(["basic", "standard", "premium"], n),
            "region": rng.choice(["north", "south", "east"], n),
        }
    )
    mixed.loc[::8, "income"] = np.nan
    y = ((mixed.income.fillna(50) > 50) ^ (mixed.plan == "basic")).astype(int)
    categories = mixed.astype({"plan": "category", "region": "category"})
    return {
        "cancer": (Xc, yc),
        "diabetes": (Xr, yr),
        "gaps": (gaps, yc),
        "mixed": (mixed, y),
        "categories": (categories, y),
    }


def _ct(final: Any) -> Any:
    return make_pipeline(
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
        final,
    )


def _scaled(final: Any) -> Any:
    return make_pipeline(StandardScaler(), final)


SHAPES: dict[str, tuple[Callable[[], Any], str]] = {
    "LogisticRegression": (lambda: LogisticRegression(max_iter=5000), "cancer"),
    "scaler+LogisticRegression": (lambda: _scaled(LogisticRegression()), "cancer"),
    "SVC(probability)": (
        lambda: _scaled(SVC(probability=True, random_state=0)),
        "cancer",
    ),
    "LinearSVC": (lambda: _scaled(LinearSVC()), "cancer"),
    "scaler+SGDClassifier": (
        lambda: _scaled(SGDClassifier(random_state=0)),
        "cancer",
    ),
    "KNeighbors": (lambda: KNeighborsClassifier(), "cancer"),
    "GaussianNB": (lambda: GaussianNB(), "cancer"),
    "DecisionTree": (lambda: DecisionTreeClassifier(random_state=0), "cancer"),
    "RandomForest": (lambda: RandomForestClassifier(random_state=0), "cancer"),
    "ExtraTrees": (lambda: ExtraTreesClassifier(random_state=0), "cancer"),
    "GradientBoosting": (lambda: GradientBoostingClassifier(random_state=0), "cancer"),
    "HistGradientBoostingClassifier with NaN": (
        lambda: HistGradientBoostingClassifier(random_state=0),
        "gaps",
    ),
    "HistGradientBoostingRegressor": (
        lambda: HistGradientBoostingRegressor(random_state=0),
        "diabetes",
    ),
    "HistGradientBoosting categorical": (
        lambda: HistGradientBoostingClassifier(
            categorical_features="from_dtype", random_state=0
        ),
        "categories",
    ),
    "LinearRegression": (lambda: LinearRegression(), "diabetes"),
    "Ridge": (lambda: Ridge(), "diabetes"),
    "RandomForestRegressor": (
        lambda: RandomForestRegressor(random_state=0),
        "diabetes",
    ),
    "MLPClassifier": (
        lambda: _scaled(MLPClassifier(max_iter=500, random_state=0)),
        "cancer",
    ),
    "PolynomialFeatures+Ridge": (
        lambda: make_pipeline(PolynomialFeatures(2), Ridge()),
        "diabetes",
    ),
    "soft VotingClassifier": (
        lambda: VotingClassifier(
            [
                ("lr", _scaled(LogisticRegression())),
                ("rf", RandomForestClassifier(n_estimators=20, random_state=0)),
            ],
            voting="soft",
        ),
        "cancer",
    ),
    "StackingClassifier": (
        lambda: StackingClassifier(
            [
                ("lr", _scaled(LogisticRegression())),
                ("rf", RandomForestClassifier(n_estimators=20, random_state=0)),
            ]
        ),
        "cancer",
    ),
    "CalibratedClassifierCV(LinearSVC)": (
        lambda: CalibratedClassifierCV(_scaled(LinearSVC())),
        "cancer",
    ),
    "KMeans": (lambda: KMeans(4, n_init=3, random_state=0), "cancer"),
    "ColumnTransformer+LogisticRegression": (
        lambda: _ct(LogisticRegression()),
        "mixed",
    ),
    "ColumnTransformer+RandomForest": (
        lambda: _ct(RandomForestClassifier(random_state=0)),
        "mixed",
    ),
}


@pytest.fixture(scope="module")
def datasets() -> dict[str, tuple[pd.DataFrame, Any]]:
    return _datasets()


def _fresh_rows(frame: pd.DataFrame, schema: Any, count: int = 40) -> list[list[Any]]:
    """Rows the model has not seen: training rows with noise on the numbers,
    each nullable column missing in turn, and an unseen category in each
    column that accepts one."""
    rng = np.random.default_rng(9)
    rows = accepted_rows(frame.sample(count, random_state=3), schema)
    for i, row in enumerate(rows):
        for j, column in enumerate(schema.columns):
            value = row[j]
            if column.numeric and column.kind == "number" and value is not None:
                row[j] = float(value) * (1 + rng.normal(0, 0.05))
            if column.nullable and i % len(schema.columns) == j:
                row[j] = None
            unseen_here = i % 5 == 0 and not column.numeric
            if column.categories and column.unknown and unseen_here:
                row[j] = "platinum"
    return rows


@pytest.mark.parametrize("shape", SHAPES)
def test_each_shape_is_served_alike_by_its_twin_and_its_pickle(
    shape: str, datasets: dict[str, tuple[pd.DataFrame, Any]], tmp_path: Path
) -> None:
    make, data = SHAPES[shape]
    X, y = datasets[data]
    model = make().fit(X) if shape == "KMeans" else make().fit(X, y)
    schema = infer_schema(model, X)
    built = build_twin(model, to_table(accepted_rows(X, schema), schema), schema=schema)
    assert isinstance(built, Twin), f"{shape}: {built}"
    facts = {
        **describe(model),
        "input_schema": schema.to_json(),
        "example": example_row(schema, X),
    }
    publish(
        open_store(str(tmp_path / "m")),
        pickle.dumps(model),
        facts,
        name="m",
        twin=built,
    )
    os.environ["MODEL_URI"] = str(tmp_path / "m")
    rows = _fresh_rows(X, schema)
    body: dict[str, Any] = {"instances": rows}
    if facts["task"] == "classification" and hasattr(model, "predict_proba"):
        body["probabilities"] = True

    answers = {}
    for runtime in ("onnx", "sklearn"):
        os.environ["MODEL_RUNTIME"] = runtime
        import main

        main._service = None
        response = call(json=body)
        assert response.status_code == 200, (runtime, response.get_json())
        assert call("GET", "/metadata").get_json()["served_by"] == runtime
        answers[runtime] = response.get_json()

    twin, pickled = answers["onnx"], answers["sklearn"]
    if facts["task"] == "regression":
        assert np.allclose(
            twin["predictions"], pickled["predictions"], rtol=0, atol=1e-6
        )
    else:
        assert twin["predictions"] == pickled["predictions"]
    if "probabilities" in body:
        assert twin["classes"] == pickled["classes"]
        difference = np.abs(np.array(twin["probabilities"]) - pickled["probabilities"])
        assert difference.max() <= 1e-6
    if any(c.nullable for c in schema.columns):
        assert any(v is None for row in rows for v in row)
