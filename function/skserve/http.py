"""HTTP plumbing shared by every route: JSON rendering, request ids, body limits."""

from __future__ import annotations

import io
import json
import re
import uuid
from typing import Any

import flask

from skserve.errors import PayloadTooLarge, ServingError, UnsupportedMediaType

_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


def request_id(request: flask.Request) -> str:
    """The caller's X-Request-Id when it is safe to echo, else a new one."""
    given = request.headers.get("X-Request-Id", "")
    return given if _REQUEST_ID.match(given) else uuid.uuid4().hex


def json_response(
    body: Any, status: int = 200, headers: dict[str, str] | None = None
) -> flask.Response:
    """Strict JSON (NaN and Infinity are refused, not emitted)."""
    text = json.dumps(body, allow_nan=False, separators=(",", ":"))
    return flask.Response(text, status, headers, mimetype="application/json")


def error_response(error: ServingError) -> flask.Response:
    """The one place an error becomes a response: {"error": {"code", "message"}}."""
    body = {"error": {"code": error.code, "message": error.message}}
    return json_response(body, error.status, error.headers())


def read_json_body(request: flask.Request, limit: int) -> bytes:
    """Return the body, refusing non-JSON (415) and bodies over `limit` bytes (413).

    Reads at most limit + 1 bytes, so a chunked body without Content-Length
    cannot make us buffer more than the limit.
    """
    mimetype = request.mimetype
    if mimetype != "application/json" and not mimetype.endswith("+json"):
        raise UnsupportedMediaType(
            f"Content-Type must be application/json, got {mimetype or 'none'}"
        )
    too_large = PayloadTooLarge(f"body exceeds MAX_BODY_BYTES={limit}; send less data")
    if request.content_length is not None and request.content_length > limit:
        raise too_large
    body = request.stream.read(limit + 1)
    if len(body) > limit:
        raise too_large
    request.environ["skserve.body_bytes"] = len(body)
    return body


def discard_unread_body(request: flask.Request) -> None:
    """Make sure nothing buffers what we did not read.

    functions-framework calls request.get_data() after the handler returns, which
    would load an oversized (or refused) body into memory whole. An empty stream
    stops that; gunicorn then discards the rest of the body without buffering it.
    """
    request.stream = io.BytesIO()  # werkzeug's cached_property can be set


_FRAMEWORK_CODES = {
    400: "bad_request",
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
    415: "unsupported_media_type",
}


def framework_error_response(error: Exception) -> flask.Response:
    """JSON for errors raised by functions-framework or Flask outside our handler
    (e.g. its own /robots.txt 404); anything else is a generic 500."""
    from werkzeug.exceptions import HTTPException

    status = error.code if isinstance(error, HTTPException) and error.code else 500
    if status not in _FRAMEWORK_CODES:
        status = 500
    code = _FRAMEWORK_CODES.get(status, "internal_error")
    message = "not found" if status == 404 else "the request could not be served"
    wrapped = ServingError(message, code=code)
    wrapped.status = status
    response = error_response(wrapped)
    if flask.has_request_context():
        response.headers["X-Request-Id"] = request_id(flask.request)
        response.headers["X-Model-Version"] = "none"
    return response
