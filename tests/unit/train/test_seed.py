"""train/seed.py: the default model is exactly the tutorial's forest, fitted on
all its rows, with holdout metrics from a separate model."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from sklearn.datasets import make_classification
from sklearn.ensemble import RandomForestClassifier
from sklearn.metrics import accuracy_score, f1_score
from sklearn.model_selection import train_test_split

from tests.support import SEED_FEATURES
from train.seed import fit_seed

# The data and forest of the tutorial this project grew out of, written out
# rather than imported from train.seed, so a change there fails here.
TUTORIAL_DATA = dict(n_samples=1000, n_features=10, n_informative=5, random_state=42)


@pytest.fixture(scope="module")
def seeded() -> tuple[Any, dict[str, Any]]:
    return fit_seed()


@pytest.fixture(scope="module")
def tutorial() -> tuple[RandomForestClassifier, np.ndarray, np.ndarray]:
    X, y = make_classification(**TUTORIAL_DATA)
    forest = RandomForestClassifier(n_estimators=100, random_state=42).fit(X, y)
    return forest, X, y


def test_seed_model_is_the_tutorials_forest_fitted_on_every_row(
    seeded: tuple[Any, dict[str, Any]], tutorial: tuple[Any, np.ndarray, np.ndarray]
) -> None:
    model, _ = seeded
    forest, X, _ = tutorial
    fresh = np.random.default_rng(0).normal(0, 2, (500, 10))

    assert type(model) is RandomForestClassifier
    assert model.get_params() == forest.get_params()
    assert model.n_features_in_ == 10
    assert model.classes_.tolist() == [0, 1]
    # Each tree's bootstrap sample is drawn from all 1000 rows, not from a split.
    assert {tree.tree_.weighted_n_node_samples[0] for tree in model.estimators_} == {
        1000.0
    }
    for rows in (X, fresh):
        np.testing.assert_array_equal(
            model.predict_proba(rows), forest.predict_proba(rows)
        )


def test_seed_answers_the_readme_request_with_0(
    seeded: tuple[Any, dict[str, Any]],
) -> None:
    """README "Try it": `{"features": [0.1, -0.5, ...]}` -> `{"prediction": 0, ...}`."""
    model, _ = seeded

    assert model.predict([SEED_FEATURES]).tolist() == [0]


def test_seed_metrics_come_from_a_twin_on_a_stratified_80_percent_split(
    seeded: tuple[Any, dict[str, Any]], tutorial: tuple[Any, np.ndarray, np.ndarray]
) -> None:
    _, facts = seeded
    _, X, y = tutorial
    X_tr, X_te, y_tr, y_te = train_test_split(
        X, y, test_size=0.2, stratify=y, random_state=42
    )
    predicted = (
        RandomForestClassifier(n_estimators=100, random_state=42)
        .fit(X_tr, y_tr)
        .predict(X_te)
    )

    assert facts["metrics"] == {
        "accuracy": round(float(accuracy_score(y_te, predicted)), 4),
        "f1": round(float(f1_score(y_te, predicted, average="macro")), 4),
    }
    assert 0.5 < facts["metrics"]["accuracy"] <= 1.0


def test_seed_facts_name_the_data_and_the_split(
    seeded: tuple[Any, dict[str, Any]],
) -> None:
    _, facts = seeded

    assert facts == {
        "target": None,
        "metrics": facts["metrics"],  # checked against a refit above
        "training": {
            "source": "make_classification(n_samples=1000, n_features=10, "
            "n_informative=5, random_state=42)",
            "rows": 1000,
            "holdout_rows": 200,
            "metrics_from": "twin model fitted on a stratified 80% split",
        },
    }


def test_fit_seed_gives_the_same_model_every_time(
    seeded: tuple[Any, dict[str, Any]],
) -> None:
    model, facts = seeded
    again, facts_again = fit_seed()
    rows = np.random.default_rng(1).normal(0, 2, (200, 10))

    np.testing.assert_array_equal(again.predict_proba(rows), model.predict_proba(rows))
    assert facts_again == facts
