"""skserve.signing: one HMAC over a fixed canonical form covers every field, and
any configured key verifies."""

from __future__ import annotations

import hashlib
import hmac
import json
from datetime import UTC, datetime

import pytest

from skserve.errors import IntegrityError
from skserve.loader import Pointer, parse_pointer, pointer_bytes
from skserve.manifest import Manifest
from skserve.signing import canonical, key_id, sign, verify

KEY = "k" * 32
OLD_KEY = "o" * 32
FACTS = {"name": "m", "version": "v1", "classes": [0, 1], "files": {}}


def test_sign_is_stable_across_key_order_and_whitespace() -> None:
    manifest = Manifest({"b": 1, "a": [1, 2], "version": "v"})
    reordered = Manifest({"version": "v", "a": [1, 2], "b": 1})

    assert (
        sign(manifest, KEY).data["signature"] == sign(reordered, KEY).data["signature"]
    )


def test_verify_names_the_key_that_signed_among_rotated_keys() -> None:
    signed = sign(Manifest(FACTS), OLD_KEY)

    assert verify(signed, [KEY, OLD_KEY]) == key_id(OLD_KEY)
    assert signed.data["signature"]["key_id"] == key_id(OLD_KEY)


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        ({"classes": [1, 0]}, "matches none of the 2"),
        ({"signature": None}, "is not signed"),
        ({"signature": {"alg": "HMAC-MD5", "value": "00"}}, "another algorithm"),
    ],
)
def test_verify_refuses_a_changed_unsigned_or_foreign_signature(
    change: dict, problem: str
) -> None:
    signed = sign(Manifest(FACTS), KEY)
    tampered = Manifest({**signed.data, **change})

    with pytest.raises(IntegrityError) as raised:
        verify(tampered, [KEY, OLD_KEY])

    assert raised.value.code == "signature_invalid"
    assert problem in raised.value.message


# --- fixed test vectors -------------------------------------------------------------
# The documented canonical form (docs/security.md, "Checksums prove integrity;
# signatures prove origin"): HMAC-SHA256 with the key's UTF-8 bytes over the
# JSON of every field but `signature`, keys sorted at every level, separators
# (",", ":"), ensure_ascii. The bytes and digests below were written and
# computed by hand, once, with
# `hmac.new(b"k" * 32, CANONICAL, hashlib.sha256).hexdigest()`: every signature
# already published depends on them, so a change of canonical form must fail
# here, not pass because `sign()` still agrees with `verify()`.

KEY_ID = "5e318f8cf9cb"  # hashlib.sha256(b"k" * 32).hexdigest()[:12]
DIGEST = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"  # a file's

# Keys out of order at every level, non-ASCII text, a float, null, booleans, and
# a stale signature that the canonical form must leave out.
MANIFEST_FACTS = {
    "version": "20261129T102017.512Z-d94d2dcc",
    "name": "houses",
    "task": "classification",
    "target": None,
    "classes": ["high", "low"],
    "metrics": {"f1": 0.8135, "accuracy": 0.85},
    "files": {
        "model.pkl": {
            "sha256": DIGEST,
            "bytes": 1234,
        }
    },
    "input_schema": {
        "format": "dataframe",
        "columns": [
            {"name": "área", "kind": "number", "nullable": True},
            {
                "name": "plan",
                "kind": "string",
                "nullable": False,
                "categories": ["basic", "café"],
                "unknown": True,
            },
        ],
    },
    "example": [52.5, "café"],
    "signature": {"alg": "HMAC-SHA256", "key_id": "stale", "value": "00"},
}
MANIFEST_CANONICAL = (
    b'{"classes":["high","low"],"example":[52.5,"caf\\u00e9"],'
    b'"files":{"model.pkl":{"bytes":1234,"sha256":'
    b'"9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"}},'
    b'"input_schema":{"columns":[{"kind":"number","name":"\\u00e1rea",'
    b'"nullable":true},{"categories":["basic","caf\\u00e9"],"kind":"string",'
    b'"name":"plan","nullable":false,"unknown":true}],"format":"dataframe"},'
    b'"metrics":{"accuracy":0.85,"f1":0.8135},"name":"houses","target":null,'
    b'"task":"classification","version":"20261129T102017.512Z-d94d2dcc"}'
)
MANIFEST_MAC = "72372e868e55b10c6cc8f136f58fb20d2fb6a48e0f5d9d56a97a2c17d0a626b2"

# LATEST for that version, promoted at 2026-11-29T10:20:17.512Z.
POINTER_CANONICAL = (
    b'{"name":"houses","promoted_at":"2026-11-29T10:20:17.512000Z",'
    b'"version":"20261129T102017.512Z-d94d2dcc"}'
)
POINTER_MAC = "64bf6c463b1416de51169eb1575d0be7022d3b452972c3ff8e07ebf5a737de43"
PROMOTED_AT = datetime(2026, 11, 29, 10, 20, 17, 512000, tzinfo=UTC)


def test_the_vectors_are_hmac_sha256_of_their_canonical_bytes() -> None:
    """The vectors themselves, with nothing from skserve: a typo in them fails
    here rather than in the tests that rely on them."""
    for canonical_bytes, mac in [
        (MANIFEST_CANONICAL, MANIFEST_MAC),
        (POINTER_CANONICAL, POINTER_MAC),
    ]:
        assert (
            hmac.new(KEY.encode(), canonical_bytes, hashlib.sha256).hexdigest() == mac
        )
    assert hashlib.sha256(KEY.encode()).hexdigest()[:12] == KEY_ID


def test_manifest_signature_is_the_fixed_vector_over_the_canonical_form() -> None:
    signed = sign(Manifest(MANIFEST_FACTS), KEY)

    assert canonical(MANIFEST_FACTS) == MANIFEST_CANONICAL
    assert signed.data["signature"] == {
        "alg": "HMAC-SHA256",
        "key_id": KEY_ID,
        "value": MANIFEST_MAC,
    }
    assert key_id(KEY) == KEY_ID


def test_a_manifest_carrying_the_fixed_vector_verifies() -> None:
    """What an already published manifest holds must keep verifying."""
    published = {
        **MANIFEST_FACTS,
        "signature": {"alg": "HMAC-SHA256", "key_id": KEY_ID, "value": MANIFEST_MAC},
    }

    assert verify(Manifest(published), [OLD_KEY, KEY]) == KEY_ID


def test_signed_latest_pointer_is_the_fixed_vector_over_the_canonical_form() -> None:
    stored = pointer_bytes(
        "20261129T102017.512Z-d94d2dcc",
        name="houses",
        signing_key=KEY,
        now=PROMOTED_AT,
    )

    assert stored.endswith(b"\n")
    assert json.loads(stored) == {
        "name": "houses",
        "promoted_at": "2026-11-29T10:20:17.512000Z",
        "version": "20261129T102017.512Z-d94d2dcc",
        "signature": {"alg": "HMAC-SHA256", "key_id": KEY_ID, "value": POINTER_MAC},
    }
    assert canonical(json.loads(stored)) == POINTER_CANONICAL


def test_a_latest_pointer_carrying_the_fixed_vector_is_accepted() -> None:
    stored = (
        b'{"name": "houses", "promoted_at": "2026-11-29T10:20:17.512000Z", '
        b'"signature": {"alg": "HMAC-SHA256", "key_id": "5e318f8cf9cb", "value": '
        b'"64bf6c463b1416de51169eb1575d0be7022d3b452972c3ff8e07ebf5a737de43"}, '
        b'"version": "20261129T102017.512Z-d94d2dcc"}\n'
    )

    pointer = parse_pointer(stored, signing_keys=[OLD_KEY, KEY], name="houses")

    assert pointer == Pointer("20261129T102017.512Z-d94d2dcc", PROMOTED_AT)
