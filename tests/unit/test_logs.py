"""skserve.logs: one JSON object per line, with the trace, and nothing unbounded."""

from __future__ import annotations

import json

import flask
import pytest

from skserve.logs import (
    SPAN,
    TRACE,
    clip,
    log,
    log_exception,
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
