"""What an attacker with write access to an unsigned store, a cross-site page
or a crafted header can reach: each test here failed before the fix it names
(issue: hardening, round 3)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from skserve.manifest import LATEST, MANIFEST, sha256_hex
from tests.support import SEED_FEATURES, call


def _version_dir(store: Path) -> Path:
    return store / "versions" / (store / LATEST).read_text().strip()


def _install_twin(
    store: Path, data: bytes, outputs: list[dict[str, str]] | None = None
) -> None:
    """Replace the promoted version's twin (an unsigned store lets anyone)."""
    folder = _version_dir(store)
    (folder / "model.onnx").write_bytes(data)
    manifest = json.loads((folder / MANIFEST).read_text())
    manifest["files"]["model.onnx"] = {"sha256": sha256_hex(data), "bytes": len(data)}
    if outputs is not None:
        manifest["twin"]["outputs"] = outputs
    (folder / MANIFEST).write_text(json.dumps(manifest))


def _constant_twin(labels: np.ndarray, probabilities: np.ndarray) -> bytes:
    """A twin that ignores its input and answers constants."""
    nodes = [
        helper.make_node(
            "Constant", [], ["label"], value=numpy_helper.from_array(labels)
        ),
        helper.make_node(
            "Constant",
            [],
            ["probabilities"],
            value=numpy_helper.from_array(probabilities),
        ),
    ]
    graph = helper.make_graph(
        nodes,
        "crafted",
        [helper.make_tensor_value_info("X", TensorProto.DOUBLE, [None, 10])],
        [
            helper.make_tensor_value_info("label", TensorProto.INT64, [None]),
            helper.make_tensor_value_info(
                "probabilities", TensorProto.DOUBLE, [None, 2]
            ),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21)])
    return model.SerializeToString()


ROLES = [
    {"name": "label", "role": "labels"},
    {"name": "probabilities", "role": "probabilities"},
]


def _predict_with(runtime: str, probabilities: bool = True) -> Any:
    """One row through a function serving with MODEL_RUNTIME=`runtime`."""
    import main

    os.environ["MODEL_RUNTIME"] = runtime
    main._service = None  # built again from the environment
    return call(json={"instances": [SEED_FEATURES], "probabilities": probabilities})


# --- 2. twins refer to nothing outside their own bytes; answers are checked


def test_a_twin_keeping_data_in_a_file_beside_the_server_is_refused(
    served: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    twin = onnx.load_from_string((_version_dir(served) / "model.onnx").read_bytes())
    (tensor,) = [
        t for t in twin.graph.initializer if t.data_type == TensorProto.DOUBLE
    ][:1]
    size = len(numpy_helper.to_array(tensor).tobytes())
    tensor.ClearField("raw_data")
    tensor.ClearField("double_data")
    tensor.data_location = TensorProto.EXTERNAL
    for key, value in {"location": "secret.bin", "length": str(size)}.items():
        entry = tensor.external_data.add()
        entry.key, entry.value = key, value
    _install_twin(served, twin.SerializeToString())
    (tmp_path / "secret.bin").write_bytes(np.full(size // 8, 7.0).tobytes())
    monkeypatch.chdir(tmp_path)  # where a relative location would be read

    refused = _predict_with("onnx")
    fallback = _predict_with("auto")

    assert refused.status_code == 503
    assert refused.get_json()["error"]["code"] == "incompatible_model"
    assert (
        "refers to data outside its own bytes" in refused.get_json()["error"]["message"]
    )
    assert fallback.status_code == 200  # `auto` serves the verified pickle instead
    assert call("GET", "/metadata").get_json()["served_by"] == "sklearn"


def test_a_twin_answering_more_rows_than_it_was_asked_about_is_refused(
    served: Path,
) -> None:
    crafted = _constant_twin(np.zeros(28, dtype=np.int64), np.full((28, 2), 0.5))
    _install_twin(served, crafted, ROLES)

    response = _predict_with("onnx", probabilities=False)

    assert response.status_code == 503
    error = response.get_json()["error"]
    assert error["code"] == "incompatible_model"
    assert "predictions for 28 rows when asked about 1" in error["message"]


def test_a_twin_answering_a_class_the_model_does_not_have_is_refused(
    served: Path,
) -> None:
    crafted = _constant_twin(np.array([7], dtype=np.int64), np.full((1, 2), 0.5))
    _install_twin(served, crafted, ROLES)

    response = _predict_with("onnx")

    assert response.status_code == 503
    error = response.get_json()["error"]
    assert error == {
        "code": "incompatible_model",
        "message": error["message"],
    }
    assert "not one of its manifest's classes" in error["message"]
    assert "7" not in error["message"].replace(_version_dir(served).name, "")


# --- 8. trace headers are logged only in their documented form

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"


@pytest.mark.parametrize(
    "headers",
    [
        {"X-Cloud-Trace-Context": "a" * 8000 + "/1"},  # a trace id of 8,000 digits
        {"X-Cloud-Trace-Context": f"{TRACE_ID}/" + "9" * 8000},  # a huge span
        # Arabic-Indic digits: decimal to str.isdigit, not ASCII.
        {"X-Cloud-Trace-Context": f"{TRACE_ID}/\u0661\u0662\u0663"},
        {"traceparent": f"00-{TRACE_ID}-" + "a" * 8000 + "-01"},
        # Full-width hex digits: alphanumeric to str.isalnum, not hex.
        {"traceparent": f"00-{TRACE_ID}-\uff21\uff22\uff23\uff240ba902b7-01"},
    ],
)
def test_trace_headers_out_of_their_form_are_dropped_from_the_log(
    served: Path, capsys: pytest.CaptureFixture[str], headers: dict[str, str]
) -> None:
    capsys.readouterr()

    response = call("GET", "/health", headers=headers)

    assert response.status_code == 200
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    (entry,) = [line for line in lines if line.get("message") == "GET /health 200"]
    assert "logging.googleapis.com/trace" not in entry
    assert "logging.googleapis.com/spanId" not in entry
    assert len(json.dumps(entry)) < 2000


def test_a_well_formed_trace_header_is_still_logged(
    served: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    capsys.readouterr()

    call("GET", "/health", headers={"X-Cloud-Trace-Context": f"{TRACE_ID}/123;o=1"})

    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    (entry,) = [line for line in lines if line.get("message") == "GET /health 200"]
    assert entry["logging.googleapis.com/trace"].endswith(TRACE_ID)
    assert entry["logging.googleapis.com/spanId"] == "123"


# --- 11. every answer says nosniff and no-store


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("POST", "/predict", {"features": SEED_FEATURES}),
        ("POST", "/predict", {"features": [1]}),
        ("GET", "/health", None),
        ("GET", "/metadata", None),
        ("GET", "/openapi.json", None),
        ("GET", "/<script>alert(1)</script>", None),
        ("DELETE", "/predict", None),
        ("OPTIONS", "/predict", None),
        ("GET", "/robots.txt", None),  # functions-framework answers it itself
        ("GET", "/v2/models/seed", None),
        ("POST", "/v2/models/seed/infer", {"inputs": []}),
    ],
)
def test_every_answer_forbids_sniffing_and_storing(
    served: Path, client: Any, method: str, path: str, body: Any
) -> None:
    response = client.open(path, method=method, json=body)

    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["Cache-Control"] == "no-store"


# --- 10. duplicate JSON keys are refused by V2 as by v1


@pytest.mark.parametrize(
    "body",
    [
        b'{"inputs": [{"name": "x", "datatype": "FP64", "shape": [1, 10], '
        b'"data": [0,0,0,0,0,0,0,0,0,0], "data": [1,1,1,1,1,1,1,1,1,1]}]}',
        b'{"inputs": [], "inputs": [{"name": "x", "datatype": "FP64", '
        b'"shape": [1, 10], "data": [0,0,0,0,0,0,0,0,0,0]}]}',
    ],
)
def test_v2_refuses_a_request_with_a_duplicate_key(served: Path, body: bytes) -> None:
    response = call(
        path="/v2/models/seed/infer", data=body, content_type="application/json"
    )

    assert response.status_code == 400
    assert set(response.get_json()) == {"error"}  # V2's error, a string
    assert "duplicate key" in response.get_json()["error"]


# --- 7. browsers on sites not allowed cannot make the function work

EVIL = "https://evil.example"
V2_BODY = {
    "inputs": [
        {"name": "x", "datatype": "FP64", "shape": [1, 10], "data": SEED_FEATURES}
    ]
}


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/predict", {"features": SEED_FEATURES}),
        ("/v2/models/seed/infer", V2_BODY),
    ],
)
def test_a_page_on_a_site_not_allowed_is_refused_before_any_work(
    served: Path, capsys: pytest.CaptureFixture[str], path: str, body: Any
) -> None:
    response = call(
        path=path, data=json.dumps(body), headers={"Origin": EVIL}, content_type=""
    )

    assert response.status_code == 403
    error = response.get_json()["error"]
    message = error if path.startswith("/v2") else error["message"]
    assert "'https://evil.example' are not allowed" in message
    assert "CORS_ALLOW_ORIGINS" in message
    assert response.headers["X-Model-Version"] == "none"  # nothing was loaded
    assert "loaded model version" not in capsys.readouterr().out


def test_a_cross_site_request_without_origin_is_refused(served: Path) -> None:
    response = call(
        json={"features": SEED_FEATURES}, headers={"Sec-Fetch-Site": "cross-site"}
    )

    assert response.status_code == 403
    assert response.get_json()["error"]["code"] == "origin_not_allowed"


@pytest.mark.parametrize(
    "headers",
    [
        {},  # curl, tritonclient, a server
        {"Origin": "https://app.example"},  # allowed
        {"Origin": "http://localhost"},  # the function's own pages
        {"Sec-Fetch-Site": "same-origin"},
    ],
)
def test_clients_without_a_foreign_origin_are_served(
    served: Path, headers: dict[str, str]
) -> None:
    os.environ["CORS_ALLOW_ORIGINS"] = "https://app.example"

    response = call(json={"features": SEED_FEATURES}, headers=headers)

    assert response.status_code == 200, response.get_json()


def test_liveness_answers_any_origin(served: Path) -> None:
    for path in ("/health", "/v2/health/live"):
        assert call("GET", path, headers={"Origin": EVIL}).status_code == 200


def test_any_origin_is_allowed_when_cors_allows_all(served: Path) -> None:
    os.environ["CORS_ALLOW_ORIGINS"] = "*"

    response = call(json={"features": SEED_FEATURES}, headers={"Origin": EVIL})

    assert response.status_code == 200


# --- 12. make run listens on this machine only, unless HOST says otherwise


def _run_command(env: dict[str, str]) -> str:
    import subprocess

    from tests.support import REPO

    result = subprocess.run(
        # --no-print-directory: under `make test` this runs as a sub-make, which
        # would otherwise end its output with "Leaving directory".
        ["make", "-n", "--no-print-directory", "run"],
        cwd=REPO,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return result.stdout.strip().splitlines()[-1]


def test_make_run_binds_the_loopback_address_by_default() -> None:
    os.environ.pop("HOST", None)

    assert "infra/local/serve.py" in _run_command({})
    assert " --host 127.0.0.1 " in _run_command({})
    assert " --host 0.0.0.0 " in _run_command({"HOST": "0.0.0.0"})


# --- 1. every v1 field of the wrong JSON type is a 4xx, never an ERROR

WRONG_TYPES: dict[str, Any] = {
    "string": "x",
    "number": 1.5,
    "bool": True,
    "null": None,
    "list": [1, 2],
    "object": {"a": 1},
}
ROW = list(SEED_FEATURES)
V1_BODIES: dict[str, tuple[dict[str, Any], list[Any]]] = {
    # shape name: (a valid body, the path of each field to replace)
    "one row": (
        {"features": ROW, "probabilities": True},
        [["features"], ["probabilities"], ["features", 0]],
    ),
    "named row": (
        {"features": dict(zip([f"x{i}" for i in range(10)], ROW, strict=True))},
        [["features"], ["features", "x3"]],
    ),
    "batch": (
        {"instances": [ROW, ROW], "scores": False},
        [["instances"], ["instances", 1], ["instances", 0, 4], ["scores"]],
    ),
}


def _replaced(body: Any, path: list[Any], value: Any) -> Any:
    copy = json.loads(json.dumps(body))
    target = copy
    for step in path[:-1]:
        target = target[step]
    target[path[-1]] = value
    return copy


@pytest.mark.parametrize("kind", WRONG_TYPES)
@pytest.mark.parametrize("shape", V1_BODIES)
def test_each_v1_field_of_a_wrong_json_type_is_a_4xx_never_an_error_line(
    served: Path, capsys: pytest.CaptureFixture[str], shape: str, kind: str
) -> None:
    body, paths = V1_BODIES[shape]
    for path in paths:
        sent = _replaced(body, path, WRONG_TYPES[kind])
        if sent == body:
            continue  # the field already has this type (a valid request)

        response = call(json=sent)

        out = capsys.readouterr().out
        if response.status_code == 200:  # e.g. a number where a number goes
            continue
        assert 400 <= response.status_code < 500, (path, kind, response.get_json())
        error = response.get_json()["error"]
        assert set(error) == {"code", "message"} and error["message"], error
        errors = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
        assert not [e for e in errors if e.get("severity") == "ERROR"], (path, kind)


# --- 6. with signing, LATEST is signed, and no instance moves to an older one

KEY = "a-signing-key-of-at-least-32-characters!"


def _served_version() -> str:
    return call(json={"features": SEED_FEATURES}).headers["X-Model-Version"]


def _refresh_now() -> None:
    """The next request checks LATEST (as MODEL_REFRESH_SECONDS later would)."""
    import main

    main._service.models._next_check = 0.0


def test_an_unsigned_or_edited_latest_is_refused_when_signing_is_on(
    tmp_path: Path,
) -> None:
    from tests.support import publish_signed

    first = publish_signed(tmp_path, KEY)
    publish_signed(tmp_path, KEY)
    latest = tmp_path / "m" / LATEST
    signed = json.loads(latest.read_text())
    os.environ.update(MODEL_URI=str(tmp_path / "m"), MODEL_SIGNING_KEY=KEY)
    import main

    latest.write_text(first + "\n")  # an attacker's plain pointer to an older one
    unsigned = call(json={"features": SEED_FEATURES})
    main._service = None
    latest.write_text(json.dumps({**signed, "version": first}))  # an edited one
    edited = call(json={"features": SEED_FEATURES})

    for response in (unsigned, edited):
        assert response.status_code == 503
        assert response.get_json()["error"]["code"] == "signature_invalid"
    assert "LATEST is not signed" in unsigned.get_json()["error"]["message"]
    assert "matches none of the 1 configured" in edited.get_json()["error"]["message"]


def test_a_replayed_older_signed_latest_does_not_roll_a_running_instance_back(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from tests.support import publish_signed
    from train.cli import main as train

    older = publish_signed(tmp_path, KEY)
    saved = (tmp_path / "m" / LATEST).read_bytes()  # what an attacker kept
    newer = publish_signed(tmp_path, KEY)
    os.environ.update(
        MODEL_URI=str(tmp_path / "m"), MODEL_SIGNING_KEY=KEY, MODEL_REFRESH_SECONDS="60"
    )
    assert _served_version() == newer

    (tmp_path / "m" / LATEST).write_bytes(saved)  # replayed: validly signed, older
    _refresh_now()
    replayed = _served_version()
    # A rollback is a promotion: newer than the one served, so it is taken.
    store = ["--store", str(tmp_path), "--name", "m"]
    assert train(["promote", older, *store]) == 0
    _refresh_now()
    rolled_back = _served_version()

    assert replayed == newer
    assert "promoted before the promotion of" in capsys.readouterr().out
    assert rolled_back == older
