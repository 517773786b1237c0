"""skserve.cors: CORS headers only for allowed origins, errors included."""

from __future__ import annotations

from collections.abc import Mapping

import flask
import pytest

from skserve.cors import add_cors_headers, allowed_origin, preflight

APP = "https://app.example"


def _request(headers: Mapping[str, str]) -> flask.Request:
    return flask.Request.from_values(headers=dict(headers), method="OPTIONS")


@pytest.mark.parametrize(
    ("origins", "origin", "allowed"),
    [
        ((), APP, None),  # CORS off
        ((APP,), None, None),  # not a cross-origin request
        ((APP,), APP, APP),
        ((APP,), "https://evil.example", None),
        ((APP,), APP + ".evil.example", None),  # exact match only
        (("*",), "https://anyone.example", "*"),
    ],
)
def test_allowed_origin(
    origins: tuple[str, ...], origin: str | None, allowed: str | None
) -> None:
    headers = {"Origin": origin} if origin else {}

    assert allowed_origin(_request(headers), origins) == allowed


def test_preflight_from_an_allowed_origin_is_204_with_cors_headers() -> None:
    response = preflight(_request({"Origin": APP}), (APP,), "OPTIONS, POST")

    assert response.status_code == 204
    assert response.headers["Allow"] == "OPTIONS, POST"
    assert "Content-Type" not in response.headers  # no body, so no type
    assert "POST" in response.headers["Access-Control-Allow-Methods"]
    assert "X-API-Key" in response.headers["Access-Control-Allow-Headers"]


def test_preflight_from_another_origin_is_204_without_cors_headers() -> None:
    response = preflight(_request({"Origin": "https://evil.example"}), (APP,), "GET")

    assert response.status_code == 204
    assert not [h for h, _ in response.headers if h.startswith("Access-Control")]


def test_an_answer_to_an_allowed_origin_exposes_the_model_headers() -> None:
    response = flask.Response(status=400)

    add_cors_headers(response, _request({"Origin": APP}), (APP,))

    assert response.headers["Access-Control-Allow-Origin"] == APP
    exposed = response.headers["Access-Control-Expose-Headers"]
    assert {"X-Model-Version", "X-Request-Id", "Retry-After"} <= set(
        exposed.split(", ")
    )
    assert "Origin" in response.headers["Vary"]


def test_caches_key_on_origin_whenever_cors_is_on() -> None:
    refused, off = flask.Response(), flask.Response()

    add_cors_headers(refused, _request({"Origin": "https://evil.example"}), (APP,))
    add_cors_headers(off, _request({"Origin": APP}), ())

    assert "Origin" in refused.headers["Vary"]
    assert "Access-Control-Allow-Origin" not in refused.headers
    assert "Vary" not in off.headers
