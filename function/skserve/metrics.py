"""Serving metrics come from the log lines: the fields each line carries, the
CloudWatch Embedded Metric Format (EMF) members it gains on AWS Lambda, and
`python -m skserve.metrics LOGFILE`, which prints the dashboards' figures from a
file of those lines.

Two kinds of line carry metrics (docs/operating.md documents every field):

- a request line (`"event": "request"`), one per HTTP request: `httpRequest`
  (Cloud Logging's: status, latency...), `protocol`, `code` ("ok" or the error
  code), `latency_ms`, `model_ms` (only when the model was asked), `model`,
  `model_version`, `runtime`, `rows`, `cold_start`, `request_id`;
- a load line (`"event": "load"`), one per attempt to bring a version in:
  `outcome` ("ok" or "failed"), `model_version`, `runtime`, `load_ms`,
  `bytes_read` (when it loaded), `code` (when it failed).

Google's log-based metrics (infra/monitoring.tf) read these fields as they are;
on Lambda the same line embeds an EMF document, so CloudWatch extracts the
metrics below without an API call or a library. Dimensions stay low-cardinality
(CloudWatch bills every name and dimension-value combination as a metric):
the function's name, and the error code (a fixed set of slugs); never request
ids or model versions, which Logs Insights reads from the lines instead.
"""

from __future__ import annotations

import json
import math
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

# The `event` field of the two kinds of line.
REQUEST = "request"
LOAD = "load"
OK = "ok"  # a request's `code` when it succeeded; a load's `outcome`
FAILED = "failed"

# CloudWatch: the namespace of every embedded metric, and the dimension naming
# the function (AWS_LAMBDA_FUNCTION_NAME: one series per deployed stage).
NAMESPACE = "sklearn-serverless"
FUNCTION = "function"
CODE = "code"


@dataclass(frozen=True)
class EmbeddedMetric:
    """One CloudWatch metric a line embeds: its member (the log field of the same
    name), unit, the dimension sets it is published with, and when it is there."""

    name: str
    unit: str
    line: str  # REQUEST or LOAD
    dimensions: tuple[tuple[str, ...], ...]
    when: str
    meaning: str


BY_FUNCTION = ((FUNCTION,),)
EMF_METRICS: tuple[EmbeddedMetric, ...] = (
    EmbeddedMetric(
        "latency_ms", "Milliseconds", REQUEST, BY_FUNCTION, "model asked",
        "time from the request's arrival to its answer (the log line is written "
        "after), for requests the model was asked",
    ),
    EmbeddedMetric(
        "model_ms", "Milliseconds", REQUEST, BY_FUNCTION, "model asked",
        "time inside the runtime's predict: the model alone",
    ),
    EmbeddedMetric(
        "requests", "Count", REQUEST, (*BY_FUNCTION, (FUNCTION, CODE)), "always",
        "1 per request; by code: per error code (`ok` when it succeeded)",
    ),
    EmbeddedMetric(
        "server_errors", "Count", REQUEST, BY_FUNCTION, "always",
        "1 for a 5xx answer, else 0: the Sum counts them, the Average is the "
        "server error ratio",
    ),
    EmbeddedMetric(
        "cold_starts", "Count", REQUEST, BY_FUNCTION, "always",
        "1 for an execution environment's first request, else 0",
    ),
    EmbeddedMetric(
        "loads", "Count", LOAD, BY_FUNCTION, "always",
        "1 per attempt to load a version (first load or refresh)",
    ),
    EmbeddedMetric(
        "load_failures", "Count", LOAD, BY_FUNCTION, "always",
        "1 when the load failed, else 0",
    ),
    EmbeddedMetric(
        "load_ms", "Milliseconds", LOAD, BY_FUNCTION, "always",
        "time the load took (LATEST, manifest, artifact, building the runtime)",
    ),
)  # fmt: skip


def _directives(line: str, whens: frozenset[str]) -> list[dict[str, Any]]:
    """The MetricDirectives of a line that has the metrics of `whens`: one per
    distinct dimension set, so each metric is published only with its own."""
    grouped: dict[tuple[tuple[str, ...], ...], list[EmbeddedMetric]] = {}
    for metric in EMF_METRICS:
        if metric.line == line and metric.when in whens:
            grouped.setdefault(metric.dimensions, []).append(metric)
    return [
        {
            "Namespace": NAMESPACE,
            "Dimensions": [list(dimension_set) for dimension_set in dimensions],
            "Metrics": [{"Name": m.name, "Unit": m.unit} for m in metrics],
        }
        for dimensions, metrics in grouped.items()
    ]


# Serialised once: a line only picks the variant it needs and splices it in
# (on Lambda the request path stays a few dictionary assignments and one string
# longer; elsewhere it is unchanged).
def _serialised(directives: list[dict[str, Any]]) -> str:
    return json.dumps(directives, separators=(",", ":"))


_REQUEST_DIRECTIVES = {
    True: _serialised(_directives(REQUEST, frozenset({"always", "model asked"}))),
    False: _serialised(_directives(REQUEST, frozenset({"always"}))),
}
_LOAD_DIRECTIVES = _serialised(_directives(LOAD, frozenset({"always"})))


def _metadata(directives: str) -> str:
    """The `_aws` member, as JSON text to end the line's object with."""
    stamp = int(time.time() * 1000)
    return f'"_aws":{{"Timestamp":{stamp},"CloudWatchMetrics":{directives}}}'


def embed_request(
    entry: dict[str, Any], function: str, *, status: int, cold: bool
) -> str:
    """Add a request line's EMF members to `entry` (which already holds `code`,
    `latency_ms` and, when the model was asked, `model_ms`) and return its
    `_aws` member, for the line's writer to append."""
    entry[FUNCTION] = function
    entry["requests"] = 1
    entry["server_errors"] = 1 if status >= 500 else 0
    entry["cold_starts"] = 1 if cold else 0
    return _metadata(_REQUEST_DIRECTIVES["model_ms" in entry])


def embed_load(entry: dict[str, Any], function: str, *, ok: bool) -> str:
    """Add a load line's EMF members to `entry` (which already holds
    `load_ms`) and return its `_aws` member."""
    entry[FUNCTION] = function
    entry["loads"] = 1
    entry["load_failures"] = 0 if ok else 1
    return _metadata(_LOAD_DIRECTIVES)


# --- The local command: the dashboards' figures from a file of log lines ---------

PERCENTILES = (50, 95, 99)


def read_entries(lines: Iterable[str]) -> tuple[list[dict[str, Any]], int]:
    """The JSON objects among `lines`, and how many lines were something else
    (functions-framework's and gunicorn's own lines, blank lines)."""
    entries, skipped = [], 0
    for line in lines:
        try:
            entry = json.loads(line)
        except ValueError:
            entry = None
        if isinstance(entry, dict):
            entries.append(entry)
        else:
            skipped += 1
    return entries, skipped


def percentile(values: Sequence[float], p: float) -> float:
    """The nearest-rank percentile: the smallest value with at least p% of the
    values at or below it (for few values, p99 is the largest)."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]


def _summary(values: Sequence[float]) -> dict[str, float]:
    found = {f"p{p}": percentile(values, p) for p in PERCENTILES}
    return {**found, "max": max(values)}


def _number(value: Any) -> float | None:
    """A JSON number (not a boolean), else None."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    return None


def figures(entries: Iterable[dict[str, Any]], skipped: int = 0) -> dict[str, Any]:
    """What the dashboards show, from the function's log entries: prediction
    latency percentiles by model version (total and model-only), requests and
    errors by status and code, model loads, cold starts."""
    entries = list(entries)
    requests = [e for e in entries if e.get("event") == REQUEST]
    loads = [e for e in entries if e.get("event") == LOAD]
    by_version: dict[str, tuple[list[float], list[float]]] = defaultdict(
        lambda: ([], [])
    )
    codes: Counter[tuple[int, str]] = Counter()
    for entry in requests:
        status = (entry.get("httpRequest") or {}).get("status", 0)
        codes[int(status), str(entry.get("code"))] += 1
        model_ms, latency_ms = (
            _number(entry.get(k)) for k in ("model_ms", "latency_ms")
        )
        if model_ms is not None and latency_ms is not None:
            total, model = by_version[str(entry.get("model_version"))]
            total.append(latency_ms)
            model.append(model_ms)
    load_groups: dict[tuple[str, str, str], list[dict[str, Any]]] = defaultdict(list)
    for entry in loads:
        key = tuple(
            "-" if entry.get(k) is None else str(entry[k])
            for k in ("model_version", "runtime", "outcome")
        )
        load_groups[key].append(entry)  # type: ignore[index]
    server_errors = sum(n for (status, _), n in codes.items() if status >= 500)
    cold = sum(1 for entry in requests if entry.get("cold_start") is True)
    return {
        "lines": {
            "requests": len(requests),
            "loads": len(loads),
            "skipped": skipped,
        },
        "latency_by_version": [
            {
                "model_version": version,
                "predictions": len(total),
                "latency_ms": _summary(total),
                "model_ms": _summary(model),
            }
            for version, (total, model) in sorted(by_version.items())
        ],
        "requests_by_code": [
            {"status": status, "code": code, "requests": n}
            for (status, code), n in sorted(codes.items())
        ],
        "server_errors": server_errors,
        "server_error_ratio": server_errors / len(requests) if requests else None,
        "loads": [
            {
                "model_version": version,
                "runtime": runtime,
                "outcome": outcome,
                "loads": len(group),
                "load_ms": _summary([_number(e.get("load_ms")) or 0.0 for e in group]),
                "bytes_read": max(
                    (int(e.get("bytes_read") or 0) for e in group), default=0
                ),
            }
            for (version, runtime, outcome), group in sorted(load_groups.items())
        ],
        "cold_starts": cold,
    }


def _table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> list[str]:
    """Rows under a header, text left-aligned and numbers right-aligned."""
    cells = [list(header)] + [[_cell(value) for value in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    numeric = [
        all(not isinstance(row[i], str) for row in rows) for i in range(len(header))
    ]
    return [
        "  "
        + "  ".join(
            cell.rjust(width) if right else cell.ljust(width)
            for cell, width, right in zip(row, widths, numeric, strict=True)
        ).rstrip()
        for row in cells
    ]


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.2f}"
    return str(value)


def render(found: dict[str, Any], source: str) -> str:
    """The figures as text tables."""
    lines = found["lines"]
    out = [
        f"{source}: {lines['requests']} request lines, {lines['loads']} load lines"
        f" ({lines['skipped']} lines that are not JSON skipped)",
        "",
        "Prediction latency by model version, ms (requests the model was asked)",
    ]
    latency = found["latency_by_version"]
    if latency:
        header = ["model version", "predictions", "p50", "p95", "p99", "max"]
        header += ["model p50", "model p95", "model p99"]
        rows = []
        for row in latency:
            total, model = row["latency_ms"], row["model_ms"]
            rows.append(
                [row["model_version"], row["predictions"]]
                + [total[k] for k in ("p50", "p95", "p99", "max")]
                + [model[k] for k in ("p50", "p95", "p99")]
            )
        out += _table(header, rows)
    else:
        out.append("  none")
    out += ["", "Requests by status and code (errors: status 400 and above)"]
    out += _table(
        ["status", "code", "requests"],
        [[r["status"], r["code"], r["requests"]] for r in found["requests_by_code"]],
    )
    ratio = found["server_error_ratio"]
    shown = "n/a" if ratio is None else f"{ratio:.1%}"
    out.append(
        f"  server errors (5xx): {found['server_errors']} of "
        f"{lines['requests']} requests ({shown})"
    )
    out += ["", "Model loads"]
    if found["loads"]:
        header = ["model version", "runtime", "outcome", "loads", "ms p50", "ms max"]
        header.append("bytes read")
        rows = [
            [
                *(row[k] for k in ("model_version", "runtime", "outcome", "loads")),
                row["load_ms"]["p50"],
                row["load_ms"]["max"],
                row["bytes_read"],
            ]
            for row in found["loads"]
        ]
        out += _table(header, rows)
    else:
        out.append("  none")
    out += ["", f"Cold starts: {found['cold_starts']}"]
    return "\n".join(out) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m skserve.metrics LOGFILE [--json]`."""
    import argparse

    parser = argparse.ArgumentParser(
        prog="python -m skserve.metrics",
        description="The dashboards' figures (latency percentiles by model "
        "version, requests and errors by code, model loads, cold starts) from a "
        "file of the function's log lines, e.g. what `make run` printed. Lines "
        "that are not JSON objects are skipped.",
    )
    parser.add_argument("logfile", help="a file of log lines, or - for stdin")
    parser.add_argument("--json", action="store_true", help="print JSON instead")
    args = parser.parse_args(argv)
    try:
        if args.logfile == "-":
            entries, skipped = read_entries(sys.stdin)
        else:
            with open(args.logfile, encoding="utf-8", errors="replace") as handle:
                entries, skipped = read_entries(handle)
    except OSError as error:
        print(f"cannot read {args.logfile}: {error.strerror}", file=sys.stderr)
        return 2
    found = figures(entries, skipped)
    if args.json:
        print(json.dumps(found, indent=2))
    else:
        sys.stdout.write(render(found, args.logfile))
    return 0


if __name__ == "__main__":
    sys.exit(main())
