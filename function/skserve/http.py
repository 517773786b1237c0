"""HTTP plumbing shared by every protocol: JSON, request ids, headers, body limits."""

from __future__ import annotations

import io
import json
import os
import re
from typing import Any

import flask
import msgspec
import numpy as np

from skserve.errors import (
    BadRequest,
    Code,
    PayloadTooLarge,
    ServingError,
    UnsupportedMediaType,
)

_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")


def request_id(request: flask.Request) -> str:
    """The caller's X-Request-Id when it is safe to echo, else a new one (128
    random bits in hex)."""
    # Straight from the WSGI environ, where werkzeug's headers would look it up.
    given = request.environ.get("HTTP_X_REQUEST_ID", "")
    # fullmatch: `$` would also match before a trailing newline, and a header
    # value with a newline cannot be sent back.
    return given if _REQUEST_ID.fullmatch(given) else os.urandom(16).hex()


def stamp(response: flask.Response, rid: str, model_version: str | None) -> None:
    """The headers every answer carries: the request id, the model version
    that answered ("none" when no model was used or loaded), and that no
    browser may guess another type than JSON (an error may echo markup from
    the path) nor any cache keep an answer (predictions are per request)."""
    headers = response.headers
    headers["X-Request-Id"] = rid
    headers["X-Model-Version"] = model_version or "none"
    headers["X-Content-Type-Options"] = "nosniff"
    headers["Cache-Control"] = "no-store"


# One encoder for every answer: json.dumps with options builds a new one per call.
_ENCODER = json.JSONEncoder(allow_nan=False, separators=(",", ":"))


def json_response(
    body: Any, status: int = 200, headers: dict[str, str] | None = None
) -> flask.Response:
    """Strict JSON (NaN and Infinity are refused, not emitted)."""
    # content_type, not mimetype: werkzeug adds no charset to JSON either way.
    return flask.Response(
        _ENCODER.encode(body), status, headers, content_type="application/json"
    )


def require_json(request: flask.Request) -> None:
    """415 unless the request says its body is JSON."""
    if request.environ.get("CONTENT_TYPE") == "application/json":
        return  # what nearly every client sends: no need to parse it
    mimetype = request.mimetype
    if mimetype != "application/json" and not mimetype.endswith("+json"):
        shown = mimetype[:60] if mimetype else "none"
        raise UnsupportedMediaType(
            f"Content-Type must be application/json, got {shown}"
        )


def read_body(request: flask.Request, limit: int) -> bytes:
    """Return the body, refusing bodies over `limit` bytes (413).

    Reads at most limit + 1 bytes, so a chunked body without Content-Length
    cannot make us buffer more than the limit.
    """
    length = request.content_length
    if length is not None and length > limit:
        raise _too_large(limit)
    body = request.stream.read(limit + 1)
    if len(body) > limit:
        raise _too_large(limit)
    request.environ["skserve.body_bytes"] = len(body)
    return body


def _too_large(limit: int) -> PayloadTooLarge:
    return PayloadTooLarge(f"body exceeds MAX_BODY_BYTES={limit}; send less data")


# msgspec decodes JSON several times faster than the json module, into the same
# values (Python ints of any size, floats rounded alike: the tests compare them)
# and refuses what the json module refuses. A few inputs the json module takes
# msgspec refuses (NaN and Infinity literals, numbers beyond float range, lone
# surrogates, UTF-16 bodies): whatever msgspec refuses goes to the json module,
# which decides and words the error exactly as before. msgspec keeps the last
# of two equal keys: `_unique` tells whether the text had any.
_DECODER = msgspec.json.Decoder()


def decode_json(data: bytes | str, *, what: str) -> Any:
    """json.loads, every failure a 400 `invalid_json` saying what is wrong with
    `what` ("body", "the request"). Duplicate keys are refused in every
    protocol: which value was meant is ambiguous, and a proxy or logger that
    takes the other one would read a different request than the model scores."""
    try:
        value = _DECODER.decode(data)
    except (ValueError, RecursionError):  # DecodeError; a str with a surrogate
        pass
    else:
        if _unique(data, value):
            return value
    return _decode_strictly(data, what)


def _decode_strictly(data: bytes | str, what: str) -> Any:
    """The json module's answer: a value, or the 400 saying what is wrong."""
    try:
        return json.loads(data, object_pairs_hook=_unique_keys)
    except UnicodeDecodeError:
        raise BadRequest(
            f"{what} is not UTF-8 encoded JSON", code=Code.INVALID_JSON
        ) from None
    except json.JSONDecodeError as exc:
        raise BadRequest(
            f"malformed JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})",
            code=Code.INVALID_JSON,
        ) from None
    except RecursionError:
        raise BadRequest("JSON is nested too deeply", code=Code.INVALID_JSON) from None
    except ValueError as exc:  # duplicate keys; integers beyond Python's digit limit
        raise BadRequest(f"unusable JSON: {exc}", code=Code.INVALID_JSON) from None


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    data = dict(pairs)
    if len(data) != len(pairs):
        seen: set[str] = set()
        duplicate = next(k for k, _ in pairs if k in seen or seen.add(k))
        raise ValueError(f"duplicate key {duplicate[:40]!r}")
    return data


def _unique(text: bytes | str, value: Any) -> bool:
    """Whether no object in the JSON `text` (which decoded to `value`) repeats
    a key: each member of an object is one `:` outside strings, so the text
    holds as many of those as `value`'s objects hold members, unless a key
    repeats (the decoder then keeps one member for two)."""
    raw = text.encode("utf-8", "surrogatepass") if isinstance(text, str) else text
    opens, colons = _count(raw, _OPENS), _count(raw, _COLON)
    members = _members(value, opens)
    if members == colons:
        return True
    # Some `:` are inside strings (or a key repeats): count the others only.
    return members == _STRING.sub(b"", raw).count(b":")


# msgspec nests a few levels deeper than the json module before refusing; a
# body nested deeper than any protocol's (v1 is 3 levels, V2 a few more) goes
# the json module's way, so what is refused as too deep stays what it was.
_DEEPEST = 64


def _members(value: Any, containers: int) -> int:
    """How many members all the objects in `value` hold together (-1 past
    `_DEEPEST` levels of nesting).

    Breadth first, containers only; once it has found `containers` of them
    (the text's `[` and `{`, an upper bound) no value left can be one, so the
    values inside the last ones found (a batch's cells) are never looked at.
    """
    found = [value] if type(value) is dict or type(value) is list else []
    level = list(found)
    depth = 1
    while level and len(found) < containers:
        depth += 1
        if depth > _DEEPEST:
            return -1  # no count: the json module decides, as it always did
        inner = [
            item
            for container in level
            for item in (container.values() if type(container) is dict else container)
            if type(item) is dict or type(item) is list
        ]
        found += inner
        level = inner
    return sum(len(c) for c in found if type(c) is dict)


# Above this many bytes numpy counts characters several times faster than
# bytes.count (which, for a byte that occurs often, compares one at a time).
_VECTOR_COUNT = 4096


_OPENS, _COLON = (b"[", b"{"), (b":",)


def _count(data: bytes, chars: tuple[bytes, ...]) -> int:
    """How many bytes of `data` are one of `chars` (single bytes)."""
    if len(data) < _VECTOR_COUNT:
        return sum(data.count(char) for char in chars)
    codes = np.frombuffer(data, dtype=np.uint8)
    return sum(int(np.count_nonzero(codes == ord(char))) for char in chars)


# A JSON string, quotes included (unrolled so long strings match in one pass).
# An unterminated one matches to the end of the body: otherwise the search would
# start again at every quote after it, quadratic in the body's size.
_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*(?:"|\\?\Z)', re.DOTALL)


def check_containers(body: bytes, *, max_rows: int, extra: int) -> None:
    """Refuse JSON with more arrays and objects than a valid request of MAX_ROWS
    rows can hold (`max_rows` + `extra`), before json.loads builds a Python
    object for each: 10 MiB of `[],` would decode into 3.5 million lists
    (~280 MB) before any shape check.

    413 too_many_rows, as a batch counted after decoding gets: a client that
    splits its batches on it recovers either way.
    """
    budget = max_rows + extra
    if _count(body, _OPENS) <= budget:  # the common case: cheap
        return
    structural = _STRING.sub(b"", body)  # brackets inside strings do not count
    if structural.count(b"[") + structural.count(b"{") > budget:
        raise PayloadTooLarge(
            "the body holds more JSON arrays and objects than a request of "
            f"MAX_ROWS={max_rows} rows can; split the batch",
            code=Code.TOO_MANY_ROWS,
        )


def discard_unread_body(request: flask.Request) -> None:
    """Make sure nothing buffers what we did not read.

    functions-framework calls request.get_data() after the handler returns, which
    would load an oversized (or refused) body into memory whole. An empty stream
    stops that; gunicorn then discards the rest of the body without buffering it.
    """
    request.stream = io.BytesIO()  # werkzeug's cached_property can be set


_FRAMEWORK_CODES = {
    400: Code.BAD_REQUEST,
    404: Code.NOT_FOUND,
    405: Code.METHOD_NOT_ALLOWED,
    413: Code.PAYLOAD_TOO_LARGE,
    415: Code.UNSUPPORTED_MEDIA_TYPE,
}


def framework_error(error: Exception) -> ServingError:
    """Our error for one raised by functions-framework or Flask outside our
    handler (e.g. its own /robots.txt 404); anything else is a generic 500."""
    from werkzeug.exceptions import HTTPException

    status = error.code if isinstance(error, HTTPException) and error.code else 500
    if status not in _FRAMEWORK_CODES:
        status = 500
    code = _FRAMEWORK_CODES.get(status, Code.INTERNAL_ERROR)
    message = "not found" if status == 404 else "the request could not be served"
    wrapped = ServingError(message, code=code)
    wrapped.status = status
    return wrapped
