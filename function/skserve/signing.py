"""Manifest signatures: HMAC-SHA256 over a canonical form of the manifest.

The manifest lists every file's SHA-256, so one signature covers the whole
version. Several keys may be configured while rotating; the first one signs.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Sequence
from typing import Any

from skserve.errors import Code, IntegrityError
from skserve.manifest import Manifest

ALGORITHM = "HMAC-SHA256"


def canonical(data: dict[str, Any]) -> bytes:
    """The bytes that are signed: every field but `signature`, in one fixed form."""
    unsigned = {k: v for k, v in data.items() if k != "signature"}
    return json.dumps(
        unsigned, sort_keys=True, separators=(",", ":"), ensure_ascii=True
    ).encode()


def key_id(key: str) -> str:
    """A short public fingerprint of a key, so logs can say which one signed."""
    return hashlib.sha256(key.encode()).hexdigest()[:12]


def _mac(key: str, data: dict[str, Any]) -> str:
    return hmac.new(key.encode(), canonical(data), hashlib.sha256).hexdigest()


def sign(manifest: Manifest, key: str) -> Manifest:
    """A copy of `manifest` carrying a signature made with `key`."""
    signature = {
        "alg": ALGORITHM,
        "key_id": key_id(key),
        "value": _mac(key, manifest.data),
    }
    return Manifest({**manifest.data, "signature": signature})


def verify(manifest: Manifest, keys: Sequence[str]) -> str:
    """Return the id of the key that signed `manifest`; IntegrityError otherwise.

    Every key is tried, in constant time per key, whatever matched before.
    """
    signature = manifest.data.get("signature")
    if not isinstance(signature, dict) or not isinstance(signature.get("value"), str):
        raise IntegrityError(
            f"manifest of {manifest.version} is not signed, and MODEL_SIGNING_KEY "
            "requires signed models; publish it with MODEL_SIGNING_KEY set",
            code=Code.SIGNATURE_INVALID,
        )
    if signature.get("alg") != ALGORITHM:
        raise IntegrityError(
            f"manifest of {manifest.version} is signed with another algorithm; "
            f"only {ALGORITHM} is accepted",
            code=Code.SIGNATURE_INVALID,
        )
    matched = ""
    for key in keys:
        given = signature["value"].encode("utf-8", "replace")
        if hmac.compare_digest(_mac(key, manifest.data).encode(), given):
            matched = key_id(key)
    if not matched:
        raise IntegrityError(
            f"manifest of {manifest.version} has a signature that matches none of the "
            f"{len(keys)} configured MODEL_SIGNING_KEY key(s); refusing to load it",
            code=Code.SIGNATURE_INVALID,
        )
    return matched
