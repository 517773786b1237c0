"""Hot rollout through real stores: list, promote and rollback with
`python -m train` while a functions-framework process serves under load."""

from __future__ import annotations

import re
import threading
import time
import uuid
from collections import Counter
from pathlib import Path

import pytest
import requests

from tests.support import SEED_FEATURES, FunctionServer, GCSEmulator, run_train

pytestmark = pytest.mark.e2e


class _Traffic:
    """Sequential requests in a background thread, recording status and version."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.seen: list[tuple[int, str]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        deadline = time.monotonic() + 180
        with requests.Session() as session:
            while not self._stop.is_set() and time.monotonic() < deadline:
                response = session.post(
                    self.url + "/predict", json={"features": SEED_FEATURES}, timeout=30
                )
                self.seen.append(
                    (response.status_code, response.headers["X-Model-Version"])
                )

    def wait_for(self, version: str, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.seen and self.seen[-1][1] == version:
                return
            time.sleep(0.05)
        raise AssertionError(f"never served {version}; last: {self.seen[-3:]}")

    def stop(self) -> Counter:
        self._stop.set()
        self._thread.join(30)
        return Counter(status for status, _ in self.seen)


def _version(stdout: str) -> str:
    match = re.search(r"version (\S+)", stdout)
    assert match, stdout
    return match.group(1)


def _rollout(store: str, env: dict[str, str], tmp_path: Path) -> None:
    def train(*args: str) -> str:
        result = run_train(*args, "--store", store, "--name", "demo", env=env)
        assert result.returncode == 0, result.stderr
        return result.stdout

    first = _version(train())
    server_env = {**env, "MODEL_URI": f"{store}/demo", "MODEL_REFRESH_SECONDS": "1"}
    with FunctionServer(server_env, tmp_path) as server:
        traffic = _Traffic(server.url)
        traffic.wait_for(first)

        second = _version(train("--no-promote"))
        listed = train("list")
        time.sleep(1.5)  # a refresh happens: the unpromoted version must not be served
        assert traffic.seen[-1][1] == first
        train("promote", second)
        traffic.wait_for(second)
        train("promote", first)  # rollback
        traffic.wait_for(first)
        statuses = traffic.stop()

    assert listed.index(second) < listed.index(first)  # newest first
    assert f"* {first}" in listed
    assert set(statuses) == {200}, statuses
    assert statuses[200] > 10
    assert server.load_count() == 3


def test_rollout_and_rollback_through_s3(s3_env: dict, tmp_path: Path) -> None:
    env = {k: v for k, v in s3_env.items() if k != "BUCKET"}

    _rollout(f"s3://{s3_env['BUCKET']}/prod", env, tmp_path)


def test_rollout_and_rollback_through_gcs(
    gcs_emulator: GCSEmulator, tmp_path: Path
) -> None:
    env = {"STORAGE_EMULATOR_HOST": gcs_emulator.host}

    _rollout(f"gs://models/rollout-{uuid.uuid4().hex[:8]}", env, tmp_path)
