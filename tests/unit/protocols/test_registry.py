"""skserve.protocols: one instance of each protocol, each rendering its own errors."""

from __future__ import annotations

import json
import re
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import flask
import pytest
from werkzeug.routing import Rule

import skserve.protocols
from skserve.errors import MethodNotAllowed, NotFound, ServingError
from skserve.protocols import PROTOCOLS, Protocol, load_protocols
from skserve.service import Service
from skserve.settings import ModelURI, Settings
from tests.support import EXAMPLE_PROTOCOL, ExampleProtocol

WITH_EXAMPLE = (*PROTOCOLS, EXAMPLE_PROTOCOL)


@pytest.fixture
def service(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Service:
    """A service over every registered protocol plus the example one."""
    monkeypatch.setattr(skserve.protocols, "PROTOCOLS", WITH_EXAMPLE)
    uri = ModelURI.parse(str(tmp_path / "store" / "m"))
    return Service(Settings(model_uri=uri))


def _target(protocol: Protocol) -> str:
    cls = type(protocol)
    return f"{cls.__module__}:{cls.__qualname__}"


def test_load_protocols_builds_one_of_each_in_order_bound_to_the_context(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(skserve.protocols, "PROTOCOLS", WITH_EXAMPLE)
    context = SimpleNamespace(settings=Settings())

    protocols = load_protocols(context)  # type: ignore[arg-type]

    assert [_target(p) for p in protocols] == list(WITH_EXAMPLE)
    assert all(p.context is context for p in protocols)
    assert isinstance(protocols[-1], ExampleProtocol)


def test_registered_protocols_have_distinct_names_and_prefixes() -> None:
    protocols = load_protocols(SimpleNamespace(settings=Settings()))  # type: ignore[arg-type]

    assert len({p.name for p in protocols}) == len(PROTOCOLS)
    assert len({p.prefix for p in protocols}) == len(PROTOCOLS)
    assert "" in {p.prefix for p in protocols}  # some protocol renders the rest


def test_each_service_builds_its_own_protocol_instances(tmp_path: Path) -> None:
    settings = Settings(model_uri=ModelURI.parse(str(tmp_path / "m")))

    first, second = Service(settings), Service(settings)

    assert {id(p) for p in first.protocols}.isdisjoint(id(p) for p in second.protocols)
    assert all(p.context is first for p in first.protocols)


def _concrete(rule: Rule) -> str:
    """A path that `rule` matches: each <converter:name> filled with a value
    that converter accepts."""
    return re.sub(
        r"<(?:([a-z]+)(?:\([^)]*\))?:)?[^<>]+>",
        lambda m: "1" if m.group(1) in ("int", "float") else "x",
        rule.rule,
    )


def _shape(value: Any) -> Any:
    """A JSON body's structure: keys kept, leaves replaced by their type."""
    if isinstance(value, dict):
        return {key: _shape(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_shape(item) for item in value]
    return type(value).__name__


def _fingerprint(response: flask.Response) -> tuple[int, str, Any]:
    return (
        response.status_code,
        response.mimetype,
        _shape(json.loads(response.get_data())),
    )


def _send(service: Service, method: str, path: str) -> flask.Response:
    with flask.Flask(__name__).test_request_context(
        method=method, environ_overrides={"PATH_INFO": path}
    ):
        return service.handle(flask.request)


def _cases(service: Service) -> list[tuple[Protocol, str, str, ServingError]]:
    """(owner, method, path, the error it must render) for every protocol:
    a wrong method on each of its rules, and an unknown path under its prefix."""
    cases: list[tuple[Protocol, str, str, ServingError]] = []
    for rule in service.url_map.iter_rules():
        owner = rule.endpoint.__self__
        wrong = next(m for m in ("PATCH", "PUT", "DELETE") if m not in rule.methods)
        error = MethodNotAllowed("wrong method", allow=["GET"])
        cases.append((owner, wrong, _concrete(rule), error))
    for protocol in service.protocols:
        unknown = f"{protocol.prefix}/no-such-route-for-any-protocol"
        cases.append((protocol, "GET", unknown, NotFound("no route")))
    return cases


def test_every_protocols_error_renderer_is_used_for_its_own_paths(
    service: Service,
) -> None:
    mismatches = {}
    for protocol, method, path, error in _cases(service):
        expected = _fingerprint(protocol.error_response(error))

        actual = _fingerprint(_send(service, method, path))

        if actual != expected:
            mismatches[f"{protocol.name}: {method} {path}"] = (actual, expected)

    assert mismatches == {}, "(answered, the owner's own error shape)"


def test_the_example_protocols_errors_are_not_rendered_as_v1s(
    service: Service,
) -> None:
    """The check above can fail: the two renderers give different bodies."""
    v1, example = (
        next(p for p in service.protocols if p.name == name)
        for name in ("v1", "example")
    )
    error = NotFound("no route")

    assert _fingerprint(v1.error_response(error)) != _fingerprint(
        example.error_response(error)
    )
    assert _send(service, "GET", "/example/nothing").mimetype == (
        "application/problem+json"
    )
    assert _send(service, "GET", "/nothing").mimetype == "application/json"
