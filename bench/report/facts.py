"""The run's facts under the tables: where, with what, and how it was measured."""

from __future__ import annotations

import argparse
import json
from typing import Any

from bench.common import HOST, ROOT, Workload
from bench.models import CUSTOMERS, MODEL_TITLES, TYPED_MODELS, prefix, trees


def _loads(loads: list[float]) -> str:
    """A load-average triple as `a/b/c`."""
    return "/".join(f"{load:.2f}" for load in loads)


def _requests(workload: Workload, servers: str) -> str:
    """Which servers get which one-row requests, and the label each must get."""
    shown = " and ".join(
        f"`{json.dumps(payload)}` (label {json.dumps(label)})"
        for payload, label in zip(workload.payloads, workload.labels, strict=True)
    )
    return f"{servers} get {shown}"


def facts(
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
