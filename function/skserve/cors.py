"""CORS, as Google's Cloud Functions CORS sample answers it, with an allow list."""

from __future__ import annotations

from collections.abc import Sequence

import flask

ALLOW_METHODS = "GET, POST, OPTIONS"
# Inference-Header-Content-Length: the V2 binary tensor data extension's, both
# ways, so a page can send binary inputs and split a binary answer.
ALLOW_HEADERS = (
    "Content-Type, Authorization, X-API-Key, X-Request-Id, "
    "Inference-Header-Content-Length"
)
# Retry-After too: a page on another origin must be able to honour a 503.
EXPOSE_HEADERS = (
    "X-Model-Version, X-Request-Id, Retry-After, Inference-Header-Content-Length"
)
MAX_AGE = "3600"


def allowed_origin(request: flask.Request, origins: Sequence[str]) -> str | None:
    """The Access-Control-Allow-Origin value for this request, or None."""
    origin = request.headers.get("Origin")
    if not origins or not origin:
        return None
    if "*" in origins:
        return "*"
    return origin if origin in origins else None


def cross_site_refusal(request: flask.Request, origins: Sequence[str]) -> str | None:
    """Why a browser request from another site may not reach the model (None:
    it may). A browser sends Origin with every cross-origin request, no-cors
    ones included (whose answer it hides but whose work is done), and
    Sec-Fetch-Site with the rest; clients that send neither (curl,
    tritonclient, servers) are not browsers and pass."""
    environ = request.environ  # what request.headers would read, for less
    origin = environ.get("HTTP_ORIGIN")
    if origin is not None:
        if "*" in origins or origin in origins or origin == _own_origin(request):
            return None
        shown = origin if len(origin) <= 100 else origin[:97] + "..."
        return (
            f"requests from origin {shown!r} are not allowed; add it to "
            "CORS_ALLOW_ORIGINS to let its pages call this function"
        )
    if environ.get("HTTP_SEC_FETCH_SITE") == "cross-site" and "*" not in origins:
        return (
            "a cross-site browser request without an Origin is not allowed; "
            "call the function from an origin in CORS_ALLOW_ORIGINS"
        )
    return None


def _own_origin(request: flask.Request) -> str:
    """The function's own origin, as a browser on its own pages sends it."""
    return f"{request.scheme}://{request.host}"


def preflight(
    request: flask.Request, origins: Sequence[str], allow: str
) -> flask.Response:
    """204 to an OPTIONS request; CORS headers only for an allowed origin."""
    response = flask.Response(status=204, headers={"Allow": allow})
    del response.headers["Content-Type"]  # no body, so no type
    if allowed_origin(request, origins):
        response.headers["Access-Control-Allow-Methods"] = ALLOW_METHODS
        response.headers["Access-Control-Allow-Headers"] = ALLOW_HEADERS
        response.headers["Access-Control-Max-Age"] = MAX_AGE
    return response


def add_cors_headers(
    response: flask.Response, request: flask.Request, origins: Sequence[str]
) -> None:
    """Echo an allowed origin on any response, errors included (so a browser can
    read them); caches must key on Origin whenever CORS is on."""
    if not origins:
        return
    response.vary.add("Origin")
    origin = allowed_origin(request, origins)
    if origin:
        response.headers["Access-Control-Allow-Origin"] = origin
        response.headers["Access-Control-Expose-Headers"] = EXPOSE_HEADERS
