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


def signature(data: dict[str, Any], key: str) -> dict[str, str]:
    """The `signature` field for `data`, made with `key`."""
    return {"alg": ALGORITHM, "key_id": key_id(key), "value": _mac(key, data)}


def sign(manifest: Manifest, key: str) -> Manifest:
    """A copy of `manifest` carrying a signature made with `key`."""
    return Manifest({**manifest.data, "signature": signature(manifest.data, key)})


def verify(manifest: Manifest, keys: Sequence[str]) -> str:
    """Return the id of the key that signed `manifest`; IntegrityError otherwise."""
    return verified(
        manifest.data,
        keys,
        what=f"manifest of {manifest.version}",
        fix="publish it with MODEL_SIGNING_KEY set",
    )


def verified(data: dict[str, Any], keys: Sequence[str], *, what: str, fix: str) -> str:
    """The id of the key whose signature `data` carries; IntegrityError
    (signature_invalid) naming `what` and how to `fix` it otherwise.

    Every key is tried, in constant time per key, whatever matched before.
    """
    signed = data.get("signature")
    if not isinstance(signed, dict) or not isinstance(signed.get("value"), str):
        raise IntegrityError(
            f"{what} is not signed, and MODEL_SIGNING_KEY requires signed models; "
            f"{fix}",
            code=Code.SIGNATURE_INVALID,
        )
    if signed.get("alg") != ALGORITHM:
        raise IntegrityError(
            f"{what} is signed with another algorithm; only {ALGORITHM} is accepted",
            code=Code.SIGNATURE_INVALID,
        )
    matched = ""
    given = signed["value"].encode("utf-8", "replace")
    for key in keys:
        if hmac.compare_digest(_mac(key, data).encode(), given):
            matched = key_id(key)
    if not matched:
        raise IntegrityError(
            f"{what} has a signature that matches none of the {len(keys)} "
            "configured MODEL_SIGNING_KEY key(s); refusing to load it",
            code=Code.SIGNATURE_INVALID,
        )
    return matched
