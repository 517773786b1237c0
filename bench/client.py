"""The bench's HTTP client: it polls for the first 200, times sequential
keep-alive requests, and fails the run on any answer that is not the model's
own label (or the floor's constant)."""

from __future__ import annotations

import http.client
import json
import subprocess
import time
from typing import Any

from bench.common import (
    HEADERS,
    HOST,
    NOOP_ANSWER,
    PARSE_ANSWER,
    POLL_SECONDS,
    REQUEST_TIMEOUT_SECONDS,
    BenchError,
    Check,
    Target,
)

# What each floor answers, and where that constant is written.
FLOOR_ANSWERS = {
    "noop": (NOOP_ANSWER, "bench/noop_main.py's constant"),
    "parse": (PARSE_ANSWER, "bench/parse_main.py's constant"),
}


def post(conn: http.client.HTTPConnection, body: bytes) -> tuple[int, bytes]:
    """POST `body` to /predict; return status and body (fully read)."""
    conn.request("POST", "/predict", body=body, headers=HEADERS)
    response = conn.getresponse()
    return response.status, response.read()


def _parsed(status: int, body: bytes) -> Any:
    """The JSON of a 200's body, or None."""
    try:
        return json.loads(body) if status == 200 else None
    except ValueError:
        return None


def _floor(target: Target, status: int, body: bytes) -> None:
    """BenchError unless a floor answered its constant."""
    constant, where = FLOOR_ANSWERS[target.kind]
    if _parsed(status, body) != constant:
        raise BenchError(
            f"{target.name} answered {status} {body[:300]!r}; expected "
            f"{json.dumps(constant)} ({where})"
        )


def check_answer(target: Target, status: int, body: bytes, expected: Any) -> None:
    """BenchError unless `target` answered a one-row request as it should.

    The predicting servers must give a 200 with `expected` (the model's own
    label for that row); the floors must give their constant.
    """
    if target.kind in FLOOR_ANSWERS:
        _floor(target, status, body)
        return
    answer = _parsed(status, body)
    if isinstance(answer, dict) and answer.get("prediction") == expected:
        return
    raise BenchError(
        f"{target.name} answered {status} {body[:300]!r}; expected prediction "
        f"{json.dumps(expected)} (the model's own label)"
    )


def check_batch(target: Target, status: int, body: bytes, expected: list[Any]) -> None:
    """BenchError unless a batch was answered with the model's own labels (the
    JSON-parsing floor: with its constant)."""
    if target.kind in FLOOR_ANSWERS:
        _floor(target, status, body)
        return
    answer = _parsed(status, body)
    predictions = answer.get("predictions") if isinstance(answer, dict) else None
    if predictions != expected:
        wrong = (
            sum(a != b for a, b in zip(predictions, expected, strict=True))
            if isinstance(predictions, list) and len(predictions) == len(expected)
            else None
        )
        detail = (
            f"{wrong} of {len(expected)} labels differ"
            if wrong is not None
            else f"not a list of {len(expected)} predictions"
        )
        raise BenchError(
            f"{target.name} answered a {len(expected)}-row batch with {status} "
            f"({detail}): {body[:300]!r}; expected the model's own labels"
        )


def wait_ready(
    target: Target,
    proc: subprocess.Popen[bytes],
    port: int,
    request: bytes,
    started: float,
    timeout: float,
) -> tuple[float, float, int, int, bytes]:
    """Poll POST /predict of `request` until the first 200.

    Returns (start and end of the attempt that got it, in seconds since `started`;
    attempts made; its status and body). Connection errors and non-200 answers:
    not ready.
    """
    deadline = started + timeout
    attempts = 0
    last = "no answer"
    while True:
        if proc.poll() is not None:
            raise BenchError(
                f"{target.name} exited with {proc.returncode} before ready"
            )
        attempt = time.perf_counter()
        if attempt > deadline:
            raise BenchError(
                f"{target.name} not ready within {timeout}s (last: {last})"
            )
        attempts += 1
        conn = http.client.HTTPConnection(
            HOST, port, timeout=max(0.1, deadline - attempt)
        )
        try:
            status, body = post(conn, request)
        except (OSError, http.client.HTTPException) as error:
            last = f"{type(error).__name__}: {error}"
        else:
            if status == 200:
                ready = time.perf_counter() - started
                return attempt - started, ready, attempts, status, body
            last = f"HTTP {status} {body[:200]!r}"
        finally:
            conn.close()
        time.sleep(POLL_SECONDS)


def timed_posts(
    target: Target,
    port: int,
    count: int,
    requests: list[tuple[bytes, Check]],
    timeout: float,
) -> tuple[list[float], int]:
    """`count` sequential keep-alive POSTs, taking the (body, check) pairs of
    `requests` in turn; (latencies in ms, reconnects).

    Each answer is checked with its `check`, outside the timed span.
    """
    conn = http.client.HTTPConnection(HOST, port, timeout=REQUEST_TIMEOUT_SECONDS)
    deadline = time.perf_counter() + timeout
    latencies: list[float] = []
    reconnects = 0
    try:
        for index in range(count):
            body, check = requests[index % len(requests)]
            if latencies and conn.sock is None:
                reconnects += 1  # the server closed the previous connection
            begin = time.perf_counter()
            if begin > deadline:
                raise BenchError(
                    f"{target.name}: {count} requests took over {timeout}s"
                )
            try:
                status, answer = post(conn, body)
            except (OSError, http.client.HTTPException) as error:
                raise BenchError(f"{target.name}: request failed: {error!r}") from None
            latencies.append((time.perf_counter() - begin) * 1000)
            check(status, answer)
    finally:
        conn.close()
    return latencies, reconnects
