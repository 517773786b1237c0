"""The servers: which are measured, how each is started and stopped, and what
its processes use (memory, CPU, libraries), read from /proc."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import BinaryIO

from bench.common import (
    BENCH,
    FUNCTION,
    HOST,
    POLL_SECONDS,
    ROOT,
    STOP_SECONDS,
    STRIPPED_ENV,
    BenchError,
    Target,
)
from bench.models import MODEL_TITLES, prefix

# Substrings of mapped file paths that prove a library was imported by a server.
LIBRARIES = {
    "numpy": "/numpy/",
    "pandas": "/pandas/",
    "sklearn": "/sklearn/",
    "onnxruntime": "/onnxruntime/",
}
FLOORS = ("NOOP", "PARSE")


def targets(uris: dict[str, str], pickles: dict[str, Path]) -> list[Target]:
    """Every server, in report order: the tutorial's, ours on its model, ours on
    each other model in `uris` (scikit-learn, then the twin), the two floors."""
    servers = [
        Target(
            "SEED",
            "tutorial's handler",
            "seed",
            BENCH / "seed_main.py",
            {"SEED_MODEL_PATH": str(pickles["seed"])},
        )
    ]
    for model in uris:
        title = "this function" if model == "seed" else MODEL_TITLES[model]
        for runtime, what in (("sklearn", "scikit-learn"), ("onnx", "ONNX twin")):
            servers.append(
                Target(
                    f"{prefix(model)}{runtime.upper()}",
                    f"{title}, {what}",
                    "ours",
                    FUNCTION,
                    {"MODEL_URI": uris[model], "MODEL_RUNTIME": runtime},
                    model,
                )
            )
    servers.append(Target("NOOP", "no-op floor", "noop", BENCH / "noop_main.py", {}))
    servers.append(
        Target("PARSE", "JSON-parsing floor", "parse", BENCH / "parse_main.py", {})
    )
    return servers


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


def tree_memory(pid: int) -> tuple[float, float | None, float | None, int]:
    """(RSS MiB, PSS MiB or None, peak RSS MiB or None, process count), each
    summed over `pid` and its children."""
    pids = [pid, *(child for child, _ in descendants(pid))]
    rss = [_read_kib(f"/proc/{p}/status", "VmRSS") for p in pids]
    pss = [_read_kib(f"/proc/{p}/smaps_rollup", "Pss") for p in pids]
    peak = [_read_kib(f"/proc/{p}/status", "VmHWM") for p in pids]
    alive = [kib for kib in rss if kib is not None]
    if not alive:
        raise BenchError(f"server process {pid} vanished before its memory was read")
    pss_mib = None if None in pss else sum(p or 0 for p in pss) / 1024
    peak_mib = None if None in peak else sum(p or 0 for p in peak) / 1024
    return sum(alive) / 1024, pss_mib, peak_mib, len(alive)


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
