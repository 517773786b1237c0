"""A real functions-framework process serving the local store over HTTP."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import requests

from tests.support import SEED_FEATURES, FunctionServer, published_model

pytestmark = pytest.mark.e2e


@pytest.fixture
def server(model_dir: Path, tmp_path: Path) -> Iterator[FunctionServer]:
    with FunctionServer({"MODEL_URI": str(model_dir)}, tmp_path) as running:
        yield running


def test_seed_payload_matches_scikit_learn_on_the_published_pickle(
    server: FunctionServer, model_dir: Path
) -> None:
    expected = published_model(model_dir).predict([SEED_FEATURES])[0]

    response = server.post({"features": SEED_FEATURES})

    assert response.status_code == 200
    assert response.json()["prediction"] == expected
    assert response.headers["X-Model-Version"] == response.json()["model_version"]


def test_batch_of_200_rows_equals_model_predict(
    server: FunctionServer, model_dir: Path
) -> None:
    rows = np.random.default_rng(7).normal(size=(200, 10))

    response = server.post({"instances": rows.tolist()})

    assert response.status_code == 200
    predicted = published_model(model_dir).predict(rows)
    assert response.json()["predictions"] == predicted.tolist()


def test_probabilities_equal_predict_proba(
    server: FunctionServer, model_dir: Path
) -> None:
    rows = np.random.default_rng(8).normal(size=(20, 10))
    model: Any = published_model(model_dir)

    response = server.post({"instances": rows.tolist(), "probabilities": True})

    assert response.status_code == 200, response.text
    body = response.json()
    assert body["classes"] == model.classes_.tolist()
    assert np.array_equal(np.array(body["probabilities"]), model.predict_proba(rows))


def test_32_threads_on_a_cold_instance_all_succeed_with_one_load(
    server: FunctionServer,
) -> None:
    barrier = threading.Barrier(32)

    def one(_: int) -> int:
        with requests.Session() as session:
            barrier.wait()
            return session.post(
                server.url + "/predict", json={"features": SEED_FEATURES}, timeout=60
            ).status_code

    assert server.load_count() == 0
    with ThreadPoolExecutor(32) as pool:
        statuses = list(pool.map(one, range(32)))

    assert statuses == [200] * 32
    assert server.load_count() == 1


def test_health_answers_without_loading(server: FunctionServer) -> None:
    response = requests.get(server.url + "/health", timeout=10)

    assert response.status_code == 200
    assert response.json() == {"status": "ok"}
    assert server.load_count() == 0


def test_errors_are_json_even_on_paths_the_framework_owns(
    server: FunctionServer,
) -> None:
    for path in ("/robots.txt", "/favicon.ico", "/nope"):
        response = requests.get(server.url + path, timeout=10)

        assert response.status_code == 404
        assert response.json()["error"]["code"] == "not_found"


def test_malformed_json_is_a_400_without_a_stack_trace(server: FunctionServer) -> None:
    response = requests.post(
        server.url + "/predict",
        data='{"features": [1, 2',
        headers={"Content-Type": "application/json"},
        timeout=10,
    )

    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_json"
    assert "Traceback" not in response.text


def _strict(text: str) -> Any:
    """`text` parsed as strict JSON: NaN, Infinity and -Infinity fail."""

    def refuse(constant: str) -> None:
        raise AssertionError(f"not strict JSON: {constant}")

    return json.loads(text, parse_constant=refuse)


def test_responses_are_strict_json(server: FunctionServer, model_dir: Path) -> None:
    """An answer and an error, each with the status it must have: a 503 or any
    other answer parsing cleanly proves nothing."""
    model: Any = published_model(model_dir)

    answer = server.post({"features": SEED_FEATURES, "probabilities": True})
    refused = server.post({"features": [*SEED_FEATURES[:9], "Infinity"]})

    assert answer.status_code == 200, answer.text
    assert answer.headers["Content-Type"].startswith("application/json")
    body = _strict(answer.text)
    assert body["prediction"] == model.predict([SEED_FEATURES])[0]
    assert np.allclose(body["probabilities"], model.predict_proba([SEED_FEATURES])[0])
    assert refused.status_code == 400, refused.text
    assert refused.headers["Content-Type"].startswith("application/json")
    assert _strict(refused.text)["error"]["code"] == "invalid_value"
