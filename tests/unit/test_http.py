"""skserve.http: a request id is echoed only when it is safe to send back."""

from __future__ import annotations

import re
import subprocess
import sys

import flask
import pytest

from skserve.http import check_containers, request_id, stamp
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
