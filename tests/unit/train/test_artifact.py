"""train.artifact: a pickle publishes only if it is a fitted estimator the
function can serve, and its task, features and classes are read from it."""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sklearn.cluster import KMeans, MiniBatchKMeans
from sklearn.decomposition import PCA
from sklearn.ensemble import IsolationForest, RandomForestRegressor
from sklearn.linear_model import LogisticRegression
from sklearn.mixture import GaussianMixture
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import OneClassSVM

from train.artifact import ArtifactError, describe, load_estimator, task_of

X = np.random.default_rng(0).normal(size=(40, 3))


@pytest.mark.parametrize(
    ("model", "task"),
    [
        (LogisticRegression().fit(X, X[:, 0] > 0), "classification"),
        (RandomForestRegressor(n_estimators=3).fit(X, X[:, 0]), "regression"),
        (KMeans(2, n_init=1).fit(X), "clustering"),
        (MiniBatchKMeans(2, n_init=1).fit(X), "clustering"),
        (GaussianMixture(2).fit(X), "clustering"),
        (make_pipeline(StandardScaler(), KMeans(2, n_init=1)).fit(X), "clustering"),
        (IsolationForest(n_estimators=5).fit(X), "outlier_detection"),
        (OneClassSVM().fit(X), "outlier_detection"),
    ],
)
def test_the_task_is_read_from_the_estimator(model: Any, task: str) -> None:
    assert task_of(model) == task


def test_an_estimator_of_no_served_task_is_refused_listing_what_is() -> None:
    with pytest.raises(ArtifactError) as raised:
        task_of(PCA(2).fit(X))

    assert "PCA is not a classifier, regressor, clusterer" in raised.value.message


def test_only_classifiers_list_classes() -> None:
    classifier = describe(LogisticRegression().fit(X, np.where(X[:, 0] > 0, "a", "b")))
    clusterer = describe(KMeans(2, n_init=1).fit(X))

    assert classifier["classes"] == ["a", "b"]
    assert clusterer["classes"] is None and clusterer["n_features"] == 3


def test_a_pickle_that_is_not_an_estimator_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "m.pkl"
    path.write_bytes(pickle.dumps({"not": "a model"}))

    with pytest.raises(ArtifactError, match=r"holds a builtins\.dict, not a scikit"):
        load_estimator(str(path))


def test_an_unfitted_estimator_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "m.pkl"
    path.write_bytes(pickle.dumps(LogisticRegression()))

    with pytest.raises(ArtifactError, match="unfitted LogisticRegression; fit it"):
        load_estimator(str(path))
