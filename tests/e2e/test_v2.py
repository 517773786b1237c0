"""The Open Inference Protocol (V2) through a real functions-framework process,
with the clients people already use: tritonclient (JSON and binary tensor data)
and KServe's InferenceRESTClient, then raw HTTP for every error, auth, CORS and
the limits. Predictions must equal scikit-learn's on the published pickle."""

from __future__ import annotations

import asyncio
import json
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import requests
import tritonclient.http as triton
from kserve import InferenceRESTClient, InferInput, InferRequest, RESTConfig
from sklearn.datasets import make_regression
from sklearn.linear_model import LinearRegression
from sklearn.tree import DecisionTreeClassifier
from tritonclient.utils import InferenceServerException

from tests.support import (
    SEED_FEATURES,
    FunctionServer,
    publish_estimator,
    published_model,
)

pytestmark = pytest.mark.e2e

API_KEY = "v2-key-0123456789abcdef"
ROWS = np.array(
    [SEED_FEATURES, [-v for v in SEED_FEATURES], [v * 2 for v in SEED_FEATURES]]
)


@pytest.fixture(scope="module")
def store(seed_store: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A private copy of the published seed model, for this module's servers."""
    target = tmp_path_factory.mktemp("v2-store") / "seed"
    shutil.copytree(seed_store / "seed", target)
    return target


@pytest.fixture(scope="module")
def server(
    store: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[FunctionServer]:
    env = {"MODEL_URI": str(store)}
    with FunctionServer(env, tmp_path_factory.mktemp("v2-open")) as running:
        yield running


@pytest.fixture(scope="module")
def locked(
    store: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[FunctionServer]:
    """API keys, CORS and tight limits."""
    env = {
        "MODEL_URI": str(store),
        "API_KEYS": API_KEY,
        "CORS_ALLOW_ORIGINS": "https://app.example",
        "MAX_ROWS": "2",
        "MAX_BODY_BYTES": "1024",
    }
    with FunctionServer(env, tmp_path_factory.mktemp("v2-locked")) as running:
        yield running


@pytest.fixture(scope="module")
def seed(store: Path) -> Any:
    return published_model(store)


@pytest.fixture
def client(server: FunctionServer) -> Iterator[triton.InferenceServerClient]:
    connection = triton.InferenceServerClient(server.url.removeprefix("http://"))
    yield connection
    connection.close()


def version_of(store: Path) -> str:
    return (store / "LATEST").read_text().strip()


def triton_input(rows: np.ndarray, *, binary: bool) -> triton.InferInput:
    tensor = triton.InferInput("input-0", list(rows.shape), "FP64")
    tensor.set_data_from_numpy(rows.astype(np.float64), binary_data=binary)
    return tensor


def v2_body(rows: list[list[float]], datatype: str = "FP64", **extra: Any) -> dict:
    """A JSON inference request for `rows`."""
    shape = [len(rows), len(rows[0]) if rows else 0]
    tensor = {"name": "x", "datatype": datatype, "shape": shape, "data": rows}
    return {"inputs": [tensor], **extra}


def post(
    server: FunctionServer,
    body: Any,
    path: str = "/v2/models/seed/infer",
    **kwargs: Any,
) -> requests.Response:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    return requests.post(server.url + path, data=data, timeout=60, **kwargs)


def error_of(response: requests.Response) -> str:
    """The spec's error body: exactly one key, a message string."""
    body = response.json()
    assert set(body) == {"error"} and isinstance(body["error"], str), body
    assert "Traceback" not in body["error"]
    return body["error"]


# --- tritonclient


def test_tritonclient_sees_a_live_and_ready_server_and_model(
    client: triton.InferenceServerClient, store: Path
) -> None:
    assert client.is_server_live()
    assert client.is_server_ready()
    assert client.is_model_ready("seed")
    assert client.is_model_ready("seed", model_version=version_of(store))
    assert not client.is_model_ready("other")
    assert not client.is_model_ready("seed", model_version="20200101T000000Z-0")


def test_tritonclient_reads_server_and_model_metadata(
    client: triton.InferenceServerClient, store: Path
) -> None:
    server = client.get_server_metadata()
    model = client.get_model_metadata("seed")

    assert "binary_tensor_data" in server["extensions"]
    assert model["name"] == "seed" and model["versions"] == [version_of(store)]
    assert model["inputs"] == [
        {"name": "input-0", "datatype": "FP64", "shape": [-1, 10]}
    ]
    assert model["outputs"] == [
        {"name": "predict", "datatype": "INT64", "shape": [-1, 1]},
        {"name": "predict_proba", "datatype": "FP64", "shape": [-1, 2]},
    ]


def test_tritonclient_json_infer_equals_scikit_learn(
    client: triton.InferenceServerClient, seed: Any
) -> None:
    outputs = [
        triton.InferRequestedOutput("predict", binary_data=False),
        triton.InferRequestedOutput("predict_proba", binary_data=False),
    ]

    result = client.infer(
        "seed", [triton_input(ROWS, binary=False)], outputs=outputs, request_id="j1"
    )

    assert result.get_response()["id"] == "j1"
    assert result.as_numpy("predict").ravel().tolist() == seed.predict(ROWS).tolist()
    assert np.allclose(result.as_numpy("predict_proba"), seed.predict_proba(ROWS))


def test_tritonclient_defaults_binary_in_and_out_equal_scikit_learn(
    client: triton.InferenceServerClient, seed: Any, store: Path
) -> None:
    result = client.infer("seed", [triton_input(ROWS, binary=True)])
    versioned = client.infer(
        "seed",
        [triton_input(ROWS, binary=True)],
        model_version=version_of(store),
        outputs=[triton.InferRequestedOutput("predict_proba")],
    )

    labels = result.as_numpy("predict")
    assert labels.dtype == np.int64 and labels.shape == (3, 1)
    assert labels.ravel().tolist() == seed.predict(ROWS).tolist()
    probabilities = versioned.as_numpy("predict_proba")
    assert probabilities.shape == (3, 2)
    assert np.array_equal(probabilities, seed.predict_proba(ROWS))


def test_tritonclient_binary_fp32_input_is_widened(
    client: triton.InferenceServerClient, seed: Any
) -> None:
    rows = ROWS.astype(np.float32)
    tensor = triton.InferInput("input-0", list(rows.shape), "FP32")
    tensor.set_data_from_numpy(rows)

    result = client.infer("seed", [tensor])

    expected = seed.predict(rows.astype(np.float64)).tolist()
    assert result.as_numpy("predict").ravel().tolist() == expected


def test_tritonclient_raises_the_servers_message_and_status(
    client: triton.InferenceServerClient,
) -> None:
    with pytest.raises(InferenceServerException) as unknown:
        client.get_model_metadata("other")
    with pytest.raises(InferenceServerException) as wrong_shape:
        client.infer("seed", [triton_input(ROWS[:, :9], binary=True)])

    assert unknown.value.status() == "404"
    assert unknown.value.message() == "unknown model 'other'; this server serves 'seed'"
    assert wrong_shape.value.status() == "400"
    assert "this model takes [rows, 10]" in wrong_shape.value.message()


# --- KServe's own REST client


def kserve_calls(url: str, binary: bool) -> tuple[bool, bool, bool, Any]:
    async def run() -> tuple[bool, bool, bool, Any]:
        tensor = InferInput("input-0", list(ROWS.shape), "FP64")
        tensor.set_data_from_numpy(ROWS, binary_data=binary)
        request = InferRequest(model_name="seed", infer_inputs=[tensor], request_id="k")
        async with InferenceRESTClient(RESTConfig(protocol="v2")) as rest:
            return (
                await rest.is_server_live(url),
                await rest.is_server_ready(url),
                await rest.is_model_ready(url, "seed"),
                await rest.infer(url, request, model_name="seed"),
            )

    return asyncio.run(run())


@pytest.mark.parametrize("binary", [False, True], ids=["json", "binary"])
def test_kserve_rest_client_health_and_infer_equal_scikit_learn(
    server: FunctionServer, seed: Any, binary: bool
) -> None:
    live, ready, model_ready, response = kserve_calls(server.url, binary)

    assert live and ready and model_ready
    assert response.id == "k" and response.model_name == "seed"
    (output,) = response.outputs
    assert output.name == "predict"
    assert output.as_numpy().ravel().tolist() == seed.predict(ROWS).tolist()


# --- raw HTTP: what every client meets


def test_a_request_without_content_type_is_accepted(server: FunctionServer) -> None:
    response = post(server, v2_body(ROWS.tolist()))

    assert "Content-Type" not in response.request.headers
    assert response.status_code == 200, response.text
    assert response.headers["X-Model-Version"] == response.json()["model_version"]


def one_tensor(**fields: Any) -> dict:
    """A request whose one input is `fields` over a valid one-row tensor."""
    tensor = {"name": "x", "datatype": "FP64", "shape": [1, 10], "data": SEED_FEATURES}
    return {"inputs": [{**tensor, **fields}]}


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b'{"inputs": [', "malformed JSON"),
        (
            one_tensor(shape="1x10"),
            "shape must be [rows, n_features] (one tensor) or [rows] / [rows, 1] "
            '(one input per column), got "1x10"',
        ),
        (one_tensor(shape=[10]), "shape must be [rows, n_features], got [10]"),
        (
            one_tensor(datatype="INT32"),
            "inputs[0] row 0, column 0 must be an INT32 integer",
        ),
        (
            one_tensor(datatype="BYTES"),
            "datatype must be FP64, FP32, FP16, INT8-INT64 or UINT8-UINT64",
        ),
        (one_tensor(shape=[2, 10]), "holds 20 elements, data has 10"),
        (v2_body([SEED_FEATURES[:9]]), "this model takes [rows, 10]"),
        (
            v2_body([SEED_FEATURES], outputs=[{"name": "labels"}]),
            "unknown output 'labels'",
        ),
        (
            v2_body([[*SEED_FEATURES[:9], None]]),
            "inputs[0] row 0, column 9 may not be missing: this model needs a finite "
            "number there, got null",
        ),
    ],
)
def test_bad_requests_are_400_with_the_specs_error_body(
    server: FunctionServer, body: Any, message: str
) -> None:
    response = post(server, body)

    assert response.status_code == 400
    assert message in error_of(response)


def test_non_finite_values_are_refused_like_predict_refuses_them(
    server: FunctionServer,
) -> None:
    text = json.dumps(v2_body([SEED_FEATURES])).replace("0.3", "NaN")

    response = post(server, text.encode())

    assert response.status_code == 400
    assert error_of(response).startswith("inputs[0] row 0, column 4 must be a finite")


def test_unknown_model_and_version_are_404s_naming_the_served_ones(
    server: FunctionServer, store: Path
) -> None:
    served = version_of(store)
    unknown = requests.get(server.url + "/v2/models/other/ready", timeout=30)
    version = post(
        server, v2_body([SEED_FEATURES]), "/v2/models/seed/versions/20200101T0Z-1/infer"
    )
    right = post(
        server, v2_body([SEED_FEATURES]), f"/v2/models/seed/versions/{served}/infer"
    )

    assert unknown.status_code == version.status_code == 404
    assert "this server serves 'seed'" in error_of(unknown)
    assert f"this instance serves version {served!r}" in error_of(version)
    assert right.status_code == 200 and right.json()["model_version"] == served


def test_unknown_paths_and_methods_under_v2_answer_in_v2s_shape(
    server: FunctionServer,
) -> None:
    missing = requests.get(server.url + "/v2/models/seed/explain", timeout=30)
    wrong = requests.get(server.url + "/v2/models/seed/infer", timeout=30)

    assert missing.status_code == 404
    assert "POST /v2/models/seed/infer" in error_of(missing)
    assert wrong.status_code == 405 and wrong.headers["Allow"] == "OPTIONS, POST"
    assert "GET is not allowed" in error_of(wrong)


def test_a_text_body_is_415(server: FunctionServer) -> None:
    response = post(
        server, v2_body([SEED_FEATURES]), headers={"Content-Type": "text/plain"}
    )

    assert response.status_code == 415
    assert "Content-Type must be application/json" in error_of(response)


def test_predict_proba_of_a_regressor_is_400_and_labels_are_floats(
    tmp_path: Path,
) -> None:
    x, y = make_regression(n_samples=60, n_features=3, random_state=0)
    model = LinearRegression().fit(x, y)
    root = tmp_path / "store" / "prices"
    publish_estimator(
        root,
        model,
        feature_names=["a", "b", "c"],
        target="price",
        metrics={},
        training={},
    )
    path = "/v2/models/prices/infer"

    with FunctionServer({"MODEL_URI": str(root)}, tmp_path) as regressor:
        metadata = requests.get(regressor.url + "/v2/models/prices", timeout=30)
        labels = post(regressor, v2_body(x[:2].tolist()), path)
        proba = post(
            regressor,
            v2_body(x[:2].tolist(), outputs=[{"name": "predict_proba"}]),
            path,
        )

    assert metadata.json()["outputs"] == [
        {"name": "predict", "datatype": "FP64", "shape": [-1, 1]}
    ]
    (output,) = labels.json()["outputs"]
    assert output["datatype"] == "FP64"
    assert output["data"] == pytest.approx(model.predict(x[:2]).tolist())
    assert proba.status_code == 400
    assert "predict_proba is only given by classifiers" in error_of(proba)


def test_string_classes_are_bytes_in_json_and_binary(tmp_path: Path) -> None:
    x = np.array([[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0]] * 5)
    y = np.array(["cat", "dog", "dog", "gnu"] * 5)
    model = DecisionTreeClassifier(random_state=0).fit(x, y)
    root = tmp_path / "store" / "animals"
    publish_estimator(
        root, model, feature_names=["p", "q"], target="kind", metrics={}, training={}
    )

    with FunctionServer({"MODEL_URI": str(root)}, tmp_path) as animals:
        as_json = post(animals, v2_body(x[:4].tolist()), "/v2/models/animals/infer")
        client = triton.InferenceServerClient(animals.url.removeprefix("http://"))
        tensor = triton.InferInput("input-0", [4, 2], "FP64")
        tensor.set_data_from_numpy(x[:4])
        as_binary = client.infer("animals", [tensor])
        client.close()

    expected = model.predict(x[:4]).tolist()
    (output,) = as_json.json()["outputs"]
    assert output == {
        "name": "predict",
        "datatype": "BYTES",
        "shape": [4, 1],
        "data": expected,
    }
    decoded = [v.decode() for v in as_binary.as_numpy("predict").ravel()]
    assert decoded == expected


def test_readiness_loads_the_model_and_answers_503_until_it_can(
    tmp_path: Path, store: Path
) -> None:
    target = tmp_path / "store" / "seed"
    target.mkdir(parents=True)

    with FunctionServer({"MODEL_URI": str(target)}, tmp_path) as cold:
        live = requests.get(cold.url + "/v2/health/live", timeout=30)
        missing = requests.get(cold.url + "/v2/models/seed/ready", timeout=30)
        server_ready = requests.get(cold.url + "/v2/health/ready", timeout=30)
        shutil.copytree(store, target, dirs_exist_ok=True)  # published meanwhile
        time.sleep(int(missing.headers["Retry-After"]) + 0.2)
        ready = requests.get(cold.url + "/v2/models/seed/ready", timeout=30)
        loads = cold.load_count()

    assert live.status_code == 200 and live.json() == {"live": True}
    assert missing.status_code == server_ready.status_code == 503
    assert "no model is published" in error_of(missing)
    assert ready.status_code == 200 and ready.json() == {"name": "seed", "ready": True}
    assert loads == 1


# --- auth, CORS, limits and logs: as on /predict


def test_api_keys_guard_every_v2_path_but_liveness(locked: FunctionServer) -> None:
    live = requests.get(locked.url + "/v2/health/live", timeout=30)
    ready = requests.get(locked.url + "/v2/health/ready", timeout=30)
    infer = post(locked, v2_body([SEED_FEATURES]))
    keyed = post(locked, v2_body([SEED_FEATURES]), headers={"X-API-Key": API_KEY})
    client = triton.InferenceServerClient(locked.url.removeprefix("http://"))
    with_header = client.infer(
        "seed",
        [triton_input(ROWS[:1], binary=True)],
        headers={"Authorization": f"Bearer {API_KEY}"},
    )
    client.close()

    assert live.status_code == 200
    assert ready.status_code == infer.status_code == 401
    assert infer.headers["WWW-Authenticate"].startswith("Bearer")
    error_of(infer)
    assert keyed.status_code == 200
    assert with_header.as_numpy("predict").shape == (1, 1)


def test_cors_preflight_and_headers_on_v2(locked: FunctionServer) -> None:
    origin = {"Origin": "https://app.example"}
    preflight = requests.options(
        locked.url + "/v2/models/seed/infer",
        headers={**origin, "Access-Control-Request-Method": "POST"},
        timeout=30,
    )
    answer = post(
        locked, v2_body([SEED_FEATURES]), headers={**origin, "X-API-Key": API_KEY}
    )
    refused = post(locked, v2_body([SEED_FEATURES]), headers=origin)

    assert preflight.status_code == 204
    assert preflight.headers["Allow"] == "OPTIONS, POST"
    assert preflight.headers["Access-Control-Allow-Origin"] == "https://app.example"
    assert answer.headers["Access-Control-Allow-Origin"] == "https://app.example"
    assert refused.status_code == 401  # errors stay readable cross-origin
    assert refused.headers["Access-Control-Allow-Origin"] == "https://app.example"


def test_max_rows_counts_the_tensors_first_dimension(locked: FunctionServer) -> None:
    key = {"X-API-Key": API_KEY}
    two = post(locked, v2_body(ROWS[:2].tolist()), headers=key)
    header_only = {
        "inputs": [
            {
                "name": "x",
                "datatype": "FP64",
                "shape": [3, 10],
                "parameters": {"binary_data_size": 240},
            }
        ]
    }
    raw = json.dumps(header_only).encode()
    three = post(
        locked,
        raw + ROWS.tobytes(),
        headers={**key, "Inference-Header-Content-Length": str(len(raw))},
    )

    assert two.status_code == 200
    assert three.status_code == 413
    assert "3 rows exceed MAX_ROWS=2" in error_of(three)


def test_max_body_bytes_holds_on_v2(locked: FunctionServer) -> None:
    body = v2_body([SEED_FEATURES, SEED_FEATURES])
    body["id"] = "x" * 2000

    response = post(locked, body, headers={"X-API-Key": API_KEY})

    assert response.status_code == 413
    assert "MAX_BODY_BYTES=1024" in error_of(response)


def test_each_v2_request_logs_one_json_line(server: FunctionServer) -> None:
    post(server, v2_body(ROWS.tolist()), headers={"X-Request-Id": "v2-log-1"})

    lines = [
        json.loads(line)
        for line in server.logs().splitlines()
        if '"request_id":"v2-log-1"' in line
    ]

    assert len(lines) == 1
    assert lines[0]["message"] == "POST /v2/models/seed/infer 200"
    assert lines[0]["rows"] == 3


def test_predict_is_unchanged_beside_v2(server: FunctionServer, seed: Any) -> None:
    response = server.post({"features": SEED_FEATURES})

    assert response.status_code == 200
    assert response.json()["prediction"] == seed.predict(ROWS[:1]).tolist()[0]
