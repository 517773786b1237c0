"""train.twin.linear: LinearSVC and CalibratedClassifierCV twins decide and
calibrate in float64 as scikit-learn does, Pipelines as base estimators too."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.calibration import CalibratedClassifierCV
from sklearn.datasets import load_breast_cancer, load_wine
from sklearn.ensemble import GradientBoostingClassifier, RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import KFold
from sklearn.naive_bayes import GaussianNB
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import LinearSVC

from skserve.schema import InputSchema
from train.schema import accepted_rows, infer_schema, to_table
from train.twin import NoTwin, Twin, build_twin
from train.twin.common import session
from train.twin.encoding import encoded


def _data(kind: str) -> tuple[pd.DataFrame, pd.Series]:
    load = load_breast_cancer if kind == "binary" else load_wine
    X, y = load(return_X_y=True, as_frame=True)
    return X, y


def _twin(model: Any, frame: pd.DataFrame) -> Twin:
    schema = infer_schema(model, frame)
    reference = to_table(accepted_rows(frame, schema), schema)
    built = build_twin(model, reference, schema=schema)
    assert isinstance(built, Twin), built
    assert schema.all_numeric
    return built


def _fresh(frame: pd.DataFrame, count: int = 2_000) -> pd.DataFrame:
    """Rows the gate never saw (another seed, twice the spread), with the
    training columns and dtypes."""
    rng = np.random.default_rng(2026)
    values = rng.normal(frame.mean(), 2 * frame.std(), (count, frame.shape[1]))
    return pd.DataFrame(values, columns=frame.columns).astype(frame.dtypes)


def _run(built: Twin, model: Any, rows: pd.DataFrame) -> list[np.ndarray]:
    """The twin's outputs for `rows`, encoded as the function encodes them
    (numbers as they are: these models take all-numeric rows)."""
    schema = InputSchema.numeric(rows.shape[1], list(rows.columns))
    table = to_table(rows.to_numpy().tolist(), schema)
    return session(built.data).run(None, {"X": encoded(table, schema)})


def _assert_one_line(reason: str, *words: str) -> None:
    assert "\n" not in reason and len(reason) < 300
    for word in words:
        assert word in reason, reason


@pytest.mark.parametrize("kind", ["binary", "multiclass"])
def test_linear_svc_twin_gives_sklearn_labels_and_decision_on_fresh_rows(
    kind: str,
) -> None:
    X, y = _data(kind)
    model = make_pipeline(StandardScaler(), LinearSVC()).fit(X, y)
    built = _twin(model, X)
    rows = _fresh(X)
    labels, scores = _run(built, model, rows)
    assert labels.tolist() == model.predict(rows).tolist()
    decision = model.decision_function(rows).reshape(len(rows), -1)
    assert np.abs(scores - decision).max() <= 1e-9
    assert [o["role"] for o in built.facts["outputs"]] == ["labels", "scores"]
    assert built.facts["parity"]["label_agreement"] == 1.0


def test_linear_svc_with_string_classes_gives_the_strings() -> None:
    X, y = _data("binary")
    names = y.map({0: "malignant", 1: "benign"})
    model = make_pipeline(StandardScaler(), LinearSVC()).fit(X, names)
    built = _twin(model, X)
    rows = _fresh(X)
    labels, _ = _run(built, model, rows)
    assert labels.tolist() == model.predict(rows).tolist()
    assert set(labels.tolist()) == {"malignant", "benign"}


def test_linear_svc_labels_agree_just_beside_the_decision_boundary() -> None:
    """Rows 1e-8 either side of the separating hyperplane: the twin's
    decision > 0 is scikit-learn's, with both classes present."""
    X, y = _data("binary")
    model = LinearSVC(max_iter=50_000).fit(X, y)
    w, b = model.coef_[0], model.intercept_[0]
    rows = _fresh(X).to_numpy()
    on_plane = rows - np.outer(rows @ w + b, w) / (w @ w)
    side = np.where(np.arange(len(rows)) % 2 == 0, 1e-8, -1e-8)
    beside = pd.DataFrame(on_plane + np.outer(side, w) / (w @ w), columns=X.columns)
    built = _twin(model, X)
    labels, _ = _run(built, model, beside)
    expected = model.predict(beside)
    assert labels.tolist() == expected.tolist()
    assert set(expected.tolist()) == {0, 1}


def _calibrated_cases() -> list[Any]:
    cases = []
    for kind in ("binary", "multiclass"):
        for method in ("sigmoid", "isotonic"):
            cases.append(pytest.param(kind, method, id=f"{kind}-{method}"))
    return cases


@pytest.mark.parametrize(("kind", "method"), _calibrated_cases())
def test_calibrated_linear_svc_pipeline_matches_predict_proba(
    kind: str, method: str
) -> None:
    X, y = _data(kind)
    model = CalibratedClassifierCV(
        make_pipeline(StandardScaler(), LinearSVC()), method=method
    ).fit(X, y)
    built = _twin(model, X)
    rows = _fresh(X)
    labels, probabilities = _run(built, model, rows)
    assert labels.tolist() == model.predict(rows).tolist()
    assert np.abs(probabilities - model.predict_proba(rows)).max() <= 1e-6
    assert built.facts["parity"]["compared"] == ["labels", "probabilities"]


@pytest.mark.parametrize(
    "base",
    [
        pytest.param(
            lambda: make_pipeline(StandardScaler(), LogisticRegression()), id="lr"
        ),
        pytest.param(
            lambda: RandomForestClassifier(n_estimators=15, random_state=0), id="forest"
        ),
        pytest.param(GaussianNB, id="naive-bayes"),
    ],
)
def test_calibrated_other_bases_use_their_decision_or_probabilities(base: Any) -> None:
    """Linear bases are calibrated on decision_function, the others on
    predict_proba, as scikit-learn's _get_response_values chooses."""
    X, y = _data("multiclass")
    model = CalibratedClassifierCV(base(), method="isotonic").fit(X, y)
    built = _twin(model, X)
    rows = _fresh(X)
    labels, probabilities = _run(built, model, rows)
    assert labels.tolist() == model.predict(rows).tolist()
    assert np.abs(probabilities - model.predict_proba(rows)).max() <= 1e-6


def test_calibrated_without_ensemble_uses_its_one_calibrated_classifier() -> None:
    X, y = _data("binary")
    model = CalibratedClassifierCV(
        make_pipeline(StandardScaler(), LinearSVC()), ensemble=False
    ).fit(X, y)
    assert len(model.calibrated_classifiers_) == 1
    built = _twin(model, X)
    rows = _fresh(X)
    labels, probabilities = _run(built, model, rows)
    assert labels.tolist() == model.predict(rows).tolist()
    assert np.abs(probabilities - model.predict_proba(rows)).max() <= 1e-6


def test_calibrated_fold_that_never_saw_a_class_keeps_classes_in_place() -> None:
    """Unshuffled folds over rows sorted by class: each fold's estimator lacks
    a class, whose probability is 0 there, and its calibrators map onto the
    classes scikit-learn maps them onto."""
    X, y = _data("multiclass")
    order = np.argsort(y.to_numpy(), kind="stable")
    X, y = X.iloc[order].reset_index(drop=True), y.iloc[order].reset_index(drop=True)
    model = CalibratedClassifierCV(
        make_pipeline(StandardScaler(), LinearSVC()), cv=KFold(3)
    ).fit(X, y)
    seen = [len(c.estimator.classes_) for c in model.calibrated_classifiers_]
    assert min(seen) < 3
    built = _twin(model, X)
    rows = _fresh(X)
    labels, probabilities = _run(built, model, rows)
    assert labels.tolist() == model.predict(rows).tolist()
    assert np.abs(probabilities - model.predict_proba(rows)).max() <= 1e-6


def test_temperature_calibration_is_refused_in_one_line() -> None:
    X, y = _data("multiclass")
    model = CalibratedClassifierCV(
        make_pipeline(StandardScaler(), LinearSVC()), method="temperature"
    ).fit(X, y)
    built = build_twin(model, X.to_numpy())
    assert isinstance(built, NoTwin)
    _assert_one_line(built.reason, "CalibratedClassifierCV", "temperature")


def test_calibrating_a_nonlinear_decision_function_is_refused_in_one_line() -> None:
    X, y = _data("binary")
    model = CalibratedClassifierCV(
        GradientBoostingClassifier(n_estimators=5, random_state=0)
    ).fit(X, y)
    built = build_twin(model, X.to_numpy())
    assert isinstance(built, NoTwin)
    _assert_one_line(built.reason, "decision_function", "GradientBoostingClassifier")
