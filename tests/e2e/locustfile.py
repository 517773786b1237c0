"""Locust user for the load test in tests/test_load_faults.py (also usable by hand).

    .venv/bin/locust -f tests/locustfile.py --headless -u 16 -r 16 -t 30s \\
        --host http://127.0.0.1:8080

Each user posts the seed tutorial's request to /predict back to back (no think
time), so N users keep N connections busy. A response counts as a failure unless
it is a 200 whose JSON body has a `prediction` and whose `X-Model-Version` header
matches the body's `model_version` (and LOAD_EXPECT_VERSION, when set).

Runs under gevent inside locust only: never import this module into pytest.
"""

from __future__ import annotations

import json
import os

from locust import FastHttpUser, constant, task

SEED_PAYLOAD = {"features": [0.1, -0.5, 1.2, -0.8, 0.3, 0.9, -1.1, 0.4, -0.2, 1.5]}
BODY = json.dumps(SEED_PAYLOAD)
HEADERS = {"Content-Type": "application/json"}
EXPECT_VERSION = os.environ.get("LOAD_EXPECT_VERSION", "")


def problem(status: int, text: str, version: str) -> str | None:
    """Why a /predict answer is wrong, or None when it is a good prediction."""
    if status != 200:
        return f"HTTP {status}: {text[:200]}"
    try:
        body = json.loads(text)
    except ValueError:
        return f"not JSON: {text[:200]}"
    if not isinstance(body, dict) or body.get("prediction") not in (0, 1):
        return f"no seed prediction in {text[:200]}"
    if body.get("model_version") != version:
        return f"X-Model-Version {version!r} != body {body.get('model_version')!r}"
    if EXPECT_VERSION and version != EXPECT_VERSION:
        return f"served {version!r}, expected {EXPECT_VERSION!r}"
    return None


class PredictUser(FastHttpUser):
    """One connection posting the seed's features as fast as the server answers."""

    wait_time = constant(0)

    @task
    def predict(self) -> None:
        with self.client.post(
            "/predict", data=BODY, headers=HEADERS, catch_response=True
        ) as response:
            why = problem(
                response.status_code or 0,
                response.text or "",
                response.headers.get("X-Model-Version", "") if response.headers else "",
            )
            if why:
                response.failure(why)
            else:
                response.success()
