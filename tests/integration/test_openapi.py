"""The OpenAPI document describes exactly what the app answers, codes included.

The document (function/skserve/openapi.json) is checked three ways: it is a valid
OpenAPI 3 document served verbatim at GET /openapi.json; every operation in it is
routed and every route is in it; and, per operation, the documented status codes
are exactly the ones the app produces, each with a body and headers that match
what is documented. Error slugs raised anywhere in the serving package must be
named in the matching response description, so new codes cannot drift silently.
"""

from __future__ import annotations

import ast
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from flask.testing import FlaskClient
from openapi_schema_validator import OAS30Validator
from openapi_spec_validator import validate
from werkzeug.test import TestResponse

from skserve import errors
from skserve.http import _FRAMEWORK_CODES
from skserve.service import Service
from skserve.settings import ModelURI, Settings
from tests.support import REPO, SEED_FEATURES, call

PACKAGE = REPO / "function" / "skserve"
SPEC_PATH = PACKAGE / "openapi.json"
SPEC: dict[str, Any] = json.loads(SPEC_PATH.read_text(encoding="utf-8"))
HTTP_METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")
OPERATIONS = [
    (path, method)
    for path, item in SPEC["paths"].items()
    for method in item
    if method in HTTP_METHODS
]
DOCUMENTED = [
    (path, method, status)
    for path, method in OPERATIONS
    for status in SPEC["paths"][path][method]["responses"]
]
API_KEY = "test-key-0123456789abcdef"
# Slugs in the code that the function can never answer with, and why.
NOT_SERVED = {
    "concurrent_write": "raised only by conditional store writes (python -m train "
    "publish/promote); the function only reads",
}


EMPTY_STORE = "<an empty folder>"  # replaced by a real one per test
UNPUBLISHED = "20000101T000000Z-00000000"  # a version id no store holds


@dataclass(frozen=True)
class Scenario:
    """One concrete request and the deployment (environment) it is sent to."""

    name: str
    env: dict[str, str] = field(default_factory=dict)
    body: bytes = json.dumps({"features": SEED_FEATURES}).encode()
    content_type: str = "application/json"
    headers: dict[str, str] = field(default_factory=dict)


def _json(body: object) -> bytes:
    """A request body."""
    return json.dumps(body).encode()


# Each is sent with an operation's own method and path (GET ignores the body).
SCENARIOS = {
    scenario.name: scenario
    for scenario in [
        Scenario("seed request"),
        Scenario(
            "batch with probabilities",
            body=_json({"instances": [SEED_FEATURES] * 2, "probabilities": True}),
        ),
        Scenario(
            "single row with probabilities",
            body=_json({"features": SEED_FEATURES, "probabilities": True}),
        ),
        Scenario("malformed JSON", body=b'{"features": [0.1,'),
        Scenario("no API key", env={"API_KEYS": API_KEY}),
        Scenario(
            "wrong API key",
            env={"API_KEYS": API_KEY},
            headers={"X-API-Key": "not-" + API_KEY},
        ),
        Scenario(
            "right API key",
            env={"API_KEYS": API_KEY},
            headers={"Authorization": f"Bearer {API_KEY}"},
        ),
        Scenario("body over MAX_BODY_BYTES", env={"MAX_BODY_BYTES": "16"}),
        Scenario(
            "rows over MAX_ROWS",
            env={"MAX_ROWS": "1"},
            body=_json({"instances": [SEED_FEATURES] * 2}),
        ),
        Scenario("text/plain body", content_type="text/plain"),
        Scenario("model cannot be loaded", env={"MODEL_URI": EMPTY_STORE}),
        Scenario("invalid setting", env={"MAX_ROWS": "abc"}),
        Scenario(
            "a page on a site not allowed",
            headers={"Origin": "https://elsewhere.example"},
        ),
        Scenario(
            "CORS preflight",
            env={"CORS_ALLOW_ORIGINS": "https://app.example"},
            headers={
                "Origin": "https://app.example",
                "Access-Control-Request-Method": "POST",
            },
        ),
    ]
}
# The request that produces each documented status (404/405 are per path).
PRODUCERS = {
    "200": [
        "seed request",
        "batch with probabilities",
        "single row with probabilities",
    ],
    "204": ["seed request", "CORS preflight"],
    "400": ["malformed JSON"],
    "401": ["no API key", "wrong API key"],
    "403": ["a page on a site not allowed"],
    "413": ["body over MAX_BODY_BYTES", "rows over MAX_ROWS"],
    "415": ["text/plain body"],
    "500": ["invalid setting"],
    "503": ["model cannot be loaded"],
}


def send(
    client: FlaskClient, scenario: Scenario, method: str, path: str
) -> TestResponse:
    """Send `scenario` as `method path` through the app, with the scenario's
    environment for this request only (over the `served` model's MODEL_URI)."""
    import main

    env = dict(scenario.env)
    if env.get("MODEL_URI") == EMPTY_STORE:
        empty = Path(os.environ["MODEL_URI"]).parent.parent / "empty" / "missing"
        empty.mkdir(parents=True, exist_ok=True)
        env["MODEL_URI"] = str(empty)
    saved = dict(os.environ)
    os.environ.update(env)
    main._service = None  # built from the environment on this request
    try:
        return client.open(
            concrete(path, Path(os.environ["MODEL_URI"])),
            method=method.upper(),
            data=body_for(scenario, path),
            content_type=scenario.content_type,
            headers=scenario.headers,
        )
    finally:
        os.environ.clear()
        os.environ.update(saved)
        main._service = None


def concrete(path: str, model: Path) -> str:
    """The documented `path` with its parameters filled for the served model:
    {name} is MODEL_URI's last segment, {version} its promoted version."""
    latest = model / "LATEST"
    version = latest.read_text().strip() if latest.exists() else UNPUBLISHED
    return path.replace("{name}", model.name).replace("{version}", version)


def body_for(scenario: Scenario, path: str) -> bytes:
    """The scenario's body in the protocol of `path`: under /v2 its rows become
    the Open Inference Protocol's one FP64 tensor; anything else (malformed
    JSON, text) is sent as it is."""
    if not path.startswith("/v2/"):
        return scenario.body
    try:
        sent = json.loads(scenario.body)
    except ValueError:
        return scenario.body
    rows = [sent["features"]] if "features" in sent else sent["instances"]
    tensor = {
        "name": "input-0",
        "datatype": "FP64",
        "shape": [len(rows), len(rows[0])],
        "data": [value for row in rows for value in row],
    }
    return _json({"inputs": [tensor]})


def documented_methods(path: str) -> set[str]:
    """The methods documented on `path`, upper case."""
    return {m.upper() for m in SPEC["paths"][path] if m in HTTP_METHODS}


def undocumented_method(path: str) -> str:
    """A method the app does not serve on `path` (so it must answer 405)."""
    return next(
        m for m in ("DELETE", "PUT", "PATCH") if m not in documented_methods(path)
    )


def unknown_path(path: str) -> str:
    """A path next to `path` that no route serves (so it must answer 404)."""
    return path.rstrip("/") + "/no-such-route"


def response_problems(
    response: TestResponse, path: str, method: str, status: str
) -> list[str]:
    """Where `response` differs from the documented response `status` of the
    operation: body schema, content type and documented headers."""
    documented = SPEC["paths"][path][method]["responses"][status]
    problems = []
    content = documented.get("content")
    if content:
        if response.mimetype not in content:
            problems.append(f"content type {response.mimetype} not in {list(content)}")
        else:
            body = json.loads(response.get_data(as_text=True))
            schema = {
                **content[response.mimetype]["schema"],
                "components": SPEC["components"],
            }
            validator = OAS30Validator(schema)
            problems += [
                f"body {e.json_path}: {e.message}" for e in validator.iter_errors(body)
            ]
            error = body.get("error") if int(status) >= 400 else None
            # v1 errors carry a code; v2's are a message, as its spec says.
            code = error.get("code") if isinstance(error, dict) else None
            if code and f"`{code}`" not in documented["description"]:
                problems.append(f"error code {code} not in the description")
    elif response.get_data():
        problems.append(f"undocumented body {response.get_data()[:80]!r}")
    for name, header in documented.get("headers", {}).items():
        header = resolve(header)
        if name not in response.headers:
            problems.append(f"missing header {name}")
        elif header.get("schema", {}).get("type") == "integer":
            value = response.headers[name]
            minimum = header["schema"].get("minimum", -(10**9))
            if not value.isdigit() or int(value) < minimum:
                problems.append(f"header {name}: {value!r} is not an integer")
    return problems


def resolve(node: dict[str, Any]) -> dict[str, Any]:
    """Follow a local $ref of the document."""
    while "$ref" in node:
        target: Any = SPEC
        for part in node["$ref"].removeprefix("#/").split("/"):
            target = target[part]
        node = target
    return node


def test_the_document_is_a_valid_openapi_3_document() -> None:
    """openapi-spec-validator accepts it as OpenAPI 3 (refs resolve, ids unique)."""
    validate(SPEC)
    assert SPEC["openapi"].startswith("3.")


def test_get_openapi_json_serves_exactly_the_document(
    client: FlaskClient, served: Path
) -> None:
    """The app and the function both serve the file byte for byte."""
    response = send(client, SCENARIOS["seed request"], "GET", "/openapi.json")

    assert response.status_code == 200
    assert response.mimetype == "application/json"
    assert response.get_data() == SPEC_PATH.read_bytes()
    assert call("GET", "/openapi.json").get_data() == SPEC_PATH.read_bytes()


@pytest.mark.parametrize(("path", "method"), OPERATIONS)
def test_every_documented_operation_is_routed_by_the_app(
    client: FlaskClient, served: Path, path: str, method: str
) -> None:
    """No documented operation is a 404 or 405."""
    response = send(client, SCENARIOS["seed request"], method, path)

    assert response.status_code not in (404, 405), response.get_data(as_text=True)


def test_every_route_the_app_serves_is_documented(tmp_path: Path) -> None:
    """Every rule of the service's URL map, and its CORS preflight, is documented."""
    uri = ModelURI.parse(str(tmp_path / "store" / "model"))
    service = Service(Settings(model_uri=uri))
    served = set()
    for rule in service.url_map.iter_rules():
        # werkzeug's <converter:name> is OpenAPI's {name}
        path = re.sub(r"<(?:[^:<>]+:)?([^<>]+)>", r"{\1}", rule.rule)
        served |= {(path, method) for method in rule.methods or () if method != "HEAD"}
        served.add((path, "OPTIONS"))  # preflight, every path
    documented = {(path, method.upper()) for path, method in OPERATIONS}

    assert sorted(served - documented) == []


def test_allow_headers_list_exactly_the_documented_methods(
    client: FlaskClient, served: Path
) -> None:
    """A 405's Allow header names the documented methods of its path."""
    mismatches = {}
    for path in SPEC["paths"]:
        response = send(
            client, SCENARIOS["seed request"], undocumented_method(path), path
        )
        allowed = {m.strip() for m in response.headers.get("Allow", "").split(",")}
        allowed.discard("HEAD")  # implied by GET, as HTTP and OpenAPI tools treat it
        if allowed != documented_methods(path):
            mismatches[path] = (sorted(allowed), sorted(documented_methods(path)))

    assert mismatches == {}, "path: (Allow header, documented methods)"


@pytest.mark.parametrize(("path", "method", "status"), DOCUMENTED)
def test_each_documented_status_is_produced_as_documented(
    client: FlaskClient, served: Path, path: str, method: str, status: str
) -> None:
    """A concrete request produces the status, with the documented body and headers."""
    if status == "404":
        sent = [(SCENARIOS["seed request"], method, unknown_path(path))]
    elif status == "405":
        sent = [(SCENARIOS["seed request"], undocumented_method(path), path)]
    else:
        assert status in PRODUCERS, f"no request is known to produce {status}"
        sent = [(SCENARIOS[name], method, path) for name in PRODUCERS[status]]
        if method == "get":  # GET ignores the body: one seed request says it all
            sent = sent[:1]

    for scenario, verb, target in sent:
        response = send(client, scenario, verb, target)

        assert str(response.status_code) == status, (
            scenario.name,
            response.get_data(as_text=True),
        )
        assert response_problems(response, path, method, status) == [], scenario.name


@pytest.mark.parametrize(("path", "method"), OPERATIONS)
def test_every_status_an_operation_produces_is_documented(
    client: FlaskClient, served: Path, path: str, method: str
) -> None:
    """Every scenario's status on an operation is one it documents."""
    documented = set(SPEC["paths"][path][method]["responses"])
    produced = {
        scenario.name: str(send(client, scenario, method, path).status_code)
        for scenario in SCENARIOS.values()
    }
    undocumented = {k: v for k, v in produced.items() if v not in documented}

    assert len(set(produced.values())) > 1  # the scenarios did reach the app
    assert undocumented == {}, f"{method.upper()} {path}: scenario -> status"


def raised_error_codes() -> dict[str, int]:
    """Every error slug the serving package can put in a response, and its status.

    Class defaults of the exception tree, `code=Code.X` at every call site that
    builds one of its classes (found by parsing the source, so new raises are
    picked up), and the codes used for errors functions-framework raises itself.
    """
    classes: dict[str, type[errors.ServingError]] = {}
    pending: list[type[errors.ServingError]] = [errors.ServingError]
    while pending:
        cls = pending.pop()
        if cls.__module__.startswith("skserve."):  # not train's own subclasses
            classes[cls.__name__] = cls
        pending += cls.__subclasses__()
    codes = {cls.code: cls.status for cls in classes.values()}
    for source in [*PACKAGE.rglob("*.py"), REPO / "function" / "main.py"]:
        for node in ast.walk(ast.parse(source.read_text(encoding="utf-8"))):
            if not isinstance(node, ast.Call):
                continue
            name = getattr(node.func, "id", getattr(node.func, "attr", None))
            if name not in classes:
                continue
            for keyword in node.keywords:
                if keyword.arg != "code":
                    continue
                for value in ast.walk(keyword.value):  # also `A if x else B`
                    if (  # Code.NAME, the enum member
                        isinstance(value, ast.Attribute)
                        and isinstance(value.value, ast.Name)
                        and value.value.id == "Code"
                    ):
                        codes[errors.Code[value.attr]] = classes[name].status
                    elif isinstance(value, ast.Constant) and isinstance(
                        value.value, str
                    ):
                        codes[value.value] = classes[name].status
    codes.update({code: status for status, code in _FRAMEWORK_CODES.items()})
    return codes


def test_the_code_scan_finds_the_error_codes_it_must() -> None:
    """The source scan sees class defaults, call sites and conditional codes."""
    import train.data  # noqa: F401  (defines a ServingError subclass of its own)

    codes = raised_error_codes()

    assert codes["invalid_value"] == 400  # a call-site code
    assert codes["missing_features"] == codes["unknown_features"] == 400
    assert codes["signature_invalid"] == 503  # IntegrityError(code=...) is a 503
    assert codes["too_many_rows"] == 413
    assert codes["configuration_error"] == 500  # a class default
    assert codes["store_unavailable"] == 503
    assert "invalid_data" not in codes  # train's errors never reach the function


@pytest.mark.parametrize(("path", "method"), OPERATIONS)
def test_every_error_code_is_named_in_its_documented_response(
    path: str, method: str
) -> None:
    """Each code the package raises is named where its status is documented."""
    responses = SPEC["paths"][path][method]["responses"]
    missing = [
        (status, code)
        for code, status in sorted(raised_error_codes().items())
        if code not in NOT_SERVED
        and str(status) in responses
        and f"`{code}`" not in responses[str(status)]["description"]
    ]

    assert missing == [], f"{method.upper()} {path}: (status, code) not described"


def test_every_error_code_the_document_names_is_raised_by_the_code() -> None:
    """The document names no code the package cannot raise (stale docs)."""
    named = {
        code
        for path, method in OPERATIONS
        for response in SPEC["paths"][path][method]["responses"].values()
        for code in re.findall(r"`([a-z_]+)`", response["description"])
    }

    assert sorted(named - set(raised_error_codes())) == []


def test_one_version_number_everywhere(client: FlaskClient, served: Path) -> None:
    """The package's version is the OpenAPI document's and the V2 server's."""
    from importlib.metadata import version

    import skserve

    server = client.get("/v2").get_json()

    assert SPEC["info"]["version"] == skserve.__version__
    assert server["version"] == skserve.__version__
    assert version("sklearn-serverless") == skserve.__version__
