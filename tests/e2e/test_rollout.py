"""Hot rollout through real stores: list, promote and rollback with
`python -m train` while a functions-framework process serves under load.

What is checked is the order of what happened, never how long it took: the
server reaches its store only through a proxy that records each HTTP request,
so "a refresh happened after the unpromoted publish" is a request seen, not a
sleep that is long enough on a quiet machine.
"""

from __future__ import annotations

import contextlib
import re
import socket
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from urllib.parse import unquote, urlparse

import pytest
import requests

from tests.support import SEED_FEATURES, FunctionServer, GCSEmulator, run_train

pytestmark = pytest.mark.e2e

# An HTTP/1.1 request line, as the SDKs send it (one per request on a kept-alive
# connection; the server's requests to its store carry no bodies that could
# hold such a line).
_REQUEST_LINE = re.compile(rb"([A-Z]+) (\S+) HTTP/1\.[01]")


class _RecordingProxy:
    """Forwards 127.0.0.1:<port> to `upstream` (an http:// URL) and records the
    target of every request sent through it, in the order they were sent."""

    def __init__(self, upstream: str) -> None:
        parsed = urlparse(upstream)
        self._upstream = (parsed.hostname or "127.0.0.1", parsed.port or 80)
        self._lock = threading.Lock()
        self._sockets: list[socket.socket] = []
        self._targets: list[str] = []
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self._listener.getsockname()[1]}"
        self._start(self._accept)

    @staticmethod
    def _start(target: Callable[..., None], *args: object) -> None:
        threading.Thread(target=target, args=args, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:  # the listener was closed: stop
                return
            server = socket.create_connection(self._upstream)
            with self._lock:
                self._sockets += [client, server]
            self._start(self._pump, client, server, True)
            self._start(self._pump, server, client, False)

    def _pump(self, src: socket.socket, dst: socket.socket, requests: bool) -> None:
        pending = b""
        try:
            while chunk := src.recv(65536):
                if requests:
                    *lines, pending = (pending + chunk).split(b"\r\n")
                    found = [
                        m for line in lines if (m := _REQUEST_LINE.fullmatch(line))
                    ]
                    with self._lock:
                        self._targets += [unquote(m[2].decode()) for m in found]
                dst.sendall(chunk)
        except OSError:
            pass  # one side hung up: that ends this connection
        finally:
            for sock in (src, dst):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)

    def reads_of(self, key: str) -> int:
        """How many requests so far named an object whose key ends with `key`."""
        with self._lock:
            return sum(t.split("?")[0].endswith(key) for t in self._targets)

    def stop(self) -> None:
        # shutdown, not only close, wakes the thread blocked in accept() on Linux.
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)
        self._listener.close()
        with self._lock:
            for sock in self._sockets:
                sock.close()


def _until(condition: Callable[[], bool], what: str, timeout: float = 60) -> None:
    """Return once `condition()` holds; fail naming `what` after `timeout`."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting until {what}")
        time.sleep(0.02)


class _Traffic:
    """Sequential requests in a background thread, recording status and version."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.seen: list[tuple[int, str]] = []  # list.append is atomic
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        deadline = time.monotonic() + 300
        with requests.Session() as session:
            while not self._stop.is_set() and time.monotonic() < deadline:
                response = session.post(
                    self.url + "/predict", json={"features": SEED_FEATURES}, timeout=60
                )
                self.seen.append(
                    (response.status_code, response.headers["X-Model-Version"])
                )

    def wait_for(self, version: str) -> None:
        _until(
            lambda: bool(self.seen) and self.seen[-1][1] == version,
            f"{version} is served; last: {self.seen[-3:]}",
        )

    def answers_after(self, count: int) -> None:
        """Wait until `count` more answers than now have been recorded."""
        target = len(self.seen) + count
        _until(lambda: len(self.seen) >= target, f"{count} more answers")

    def stop(self) -> Counter:
        self._stop.set()
        self._thread.join(90)
        assert not self._thread.is_alive()
        return Counter(status for status, _ in self.seen)


def _version(stdout: str) -> str:
    match = re.search(r"version (\S+)", stdout)
    assert match, stdout
    return match.group(1)


def _runs(values: list[str]) -> list[str]:
    """`values` with each run of equal neighbours kept once: the order of change."""
    return [v for i, v in enumerate(values) if i == 0 or values[i - 1] != v]


def _rollout(store: str, env: dict[str, str], endpoint: str, tmp_path: Path) -> None:
    """Publish, serve, publish unpromoted, promote, roll back. The server (only)
    reaches the store through the recording proxy: `env[endpoint]` is where
    the store listens."""

    def train(*args: str) -> str:
        result = run_train(*args, "--store", store, "--name", "demo", env=env)
        assert result.returncode == 0, result.stderr
        return result.stdout

    first = _version(train())
    proxy = _RecordingProxy(env[endpoint])
    server_env = {
        **env,
        endpoint: proxy.url,
        "MODEL_URI": f"{store}/demo",
        "MODEL_REFRESH_SECONDS": "1",
    }
    try:
        with FunctionServer(server_env, tmp_path) as server:
            traffic = _Traffic(server.url)
            traffic.wait_for(first)

            second = _version(train("--no-promote"))
            listed = train("list")
            # Each refresh begins by reading LATEST (one request through the
            # proxy on either store), so the second read sent after the publish
            # begins a refresh wholly after it. The request that refreshed is
            # answered after the refresh, and one more after that.
            published = proxy.reads_of("demo/LATEST")
            _until(
                lambda: proxy.reads_of("demo/LATEST") >= published + 2,
                "the server refreshes after the unpromoted publish",
            )
            traffic.answers_after(2)
            before_promote = len(traffic.seen)
            train("promote", second)
            traffic.wait_for(second)
            train("promote", first)  # rollback
            traffic.wait_for(first)
            statuses = traffic.stop()
            loads = server.load_count()
    finally:
        proxy.stop()

    versions = [version for _, version in traffic.seen]
    assert listed.index(second) < listed.index(first)  # newest first
    assert f"* {first}" in listed
    assert set(statuses) == {200}, statuses
    # Until it was promoted, the newer version was never served, refreshes
    # included; then served, then rolled back: in exactly that order.
    assert set(versions[:before_promote]) == {first}
    assert _runs(versions) == [first, second, first]
    assert loads == 3


def test_rollout_and_rollback_through_s3(s3_env: dict, tmp_path: Path) -> None:
    env = {k: v for k, v in s3_env.items() if k != "BUCKET"}

    _rollout(f"s3://{s3_env['BUCKET']}/prod", env, "AWS_ENDPOINT_URL_S3", tmp_path)


def test_rollout_and_rollback_through_gcs(
    gcs_emulator: GCSEmulator, tmp_path: Path
) -> None:
    env = {"STORAGE_EMULATOR_HOST": gcs_emulator.host}
    store = f"gs://models/rollout-{uuid.uuid4().hex[:8]}"

    _rollout(store, env, "STORAGE_EMULATOR_HOST", tmp_path)
