"""Structured logs: one JSON object per line on stdout, as Cloud Logging expects."""

from __future__ import annotations

import json
import sys
import threading
import traceback
from typing import Any

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
