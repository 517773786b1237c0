"""The tabular models users deploy, published with the CLI and served by real
functions-framework processes: through v1 (lists and named objects), V2 (JSON
with BYTES columns, and MLServer's pandas form), the batch job on the
DirectRunner and the web page in Chromium, each answers what the model itself
answers on a DataFrame of the same rows, nulls and an unseen category
included. Each serves its ONNX twin (MODEL_RUNTIME=auto), so probabilities are
compared within the twin's gate tolerance; labels exactly."""

from __future__ import annotations

import csv
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import requests
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver

from tests.e2e.batch_support import counts, csv_rows, run_batch, shards
from tests.e2e.tabular import SHAPES, Published, publish_all
from tests.e2e.web_support import (
    StaticSite,
    browser_url,
    download,
    open_page,
    start_chromium,
    visible,
)
from tests.support import FunctionServer

TOLERANCE = 1e-6  # the twin's parity gate

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

NAMES = [shape.name for shape in SHAPES]


@pytest.fixture(scope="module")
def published(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Published]:
    return publish_all(tmp_path_factory.mktemp("tabular"))


@pytest.fixture(scope="module")
def site() -> Iterator[StaticSite]:
    served = StaticSite()
    yield served
    served.stop()


@pytest.fixture(scope="module")
def servers(
    published: dict[str, Published],
    site: StaticSite,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[dict[str, FunctionServer]]:
    """One function per shape (allowing the demo page's origin), all started
    before any is waited for."""
    logs = tmp_path_factory.mktemp("logs")
    started = {
        name: FunctionServer(
            {"MODEL_URI": str(p.root), "CORS_ALLOW_ORIGINS": site.origin},
            logs,
            wait=False,
        )
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
        got = np.array(answer["probabilities"])
        assert np.abs(got - model.expected_proba(rows)).max() <= TOLERANCE
        assert answer["classes"] == ["churn", "stay"]
    if model.shape.task == "outlier_detection":
        scores = model.model.decision_function(model.frame_of(rows)).tolist()
        assert answer["scores"] == scores  # outlier detectors have no twin
    served_by = _get(server, "/metadata")["served_by"]
    twin = model.shape.task != "outlier_detection"
    assert served_by == ("onnx" if twin else "sklearn")


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


# --- the Open Inference Protocol (V2)

STRINGS = ("plan", "region")


def _v2_columns(rows: list[dict[str, Any]], pandas: bool) -> dict[str, Any]:
    """One V2 input per column: BYTES for text, FP64 with null for missing
    numbers; as MLServer's pandas codec sends a DataFrame when `pandas`."""
    inputs = []
    for name in rows[0]:
        text = name in STRINGS
        spec: dict[str, Any] = {
            "name": name,
            "datatype": "BYTES" if text else "FP64",
            "shape": [len(rows), 1],
            "data": [row[name] for row in rows],
        }
        if text and pandas:
            spec["parameters"] = {"content_type": "str"}
        inputs.append(spec)
    body: dict[str, Any] = {"inputs": inputs}
    if pandas:
        body["parameters"] = {"content_type": "pd"}
    return body


@pytest.mark.parametrize("pandas", [False, True], ids=["bytes-json", "pandas-form"])
@pytest.mark.parametrize("name", NAMES)
def test_v2_columns_get_the_models_own_answers(
    published: dict[str, Published],
    servers: dict[str, FunctionServer],
    name: str,
    pandas: bool,
) -> None:
    model, server = published[name], servers[name]
    rows = model.shape.rows()
    body = _v2_columns(rows, pandas)
    if model.shape.task == "classification":
        body["outputs"] = [{"name": "predict"}, {"name": "predict_proba"}]

    response = server.post(body, f"/v2/models/{name}/infer")

    assert response.status_code == 200, response.text
    outputs = {o["name"]: o for o in response.json()["outputs"]}
    assert outputs["predict"]["data"] == model.expected(rows)
    if model.shape.task == "classification":
        got = np.array(outputs["predict_proba"]["data"]).reshape(len(rows), 2)
        assert np.abs(got - model.expected_proba(rows)).max() <= TOLERANCE


# --- the batch job on the DirectRunner


def _csv(path: Path, columns: list[str], rows: list[dict[str, Any]]) -> Path:
    """The rows as a CSV with an id column; a missing value is an empty cell."""
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id", *columns])
        for i, row in enumerate(rows):
            writer.writerow(
                [f"r{i}", *("" if row[c] is None else row[c] for c in columns)]
            )
    return path


@pytest.mark.parametrize("name", NAMES)
def test_the_batch_job_scores_each_row_as_the_model_does(
    published: dict[str, Published], tmp_path: Path, name: str
) -> None:
    model = published[name]
    rows = model.shape.rows()
    data = _csv(tmp_path / "rows.csv", model.shape.columns, rows)

    result = run_batch(
        *("--model-uri", str(model.root), "--input", str(data)),
        *("--output", str(tmp_path / "out" / "p"), "--keep", "id"),
    )

    assert result.returncode == 0, result.stderr
    assert counts(result) == (len(rows), len(rows), 0)
    scored = csv_rows([p.read_text() for p in shards(tmp_path / "out", "p")])
    by_id = {row["id"]: row["prediction"] for row in scored}
    expected = [str(label) for label in model.expected(rows)]
    assert [by_id[f"r{i}"] for i in range(len(rows))] == expected


# --- the web page in Chromium


@pytest.fixture(scope="module")
def downloads(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("downloads")


@pytest.fixture(scope="module")
def browser(downloads: Path) -> Iterator[WebDriver]:
    driver = start_chromium(downloads)
    yield driver
    driver.quit()


@pytest.mark.parametrize("name", NAMES)
def test_the_web_page_scores_a_csv_of_these_rows_as_the_model_does(
    published: dict[str, Published],
    servers: dict[str, FunctionServer],
    site: StaticSite,
    browser: WebDriver,
    downloads: Path,
    tmp_path: Path,
    name: str,
) -> None:
    model = published[name]
    rows = model.shape.rows()
    data = _csv(tmp_path / "rows.csv", model.shape.columns, rows)
    open_page(browser, site, url=browser_url(servers[name]))
    visible(browser, "batch")

    browser.find_element(By.ID, "csv").send_keys(str(data))
    browser.find_element(By.CSS_SELECTOR, "#batch-form button").click()
    visible(browser, "batch-result", timeout=60)
    scored = list(csv.DictReader(download(browser, downloads).read_text().splitlines()))

    assert [row["prediction"] for row in scored] == [
        str(label) for label in model.expected(rows)
    ]
    assert len(scored) == len(rows)  # in the file's order, other columns left out
