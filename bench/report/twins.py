"""Each twin against its pickle, as the forest grows, and against onnxruntime alone."""

from __future__ import annotations

from typing import Any

from bench.models import MODEL_TITLES, trees
from bench.report.cells import fmt, mb, ratio, times


def _pairs(summary: dict[str, dict[str, Any]]) -> list[tuple[str, dict, dict]]:
    """(model, its ONNX row, its SKLEARN row) for each model served both ways."""
    found = []
    for name, row in summary.items():
        if row["runtime"] != "onnx":
            continue
        pickle_row = summary.get(name.replace("ONNX", "SKLEARN"))
        if pickle_row is not None:
            found.append((row["workload"], row, pickle_row))
    return found


def twin_vs_pickle(summary: dict[str, dict[str, Any]]) -> list[str]:
    lines = [
        "",
        "Twin vs pickle: each model's ONNX figure divided by its SKLEARN figure "
        "(the same published version, the same requests).",
        "",
        "| model | cold start | p50 | p99 | req/s | PSS | batch rows/s "
        "| server CPU per request |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    keys = ("cold_start_ms", "p50_ms", "p99_ms", "load_rps", "pss_mib")
    keys += ("rows_per_s", "load_cpu_ms_per_request")
    for model, row, pickle_row in _pairs(summary):
        cells = [times(ratio(row[key], pickle_row[key])) for key in keys]
        lines.append(f"| {MODEL_TITLES[model]} | " + " | ".join(cells) + " |")
    return lines


def forests(
    summary: dict[str, dict[str, Any]], sizes: dict[str, dict[str, int]]
) -> list[str]:
    pairs = [(m, o, s) for m, o, s in _pairs(summary) if trees(m) is not None]
    if not pairs:
        return []
    lines = [
        "",
        "Cost as the forest grows: the tutorial's RandomForest (same data, same "
        "seed) with more trees, on its twin and on its pickle.",
        "",
        "| trees | model.onnx / model.pkl (MB) | PSS twin / pickle (MiB) | ratio "
        "| peak RSS twin / pickle (MiB) | cold start twin / pickle (ms) | ratio "
        "| p50 twin / pickle (ms) |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for model, twin, pickle_row in sorted(pairs, key=lambda p: trees(p[0]) or 0):
        size = sizes.get(model, {})
        lines.append(
            f"| {trees(model):,} | {mb(size.get('model.onnx'))} / "
            f"{mb(size.get('model.pkl'))} | {fmt(twin['pss_mib'])} / "
            f"{fmt(pickle_row['pss_mib'])} "
            f"| {times(ratio(twin['pss_mib'], pickle_row['pss_mib']))} "
            f"| {fmt(twin['peak_rss_mib'])} / {fmt(pickle_row['peak_rss_mib'])} "
            f"| {fmt(twin['cold_start_ms'], 0)} / "
            f"{fmt(pickle_row['cold_start_ms'], 0)} "
            f"| {times(ratio(twin['cold_start_ms'], pickle_row['cold_start_ms']))} "
            f"| {fmt(twin['p50_ms'], 2)} / {fmt(pickle_row['p50_ms'], 2)} |"
        )
    return lines


def versus_alone(summary: dict[str, dict[str, Any]], rows: int) -> list[str]:
    twins = {name: row for name, row in summary.items() if row["runtime"] == "onnx"}
    if not twins:
        return []
    lines = [
        "",
        f"{rows:,}-row requests: the twin over HTTP against onnxruntime alone on "
        "the same float64 matrix (a session with the function's options, run "
        "in-process in a fresh process, labels only, as the requests ask).",
        "",
        "| server | over HTTP rows/s | request p50 (ms) | onnxruntime alone "
        "rows/s | session.run p50 (ms) | HTTP vs alone |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for name, row in twins.items():
        lines.append(
            f"| {name} | {fmt(row['batch_rows_per_s'], 0)} "
            f"| {fmt(row['batch_p50_ms'], 2)} | {fmt(row['alone_rows_per_s'], 0)} "
            f"| {fmt(row['alone_run_p50_ms'], 2)} "
            f"| {times(ratio(row['batch_rows_per_s'], row['alone_rows_per_s']))} |"
        )
    lines += [
        "",
        "Loading each twin, piece by piece: the cold start as the bench saw it, "
        "then the function's own load time (its log), then the same steps "
        "timed one by one in a fresh process.",
        "",
        "| server | cold start (ms) | port open (ms) | first 200 request (ms) "
        "| function's load (ms) | imports (ms) | read + SHA-256 (ms) "
        "| outside-data check (ms) | session (ms) | session PSS (MiB) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, row in twins.items():
        lines.append(
            f"| {name} | {fmt(row['cold_start_ms'], 0)} "
            f"| {fmt(row['port_open_ms'], 0)} | {fmt(row['first_request_ms'], 0)} "
            f"| {fmt(row['model_load_ms'], 0)} | {fmt(row['alone_import_ms'], 0)} "
            f"| {fmt(row['alone_read_ms'], 0)} | {fmt(row['alone_walk_ms'], 0)} "
            f"| {fmt(row['alone_session_ms'], 0)} "
            f"| {fmt(row['alone_session_pss_mib'])} |"
        )
    return lines
