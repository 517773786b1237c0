"""skserve.signing: one HMAC covers every field, and any configured key verifies."""

from __future__ import annotations

import pytest

from skserve.errors import IntegrityError
from skserve.manifest import Manifest
from skserve.signing import key_id, sign, verify

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
