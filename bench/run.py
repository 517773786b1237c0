"""One run of one server: start it cold, time its first 200, then measure it
warm, under load and on batches, read its memory, always stop it; for a twin,
then onnxruntime alone on the same rows."""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path
from typing import Any

from bench import alone
from bench.client import check_answer, check_batch, timed_posts, wait_ready
from bench.common import BenchError, Check, RunResult, Target, Workload
from bench.load import load_test
from bench.servers import (
    free_port,
    start_server,
    stop_server,
    tree_cpu_seconds,
    tree_libraries,
    tree_memory,
)


def percentile(values: list[float], q: int) -> float:
    """The q-th percentile, interpolated linearly (numpy's default method)."""
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1]


def model_load_ms(log: str) -> float | None:
    """The load time the function logged for the model it served (its first
    "load" event that succeeded), or None."""
    for line in log.splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if (
            isinstance(entry, dict)
            and entry.get("event") == "load"
            and entry.get("outcome", "ok") == "ok"
            and isinstance(entry.get("load_ms"), int | float)
        ):
            return float(entry["load_ms"])
    return None


def run_once(
    target: Target,
    run: int,
    args: argparse.Namespace,
    workdir: Path,
    workload: Workload,
) -> RunResult:
    """Start `target` cold, time its first 200, then measure it warm, under load
    and (ours and the parsing floor) on batches; always stop it. A twin is then
    measured alone on the batch's rows."""
    port = free_port()
    log_path = workdir / f"{target.name.lower()}-{run}.log"
    batch_body = json.dumps({"instances": workload.batch_rows}).encode()

    def single(expected: Any) -> Check:
        return lambda status, answer: check_answer(target, status, answer, expected)

    def whole(status: int, answer: bytes) -> None:
        check_batch(target, status, answer, workload.batch_labels)

    # The one-row requests with their checks; the first is the cold start's and
    # wrk's (the floors get the seed's requests and answer their constant).
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
            rss, pss, peak, processes = tree_memory(proc.pid)
            libraries = tree_libraries(proc.pid)
            cpu_before = tree_cpu_seconds(proc.pid)
            load = load_test(target, port, workdir / f"{target.workload}.json", args)
            load_cpu = tree_cpu_seconds(proc.pid) - cpu_before
            # wrk checks statuses only: make sure the answers are still right.
            timed_posts(target, port, len(singles), singles, args.warm_timeout)
            batch: list[float] = []
            if target.batches:
                # One untimed batch first: it pays one-off costs of a new shape.
                timed_posts(target, port, 1, batches, args.warm_timeout)
                batch, _ = timed_posts(
                    target, port, args.batch_requests, batches, args.warm_timeout
                )
            _, pss_after_load, peak, _ = tree_memory(proc.pid)
        except BenchError as error:
            log.flush()
            tail = log_path.read_text(errors="replace")[-2000:]
            raise BenchError(
                f"{error}\n--- {target.name} server log ---\n{tail}"
            ) from None
        finally:
            stop_server(proc)
    rows = len(workload.batch_rows)
    measured_alone = None
    if target.runtime == "onnx":
        measured_alone = alone.measure(
            target.env["MODEL_URI"],
            workload.batch_rows,
            workload.batch_labels,
            args.batch_requests,
        )
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
        peak_rss_mib=peak,
        processes=processes,
        libraries=libraries,
        load_requests=load.requests,
        load_seconds=load.seconds,
        load_rps=load.rps,
        load_p50_ms=load.p50_ms,
        load_p99_ms=load.p99_ms,
        load_cpu_ms_per_request=load_cpu * 1000 / load.requests,
        pss_after_load_mib=pss_after_load,
        model_load_ms=model_load_ms(log_path.read_text(errors="replace")),
        batch_latencies_ms=batch,
        batch_rows_per_s=rows * len(batch) / (sum(batch) / 1000) if batch else None,
        batch_p50_ms=statistics.median(batch) if batch else None,
        alone=measured_alone,
    )
