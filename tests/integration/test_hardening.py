"""What an attacker with a bucket, a long path or a hostile body can reach: each
test here failed before the fix it names (issue: hardening, round 2)."""

from __future__ import annotations

import importlib
import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from skserve.manifest import LATEST, MANIFEST, Manifest
from tests.support import SEED_FEATURES, call
from train.cli import main as train

SECRET = "s3://private-bucket/some/secret/location"


def _version(store: Path) -> str:
    return (store / LATEST).read_text().strip()


def test_latest_holding_a_location_never_reaches_the_client(
    served: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (served / LATEST).write_text(SECRET)

    response = call(json={"features": SEED_FEATURES})

    assert response.status_code == 503
    assert "private-bucket" not in response.get_data(as_text=True)
    assert (
        "LATEST does not hold a valid model version id"
        in (response.get_json()["error"]["message"])
    )
    assert "private-bucket" in capsys.readouterr().out  # the log has it


def test_a_huge_manifest_name_is_not_echoed(served: Path) -> None:
    version = _version(served)
    path = served / "versions" / version / MANIFEST
    manifest = Manifest.from_bytes(path.read_bytes())
    manifest.data["name"] = "n" * 200_000
    path.write_bytes(manifest.to_bytes())

    response = call(json={"features": SEED_FEATURES})

    assert response.status_code == 503
    assert len(response.get_data()) < 1000
    assert "nnnnnnnnnn" not in response.get_data(as_text=True)
    assert "published for another model" in response.get_json()["error"]["message"]


def test_a_stored_sklearn_version_is_not_echoed(served: Path) -> None:
    version = _version(served)
    path = served / "versions" / version / MANIFEST
    manifest = Manifest.from_bytes(path.read_bytes())
    manifest.data["environment"]["scikit-learn"] = "<script>" + "x" * 10_000
    path.write_bytes(manifest.to_bytes())
    os.environ["MODEL_RUNTIME"] = "sklearn"  # the pickle's check, not the twin's

    response = call(json={"features": SEED_FEATURES})

    assert response.status_code == 503
    message = response.get_json()["error"]["message"]
    assert "<script>" not in message and "xxxxxxxx" not in message
    assert "an unknown version" in message


# werkzeug refuses to build such a header itself, so it goes in the WSGI environ
# as a server would put it there.
NEWLINE_ID = {"HTTP_X_REQUEST_ID": "abc\n"}


def test_a_request_id_with_a_trailing_newline_is_replaced(served: Path) -> None:
    import flask

    import main

    context = flask.Flask(__name__).test_request_context(
        "/health", environ_base=NEWLINE_ID
    )
    with context:
        response = main.predict(flask.request)

    assert response.status_code == 200
    assert response.headers["X-Request-Id"] not in ("abc", "abc\n")
    assert len(response.headers["X-Request-Id"]) == 32


def test_a_request_id_with_a_trailing_newline_through_the_test_client(
    client: Any, served: Path
) -> None:
    response = client.get("/health", environ_base=NEWLINE_ID)

    assert response.status_code == 200
    assert "\n" not in response.headers["X-Request-Id"]
    assert response.headers["X-Request-Id"] != "abc"


@pytest.fixture
def lambda_handler() -> Iterator[Any]:
    """lambda_main.handler, imported as Lambda's cold start does."""
    saved_main = sys.modules.get("main")
    sys.modules.pop("lambda_main", None)
    module: ModuleType = importlib.import_module("lambda_main")
    yield module.handler
    sys.modules.pop("lambda_main", None)
    if saved_main is not None:
        sys.modules["main"] = saved_main


def test_a_request_id_with_a_trailing_newline_through_the_lambda_handler(
    lambda_handler: Any, served: Path
) -> None:
    event = {
        "version": "2.0",
        "routeKey": "GET /health",
        "rawPath": "/health",
        "rawQueryString": "",
        "headers": {"host": "example.com", "x-request-id": "abc\n"},
        "requestContext": {
            "http": {
                "method": "GET",
                "path": "/health",
                "protocol": "HTTP/1.1",
                "sourceIp": "203.0.113.7",
            },
            "requestId": "r",
            "routeKey": "GET /health",
            "stage": "$default",
        },
        "isBase64Encoded": False,
    }

    response = lambda_handler(event, None)

    assert response["statusCode"] == 200
    headers = {k.lower(): v for k, v in response["headers"].items()}
    assert headers["x-request-id"] not in ("abc", "abc\n")


def test_a_long_path_is_echoed_and_logged_bounded(
    served: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = "/" + "p" * 2_000_000

    response = call("GET", path, headers={"User-Agent": "u" * 100_000})

    assert response.status_code == 404
    assert len(response.get_data()) < 500
    lines = [line for line in capsys.readouterr().out.splitlines() if line]
    assert lines and max(len(line) for line in lines) < 4000
    assert json.loads(lines[-1])["httpRequest"]["status"] == 404


@pytest.mark.parametrize(
    "body",
    [
        b'{"features": [' + b"[]," * 1_000_000 + b"[]]}",
        b'{"instances": [' + b"{}," * 1_000_000 + b"{}]}",
    ],
    ids=["empty lists in a row", "empty objects as rows"],
)
def test_a_body_of_empty_containers_is_refused_before_it_is_decoded(
    served: Path, body: bytes
) -> None:
    response = call(data=body, content_type="application/json")

    assert response.status_code == 413
    assert response.get_json()["error"]["code"] == "too_many_rows"
    assert "MAX_ROWS=10000" in response.get_json()["error"]["message"]


@pytest.mark.parametrize("depth", range(930, 1011, 2))
def test_a_row_nested_near_the_decoders_limit_is_a_400(
    served: Path, depth: int, capsys: pytest.CaptureFixture[str]
) -> None:
    # Near the limit a body is refused as nested too deeply, or decoded and its
    # cell refused; the refusal quotes the cell, which once raised a
    # RecursionError there (a 500 and an ERROR line).
    row = "[" * depth + "]" * depth + ", 1, 2, 3, 4, 5, 6, 7, 8, 9"
    body = '{"features": [' + row + "]}"

    response = call(data=body, content_type="application/json")

    assert response.status_code == 400
    assert response.get_json()["error"]["code"] in ("invalid_json", "invalid_value")
    assert '"severity":"ERROR"' not in capsys.readouterr().out


def test_brackets_inside_strings_do_not_count_against_the_structure_budget(
    served: Path,
) -> None:
    os.environ["MAX_ROWS"] = "1"
    body = json.dumps({"features": SEED_FEATURES, "note": "[[[[{{{{" * 100})

    response = call(data=body, content_type="application/json")

    assert response.status_code == 200, response.get_json()


def test_publishing_a_file_records_its_name_not_the_publishers_path(
    tmp_path: Path, seed_model: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    import joblib

    private = tmp_path / "home" / "alice" / "secret-project"
    private.mkdir(parents=True)
    joblib.dump(seed_model, private / "model.pkl")

    code = train(["publish", str(private / "model.pkl"), "--store", str(tmp_path)])

    assert code == 0, capsys.readouterr().err
    manifest = json.loads(
        next((tmp_path / "default" / "versions").glob("*/manifest.json")).read_text()
    )
    assert manifest["training"]["source"] == "file:model.pkl"


def test_a_manifest_over_one_mebibyte_is_refused_not_parsed(
    served: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    version = _version(served)
    path = served / "versions" / version / MANIFEST
    manifest = Manifest.from_bytes(path.read_bytes())
    manifest.data["padding"] = "p" * (2 * 1024 * 1024)
    path.write_bytes(manifest.to_bytes())

    response = call(json={"features": SEED_FEATURES})
    metadata = call("GET", "/metadata")

    assert response.status_code == metadata.status_code == 503
    assert response.get_json()["error"]["code"] == "object_too_large"
    assert len(metadata.get_data()) < 1000 and "ppppp" not in metadata.get_data(
        as_text=True
    )


def test_an_artifact_larger_than_its_manifest_says_is_refused(served: Path) -> None:
    os.environ["MODEL_RUNTIME"] = "sklearn"
    version = _version(served)
    pickle_path = served / "versions" / version / "model.pkl"
    with pickle_path.open("ab") as handle:
        handle.write(b"\0" * 1024 * 1024)  # a megabyte the manifest does not list

    response = call(json={"features": SEED_FEATURES})

    assert response.status_code == 503
    assert response.get_json()["error"]["code"] == "integrity_error"
    assert "larger than its manifest says" in response.get_json()["error"]["message"]


def test_max_model_bytes_refuses_a_bigger_artifact_before_download(
    served: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from skserve.storage.local import LocalStore

    reads: list[str] = []
    real = LocalStore.read
    monkeypatch.setattr(
        LocalStore,
        "read",
        lambda self, key, **kw: reads.append(key) or real(self, key, **kw),
    )
    os.environ.update(MODEL_RUNTIME="sklearn", MAX_MODEL_BYTES="4096")

    response = call(json={"features": SEED_FEATURES})

    assert response.status_code == 503
    body = response.get_json()["error"]
    assert body["code"] == "incompatible_model"
    assert "MAX_MODEL_BYTES=4096" in body["message"]
    assert not any(key.endswith("model.pkl") for key in reads)


def test_an_undefined_holdout_score_is_null_and_metadata_still_answers(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """R² of a one-row holdout is NaN: strict JSON records it as null."""
    data = tmp_path / "five.csv"
    data.write_text("a,y\n1,1.5\n2,2.5\n3,3.1\n4,4.9\n5,5.2\n")
    store = tmp_path / "store"
    args = ["--data", str(data), "--target", "y", "--task", "regression"]

    code = train([*args, "--store", str(store), "--name", "n", "--no-twin"])

    assert code == 0, capsys.readouterr().err
    os.environ["MODEL_URI"] = str(store / "n")
    response = call("GET", "/metadata")
    assert response.status_code == 200
    assert response.get_json()["metrics"]["r2"] is None
