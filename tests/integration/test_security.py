"""The function's hardening: signed manifests, API keys, CORS, logs, hidden bugs."""

from __future__ import annotations

import json
import os
import pickle
import shutil
from pathlib import Path

import pytest

from skserve.manifest import LATEST, MANIFEST, Manifest, sha256_hex
from skserve.runtimes.sklearn import ARTIFACT
from skserve.signing import key_id
from tests.support import (
    SEED_FEATURES,
    UnpicklingMarker,
    call,
    latest_version,
    publish_signed,
    published_model,
)

KEY = "k" * 32
OLD_KEY = "o" * 32
SEED = {"features": SEED_FEATURES}


def _folder(store: Path, version: str) -> Path:
    return store / "m" / "versions" / version


# --- signed manifests -------------------------------------------------------------


def test_signed_model_is_served_when_the_key_matches(tmp_path: Path) -> None:
    version = publish_signed(tmp_path, KEY)
    os.environ.update(MODEL_URI=str(tmp_path / "m"), MODEL_SIGNING_KEY=KEY)

    response = call(json=SEED)

    manifest = json.loads((_folder(tmp_path, version) / MANIFEST).read_text())
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.headers["X-Model-Version"] == version
    assert manifest["signature"]["alg"] == "HMAC-SHA256"
    assert manifest["signature"]["key_id"] == key_id(KEY)


def test_unsigned_manifest_is_refused_before_the_pickle_is_fetched(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    version = publish_signed(tmp_path, None)
    (_folder(tmp_path, version) / ARTIFACT).unlink()  # a fetch would fail differently
    os.environ.update(MODEL_URI=str(tmp_path / "m"), MODEL_SIGNING_KEY=KEY)

    response = call(json=SEED)

    error = response.get_json()["error"]
    assert response.status_code == 503
    assert response.headers["Retry-After"]
    assert error["code"] == "signature_invalid"
    assert "not signed" in error["message"]
    assert "not signed" in capsys.readouterr().out  # the log says why


def test_manifest_signed_with_another_key_is_refused(tmp_path: Path) -> None:
    """Its LATEST, signed with the same other key, is refused first."""
    version = publish_signed(tmp_path, "x" * 32)
    os.environ.update(MODEL_URI=str(tmp_path / "m"), MODEL_SIGNING_KEY=KEY)

    response = call(json=SEED)

    assert response.status_code == 503
    assert response.headers["Retry-After"].isdigit()
    assert response.get_json()["error"] == {
        "code": "signature_invalid",
        "message": f"LATEST (pointing at {version}) has a signature that matches "
        "none of the 1 configured MODEL_SIGNING_KEY key(s); refusing to load it",
    }


def test_evil_pickle_with_a_forged_checksum_is_never_unpickled(tmp_path: Path) -> None:
    """An attacker who can write the bucket can fix the SHA-256, not the signature."""
    version = publish_signed(tmp_path, KEY)
    folder = _folder(tmp_path, version)
    marker = tmp_path / "pwned"
    evil = pickle.dumps(UnpicklingMarker(str(marker)))
    manifest = Manifest.from_bytes((folder / MANIFEST).read_bytes())
    manifest.data["files"][ARTIFACT] = {"sha256": sha256_hex(evil), "bytes": len(evil)}
    (folder / ARTIFACT).write_bytes(evil)
    (folder / MANIFEST).write_bytes(manifest.to_bytes())  # old signature kept
    os.environ.update(MODEL_URI=str(tmp_path / "m"), MODEL_SIGNING_KEY=KEY)

    response = call(json=SEED)

    assert response.status_code == 503
    assert response.get_json()["error"]["code"] == "signature_invalid"
    assert not marker.exists()


def test_key_rotation_accepts_old_and_new_signatures(tmp_path: Path) -> None:
    old = publish_signed(tmp_path, OLD_KEY)
    new = publish_signed(tmp_path, KEY)
    os.environ.update(
        MODEL_URI=str(tmp_path / "m"), MODEL_SIGNING_KEY=f"{KEY},{OLD_KEY}"
    )

    latest = call(json=SEED)
    import main  # a new instance, started with the version pinned

    main._service = None
    os.environ["MODEL_URI"] = str(tmp_path / "m" / "versions" / old)
    pinned_old = call(json=SEED)

    assert latest.status_code == 200 and latest.headers["X-Model-Version"] == new
    assert (
        pinned_old.status_code == 200 and pinned_old.headers["X-Model-Version"] == old
    )


def test_signature_covers_every_field(tmp_path: Path) -> None:
    version = publish_signed(tmp_path, KEY)
    path = _folder(tmp_path, version) / MANIFEST
    data = json.loads(path.read_text())
    data["classes"] = [1, 0]  # swap label meaning, keep the signature
    path.write_text(json.dumps(data))
    os.environ.update(MODEL_URI=str(tmp_path / "m"), MODEL_SIGNING_KEY=KEY)

    response = call(json=SEED)

    assert response.status_code == 503
    assert response.get_json()["error"] == {
        "code": "signature_invalid",
        "message": f"manifest of {version} has a signature that matches none of "
        "the 1 configured MODEL_SIGNING_KEY key(s); refusing to load it",
    }


def test_a_signed_version_of_another_model_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A valid signature proves who published; the name proves for which model:
    neither the pointer nor the version of model m serves as model fraud."""
    from datetime import UTC, datetime

    from skserve.loader import pointer_bytes

    version = publish_signed(tmp_path, KEY)
    fraud = tmp_path / "fraud"
    (fraud / "versions").mkdir(parents=True)
    shutil.copytree(_folder(tmp_path, version), fraud / "versions" / version)
    (fraud / LATEST).write_bytes((tmp_path / "m" / LATEST).read_bytes())
    os.environ.update(MODEL_URI=str(fraud), MODEL_SIGNING_KEY=KEY)

    copied_pointer = call(json=SEED)
    # Even a pointer signed for fraud (by whoever holds the key) cannot make
    # m's version serve as fraud: its manifest names m.
    (fraud / LATEST).write_bytes(
        pointer_bytes(version, name="fraud", signing_key=KEY, now=datetime.now(UTC))
    )
    import main

    main._service = None
    copied_version = call(json=SEED)

    pointer_message = copied_pointer.get_json()["error"]["message"]
    message = copied_version.get_json()["error"]["message"]
    assert copied_pointer.status_code == copied_version.status_code == 503
    assert copied_pointer.get_json()["error"]["code"] == "signature_invalid"
    assert copied_version.get_json()["error"]["code"] == "integrity_error"
    assert "LATEST was signed for another model, not 'fraud'" in pointer_message
    assert "was published for another model, not 'fraud'" in message
    assert "'m'" not in message + pointer_message  # the store's text: logs only
    assert "was published as model 'm'" in capsys.readouterr().out


def test_non_ascii_digest_in_a_manifest_is_an_integrity_error(served: Path) -> None:
    os.environ["MODEL_RUNTIME"] = "sklearn"  # the file whose digest is broken
    version = latest_version(served)
    path = served / "versions" / version / MANIFEST
    data = json.loads(path.read_text())
    data["files"][ARTIFACT]["sha256"] = "é" * 64
    path.write_text(json.dumps(data))

    response = call(json=SEED)

    assert response.status_code == 503
    assert response.get_json()["error"]["code"] == "integrity_error"


# --- API keys ---------------------------------------------------------------------


@pytest.fixture
def keyed(served: Path) -> Path:
    os.environ["API_KEYS"] = f"{KEY},{OLD_KEY}"
    return served


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer nope"},
        {"X-API-Key": "nope"},
        {"Authorization": KEY},
    ],
)
def test_predict_without_a_valid_key_is_401(keyed: Path, headers: dict) -> None:
    response = call(json=SEED, headers=headers)

    assert response.status_code == 401
    assert response.get_json()["error"]["code"] == "unauthorized"
    assert response.headers["WWW-Authenticate"].startswith("Bearer")


@pytest.mark.parametrize(
    "headers",
    [
        {"Authorization": f"Bearer {KEY}"},
        {"Authorization": f"bearer {OLD_KEY}"},
        {"X-API-Key": KEY},
    ],
)
def test_predict_with_a_valid_key_is_served(keyed: Path, headers: dict) -> None:
    response = call(json=SEED, headers=headers)

    assert response.status_code == 200, response.get_data(as_text=True)
    assert (
        response.get_json()["prediction"]
        == published_model(keyed).predict([SEED_FEATURES])[0]
    )
    assert response.headers["X-Model-Version"] == latest_version(keyed)


def test_unknown_paths_need_a_key_too(keyed: Path) -> None:
    """A 401, not the 404 that would tell a caller without a key what exists."""
    response = call("GET", "/nope")

    assert response.status_code == 401
    assert response.get_json()["error"]["code"] == "unauthorized"


def test_health_and_preflight_need_no_key(keyed: Path) -> None:
    health = call("GET", "/health")

    assert health.status_code == 200
    assert health.get_json() == {"status": "ok"}
    assert call("OPTIONS", "/predict").status_code == 204


# --- CORS ------------------------------------------------------------------------


def test_no_cors_headers_when_cors_is_off(served: Path) -> None:
    response = call(json=SEED, headers={"Origin": "https://app.example"})

    # A browser on a site not allowed (none is) is refused before any work.
    assert response.status_code == 403, response.get_data(as_text=True)
    assert response.get_json()["error"]["code"] == "origin_not_allowed"
    assert "Access-Control-Allow-Origin" not in response.headers


def test_preflight_from_an_allowed_origin(served: Path) -> None:
    os.environ["CORS_ALLOW_ORIGINS"] = "https://app.example, https://other.example"
    headers = {
        "Origin": "https://app.example",
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization, content-type",
    }

    response = call("OPTIONS", "/predict", headers=headers)

    assert response.status_code == 204
    assert response.headers["Access-Control-Allow-Origin"] == "https://app.example"
    assert "POST" in response.headers["Access-Control-Allow-Methods"]
    allowed = response.headers["Access-Control-Allow-Headers"]
    assert {"Content-Type", "Authorization", "X-API-Key"} <= set(allowed.split(", "))
    assert response.headers["Access-Control-Max-Age"] == "3600"
    assert "Origin" in response.headers["Vary"]


def test_preflight_from_another_origin_gets_no_cors_headers(served: Path) -> None:
    os.environ["CORS_ALLOW_ORIGINS"] = "https://app.example"

    response = call("OPTIONS", "/predict", headers={"Origin": "https://evil.example"})

    assert response.status_code == 204
    assert not [h for h in response.headers if h[0].startswith("Access-Control")]


def test_allowed_origin_is_echoed_on_answers_and_errors(served: Path) -> None:
    os.environ["CORS_ALLOW_ORIGINS"] = "https://app.example"
    origin = {"Origin": "https://app.example"}

    ok = call(json=SEED, headers=origin)
    bad = call(json={"features": [1]}, headers=origin)

    assert ok.status_code == 200, ok.get_data(as_text=True)
    assert bad.status_code == 400
    assert bad.get_json()["error"]["code"] == "wrong_feature_count"
    for response in (ok, bad):
        assert response.headers["Access-Control-Allow-Origin"] == "https://app.example"
        assert "X-Model-Version" in response.headers["Access-Control-Expose-Headers"]
        assert "Origin" in response.headers["Vary"]


def test_wildcard_allows_any_origin(served: Path) -> None:
    os.environ["CORS_ALLOW_ORIGINS"] = "*"

    response = call(json=SEED, headers={"Origin": "https://anyone.example"})

    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.headers["Access-Control-Allow-Origin"] == "*"


# --- structured logs ---------------------------------------------------------------


def _entries(capsys: pytest.CaptureFixture[str]) -> list[dict]:
    return [json.loads(line) for line in capsys.readouterr().out.splitlines()]


def test_one_structured_log_line_per_request(
    served: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    os.environ["GOOGLE_CLOUD_PROJECT"] = "proj"
    trace = {"X-Cloud-Trace-Context": "0af7651916cd43dd8448eb211c80319c/123;o=1"}

    call(json={"instances": [SEED_FEATURES] * 3}, headers=trace)
    call(json={"features": [1]})

    requests = [e for e in _entries(capsys) if "httpRequest" in e]
    first, second = requests
    assert first["severity"] == "INFO"
    assert first["httpRequest"]["status"] == 200
    assert first["httpRequest"]["requestMethod"] == "POST"
    assert first["httpRequest"]["latency"].endswith("s")
    assert first["logging.googleapis.com/trace"] == (
        "projects/proj/traces/0af7651916cd43dd8448eb211c80319c"
    )
    assert first["logging.googleapis.com/spanId"] == "123"
    assert first["rows"] == 3 and first["cold_start"] is True
    assert first["model_version"] == latest_version(served)
    assert first["request_id"]
    assert second["severity"] == "WARNING" and second["cold_start"] is False


def test_w3c_traceparent_is_logged_as_the_trace(
    served: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    parent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"

    call("GET", "/health", headers={"traceparent": parent})

    (entry,) = [e for e in _entries(capsys) if "httpRequest" in e]
    assert entry["logging.googleapis.com/trace"] == "4bf92f3577b34da6a3ce929d0e0e4736"


def test_a_bug_is_a_generic_500_and_its_traceback_only_in_the_log(
    served: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from skserve.runtimes.sklearn import SklearnRuntime

    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("secret internals")

    monkeypatch.setattr(SklearnRuntime, "predict", broken)
    os.environ["MODEL_RUNTIME"] = "sklearn"

    response = call(json=SEED)

    body = response.get_data(as_text=True)
    assert response.status_code == 500
    assert response.get_json()["error"]["code"] == "internal_error"
    assert response.headers["X-Request-Id"] in body
    assert "secret internals" not in body and "Traceback" not in body
    log = capsys.readouterr().out
    assert "Traceback" in log and "secret internals" in log
