"""Medians over runs, one row per server: a figure some run lacks is None."""

from __future__ import annotations

import statistics
from typing import Any

from bench.common import RunResult, Target

SUMMARY_FIELDS = (
    "cold_start_ms",
    "port_open_ms",
    "first_request_ms",
    "model_load_ms",
    "p50_ms",
    "p90_ms",
    "p99_ms",
    "rss_mib",
    "pss_mib",
    "peak_rss_mib",
    "load_rps",
    "load_p50_ms",
    "load_p99_ms",
    "load_cpu_ms_per_request",
    "pss_after_load_mib",
    "batch_rows_per_s",
    "batch_p50_ms",
)
ALONE_FIELDS = (
    "import_ms",
    "read_ms",
    "walk_ms",
    "session_ms",
    "session_pss_mib",
    "rows_per_s",
)


def _median(values: list[float | None]) -> float | None:
    """The median, or None when a run lacks the figure."""
    present = [value for value in values if value is not None]
    if not present or len(present) != len(values):
        return None
    return statistics.median(present)


def summarise(
    results: list[RunResult], servers: list[Target]
) -> dict[str, dict[str, Any]]:
    """Per server: the median over runs of each figure, plus cold-start min/max.

    The tutorial's handler takes one row per request, so its rows/s is its
    requests/s under load (`rows_per_s`, the basis of the batch ratio). A twin's
    `alone_*` figures are onnxruntime's alone on the same rows.
    """
    summary: dict[str, dict[str, Any]] = {}
    for target in servers:
        runs = [r for r in results if r.target == target.name]
        if not runs:
            continue
        row: dict[str, Any] = {
            "title": target.title,
            "kind": target.kind,
            "workload": target.workload,
            "runtime": target.runtime,
        }
        row["runs"] = len(runs)
        for key in SUMMARY_FIELDS:
            row[key] = _median([getattr(r, key) for r in runs])
        for key in ALONE_FIELDS:
            alone = [getattr(r.alone, key) if r.alone else None for r in runs]
            row[f"alone_{key}"] = _median(alone)
        alone_runs = [t for r in runs if r.alone for t in r.alone.run_ms]
        row["alone_run_p50_ms"] = statistics.median(alone_runs) if alone_runs else None
        row["cold_start_min_ms"] = min(r.cold_start_ms for r in runs)
        row["cold_start_max_ms"] = max(r.cold_start_ms for r in runs)
        row["processes"] = max(r.processes for r in runs)
        row["reconnects"] = sum(r.reconnects for r in runs)
        row["libraries"] = sorted({lib for r in runs for lib in r.libraries})
        row["rows_per_s"] = {
            "ours": row["batch_rows_per_s"],
            "parse": row["batch_rows_per_s"],
            "seed": row["load_rps"],
        }.get(target.kind)
        summary[target.name] = row
    return summary
