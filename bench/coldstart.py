"""Cold start, warm latency and memory: our function vs the seed tutorial's handler.

Both run under the same functions-framework (gunicorn, same threads, 127.0.0.1):

- OURS: function/main.py serving a model published with `python -m train`;
- SEED: bench/seed_main.py, the tutorial's app.py ported to functions-framework,
  serving the pickle written by the tutorial's training script (reproduced below).

Usage: `.venv/bin/python bench/coldstart.py [--runs 5] [--requests 500]
[--json PATH]`. The Markdown report goes to stdout, progress to stderr. See
bench/README.md for what each figure means.
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
import shlex
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from importlib import metadata
from pathlib import Path
from typing import Any, BinaryIO

ROOT = Path(__file__).resolve().parent.parent
HOST = "127.0.0.1"
PAYLOAD = {"features": [0.1, -0.5, 1.2, -0.8, 0.3, 0.9, -1.1, 0.4, -0.2, 1.5]}
BODY = json.dumps(PAYLOAD).encode()
HEADERS = {"Content-Type": "application/json"}
POLL_SECONDS = 0.01
REQUEST_TIMEOUT_SECONDS = 10.0
STOP_SECONDS = 10.0
TRAIN_TIMEOUT_SECONDS = 600.0
# Settings of our function that would change what is measured if inherited.
STRIPPED_ENV = (
    "MODEL_URI",
    "SEED_MODEL_PATH",
    "API_KEYS",
    "MODEL_SIGNING_KEY",
    "CORS_ALLOW_ORIGINS",
    "FUNCTION_SOURCE",
    "FUNCTION_TARGET",
    "HOST",
    "PORT",
    "DEBUG",
)
PACKAGES = ("scikit-learn", "numpy", "functions-framework", "gunicorn", "flask")


class BenchError(Exception):
    """A run that cannot be trusted; the message says why."""


@dataclass(frozen=True)
class Target:
    """One server to measure: a functions-framework source and its environment."""

    name: str
    source: Path
    env: dict[str, str]


@dataclass
class RunResult:
    """Raw figures of one cold start plus its warm phase."""

    target: str
    run: int
    cold_start_ms: float
    port_open_ms: float
    first_request_ms: float
    poll_attempts: int
    label: int
    reconnects: int
    latencies_ms: list[float]
    p50_ms: float
    p90_ms: float
    p99_ms: float
    rss_mib: float
    pss_mib: float | None
    processes: int


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


def reference_label(pickle_path: Path) -> int:
    """The seed model's label for PAYLOAD, predicted in this process."""
    import numpy as np

    with open(pickle_path, "rb") as file:
        model = pickle.load(file)
    return int(model.predict(np.array(PAYLOAD["features"]).reshape(1, -1))[0])


def prepare_seed(directory: Path) -> tuple[Path, int]:
    """Train the seed model and predict the reference label, in a child process.

    The benchmark process itself never imports numpy or scikit-learn: it stays a
    light client, and shares no library pages with the servers it measures.
    """
    context = multiprocessing.get_context("spawn")
    with context.Pool(1) as pool:
        try:
            pickle_path = pool.apply_async(train_seed, (directory,)).get(
                TRAIN_TIMEOUT_SECONDS
            )
            label = pool.apply_async(reference_label, (pickle_path,)).get(
                TRAIN_TIMEOUT_SECONDS
            )
        except multiprocessing.TimeoutError:
            raise BenchError(
                f"training the seed model took over {TRAIN_TIMEOUT_SECONDS}s"
            ) from None
    return pickle_path, label


def publish_ours(store: Path) -> str:
    """Run `python -m train --store STORE --name bench`; return its MODEL_URI."""
    command = [sys.executable, "-m", "train", "--store", str(store), "--name", "bench"]
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
    uris = [
        line.split("=", 1)[1]
        for line in done.stdout.splitlines()
        if line.startswith("MODEL_URI=")
    ]
    if done.returncode != 0 or not uris:
        raise BenchError(
            f"{shlex.join(command)} failed ({done.returncode}):\n"
            f"{done.stdout}{done.stderr}"
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


def post_predict(conn: http.client.HTTPConnection) -> tuple[int, bytes]:
    """POST the seed payload to /predict; return status and body (fully read)."""
    conn.request("POST", "/predict", body=BODY, headers=HEADERS)
    response = conn.getresponse()
    return response.status, response.read()


def parse_label(target: str, status: int, body: bytes, expected: int) -> int:
    """The answered label; BenchError unless it is a 200 with `expected`."""
    try:
        label = json.loads(body)["prediction"] if status == 200 else None
    except (ValueError, KeyError, TypeError):
        label = None
    if label != expected:
        raise BenchError(
            f"{target} answered {status} {body[:300]!r}; expected prediction "
            f"{expected} (the seed model's own label for the seed payload)"
        )
    return int(label)


def wait_ready(
    target: str,
    proc: subprocess.Popen[bytes],
    port: int,
    started: float,
    timeout: float,
) -> tuple[float, float, int, bytes]:
    """Poll POST /predict until the first 200.

    Returns (start and end of the attempt that got it, in seconds since `started`;
    attempts made; its body). Connection errors and non-200 answers: not ready.
    """
    deadline = started + timeout
    attempts = 0
    last = "no answer"
    while True:
        if proc.poll() is not None:
            raise BenchError(f"{target} exited with {proc.returncode} before ready")
        attempt = time.perf_counter()
        if attempt > deadline:
            raise BenchError(f"{target} not ready within {timeout}s (last: {last})")
        attempts += 1
        conn = http.client.HTTPConnection(
            HOST, port, timeout=max(0.1, deadline - attempt)
        )
        try:
            status, body = post_predict(conn)
        except (OSError, http.client.HTTPException) as error:
            last = f"{type(error).__name__}: {error}"
        else:
            if status == 200:
                ready = time.perf_counter() - started
                return attempt - started, ready, attempts, body
            last = f"HTTP {status} {body[:200]!r}"
        finally:
            conn.close()
        time.sleep(POLL_SECONDS)


def warm_phase(
    target: str, port: int, count: int, expected: int, timeout: float
) -> tuple[list[float], int]:
    """`count` sequential keep-alive requests; (latencies in ms, reconnects)."""
    conn = http.client.HTTPConnection(HOST, port, timeout=REQUEST_TIMEOUT_SECONDS)
    deadline = time.perf_counter() + timeout
    latencies: list[float] = []
    reconnects = 0
    try:
        for _ in range(count):
            if latencies and conn.sock is None:
                reconnects += 1  # the server closed the previous connection
            begin = time.perf_counter()
            if begin > deadline:
                raise BenchError(f"{target}: {count} requests took over {timeout}s")
            try:
                status, body = post_predict(conn)
            except (OSError, http.client.HTTPException) as error:
                raise BenchError(f"{target}: warm request failed: {error!r}") from None
            latencies.append((time.perf_counter() - begin) * 1000)
            parse_label(target, status, body, expected)
    finally:
        conn.close()
    return latencies, reconnects


# --- one run --------------------------------------------------------------------


def percentile(values: list[float], q: int) -> float:
    """The q-th percentile, interpolated linearly (numpy's default method)."""
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1]


def run_once(
    target: Target,
    run: int,
    args: argparse.Namespace,
    workdir: Path,
    expected: int,
) -> RunResult:
    """Start `target` cold, time its first 200, then its warm phase; always stop it."""
    port = free_port()
    log_path = workdir / f"{target.name.lower()}-{run}.log"
    with open(log_path, "wb") as log:
        started = time.perf_counter()
        proc = start_server(target, port, log)
        try:
            opened, ready, attempts, body = wait_ready(
                target.name, proc, port, started, args.ready_timeout
            )
            label = parse_label(target.name, 200, body, expected)
            latencies, reconnects = warm_phase(
                target.name, port, args.requests, expected, args.warm_timeout
            )
            rss, pss, processes = tree_memory(proc.pid)
        except BenchError as error:
            log.flush()
            tail = log_path.read_text(errors="replace")[-2000:]
            raise BenchError(
                f"{error}\n--- {target.name} server log ---\n{tail}"
            ) from None
        finally:
            stop_server(proc)
    return RunResult(
        target=target.name,
        run=run,
        cold_start_ms=ready * 1000,
        port_open_ms=opened * 1000,
        first_request_ms=(ready - opened) * 1000,
        poll_attempts=attempts,
        label=label,
        reconnects=reconnects,
        latencies_ms=latencies,
        p50_ms=percentile(latencies, 50),
        p90_ms=percentile(latencies, 90),
        p99_ms=percentile(latencies, 99),
        rss_mib=rss,
        pss_mib=pss,
        processes=processes,
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
)


def summarise(results: list[RunResult], names: list[str]) -> dict[str, dict[str, Any]]:
    """Per target: the median over runs of each figure, plus cold-start min/max."""
    summary: dict[str, dict[str, Any]] = {}
    for name in names:
        runs = [r for r in results if r.target == name]
        row: dict[str, Any] = {"runs": len(runs)}
        for key in SUMMARY_FIELDS:
            values = [getattr(r, key) for r in runs]
            row[key] = None if None in values else statistics.median(values)
        row["cold_start_min_ms"] = min(r.cold_start_ms for r in runs)
        row["cold_start_max_ms"] = max(r.cold_start_ms for r in runs)
        row["processes"] = max(r.processes for r in runs)
        row["reconnects"] = sum(r.reconnects for r in runs)
        summary[name] = row
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
        "git": git_state(),
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "usable_cpus": len(os.sched_getaffinity(0)),
        "load_at_end": [round(load, 2) for load in os.getloadavg()],
        "packages": versions,
    }


def _loads(loads: list[float]) -> str:
    """A load-average triple as `a/b/c`."""
    return "/".join(f"{load:.2f}" for load in loads)


def _fmt(value: float | None, digits: int = 1) -> str:
    """`value` with `digits` decimals, or n/a."""
    return "n/a" if value is None else f"{value:.{digits}f}"


def render(
    summary: dict[str, dict[str, Any]],
    env: dict[str, Any],
    args: argparse.Namespace,
    label: int,
) -> str:
    """The Markdown report: headline table, breakdown table, run facts."""
    lines = [
        f"## Cold start and warm latency (median of {args.runs} runs)",
        "",
        "| | cold start (ms) | warm p50 (ms) | warm p90 (ms) | warm p99 (ms) "
        "| RSS (MiB) |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for name, row in summary.items():
        lines.append(
            f"| {name} | {_fmt(row['cold_start_ms'], 0)} | {_fmt(row['p50_ms'], 2)} "
            f"| {_fmt(row['p90_ms'], 2)} | {_fmt(row['p99_ms'], 2)} "
            f"| {_fmt(row['rss_mib'])} |"
        )
    lines += [
        "",
        "| | cold start min-max (ms) | port open (ms) | first 200 request (ms) "
        "| PSS (MiB) | processes |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for name, row in summary.items():
        lines.append(
            f"| {name} | {_fmt(row['cold_start_min_ms'], 0)}-"
            f"{_fmt(row['cold_start_max_ms'], 0)} | {_fmt(row['port_open_ms'], 0)} "
            f"| {_fmt(row['first_request_ms'], 0)} | {_fmt(row['pss_mib'])} "
            f"| {row['processes']} |"
        )
    packages = ", ".join(f"{k} {v}" for k, v in env["packages"].items())
    reconnects = sum(row["reconnects"] for row in summary.values())
    lines += [
        "",
        f"- command: `{env['command']}` at commit {env['git']}",
        f"- Python {env['python']} ({env['implementation']}), {env['platform']}",
        f"- cores: {env['cpu_count']} ({env['usable_cpus']} usable by this process); "
        f"load average 1/5/15 min at start {_loads(env['load_at_start'])}, "
        f"at end {_loads(env['load_at_end'])}",
        f"- packages: {packages}",
        f"- {args.requests} sequential keep-alive requests per run after the first "
        f"200; both answered prediction {label} to every request "
        f"(the seed model's own label); reconnects during warm phases: {reconnects}",
        "- RSS/PSS: summed over the functions-framework process and its children "
        "after the warm phase; RSS counts pages shared after fork twice, PSS does not",
    ]
    return "\n".join(lines)


# --- command line ---------------------------------------------------------------


def _positive(minimum: int) -> Callable[[str], int]:
    """An argparse type: an integer of at least `minimum`."""

    def parse(raw: str) -> int:
        value = int(raw)
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be >= {minimum}, got {value}")
        return value

    return parse


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Parse the command line."""
    parser = argparse.ArgumentParser(
        description="Cold start, warm latency and memory of our function vs the "
        "seed tutorial's handler, both under functions-framework."
    )
    parser.add_argument(
        "--runs",
        type=_positive(1),
        default=5,
        help="cold starts per target (default: 5)",
    )
    parser.add_argument(
        "--requests",
        type=_positive(2),
        default=500,
        help="warm requests per run (default: 500)",
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
        help="seconds the warm phase of one run may take (default: 120)",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Prepare both models, measure each target --runs times, print the report."""
    args = parse_args(argv)
    load_at_start = [round(load, 2) for load in os.getloadavg()]
    if not (Path(sys.executable).parent / "functions-framework").exists():
        print(
            f"error: no functions-framework next to {sys.executable}", file=sys.stderr
        )
        return 1
    results: list[RunResult] = []
    try:
        with tempfile.TemporaryDirectory(prefix="coldstart-") as tmp:
            workdir = Path(tmp)
            print("training the seed model and publishing ours...", file=sys.stderr)
            seed_pickle, label = prepare_seed(workdir / "seed")
            model_uri = publish_ours(workdir / "store")
            targets = [
                Target("OURS", ROOT / "function" / "main.py", {"MODEL_URI": model_uri}),
                Target(
                    "SEED",
                    ROOT / "bench" / "seed_main.py",
                    {"SEED_MODEL_PATH": str(seed_pickle)},
                ),
            ]
            for run in range(args.runs):
                # Alternate who goes first, so neither always meets a warmer machine.
                for target in targets if run % 2 == 0 else targets[::-1]:
                    result = run_once(target, run, args, workdir, label)
                    results.append(result)
                    print(
                        f"run {run + 1}/{args.runs} {target.name}: cold start "
                        f"{result.cold_start_ms:.0f} ms, p50 {result.p50_ms:.2f} ms",
                        file=sys.stderr,
                    )
    except BenchError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
    summary = summarise(results, list(dict.fromkeys(r.target for r in results)))
    env = {**environment(), "load_at_start": load_at_start}
    print(render(summary, env, args, label))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        raw = {
            "environment": env,
            "settings": {
                "runs": args.runs,
                "requests": args.requests,
                "ready_timeout": args.ready_timeout,
                "warm_timeout": args.warm_timeout,
                "payload": PAYLOAD,
                "expected_label": label,
            },
            "summary": summary,
            "runs": [asdict(r) for r in results],
        }
        args.json.write_text(json.dumps(raw, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
