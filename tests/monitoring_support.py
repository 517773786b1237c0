"""Test helpers for operating the function: infra/monitoring.tf read with
python-hcl2 and its strings evaluated, log lines as Cloud Logging stores them,
the subset of the Logging query language and of Monitoring filters the
configuration uses (anything else is refused, never guessed), and the CloudWatch
Embedded Metric Format's rules."""

from __future__ import annotations

import json
import math
import operator
import re
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import hcl2
import yaml

from tests.support import REPO

INFRA = REPO / "infra"
MONITORING_TF = INFRA / "monitoring.tf"
MONITORING_YML = INFRA / "lambda" / "monitoring.yml"

# --- HCL: python-hcl2's text of each value, evaluated ---------------------------


def _unquote(text: str) -> str:
    return text[1:-1] if len(text) >= 2 and text[0] == text[-1] == '"' else text


def _strip(node: Any) -> Any:
    """python-hcl2's tree without its markers, map keys and labels unquoted
    (values keep their HCL text: Terraform.value evaluates them)."""
    if isinstance(node, dict):
        return {
            _unquote(key): _strip(value)
            for key, value in node.items()
            if key not in ("__is_block__", "__comments__")
        }
    if isinstance(node, list):
        return [_strip(value) for value in node]
    return node


_REFERENCE = re.compile(r"[a-z_][a-z0-9_]*(?:\.[a-z_][a-z0-9_]*)+")
_ESCAPES = {'"': '"', "\\": "\\", "n": "\n", "t": "\t", "r": "\r"}


class Terraform:
    """infra/monitoring.tf with its variables (and variables.tf's defaults):
    every string it holds evaluated as Terraform would, for the references
    and template forms the file uses; any other expression is refused."""

    def __init__(self, values: Mapping[str, Any] | None = None) -> None:
        self.doc = _strip(hcl2.load(MONITORING_TF.open()))
        defaults: dict[str, Any] = {}
        for path in (INFRA / "variables.tf", MONITORING_TF):
            for block in _strip(hcl2.load(path.open())).get("variable", []):
                for name, spec in block.items():
                    if "default" in spec:
                        defaults[name] = spec["default"]
        self.declared = {
            name for block in self.doc.get("variable", []) for name in block
        }
        self.variables: dict[str, Any] = {}
        self.variables = {
            **{name: self.value(raw) for name, raw in defaults.items()},
            **(values or {}),
        }
        self.locals = {k: v for block in self.doc["locals"] for k, v in block.items()}
        self.resources = {
            (rtype, name): body
            for block in self.doc["resource"]
            for rtype, named in block.items()
            for name, body in named.items()
        }

    def of_type(self, rtype: str) -> dict[str, dict[str, Any]]:
        return {n: b for (t, n), b in self.resources.items() if t == rtype}

    def value(self, raw: Any) -> Any:
        """The value of python-hcl2's text `raw`, evaluated."""
        if isinstance(raw, dict):
            return {key: self.value(value) for key, value in raw.items()}
        if isinstance(raw, list):
            return [self.value(value) for value in raw]
        if not isinstance(raw, str):
            return raw  # numbers and booleans
        if raw.startswith("${") and raw.endswith("}"):
            inner = raw[2:-1]
            if not _REFERENCE.fullmatch(inner):
                raise NotImplementedError(f"expression {raw!r}")
            return self.reference(inner)
        if len(raw) >= 2 and raw[0] == raw[-1] == '"':
            text = raw[1:-1]
            if text.startswith("<<"):
                return self._heredoc(text)
            return self._template(text, escapes=True)
        return raw  # a bare word (a type name)

    def reference(self, ref: str) -> Any:
        """var.NAME, local.NAME[.KEY...] or TYPE.NAME.ATTRIBUTE."""
        head, *rest = ref.split(".")
        if head == "var":
            (name,) = rest
            if name not in self.variables:
                raise KeyError(f"variable {name} has no value here")
            return self.variables[name]
        if head == "local":
            node: Any = self.locals
            for key in rest:
                node = node[key]
            return self.value(node)
        if len(rest) == 1:
            return f"<{ref}>"  # a resource's address (depends_on)
        rtype, name, attribute = ref.split(".")
        body = self.resources[(rtype, name)]
        if attribute == "id" and rtype == "google_logging_metric":
            attribute = "name"  # the provider's id of a log-based metric
        return self.value(body[attribute])

    def _template(self, text: str, *, escapes: bool) -> str:
        out, i = [], 0
        while i < len(text):
            if escapes and text[i] == "\\":
                out.append(_ESCAPES[text[i + 1]])
                i += 2
            elif text.startswith("$${", i):
                out.append("${")
                i += 3
            elif text.startswith("${", i):
                end = text.index("}", i)
                inner = text[i + 2 : end]
                if not _REFERENCE.fullmatch(inner):
                    raise NotImplementedError(f"interpolation ${{{inner}}}")
                out.append(_scalar(self.reference(inner)))
                i = end + 1
            else:
                out.append(text[i])
                i += 1
        return "".join(out)

    def _heredoc(self, text: str) -> str:
        header, _, body = text.partition("\n")
        marker = header.lstrip("<-")
        lines = body.split("\n")
        assert lines[-1].strip() == marker, f"heredoc without its end: {text[:60]}"
        lines = lines[:-1]
        if header.startswith("<<-"):
            indent = min(
                (len(line) - len(line.lstrip(" ")) for line in lines if line.strip()),
                default=0,
            )
            lines = [line[indent:] for line in lines]
        return self._template("\n".join(lines) + "\n", escapes=False)

    def log_metrics(self) -> dict[str, LogMetric]:
        """Every google_logging_metric, by resource name."""
        found = {}
        for name, raw in self.of_type("google_logging_metric").items():
            body = self.value(raw)
            (descriptor,) = body["metric_descriptor"]
            found[name] = LogMetric(
                name=body["name"],
                filter=body["filter"],
                value_type=descriptor["value_type"],
                metric_kind=descriptor["metric_kind"],
                labels={
                    label["key"]: label.get("value_type", "STRING")
                    for label in descriptor.get("labels", [])
                },
                label_extractors=body.get("label_extractors", {}),
                value_extractor=body.get("value_extractor"),
                bucket_options=(body.get("bucket_options") or [None])[0],
            )
        return found

    def dashboard(self) -> dict[str, Any]:
        (raw,) = self.of_type("google_monitoring_dashboard").values()
        return json.loads(self.value(raw["dashboard_json"]))


def _scalar(value: Any) -> str:
    """How Terraform writes a value into a string."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


# --- Cloud Logging: a stdout line as a LogEntry, and the query language --------

# Fields Cloud Logging lifts out of a structured line into the LogEntry
# (https://cloud.google.com/logging/docs/structured-logging, "special fields").
_LIFTED = {
    "severity": "severity",
    "httpRequest": "httpRequest",
    "logging.googleapis.com/trace": "trace",
    "logging.googleapis.com/spanId": "spanId",
    "logging.googleapis.com/trace_sampled": "traceSampled",
    "logging.googleapis.com/labels": "labels",
    "logging.googleapis.com/insertId": "insertId",
    "logging.googleapis.com/operation": "operation",
    "logging.googleapis.com/sourceLocation": "sourceLocation",
    "time": "timestamp",
    "timestamp": "timestamp",
}


def cloud_run_entry(
    line: str, *, project: str, service: str, log: str = "stdout"
) -> dict[str, Any]:
    """`line`, written to stdout by a revision of Cloud Run service `service`,
    as Cloud Logging stores it: a JSON object's special fields lifted into the
    LogEntry and the rest (message included) in jsonPayload; other text in
    textPayload."""
    entry: dict[str, Any] = {
        "logName": f"projects/{project}/logs/run.googleapis.com%2F{log}",
        "resource": {
            "type": "cloud_run_revision",
            "labels": {
                "project_id": project,
                "service_name": service,
                "revision_name": f"{service}-00001-abc",
                "configuration_name": service,
                "location": "us-central1",
            },
        },
    }
    try:
        data = json.loads(line)
    except ValueError:
        data = None
    if not isinstance(data, dict):
        entry["textPayload"] = line.rstrip("\n")
        return entry
    payload = {}
    for key, value in data.items():
        if key in _LIFTED:
            entry[_LIFTED[key]] = value
        else:
            payload[key] = value
    entry["jsonPayload"] = payload
    return entry


_MISSING = object()


def field_value(entry: Mapping[str, Any], path: str) -> Any:
    """The value at a dotted LogEntry path, or _MISSING."""
    node: Any = entry
    for key in path.split("."):
        if not isinstance(node, Mapping) or key not in node:
            return _MISSING
        node = node[key]
    return node


_TERM = re.compile(
    r"(?P<path>[A-Za-z_][\w]*(?:\.[A-Za-z_][\w]*)*)\s*"
    r"(?P<op>>=|<=|!=|=|>|<|:)\s*"
    r'(?P<value>"(?:[^"\\]|\\.)*"|\*|-?\d+(?:\.\d+)?|true|false)'
)


def _literal(text: str) -> Any:
    if text.startswith('"'):
        return json.loads(text)
    if text in ("true", "false"):
        return text == "true"
    if text == "*":
        return _MISSING
    return float(text)


def logging_terms(query: str) -> list[tuple[str, str, Any]]:
    """A Logging query of comparisons joined by newlines or AND, as terms;
    ValueError for anything else (OR, NOT, functions, free text)."""
    terms = []
    for line in query.splitlines():
        for part in re.split(r"\s+AND\s+", line.strip()):
            if not part:
                continue
            found = _TERM.fullmatch(part)
            if not found:
                raise ValueError(f"not in the supported query subset: {part!r}")
            terms.append((found["path"], found["op"], _literal(found["value"])))
    return terms


_OPS: dict[str, Callable[[Any, Any], bool]] = {
    "=": operator.eq,
    "!=": operator.ne,
    ">=": operator.ge,
    "<=": operator.le,
    ">": operator.gt,
    "<": operator.lt,
}


def _compare(value: Any, op: str, literal: Any) -> bool:
    """One comparison, typed as Cloud Logging types JSON values: a missing
    field matches nothing, and a string never equals a number."""
    if value is _MISSING:
        return False
    if op == ":":
        if literal is _MISSING:
            return True  # FIELD:* — the field is there
        return str(literal).lower() in str(value).lower()
    if isinstance(literal, bool) or isinstance(value, bool):
        if not (isinstance(literal, bool) and isinstance(value, bool)):
            return False
        if op not in ("=", "!="):
            raise ValueError(f"{op} on a boolean")
    elif isinstance(literal, float):
        if not isinstance(value, int | float):
            return False
    elif not isinstance(value, str):
        return False
    return _OPS[op](value, literal)


def logging_match(query: str, entry: Mapping[str, Any]) -> bool:
    """Whether `entry` (a LogEntry) matches `query`."""
    return all(
        _compare(field_value(entry, path), op, literal)
        for path, op, literal in logging_terms(query)
    )


_EXTRACT = re.compile(r"EXTRACT\((?P<path>[A-Za-z_][\w.]*)\)")


def extract(expression: str, entry: Mapping[str, Any]) -> Any:
    """EXTRACT(field)'s value for `entry`, or None when the field is missing."""
    found = _EXTRACT.fullmatch(expression)
    if not found:
        raise ValueError(f"extractor not in the supported subset: {expression!r}")
    value = field_value(entry, found["path"])
    return None if value is _MISSING else value


def label_value(value: Any, value_type: str) -> Any:
    """An extracted value converted to a label's type; the type's default when
    the field is missing or does not convert (as Cloud Logging does)."""
    if value_type == "STRING":
        if value is None:
            return ""
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, float) and value.is_integer():
            return str(int(value))
        return str(value)
    if value_type == "INT64":
        try:
            return int(value)
        except (TypeError, ValueError):
            return 0
    if value_type == "BOOL":
        return value is True or value == "true"
    raise ValueError(f"label type {value_type}")


@dataclass(frozen=True)
class Point:
    """One entry's contribution to a log-based metric: its labels and value
    (1 for a counter, the extracted number for a distribution)."""

    labels: dict[str, Any]
    value: float


@dataclass(frozen=True)
class LogMetric:
    name: str
    filter: str
    value_type: str
    metric_kind: str
    labels: dict[str, str]
    label_extractors: dict[str, str] = field(default_factory=dict)
    value_extractor: str | None = None
    bucket_options: dict[str, Any] | None = None

    @property
    def metric_type(self) -> str:
        return f"logging.googleapis.com/user/{self.name}"

    def points(self, entries: Iterable[Mapping[str, Any]]) -> list[Point]:
        """What this metric records for `entries`."""
        found = []
        for entry in entries:
            if not logging_match(self.filter, entry):
                continue
            labels = {
                key: label_value(extract(self.label_extractors[key], entry), kind)
                for key, kind in self.labels.items()
            }
            if self.value_type == "DISTRIBUTION":
                assert self.value_extractor, self.name
                value = extract(self.value_extractor, entry)
                if not isinstance(value, int | float) or isinstance(value, bool):
                    continue  # Cloud Logging skips an entry it cannot extract from
                found.append(Point(labels, float(value)))
            else:
                found.append(Point(labels, 1.0))
        return found


def bucket_bounds(options: Mapping[str, Any]) -> list[float]:
    """The finite bucket boundaries of a distribution's bucket options."""
    if "exponential_buckets" in options:
        (spec,) = options["exponential_buckets"]
        n, growth, scale = (
            spec["num_finite_buckets"],
            spec["growth_factor"],
            spec["scale"],
        )
        return [scale * growth**i for i in range(n + 1)]
    if "explicit_buckets" in options:
        (spec,) = options["explicit_buckets"]
        return list(spec["bounds"])
    (spec,) = options["linear_buckets"]
    return [
        spec["offset"] + spec["width"] * i
        for i in range(spec["num_finite_buckets"] + 1)
    ]


# --- Cloud Monitoring filters (dashboards, alert policies) ------------------------

_MONITORING_TERM = re.compile(
    r"(?:(?P<type>metric\.type|resource\.type)"
    r'|(?P<scope>metric|resource)\.labels?\.(?:"(?P<quoted>\w+)"|(?P<bare>\w+)))'
    r"\s*(?P<op>>=|<=|!=|=|>|<)\s*"
    r'(?P<value>"(?:[^"\\]|\\.)*"|-?\d+(?:\.\d+)?|true|false)'
)


@dataclass(frozen=True)
class MonitoringTerm:
    selector: str  # metric.type, resource.type, metric.label, resource.label
    key: str | None  # the label, for a label selector
    op: str
    value: Any


def monitoring_terms(query: str) -> list[MonitoringTerm]:
    """A Monitoring filter of comparisons joined by spaces or AND; ValueError
    for anything else."""
    terms, rest = [], query.strip()
    while rest:
        found = _MONITORING_TERM.match(rest)
        if not found:
            raise ValueError(f"not in the supported filter subset: {rest!r}")
        if found["type"]:
            selector, key = found["type"], None
        else:
            selector = f"{found['scope']}.label"
            key = found["quoted"] or found["bare"]
        terms.append(
            MonitoringTerm(selector, key, found["op"], _literal(found["value"]))
        )
        rest = re.sub(r"^\s*(?:AND\s+)?", "", rest[found.end() :])
    return terms


def group_by_label(group_field: str) -> tuple[str, str]:
    """`metric.label."x"` -> ("metric", "x")."""
    found = re.fullmatch(r'(metric|resource)\.label\."(\w+)"', group_field)
    if not found:
        raise ValueError(f"group-by field not in the console's form: {group_field!r}")
    return found[1], found[2]


def series_match(
    terms: Iterable[MonitoringTerm],
    metric_type: str,
    labels: Mapping[str, Any],
    resource_type: str = "cloud_run_revision",
) -> bool:
    """Whether a time series of `metric_type` with metric `labels` matches."""
    for term in terms:
        if term.selector == "metric.type":
            value: Any = metric_type
        elif term.selector == "resource.type":
            value = resource_type
        elif term.selector == "metric.label":
            value = labels.get(term.key, _MISSING)
        else:
            continue  # resource labels: every point here is the function's
        if not _compare(value, term.op, term.value):
            return False
    return True


# --- CloudWatch Embedded Metric Format --------------------------------------------
# The specification (https://docs.aws.amazon.com/AmazonCloudWatch/latest/
# monitoring/CloudWatch_Embedded_Metric_Format_Specification.html) and the
# limits AWS's own EMF libraries enforce.

EMF_UNITS = frozenset(
    {
        "Seconds",
        "Microseconds",
        "Milliseconds",
        "Bytes",
        "Kilobytes",
        "Megabytes",
        "Gigabytes",
        "Terabytes",
        "Bits",
        "Kilobits",
        "Megabits",
        "Gigabits",
        "Terabits",
        "Percent",
        "Count",
        "Bytes/Second",
        "Kilobytes/Second",
        "Megabytes/Second",
        "Gigabytes/Second",
        "Terabytes/Second",
        "Bits/Second",
        "Kilobits/Second",
        "Megabits/Second",
        "Gigabits/Second",
        "Terabits/Second",
        "Count/Second",
        "None",
    }
)
EMF_NAMESPACE = re.compile(r"[a-zA-Z0-9._#:/-]{1,255}")
EMF_MAX_DIMENSIONS = 30  # per dimension set
EMF_MAX_METRICS = 100  # per document
EMF_MAX_VALUES = 100  # per metric value array
EMF_MAX_NAME = 255  # metric name, dimension key (schema)
EMF_MAX_DIMENSION_VALUE = 1024
EMF_MAX_BYTES = 256 * 1024  # a log event
EMF_PAST_MS, EMF_FUTURE_MS = 14 * 24 * 3600 * 1000, 2 * 3600 * 1000


def _ascii_text(value: Any, limit: int) -> bool:
    return (
        isinstance(value, str)
        and 0 < len(value) <= limit
        and value.isascii()
        and value.strip() != ""
        and not any(ord(c) < 32 or ord(c) == 127 for c in value)
    )


def _number_target(value: Any) -> bool:
    if isinstance(value, list):
        return 0 < len(value) <= EMF_MAX_VALUES and all(map(_number_target, value))
    return (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and math.isfinite(value)
    )


def emf_problems(line: str, now_ms: int | None = None) -> list[str]:
    """Why `line` is not a valid EMF document (empty: it is one)."""
    now_ms = int(time.time() * 1000) if now_ms is None else now_ms
    problems = []
    if len(line.encode()) > EMF_MAX_BYTES:
        problems.append(f"{len(line.encode())} bytes, over {EMF_MAX_BYTES}")
    try:
        doc = json.loads(line)
    except ValueError:
        return ["not JSON"]
    if not isinstance(doc, dict) or not isinstance(doc.get("_aws"), dict):
        return ["no _aws metadata object on the root"]
    meta = doc["_aws"]
    if set(meta) - {"Timestamp", "CloudWatchMetrics"}:
        problems.append(f"_aws has extra members {sorted(set(meta))}")
    stamp = meta.get("Timestamp")
    if not isinstance(stamp, int) or isinstance(stamp, bool):
        problems.append(f"Timestamp {stamp!r} is not an integer of milliseconds")
    elif not now_ms - EMF_PAST_MS <= stamp <= now_ms + EMF_FUTURE_MS:
        problems.append(f"Timestamp {stamp} is not within 14 days before / 2 h after")
    directives = meta.get("CloudWatchMetrics")
    if not isinstance(directives, list) or not directives:
        return [*problems, "CloudWatchMetrics is not a non-empty array"]
    total = 0
    for directive in directives:
        if not isinstance(directive, dict) or set(directive) != {
            "Namespace",
            "Dimensions",
            "Metrics",
        }:
            problems.append(f"directive {directive!r} has not exactly its 3 members")
            continue
        namespace = directive["Namespace"]
        if not isinstance(namespace, str) or not EMF_NAMESPACE.fullmatch(namespace):
            problems.append(f"namespace {namespace!r}")
        dimension_sets = directive["Dimensions"]
        if not isinstance(dimension_sets, list) or not dimension_sets:
            problems.append("Dimensions is not a non-empty array of dimension sets")
            dimension_sets = []
        for dimension_set in dimension_sets:
            if not isinstance(dimension_set, list):
                problems.append(f"dimension set {dimension_set!r} is not an array")
                continue
            if len(dimension_set) > EMF_MAX_DIMENSIONS:
                problems.append(f"{len(dimension_set)} dimensions in one set")
            if len(set(dimension_set)) != len(dimension_set):
                problems.append(f"dimension set {dimension_set} repeats a key")
            for key in dimension_set:
                if not _ascii_text(key, EMF_MAX_NAME) or key.startswith(":"):
                    problems.append(f"dimension key {key!r}")
                elif not _ascii_text(doc.get(key), EMF_MAX_DIMENSION_VALUE):
                    problems.append(f"dimension {key} is {doc.get(key)!r} on the root")
        metrics = directive["Metrics"]
        if not isinstance(metrics, list) or not metrics:
            problems.append("Metrics is not a non-empty array")
            continue
        total += len(metrics)
        names = []
        for metric in metrics:
            if not isinstance(metric, dict) or "Name" not in metric:
                problems.append(f"metric definition {metric!r} has no Name")
                continue
            if set(metric) - {"Name", "Unit", "StorageResolution"}:
                problems.append(f"metric definition {metric!r} has extra members")
            name = metric["Name"]
            names.append(name)
            if not _ascii_text(name, EMF_MAX_NAME):
                problems.append(f"metric name {name!r}")
            elif not _number_target(doc.get(name)):
                problems.append(f"metric {name} is {doc.get(name)!r} on the root")
            if "Unit" in metric and metric["Unit"] not in EMF_UNITS:
                problems.append(f"unit {metric['Unit']!r} of {name}")
            if metric.get("StorageResolution", 60) not in (1, 60):
                problems.append(f"storage resolution of {name}")
        if len(set(names)) != len(names):
            problems.append(f"a directive names a metric twice: {names}")
    if total > EMF_MAX_METRICS:
        problems.append(f"{total} metrics in one document, over {EMF_MAX_METRICS}")
    return problems


@dataclass(frozen=True)
class EmfSeries:
    """A CloudWatch metric an EMF document publishes: namespace, name and the
    dimension keys (the identity CloudWatch bills and alarms on)."""

    namespace: str
    name: str
    dimensions: frozenset[str]


def emf_series(doc: Mapping[str, Any]) -> set[EmfSeries]:
    return {
        EmfSeries(directive["Namespace"], metric["Name"], frozenset(dimension_set))
        for directive in doc["_aws"]["CloudWatchMetrics"]
        for dimension_set in directive["Dimensions"]
        for metric in directive["Metrics"]
    }


# --- CloudWatch: what the dashboard and the alarms read ---------------------------


@dataclass(frozen=True)
class CloudWatchRef:
    """A metric a widget or an alarm reads, with where and how."""

    namespace: str
    name: str
    dimensions: frozenset[str]
    stat: str
    where: str


def load_monitoring_yml() -> dict[str, Any]:
    return yaml.safe_load(MONITORING_YML.read_text())


def param_defaults(text: str) -> str:
    """Serverless's ${param:NAME, DEFAULT} replaced by DEFAULT (what osls
    resolves them to when no --param sets them)."""
    return re.sub(
        r"\$\{param:\w+,\s*([^}]*)\}", lambda m: m[1].strip().strip("'\""), text
    )


def substitute(template: str, values: Mapping[str, str]) -> str:
    """Fn::Sub's ${Name} replaced from `values` (KeyError for an unknown one)."""
    return re.sub(r"\$\{([^}!]+)\}", lambda m: values[m[1]], template)


_SEARCH = re.compile(
    r"SEARCH\('\{(?P<schema>[^}]*)\}(?P<terms>[^']*)',\s*'(?P<stat>\w+)',\s*\d+\)"
)


def dashboard_refs(body: Mapping[str, Any]) -> tuple[list[CloudWatchRef], list[str]]:
    """The metrics a CloudWatch dashboard body's widgets read, and its Logs
    Insights queries."""
    refs, queries = [], []
    for index, widget in enumerate(body["widgets"]):
        where = f"widget {index} ({widget['properties'].get('title')})"
        if widget["type"] == "log":
            queries.append(widget["properties"]["query"])
            continue
        assert widget["type"] == "metric", where
        for row in widget["properties"]["metrics"]:
            if isinstance(row[0], dict):
                search = _SEARCH.fullmatch(row[0]["expression"])
                assert search, row[0]
                namespace, *keys = (
                    part.strip().strip('"') for part in search["schema"].split(",")
                )
                name = re.search(r'MetricName="(\w+)"', search["terms"])
                assert name, search["terms"]
                refs.append(
                    CloudWatchRef(
                        namespace, name[1], frozenset(keys), search["stat"], where
                    )
                )
                continue
            options = row[-1] if isinstance(row[-1], dict) else {}
            cells = row[:-1] if options else row
            assert "..." not in cells and "." not in cells, f"shorthand in {where}"
            namespace, name, *pairs = cells
            refs.append(
                CloudWatchRef(
                    namespace,
                    name,
                    frozenset(pairs[0::2]),
                    options.get("stat", widget["properties"].get("stat", "Average")),
                    where,
                )
            )
    return refs, queries


def alarm_refs(resources: Mapping[str, Any]) -> list[CloudWatchRef]:
    refs = []
    for name, resource in resources.items():
        if resource["Type"] != "AWS::CloudWatch::Alarm":
            continue
        spec = resource["Properties"]
        refs.append(
            CloudWatchRef(
                spec["Namespace"],
                spec["MetricName"],
                frozenset(d["Name"] for d in spec.get("Dimensions", [])),
                spec.get("Statistic") or spec["ExtendedStatistic"],
                name,
            )
        )
    return refs


# AWS/Lambda's own metrics by FunctionName (Lambda's documentation,
# "Types of metrics for Lambda functions").
LAMBDA_METRICS = frozenset(
    {
        "Invocations",
        "Errors",
        "Throttles",
        "Duration",
        "ConcurrentExecutions",
        "DeadLetterErrors",
        "DestinationDeliveryFailures",
        "ProvisionedConcurrencyInvocations",
        "ProvisionedConcurrencySpilloverInvocations",
        "UnreservedConcurrentExecutions",
        "ClaimedAccountConcurrency",
    }
)

# Cloud Run's own metrics the Google dashboard reads, with their metric labels
# (https://cloud.google.com/monitoring/api/metrics_gcp_p_z#gcp-run).
CLOUD_RUN_METRICS: dict[str, frozenset[str]] = {
    "run.googleapis.com/container/instance_count": frozenset({"state"}),
    "run.googleapis.com/container/memory/utilizations": frozenset(),
}
CLOUD_RUN_RESOURCE_LABELS = frozenset(
    {"project_id", "service_name", "revision_name", "configuration_name", "location"}
)


def lines_of(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.strip()]


def json_lines(text: str) -> list[dict[str, Any]]:
    found = []
    for line in lines_of(text):
        try:
            value = json.loads(line)
        except ValueError:
            continue
        if isinstance(value, dict):
            found.append(value)
    return found
