"""The tabular models users deploy, published with the CLI and served by real
functions-framework processes: through v1 (lists and named objects) each
answers what the model itself answers on a DataFrame of the same rows, nulls
and an unseen category included."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

from tests.e2e.tabular import SHAPES, Published, publish_all
from tests.support import FunctionServer

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

NAMES = [shape.name for shape in SHAPES]


@pytest.fixture(scope="module")
def published(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Published]:
    return publish_all(tmp_path_factory.mktemp("tabular"))


@pytest.fixture(scope="module")
def servers(
    published: dict[str, Published], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, FunctionServer]]:
    """One function per shape, all started before any is waited for."""
    logs = tmp_path_factory.mktemp("logs")
    started = {
        name: FunctionServer({"MODEL_URI": str(p.root)}, logs, wait=False)
        for name, p in published.items()
    }
    try:
        for server in started.values():
            server.wait_ready()
        yield started
    finally:
        for server in started.values():
            server.stop()


@pytest.mark.parametrize("name", NAMES)
def test_named_rows_get_the_models_own_answers(
    published: dict[str, Published], servers: dict[str, FunctionServer], name: str
) -> None:
    model, server = published[name], servers[name]
    rows = model.shape.rows()
    body: dict[str, Any] = {"instances": rows}
    if model.shape.task == "classification":
        body["probabilities"] = True
    if model.shape.task == "outlier_detection":
        body["scores"] = True

    response = server.post(body)

    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["predictions"] == model.expected(rows)
    if model.shape.task == "classification":
        assert answer["probabilities"] == model.expected_proba(rows)
        assert answer["classes"] == ["churn", "stay"]
    if model.shape.task == "outlier_detection":
        scores = model.model.decision_function(model.frame_of(rows)).tolist()
        assert answer["scores"] == scores


@pytest.mark.parametrize("name", NAMES)
def test_rows_as_lists_in_the_models_order_get_the_same_answers(
    published: dict[str, Published], servers: dict[str, FunctionServer], name: str
) -> None:
    model, server = published[name], servers[name]
    rows = model.shape.rows()
    lists = [[row[c] for c in model.shape.columns] for row in rows]

    batch = server.post({"instances": lists}).json()
    singles = [server.post({"features": row}).json()["prediction"] for row in lists]

    assert batch["predictions"] == singles == model.expected(rows)


@pytest.mark.parametrize("name", NAMES)
def test_metadata_tells_callers_the_schema_and_task(
    published: dict[str, Published], servers: dict[str, FunctionServer], name: str
) -> None:
    model = published[name]

    body = _get(servers[name], "/metadata")

    assert body["task"] == model.shape.task
    schema = body["input_schema"]
    assert [c["name"] for c in schema["columns"]] == model.shape.columns
    nullable = {c["name"]: c["nullable"] for c in schema["columns"]}
    if not model.shape.complete:
        assert nullable["income"] and nullable["age"]
    else:
        assert not any(nullable.values())
    if model.shape.categorical:
        assert schema["format"] == "dataframe"
        assert {c["kind"] for c in schema["columns"][2:]} == {"category"}
    example = _post(servers[name], {"features": body["example"]})
    assert (
        example["prediction"]
        == model.expected(
            [dict(zip(model.shape.columns, body["example"], strict=True))]
        )[0]
    )


def _get(server: FunctionServer, path: str) -> Any:
    import requests

    response = requests.get(server.url + path, timeout=60)
    assert response.status_code == 200, response.text
    return response.json()


def _post(server: FunctionServer, body: Any) -> Any:
    response = server.post(body)
    assert response.status_code == 200, response.text
    return response.json()


def test_a_missing_value_where_the_model_needs_one_is_a_400_naming_it(
    published: dict[str, Published], servers: dict[str, FunctionServer]
) -> None:
    row = {"income": 50.0, "age": None}

    response = servers["df_forest"].post({"features": row})

    assert response.status_code == 400
    assert response.json()["error"] == {
        "code": "invalid_value",
        "message": "features[1] ('age') may not be missing: this model needs a "
        "finite number there, got null",
    }
    assert not np.isnan(published["df_forest"].train.to_numpy()).any()
