"""Structured logs: one JSON object per line on stdout, as Cloud Logging expects;
request and load lines carry the fields the platforms' metrics are derived from
(skserve.metrics documents them), and on AWS Lambda an embedded metric document."""

from __future__ import annotations

import json
import os
import re
import sys
import threading
import traceback
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import msgspec

from skserve.metrics import FAILED, LOAD, OK, REQUEST, embed_load, embed_request

if TYPE_CHECKING:
    import flask

TRACE = "logging.googleapis.com/trace"
SPAN = "logging.googleapis.com/spanId"
_lock = threading.Lock()


def clip(text: str, limit: int) -> str:
    """`text`, cut to `limit` characters: what a client sent is echoed and logged
    bounded, however long it was."""
    return text if len(text) <= limit else text[: limit - 3] + "..."


def log(severity: str, message: str, **fields: Any) -> None:
    """Write one log entry. `severity` is a Cloud Logging severity (INFO, ERROR...)."""
    _emit({"severity": severity, "message": message, **fields})


def _emit(entry: dict[str, Any], member: str = "") -> None:
    """Write `entry`, and `member` (JSON text of one more member) inside it."""
    line = json.dumps(entry, default=str, separators=(",", ":"))
    if member:
        line = f"{line[:-1]},{member}}}"
    _write_line(line.encode("utf-8", "backslashreplace"))


# A request line holds strings, numbers, booleans and None, which msgspec writes
# five times faster than the json module, as the same JSON values (a float may
# be spelled otherwise: 0.00001 for 1e-05) while every character is ASCII.
# Beyond ASCII msgspec writes UTF-8 where the json module escapes, and a U+2028
# or NEL from a header would split the line for some readers: the json module
# writes those lines. msgspec's Encoder is thread-safe (msgspec/msgspec#402).
_FAST = msgspec.json.Encoder()


def _emit_request(entry: dict[str, Any], member: str) -> None:
    """`_emit` for a request line."""
    try:
        line = _FAST.encode(entry)
    except (TypeError, ValueError, OverflowError):  # a value msgspec cannot write
        line = b""
    if not line or not line.isascii():
        _emit(entry, member)
        return
    if member:
        line = b"%b,%b}" % (line[:-1], member.encode("utf-8", "backslashreplace"))
    _write_line(line)


def _write_line(line: bytes) -> None:
    with _lock:
        _write(line + b"\n")


def lambda_function() -> str:
    """The Lambda function's name when running on AWS Lambda (which sets
    AWS_LAMBDA_FUNCTION_NAME), else "": metrics are embedded only there."""
    return os.environ.get("AWS_LAMBDA_FUNCTION_NAME", "")


def _write(data: bytes) -> None:
    """One whole line (UTF-8) to stdout, unbuffered: straight to its file
    descriptor (one system call, half the cost of write + flush), or through
    sys.stdout when that has none (a test's capture)."""
    try:
        fd = sys.stdout.fileno()
    except (AttributeError, OSError, ValueError):
        sys.stdout.write(data.decode("utf-8", "replace"))
        sys.stdout.flush()
        return
    sys.stdout.flush()  # whatever print() left buffered goes first
    while data:
        data = data[os.write(fd, data) :]


def log_exception(message: str, exc: BaseException, **fields: Any) -> None:
    """Log an error with its traceback (logs only: never sent to a client)."""
    trace = "".join(traceback.format_exception(exc))
    log("ERROR", f"{message}\n{trace}", **fields)


def log_request(
    request: flask.Request,
    response: flask.Response,
    *,
    latency: float,
    cold_start: bool,
    project: str,
    protocol: str | None = None,
    model: str | None = None,
    code: str | None = None,
    model_seconds: float | None = None,
    **fields: Any,
) -> None:
    """One Cloud Logging structured entry for a request, with its trace.

    `latency` and `model_seconds` (the runtime's predict alone, None when the
    model was not asked) are in seconds; `code` is "ok" or the error code.
    """
    status = response.status_code
    severity = "ERROR" if status >= 500 else "WARNING" if status >= 400 else "INFO"
    # Headers read from the WSGI environ, as werkzeug's properties would.
    environ = request.environ
    method = clip(request.method, 20)
    entry = {
        "severity": severity,
        "message": f"{method} {clip(request.path, 200)} {status}",
        "httpRequest": {
            "requestMethod": method,
            "requestUrl": clip(_url(environ), 1000),
            "status": status,
            "latency": f"{latency:.6f}s",
            "requestSize": str(environ.get("skserve.body_bytes", 0)),
            "responseSize": str(response.calculate_content_length() or 0),
            "userAgent": clip(environ.get("HTTP_USER_AGENT", ""), 200),
            "remoteIp": environ.get("REMOTE_ADDR") or "",
            "protocol": environ.get("SERVER_PROTOCOL", ""),
        },
        "event": REQUEST,
        "protocol": protocol,
        "code": code or (OK if status < 400 else "error"),
        "latency_ms": round(latency * 1000, 3),
        "model": model,
        "model_version": response.headers.get("X-Model-Version", "none"),
        "rows": environ.get("skserve.rows", 0),
        "cold_start": cold_start,
        **fields,
    }
    cloud = environ.get("HTTP_X_CLOUD_TRACE_CONTEXT", "")
    parent = environ.get("HTTP_TRACEPARENT", "")
    if cloud or parent:
        entry.update(_trace(cloud, parent, project))
    if model_seconds is not None:
        entry["model_ms"] = round(model_seconds * 1000, 3)
    function = lambda_function()
    member = ""
    if function:
        member = embed_request(entry, function, status=status, cold=cold_start)
    _emit_request(entry, member)


def log_load(
    severity: str,
    message: str,
    *,
    ok: bool,
    seconds: float,
    model_version: str | None,
    **fields: Any,
) -> None:
    """One entry for an attempt to load a model version: its outcome and how
    long it took, plus `fields` (runtime and bytes_read when it loaded, the
    error's code when it failed)."""
    entry = {
        "severity": severity,
        "message": message,
        "event": LOAD,
        "outcome": OK if ok else FAILED,
        "model_version": model_version,
        "load_ms": round(seconds * 1000, 1),
        **fields,
    }
    function = lambda_function()
    member = embed_load(entry, function, ok=ok) if function else ""
    _emit(entry, member)


def _url(environ: Mapping[str, Any]) -> str:
    """The requested URL as the client sent it. Read from the WSGI environ:
    werkzeug's `request.url` re-encodes it, a third of a small request's cost."""
    target = environ.get("RAW_URI")  # gunicorn's raw request target
    if not target:
        query = environ.get("QUERY_STRING")
        target = environ.get("PATH_INFO", "") + (f"?{query}" if query else "")
    host = environ.get("HTTP_HOST") or environ.get("SERVER_NAME", "")
    return f"{environ.get('wsgi.url_scheme', 'http')}://{host}{target}"


# Cloud Trace's header: TRACE_ID/SPAN_ID;o=OPTIONS, a 32-hex-digit trace id and
# a decimal span id (an unsigned 64-bit integer); W3C's traceparent:
# version-trace_id-parent_id-flags in lower-case hex. Anything else is dropped,
# never logged: a client's header must not be able to fill the log line.
_CLOUD_TRACE = re.compile(r"([0-9a-fA-F]{32})(?:/([0-9]{1,20}))?(?:;o=[0-9]{1,2})?")
_TRACEPARENT = re.compile(r"[0-9a-f]{2}-([0-9a-f]{32})-([0-9a-f]{16})-[0-9a-f]{2}")


def trace_fields(headers: Mapping[str, str], project: str = "") -> dict[str, str]:
    """Cloud Logging trace fields from X-Cloud-Trace-Context or W3C traceparent,
    when the header has its documented form (else none)."""
    cloud = headers.get("X-Cloud-Trace-Context", "")
    parent = headers.get("traceparent", "")
    return _trace(cloud, parent, project)


def _trace(cloud: str, parent: str, project: str) -> dict[str, str]:
    """`trace_fields` of these two header values ("" when absent)."""
    trace = span = ""
    if cloud:
        found = _CLOUD_TRACE.fullmatch(cloud.strip())
        if found:
            trace, span = found[1], found[2] or ""
            if span and int(span) >= 2**64:
                span = ""
    elif parent:
        found = _TRACEPARENT.fullmatch(parent.strip())
        if found and found[1] != "0" * 32:
            trace, span = found[1], found[2]
    if not trace or trace.strip("0") == "":
        return {}
    fields = {TRACE: f"projects/{project}/traces/{trace}" if project else trace}
    if span and span.strip("0"):
        fields[SPAN] = span
    return fields
