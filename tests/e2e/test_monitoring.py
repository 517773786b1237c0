"""Operating it, evaluated on real log lines: a functions-framework process and
the Lambda handler serve a mix of good, bad, cold and failing requests (a
refresh to a new version, a refresh that fails, a store with no model), and
every metric infra/monitoring.tf and the Embedded Metric Format declare is
computed from the lines they printed.

Google: each line becomes the LogEntry Cloud Logging stores for a Cloud Run
revision; each log-based metric's filter, value and label extractors are
evaluated on those entries, and what they select is held to what the client
saw. The alert policies and the dashboard's charts are evaluated on the
resulting points. AWS: every line the handler printed for a request or a load
is a valid EMF document, and every metric the CloudWatch alarms and dashboard
read is one those documents publish. Locally: `python -m skserve.metrics` gives
the figures the metrics give.
"""

from __future__ import annotations

import importlib
import json
import re
import shutil
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import requests

from skserve.metrics import EMF_METRICS, NAMESPACE, percentile
from tests.deploy.events import http_api_event
from tests.monitoring_support import (
    LAMBDA_METRICS,
    EmfSeries,
    LogMetric,
    Point,
    Terraform,
    alarm_refs,
    bucket_bounds,
    cloud_run_entry,
    dashboard_refs,
    emf_problems,
    emf_series,
    group_by_label,
    load_monitoring_yml,
    monitoring_terms,
    param_defaults,
    series_match,
    substitute,
)
from tests.support import (
    FUNCTION,
    SEED_FEATURES,
    FunctionServer,
    latest_version,
    publish_estimator,
    published_model,
)

pytestmark = pytest.mark.e2e

PROJECT, SERVICE = "acme-ml", "sklearn-predict"  # the Terraform defaults' service


@dataclass(frozen=True)
class Sent:
    """A request as the client saw it."""

    method: str
    path: str
    status: int
    code: str
    protocol: str
    version: str | None  # X-Model-Version
    elapsed_ms: float
    predicted: bool  # a prediction was answered (the model was asked)


class Client:
    """Sends requests to a FunctionServer and records what came back."""

    def __init__(self, server: FunctionServer) -> None:
        self.server = server
        # FunctionServer's own readiness probes came first.
        probes = server.logs().count('"message":"GET /health 200"')
        assert probes >= 1
        self.sent = [
            Sent("GET", "/health", 200, "ok", "v1", None, float("inf"), False)
        ] * probes

    def send(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        data: str | None = None,
        code: str | None = None,
    ) -> requests.Response:
        started = time.perf_counter()
        response = requests.request(
            method,
            self.server.url + path,
            json=body,
            data=data,
            headers={"Content-Type": "application/json"} if data else None,
            timeout=60,
        )
        elapsed = (time.perf_counter() - started) * 1000
        v2 = path.startswith("/v2")
        if code is None:
            code = "ok" if response.ok else response.json()["error"]["code"]
        predicted = response.ok and (path == "/predict" or path.endswith("/infer"))
        self.sent.append(
            Sent(
                method,
                path,
                response.status_code,
                code,
                "v2" if v2 else "v1",
                response.headers.get("X-Model-Version"),
                elapsed,
                predicted,
            )
        )
        return response


def _v2_body(rows: list[list[float]]) -> dict[str, Any]:
    return {
        "inputs": [
            {
                "name": "input-0",
                "shape": [len(rows), len(rows[0])],
                "datatype": "FP64",
                "data": [x for row in rows for x in row],
            }
        ]
    }


def _wait_for(server: FunctionServer, needle: str, count: int = 1) -> None:
    deadline = time.monotonic() + 30
    while server.logs().count(needle) < count:
        assert time.monotonic() < deadline, f"no {needle!r} in:\n{server.logs()}"
        time.sleep(0.05)


@dataclass(frozen=True)
class Run:
    """What the client sent and what each process printed."""

    sent: list[Sent]
    logs: list[str]  # one text per process
    log_paths: list[Path]
    versions: tuple[str, str]  # first served, then promoted
    missing: str  # the version LATEST named that does not exist


@pytest.fixture(scope="module")
def run(seed_store: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Run]:
    """Two functions-framework processes: one serving a model through a
    refresh to a new version and a refresh that fails, one whose store holds
    no model."""
    tmp = tmp_path_factory.mktemp("monitoring")
    model_dir = tmp / "store" / "seed"
    shutil.copytree(seed_store / "seed", model_dir)
    first = latest_version(model_dir)
    env = {"MODEL_URI": str(model_dir), "MODEL_REFRESH_SECONDS": "1"}
    logs, paths, sent = [], [], []
    with FunctionServer(env, tmp) as server:
        client = Client(server)
        rows = [SEED_FEATURES, [0.0] * 10, [1.0] * 10]
        client.send("POST", "/predict", {"features": SEED_FEATURES})  # loads
        client.send("POST", "/predict", {"instances": rows, "probabilities": True})
        client.send("POST", "/v2/models/seed/infer", _v2_body(rows))
        client.send("POST", "/predict", {"features": [1.0]})
        client.send("POST", "/predict", data="{")
        client.send("POST", "/predict", {"features": ["x", *SEED_FEATURES[1:]]})
        client.send("GET", "/predict")
        client.send("GET", "/nowhere")
        client.send("POST", "/v2/models/other/infer", _v2_body(rows), code="not_found")
        client.send("GET", "/health")
        # A new version: the first request after a second refreshes to it.
        second = publish_estimator(model_dir, published_model(model_dir))
        time.sleep(1.1)
        for _ in range(50):
            answer = client.send("POST", "/predict", {"features": SEED_FEATURES})
            if answer.headers["X-Model-Version"] == second:
                break
            time.sleep(0.1)
        client.send("POST", "/v2/models/seed/infer", _v2_body(rows[:1]))
        client.send("POST", "/predict", {"instances": rows})
        # LATEST names a version that is not there: the refresh fails, and
        # the instance keeps serving the one it has.
        missing = "20991231T000000.000Z-00000000"
        (model_dir / "LATEST").write_text(missing + "\n")
        time.sleep(1.1)
        client.send("POST", "/predict", {"features": SEED_FEATURES})
        _wait_for(server, '"outcome":"failed"')
        client.send("POST", "/predict", {"features": SEED_FEATURES})
        sent += client.sent
        logs.append(server.logs())
        paths.append(server.log_path)
    empty = {"MODEL_URI": str(tmp / "empty" / "seed"), "MODEL_REFRESH_SECONDS": "1"}
    with FunctionServer(empty, tmp) as server:
        client = Client(server)
        client.send("POST", "/predict", {"features": SEED_FEATURES})
        client.send("POST", "/predict", {"features": SEED_FEATURES})
        client.send("GET", "/health")
        client.send(
            "POST",
            "/v2/models/seed/infer",
            _v2_body([SEED_FEATURES]),
            code="not_found_in_store",
        )
        sent += client.sent
        logs.append(server.logs())
        paths.append(server.log_path)
    yield Run(sent, logs, paths, (first, second), missing)


def _entries(run: Run, service: str = SERVICE) -> list[dict[str, Any]]:
    """Every line the processes printed, as Cloud Logging stores it."""
    return [
        cloud_run_entry(line, project=PROJECT, service=service)
        for text in run.logs
        for line in text.splitlines()
        if line.strip()
    ]


@pytest.fixture(scope="module")
def terraform() -> Terraform:
    return Terraform({"project_id": PROJECT})


@pytest.fixture(scope="module")
def points(run: Run, terraform: Terraform) -> dict[str, list[Point]]:
    """What each declared log-based metric records for the run's lines."""
    entries = _entries(run)
    return {
        name: metric.points(entries) for name, metric in terraform.log_metrics().items()
    }


def _load_lines(run: Run) -> list[dict[str, Any]]:
    return [
        json.loads(line)
        for text in run.logs
        for line in text.splitlines()
        if line.startswith("{") and '"event":"load"' in line
    ]


# --- Google Cloud: each log-based metric on the real lines ---------------------------

# Every declared metric has its check below; a new metric fails this until it
# has one.
CHECKED = {
    "requests",
    "prediction_latencies",
    "model_latencies",
    "model_loads",
    "cold_starts",
}


def test_every_declared_log_metric_is_checked_on_the_lines(
    terraform: Terraform,
) -> None:
    assert set(terraform.log_metrics()) == CHECKED


def test_requests_counts_every_request_by_status_code_and_protocol(
    run: Run, points: dict[str, list[Point]]
) -> None:
    got = Counter(
        (p.labels["status"], p.labels["code"], p.labels["protocol"])
        for p in points["requests"]
    )
    expected = Counter((s.status, s.code, s.protocol) for s in run.sent)

    assert got == expected
    assert {s.status for s in run.sent} >= {200, 400, 404, 405, 503}


def test_prediction_latencies_are_the_answered_predictions_by_version(
    run: Run, points: dict[str, list[Point]], terraform: Terraform
) -> None:
    predictions = [s for s in run.sent if s.predicted]
    got = points["prediction_latencies"]

    assert Counter((p.labels["model_version"], p.labels["protocol"]) for p in got) == (
        Counter((s.version, s.protocol) for s in predictions)
    )
    assert {p.labels["model_version"] for p in got} == set(run.versions)
    # The server's latency is within what the client waited, in order.
    assert len(got) == len(predictions)
    for point, sent in zip(got, predictions, strict=True):
        assert 0 < point.value <= sent.elapsed_ms
    bounds = bucket_bounds(
        terraform.log_metrics()["prediction_latencies"].bucket_options
    )
    assert all(bounds[0] <= p.value < bounds[-1] for p in got)


def test_model_latencies_are_the_model_share_by_version_and_runtime(
    run: Run, points: dict[str, list[Point]], terraform: Terraform
) -> None:
    total = points["prediction_latencies"]
    model = points["model_latencies"]
    loaded = {
        line["model_version"]: line["runtime"]
        for line in _load_lines(run)
        if line["outcome"] == "ok"
    }

    assert len(model) == len(total)
    for share, whole in zip(model, total, strict=True):
        assert share.labels["model_version"] == whole.labels["model_version"]
        assert share.labels["runtime"] == loaded[share.labels["model_version"]]
        assert 0 < share.value <= whole.value
    # The first version is served by its twin, the second (no twin) by its pickle.
    assert loaded == {run.versions[0]: "onnx", run.versions[1]: "sklearn"}
    bounds = bucket_bounds(terraform.log_metrics()["model_latencies"].bucket_options)
    assert all(bounds[0] <= p.value < bounds[-1] for p in model)


def test_model_loads_count_each_attempt_by_outcome_and_runtime(
    run: Run, points: dict[str, list[Point]]
) -> None:
    lines = _load_lines(run)
    got = [(p.labels["outcome"], p.labels["runtime"]) for p in points["model_loads"]]

    assert got == [(line["outcome"], line.get("runtime") or "") for line in lines]
    ok = [line for line in lines if line["outcome"] == "ok"]
    failed = [line for line in lines if line["outcome"] == "failed"]
    assert [line["model_version"] for line in ok] == list(run.versions)
    assert all(line["bytes_read"] > 1000 and line["load_ms"] > 0 for line in ok)
    # A refresh to a version that is not there, and a store with no model.
    assert {line["model_version"] for line in failed} == {run.missing, None}
    assert {line["code"] for line in failed} == {"not_found_in_store"}


def test_cold_starts_are_each_process_first_request(
    run: Run, points: dict[str, list[Point]]
) -> None:
    request_lines = [
        [json.loads(line) for line in text.splitlines() if '"event":"request"' in line]
        for text in run.logs
    ]

    assert len(points["cold_starts"]) == len(run.logs) == 2
    for lines in request_lines:
        assert [line["cold_start"] for line in lines] == [True] + [False] * (
            len(lines) - 1
        )


def test_metrics_select_nothing_of_another_service_or_of_cloud_runs_request_log(
    run: Run, terraform: Terraform
) -> None:
    other = _entries(run, service="another-function")
    # Cloud Run's own request log entry for a request: an httpRequest, no payload.
    request_log = {
        "logName": f"projects/{PROJECT}/logs/run.googleapis.com%2Frequests",
        "resource": {"type": "cloud_run_revision", "labels": {"service_name": SERVICE}},
        "httpRequest": {"status": 503, "latency": "0.5s"},
    }
    # The same line on stderr (a traceback's neighbour) is not the request line.
    stderr = cloud_run_entry(
        next(line for line in run.logs[0].splitlines() if '"event":"request"' in line),
        project=PROJECT,
        service=SERVICE,
        log="stderr",
    )

    for name, metric in terraform.log_metrics().items():
        assert metric.points([*other, request_log, stderr]) == [], name


# --- Google Cloud: the alert policies and the dashboard on those points ---------------


def _series_points(
    metrics: dict[str, LogMetric], points: dict[str, list[Point]], query: str
) -> list[Point]:
    """The points of the one declared metric `query` names that it selects."""
    terms = monitoring_terms(query)
    (metric_type,) = {t.value for t in terms if t.selector == "metric.type"}
    (name,) = [n for n, m in metrics.items() if m.metric_type == metric_type]
    return [p for p in points[name] if series_match(terms, metric_type, p.labels)]


def test_error_ratio_policy_computes_the_share_of_5xx_answers(
    run: Run, points: dict[str, list[Point]], terraform: Terraform
) -> None:
    metrics = terraform.log_metrics()
    policy = terraform.value(
        terraform.resources[("google_monitoring_alert_policy", "error_ratio")]
    )
    (condition,) = policy["conditions"]
    (threshold,) = condition["condition_threshold"]

    numerator = _series_points(metrics, points, threshold["filter"])
    denominator = _series_points(metrics, points, threshold["denominator_filter"])
    ratio = len(numerator) / len(denominator)

    server_errors = [s for s in run.sent if s.status >= 500]
    assert ratio == len(server_errors) / len(run.sent)
    assert ratio > threshold["threshold_value"]  # this run would open an incident


def test_latency_policy_reads_every_prediction(
    points: dict[str, list[Point]], terraform: Terraform
) -> None:
    metrics = terraform.log_metrics()
    policy = terraform.value(
        terraform.resources[("google_monitoring_alert_policy", "latency_p99")]
    )
    (threshold,) = policy["conditions"][0]["condition_threshold"]

    selected = _series_points(metrics, points, threshold["filter"])

    assert selected == points["prediction_latencies"]
    assert threshold["aggregations"][0]["cross_series_reducer"] == (
        "REDUCE_PERCENTILE_99"
    )


def _datasets(dashboard: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    for tile in dashboard["mosaicLayout"]["tiles"]:
        widget = tile["widget"]
        for dataset in widget["xyChart"]["dataSets"]:
            yield widget["title"], dataset["timeSeriesQuery"]


def test_every_dashboard_chart_of_a_log_metric_selects_what_its_title_says(
    run: Run, points: dict[str, list[Point]], terraform: Terraform
) -> None:
    metrics = terraform.log_metrics()
    drawn: dict[str, Counter[tuple[Any, ...]]] = {}
    for title, query in _datasets(terraform.dashboard()):
        if "timeSeriesFilterRatio" in query:
            ratio = query["timeSeriesFilterRatio"]
            numerator = _series_points(metrics, points, ratio["numerator"]["filter"])
            denominator = _series_points(
                metrics, points, ratio["denominator"]["filter"]
            )
            drawn[title] = Counter({("ratio",): len(numerator) / len(denominator)})
            continue
        spec = query["timeSeriesFilter"]
        if "logging.googleapis.com/user/" not in spec["filter"]:
            continue  # Cloud Run's own metrics: tests/deploy checks their names
        selected = _series_points(metrics, points, spec["filter"])
        keys = [group_by_label(f) for f in spec["aggregation"].get("groupByFields", [])]
        assert all(scope == "metric" for scope, _ in keys), title
        drawn.setdefault(title, Counter()).update(
            tuple(p.labels[label] for _, label in keys) for p in selected
        )

    predictions = [s for s in run.sent if s.predicted]
    by_version = Counter((s.version,) for s in predictions)
    latency = "Prediction latency by model version (ms): p50, p95, p99"
    assert drawn[latency] == Counter({k: 3 * n for k, n in by_version.items()})
    runtimes = {
        line["model_version"]: line["runtime"]
        for line in _load_lines(run)
        if line["outcome"] == "ok"
    }
    model = "Model-only latency by model version (ms): p50, p99"
    assert drawn[model] == Counter(
        {(v, runtimes[v]): 2 * n for (v,), n in by_version.items()}
    )
    assert drawn["Requests per minute by status and code"] == Counter(
        (s.status, s.code) for s in run.sent
    )
    assert drawn["Errors per minute by code (status 400 and above)"] == Counter(
        (s.code,) for s in run.sent if s.status >= 400
    )
    errors = sum(s.status >= 500 for s in run.sent)
    assert drawn["Server error ratio (5xx / all requests)"] == Counter(
        {("ratio",): errors / len(run.sent)}
    )
    loads = Counter((line["outcome"],) for line in _load_lines(run))
    assert drawn["Model loads by outcome, and cold starts"] == loads + Counter({(): 2})


# --- Locally: the command gives the same figures as the metrics -----------------------


def _command(path: Path) -> dict[str, Any]:
    result = subprocess.run(
        [sys.executable, "-m", "skserve.metrics", str(path), "--json"],
        cwd=FUNCTION,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_local_command_shows_the_figures_the_metrics_give(
    run: Run, points: dict[str, list[Point]]
) -> None:
    combined = run.log_paths[0].parent / "combined.log"
    combined.write_text("".join(run.logs))

    found = _command(combined)

    assert found["lines"]["requests"] == len(points["requests"])
    assert {
        (row["status"], row["code"]): row["requests"]
        for row in found["requests_by_code"]
    } == Counter((p.labels["status"], p.labels["code"]) for p in points["requests"])
    totals: dict[str, list[float]] = {}
    models: dict[str, list[float]] = {}
    for total, model in zip(
        points["prediction_latencies"], points["model_latencies"], strict=True
    ):
        totals.setdefault(total.labels["model_version"], []).append(total.value)
        models.setdefault(model.labels["model_version"], []).append(model.value)
    assert {row["model_version"] for row in found["latency_by_version"]} == set(totals)
    for row in found["latency_by_version"]:
        values = totals[row["model_version"]]
        assert row["predictions"] == len(values)
        for p in (50, 95, 99):
            assert row["latency_ms"][f"p{p}"] == percentile(values, p)
            assert row["model_ms"][f"p{p}"] == percentile(
                models[row["model_version"]], p
            )
    assert sum(row["loads"] for row in found["loads"]) == len(points["model_loads"])
    by_outcome: Counter[str] = Counter()
    for row in found["loads"]:
        by_outcome[row["outcome"]] += row["loads"]
    assert by_outcome == Counter(p.labels["outcome"] for p in points["model_loads"])
    assert found["cold_starts"] == len(points["cold_starts"])
    assert found["server_errors"] == sum(
        p.labels["status"] >= 500 for p in points["requests"]
    )


def test_local_command_prints_the_tables_for_make_runs_output(run: Run) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "skserve.metrics", str(run.log_paths[0])],
        cwd=FUNCTION,
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert result.returncode == 0, result.stderr
    text = result.stdout
    for heading in (
        "Prediction latency by model version",
        "Requests by status and code",
        "Model loads",
        "Cold starts: 1",
    ):
        assert heading in text
    for version in run.versions:
        assert re.search(rf"^  {re.escape(version)}\s+\d+\s", text, re.M), text


# --- AWS Lambda: the handler's lines are EMF documents the alarms can read ------------


LAMBDA_NAME = "sklearn-serverless-ci-predict"


@pytest.fixture
def lambda_handler(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """lambda_main.handler, imported afresh as a cold execution environment
    does, with the variables Lambda sets."""
    monkeypatch.setenv("AWS_LAMBDA_FUNCTION_NAME", LAMBDA_NAME)
    saved_main = sys.modules.get("main")
    sys.modules.pop("lambda_main", None)
    module: ModuleType = importlib.import_module("lambda_main")
    yield module.handler
    sys.modules.pop("lambda_main", None)
    sys.modules.pop("main", None)
    if saved_main is not None:
        sys.modules["main"] = saved_main


def _lambda_lines(
    handler: Any, events: list[dict[str, Any]], capsys: pytest.CaptureFixture[str]
) -> tuple[list[int], list[str]]:
    capsys.readouterr()
    statuses = [handler(event, None)["statusCode"] for event in events]
    lines = [
        line
        for line in capsys.readouterr().out.splitlines()
        if '"event":"request"' in line or '"event":"load"' in line
    ]
    return statuses, lines


def test_lambda_lines_are_valid_emf_documents_of_every_metric_alarms_and_dashboard_read(
    lambda_handler: Any,
    model_dir: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("MODEL_URI", str(model_dir))
    served, served_lines = _lambda_lines(
        lambda_handler,
        [
            http_api_event("POST", "/predict", {"features": SEED_FEATURES}),
            http_api_event("POST", "/predict", {"instances": [SEED_FEATURES] * 2}),
            http_api_event("POST", "/predict", {"features": [1.0]}),
            http_api_event("GET", "/nowhere"),
            http_api_event("POST", "/v2/models/seed/infer", _v2_body([SEED_FEATURES])),
        ],
        capsys,
    )
    # Another execution environment, whose store holds no model.
    sys.modules["main"]._service = None
    monkeypatch.setenv("MODEL_URI", str(tmp_path / "empty" / "seed"))
    failing, failing_lines = _lambda_lines(
        lambda_handler,
        [http_api_event("POST", "/predict", {"features": SEED_FEATURES})],
        capsys,
    )

    assert served == [200, 200, 400, 404, 200] and failing == [503]
    lines = served_lines + failing_lines
    assert len(lines) == 6 + 2  # six requests, two loads
    published: set[EmfSeries] = set()
    for line in lines:
        assert emf_problems(line) == [], line
        document = json.loads(line)
        assert document["function"] == LAMBDA_NAME
        published |= emf_series(document)
    declared = {
        EmfSeries(NAMESPACE, metric.name, frozenset(dimensions))
        for metric in EMF_METRICS
        for dimensions in metric.dimensions
    }
    assert published == declared  # every declared metric, and nothing else
    monitoring = load_monitoring_yml()
    resources = monitoring["Resources"]
    body = json.loads(
        substitute(
            param_defaults(
                resources["PredictDashboard"]["Properties"]["DashboardBody"]["Fn::Sub"]
            ),
            {"AWS::Region": "eu-west-1", "PredictLambdaFunction": LAMBDA_NAME},
        )
    )
    widgets, queries = dashboard_refs(body)
    for ref in [*alarm_refs(resources), *widgets]:
        if ref.namespace == "AWS/Lambda":
            assert ref.name in LAMBDA_METRICS and ref.dimensions == {"FunctionName"}
        else:
            assert EmfSeries(ref.namespace, ref.name, ref.dimensions) in published, ref
    # The Logs Insights widgets read fields the request lines have.
    request_lines = [json.loads(line) for line in lines if '"event":"request"' in line]
    fields = set().union(*request_lines)
    for query in queries:
        if "@type" in query:
            continue  # Lambda's REPORT lines: tests/deploy checks their fields
        names = set(re.findall(r"\b([a-z_]+)\b(?!\()", query.split("|", 1)[1]))
        keywords = {"filter", "and", "stats", "as", "by", "request"}
        aliases = set(re.findall(r"\bas ([a-z_0-9]+)", query))
        assert names - keywords - aliases <= fields, query
