"""A DataFrame model as users deploy one: scikit-learn's canonical mixed-type
pipeline, fitted on pandas rows with gaps and text, published by the CLI."""

from __future__ import annotations

import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from tests.support import run_train

FRAME_COLUMNS = ("income", "age", "plan", "region")
# The first row holds a null, a known string and an unseen category ("gold");
# the second a null age and known categories, and gets the other label.
MIXED_ROWS: list[dict[str, Any]] = [
    {"income": None, "age": 41, "plan": "gold", "region": "north"},
    {"income": 30000.5, "age": None, "plan": "premium", "region": "east"},
]


def canonical_pipeline() -> Pipeline:
    """The pipeline of scikit-learn's documentation: impute and scale the
    numbers, one-hot encode the text, then a LogisticRegression."""
    return Pipeline(
        [
            (
                "preprocess",
                ColumnTransformer(
                    [
                        (
                            "num",
                            make_pipeline(SimpleImputer(), StandardScaler()),
                            ["income", "age"],
                        ),
                        (
                            "cat",
                            OneHotEncoder(handle_unknown="ignore"),
                            ["plan", "region"],
                        ),
                    ]
                ),
            ),
            ("classify", LogisticRegression()),
        ]
    )


def training_frame(rows: int = 240, seed: int = 7) -> pd.DataFrame:
    """Customers with NaN in the numeric columns, strings in the others, and a
    string label ("yes"/"no") that depends on all four."""
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(
        {
            "income": rng.normal(48000, 12000, rows).round(1),
            "age": rng.integers(18, 80, rows).astype(float),
            "plan": rng.choice(["basic", "standard", "premium"], rows),
            "region": rng.choice(["north", "south", "east", "west"], rows),
        }
    )
    score = (
        (frame["income"] - 48000) / 12000
        - (frame["age"] - 50) / 20
        + frame["plan"].map({"basic": 1.0, "standard": 0.0, "premium": -1.0})
        + (frame["region"] == "north") * 0.5
        + rng.normal(0, 0.5, rows)
    )
    frame["churned"] = np.where(score > 0, "yes", "no")
    frame.loc[frame.index % 9 == 0, "income"] = np.nan
    frame.loc[frame.index % 11 == 3, "age"] = np.nan
    return frame


def frame_of(rows: list[dict[str, Any]], like: pd.DataFrame) -> pd.DataFrame:
    """`rows` as the DataFrame the model was fitted on: its columns, its dtypes,
    None as NaN in numeric columns."""
    features = like[list(FRAME_COLUMNS)]
    return pd.DataFrame(rows, columns=list(FRAME_COLUMNS)).astype(
        features.dtypes.to_dict()
    )


def publish_canonical(
    folder: Path,
    store: str,
    name: str,
    *extra: str,
    env: Mapping[str, str] | None = None,
) -> tuple[subprocess.CompletedProcess, Pipeline, pd.DataFrame]:
    """Fit the canonical pipeline, pickle it, and publish it with
    `python -m train publish FILE.pkl --holdout FILE.csv` (the CSV of its
    training rows, empty cells for NaN, as users keep them). Returns the
    command's result, the fitted model and its training frame."""
    frame = training_frame()
    model = canonical_pipeline().fit(
        frame[list(FRAME_COLUMNS)], frame["churned"].to_numpy()
    )
    folder.mkdir(parents=True, exist_ok=True)
    pickled, holdout = folder / f"{name}.pkl", folder / f"{name}.csv"
    joblib.dump(model, pickled)
    frame.to_csv(holdout, index=False)
    published = run_train(
        "publish",
        str(pickled),
        "--holdout",
        str(holdout),
        "--store",
        store,
        "--name",
        name,
        *extra,
        env=env,
    )
    return published, model, frame
