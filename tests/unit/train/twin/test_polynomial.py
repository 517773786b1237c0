"""train.twin.polynomial: PolynomialFeatures in the twin multiplies columns in
float64 in scikit-learn's order, so its features are scikit-learn's bit for bit."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.datasets import load_diabetes, load_wine
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import PolynomialFeatures, StandardScaler

from skserve.schema import InputSchema
from train.schema import accepted_rows, infer_schema, to_table
from train.twin import NoTwin, Twin, build_twin
from train.twin.common import session
from train.twin.convert import convert
from train.twin.encoding import encoded


def _twin(model: Any, frame: pd.DataFrame) -> Twin:
    schema = infer_schema(model, frame)
    built = build_twin(
        model, to_table(accepted_rows(frame, schema), schema), schema=schema
    )
    assert isinstance(built, Twin), built
    return built


def _fresh(frame: pd.DataFrame, count: int = 2_000) -> pd.DataFrame:
    """Rows the gate never saw (another seed, twice the spread), with the
    training columns and dtypes."""
    rng = np.random.default_rng(2026)
    values = rng.normal(frame.mean(), 2 * frame.std(), (count, frame.shape[1]))
    return pd.DataFrame(values, columns=frame.columns).astype(frame.dtypes)


def _run(built: Twin, rows: pd.DataFrame) -> list[np.ndarray]:
    schema = InputSchema.numeric(rows.shape[1], list(rows.columns))
    table = to_table(rows.to_numpy().tolist(), schema)
    return session(built.data).run(None, {"X": encoded(table, schema)})


@pytest.mark.parametrize(
    "options",
    [
        {"degree": 2},
        {"degree": 3},
        {"degree": 3, "include_bias": False},
        {"degree": 4, "interaction_only": True},
        {"degree": (2, 3)},
        {"degree": (2, 4), "include_bias": False, "interaction_only": True},
        {"degree": (0, 2)},
        {"degree": 1},
    ],
    ids=str,
)
def test_polynomial_features_are_sklearn_bit_for_bit(options: dict[str, Any]) -> None:
    """Products of 3 or more columns round differently in another order
    (skl2onnx's ReduceProd differs in about a fifth of them)."""
    rng = np.random.default_rng(3)
    X = rng.normal(0, 3, (3_000, 5)) * rng.choice([1e-3, 1.0, 1e3], (3_000, 5))
    features = PolynomialFeatures(**options).fit(X)
    onnx_model = convert(features, X.shape[1])
    (got,) = session(onnx_model.SerializeToString()).run(None, {"X": X})
    expected = features.transform(X)
    assert got.dtype == np.float64 and got.shape == expected.shape
    assert np.array_equal(got.view(np.int64), expected.view(np.int64))


@pytest.mark.parametrize("degree", [2, 3])
def test_polynomial_ridge_twin_gives_sklearn_values_on_fresh_rows(degree: int) -> None:
    X, y = load_diabetes(return_X_y=True, as_frame=True)
    model = make_pipeline(PolynomialFeatures(degree), Ridge()).fit(X, y)
    built = _twin(model, X)
    rows = _fresh(X)
    (values,) = _run(built, rows)
    assert np.abs(values.ravel() - model.predict(rows)).max() <= 1e-6
    assert built.facts["parity"]["max_abs_difference"] <= 1e-6


def test_polynomial_logistic_regression_twin_gives_sklearn_classes() -> None:
    X, y = load_wine(return_X_y=True, as_frame=True)
    model = make_pipeline(
        StandardScaler(), PolynomialFeatures(2), LogisticRegression(max_iter=5_000)
    ).fit(X, y)
    built = _twin(model, X)
    rows = _fresh(X)
    labels, probabilities = _run(built, rows)
    assert labels.tolist() == model.predict(rows).tolist()
    assert np.abs(probabilities - model.predict_proba(rows)).max() <= 1e-6


def test_polynomial_ridge_with_two_targets_is_refused_in_one_line() -> None:
    """One value per row is what a twin serves; a two-target Ridge after
    PolynomialFeatures converts, and the gate says why it gets no twin."""
    X, y = load_diabetes(return_X_y=True)
    model = make_pipeline(PolynomialFeatures(2), Ridge()).fit(
        X, np.column_stack([y, -y])
    )
    built = build_twin(model, X)
    assert isinstance(built, NoTwin)
    assert "\n" not in built.reason and "2 outputs" in built.reason
