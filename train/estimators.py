"""Model kinds offered by `--model`, per task, and the holdout evaluation."""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np

from skserve.errors import ConfigError
from skserve.manifest import TASKS  # noqa: F401  (re-exported for the CLI)
from train.data import Dataset


def _kinds(task: str, seed: int) -> dict[str, Callable[[], Any]]:
    from sklearn import ensemble, linear_model
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    if task == "classification":
        return {
            "random-forest": lambda: ensemble.RandomForestClassifier(random_state=seed),
            "gradient-boosting": lambda: ensemble.GradientBoostingClassifier(
                random_state=seed
            ),
            "hist-gradient-boosting": lambda: ensemble.HistGradientBoostingClassifier(
                random_state=seed
            ),
            "logistic-regression": lambda: make_pipeline(
                StandardScaler(), linear_model.LogisticRegression(max_iter=1000)
            ),
        }
    return {
        "random-forest": lambda: ensemble.RandomForestRegressor(random_state=seed),
        "gradient-boosting": lambda: ensemble.GradientBoostingRegressor(
            random_state=seed
        ),
        "hist-gradient-boosting": lambda: ensemble.HistGradientBoostingRegressor(
            random_state=seed
        ),
        "linear-regression": lambda: make_pipeline(
            StandardScaler(), linear_model.Ridge()
        ),
    }


MODEL_KINDS = (
    "random-forest",
    "gradient-boosting",
    "hist-gradient-boosting",
    "logistic-regression",
    "linear-regression",
)


def prepare(frame: Any) -> Any:
    """scikit-learn's documented preprocessing for mixed columns: numbers get
    their median where missing; text gets its most frequent value where
    missing, then one column per category (unseen ones: all zeros)."""
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder

    numbers = [name for name in frame.columns if frame[name].dtype == np.float64]
    text = [name for name in frame.columns if name not in numbers]
    parts = []
    if numbers:
        parts.append(("numbers", SimpleImputer(strategy="median"), numbers))
    if text:
        encode = make_pipeline(
            SimpleImputer(strategy="most_frequent"),
            OneHotEncoder(handle_unknown="ignore"),
        )
        parts.append(("text", encode, text))
    # Dense output: a scaler after it (the linear kinds) cannot centre sparse.
    return ColumnTransformer(parts, sparse_threshold=0.0)


def infer_task(y: np.ndarray) -> str:
    """Strings or few distinct integers: classification; otherwise regression."""
    if y.dtype == object:
        return "classification"
    if np.issubdtype(y.dtype, np.integer):
        distinct = len(np.unique(y))
        return "classification" if distinct <= max(20, len(y) // 20) else "regression"
    return "regression"


def make_model(kind: str, task: str, seed: int, frame: Any = None) -> Any:
    """A fresh estimator of `kind` for `task`, behind `prepare` for a DataFrame
    `frame`; ConfigError lists the valid kinds."""
    from sklearn.pipeline import Pipeline

    kinds = _kinds(task, seed)
    if kind not in kinds:
        raise ConfigError(
            f"--model {kind} does not fit a {task} task; "
            f"choose one of {', '.join(kinds)}"
        )
    if frame is None:
        return kinds[kind]()
    return Pipeline([("prepare", prepare(frame)), ("model", kinds[kind]())])


# Kinds whose trees compute in float32: a value beyond its range cannot be fitted.
FLOAT32_KINDS = ("random-forest", "gradient-boosting")


def _check_float32_range(data: Dataset, kind: str) -> None:
    """ConfigError naming the first feature beyond float32 for a kind whose
    trees cast to it (scikit-learn would overflow, then refuse the data)."""
    if kind not in FLOAT32_KINDS:
        return
    limit = float(np.finfo(np.float32).max)
    names = data.feature_names
    X = data.X
    for j, name in enumerate(names):
        column = X[name] if data.tabular else X[:, j]
        values = np.asarray(column, dtype=object if data.tabular else np.float64)
        numbers = np.array(
            [v for v in values if isinstance(v, float | int)], dtype=np.float64
        )
        if numbers.size and np.nanmax(np.abs(numbers), initial=0.0) > limit:
            raise ConfigError(
                f"cannot fit {kind} on {data.source}: column {name!r} holds values "
                "beyond float32's range, which its trees compute in; rescale it or "
                "choose --model logistic-regression/linear-regression"
            )


def fit_holdout(
    data: Dataset, kind: str, task: str, seed: int, test_size: float = 0.2
) -> tuple[Any, dict[str, float], dict[str, Any], Any]:
    """Fit on a reproducible (stratified for classes) split; score the rest.
    Returns the model, its scores, the training facts and the rows it was
    fitted on.

    The published model is the one scored, so its metrics describe it exactly.
    """
    from sklearn import metrics
    from sklearn.exceptions import UndefinedMetricWarning
    from sklearn.model_selection import train_test_split

    y = data.y
    if len(y) < 5:
        raise ConfigError(f"{data.source} has {len(y)} rows; at least 5 are needed")
    if task == "classification" and y.dtype != object:
        if not np.all(np.mod(y, 1) == 0):
            raise ConfigError(
                f"target {data.target!r} has continuous values; use --task "
                "regression, or integer or text labels for classification"
            )
        y = y.astype(np.int64)
    if task == "regression" and y.dtype == object:
        raise ConfigError(
            f"target {data.target!r} is not numeric; it cannot be regressed"
        )
    stratify = None
    if task == "classification":
        _, counts = np.unique(y.astype(str), return_counts=True)
        if len(counts) < 2:
            raise ConfigError(
                f"target {data.target!r} has a single class; a classifier needs two"
            )
        n_test = math.ceil(test_size * len(y))
        # Stratifying needs two rows per class and a class per holdout row;
        # without them the split is still reproducible, just not stratified.
        if counts.min() >= 2 and len(counts) <= min(n_test, len(y) - n_test):
            stratify = y.astype(str)
    X_tr, X_te, y_tr, y_te = train_test_split(
        data.X, y, test_size=test_size, random_state=seed, stratify=stratify
    )
    _check_float32_range(data, kind)
    model = make_model(kind, task, seed, X_tr if data.tabular else None)
    model = model.fit(X_tr, y_tr)
    predicted = model.predict(X_te)
    with warnings.catch_warnings():  # an undefined score is recorded as null
        warnings.simplefilter("ignore", UndefinedMetricWarning)
        if task == "classification":
            scores = {
                "accuracy": metrics.accuracy_score(y_te, predicted),
                "f1": metrics.f1_score(y_te, predicted, average="macro"),
            }
        else:
            scores = {
                "r2": metrics.r2_score(y_te, predicted),
                "mae": metrics.mean_absolute_error(y_te, predicted),
            }
    training = {
        "source": data.source,
        "rows": len(y),
        "train_rows": len(y_tr),
        "holdout_rows": len(y_te),
        "stratified": stratify is not None,
        "seed": seed,
        "model": kind,
    }
    # A score that is not a number (R² of a one-row holdout) is recorded as
    # null: manifests are strict JSON.
    rounded = {
        k: round(float(v), 4) if math.isfinite(float(v)) else None
        for k, v in scores.items()
    }
    return model, rounded, training, X_tr
