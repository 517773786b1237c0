"""The product's targets: each met or missed, never asserted; skipped if not run."""

from __future__ import annotations

from typing import Any

from bench.report.cells import fmt, ratio, times

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
            wanted, shown = f"{sense} {bound:,.0f}", fmt(value, 0)
        else:
            reference = (
                summary[subject].get("alone_rows_per_s")
                if basis == ALONE
                else summary[basis].get(key)
            )
            measured = ratio(value, reference)
            wanted, shown = f"{sense} {times(bound)}", times(measured)
        if measured is None:
            verdict = "n/a"
        elif measured <= bound if sense == "<=" else measured >= bound:
            verdict = "met"
        else:
            verdict = "missed"
        rows.append((title, wanted, shown, verdict))
    return rows


def table(summary: dict[str, dict[str, Any]]) -> list[str]:
    lines = [
        "",
        "Targets the product wants (reported, not asserted):",
        "",
        "| target | wanted | measured | |",
        "|---|---:|---:|---|",
    ]
    lines += [f"| {t} | {w} | {m} | {v} |" for t, w, m, v in goals(summary)]
    return lines
