"""train.twin.clusters: a KMeans twin puts every row in scikit-learn's cluster,
rows equidistant from two centres included."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.cluster import BisectingKMeans, KMeans, MiniBatchKMeans
from sklearn.datasets import load_breast_cancer, load_wine

from skserve.schema import InputSchema
from train.schema import accepted_rows, infer_schema, to_table
from train.twin import NoTwin, Twin, build_twin
from train.twin.common import session
from train.twin.encoding import encoded


def _data(name: str) -> pd.DataFrame:
    load = load_breast_cancer if name == "cancer" else load_wine
    return load(return_X_y=True, as_frame=True)[0]


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


def _clusters(built: Twin, rows: pd.DataFrame) -> np.ndarray:
    schema = InputSchema.numeric(rows.shape[1], list(rows.columns))
    table = to_table(rows.to_numpy().tolist(), schema)
    return session(built.data).run(None, {"X": encoded(table, schema)})[0]


def _equidistant(model: Any, rows: pd.DataFrame) -> pd.DataFrame:
    """Each row moved onto the bisecting hyperplane of its two nearest centres."""
    centres = model.cluster_centers_
    X = rows.to_numpy()
    order = np.argsort(((X[:, None, :] - centres[None]) ** 2).sum(-1), axis=1)
    a, b = centres[order[:, 0]], centres[order[:, 1]]
    normal = b - a
    along = ((X - (a + b) / 2) * normal).sum(1) / (normal * normal).sum(1)
    return pd.DataFrame(X - along[:, None] * normal, columns=rows.columns)


@pytest.mark.parametrize(
    ("make", "data"),
    [
        pytest.param(
            lambda: KMeans(4, n_init=3, random_state=0), "cancer", id="kmeans"
        ),
        pytest.param(
            lambda: KMeans(8, n_init=3, random_state=0), "wine", id="kmeans-8"
        ),
        pytest.param(
            lambda: MiniBatchKMeans(5, n_init=3, random_state=0),
            "cancer",
            id="minibatch",
        ),
    ],
)
def test_kmeans_twin_gives_sklearn_clusters_on_fresh_rows(make: Any, data: str) -> None:
    frame = _data(data)
    model = make().fit(frame)
    built = _twin(model, frame)
    rows = _fresh(frame)
    clusters = _clusters(built, rows)
    assert clusters.tolist() == model.predict(rows).tolist()
    assert len(set(clusters.tolist())) > 1
    assert [o["role"] for o in built.facts["outputs"]] == ["labels", "scores"]
    assert built.facts["parity"]["compared"] == ["labels"]


def test_rows_equidistant_from_two_centres_get_sklearn_cluster() -> None:
    """Large feature values (areas in the thousands): adding ||x||^2 first, as
    skl2onnx does, would round the two distances together; the twin compares
    the sums scikit-learn compares."""
    frame = _data("cancer")
    model = KMeans(4, n_init=3, random_state=0).fit(frame)
    built = _twin(model, frame)
    rows = _equidistant(model, _fresh(frame))
    assert _clusters(built, rows).tolist() == model.predict(rows).tolist()


def test_kmeans_fitted_on_float32_is_refused_in_one_line() -> None:
    """scikit-learn then computes in float32 (and refuses float64 rows)."""
    frame = _data("cancer")
    model = KMeans(4, n_init=3, random_state=0).fit(frame.to_numpy(np.float32))
    built = build_twin(model, frame.to_numpy())
    assert isinstance(built, NoTwin)
    assert "\n" not in built.reason
    assert "KMeans" in built.reason and "float32" in built.reason


def test_bisecting_kmeans_is_refused_in_one_line_naming_it() -> None:
    frame = _data("wine")
    model = BisectingKMeans(4, random_state=0).fit(frame)
    built = build_twin(model, frame.to_numpy())
    assert isinstance(built, NoTwin)
    assert "\n" not in built.reason and "BisectingKMeans" in built.reason
