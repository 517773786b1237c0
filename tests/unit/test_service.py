"""skserve.service: routes, `Allow` and error bodies come from the protocols' rules."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import flask
import pytest

import skserve.protocols
from skserve.service import Service, _match, _static_routes
from skserve.settings import ModelURI, Settings
from tests.support import EXAMPLE_PROTOCOL, SEED_FEATURES


@pytest.fixture
def service(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Service:
    """The real protocols plus the example one, over a store with no model
    (these tests never need one)."""
    monkeypatch.setattr(
        skserve.protocols,
        "PROTOCOLS",
        (*skserve.protocols.PROTOCOLS, EXAMPLE_PROTOCOL),
    )
    uri = ModelURI.parse(str(tmp_path / "store" / "m"))
    return Service(Settings(model_uri=uri))


@pytest.fixture
def send(service: Service) -> Any:
    """send(method, path, ...) -> the service's response, via a raw WSGI
    PATH_INFO (so `//` and very long paths reach werkzeug as a server sends them)."""
    app = flask.Flask(__name__)

    def send(
        method: str,
        path: str,
        *,
        body: bytes = b"",
        headers: Mapping[str, str] | None = None,
    ) -> flask.Response:
        with app.test_request_context(
            method=method,
            data=body,
            content_type="application/json",
            headers=dict(headers or {}),
            environ_overrides={"PATH_INFO": path},
        ):
            return service.handle(flask.request)

    return send


def _error(response: flask.Response) -> dict[str, Any]:
    return json.loads(response.get_data())["error"]


@pytest.mark.parametrize(
    ("method", "path", "allow"),
    [
        ("GET", "/predict", "OPTIONS, POST"),
        ("DELETE", "/", "OPTIONS, POST"),
        ("POST", "/health", "GET, HEAD, OPTIONS"),
        ("PUT", "/metadata", "GET, HEAD, OPTIONS"),
        ("POST", "/example/items/3", "DELETE, GET, HEAD, OPTIONS"),
        ("GET", "/example/boom", "OPTIONS, POST"),
    ],
)
def test_405_allow_lists_the_methods_of_the_paths_rules(
    send: Any, method: str, path: str, allow: str
) -> None:
    response = send(method, path)

    assert response.status_code == 405
    assert response.headers["Allow"] == allow


def test_405_message_names_the_method_and_what_to_use(send: Any) -> None:
    message = _error(send("GET", "/predict"))["message"]

    assert message == "GET is not allowed on /predict; use POST"


def test_preflight_allow_lists_the_same_methods(send: Any) -> None:
    response = send("OPTIONS", "/example/items/3")

    assert response.status_code == 204
    assert response.headers["Allow"] == "DELETE, GET, HEAD, OPTIONS"


@pytest.mark.parametrize("path", ["/health", "/openapi.json", "/example/items/9"])
def test_head_is_served_wherever_get_is(send: Any, path: str) -> None:
    assert send("HEAD", path).status_code == 200


def test_head_is_not_served_where_get_is_not(send: Any) -> None:
    response = send("HEAD", "/predict")

    assert response.status_code == 405
    assert "HEAD" not in response.headers["Allow"]


@pytest.mark.parametrize(
    "path", ["/nope", "/predict/more", "/v3/models", "/healthz", "/predict.json"]
)
def test_an_unknown_path_is_a_json_404_saying_what_exists(send: Any, path: str) -> None:
    response = send("GET", path)

    assert response.status_code == 404
    assert response.mimetype == "application/json"
    error = _error(response)
    assert error["code"] == "not_found"
    assert error["message"].startswith(f"no route {path}; ")
    assert "POST /predict" in error["message"]


@pytest.mark.parametrize("path", ["/predict/", "/predict//", "//predict"])
def test_extra_slashes_around_predict_still_reach_predict(send: Any, path: str) -> None:
    """As before the routing rewrite: request paths are matched without a
    trailing slash and never redirected (a redirected POST loses its body)."""
    response = send("POST", path, body=b'{"features": [1,')

    assert response.status_code == 400  # parsed by predict, not 404/308
    assert _error(response)["code"] == "invalid_json"
    assert "Location" not in response.headers


@pytest.mark.parametrize("path", ["/health/", "//health"])
def test_extra_slashes_around_health_still_reach_health(send: Any, path: str) -> None:
    assert send("GET", path).status_code == 200


def test_an_absurdly_long_path_is_echoed_bounded(service: Service, send: Any) -> None:
    path = "/" + "a" * 20_000
    v1 = next(p for p in service.protocols if p.name == "v1")

    response = send("GET", path)

    message = _error(response)["message"]
    assert response.status_code == 404
    echoed = message.removeprefix("no route ").split(";")[0]
    assert echoed.startswith("/aaa") and echoed.endswith("...")
    assert len(echoed) <= 100
    assert len(message) <= len(v1.no_route("")) + 100


def test_an_absurdly_long_method_is_echoed_bounded(send: Any) -> None:
    response = send("X" * 5_000, "/predict")

    assert response.status_code == 405
    assert len(_error(response)["message"]) < 100


def test_path_arguments_are_converted_by_the_rule(send: Any) -> None:
    response = send("GET", "/example/items/42")

    assert response.status_code == 200
    assert json.loads(response.get_data()) == {"item": 42}


def test_a_path_argument_the_rule_cannot_convert_is_that_protocols_404(
    send: Any,
) -> None:
    response = send("GET", "/example/items/forty-two")

    assert response.status_code == 404
    assert response.mimetype == "application/problem+json"
    problem = json.loads(response.get_data())["problem"]
    assert problem["detail"] == "the example protocol has no /example/items/forty-two"


def test_a_bug_in_a_protocol_is_its_own_generic_500(
    send: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    response = send("POST", "/example/boom")

    body = response.get_data(as_text=True)
    assert response.status_code == 500
    assert response.mimetype == "application/problem+json"
    assert response.headers["X-Request-Id"] in body
    assert "secret internals" not in body
    assert "secret internals" in capsys.readouterr().out  # the log has it


def test_every_answer_carries_the_request_id_and_model_version(send: Any) -> None:
    for method, path in [("GET", "/health"), ("GET", "/nope"), ("PUT", "/")]:
        response = send(method, path, headers={"X-Request-Id": "rid-1"})

        assert response.headers["X-Request-Id"] == "rid-1"
        assert response.headers["X-Model-Version"] == "none"


def test_predict_through_the_service_answers_with_the_model(model_dir: Path) -> None:
    service = Service(Settings(model_uri=ModelURI.parse(str(model_dir))))
    body = json.dumps({"features": SEED_FEATURES}).encode()

    with flask.Flask(__name__).test_request_context(
        "/predict", method="POST", data=body, content_type="application/json"
    ):
        response = service.handle(flask.request)

    assert response.status_code == 200
    assert json.loads(response.get_data())["prediction"] in (0, 1)
    assert (
        response.headers["X-Model-Version"]
        == (model_dir / "LATEST").read_text().strip()
    )


# --- Routing: the static table picks what werkzeug picks ---------------------------


def _answer(service: Service, method: str, path: str) -> tuple[Any, ...]:
    """What the service answers (status, body, Allow) for method and path."""
    app = flask.Flask(__name__)
    with app.test_request_context(
        method=method,
        data=b"{}",
        content_type="application/json",
        headers={"X-Request-Id": "r1"},  # the same in both answers, 500s included
        environ_overrides={"PATH_INFO": path},
    ):
        response = service.handle(flask.request)
    return response.status_code, response.get_data(), response.headers.get("Allow")


def test_static_routes_answer_as_werkzeug_routing_answers(
    service: Service, capsys: pytest.CaptureFixture[str]
) -> None:
    table = _static_routes(service.url_map)
    paths = [r.rule for r in service.url_map.iter_rules() if not r.arguments]
    methods = ["GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "PATCH"]

    assert {("/predict", "POST"), ("/health", "GET"), ("/v2", "HEAD")} <= set(table)
    fast = {
        (m, p): _answer(service, m, p)
        for p in paths + [p + "/" for p in paths] + ["/nowhere"]
        for m in methods
    }
    service._static = {}  # every request through werkzeug's matcher
    slow = {(m, p): _answer(service, m, p) for m, p in fast}

    assert fast == slow
    capsys.readouterr()  # the request lines


def test_rules_with_path_arguments_stay_with_werkzeug(service: Service) -> None:
    table = _static_routes(service.url_map)
    adapter = service.url_map.bind("localhost", "/")
    with_arguments = [r for r in service.url_map.iter_rules() if r.arguments]

    assert with_arguments  # v2's /v2/models/<name>... rules
    assert not any(rule in table.values() for rule in with_arguments)
    rule, arguments = _match(adapter, "/v2/models/m/ready", "GET")
    assert rule is not None and arguments == {"name": "m"}
