"""API keys: `Authorization: Bearer <key>` or `X-API-Key: <key>`."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Sequence

import flask

from skserve.errors import Unauthorized


def _digest(value: str) -> bytes:
    # Comparing fixed-length digests keeps the comparison constant-time even
    # when the given key and a configured key differ in length.
    return hashlib.sha256(value.encode("utf-8", "surrogateescape")).digest()


def check_api_key(request: flask.Request, keys: Sequence[str]) -> None:
    """Raise Unauthorized unless the request carries one of `keys`."""
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    given = token.strip() if scheme.lower() == "bearer" else ""
    given = given or request.headers.get("X-API-Key", "").strip()
    if not given:
        raise Unauthorized(
            "missing API key: send Authorization: Bearer <key> or X-API-Key: <key>"
        )
    digest = _digest(given)
    matched = False
    for key in keys:  # no early exit: timing does not depend on which key matched
        matched |= hmac.compare_digest(digest, _digest(key))
    if not matched:
        raise Unauthorized("invalid API key")
