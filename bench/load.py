"""Load at a fixed number of connections: wrk driven by bench/post.lua, whose one
summary line must show no error of any kind."""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from bench.common import BENCH, HOST, REQUEST_TIMEOUT_SECONDS, BenchError, Target

WRK_SCRIPT = BENCH / "post.lua"
WRK_MARKER = "WRK_JSON "


@dataclass(frozen=True)
class LoadResult:
    """What wrk measured at a fixed number of connections."""

    requests: int
    seconds: float
    rps: float
    p50_ms: float
    p99_ms: float


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
    """wrk for --duration seconds at --connections, POSTing `body_file`."""
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
