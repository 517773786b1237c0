"""The model shapes users deploy most, fitted on one small mixed-type DataFrame,
with the rows each is asked about and what the model itself answers for them.

Shared by the end-to-end suites that serve them through every path (v1, V2,
batch, the web page): each compares the function's answers with `expected`.
"""

from __future__ import annotations

import pickle
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
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
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from tests.support import run_train

COLUMNS = ["income", "age", "plan", "region"]
NUMBERS = ["income", "age"]


def customers(n: int = 300, seed: int = 11) -> tuple[pd.DataFrame, np.ndarray]:
    """NaN in the numeric columns, strings in the categorical ones, a label."""
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(
        {
            "income": rng.normal(50, 12, n).round(2),
            "age": rng.integers(18, 80, n).astype(float),
            "plan": rng.choice(["basic", "standard", "premium"], n),
            "region": rng.choice(["north", "south"], n),
        }
    )
    frame.loc[::8, "income"] = np.nan
    frame.loc[3::11, "age"] = np.nan
    score = (frame.income.fillna(50) - 50) / 12 + (frame.plan == "basic") * 1.2
    y = np.where(score + rng.normal(0, 0.5, n) > 0.5, "churn", "stay")
    return frame, y


def _preprocess() -> ColumnTransformer:
    return ColumnTransformer(
        [
            ("num", make_pipeline(SimpleImputer(), StandardScaler()), NUMBERS),
            ("cat", OneHotEncoder(handle_unknown="ignore"), ["plan", "region"]),
        ]
    )


@dataclass(frozen=True)
class Shape:
    """One model shape: how it is fitted, on which columns, and its rows."""

    name: str
    fit: Callable[[pd.DataFrame, np.ndarray], Any]
    columns: list[str]
    categorical: bool = False  # pandas category columns
    complete: bool = False  # fitted without missing values: rows have none
    task: str = "classification"

    def frame(self, data: pd.DataFrame) -> pd.DataFrame:
        """The training frame as this shape is fitted on it."""
        frame = data[self.columns].copy()
        if self.complete:
            frame = frame.fillna(frame.median(numeric_only=True))
        if self.categorical:
            frame = frame.astype({"plan": "category", "region": "category"})
        return frame

    def rows(self) -> list[dict[str, Any]]:
        """Rows to ask about: typical ones, and where the schema allows them a
        missing value in each nullable column and an unseen category."""
        rows: list[dict[str, Any]] = [
            {"income": 61.5, "age": 33.0, "plan": "basic", "region": "north"},
            {"income": 38.25, "age": 71.0, "plan": "premium", "region": "south"},
        ]
        if not self.complete:
            rows += [
                {"income": None, "age": 45.0, "plan": "standard", "region": "south"},
                {"income": 52.0, "age": None, "plan": "basic", "region": "north"},
            ]
        if "plan" in self.columns:
            rows.append(
                {"income": 49.0, "age": 28.0, "plan": "platinum", "region": "north"}
            )
        return [{c: row[c] for c in self.columns} for row in rows]


SHAPES = [
    Shape(
        "ct_logistic",
        lambda X, y: make_pipeline(_preprocess(), LogisticRegression()).fit(X, y),
        COLUMNS,
    ),
    Shape(
        "ct_forest",
        lambda X, y: make_pipeline(
            _preprocess(), RandomForestClassifier(n_estimators=30, random_state=0)
        ).fit(X, y),
        COLUMNS,
    ),
    Shape(
        "hgb_missing",
        lambda X, y: HistGradientBoostingClassifier(max_iter=40, random_state=0).fit(
            X, y
        ),
        NUMBERS,
    ),
    Shape(
        "hgb_categories",
        lambda X, y: HistGradientBoostingClassifier(
            max_iter=40, categorical_features="from_dtype", random_state=0
        ).fit(X, y),
        COLUMNS,
        categorical=True,
    ),
    Shape(
        "df_forest",
        lambda X, y: RandomForestClassifier(n_estimators=30, random_state=0).fit(X, y),
        NUMBERS,
        complete=True,
    ),
    Shape(
        "kmeans",
        lambda X, y: KMeans(4, n_init=3, random_state=0).fit(X),
        NUMBERS,
        complete=True,
        task="clustering",
    ),
    Shape(
        "isolation",
        lambda X, y: IsolationForest(n_estimators=50, random_state=0).fit(X),
        NUMBERS,
        complete=True,
        task="outlier_detection",
    ),
]


@dataclass(frozen=True)
class Published:
    """A shape fitted, pickled and published with the CLI."""

    shape: Shape
    model: Any
    train: pd.DataFrame  # the frame it was fitted on (its dtypes)
    root: Path  # <store>/<name>

    @property
    def name(self) -> str:
        return self.shape.name

    def frame_of(self, rows: list[dict[str, Any]]) -> pd.DataFrame:
        """`rows` as a DataFrame with the training dtypes (missing: NaN)."""
        frame = pd.DataFrame(rows, columns=list(self.train.columns))
        for name, dtype in self.train.dtypes.items():
            if isinstance(dtype, pd.CategoricalDtype):
                frame[name] = pd.Categorical(frame[name], categories=dtype.categories)
            elif dtype == np.dtype(object):
                frame[name] = frame[name].astype(object).where(frame[name].notna())
            else:
                frame[name] = frame[name].astype(dtype)
        return frame

    def expected(self, rows: list[dict[str, Any]]) -> list[Any]:
        """The model's own predictions for `rows`, as JSON values."""
        return self.model.predict(self.frame_of(rows)).tolist()

    def expected_proba(self, rows: list[dict[str, Any]]) -> list[list[float]]:
        return self.model.predict_proba(self.frame_of(rows)).tolist()


def publish_all(folder: Path) -> dict[str, Published]:
    """Fit every shape, pickle it and publish it with `python -m train publish`,
    its holdout CSV (with empty cells) as the schema's data."""
    data, y = customers()
    store = folder / "store"
    published = {}
    for shape in SHAPES:
        train = shape.frame(data)
        model = shape.fit(train, y)
        artifact = folder / f"{shape.name}.pkl"
        artifact.write_bytes(pickle.dumps(model))
        holdout = folder / f"{shape.name}.csv"
        train.to_csv(holdout, index=False)
        result = run_train(
            "publish",
            str(artifact),
            "--holdout",
            str(holdout),
            "--store",
            str(store),
            "--name",
            shape.name,
        )
        assert result.returncode == 0, result.stderr
        published[shape.name] = Published(shape, model, train, store / shape.name)
    return published
