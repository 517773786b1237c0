"""Running `python -m batch` as a user would, and reading what it wrote."""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from tests.support import REPO

# Fastest here: one in-process worker (measured: multi_threading and
# multi_processing only add coordination on a 2-core machine).
DIRECT = ["--direct_num_workers=1", "--direct_running_mode=in_memory"]


def run_batch(
    *args: str, env: Mapping[str, str] | None = None
) -> subprocess.CompletedProcess:
    """Run `python -m batch ARGS` from the repo root, as a user would."""
    return subprocess.run(
        [sys.executable, "-m", "batch", *args, *DIRECT, "--progress-seconds", "0.05"],
        cwd=REPO,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=300,
    )


# Runs ARGV as a child and prints the child's peak resident set size: this
# process has no other child, so RUSAGE_CHILDREN is that of the job alone.
_MEASURED = (
    "import resource, subprocess, sys\n"
    "code = subprocess.call(sys.argv[1:])\n"
    "peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss\n"
    "print(f'peak-rss-kib: {peak}', file=sys.stderr)\n"
    "sys.exit(code)\n"
)


def run_batch_measured(*args: str) -> tuple[subprocess.CompletedProcess, int]:
    """`run_batch`, and the job's peak resident set size in KiB."""
    job = [sys.executable, "-m", "batch", *args, *DIRECT, "--progress-seconds", "0"]
    result = subprocess.run(
        [sys.executable, "-c", _MEASURED, *job],
        cwd=REPO,
        env=dict(os.environ),
        capture_output=True,
        text=True,
        timeout=300,
    )
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("peak-rss-kib: "), result.stderr
    return result, int(last.split()[-1])


def counts(result: subprocess.CompletedProcess) -> tuple[int, int, int]:
    """(read, scored, rejected) from the job's summary line."""
    line = next(line for line in result.stdout.splitlines() if line.startswith("read "))
    read, scored, rejected = (int(part.split()[-1]) for part in line.split(","))
    return read, scored, rejected


def shards(folder: Path, prefix: str) -> list[Path]:
    return sorted(folder.glob(f"{prefix}-[0-9]*-of-*"))


def csv_rows(texts: list[str]) -> list[dict[str, str]]:
    """Rows of sharded CSV output (each shard repeats the header)."""
    rows: list[dict[str, str]] = []
    for text in texts:
        rows.extend(csv.DictReader(io.StringIO(text)))
    return rows


def jsonl_rows(texts: list[str]) -> list[dict[str, Any]]:
    return [json.loads(line) for text in texts for line in text.splitlines()]
