"""skserve.http: a request id is echoed only when it is safe to send back."""

from __future__ import annotations

import json
import random
import re
import subprocess
import sys
from typing import Any

import flask
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from skserve.errors import BadRequest
from skserve.http import (
    _VECTOR_COUNT,
    _decode_strictly,
    check_containers,
    decode_json,
    request_id,
    stamp,
)
from tests.support import REPO

GENERATED = re.compile(r"[0-9a-f]{32}")


def _request_id(value: str) -> str:
    """request_id() of a request whose raw X-Request-Id header is `value`
    (set in the WSGI environ: clients can send what werkzeug would refuse)."""
    app = flask.Flask(__name__)
    with app.test_request_context(environ_overrides={"HTTP_X_REQUEST_ID": value}):
        return request_id(flask.request)


@pytest.mark.parametrize(
    "given", ["abc-123", "a", "trace.7:span_9-Z", "x" * 128, "0af7651916cd43dd"]
)
def test_a_safe_request_id_is_echoed(given: str) -> None:
    assert _request_id(given) == given


@pytest.mark.parametrize(
    "given",
    [
        "abc\n",  # `$` would match before a trailing newline; fullmatch does not
        "abc\r\nSet-Cookie: x=1",
        "a\tb",
        "x" * 129,
        "",
        "id with spaces",
        "ünïcode",
        "<script>",
    ],
)
def test_an_unsafe_request_id_is_replaced_not_echoed(given: str) -> None:
    replaced = _request_id(given)

    assert replaced != given
    assert GENERATED.fullmatch(replaced)


def test_a_request_without_an_id_gets_a_new_one_each_time() -> None:
    app = flask.Flask(__name__)
    ids = set()
    for _ in range(3):
        with app.test_request_context():
            ids.add(request_id(flask.request))

    assert len(ids) == 3
    assert all(GENERATED.fullmatch(rid) for rid in ids)


def test_stamp_sets_the_request_id_and_the_model_version() -> None:
    response = flask.Response()

    stamp(response, "abc-123", "20261127T073000Z-3f9a1c2b")

    assert response.headers["X-Request-Id"] == "abc-123"
    assert response.headers["X-Model-Version"] == "20261127T073000Z-3f9a1c2b"


def test_stamp_says_none_when_no_model_answered() -> None:
    response = flask.Response(headers={"X-Model-Version": "stale"})

    stamp(response, "abc-123", None)

    assert response.headers["X-Model-Version"] == "none"
    assert response.headers.getlist("X-Model-Version") == ["none"]


def test_an_unterminated_string_does_not_make_the_container_check_quadratic() -> None:
    """8 MB of escaped quotes after 10,010 brackets: linear, it takes well under
    a second; the quadratic search it replaced would take days (a 60 s bound)."""
    code = (
        "from skserve.errors import ServingError\n"
        "from skserve.http import check_containers\n"
        "body = b'{\"instances\": ' + b'[' * 10010 + b'\"' + b'\\\\\"' * 4_000_000\n"
        "try:\n"
        "    check_containers(body, max_rows=10000, extra=2)\n"
        "except ServingError as error:\n"
        "    print(error.status)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=REPO / "function",
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "413"


def test_brackets_in_strings_with_escaped_quotes_are_not_containers() -> None:
    body = b'{"features": [1, 2], "note": "a[\\"b{", "more": "[[[["}'

    check_containers(body, max_rows=1, extra=2)  # 2 real containers: allowed


# --- Decoding: msgspec with the duplicate-key count answers what json answers


def _outcome(decode: Any, data: bytes | str) -> tuple[str, Any]:
    """("ok", repr of the value) or ("error", the 400's message): repr keeps
    1 apart from 1.0 and -0.0 apart from 0.0."""
    try:
        return "ok", repr(decode(data))
    except BadRequest as error:
        return "error", error.message


def _both(data: bytes | str) -> tuple[tuple[str, Any], tuple[str, Any]]:
    return (
        _outcome(lambda d: decode_json(d, what="body"), data),
        _outcome(lambda d: _decode_strictly(d, "body"), data),
    )


@pytest.mark.parametrize(
    "data",
    [
        b'{"features": [1, 2.5, null, "basic"]}',
        b"123456789012345678901234567890",  # beyond 64 bits: still an int
        b"-0",
        b"-0.0",
        b"2.2250738585072011e-308",
        b"1.7976931348623157e308",
        b"1e400",  # the json module reads inf; msgspec refuses: the json module
        b"[1e-400]",
        b"NaN",
        b'"\\ud800"',  # an escaped lone surrogate
        "\ufeff" + '{"a": 1}',
        b'\xef\xbb\xbf{"a": 1}',
        '{"a": 1}'.encode("utf-16"),
        b'{"a":"x\ny"}',  # a raw control character in a string
        b'"\t"',
        b'{"a": 1,}',
        b"[1,]",
        b"01",
        b"",
        b" ",
        b"\x00",
        b'{"\xff": 1}',
        b'{"a": 1} x',
        b'{"a": 1}\n',
        b"[[[[]]]]",
    ],
)
def test_decode_json_answers_what_the_json_module_answers(data: bytes | str) -> None:
    fast, strict = _both(data)
    assert fast == strict


@pytest.mark.parametrize("depth", [63, 64, 65, 500])
def test_decode_json_leaves_deep_nesting_to_the_json_module(depth: int) -> None:
    # msgspec allows a few levels more than the json module: past any
    # protocol's depth the json module decides (tests/integration/
    # test_hardening.py sends every depth near the limit through the function).
    data = b'{"features": [' + b"[" * depth + b"]" * depth + b", 1]}"

    fast, strict = _both(data)

    assert fast == strict


@pytest.mark.parametrize(
    "data",
    [
        b'{"a": 1, "a": 2}',
        b'{"a" : 1 , "a" : 2}',
        b'{"": 1, "": 2}',
        b'{"a": {"b": 1, "b": 1}}',
        b'{"instances": [{"x": 1}, {"x": 1, "x": 1}]}',
        b'{"a": [{"b": {"c": 1, "c": 1}}]}',
        # Colons and quotes inside strings cannot hide a repeated key.
        b'{"k:": 1, "k:": 2}',
        b'{"a\\":": 1, "a\\":": 2}',
        b'{"note": "x:y:z", "a": 1, "a": 2}',
        # A repeated key whose value held a container the decoder dropped.
        b'{"a": [[1], {"b": 2}], "a": 3}',
    ],
)
def test_decode_json_refuses_a_repeated_key_wherever_it_hides(data: bytes) -> None:
    with pytest.raises(BadRequest) as refused:
        decode_json(data, what="body")

    assert refused.value.code == "invalid_json"
    assert "duplicate key" in refused.value.message
    assert _both(data)[0] == _both(data)[1]


def test_decode_json_counts_a_large_body_with_colons_in_its_strings() -> None:
    draw = random.Random(3)
    rows = [
        {"when": f"12:{i % 60:02d}:00", "x": draw.random(), "tag": "a:b"}
        for i in range(2000)
    ]
    body = json.dumps({"instances": rows}).encode()
    assert len(body) > _VECTOR_COUNT  # the numpy count, not bytes.count

    assert decode_json(body, what="body") == {"instances": rows}
    repeated = body[:-3] + b', "x": 1}]}'  # the last row's "x" again
    with pytest.raises(BadRequest, match="duplicate key"):
        decode_json(repeated, what="body")


_SCALARS = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=8)
)
_KEYS = st.sampled_from(["a", "b", "a:b", 'q"', "", "\u2028", "é"])
_VALUES = st.recursive(
    _SCALARS,
    lambda inner: (
        st.lists(inner, max_size=4) | st.lists(st.tuples(_KEYS, inner), max_size=4)
    ),
    max_leaves=20,
)


def _text(value: Any, ascii_only: bool) -> str:
    """JSON text of `value`, where a list of (key, value) pairs is an object
    written member by member, so a key may repeat."""
    if isinstance(value, list) and value and all(isinstance(v, tuple) for v in value):
        members = (
            f"{json.dumps(k, ensure_ascii=ascii_only)}:{_text(v, ascii_only)}"
            for k, v in value
        )
        return "{" + ",".join(members) + "}"
    if isinstance(value, list):
        return "[" + ",".join(_text(v, ascii_only) for v in value) + "]"
    return json.dumps(value, ensure_ascii=ascii_only)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(value=_VALUES, ascii_only=st.booleans(), as_bytes=st.booleans())
def test_decode_json_agrees_with_the_json_module_on_any_document(
    value: Any, ascii_only: bool, as_bytes: bool
) -> None:
    text = _text(value, ascii_only)
    data: bytes | str = text.encode() if as_bytes else text

    fast, strict = _both(data)

    assert fast == strict
