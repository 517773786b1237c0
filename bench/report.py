"""The report: medians over runs per server, the product's targets, and the
Markdown tables that set each figure beside what it is compared with."""

from __future__ import annotations

import argparse
import json
import statistics
from typing import Any

from bench.common import HOST, ROOT, RunResult, Target, Workload
from bench.models import CUSTOMERS, MODEL_TITLES, TYPED_MODELS, prefix, trees
from bench.servers import FLOORS, LIBRARIES

# The basis of a target measured against the same server's onnxruntime alone.
ALONE = "onnxruntime alone"
# Targets the product wants (reported, never asserted): (label, server, figure,
# basis, "<=" or ">=", bound). The basis is the server the figure is divided
# by, ALONE, or None for an absolute figure. A target whose servers were not
# measured is left out.
GOALS = (
    ("ONNX p50 vs SEED", "ONNX", "p50_ms", "SEED", "<=", 0.1),
    ("ONNX req/s vs SEED", "ONNX", "load_rps", "SEED", ">=", 12.0),
    ("ONNX cold start vs SEED", "ONNX", "cold_start_ms", "SEED", "<=", 0.35),
    ("ONNX PSS vs SEED", "ONNX", "pss_mib", "SEED", "<=", 0.5),
    ("ONNX p50 vs NOOP", "ONNX", "p50_ms", "NOOP", "<=", 1.3),
    ("ONNX batch rows/s", "ONNX", "batch_rows_per_s", None, ">=", 200_000.0),
    # Issue 23: the request path at the framework's floor...
    ("ONNX p50 vs PARSE", "ONNX", "p50_ms", "PARSE", "<=", 1.1),
    ("ONNX req/s vs PARSE", "ONNX", "load_rps", "PARSE", ">=", 0.7),
    ("ONNX cold start vs PARSE", "ONNX", "cold_start_ms", "PARSE", "<=", 2.0),
    (
        "ONNX 1,000-row rows/s vs onnxruntime alone",
        "ONNX",
        "batch_rows_per_s",
        ALONE,
        ">=",
        0.8,
    ),
    # ... and the twin's memory and cold start as the forest grows.
    *(
        (f"{twin} {label} vs {pickle}", twin, figure, pickle, "<=", bound)
        for twin, pickle in (
            ("ONNX", "SKLEARN"),
            ("RF400_ONNX", "RF400_SKLEARN"),
            ("RF1000_ONNX", "RF1000_SKLEARN"),
        )
        for label, figure, bound in (
            ("PSS", "pss_mib", 1.0),
            ("cold start", "cold_start_ms", 0.5),
        )
    ),
)
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


def _loads(loads: list[float]) -> str:
    """A load-average triple as `a/b/c`."""
    return "/".join(f"{load:.2f}" for load in loads)


def _fmt(value: float | None, digits: int = 1) -> str:
    """`value` with `digits` decimals and thousands separators, or n/a."""
    return "n/a" if value is None else f"{value:,.{digits}f}"


def _ratio(value: float | None, basis: float | None) -> float | None:
    """value / basis, or None when either is missing or the basis is 0."""
    if value is None or not basis:
        return None
    return value / basis


def _times(ratio: float | None) -> str:
    """A ratio as `12.3x` / `0.07x` / `0.0043x` (two significant digits below
    0.1, so no ratio reads as zero), or n/a."""
    if ratio is None:
        return "n/a"
    if ratio >= 10:
        return f"{ratio:.1f}x"
    return f"{ratio:.2f}x" if ratio >= 0.1 else f"{ratio:.2g}x"


def _mb(size: int | None) -> str:
    return "n/a" if size is None else f"{size / 1e6:,.2f}"


def _requests(workload: Workload, servers: str) -> str:
    """Which servers get which one-row requests, and the label each must get."""
    shown = " and ".join(
        f"`{json.dumps(payload)}` (label {json.dumps(label)})"
        for payload, label in zip(workload.payloads, workload.labels, strict=True)
    )
    return f"{servers} get {shown}"


def goals(summary: dict[str, dict[str, Any]]) -> list[tuple[str, str, str, str]]:
    """(target, wanted, measured, met / missed / n/a) for each of GOALS whose
    servers were measured."""
    rows = []
    for title, subject, key, basis, sense, bound in GOALS:
        if subject not in summary or (
            basis not in (None, ALONE) and basis not in summary
        ):
            continue
        value = summary[subject].get(key)
        if basis is None:
            measured = value
            wanted, shown = f"{sense} {bound:,.0f}", _fmt(value, 0)
        else:
            reference = (
                summary[subject].get("alone_rows_per_s")
                if basis == ALONE
                else summary[basis].get(key)
            )
            measured = _ratio(value, reference)
            wanted, shown = f"{sense} {_times(bound)}", _times(measured)
        if measured is None:
            verdict = "n/a"
        elif measured <= bound if sense == "<=" else measured >= bound:
            verdict = "met"
        else:
            verdict = "missed"
        rows.append((title, wanted, shown, verdict))
    return rows


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


def _headline(
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
            batch = f"{_fmt(row['rows_per_s'], 0)} (1 row/request)"
        else:
            batch = _fmt(row["rows_per_s"], 0)
        lines.append(
            f"| {name}: {row['title']} | {_fmt(row['cold_start_ms'], 0)} "
            f"| {_fmt(row['p50_ms'], 2)} | {_fmt(row['p99_ms'], 2)} "
            f"| {_fmt(row['load_rps'], 0)} | {_fmt(row['pss_mib'])} | {batch} |"
        )
    return lines


def _versus_seed(summary: dict[str, dict[str, Any]]) -> list[str]:
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
            _times(_ratio(row[key], seed.get(key)))
            for key in ("cold_start_ms", "p50_ms", "p99_ms", "load_rps", "pss_mib")
        ]
        cells.append(_times(_ratio(row["rows_per_s"], seed.get("rows_per_s"))))
        cells.append(_times(_ratio(row["p50_ms"], floor.get("p50_ms"))))
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return lines


def _versus_floors(summary: dict[str, dict[str, Any]]) -> list[str]:
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
            _times(_ratio(row[key], summary[floor].get(key)))
            for key in keys
            for floor in present
        ]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return lines


def _twin_vs_pickle(summary: dict[str, dict[str, Any]]) -> list[str]:
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
        cells = [_times(_ratio(row[key], pickle_row[key])) for key in keys]
        lines.append(f"| {MODEL_TITLES[model]} | " + " | ".join(cells) + " |")
    return lines


def _forests(
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
            f"| {trees(model):,} | {_mb(size.get('model.onnx'))} / "
            f"{_mb(size.get('model.pkl'))} | {_fmt(twin['pss_mib'])} / "
            f"{_fmt(pickle_row['pss_mib'])} "
            f"| {_times(_ratio(twin['pss_mib'], pickle_row['pss_mib']))} "
            f"| {_fmt(twin['peak_rss_mib'])} / {_fmt(pickle_row['peak_rss_mib'])} "
            f"| {_fmt(twin['cold_start_ms'], 0)} / "
            f"{_fmt(pickle_row['cold_start_ms'], 0)} "
            f"| {_times(_ratio(twin['cold_start_ms'], pickle_row['cold_start_ms']))} "
            f"| {_fmt(twin['p50_ms'], 2)} / {_fmt(pickle_row['p50_ms'], 2)} |"
        )
    return lines


def _alone(summary: dict[str, dict[str, Any]], rows: int) -> list[str]:
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
            f"| {name} | {_fmt(row['batch_rows_per_s'], 0)} "
            f"| {_fmt(row['batch_p50_ms'], 2)} | {_fmt(row['alone_rows_per_s'], 0)} "
            f"| {_fmt(row['alone_run_p50_ms'], 2)} "
            f"| {_times(_ratio(row['batch_rows_per_s'], row['alone_rows_per_s']))} |"
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
            f"| {name} | {_fmt(row['cold_start_ms'], 0)} "
            f"| {_fmt(row['port_open_ms'], 0)} | {_fmt(row['first_request_ms'], 0)} "
            f"| {_fmt(row['model_load_ms'], 0)} | {_fmt(row['alone_import_ms'], 0)} "
            f"| {_fmt(row['alone_read_ms'], 0)} | {_fmt(row['alone_walk_ms'], 0)} "
            f"| {_fmt(row['alone_session_ms'], 0)} "
            f"| {_fmt(row['alone_session_pss_mib'])} |"
        )
    return lines


def _details(summary: dict[str, dict[str, Any]]) -> list[str]:
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
            f"| {name} | {_fmt(row['cold_start_min_ms'], 0)}-"
            f"{_fmt(row['cold_start_max_ms'], 0)} | {_fmt(row['port_open_ms'], 0)} "
            f"| {_fmt(row['first_request_ms'], 0)} | {_fmt(row['p90_ms'], 2)} "
            f"| {_fmt(row['load_p50_ms'])} / {_fmt(row['load_p99_ms'])} "
            f"| {_fmt(row['load_cpu_ms_per_request'], 3)} "
            f"| {_fmt(row['batch_p50_ms'], 2)} | {_fmt(row['rss_mib'])} "
            f"| {_fmt(row['peak_rss_mib'])} "
            f"| {_fmt(row['pss_after_load_mib'])} | {row['processes']} "
            f"| {', '.join(row['libraries']) or 'none of ' + '/'.join(LIBRARIES)} |"
        )
    return lines


def _facts(
    summary: dict[str, dict[str, Any]],
    env: dict[str, Any],
    args: argparse.Namespace,
    workloads: dict[str, Workload],
) -> list[str]:
    rows = len(workloads["seed"].batch_rows)
    packages = ", ".join(f"{k} {v}" for k, v in env["packages"].items())
    reconnects = sum(row["reconnects"] for row in summary.values())
    numeric = ["SEED", "SKLEARN", "ONNX", "NOOP", "PARSE"]
    forests = [name for name in workloads if name != "seed" and trees(name)]
    numeric[3:3] = [f"{prefix(m)}{r}" for m in forests for r in ("SKLEARN", "ONNX")]
    lines = [
        "",
        f"- command: `{env['command']}` at commit {env['git']}"
        + (
            f" (at the end: {env['git_at_end']})"
            if env["git_at_end"] != env["git"]
            else ""
        ),
        f"- Python {env['python']} ({env['implementation']}), {env['platform']}",
        f"- cores: {env['cpu_count']} ({env['usable_cpus']} usable by this process); "
        f"load average 1/5/15 min at start {_loads(env['load_at_start'])}, "
        f"at end {_loads(env['load_at_end'])}",
        f"- packages: {packages}; load generator: {env['wrk']}",
        "- every server: functions-framework (gunicorn, 1 worker, "
        f"{env['threads']} threads: its default of 4 per core) on {HOST}, "
        "started cold for each run",
        f"- requests: {_requests(workloads['seed'], ', '.join(numeric))}"
        + "".join(
            f"; {prefix(m)}* expect {json.dumps(workloads[m].labels[0])} "
            f"({MODEL_TITLES[m]})"
            for m in forests
        ),
    ]
    lines += [
        f"- requests: {_requests(workloads[name], f'{tag}_SKLEARN, {tag}_ONNX')};"
        f" the model: {TYPED_MODELS[name][2]}, fitted on "
        f"{CUSTOMERS.relative_to(ROOT)} and published with `python -m train "
        "publish FILE.pkl --holdout customers.csv` (schema and ONNX twin)"
        for name, (tag, _, _) in TYPED_MODELS.items()
        if name in workloads
    ]
    if forests:
        lines.append(
            "- forests: `RandomForestClassifier(n_estimators=N, random_state=42)` "
            "on the tutorial's `make_classification` data, published with `python "
            "-m train publish FILE.pkl` (gate rows from the model's own scales and "
            "splits)"
        )
    lines += [
        f"- p50/p90/p99: {args.requests} sequential keep-alive requests per run "
        "after the first 200, taking the server's one-row requests in turn; every "
        "answer checked against the model's own label (NOOP, PARSE: their "
        f"constant); reconnects: {reconnects}",
        f"- req/s: `wrk -t{args.wrk_threads} -c{args.connections} "
        f"-d{args.duration}s -s bench/post.lua` POSTing the server's first "
        "one-row request, on the same cores as the server; every run had 0 "
        "non-2xx answers, socket errors and timeouts",
        f"- batch: {args.batch_requests} timed requests of {rows:,} rows per run "
        "(after one untimed), sequential on one keep-alive connection; every "
        "label checked against the model's own; the typed rows are objects keyed "
        "by column with about 10% null incomes, 10% null plans and 3% unseen plans; "
        "SEED takes one row per request, so its rows/s is its req/s; PARSE parses "
        "the tutorial's batch and answers its constant; onnxruntime alone: "
        f"{args.batch_requests} timed `session.run` of the same rows after one "
        "untimed, in a fresh process after the server stopped",
        "- RSS/PSS: summed over the functions-framework process and its children, "
        "after the sequential requests (PSS after load: at the end of the run); "
        "RSS counts pages shared after fork twice, PSS does not; peak RSS: VmHWM "
        "summed likewise at the end of the run",
    ]
    return lines


def render(
    summary: dict[str, dict[str, Any]],
    env: dict[str, Any],
    args: argparse.Namespace,
    workloads: dict[str, Workload],
    sizes: dict[str, dict[str, int]] | None = None,
) -> str:
    """The Markdown report: headline, ratios, floors, twin vs pickle, forests,
    onnxruntime alone, targets, breakdown, run facts."""
    rows = len(workloads["seed"].batch_rows)
    lines = _headline(summary, args, rows)
    lines += _versus_seed(summary)
    lines += _versus_floors(summary)
    lines += _twin_vs_pickle(summary)
    lines += _forests(summary, sizes or {})
    lines += _alone(summary, rows)
    lines += [
        "",
        "Targets the product wants (reported, not asserted):",
        "",
        "| target | wanted | measured | |",
        "|---|---:|---:|---|",
    ]
    lines += [f"| {t} | {w} | {m} | {v} |" for t, w, m, v in goals(summary)]
    lines += _details(summary)
    lines += _facts(summary, env, args, workloads)
    return "\n".join(lines)
