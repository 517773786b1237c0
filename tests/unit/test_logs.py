"""skserve.logs: one JSON object per line, with the trace, and nothing unbounded;
request and load lines carry the fields the platforms' metrics read."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import flask
import pytest

import skserve.logs
from skserve.logs import (
    SPAN,
    TRACE,
    clip,
    lambda_function,
    log,
    log_exception,
    log_load,
    log_request,
    trace_fields,
)

TRACE_ID = "0af7651916cd43dd8448eb211c80319c"


@pytest.mark.parametrize(
    ("text", "limit", "clipped"),
    [("short", 10, "short"), ("x" * 10, 10, "x" * 10), ("x" * 11, 10, "xxxxxxx...")],
)
def test_clip_bounds_what_a_client_sent(text: str, limit: int, clipped: str) -> None:
    assert clip(text, limit) == clipped
    assert len(clip(text, limit)) <= limit


def test_log_writes_one_json_line_with_severity_and_fields(
    capsys: pytest.CaptureFixture[str],
) -> None:
    log("WARNING", "two\nlines", rows=3, path=flask)

    (line,) = capsys.readouterr().out.splitlines()
    entry = json.loads(line)
    assert entry["severity"] == "WARNING"
    assert entry["message"] == "two\nlines"
    assert entry["rows"] == 3
    assert "flask" in entry["path"]  # anything unserialisable becomes its str()


def test_log_exception_keeps_the_traceback_in_one_entry(
    capsys: pytest.CaptureFixture[str],
) -> None:
    try:
        raise ValueError("boom")
    except ValueError as exc:
        log_exception("failed", exc, request_id="r1")

    (line,) = capsys.readouterr().out.splitlines()
    entry = json.loads(line)
    assert entry["severity"] == "ERROR"
    assert entry["message"].startswith("failed\nTraceback")
    assert "ValueError: boom" in entry["message"]
    assert entry["request_id"] == "r1"


@pytest.mark.parametrize(
    ("headers", "project", "fields"),
    [
        (
            {"X-Cloud-Trace-Context": f"{TRACE_ID}/123;o=1"},
            "proj",
            {TRACE: f"projects/proj/traces/{TRACE_ID}", SPAN: "123"},
        ),
        (
            {"traceparent": f"00-{TRACE_ID}-00f067aa0ba902b7-01"},
            "",
            {TRACE: TRACE_ID, SPAN: "00f067aa0ba902b7"},
        ),
        ({"X-Cloud-Trace-Context": "not hex!/1"}, "proj", {}),
        ({"traceparent": "garbage"}, "", {}),
        ({}, "proj", {}),
    ],
)
def test_trace_fields(headers: dict, project: str, fields: dict) -> None:
    assert trace_fields(headers, project) == fields


@pytest.mark.parametrize(
    ("status", "severity"), [(200, "INFO"), (404, "WARNING"), (503, "ERROR")]
)
def test_log_request_severity_follows_the_status(
    status: int, severity: str, capsys: pytest.CaptureFixture[str]
) -> None:
    request = flask.Request.from_values("/" + "p" * 5000, method="GET")

    log_request(
        request,
        flask.Response(status=status),
        latency=0.25,
        cold_start=False,
        project="",
    )

    entry = json.loads(capsys.readouterr().out)
    assert entry["severity"] == severity
    assert entry["httpRequest"]["status"] == status
    assert entry["httpRequest"]["latency"] == "0.250000s"
    assert len(entry["message"]) < 250  # the path is clipped
    assert len(entry["httpRequest"]["requestUrl"]) <= 1000


# --- The fields metrics are derived from (skserve.metrics documents them) --------


def _request(status: int = 200, **kwargs: object) -> None:
    request = flask.Request.from_values("/predict", method="POST")
    log_request(
        request,
        flask.Response(status=status),
        latency=0.0125,
        cold_start=bool(kwargs.pop("cold_start", False)),
        project="",
        protocol="v1",
        model="houses",
        **kwargs,  # type: ignore[arg-type]
    )


def _entries(capsys: pytest.CaptureFixture[str]) -> list[dict]:
    return [json.loads(line) for line in capsys.readouterr().out.splitlines()]


def test_request_line_carries_the_fields_metrics_are_derived_from(
    capsys: pytest.CaptureFixture[str],
) -> None:
    _request(code="ok", model_seconds=0.0042, cold_start=True)

    (entry,) = _entries(capsys)
    assert entry["event"] == "request"
    assert entry["protocol"] == "v1" and entry["model"] == "houses"
    assert entry["code"] == "ok" and entry["httpRequest"]["status"] == 200
    assert entry["latency_ms"] == 12.5 and entry["model_ms"] == 4.2
    assert entry["cold_start"] is True
    assert "_aws" not in entry  # not on Lambda: nothing embedded


@pytest.mark.parametrize(("status", "code"), [(200, "ok"), (404, "error")])
def test_request_line_code_follows_the_status_when_none_is_given(
    status: int, code: str, capsys: pytest.CaptureFixture[str]
) -> None:
    _request(status)

    (entry,) = _entries(capsys)
    assert entry["code"] == code
    assert "model_ms" not in entry  # the model was not asked


def test_request_line_on_lambda_keeps_every_cloud_logging_field(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("AWS_LAMBDA_FUNCTION_NAME", "fn")
    _request(code="ok", model_seconds=0.001, request_id="r1", runtime="onnx")

    (entry,) = _entries(capsys)
    assert {"severity", "message", "httpRequest", "request_id", "runtime"} <= set(entry)
    assert entry["model_version"] == "none" and entry["rows"] == 0


@pytest.mark.parametrize("ok", [True, False])
def test_load_line_carries_outcome_version_duration_and_its_fields(
    ok: bool, capsys: pytest.CaptureFixture[str]
) -> None:
    fields = {"runtime": "onnx", "bytes_read": 5120} if ok else {"code": "x"}
    log_load("INFO", "loaded", ok=ok, seconds=0.0123, model_version="v1", **fields)

    (entry,) = _entries(capsys)
    assert entry["event"] == "load"
    assert entry["outcome"] == ("ok" if ok else "failed")
    assert entry["model_version"] == "v1" and entry["load_ms"] == 12.3
    assert {k: entry[k] for k in fields} == fields
    assert "_aws" not in entry


def test_lambda_function_is_read_from_the_environment_lambda_sets(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("AWS_LAMBDA_FUNCTION_NAME", raising=False)
    assert lambda_function() == ""
    monkeypatch.setenv("AWS_LAMBDA_FUNCTION_NAME", "sklearn-serverless-dev-predict")
    assert lambda_function() == "sklearn-serverless-dev-predict"


# --- The request line: msgspec writes what the json module would ------------------


def _line(capsys: pytest.CaptureFixture[str], user_agent: str, **fields: Any) -> str:
    environ = {"HTTP_USER_AGENT": user_agent, "REMOTE_ADDR": "10.0.0.1"}
    request = flask.Request.from_values(
        "/predict?x=1", method="POST", environ_overrides=environ
    )
    request.environ["HTTP_TRACEPARENT"] = (
        "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    )
    log_request(
        request,
        flask.Response("{}", 200, headers={"X-Model-Version": "v7"}),
        latency=0.0123456,
        cold_start=False,
        project="proj",
        protocol="v1",
        model="houses",
        code="ok",
        model_seconds=0.000321,
        **fields,
    )
    return capsys.readouterr().out


def _timeless(line: str) -> dict[str, Any]:
    """The line's entry without the EMF timestamp (the two lines' differ)."""
    entry = json.loads(line)
    entry.get("_aws", {}).pop("Timestamp", None)
    return entry


@pytest.mark.parametrize(
    "user_agent",
    ["curl/8.5.0", "naïve-client/1 ✓", "split\u2028here", "nel\x85", 'tab\tquote"'],
)
@pytest.mark.parametrize("on_lambda", [False, True])
def test_request_line_is_what_the_json_module_writes(
    user_agent: str,
    on_lambda: bool,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    if on_lambda:  # the EMF member is appended to the line
        monkeypatch.setenv("AWS_LAMBDA_FUNCTION_NAME", "fn")
    fast = _line(capsys, user_agent, request_id="r1", runtime="onnx", rows=3.5)
    monkeypatch.setattr(skserve.logs, "_emit_request", skserve.logs._emit)
    slow = _line(capsys, user_agent, request_id="r1", runtime="onnx", rows=3.5)

    assert fast.endswith("\n") and len(fast.splitlines()) == 1
    assert fast.isascii()  # no U+2028 or NEL that would split it for a reader
    assert _timeless(fast) == _timeless(slow)
    assert json.loads(fast)["httpRequest"]["userAgent"] == user_agent
    assert ("_aws" in json.loads(fast)) is on_lambda


def test_request_line_falls_back_for_a_value_msgspec_cannot_write(
    capsys: pytest.CaptureFixture[str],
) -> None:
    line = _line(capsys, "curl/8.5.0", odd=Path("/models/m"), big=2**70)

    entry = json.loads(line)
    assert entry["odd"] == "/models/m"  # json.dumps(default=str)
    assert entry["big"] == 2**70
