"""Request limits through a real functions-framework process, which reads the
body itself after the handler returns: the limit must hold anyway."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from tests.support import SEED_FEATURES, FunctionServer

pytestmark = pytest.mark.e2e

LIMIT = 4096


@pytest.fixture(scope="module")
def server(
    seed_store: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[FunctionServer]:
    env = {
        "MODEL_URI": str(seed_store / "seed"),
        "MAX_BODY_BYTES": str(LIMIT),
        "MAX_ROWS": "50",
    }
    with FunctionServer(env, tmp_path_factory.mktemp("limits")) as running:
        yield running


def _chunks(total: int, size: int = 64 * 1024) -> Iterator[bytes]:
    """A JSON body streamed with Transfer-Encoding: chunked (no Content-Length)."""
    yield b'{"instances": ['
    row = json.dumps(SEED_FEATURES).encode() + b","
    sent = 0
    while sent < total:
        piece = row * max(1, size // len(row))
        sent += len(piece)
        yield piece
    yield json.dumps(SEED_FEATURES).encode() + b"]}"


def _rss_kib(pid: int) -> int:
    """Resident memory of a process and its children (gunicorn forks a worker)."""
    total = 0
    pending = [pid]
    while pending:
        current = pending.pop()
        status = Path(f"/proc/{current}/status").read_text()
        total += int(
            next(
                line.split()[1]
                for line in status.splitlines()
                if line.startswith("VmRSS")
            )
        )
        for task in Path(f"/proc/{current}/task").iterdir():
            pending.extend(int(c) for c in (task / "children").read_text().split())
    return total


def _post_chunked(
    server: FunctionServer, total: int, size: int = 64 * 1024
) -> requests.Response:
    return requests.post(
        server.url + "/predict",
        data=_chunks(total, size),
        headers={"Content-Type": "application/json"},
        timeout=120,
    )


def test_chunked_body_within_the_limit_is_served(server: FunctionServer) -> None:
    response = _post_chunked(server, 1000, size=200)

    assert response.status_code == 200
    assert len(response.json()["predictions"]) > 1


def test_chunked_body_over_the_limit_is_413(server: FunctionServer) -> None:
    response = _post_chunked(server, LIMIT * 4)

    assert response.status_code == 413
    assert response.json()["error"]["code"] == "payload_too_large"
    assert f"MAX_BODY_BYTES={LIMIT}" in response.json()["error"]["message"]


def test_declared_length_over_the_limit_is_413(server: FunctionServer) -> None:
    body = json.dumps({"instances": [SEED_FEATURES] * 200})

    response = requests.post(
        server.url + "/predict",
        data=body,
        headers={"Content-Type": "application/json"},
        timeout=30,
    )

    assert response.status_code == 413
    assert response.json()["error"]["code"] == "payload_too_large"


def test_a_huge_chunked_body_is_refused_without_being_buffered(
    server: FunctionServer,
) -> None:
    server.post({"features": SEED_FEATURES})  # load the model first
    before = _rss_kib(server.process.pid)

    response = _post_chunked(server, 256 * 1024 * 1024)

    grown_mib = (_rss_kib(server.process.pid) - before) / 1024
    assert response.status_code == 413
    assert grown_mib < 64, f"server grew by {grown_mib:.0f} MiB for a refused body"
    assert server.post({"features": SEED_FEATURES}).status_code == 200


def test_more_rows_than_max_rows_is_413(server: FunctionServer) -> None:
    response = server.post({"instances": [[0.0] * 10] * 51})

    assert response.status_code == 413
    assert response.json()["error"]["code"] == "too_many_rows"
