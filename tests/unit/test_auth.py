"""skserve.auth: a key by Bearer or X-API-Key, compared in constant time."""

from __future__ import annotations

import pytest

KEY = "k" * 32
OLD_KEY = "o" * 32


def test_every_key_is_compared_in_constant_time(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import hmac

    import flask

    from skserve import auth

    compared: list[tuple[bytes, bytes]] = []
    real = hmac.compare_digest

    def counting(a: bytes, b: bytes) -> bool:
        compared.append((a, b))
        return real(a, b)

    monkeypatch.setattr(auth.hmac, "compare_digest", counting)
    context = flask.Flask(__name__).test_request_context(headers={"X-API-Key": KEY})

    with context:
        auth.check_api_key(flask.request, [KEY, OLD_KEY, "z" * 32])

    assert len(compared) == 3  # no early exit after the first key matched
    assert {len(a) for pair in compared for a in pair} == {32}  # digests only
