"""Every server in one run under the same functions-framework: figures measured alike.

- SEED: bench/seed_main.py, the tutorial's app.py ported to functions-framework,
  serving the pickle written by the tutorial's training script (reproduced below);
- SKLEARN: function/main.py with MODEL_RUNTIME=sklearn, serving a model published
  with `python -m train`;
- ONNX: the same function and model with MODEL_RUNTIME=onnx (its verified twin);
- CT_SKLEARN / CT_ONNX: the same function serving the canonical mixed-type
  Pipeline (ColumnTransformer: imputed, scaled numbers and one-hot text, in front
  of a RandomForest) fitted on train/examples/customers.csv, on its pickle and on
  its twin, answering typed rows (numbers, strings, nulls);
- HGB_SKLEARN / HGB_ONNX: likewise a HistGradientBoostingClassifier fitted on the
  same DataFrame with plan and region as pandas categories (native categorical
  splits and missing values);
- NOOP: bench/noop_main.py, a constant JSON 200 that imports nothing: the floor.

Each run starts every server cold, times its first 200, sends sequential
keep-alive requests, reads its memory, loads it with wrk at 16 connections and
(ours only) times 1,000-row batches. Usage: `.venv/bin/python bench/coldstart.py
[--runs 5] [--requests 500] [--duration 10] [--models canonical,hgb] [--json PATH]`.
The Markdown report goes to stdout, progress to stderr. See bench/README.md for
what each figure means.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import multiprocessing
import os
import pickle
import platform
import random
import shlex
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any, BinaryIO

# A check of one answer: (HTTP status, body) -> None, or BenchError.
Check = Callable[[int, bytes], None]

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
HOST = "127.0.0.1"
PAYLOAD = {"features": [0.1, -0.5, 1.2, -0.8, 0.3, 0.9, -1.1, 0.4, -0.2, 1.5]}
HEADERS = {"Content-Type": "application/json"}
NOOP_ANSWER = {"noop": True}  # bench/noop_main.py's constant body
N_FEATURES = len(PAYLOAD["features"])
# The typed models: their training data, and the one-row requests they are sent.
# The first row is the cold start's and wrk's; the sequential requests alternate
# between both, so half of them carry a null in each nullable text and number
# column.
CUSTOMERS = ROOT / "train" / "examples" / "customers.csv"
CUSTOMERS_TARGET = "churned"
TYPED_ROWS = (
    {"income": 52000, "age": 41, "plan": "basic", "region": "north"},
    {"income": None, "age": 41, "plan": None, "region": "north"},
)
# --models name: (server name prefix, short title, what the model is).
TYPED_MODELS = {
    "canonical": (
        "CT",
        "ColumnTransformer + RandomForest",
        "Pipeline(ColumnTransformer([SimpleImputer + StandardScaler on income, age; "
        'OneHotEncoder(handle_unknown="ignore") on plan, region]), '
        "RandomForestClassifier(n_estimators=100, random_state=42))",
    ),
    "hgb": (
        "HGB",
        "HistGradientBoosting, categories",
        'HistGradientBoostingClassifier(categorical_features="from_dtype", '
        "random_state=42) with plan and region as pandas categories",
    ),
}
MODEL_TITLES = {
    "seed": "the tutorial's RandomForest",
    **{name: title for name, (_, title, _) in TYPED_MODELS.items()},
}
# Values the typed batches draw from: known ones, plus an unseen plan ("gold")
# that both models accept (OneHotEncoder ignores it; HistGradientBoosting
# treats it as missing).
PLANS = ("basic", "standard", "premium")
REGIONS = ("east", "north", "south", "west")
WRK_SCRIPT = BENCH / "post.lua"
WRK_MARKER = "WRK_JSON "
POLL_SECONDS = 0.01
REQUEST_TIMEOUT_SECONDS = 10.0
STOP_SECONDS = 10.0
TRAIN_TIMEOUT_SECONDS = 600.0
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
PACKAGES = (
    "scikit-learn",
    "numpy",
    "onnxruntime",
    "functions-framework",
    "gunicorn",
    "flask",
)
# Substrings of mapped file paths that prove a library was imported by a server.
LIBRARIES = {
    "numpy": "/numpy/",
    "pandas": "/pandas/",
    "sklearn": "/sklearn/",
    "onnxruntime": "/onnxruntime/",
}
# Targets the product wants (reported, never asserted): (label, figure, basis,
# "<=" or ">=", bound). The basis is the server the figure is divided by, or
# None for an absolute figure.
GOALS = (
    ("ONNX p50 vs SEED", "p50_ms", "SEED", "<=", 0.1),
    ("ONNX req/s vs SEED", "load_rps", "SEED", ">=", 12.0),
    ("ONNX cold start vs SEED", "cold_start_ms", "SEED", "<=", 0.35),
    ("ONNX PSS vs SEED", "pss_mib", "SEED", "<=", 0.5),
    ("ONNX p50 vs NOOP", "p50_ms", "NOOP", "<=", 1.3),
    ("ONNX batch rows/s", "batch_rows_per_s", None, ">=", 200_000.0),
)


class BenchError(Exception):
    """A run that cannot be trusted; the message says why."""


@dataclass(frozen=True)
class Target:
    """One server to measure: a functions-framework source and its environment.

    `kind` says what it answers: "seed" (one row per request), "ours" (one row
    and `{"instances": [...]}` batches) or "noop" (a constant). `workload` names
    the model whose requests it is sent ("seed", "canonical" or "hgb").
    """

    name: str
    title: str
    kind: str
    source: Path
    env: dict[str, str]
    workload: str = "seed"


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
    processes: int
    libraries: list[str]
    load_requests: int
    load_seconds: float
    load_rps: float
    load_p50_ms: float
    load_p99_ms: float
    load_cpu_ms_per_request: float
    pss_after_load_mib: float | None
    batch_latencies_ms: list[float] = field(default_factory=list)
    batch_rows_per_s: float | None = None
    batch_p50_ms: float | None = None


# --- models -------------------------------------------------------------------


def train_seed(directory: Path) -> Path:
    """The tutorial's train_and_save_model.py, writing its pickle into `directory`."""
    from sklearn.datasets import make_classification
    from sklearn.ensemble import RandomForestClassifier

    X, y = make_classification(
        n_samples=1000, n_features=10, n_informative=5, random_state=42
    )
    model = RandomForestClassifier(n_estimators=100, random_state=42)
    model.fit(X, y)
    directory.mkdir(parents=True, exist_ok=True)
    filename = directory / "random_forest_model.pkl"
    with open(filename, "wb") as file:
        pickle.dump(model, file)
    return filename


def reference_labels(pickle_path: Path, rows: list[list[float]]) -> list[int]:
    """The seed model's labels for `rows`, predicted in this process."""
    import numpy as np

    with open(pickle_path, "rb") as file:
        model = pickle.load(file)
    return [int(label) for label in model.predict(np.array(rows, dtype=np.float64))]


def batch_rows(count: int) -> list[list[float]]:
    """`count` fixed pseudo-random rows on the scale of the seed's training data."""
    draw = random.Random(42)
    return [
        [round(draw.gauss(0.0, 2.0), 6) for _ in range(N_FEATURES)]
        for _ in range(count)
    ]


def typed_batch_rows(count: int) -> list[dict[str, Any]]:
    """`count` fixed pseudo-random customers on the scale of customers.csv, as
    objects keyed by column: about 10% miss their income, 10% their plan, and 3%
    have a plan the models never saw."""
    draw = random.Random(42)
    rows = []
    for _ in range(count):
        income = max(15_000, round(draw.gauss(60_000, 20_000) / 100) * 100)
        pick = draw.random()
        plan = None if pick < 0.10 else "gold" if pick < 0.13 else draw.choice(PLANS)
        rows.append(
            {
                "income": None if draw.random() < 0.10 else income,
                "age": draw.randint(18, 80),
                "plan": plan,
                "region": draw.choice(REGIONS),
            }
        )
    return rows


def _customers() -> tuple[Any, Any]:
    """customers.csv as pandas reads it: (features, target); empty cells are NaN."""
    import pandas as pd

    data = pd.read_csv(CUSTOMERS)
    return data.drop(columns=CUSTOMERS_TARGET), data[CUSTOMERS_TARGET]


def fit_typed(name: str) -> tuple[Any, Any]:
    """(the fitted `name` model of TYPED_MODELS, the frame it was fitted on)."""
    X, y = _customers()
    numbers = X.select_dtypes("number").columns.tolist()
    texts = X.select_dtypes("object").columns.tolist()
    if name == "canonical":
        from sklearn.compose import ColumnTransformer
        from sklearn.ensemble import RandomForestClassifier
        from sklearn.impute import SimpleImputer
        from sklearn.pipeline import Pipeline, make_pipeline
        from sklearn.preprocessing import OneHotEncoder, StandardScaler

        preprocess = ColumnTransformer(
            [
                ("num", make_pipeline(SimpleImputer(), StandardScaler()), numbers),
                ("cat", OneHotEncoder(handle_unknown="ignore"), texts),
            ]
        )
        forest = RandomForestClassifier(n_estimators=100, random_state=42)
        model = Pipeline([("preprocess", preprocess), ("classify", forest)])
        return model.fit(X, y), X
    from sklearn.ensemble import HistGradientBoostingClassifier

    X = X.astype({column: "category" for column in texts})
    model = HistGradientBoostingClassifier(
        categorical_features="from_dtype", random_state=42
    )
    return model.fit(X, y), X


def typed_frame(rows: list[dict[str, Any]], training: Any) -> Any:
    """`rows` as a DataFrame with the training frame's columns and dtypes, as
    pandas would hold them: missing is NaN, an unseen category is missing."""
    import numpy as np
    import pandas as pd

    data: dict[str, Any] = {}
    for name, dtype in training.dtypes.items():
        values = [row[name] for row in rows]
        if isinstance(dtype, pd.CategoricalDtype):
            data[name] = pd.Categorical(values, categories=dtype.categories)
        elif dtype.kind == "O":
            data[name] = np.array([np.nan if v is None else v for v in values], object)
        else:
            column = np.array([np.nan if v is None else v for v in values], float)
            # Integers stay integers unless a value is missing, as in read_csv.
            data[name] = column if np.isnan(column).any() else column.astype(dtype)
    return pd.DataFrame(data)


def train_typed(
    name: str, directory: Path, rows: list[dict[str, Any]]
) -> tuple[Path, list[Any]]:
    """Fit and pickle the `name` model into `directory`; return the pickle and
    its own labels for `rows`, predicted on a frame with the training dtypes."""
    model, training = fit_typed(name)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{name}.pkl"
    with open(path, "wb") as file:
        pickle.dump(model, file)
    return path, model.predict(typed_frame(rows, training)).tolist()


def prepare_models(
    directory: Path, rows: int, models: list[str]
) -> tuple[dict[str, Path], dict[str, Workload]]:
    """Train the seed model and the typed `models`, and predict every reference
    label, in a child process: (pickles, workloads), keyed "seed" and by model.

    The benchmark process itself never imports numpy, pandas or scikit-learn: it
    stays a light client, and shares no library pages with the servers it
    measures.
    """
    seed_batch = batch_rows(rows)
    typed_batch = typed_batch_rows(rows)
    payloads = [{"features": row} for row in TYPED_ROWS]
    single = len(TYPED_ROWS)
    context = multiprocessing.get_context("spawn")
    pickles: dict[str, Path] = {}
    workloads: dict[str, Workload] = {}
    with context.Pool(1) as pool:
        try:
            pickles["seed"] = pool.apply_async(train_seed, (directory,)).get(
                TRAIN_TIMEOUT_SECONDS
            )
            labels = pool.apply_async(
                reference_labels, (pickles["seed"], [PAYLOAD["features"], *seed_batch])
            ).get(TRAIN_TIMEOUT_SECONDS)
            workloads["seed"] = Workload([PAYLOAD], labels[:1], seed_batch, labels[1:])
            for name in models:
                pickles[name], labels = pool.apply_async(
                    train_typed, (name, directory, [*TYPED_ROWS, *typed_batch])
                ).get(TRAIN_TIMEOUT_SECONDS)
                workloads[name] = Workload(
                    payloads, labels[:single], typed_batch, labels[single:]
                )
        except multiprocessing.TimeoutError:
            raise BenchError(
                f"training the models took over {TRAIN_TIMEOUT_SECONDS}s"
            ) from None
    return pickles, workloads


def publish(store: Path, name: str, pickle_path: Path | None = None) -> str:
    """Publish into `store` as `name`; return its MODEL_URI.

    Without `pickle_path`: `python -m train --store STORE --name NAME`, which fits
    the tutorial's model. With it: `python -m train publish FILE --holdout
    customers.csv ...`, so the manifest carries the schema inferred from real
    rows and the twin's parity gate runs on them. BenchError unless it published
    an ONNX twin too: the ONNX server needs it.
    """
    command = [sys.executable, "-m", "train"]
    if pickle_path is not None:
        command += ["publish", str(pickle_path), "--holdout", str(CUSTOMERS)]
    command += ["--store", str(store), "--name", name]
    try:
        done = subprocess.run(
            command,
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=TRAIN_TIMEOUT_SECONDS,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise BenchError(
            f"{shlex.join(command)} took over {TRAIN_TIMEOUT_SECONDS}s"
        ) from None
    lines = done.stdout.splitlines()
    uris = [line.split("=", 1)[1] for line in lines if line.startswith("MODEL_URI=")]
    if done.returncode != 0 or not uris:
        raise BenchError(
            f"{shlex.join(command)} failed ({done.returncode}):\n"
            f"{done.stdout}{done.stderr}"
        )
    if not any(line.startswith("with ONNX twin") for line in lines):
        raise BenchError(
            f"{shlex.join(command)} published no ONNX twin, so the ONNX server "
            f"cannot be measured:\n{done.stdout}{done.stderr}"
        )
    return uris[-1]


# --- processes ------------------------------------------------------------------


def free_port() -> int:
    """A TCP port on HOST that was free a moment ago (bind port 0, then release)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def _stat(pid: int) -> tuple[int, int] | None:
    """(parent pid, start time in clock ticks) of `pid`, or None if it is gone."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = raw.rsplit(")", 1)[1].split()  # the command name may hold spaces
    return int(fields[1]), int(fields[19])


def descendants(pid: int) -> list[tuple[int, int]]:
    """Every live descendant of `pid`, as (pid, start time) pairs."""
    children: dict[int, list[tuple[int, int]]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (stat := _stat(int(entry.name))) is not None:
            children.setdefault(stat[0], []).append((int(entry.name), stat[1]))
    found: list[tuple[int, int]] = []
    queue = [pid]
    while queue:
        for child in children.get(queue.pop(), []):
            found.append(child)
            queue.append(child[0])
    return found


def _read_kib(path: str, key: str) -> int | None:
    """The `key:` line of a /proc file, in KiB, or None if absent or gone."""
    try:
        lines = Path(path).read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        if line.startswith(f"{key}:"):
            return int(line.split()[1])
    return None


def tree_memory(pid: int) -> tuple[float, float | None, int]:
    """(RSS MiB, PSS MiB or None, process count) summed over `pid` and children."""
    pids = [pid, *(child for child, _ in descendants(pid))]
    rss = [_read_kib(f"/proc/{p}/status", "VmRSS") for p in pids]
    pss = [_read_kib(f"/proc/{p}/smaps_rollup", "Pss") for p in pids]
    alive = [kib for kib in rss if kib is not None]
    if not alive:
        raise BenchError(f"server process {pid} vanished before its memory was read")
    pss_mib = None if None in pss else sum(p or 0 for p in pss) / 1024
    return sum(alive) / 1024, pss_mib, len(alive)


def tree_libraries(pid: int) -> list[str]:
    """Which of LIBRARIES `pid` or its children have mapped: what was imported."""
    mapped: set[str] = set()
    for p in [pid, *(child for child, _ in descendants(pid))]:
        try:
            maps = Path(f"/proc/{p}/maps").read_text()
        except OSError:
            continue
        mapped.update(name for name, mark in LIBRARIES.items() if mark in maps)
    return sorted(mapped)


def tree_cpu_seconds(pid: int) -> float:
    """User plus system CPU seconds used so far by `pid` and its live children."""
    ticks = 0
    for p in [pid, *(child for child, _ in descendants(pid))]:
        try:
            raw = Path(f"/proc/{p}/stat").read_text()
        except OSError:
            continue
        fields = raw.rsplit(")", 1)[1].split()
        ticks += int(fields[11]) + int(fields[12])  # utime, stime
    return ticks / os.sysconf("SC_CLK_TCK")


def start_server(target: Target, port: int, log: BinaryIO) -> subprocess.Popen[bytes]:
    """Start functions-framework for `target` on HOST:port, cwd at the repo root."""
    framework = Path(sys.executable).parent / "functions-framework"
    env = {k: v for k, v in os.environ.items() if k not in STRIPPED_ENV}
    env.update(target.env)
    command = [
        str(framework),
        "--source",
        str(target.source),
        "--target",
        "predict",
        "--host",
        HOST,
        "--port",
        str(port),
    ]
    return subprocess.Popen(
        command, cwd=ROOT, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=log
    )


def stop_server(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM the server, SIGKILL it (and its leftover children) after a timeout."""
    children = descendants(proc.pid)
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(STOP_SECONDS)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(STOP_SECONDS)
    deadline = time.monotonic() + STOP_SECONDS
    for pid, started in children:
        # Same pid and start time: still our worker, not a recycled pid.
        while (stat := _stat(pid)) is not None and stat[1] == started:
            if time.monotonic() > deadline:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
                break
            time.sleep(POLL_SECONDS)


# --- HTTP -----------------------------------------------------------------------


def post(conn: http.client.HTTPConnection, body: bytes) -> tuple[int, bytes]:
    """POST `body` to /predict; return status and body (fully read)."""
    conn.request("POST", "/predict", body=body, headers=HEADERS)
    response = conn.getresponse()
    return response.status, response.read()


def check_answer(target: Target, status: int, body: bytes, expected: Any) -> None:
    """BenchError unless `target` answered a one-row request as it should.

    The predicting servers must give a 200 with `expected` (the model's own
    label for that row); the floor must give its constant.
    """
    try:
        answer = json.loads(body) if status == 200 else None
    except ValueError:
        answer = None
    if target.kind == "noop":
        if answer == NOOP_ANSWER:
            return
        wanted = f"{json.dumps(NOOP_ANSWER)} (bench/noop_main.py's constant)"
    else:
        if isinstance(answer, dict) and answer.get("prediction") == expected:
            return
        wanted = f"prediction {json.dumps(expected)} (the model's own label)"
    raise BenchError(
        f"{target.name} answered {status} {body[:300]!r}; expected {wanted}"
    )


def check_batch(target: Target, status: int, body: bytes, expected: list[Any]) -> None:
    """BenchError unless a batch was answered with the model's own labels."""
    try:
        answer = json.loads(body) if status == 200 else None
    except ValueError:
        answer = None
    predictions = answer.get("predictions") if isinstance(answer, dict) else None
    if predictions != expected:
        wrong = (
            sum(a != b for a, b in zip(predictions, expected, strict=True))
            if isinstance(predictions, list) and len(predictions) == len(expected)
            else None
        )
        detail = (
            f"{wrong} of {len(expected)} labels differ"
            if wrong is not None
            else f"not a list of {len(expected)} predictions"
        )
        raise BenchError(
            f"{target.name} answered a {len(expected)}-row batch with {status} "
            f"({detail}): {body[:300]!r}; expected the model's own labels"
        )


def wait_ready(
    target: Target,
    proc: subprocess.Popen[bytes],
    port: int,
    request: bytes,
    started: float,
    timeout: float,
) -> tuple[float, float, int, int, bytes]:
    """Poll POST /predict of `request` until the first 200.

    Returns (start and end of the attempt that got it, in seconds since `started`;
    attempts made; its status and body). Connection errors and non-200 answers:
    not ready.
    """
    deadline = started + timeout
    attempts = 0
    last = "no answer"
    while True:
        if proc.poll() is not None:
            raise BenchError(
                f"{target.name} exited with {proc.returncode} before ready"
            )
        attempt = time.perf_counter()
        if attempt > deadline:
            raise BenchError(
                f"{target.name} not ready within {timeout}s (last: {last})"
            )
        attempts += 1
        conn = http.client.HTTPConnection(
            HOST, port, timeout=max(0.1, deadline - attempt)
        )
        try:
            status, body = post(conn, request)
        except (OSError, http.client.HTTPException) as error:
            last = f"{type(error).__name__}: {error}"
        else:
            if status == 200:
                ready = time.perf_counter() - started
                return attempt - started, ready, attempts, status, body
            last = f"HTTP {status} {body[:200]!r}"
        finally:
            conn.close()
        time.sleep(POLL_SECONDS)


def timed_posts(
    target: Target,
    port: int,
    count: int,
    requests: list[tuple[bytes, Check]],
    timeout: float,
) -> tuple[list[float], int]:
    """`count` sequential keep-alive POSTs, taking the (body, check) pairs of
    `requests` in turn; (latencies in ms, reconnects).

    Each answer is checked with its `check`, outside the timed span.
    """
    conn = http.client.HTTPConnection(HOST, port, timeout=REQUEST_TIMEOUT_SECONDS)
    deadline = time.perf_counter() + timeout
    latencies: list[float] = []
    reconnects = 0
    try:
        for index in range(count):
            body, check = requests[index % len(requests)]
            if latencies and conn.sock is None:
                reconnects += 1  # the server closed the previous connection
            begin = time.perf_counter()
            if begin > deadline:
                raise BenchError(
                    f"{target.name}: {count} requests took over {timeout}s"
                )
            try:
                status, answer = post(conn, body)
            except (OSError, http.client.HTTPException) as error:
                raise BenchError(f"{target.name}: request failed: {error!r}") from None
            latencies.append((time.perf_counter() - begin) * 1000)
            check(status, answer)
    finally:
        conn.close()
    return latencies, reconnects


def wrk_version() -> str:
    """wrk's version line, or why there is none."""
    wrk = shutil.which("wrk")
    if wrk is None:
        return "not installed"
    done = subprocess.run(
        [wrk, "--version"], capture_output=True, text=True, timeout=10, check=False
    )
    first = (done.stdout or done.stderr).splitlines()
    return first[0].split(" Copyright")[0] if first else "unknown"


@dataclass(frozen=True)
class LoadResult:
    """What wrk measured at a fixed number of connections."""

    requests: int
    seconds: float
    rps: float
    p50_ms: float
    p99_ms: float


def parse_wrk(target: str, output: str) -> LoadResult:
    """The summary line bench/post.lua prints; BenchError on any error count."""
    lines = [line for line in output.splitlines() if line.startswith(WRK_MARKER)]
    if not lines:
        raise BenchError(f"{target}: wrk printed no summary:\n{output[-2000:]}")
    try:
        raw = json.loads(lines[-1][len(WRK_MARKER) :])
        requests = int(raw["requests"])
        seconds = raw["duration_us"] / 1e6
        errors = {k: int(v) for k, v in raw.items() if k.endswith(("errors", "outs"))}
        p50, p99 = raw["latency_p50_us"] / 1000, raw["latency_p99_us"] / 1000
    except (ValueError, KeyError, TypeError) as error:
        raise BenchError(f"{target}: unreadable wrk summary {lines[-1]!r}") from error
    failed = {k: v for k, v in errors.items() if v}
    if failed or requests == 0 or seconds <= 0:
        raise BenchError(
            f"{target}: wrk saw {requests} requests in {seconds:.1f}s with errors "
            f"{failed or 'none'}; every request must get a 2xx:\n{output[-2000:]}"
        )
    return LoadResult(requests, seconds, requests / seconds, p50, p99)


def load_test(
    target: Target, port: int, body_file: Path, args: argparse.Namespace
) -> LoadResult:
    """wrk for --duration seconds at --connections, POSTing the seed payload."""
    wrk = shutil.which("wrk")
    if wrk is None:
        raise BenchError("wrk is not installed: apt-get install -y wrk")
    command = [
        wrk,
        f"-t{args.wrk_threads}",
        f"-c{args.connections}",
        f"-d{args.duration}s",
        f"--timeout={REQUEST_TIMEOUT_SECONDS:.0f}s",
        "-s",
        str(WRK_SCRIPT),
        f"http://{HOST}:{port}/predict",
    ]
    try:
        done = subprocess.run(
            command,
            env={**os.environ, "WRK_BODY_FILE": str(body_file)},
            capture_output=True,
            text=True,
            timeout=args.duration + 2 * REQUEST_TIMEOUT_SECONDS + 10,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise BenchError(f"{target.name}: {shlex.join(command)} hung") from None
    if done.returncode != 0:
        raise BenchError(
            f"{target.name}: {shlex.join(command)} failed ({done.returncode}):\n"
            f"{done.stdout}{done.stderr}"
        )
    return parse_wrk(target.name, done.stdout)


# --- one run --------------------------------------------------------------------


def percentile(values: list[float], q: int) -> float:
    """The q-th percentile, interpolated linearly (numpy's default method)."""
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1]


def run_once(
    target: Target,
    run: int,
    args: argparse.Namespace,
    workdir: Path,
    workload: Workload,
) -> RunResult:
    """Start `target` cold, time its first 200, then measure it warm, under load
    and (ours) on batches; always stop it."""
    port = free_port()
    log_path = workdir / f"{target.name.lower()}-{run}.log"
    batch_body = json.dumps({"instances": workload.batch_rows}).encode()

    def single(expected: Any) -> Check:
        return lambda status, answer: check_answer(target, status, answer, expected)

    def whole(status: int, answer: bytes) -> None:
        check_batch(target, status, answer, workload.batch_labels)

    # The one-row requests with their checks; the first is the cold start's and
    # wrk's (the floor gets the seed's requests and answers its constant).
    singles = [
        (body, single(label))
        for body, label in zip(workload.bodies, workload.labels, strict=True)
    ]
    batches = [(batch_body, whole)]
    with open(log_path, "wb") as log:
        started = time.perf_counter()
        proc = start_server(target, port, log)
        try:
            opened, ready, attempts, status, body = wait_ready(
                target, proc, port, singles[0][0], started, args.ready_timeout
            )
            singles[0][1](status, body)
            latencies, reconnects = timed_posts(
                target, port, args.requests, singles, args.warm_timeout
            )
            rss, pss, processes = tree_memory(proc.pid)
            libraries = tree_libraries(proc.pid)
            cpu_before = tree_cpu_seconds(proc.pid)
            load = load_test(target, port, workdir / f"{target.workload}.json", args)
            load_cpu = tree_cpu_seconds(proc.pid) - cpu_before
            # wrk checks statuses only: make sure the answers are still right.
            timed_posts(target, port, len(singles), singles, args.warm_timeout)
            batch: list[float] = []
            if target.kind == "ours":
                # One untimed batch first: it pays one-off costs of a new shape.
                timed_posts(target, port, 1, batches, args.warm_timeout)
                batch, _ = timed_posts(
                    target, port, args.batch_requests, batches, args.warm_timeout
                )
            _, pss_after_load, _ = tree_memory(proc.pid)
        except BenchError as error:
            log.flush()
            tail = log_path.read_text(errors="replace")[-2000:]
            raise BenchError(
                f"{error}\n--- {target.name} server log ---\n{tail}"
            ) from None
        finally:
            stop_server(proc)
    rows = len(workload.batch_rows)
    return RunResult(
        target=target.name,
        run=run,
        cold_start_ms=ready * 1000,
        port_open_ms=opened * 1000,
        first_request_ms=(ready - opened) * 1000,
        poll_attempts=attempts,
        reconnects=reconnects,
        latencies_ms=latencies,
        p50_ms=percentile(latencies, 50),
        p90_ms=percentile(latencies, 90),
        p99_ms=percentile(latencies, 99),
        rss_mib=rss,
        pss_mib=pss,
        processes=processes,
        libraries=libraries,
        load_requests=load.requests,
        load_seconds=load.seconds,
        load_rps=load.rps,
        load_p50_ms=load.p50_ms,
        load_p99_ms=load.p99_ms,
        load_cpu_ms_per_request=load_cpu * 1000 / load.requests,
        pss_after_load_mib=pss_after_load,
        batch_latencies_ms=batch,
        batch_rows_per_s=rows * len(batch) / (sum(batch) / 1000) if batch else None,
        batch_p50_ms=statistics.median(batch) if batch else None,
    )


# --- report ---------------------------------------------------------------------

SUMMARY_FIELDS = (
    "cold_start_ms",
    "port_open_ms",
    "first_request_ms",
    "p50_ms",
    "p90_ms",
    "p99_ms",
    "rss_mib",
    "pss_mib",
    "load_rps",
    "load_p50_ms",
    "load_p99_ms",
    "load_cpu_ms_per_request",
    "pss_after_load_mib",
    "batch_rows_per_s",
    "batch_p50_ms",
)


def summarise(
    results: list[RunResult], targets: list[Target]
) -> dict[str, dict[str, Any]]:
    """Per target: the median over runs of each figure, plus cold-start min/max.

    The tutorial's handler takes one row per request, so its rows/s is its
    requests/s under load (`rows_per_s`, the basis of the batch ratio).
    """
    summary: dict[str, dict[str, Any]] = {}
    for target in targets:
        runs = [r for r in results if r.target == target.name]
        if not runs:
            continue
        row: dict[str, Any] = {
            "title": target.title,
            "kind": target.kind,
            "workload": target.workload,
        }
        row["runs"] = len(runs)
        for key in SUMMARY_FIELDS:
            values = [getattr(r, key) for r in runs]
            row[key] = None if None in values else statistics.median(values)
        row["cold_start_min_ms"] = min(r.cold_start_ms for r in runs)
        row["cold_start_max_ms"] = max(r.cold_start_ms for r in runs)
        row["processes"] = max(r.processes for r in runs)
        row["reconnects"] = sum(r.reconnects for r in runs)
        row["libraries"] = sorted({lib for r in runs for lib in r.libraries})
        row["rows_per_s"] = {
            "ours": row["batch_rows_per_s"],
            "seed": row["load_rps"],
        }.get(target.kind)
        summary[target.name] = row
    return summary


def git_state() -> str:
    """The checked-out commit, and whether what was measured differs from it."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "function", "train", "bench"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return "unknown (not a git checkout?)"
    folders = sorted({line[3:].split("/", 1)[0] for line in dirty.splitlines()})
    if not folders:
        return head
    return f"{head} (plus uncommitted changes in {', '.join(folders)})"


def environment() -> dict[str, Any]:
    """Command line, interpreter, machine and package versions of this run."""
    versions = {}
    for package in PACKAGES:
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = "not installed"
    return {
        "command": shlex.join(sys.orig_argv),
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "usable_cpus": len(os.sched_getaffinity(0)),
        "threads": 4 * (os.cpu_count() or 1),  # functions-framework's default
        "load_at_end": [round(load, 2) for load in os.getloadavg()],
        "packages": versions,
        "wrk": wrk_version(),
    }


def _loads(loads: list[float]) -> str:
    """A load-average triple as `a/b/c`."""
    return "/".join(f"{load:.2f}" for load in loads)


def _fmt(value: float | None, digits: int = 1) -> str:
    """`value` with `digits` decimals and thousands separators, or n/a."""
    return "n/a" if value is None else f"{value:,.{digits}f}"


def _ratio(value: float | None, basis: float | None) -> float | None:
    """value / basis, or None when either is missing or the basis is 0."""
    if value is None or not basis:
        return None
    return value / basis


def _times(ratio: float | None) -> str:
    """A ratio as `0.07x` / `12.3x`, or n/a."""
    if ratio is None:
        return "n/a"
    return f"{ratio:.1f}x" if ratio >= 10 else f"{ratio:.2f}x"


def _requests(workload: Workload, servers: str) -> str:
    """Which servers get which one-row requests, and the label each must get."""
    shown = " and ".join(
        f"`{json.dumps(payload)}` (label {json.dumps(label)})"
        for payload, label in zip(workload.payloads, workload.labels, strict=True)
    )
    return f"{servers} get {shown}"


def goals(summary: dict[str, dict[str, Any]]) -> list[tuple[str, str, str, str]]:
    """(target, wanted, measured, met / missed / n/a) for each of GOALS."""
    rows = []
    onnx = summary.get("ONNX", {})
    for title, key, basis, sense, bound in GOALS:
        value = onnx.get(key)
        if basis is None:
            measured = value
            wanted, shown = f"{sense} {bound:,.0f}", _fmt(value, 0)
        else:
            measured = _ratio(value, summary.get(basis, {}).get(key))
            wanted, shown = f"{sense} {_times(bound)}", _times(measured)
        if measured is None:
            verdict = "n/a"
        elif measured <= bound if sense == "<=" else measured >= bound:
            verdict = "met"
        else:
            verdict = "missed"
        rows.append((title, wanted, shown, verdict))
    return rows


def render(
    summary: dict[str, dict[str, Any]],
    env: dict[str, Any],
    args: argparse.Namespace,
    workloads: dict[str, Workload],
) -> str:
    """The Markdown report: headline, ratios, twin vs pickle, targets, breakdown,
    run facts."""
    rows = len(workloads["seed"].batch_rows)
    seed = summary.get("SEED", {})
    floor = summary.get("NOOP", {})
    lines = [
        f"## {len(summary)} servers side by side (median of {args.runs} runs)",
        "",
        f"| server | cold start (ms) | p50 (ms) | p99 (ms) "
        f"| req/s at {args.connections} connections | PSS (MiB) "
        f"| batch rows/s ({rows:,}-row requests) |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name, row in summary.items():
        if row["kind"] == "seed":
            batch = f"{_fmt(row['rows_per_s'], 0)} (1 row/request)"
        else:
            batch = _fmt(row["rows_per_s"], 0)
        lines.append(
            f"| {name}: {row['title']} | {_fmt(row['cold_start_ms'], 0)} "
            f"| {_fmt(row['p50_ms'], 2)} | {_fmt(row['p99_ms'], 2)} "
            f"| {_fmt(row['load_rps'], 0)} | {_fmt(row['pss_mib'])} | {batch} |"
        )
    lines += [
        "",
        "Ratios: each server's figure divided by SEED's (lower is better for "
        "time and memory, higher for req/s and rows/s); last column: p50 divided "
        "by NOOP's.",
        "",
        "| server | cold start | p50 | p99 | req/s | PSS | batch rows/s "
        "| p50 vs NOOP |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, row in summary.items():
        cells = [
            _times(_ratio(row[key], seed.get(key)))
            for key in ("cold_start_ms", "p50_ms", "p99_ms", "load_rps", "pss_mib")
        ]
        cells.append(_times(_ratio(row["rows_per_s"], seed.get("rows_per_s"))))
        cells.append(_times(_ratio(row["p50_ms"], floor.get("p50_ms"))))
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "Twin vs pickle: each model's ONNX figure divided by its SKLEARN figure "
        "(the same published version, the same requests).",
        "",
        "| model | cold start | p50 | p99 | req/s | PSS | batch rows/s "
        "| server CPU per request |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, row in summary.items():
        pickle_row = summary.get(name.replace("ONNX", "SKLEARN"))
        if not name.endswith("ONNX") or pickle_row is None:
            continue
        keys = ("cold_start_ms", "p50_ms", "p99_ms", "load_rps", "pss_mib")
        keys += ("rows_per_s", "load_cpu_ms_per_request")
        cells = [_times(_ratio(row[key], pickle_row[key])) for key in keys]
        lines.append(f"| {MODEL_TITLES[row['workload']]} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "Targets the product wants (reported, not asserted):",
        "",
        "| target | wanted | measured | |",
        "|---|---:|---:|---|",
    ]
    lines += [f"| {t} | {w} | {m} | {v} |" for t, w, m, v in goals(summary)]
    lines += [
        "",
        "| server | cold start min-max (ms) | port open (ms) | first 200 request (ms) "
        "| p90 (ms) | under load p50 / p99 (ms) | server CPU per request (ms) "
        "| batch request p50 (ms) | RSS (MiB) | PSS after load (MiB) | processes "
        "| libraries mapped |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for name, row in summary.items():
        lines.append(
            f"| {name} | {_fmt(row['cold_start_min_ms'], 0)}-"
            f"{_fmt(row['cold_start_max_ms'], 0)} | {_fmt(row['port_open_ms'], 0)} "
            f"| {_fmt(row['first_request_ms'], 0)} | {_fmt(row['p90_ms'], 2)} "
            f"| {_fmt(row['load_p50_ms'])} / {_fmt(row['load_p99_ms'])} "
            f"| {_fmt(row['load_cpu_ms_per_request'], 3)} "
            f"| {_fmt(row['batch_p50_ms'], 2)} | {_fmt(row['rss_mib'])} "
            f"| {_fmt(row['pss_after_load_mib'])} | {row['processes']} "
            f"| {', '.join(row['libraries']) or 'none of ' + '/'.join(LIBRARIES)} |"
        )
    packages = ", ".join(f"{k} {v}" for k, v in env["packages"].items())
    reconnects = sum(row["reconnects"] for row in summary.values())
    lines += [
        "",
        f"- command: `{env['command']}` at commit {env['git']}"
        + (
            f" (at the end: {env['git_at_end']})"
            if env["git_at_end"] != env["git"]
            else ""
        ),
        f"- Python {env['python']} ({env['implementation']}), {env['platform']}",
        f"- cores: {env['cpu_count']} ({env['usable_cpus']} usable by this process); "
        f"load average 1/5/15 min at start {_loads(env['load_at_start'])}, "
        f"at end {_loads(env['load_at_end'])}",
        f"- packages: {packages}; load generator: {env['wrk']}",
        "- every server: functions-framework (gunicorn, 1 worker, "
        f"{env['threads']} threads: its default of 4 per core) on {HOST}, "
        "started cold for each run",
        f"- requests: {_requests(workloads['seed'], 'SEED, SKLEARN, ONNX, NOOP')}",
    ]
    lines += [
        f"- requests: {_requests(workloads[name], f'{prefix}_SKLEARN, {prefix}_ONNX')};"
        f" the model: {TYPED_MODELS[name][2]}, fitted on "
        f"{CUSTOMERS.relative_to(ROOT)} and published with `python -m train "
        "publish FILE.pkl --holdout customers.csv` (schema and ONNX twin)"
        for name, (prefix, _, _) in TYPED_MODELS.items()
        if name in workloads
    ]
    lines += [
        f"- p50/p90/p99: {args.requests} sequential keep-alive requests per run "
        "after the first 200, taking the server's one-row requests in turn; every "
        "answer checked against the model's own label (NOOP: its constant); "
        f"reconnects: {reconnects}",
        f"- req/s: `wrk -t{args.wrk_threads} -c{args.connections} "
        f"-d{args.duration}s -s bench/post.lua` POSTing the server's first "
        "one-row request, on the same cores as the server; every run had 0 "
        "non-2xx answers, socket errors and timeouts",
        f"- batch: {args.batch_requests} timed requests of {rows:,} rows per run "
        "(after one untimed), sequential on one keep-alive connection; every "
        "label checked against the model's own; the typed rows are objects keyed "
        "by column with about 10% null incomes, 10% null plans and 3% unseen plans; "
        "SEED takes one row per request, so its rows/s is its req/s",
        "- RSS/PSS: summed over the functions-framework process and its children, "
        "after the sequential requests (PSS after load: at the end of the run); "
        "RSS counts pages shared after fork twice, PSS does not",
    ]
    return "\n".join(lines)


# --- command line ---------------------------------------------------------------


def _positive(minimum: int) -> Callable[[str], int]:
    """An argparse type: an integer of at least `minimum`."""

    def parse(raw: str) -> int:
        try:
            value = int(raw)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not an integer: {raw!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be >= {minimum}, got {value}")
        return value

    return parse


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Parse the command line."""
    parser = argparse.ArgumentParser(
        description="Cold start, latency, throughput and memory of the tutorial's "
        "handler, this function on scikit-learn and on its ONNX twin, and a no-op "
        "floor, all under functions-framework."
    )
    parser.add_argument(
        "--runs",
        type=_positive(1),
        default=5,
        help="cold starts per server (default: 5)",
    )
    parser.add_argument(
        "--requests",
        type=_positive(2),
        default=500,
        help="sequential requests per run for p50/p90/p99 (default: 500)",
    )
    parser.add_argument(
        "--duration",
        type=_positive(1),
        default=10,
        help="seconds of wrk load per run (default: 10)",
    )
    parser.add_argument(
        "--connections",
        type=_positive(1),
        default=16,
        help="wrk's open connections (default: 16)",
    )
    parser.add_argument(
        "--wrk-threads",
        type=_positive(1),
        default=2,
        help="wrk's threads, at most --connections (default: 2)",
    )
    parser.add_argument(
        "--batch-rows",
        type=_positive(1),
        default=1000,
        help="rows per batch request (default: 1000)",
    )
    parser.add_argument(
        "--batch-requests",
        type=_positive(1),
        default=30,
        help="timed batch requests per run (default: 30)",
    )
    parser.add_argument(
        "--models",
        default=",".join(TYPED_MODELS),
        help="the typed models to serve beside the tutorial's, comma-separated: "
        f"{', '.join(TYPED_MODELS)}, or none (default: all)",
    )
    parser.add_argument("--json", type=Path, help="also write raw numbers here")
    parser.add_argument(
        "--ready-timeout",
        type=float,
        default=60.0,
        help="seconds a server may take to answer its first 200 (default: 60)",
    )
    parser.add_argument(
        "--warm-timeout",
        type=float,
        default=120.0,
        help="seconds one run's sequential or batch requests may take (default: 120)",
    )
    args = parser.parse_args(argv)
    given = args.models
    args.models = [] if given == "none" else given.split(",")
    unknown = [name for name in args.models if name not in TYPED_MODELS]
    if unknown or len(set(args.models)) != len(args.models):
        parser.error(
            f"--models takes a comma-separated list of {', '.join(TYPED_MODELS)} "
            f"(each once), or none; got {given!r}"
        )
    if args.wrk_threads > args.connections:
        parser.error("--wrk-threads must not exceed --connections")
    return args


def targets(uris: dict[str, str], pickles: dict[str, Path]) -> list[Target]:
    """Every server, in report order: the tutorial's, ours on its model, ours on
    each typed model in `uris` (scikit-learn, then the twin), the floor."""
    ours = BENCH.parent / "function" / "main.py"
    servers = [
        Target(
            "SEED",
            "tutorial's handler",
            "seed",
            BENCH / "seed_main.py",
            {"SEED_MODEL_PATH": str(pickles["seed"])},
        )
    ]
    models = [("seed", "", "this function")]
    models += [
        (name, f"{prefix}_", title)
        for name, (prefix, title, _) in TYPED_MODELS.items()
        if name in uris
    ]
    for workload, prefix, title in models:
        for runtime, what in (("sklearn", "scikit-learn"), ("onnx", "ONNX twin")):
            servers.append(
                Target(
                    f"{prefix}{runtime.upper()}",
                    f"{title}, {what}",
                    "ours",
                    ours,
                    {"MODEL_URI": uris[workload], "MODEL_RUNTIME": runtime},
                    workload,
                )
            )
    servers.append(Target("NOOP", "no-op floor", "noop", BENCH / "noop_main.py", {}))
    return servers


def main(argv: list[str] | None = None) -> int:
    """Prepare every model, measure each server --runs times, print the report."""
    args = parse_args(argv)
    load_at_start = [round(load, 2) for load in os.getloadavg()]
    git_at_start = git_state()
    if not (Path(sys.executable).parent / "functions-framework").exists():
        print(
            f"error: no functions-framework next to {sys.executable}", file=sys.stderr
        )
        return 1
    if shutil.which("wrk") is None:
        print(
            "error: wrk (the load generator) is not on PATH: "
            "apt-get install -y wrk (`make bench` does it)",
            file=sys.stderr,
        )
        return 1
    results: list[RunResult] = []
    try:
        with tempfile.TemporaryDirectory(prefix="coldstart-") as tmp:
            workdir = Path(tmp)
            print("training the models and publishing them...", file=sys.stderr)
            pickles, workloads = prepare_models(
                workdir / "models", args.batch_rows, args.models
            )
            store = workdir / "store"
            uris = {"seed": publish(store, "bench")}
            for name in args.models:
                uris[name] = publish(store, name, pickles[name])
            for name, workload in workloads.items():
                # wrk's body: the first one-row request of each model.
                (workdir / f"{name}.json").write_bytes(workload.bodies[0])
            servers = targets(uris, pickles)
            for run in range(args.runs):
                # Rotate who goes first, so none always meets a warmer machine.
                turn = run % len(servers)
                for target in servers[turn:] + servers[:turn]:
                    workload = workloads[target.workload]
                    result = run_once(target, run, args, workdir, workload)
                    results.append(result)
                    batch = (
                        f", batch {result.batch_rows_per_s:,.0f} rows/s"
                        if result.batch_rows_per_s is not None
                        else ""
                    )
                    print(
                        f"run {run + 1}/{args.runs} {target.name}: cold start "
                        f"{result.cold_start_ms:.0f} ms, p50 {result.p50_ms:.2f} ms, "
                        f"{result.load_rps:.0f} req/s{batch}",
                        file=sys.stderr,
                    )
    except BenchError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
    summary = summarise(results, servers)
    env = {
        **environment(),
        "load_at_start": load_at_start,
        "git": git_at_start,
        "git_at_end": git_state(),
    }
    print(render(summary, env, args, workloads))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        raw = {
            "environment": env,
            "settings": {
                **{key: value for key, value in vars(args).items() if key != "json"},
                "requests": {
                    name: [
                        {"body": payload, "expected_label": label}
                        for payload, label in zip(
                            workload.payloads, workload.labels, strict=True
                        )
                    ]
                    for name, workload in workloads.items()
                },
            },
            "summary": summary,
            "goals": [
                dict(zip(("target", "wanted", "measured", "verdict"), g, strict=True))
                for g in goals(summary)
            ],
            "runs": [asdict(r) for r in results],
        }
        args.json.write_text(json.dumps(raw, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
