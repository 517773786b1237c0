"""skserve.metrics: the metric fields of request and load lines, the Embedded
Metric Format documents they become on Lambda (valid against the
specification's limits), and the local command's figures."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import flask
import pytest

from skserve.errors import ObjectNotFound, Unavailable
from skserve.holder import ModelHolder
from skserve.loader import LoadedModel, fetch_model
from skserve.logs import log_load, log_request
from skserve.metrics import (
    EMF_METRICS,
    LOAD,
    NAMESPACE,
    REQUEST,
    figures,
    percentile,
    read_entries,
    render,
)
from skserve.storage import open_store
from tests.monitoring_support import EMF_UNITS, EmfSeries, emf_problems, emf_series
from tests.support import FUNCTION, SEED_FEATURES, call, latest_version

FUNCTION_NAME = "sklearn-serverless-dev-predict"


def _lines(capsys: pytest.CaptureFixture[str]) -> list[str]:
    return capsys.readouterr().out.splitlines()


def _entries(capsys: pytest.CaptureFixture[str]) -> list[dict[str, Any]]:
    return [json.loads(line) for line in _lines(capsys)]


@pytest.fixture
def on_lambda(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The environment AWS Lambda gives a function."""
    monkeypatch.setenv("AWS_LAMBDA_FUNCTION_NAME", FUNCTION_NAME)
    yield


def _declared(line: str, whens: set[str]) -> set[EmfSeries]:
    return {
        EmfSeries(NAMESPACE, metric.name, frozenset(dimensions))
        for metric in EMF_METRICS
        if metric.line == line and metric.when in whens
        for dimensions in metric.dimensions
    }


def _request(status: int = 200, **kwargs: Any) -> None:
    request = flask.Request.from_values("/predict", method="POST")
    log_request(
        request,
        flask.Response(status=status),
        latency=0.0125,
        cold_start=kwargs.pop("cold_start", False),
        project="",
        protocol="v1",
        model="houses",
        **kwargs,
    )


# --- Declarations -----------------------------------------------------------------


def test_every_embedded_metric_has_a_unit_cloudwatch_knows_and_a_unique_name() -> None:
    names = [metric.name for metric in EMF_METRICS]

    assert len(names) == len(set(names))
    assert {metric.unit for metric in EMF_METRICS} <= EMF_UNITS
    assert {metric.line for metric in EMF_METRICS} == {REQUEST, LOAD}
    for metric in EMF_METRICS:
        assert all(len(d) <= 30 for d in metric.dimensions)
        # No request ids or versions: CloudWatch bills every combination.
        assert not {"request_id", "model_version"} & set().union(*metric.dimensions)


# --- Request lines ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "code", "model_seconds", "cold"),
    [
        (200, "ok", 0.003, True),
        (400, "invalid_value", 0.001, False),
        (404, "not_found", None, False),
        (503, "model_unavailable", None, True),
    ],
)
def test_request_line_on_lambda_is_a_valid_emf_document_of_the_declared_metrics(
    on_lambda: None,
    status: int,
    code: str,
    model_seconds: float | None,
    cold: bool,
    capsys: pytest.CaptureFixture[str],
) -> None:
    _request(status, code=code, model_seconds=model_seconds, cold_start=cold)

    (line,) = _lines(capsys)
    entry = json.loads(line)
    assert emf_problems(line) == []
    asked = model_seconds is not None
    assert emf_series(entry) == _declared(
        REQUEST, {"always", "model asked"} if asked else {"always"}
    )
    assert entry["function"] == FUNCTION_NAME
    assert entry["requests"] == 1
    assert entry["server_errors"] == (1 if status >= 500 else 0)
    assert entry["cold_starts"] == (1 if cold else 0)
    assert entry["code"] == code  # the code dimension's value


# --- Load lines ---------------------------------------------------------------------


@pytest.mark.parametrize("ok", [True, False])
def test_load_line_on_lambda_is_a_valid_emf_document_of_the_declared_metrics(
    on_lambda: None, ok: bool, capsys: pytest.CaptureFixture[str]
) -> None:
    extra = {"runtime": "onnx", "bytes_read": 5120} if ok else {"code": "store_down"}
    log_load("INFO", "m", ok=ok, seconds=0.25, model_version="v1", **extra)

    (line,) = _lines(capsys)
    entry = json.loads(line)
    assert emf_problems(line) == []
    assert emf_series(entry) == _declared(LOAD, {"always"})
    assert entry["event"] == "load" and entry["load_ms"] == 250.0
    assert entry["outcome"] == ("ok" if ok else "failed")
    assert (entry["loads"], entry["load_failures"]) == (1, 0 if ok else 1)


def test_holder_logs_each_load_with_its_outcome_duration_and_bytes(
    model_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store = open_store(str(model_dir))
    version = latest_version(model_dir)
    down = True

    def fetch(wanted: str) -> LoadedModel:
        if down:
            raise ObjectNotFound("the store is down")
        return fetch_model(store, wanted)

    holder = ModelHolder(fetch, lambda: version, backoff=(0.0, 0.0))
    with pytest.raises(Unavailable):
        holder.get()
    down = False
    model = holder.get()

    failed, loaded = (e for e in _entries(capsys) if e.get("event") == "load")
    assert failed["outcome"] == "failed" and failed["severity"] == "ERROR"
    assert failed["model_version"] == version
    assert failed["code"] == "not_found_in_store"
    assert failed["message"].startswith("model load failed")
    assert loaded["outcome"] == "ok" and loaded["model_version"] == version
    assert loaded["runtime"] == model.runtime.name
    files = model.manifest.data["files"]
    manifest_bytes = (model_dir / "versions" / version / "manifest.json").stat()
    assert loaded["bytes_read"] == model.bytes_read
    assert model.bytes_read == (
        manifest_bytes.st_size + files[model.runtime.artifact]["bytes"]
    )
    assert loaded["load_ms"] >= 0


# --- Through the service --------------------------------------------------------------


def test_service_logs_protocol_code_and_model_time_of_each_request(
    served: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    good = call(json={"features": SEED_FEATURES})
    bad = call(json={"features": [1.0]})
    v2 = call(
        path=f"/v2/models/{served.name}/infer",
        json={
            "inputs": [
                {
                    "name": "input-0",
                    "shape": [1, 10],
                    "datatype": "FP64",
                    "data": SEED_FEATURES,
                }
            ]
        },
    )
    missing = call("GET", "/nowhere")

    assert [r.status_code for r in (good, bad, v2, missing)] == [200, 400, 200, 404]
    requests = [e for e in _entries(capsys) if e.get("event") == "request"]
    assert [(e["protocol"], e["code"]) for e in requests] == [
        ("v1", "ok"),
        ("v1", "wrong_feature_count"),
        ("v2", "ok"),
        ("v1", "not_found"),
    ]
    assert [("model_ms" in e) for e in requests] == [True, False, True, False]
    assert all(e["model"] == served.name for e in requests)
    for entry in requests:
        assert 0 <= entry.get("model_ms", 0) <= entry["latency_ms"]
    assert [e["cold_start"] for e in requests] == [True, False, False, False]


# --- The local command ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("values", "p", "expected"),
    [
        ([5.0], 99, 5.0),
        ([1.0, 2.0, 3.0, 4.0], 50, 2.0),
        ([1.0, 2.0, 3.0, 4.0], 75, 3.0),
        ([float(i) for i in range(1, 101)], 95, 95.0),
        ([float(i) for i in range(1, 101)], 99, 99.0),
        ([3.0, 1.0, 2.0], 99, 3.0),
    ],
)
def test_percentile_is_the_nearest_rank(
    values: list[float], p: float, expected: float
) -> None:
    assert percentile(values, p) == expected


def _request_entry(
    version: str, latency: float, status: int = 200, code: str = "ok", **extra: Any
) -> dict[str, Any]:
    return {
        "event": "request",
        "httpRequest": {"status": status},
        "code": code,
        "model_version": version,
        "latency_ms": latency,
        "cold_start": False,
        **extra,
    }


SAMPLE = [
    _request_entry("v1", 100.0, model_ms=80.0, cold_start=True),
    *(_request_entry("v1", float(i), model_ms=float(i) / 2) for i in range(1, 10)),
    _request_entry("v2", 7.0, model_ms=3.0),
    _request_entry("v1", 0.5, status=400, code="invalid_value"),
    _request_entry("v1", 0.4, status=400, code="invalid_value", model_ms=0.1),
    _request_entry("none", 5.0, status=503, code="model_unavailable"),
    {"event": "load", "outcome": "ok", "model_version": "v1", "runtime": "sklearn"}
    | {"load_ms": 900.0, "bytes_read": 4096},
    {"event": "load", "outcome": "failed", "model_version": "v2", "runtime": None}
    | {"load_ms": 12.0, "code": "integrity_error"},
    {"severity": "INFO", "message": "LATEST signed by key k1"},  # neither kind
]


def test_figures_give_latency_by_version_requests_by_code_loads_and_cold_starts() -> (
    None
):
    found = figures(SAMPLE, skipped=3)

    assert found["lines"] == {"requests": 14, "loads": 2, "skipped": 3}
    by_version = {row["model_version"]: row for row in found["latency_by_version"]}
    # Requests the model was asked (model_ms there), the 400 it raised included.
    assert set(by_version) == {"v1", "v2"}
    assert by_version["v1"]["predictions"] == 11
    assert by_version["v1"]["latency_ms"] == {
        "p50": 5.0,
        "p95": 100.0,
        "p99": 100.0,
        "max": 100.0,
    }
    assert by_version["v1"]["model_ms"]["p50"] == 2.5
    assert by_version["v2"]["latency_ms"]["p99"] == 7.0
    assert found["requests_by_code"] == [
        {"status": 200, "code": "ok", "requests": 11},
        {"status": 400, "code": "invalid_value", "requests": 2},
        {"status": 503, "code": "model_unavailable", "requests": 1},
    ]
    assert found["server_errors"] == 1
    assert found["server_error_ratio"] == pytest.approx(1 / 14)
    assert [
        (r["model_version"], r["runtime"], r["outcome"], r["loads"], r["bytes_read"])
        for r in found["loads"]
    ] == [("v1", "sklearn", "ok", 1, 4096), ("v2", "-", "failed", 1, 0)]
    assert found["cold_starts"] == 1


def test_read_entries_skips_what_is_not_a_json_object() -> None:
    lines = [
        "[2026-12-07 09:00:00 +0000] [1] [INFO] Starting gunicorn 23.0.0\n",
        '{"event": "request"}\n',
        "\n",
        "[1, 2]\n",
        '{"event": "load"',
    ]

    entries, skipped = read_entries(lines)

    assert entries == [{"event": "request"}]
    assert skipped == 4


def test_render_shows_each_table_with_its_figures() -> None:
    text = render(figures(SAMPLE, skipped=0), "run.log")

    assert text.startswith("run.log: 14 request lines, 2 load lines")
    assert "Prediction latency by model version" in text
    v1 = next(line for line in text.splitlines() if line.strip().startswith("v1 "))
    assert v1.split() == [
        "v1",
        "11",
        "5.00",
        "100.00",
        "100.00",
        "100.00",
        "2.50",
        "80.00",
        "80.00",
    ]
    assert "server errors (5xx): 1 of 14 requests (7.1%)" in text
    assert "Cold starts: 1" in text


def _command(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    """`python -m skserve.metrics ARGS` from function/, as deployed."""
    return subprocess.run(
        [sys.executable, "-m", "skserve.metrics", *args],
        cwd=FUNCTION,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_command_prints_json_figures_of_a_log_file(tmp_path: Path) -> None:
    log = tmp_path / "run.log"
    log.write_text(
        "Serving on 127.0.0.1:8080\n"
        + "".join(json.dumps(entry) + "\n" for entry in SAMPLE)
    )

    result = _command(str(log), "--json")

    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == json.loads(
        json.dumps(figures(SAMPLE, skipped=1))
    )


def test_command_reads_stdin_and_refuses_a_missing_file(tmp_path: Path) -> None:
    piped = _command("-", stdin=json.dumps(SAMPLE[0]) + "\n")
    missing = _command(str(tmp_path / "absent.log"))

    assert piped.returncode == 0 and "1 request lines" in piped.stdout
    assert missing.returncode == 2
    assert missing.stderr.startswith(f"cannot read {tmp_path / 'absent.log'}")


# --- The validator the EMF tests rely on must fail on each broken rule ---------------


def _valid_doc() -> dict[str, Any]:
    import time

    return {
        "_aws": {
            "Timestamp": int(time.time() * 1000),
            "CloudWatchMetrics": [
                {
                    "Namespace": NAMESPACE,
                    "Dimensions": [["function"]],
                    "Metrics": [{"Name": "latency_ms", "Unit": "Milliseconds"}],
                }
            ],
        },
        "function": FUNCTION_NAME,
        "latency_ms": 1.5,
    }


def _break(change: str) -> dict[str, Any]:
    doc = _valid_doc()
    directive = doc["_aws"]["CloudWatchMetrics"][0]
    if change == "31 dimensions":
        keys = [f"d{i}" for i in range(31)]
        directive["Dimensions"] = [keys]
        doc.update(dict.fromkeys(keys, "x"))
    elif change == "101 metrics":
        names = [f"m{i}" for i in range(101)]
        directive["Metrics"] = [{"Name": n} for n in names]
        doc.update(dict.fromkeys(names, 1))
    elif change == "unit":
        directive["Metrics"][0]["Unit"] = "Millis"
    elif change == "namespace":
        directive["Namespace"] = "sklearn serverless!"
    elif change == "value not a number":
        doc["latency_ms"] = "1.5"
    elif change == "value a boolean":
        doc["latency_ms"] = True
    elif change == "value missing":
        del doc["latency_ms"]
    elif change == "dimension missing":
        del doc["function"]
    elif change == "dimension not ascii":
        doc["function"] = "prédict"
    elif change == "dimension key colon":
        directive["Dimensions"] = [[":function"]]
        doc[":function"] = "x"
    elif change == "old timestamp":
        doc["_aws"]["Timestamp"] -= 15 * 24 * 3600 * 1000
    elif change == "extra directive member":
        directive["Unit"] = "Count"
    elif change == "no directives":
        doc["_aws"]["CloudWatchMetrics"] = []
    elif change == "101 values":
        doc["latency_ms"] = [1.0] * 101
    return doc


@pytest.mark.parametrize(
    "change",
    [
        "31 dimensions",
        "101 metrics",
        "unit",
        "namespace",
        "value not a number",
        "value a boolean",
        "value missing",
        "dimension missing",
        "dimension not ascii",
        "dimension key colon",
        "old timestamp",
        "extra directive member",
        "no directives",
        "101 values",
    ],
)
def test_emf_validator_refuses_each_broken_rule(change: str) -> None:
    assert emf_problems(json.dumps(_valid_doc())) == []
    assert emf_problems(json.dumps(_break(change))) != []
