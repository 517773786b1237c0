"""Every server's figures side by side, divided by SEED's and the floors', in detail."""

from __future__ import annotations

import argparse
from typing import Any

from bench.report.cells import fmt, ratio, times
from bench.servers import FLOORS, LIBRARIES


def headline(
    summary: dict[str, dict[str, Any]], args: argparse.Namespace, rows: int
) -> list[str]:
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
            batch = f"{fmt(row['rows_per_s'], 0)} (1 row/request)"
        else:
            batch = fmt(row["rows_per_s"], 0)
        lines.append(
            f"| {name}: {row['title']} | {fmt(row['cold_start_ms'], 0)} "
            f"| {fmt(row['p50_ms'], 2)} | {fmt(row['p99_ms'], 2)} "
            f"| {fmt(row['load_rps'], 0)} | {fmt(row['pss_mib'])} | {batch} |"
        )
    return lines


def versus_seed(summary: dict[str, dict[str, Any]]) -> list[str]:
    seed = summary.get("SEED", {})
    floor = summary.get("NOOP", {})
    lines = [
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
            times(ratio(row[key], seed.get(key)))
            for key in ("cold_start_ms", "p50_ms", "p99_ms", "load_rps", "pss_mib")
        ]
        cells.append(times(ratio(row["rows_per_s"], seed.get("rows_per_s"))))
        cells.append(times(ratio(row["p50_ms"], floor.get("p50_ms"))))
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return lines


def versus_floors(summary: dict[str, dict[str, Any]]) -> list[str]:
    keys = ("cold_start_ms", "p50_ms", "load_rps", "pss_mib")
    present = [floor for floor in FLOORS if floor in summary]
    if not present:
        return []
    header = " | ".join(
        f"{figure} vs {floor}"
        for figure in ("cold start", "p50", "req/s", "PSS")
        for floor in present
    )
    lines = [
        "",
        "Against the floors: each of this function's figures divided by NOOP's (a "
        "handler that never reads the body) and PARSE's (one that parses the "
        "JSON body with Flask's `request.get_json()` and answers a constant), "
        "same framework, same settings, same requests.",
        "",
        f"| server | {header} |",
        "|---|" + "---:|" * (len(keys) * len(present)),
    ]
    for name, row in summary.items():
        if row["kind"] != "ours":
            continue
        cells = [
            times(ratio(row[key], summary[floor].get(key)))
            for key in keys
            for floor in present
        ]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return lines


def details(summary: dict[str, dict[str, Any]]) -> list[str]:
    lines = [
        "",
        "| server | cold start min-max (ms) | port open (ms) | first 200 request (ms) "
        "| p90 (ms) | under load p50 / p99 (ms) | server CPU per request (ms) "
        "| batch request p50 (ms) | RSS (MiB) | peak RSS (MiB) "
        "| PSS after load (MiB) | processes | libraries mapped |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for name, row in summary.items():
        lines.append(
            f"| {name} | {fmt(row['cold_start_min_ms'], 0)}-"
            f"{fmt(row['cold_start_max_ms'], 0)} | {fmt(row['port_open_ms'], 0)} "
            f"| {fmt(row['first_request_ms'], 0)} | {fmt(row['p90_ms'], 2)} "
            f"| {fmt(row['load_p50_ms'])} / {fmt(row['load_p99_ms'])} "
            f"| {fmt(row['load_cpu_ms_per_request'], 3)} "
            f"| {fmt(row['batch_p50_ms'], 2)} | {fmt(row['rss_mib'])} "
            f"| {fmt(row['peak_rss_mib'])} "
            f"| {fmt(row['pss_after_load_mib'])} | {row['processes']} "
            f"| {', '.join(row['libraries']) or 'none of ' + '/'.join(LIBRARIES)} |"
        )
    return lines
