"""The Markdown report: its sections in order, each from the module named for it."""

from __future__ import annotations

import argparse
from typing import Any

from bench.common import Workload
from bench.report import facts, tables, targets, twins


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
    lines = tables.headline(summary, args, rows)
    lines += tables.versus_seed(summary)
    lines += tables.versus_floors(summary)
    lines += twins.twin_vs_pickle(summary)
    lines += twins.forests(summary, sizes or {})
    lines += twins.versus_alone(summary, rows)
    lines += targets.table(summary)
    lines += tables.details(summary)
    lines += facts.facts(summary, env, args, workloads)
    return "\n".join(lines)
