"""infra/monitoring.tf and infra/lambda/monitoring.yml, read as Terraform and
CloudFormation would: log-based metrics whose filters name the function's own
Cloud Run log, labels that stay bounded, alert policies that wait for new
metrics and notify the variable's channels, a dashboard in the Monitoring API's
normal form whose every chart reads a declared metric; CloudWatch alarms and a
dashboard that read only what the Embedded Metric Format declares or Lambda
publishes, valid for cfn-lint and resolved by the Serverless CLI.

tests/e2e/test_monitoring.py evaluates the same declarations on real log lines.
"""

from __future__ import annotations

import itertools
import json
import re
from pathlib import Path
from typing import Any

import hcl2
import pytest
import yaml

from skserve.metrics import EMF_METRICS, NAMESPACE
from tests.monitoring_support import (
    CLOUD_RUN_METRICS,
    CLOUD_RUN_RESOURCE_LABELS,
    INFRA,
    LAMBDA_METRICS,
    MONITORING_TF,
    MONITORING_YML,
    EmfSeries,
    MonitoringTerm,
    Terraform,
    alarm_refs,
    bucket_bounds,
    dashboard_refs,
    group_by_label,
    load_monitoring_yml,
    logging_terms,
    monitoring_terms,
    param_defaults,
    substitute,
)
from tests.support import REPO

PROJECT = "acme-ml"
FUNCTION_NAME = "sklearn-predict"
LAMBDA_NAME = "sklearn-serverless-ci-predict"

# The log fields label extractors may read: low-cardinality values only
# (never request_id, a trace, a URL or a latency).
LABEL_FIELDS = {
    "httpRequest.status",
    "jsonPayload.code",
    "jsonPayload.protocol",
    "jsonPayload.runtime",
    "jsonPayload.outcome",
    "jsonPayload.model_version",
}


@pytest.fixture(scope="module")
def terraform() -> Terraform:
    return Terraform({"project_id": PROJECT})


def _raw(terraform: Terraform, rtype: str, name: str) -> dict[str, Any]:
    return terraform.resources[(rtype, name)]


# --- Log-based metrics --------------------------------------------------------------


def test_every_log_metric_filter_reads_the_functions_own_stdout_lines(
    terraform: Terraform,
) -> None:
    for name, metric in terraform.log_metrics().items():
        terms = logging_terms(metric.filter)
        assert ("resource.type", "=", "cloud_run_revision") in terms, name
        assert ("resource.labels.service_name", "=", FUNCTION_NAME) in terms, name
        log = f"projects/{PROJECT}/logs/run.googleapis.com%2Fstdout"
        assert ("logName", "=", log) in terms, name
        events = {value for path, _, value in terms if path == "jsonPayload.event"}
        assert events in ({"request"}, {"load"}), name


def test_log_metric_names_follow_cloud_loggings_rules_and_name_the_function(
    terraform: Terraform,
) -> None:
    for metric in terraform.log_metrics().values():
        assert re.fullmatch(r"[A-Za-z0-9_\-.,+!*',()%/]{1,100}", metric.name)
        assert metric.name.startswith(f"{FUNCTION_NAME}/")


def test_distributions_have_a_value_extractor_and_buckets_counters_count(
    terraform: Terraform, variables_tf: dict[str, Any]
) -> None:
    timeout_ms = variables_tf["timeout_seconds"]["default"] * 1000
    kinds = {}
    for name, metric in terraform.log_metrics().items():
        assert metric.metric_kind == "DELTA", name
        kinds[name] = metric.value_type
        if metric.value_type == "DISTRIBUTION":
            assert re.fullmatch(
                r"EXTRACT\(jsonPayload\.\w+_ms\)", metric.value_extractor
            )
            bounds = bucket_bounds(metric.bucket_options)
            assert len(bounds) <= 201  # Cloud Monitoring's bucket count limit
            # Sub-millisecond answers and the function's whole timeout fit.
            assert bounds[0] <= 0.1 and bounds[-1] >= timeout_ms, name
            ratios = {round(b / a, 9) for a, b in itertools.pairwise(bounds)}
            assert max(ratios) <= 1.25, name  # percentiles within 12.5%
        else:
            assert metric.value_type == "INT64", name
            assert metric.value_extractor is None and metric.bucket_options is None
    assert kinds == {
        "prediction_latencies": "DISTRIBUTION",
        "model_latencies": "DISTRIBUTION",
        "requests": "INT64",
        "model_loads": "INT64",
        "cold_starts": "INT64",
    }


def test_labels_have_extractors_of_bounded_fields_and_versions_only_on_latency(
    terraform: Terraform,
) -> None:
    for name, metric in terraform.log_metrics().items():
        assert set(metric.label_extractors) == set(metric.labels), name
        for label, extractor in metric.label_extractors.items():
            found = re.fullmatch(r"EXTRACT\(([\w.]+)\)", extractor)
            assert found and found[1] in LABEL_FIELDS, (name, label)
        assert set(metric.labels.values()) <= {"STRING", "INT64", "BOOL"}
        if "model_version" in metric.labels:
            assert metric.value_type == "DISTRIBUTION", name
    labels = {name: set(m.labels) for name, m in terraform.log_metrics().items()}
    assert labels == {
        "prediction_latencies": {"model_version", "protocol"},
        "model_latencies": {"model_version", "runtime"},
        "requests": {"status", "code", "protocol"},
        "model_loads": {"outcome", "runtime"},
        "cold_starts": set(),
    }


def test_monitoring_and_logging_apis_are_enabled_before_anything_uses_them(
    terraform: Terraform,
) -> None:
    service = _raw(terraform, "google_project_service", "monitoring")
    assert "logging.googleapis.com" in service["for_each"]
    assert "monitoring.googleapis.com" in service["for_each"]
    assert "var.enable_apis" in service["for_each"]
    for (rtype, name), body in terraform.resources.items():
        if rtype in ("google_logging_metric", "google_monitoring_dashboard"):
            assert "${google_project_service.monitoring}" in body["depends_on"], name


def test_the_dashboard_and_policies_bring_every_metric_along_when_targeted(
    terraform: Terraform,
) -> None:
    """`terraform apply -target` of the dashboard and the policies
    (docs/operating.md, for a function deployed with gcloud) creates every
    log-based metric too."""
    (dashboard,) = terraform.of_type("google_monitoring_dashboard").values()
    brought = set(dashboard["depends_on"])

    assert {
        f"${{google_logging_metric.{name}}}" for name in terraform.log_metrics()
    } <= brought
    assert not re.search(
        r"google_cloudfunctions2_function|google_storage", MONITORING_TF.read_text()
    )


# --- Alert policies ---------------------------------------------------------------


def _policies(terraform: Terraform) -> dict[str, dict[str, Any]]:
    return terraform.of_type("google_monitoring_alert_policy")


def test_alert_policies_wait_for_new_log_metrics_and_notify_the_variables_channels(
    terraform: Terraform,
) -> None:
    sleep = terraform.value(_raw(terraform, "time_sleep", "log_metrics_ready"))
    waited = set(sleep["triggers"].values())
    assert sleep["create_duration"] == terraform.variables["log_metrics_wait"]

    assert set(_policies(terraform)) == {"error_ratio", "latency_p99"}
    for name, raw in _policies(terraform).items():
        assert raw["depends_on"] == ["${time_sleep.log_metrics_ready}"], name
        assert raw["notification_channels"] == "${var.notification_channels}"
        policy = terraform.value(raw)
        for condition in policy["conditions"]:
            (threshold,) = condition["condition_threshold"]
            for key in ("filter", "denominator_filter"):
                if key not in threshold:
                    continue
                (metric_type,) = {
                    t.value
                    for t in monitoring_terms(threshold[key])
                    if t.selector == "metric.type"
                }
                # The policy is created only once the metric it reads is known.
                assert metric_type.removeprefix("logging.googleapis.com/user/") in (
                    waited
                ), name
        assert policy["documentation"][0]["content"], name


def test_error_ratio_policy_divides_5xx_by_all_requests_alike_aligned(
    terraform: Terraform,
) -> None:
    policy = terraform.value(
        _raw(terraform, "google_monitoring_alert_policy", "error_ratio")
    )
    (threshold,) = policy["conditions"][0]["condition_threshold"]
    numerator = monitoring_terms(threshold["filter"])
    denominator = monitoring_terms(threshold["denominator_filter"])

    assert [t for t in numerator if t.selector == "metric.label"] == [
        MonitoringTerm("metric.label", "status", ">=", 500.0)
    ]
    assert [t for t in numerator if t.selector != "metric.label"] == denominator
    assert threshold["aggregations"] == threshold["denominator_aggregations"]
    assert threshold["threshold_value"] == 0.05 and threshold["duration"] == "300s"


def test_latency_policy_needs_five_minutes_above_the_p99_threshold(
    terraform: Terraform,
) -> None:
    policy = terraform.value(
        _raw(terraform, "google_monitoring_alert_policy", "latency_p99")
    )
    (threshold,) = policy["conditions"][0]["condition_threshold"]
    (aggregation,) = threshold["aggregations"]

    assert aggregation == {
        "alignment_period": "60s",
        "per_series_aligner": "ALIGN_DELTA",
        "cross_series_reducer": "REDUCE_PERCENTILE_99",
    }
    assert threshold["duration"] == "300s"
    assert threshold["threshold_value"] == terraform.variables["alert_latency_p99_ms"]


# --- Dashboard ----------------------------------------------------------------------


def _walk(node: Any, path: str = "") -> Any:
    yield path, node
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _walk(value, f"{path}.{key}")
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _walk(value, f"{path}[{i}]")


def test_dashboard_json_is_in_the_monitoring_apis_normal_form(
    terraform: Terraform,
) -> None:
    """What the API returns is what Terraform compares against: a key the API
    drops (a zero, false, an empty list) or rewrites would show a change on
    every plan."""
    dashboard = terraform.dashboard()

    for path, value in _walk(dashboard):
        assert value not in (0, "", [], {}, None, False), path
        if path.endswith("]"):
            continue  # a list's element: its list's key was checked
        key = path.rsplit(".", 1)[-1]
        assert not key or re.fullmatch(r"[a-z][A-Za-z0-9]*", key), path
        if key in ("alignmentPeriod", "minAlignmentPeriod"):
            assert re.fullmatch(r"[1-9]\d*s", value), path
        if key in ("perSeriesAligner", "crossSeriesReducer", "plotType", "scale"):
            assert re.fullmatch(r"[A-Z][A-Z0-9_]*", value), path
        if key == "groupByFields":
            for group in value:
                group_by_label(group)  # the console's quoted form
    layout = dashboard["mosaicLayout"]
    assert isinstance(layout["columns"], int)
    cells: set[tuple[int, int]] = set()
    for tile in layout["tiles"]:
        x, y = tile.get("xPos", 0), tile.get("yPos", 0)
        assert x + tile["width"] <= layout["columns"]
        covered = {
            (i, j)
            for i in range(x, x + tile["width"])
            for j in range(y, y + tile["height"])
        }
        assert not covered & cells, f"tiles overlap at {tile['widget']['title']}"
        cells |= covered


def _dashboard_filters(dashboard: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """(title, {"filter", "aggregation"}) of every time series a chart draws."""
    found = []
    for tile in dashboard["mosaicLayout"]["tiles"]:
        widget = tile["widget"]
        for dataset in widget["xyChart"]["dataSets"]:
            query = dataset["timeSeriesQuery"]
            if "timeSeriesFilterRatio" in query:
                ratio = query["timeSeriesFilterRatio"]
                found += [
                    (widget["title"], ratio[p]) for p in ("numerator", "denominator")
                ]
            else:
                found.append((widget["title"], query["timeSeriesFilter"]))
    return found


def test_every_dashboard_chart_reads_a_declared_metric_and_its_labels(
    terraform: Terraform,
) -> None:
    declared = {m.metric_type: m for m in terraform.log_metrics().values()}
    read = set()
    for title, spec in _dashboard_filters(terraform.dashboard()):
        terms = monitoring_terms(spec["filter"])
        (metric_type,) = {t.value for t in terms if t.selector == "metric.type"}
        assert ("resource.type", "cloud_run_revision") in {
            (t.selector, t.value) for t in terms
        }, title
        groups = [
            group_by_label(f) for f in spec["aggregation"].get("groupByFields", [])
        ]
        metric_labels = {t.key for t in terms if t.selector == "metric.label"}
        metric_labels |= {label for scope, label in groups if scope == "metric"}
        resource_labels = {t.key for t in terms if t.selector == "resource.label"}
        resource_labels |= {label for scope, label in groups if scope == "resource"}
        if metric_type in declared:
            assert metric_labels <= set(declared[metric_type].labels), title
        else:
            assert metric_type in CLOUD_RUN_METRICS, title
            assert metric_labels <= CLOUD_RUN_METRICS[metric_type], title
            # The platform's metrics of this function only.
            assert (
                "resource.label",
                "service_name",
                FUNCTION_NAME,
            ) in {(t.selector, t.key, t.value) for t in terms}, title
        assert resource_labels <= CLOUD_RUN_RESOURCE_LABELS, title
        read.add(metric_type)
    # Every log-based metric is on the dashboard, and the platform's own two.
    assert read == set(declared) | set(CLOUD_RUN_METRICS)


def test_dashboard_draws_latency_percentiles_by_version_and_the_platforms_figures(
    terraform: Terraform,
) -> None:
    metrics = terraform.log_metrics()
    drawn = {
        (
            spec["filter"].split('"')[1],
            spec["aggregation"].get("crossSeriesReducer"),
            tuple(spec["aggregation"].get("groupByFields", [])),
        )
        for _, spec in _dashboard_filters(terraform.dashboard())
    }
    latency = metrics["prediction_latencies"].metric_type
    by_version = ('metric.label."model_version"',)

    for p in (50, 95, 99):
        assert (latency, f"REDUCE_PERCENTILE_{p}", by_version) in drawn
    requests = metrics["requests"].metric_type
    assert (
        requests,
        "REDUCE_SUM",
        ('metric.label."status"', 'metric.label."code"'),
    ) in drawn
    assert (requests, "REDUCE_SUM", ('metric.label."code"',)) in drawn
    assert {t[0] for t in drawn} >= {
        metrics["model_loads"].metric_type,
        metrics["cold_starts"].metric_type,
        "run.googleapis.com/container/instance_count",
        "run.googleapis.com/container/memory/utilizations",
    }


# --- Variables -------------------------------------------------------------------


@pytest.fixture(scope="module")
def variables_tf() -> dict[str, Any]:
    with (INFRA / "variables.tf").open() as handle:
        doc = hcl2.load(handle)
    return {
        name.strip('"'): {k: v for k, v in spec.items()}
        for block in doc["variable"]
        for name, spec in block.items()
    }


def test_monitoring_variables_are_typed_described_used_and_every_reference_declared(
    variables_tf: dict[str, Any],
) -> None:
    """monitoring.tf's own settings sit in variables.tf with the others (the
    module layout), and it reads no variable that is not declared there."""
    own = {
        "notification_channels",
        "alert_error_ratio",
        "alert_latency_p99_ms",
        "log_metrics_wait",
    }
    referenced = set(re.findall(r"\bvar\.([a-z0-9_]+)", MONITORING_TF.read_text()))
    main = set(re.findall(r"\bvar\.([a-z0-9_]+)", (INFRA / "main.tf").read_text()))

    assert referenced <= set(variables_tf)
    assert own <= referenced  # each is used
    assert not own & main  # and only by the monitoring
    for name in own:
        assert variables_tf[name].get("type"), name
        assert len(variables_tf[name].get("description", "")) > 20, name


# --- AWS: the CloudWatch alarms and dashboard -------------------------------------

DECLARED_EMF = {
    EmfSeries(NAMESPACE, metric.name, frozenset(dimensions))
    for metric in EMF_METRICS
    for dimensions in metric.dimensions
}
UNITS = {metric.name: metric.unit for metric in EMF_METRICS}


def _dashboard_body(resources: dict[str, Any]) -> dict[str, Any]:
    template = resources["PredictDashboard"]["Properties"]["DashboardBody"]["Fn::Sub"]
    return json.loads(
        substitute(
            param_defaults(template),
            {"AWS::Region": "eu-west-1", "PredictLambdaFunction": LAMBDA_NAME},
        )
    )


def test_alarms_and_dashboard_read_only_declared_emf_metrics_or_lambdas_own() -> None:
    resources = load_monitoring_yml()["Resources"]
    widgets, _ = dashboard_refs(_dashboard_body(resources))
    refs = [*alarm_refs(resources), *widgets]

    read = set()
    for ref in refs:
        if ref.namespace == "AWS/Lambda":
            assert ref.name in LAMBDA_METRICS and ref.dimensions == {"FunctionName"}
            continue
        series = EmfSeries(ref.namespace, ref.name, ref.dimensions)
        assert series in DECLARED_EMF, ref
        read.add(ref.name)
        # Percentiles of times; sums of counts (and the 0/1 error's average).
        unit = UNITS[ref.name]
        if re.fullmatch(r"p\d+(\.\d+)?", ref.stat):
            assert unit == "Milliseconds", ref
        elif ref.stat == "Average":
            assert ref.name == "server_errors", ref
        else:
            assert ref.stat in ("Sum", "Maximum"), ref
    # Every embedded metric is read by something (CloudWatch bills each).
    assert read == {metric.name for metric in EMF_METRICS}


def test_alarms_cover_server_errors_p99_latency_failed_invocations_and_throttles() -> (
    None
):
    resources = load_monitoring_yml()["Resources"]
    alarms = {(r.namespace, r.name, r.stat): r.where for r in alarm_refs(resources)}

    assert set(alarms) == {
        (NAMESPACE, "server_errors", "Average"),
        (NAMESPACE, "latency_ms", "p99"),
        ("AWS/Lambda", "Errors", "Sum"),
        ("AWS/Lambda", "Throttles", "Sum"),
    }
    for name in alarms.values():
        spec = resources[name]["Properties"]
        assert (
            spec["AlarmActions"] == spec["OKActions"] == [{"Ref": "PredictAlarmTopic"}]
        )
        assert spec["TreatMissingData"] == "notBreaching"
        for dimension in spec["Dimensions"]:
            assert dimension["Value"] == {"Ref": "PredictLambdaFunction"}
    latency = resources[alarms[(NAMESPACE, "latency_ms", "p99")]]["Properties"]
    # Five minutes in a row, as the Google policy: one cold start is one minute.
    assert (latency["Period"], latency["EvaluationPeriods"]) == (60, 5)
    assert latency["DatapointsToAlarm"] == 5


def test_dashboard_queries_read_lambdas_report_fields() -> None:
    _, queries = dashboard_refs(_dashboard_body(load_monitoring_yml()["Resources"]))
    report = [q for q in queries if "@type" in q]
    # Lambda's REPORT line fields, as Logs Insights discovers them.
    documented = {
        "@type",
        "@timestamp",
        "@requestId",
        "@duration",
        "@billedDuration",
        "@memorySize",
        "@maxMemoryUsed",
        "@initDuration",
    }

    assert len(report) == 1
    assert set(re.findall(r"@\w+", report[0])) <= documented
    for query in queries:
        assert query.startswith(f"SOURCE '/aws/lambda/{LAMBDA_NAME}' | ")


def _template(resources: dict[str, Any], outputs: dict[str, Any]) -> dict[str, Any]:
    """The resources in a template beside the function serverless.yml makes
    (its logical id: PredictLambdaFunction, for the function `predict`)."""
    function = {
        "Type": "AWS::Lambda::Function",
        "Properties": {
            "Handler": "lambda_main.handler",
            "Runtime": "python3.12",
            "Role": "arn:aws:iam::123456789012:role/sklearn-serverless",
            "Code": {"S3Bucket": "deployment-bucket", "S3Key": "predict.zip"},
        },
    }
    return {
        "AWSTemplateFormatVersion": "2010-09-09",
        "Resources": {"PredictLambdaFunction": function, **resources},
        "Outputs": outputs,
    }


def test_monitoring_resources_pass_cfn_lint() -> None:
    from cfnlint.api import lint

    text = param_defaults(MONITORING_YML.read_text())
    text = text.replace("${self:service}", "sklearn-serverless")
    text = text.replace("${sls:stage}", "ci")
    monitoring = yaml.safe_load(text)
    template = _template(monitoring["Resources"], monitoring["Outputs"])

    problems = lint(json.dumps(template), regions=["us-east-1", "eu-west-1"])

    assert [str(p) for p in problems] == []


def test_serverless_yml_includes_the_monitoring_resources() -> None:
    config = yaml.safe_load(
        re.sub(r"\$\{[^}]*\}", "x", (REPO / "serverless.yml").read_text())
    )
    text = (REPO / "serverless.yml").read_text()

    assert "predict" in config["functions"]  # PredictLambdaFunction
    assert re.search(
        r"^resources:\n  - \$\{file\(\./infra/lambda/monitoring\.yml\)\}$", text, re.M
    ), "serverless.yml does not include infra/lambda/monitoring.yml"


@pytest.mark.e2e
def test_serverless_cli_resolves_the_monitoring_resources(tmp_path: Path) -> None:
    from tests.deploy.test_lambda import SERVICE_ARGS, copy_service, osls

    service = copy_service(tmp_path / "service")
    result = osls(service, "print", "--format", "json", *SERVICE_ARGS)

    assert result.returncode == 0, result.stdout + result.stderr
    config = json.loads(result.stdout[result.stdout.index("{") :])
    resources = config["resources"]["Resources"]
    assert set(load_monitoring_yml()["Resources"]) <= set(resources)
    alarm = resources["PredictLatencyP99Alarm"]["Properties"]
    assert alarm["AlarmName"] == "sklearn-serverless-ci-latency-p99"
    assert alarm["Threshold"] == 1000
    body = resources["PredictDashboard"]["Properties"]["DashboardBody"]["Fn::Sub"]
    assert "${param:" not in body and "${PredictLambdaFunction}" in body


# --- The evaluators the checks rely on refuse what they cannot evaluate ---------------


@pytest.mark.parametrize(
    "query",
    [
        'jsonPayload.code="a" OR jsonPayload.code="b"',
        'NOT jsonPayload.event="request"',
        'jsonPayload.message=~"x"',
        "free text",
    ],
)
def test_logging_query_subset_refuses_what_it_does_not_evaluate(query: str) -> None:
    with pytest.raises(ValueError):
        logging_terms(query)


def test_monitoring_filter_subset_reads_quoted_and_bare_labels() -> None:
    terms = monitoring_terms(
        'metric.type="a/b" AND resource.label."service_name"="f" '
        "metric.label.status>=500"
    )

    assert terms == [
        MonitoringTerm("metric.type", None, "=", "a/b"),
        MonitoringTerm("resource.label", "service_name", "=", "f"),
        MonitoringTerm("metric.label", "status", ">=", 500.0),
    ]
    with pytest.raises(ValueError):
        monitoring_terms('metric.type="a" OR metric.type="b"')
