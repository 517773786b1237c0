"""Structured logs: one JSON object per line on stdout, as Cloud Logging expects."""

from __future__ import annotations

import json
import os
import sys
import threading
import traceback
from collections.abc import Mapping
from typing import Any

TRACE = "logging.googleapis.com/trace"
SPAN = "logging.googleapis.com/spanId"
_lock = threading.Lock()


def log(severity: str, message: str, **fields: Any) -> None:
    """Write one log entry. `severity` is a Cloud Logging severity (INFO, ERROR...)."""
    entry = {"severity": severity, "message": message, **fields}
    line = json.dumps(entry, default=str, separators=(",", ":"))
    with _lock:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()


def log_exception(message: str, exc: BaseException, **fields: Any) -> None:
    """Log an error with its traceback (logs only: never sent to a client)."""
    trace = "".join(traceback.format_exception(exc))
    log("ERROR", f"{message}\n{trace}", **fields)


def trace_fields(headers: Mapping[str, str]) -> dict[str, str]:
    """Cloud Logging trace fields from X-Cloud-Trace-Context or W3C traceparent."""
    trace = span = ""
    cloud = headers.get("X-Cloud-Trace-Context", "")
    parent = headers.get("traceparent", "")
    if cloud:
        trace, _, rest = cloud.partition("/")
        span = rest.partition(";")[0]
    elif parent.count("-") == 3:
        _, trace, span, _ = parent.split("-")
    if not trace or not all(c in "0123456789abcdefABCDEF" for c in trace):
        return {}
    project = os.environ.get("GOOGLE_CLOUD_PROJECT") or os.environ.get("GCP_PROJECT")
    fields = {TRACE: f"projects/{project}/traces/{trace}" if project else trace}
    if span.isalnum():
        fields[SPAN] = span
    return fields
