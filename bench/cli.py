"""The command line: parse the options, prepare every model, measure each server
--runs times in rotation, and print the report (raw figures to --json)."""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

from bench.common import BenchError, RunResult
from bench.environment import environment, git_state, loads
from bench.models import (
    DEFAULT_MODELS,
    MODELS,
    artifact_sizes,
    prepare_models,
    publish,
)
from bench.report import render
from bench.report.medians import summarise
from bench.report.targets import goals
from bench.run import run_once
from bench.servers import targets


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
        prog="bench/coldstart.py",
        description="Cold start, latency, throughput and memory of the tutorial's "
        "handler, this function on scikit-learn and on its ONNX twin for several "
        "models, and two floors, all under functions-framework.",
    )
    parser.add_argument(
        "--runs",
        type=_positive(1),
        default=3,
        help="cold starts per server (default: 3)",
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
        default=",".join(DEFAULT_MODELS),
        help="the models to serve beside the tutorial's, comma-separated: "
        f"{', '.join(MODELS)}, or none (default: all)",
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
        default=180.0,
        help="seconds one run's sequential or batch requests may take (default: 180)",
    )
    args = parser.parse_args(argv)
    given = args.models
    args.models = [] if given == "none" else given.split(",")
    unknown = [name for name in args.models if name not in MODELS]
    if unknown or len(set(args.models)) != len(args.models):
        parser.error(
            f"--models takes a comma-separated list of {', '.join(MODELS)} "
            f"(each once), or none; got {given!r}"
        )
    if args.wrk_threads > args.connections:
        parser.error("--wrk-threads must not exceed --connections")
    return args


def main(argv: list[str] | None = None) -> int:
    """Prepare every model, measure each server --runs times, print the report."""
    args = parse_args(argv)
    load_at_start = loads()
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
            sizes = {name: artifact_sizes(uri) for name, uri in uris.items()}
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
                    if result.alone is not None:
                        batch += f" (alone {result.alone.rows_per_s:,.0f})"
                    print(
                        f"run {run + 1}/{args.runs} {target.name}: cold start "
                        f"{result.cold_start_ms:.0f} ms, p50 {result.p50_ms:.2f} ms, "
                        f"{result.load_rps:.0f} req/s, PSS {result.pss_mib or 0:.0f}"
                        f" MiB{batch}",
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
    print(render(summary, env, args, workloads, sizes))
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
            "artifact_bytes": sizes,
            "summary": summary,
            "goals": [
                dict(zip(("target", "wanted", "measured", "verdict"), g, strict=True))
                for g in goals(summary)
            ],
            "runs": [asdict(r) for r in results],
        }
        args.json.write_text(json.dumps(raw, indent=2) + "\n")
    return 0
