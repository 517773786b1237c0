"""What every part of the bench shares: where things are, what is sent, and the
records one run leaves."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# A check of one answer: (HTTP status, body) -> None, or BenchError.
Check = Callable[[int, bytes], None]

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
FUNCTION = ROOT / "function" / "main.py"
HOST = "127.0.0.1"
PAYLOAD = {"features": [0.1, -0.5, 1.2, -0.8, 0.3, 0.9, -1.1, 0.4, -0.2, 1.5]}
HEADERS = {"Content-Type": "application/json"}
NOOP_ANSWER = {"noop": True}  # bench/noop_main.py's constant body
PARSE_ANSWER = {"parsed": True}  # bench/parse_main.py's, once it parsed the body
N_FEATURES = len(PAYLOAD["features"])
POLL_SECONDS = 0.01
REQUEST_TIMEOUT_SECONDS = 10.0
STOP_SECONDS = 10.0
TRAIN_TIMEOUT_SECONDS = 900.0
# Settings that would change what is measured if inherited: every server gets
# functions-framework's defaults (1 worker, THREADS = 4 per core).
STRIPPED_ENV = (
    "MODEL_URI",
    "MODEL_RUNTIME",
    "MODEL_REFRESH_SECONDS",
    "MAX_BODY_BYTES",
    "MAX_ROWS",
    "MAX_MODEL_BYTES",
    "SEED_MODEL_PATH",
    "API_KEYS",
    "MODEL_SIGNING_KEY",
    "CORS_ALLOW_ORIGINS",
    "FUNCTION_SOURCE",
    "FUNCTION_TARGET",
    "FUNCTION_SIGNATURE_TYPE",
    "HOST",
    "PORT",
    "DEBUG",
    "THREADS",
    "WORKERS",
    "GUNICORN_LOG_LEVEL",
    "CLOUD_RUN_TIMEOUT_SECONDS",
)


class BenchError(Exception):
    """A run that cannot be trusted; the message says why."""


@dataclass(frozen=True)
class Target:
    """One server to measure: a functions-framework source and its environment.

    `kind` says what it answers: "seed" (one row per request), "ours" (one row
    and `{"instances": [...]}` batches), "noop" (a constant, body unread) or
    "parse" (a constant once the JSON body parsed, batches too). `workload`
    names the model whose requests it is sent ("seed", "canonical", "hgb",
    "forest400"...).
    """

    name: str
    title: str
    kind: str
    source: Path
    env: dict[str, str]
    workload: str = "seed"

    @property
    def runtime(self) -> str | None:
        """ "onnx" or "sklearn" for this function's servers, else None."""
        return self.env.get("MODEL_RUNTIME")

    @property
    def batches(self) -> bool:
        """Whether it is sent the 1,000-row requests."""
        return self.kind in ("ours", "parse")


@dataclass(frozen=True)
class Workload:
    """What one model's servers are sent, and that model's own labels for it,
    predicted in a child process on the rows as the model was fitted on them."""

    payloads: list[dict[str, Any]]
    labels: list[Any]
    batch_rows: list[Any]
    batch_labels: list[Any]

    @property
    def bodies(self) -> list[bytes]:
        """The one-row request bodies; the first is the cold start's and wrk's."""
        return [json.dumps(payload).encode() for payload in self.payloads]


@dataclass
class Alone:
    """onnxruntime alone on one twin, in a fresh process: what loading it costs
    and how fast a session runs the batch's float64 matrix in-process."""

    import_ms: float  # numpy, onnxruntime and the function's ONNX runtime module
    read_ms: float  # LATEST, the manifest and model.onnx, its SHA-256 checked
    walk_ms: float  # the function's check that the twin refers to no outside data
    session_ms: float  # InferenceSession with the function's options
    session_pss_mib: float | None  # PSS the built session added
    run_ms: list[float]  # session.run of the whole batch, each timed run
    rows_per_s: float


@dataclass
class RunResult:
    """Raw figures of one cold start plus its warm, load and batch phases."""

    target: str
    run: int
    cold_start_ms: float
    port_open_ms: float
    first_request_ms: float
    poll_attempts: int
    reconnects: int
    latencies_ms: list[float]
    p50_ms: float
    p90_ms: float
    p99_ms: float
    rss_mib: float
    pss_mib: float | None
    peak_rss_mib: float | None
    processes: int
    libraries: list[str]
    load_requests: int
    load_seconds: float
    load_rps: float
    load_p50_ms: float
    load_p99_ms: float
    load_cpu_ms_per_request: float
    pss_after_load_mib: float | None
    model_load_ms: float | None = None  # the function's own "load" log line
    batch_latencies_ms: list[float] = field(default_factory=list)
    batch_rows_per_s: float | None = None
    batch_p50_ms: float | None = None
    alone: Alone | None = None
