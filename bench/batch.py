"""Batch scoring throughput: `python -m batch` against a plain csv + numpy loop."""

# `python -m batch` on the DirectRunner, with the ONNX twin and with scikit-learn,
# and a plain csv + numpy + model.predict loop, all on the same file. Every job
# runs as its own process, timed from start to exit (interpreter, imports, model
# verification and Beam's start included) and, to isolate the per-row cost, also
# on a one-row file: the marginal rate is (rows - 1) / (time(rows) - time(1 row)).
# The baseline reads the same CSV with the csv module, predicts with the same
# pickle in chunks and writes id,prediction: no validation, no dead-letter, no
# counters. Usage: `.venv/bin/python bench/batch.py [--rows 200000] [--runs 3]
# [--json PATH]`. The Markdown table goes to stdout, progress to stderr.

from __future__ import annotations

import argparse
import csv
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
FEATURES = 10
CHUNK = 100_000  # rows per model.predict call in the baseline


def baseline(data: str, model_dir: str, out: str) -> None:
    """The plain loop, run in a child process by main()."""
    import io

    import joblib
    import numpy as np

    version = Path(model_dir, "LATEST").read_text().strip()
    pickle = Path(model_dir, "versions", version, "model.pkl").read_bytes()
    model = joblib.load(io.BytesIO(pickle))
    with open(data, newline="") as source, open(out, "w", newline="") as sink:
        reader, writer = csv.reader(source), csv.writer(sink)
        next(reader)
        writer.writerow(["id", "prediction"])
        while True:
            rows = [row for _, row in zip(range(CHUNK), reader, strict=False)]
            if not rows:
                break
            matrix = np.array([row[1:] for row in rows], dtype=np.float64)
            labels = model.predict(matrix).tolist()
            writer.writerows(zip([row[0] for row in rows], labels, strict=True))


def write_rows(path: Path, rows: int) -> None:
    import numpy as np

    rng = np.random.default_rng(0)
    with path.open("w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(["id", *(f"x{j}" for j in range(FEATURES))])
        for start in range(0, rows, CHUNK):
            block = rng.normal(size=(min(CHUNK, rows - start), FEATURES)).round(6)
            writer.writerows(
                [f"r{start + i}", *row] for i, row in enumerate(block.tolist())
            )


def timed(command: list[str], env: dict[str, str]) -> tuple[float, float]:
    """(wall, CPU) seconds from start to exit; the command must succeed. CPU
    (user + system, the child's threads included) is what a shared machine's
    other load disturbs least."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    result = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if result.returncode != 0:
        sys.exit(f"{' '.join(command[:4])}... failed:\n{result.stderr[-2000:]}")
    cpu = after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime
    return elapsed, cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--json", help="also write the figures to this file")
    parser.add_argument("--baseline", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.baseline:
        baseline(*args.baseline)
        return
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        trained = subprocess.run(
            [sys.executable, "-m", "train", "--store", str(root), "--name", "bench"],
            cwd=REPO,
            capture_output=True,
            text=True,
        )
        if trained.returncode != 0 or "ONNX twin" not in trained.stdout:
            sys.exit(f"python -m train published no twin:\n{trained.stderr}")
        model = str(root / "bench")
        for name, rows in (("big", args.rows), ("one", 1)):
            write_rows(root / f"{name}.csv", rows)
        jobs = {
            "batch, onnx twin": ["--runtime", "onnx"],
            "batch, scikit-learn": ["--runtime", "sklearn"],
        }
        results: dict[str, dict[str, list[tuple[float, float]]]] = {}
        for label, extra in jobs.items():
            for name in ("one", "big"):
                for run in range(args.runs):
                    print(f"{label}: {name} run {run + 1}", file=sys.stderr)
                    command = [
                        sys.executable,
                        "-m",
                        "batch",
                        *("--model-uri", model, "--input", str(root / f"{name}.csv")),
                        *("--output", str(root / "out" / f"{name}{run}"), "--keep"),
                        *("id", "--progress-seconds", "0", *extra),
                        "--direct_num_workers=1",
                        "--direct_running_mode=in_memory",
                    ]
                    seconds = timed(command, env)
                    results.setdefault(label, {}).setdefault(name, []).append(seconds)
        for name in ("one", "big"):
            for run in range(args.runs):
                print(f"baseline: {name} run {run + 1}", file=sys.stderr)
                command = [sys.executable, __file__, "--baseline"]
                command += [str(root / f"{name}.csv"), model, str(root / "base.csv")]
                seconds = timed(command, env)
                label = "csv + numpy + model.predict"
                results.setdefault(label, {}).setdefault(name, []).append(seconds)
    report(results, args.rows)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))


def report(results: dict[str, dict[str, list[tuple[float, float]]]], rows: int) -> None:
    print(f"rows: {rows:,}; median of runs; load average {os.getloadavg()[0]:.1f}\n")
    print(
        "| job | wall s | 1-row job wall s | rows/s | marginal rows/s "
        "| CPU s | 1-row job CPU s | marginal rows per CPU s |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for label, times in results.items():
        big = [statistics.median(t[i] for t in times["big"]) for i in (0, 1)]
        one = [statistics.median(t[i] for t in times["one"]) for i in (0, 1)]
        marginal = [
            (rows - 1) / (b - o) if b > o else float("inf")
            for b, o in zip(big, one, strict=True)
        ]
        print(
            f"| {label} | {big[0]:.1f} | {one[0]:.1f} | {rows / big[0]:,.0f} | "
            f"{marginal[0]:,.0f} | {big[1]:.1f} | {one[1]:.1f} | {marginal[1]:,.0f} |"
        )


if __name__ == "__main__":
    main()
