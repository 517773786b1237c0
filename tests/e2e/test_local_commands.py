"""`make run` and `make demo` say where the function is once it answers, and
`make demo` serves the page beside a function that allows it."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from tests.support import REPO, SEED_FEATURES, free_port

pytestmark = pytest.mark.e2e


def _start(target: str, env: dict[str, str], log: Path) -> subprocess.Popen:
    return subprocess.Popen(
        ["make", "--no-print-directory", target],
        cwd=REPO,
        env={**os.environ, **env},
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
        start_new_session=True,  # Ctrl-C reaches the whole group, as in a terminal
    )


def _wait_for(log: Path, text: str, process: subprocess.Popen) -> str:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        printed = log.read_text(errors="replace")
        if text in printed:
            return printed
        assert process.poll() is None, printed
        time.sleep(0.1)
    raise AssertionError(f"{text!r} never printed:\n{log.read_text()}")


def _interrupt(process: subprocess.Popen) -> int:
    os.killpg(process.pid, signal.SIGINT)
    try:
        return process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        raise


def test_make_run_says_where_it_serves_once_it_answers(
    served: Path, tmp_path: Path
) -> None:
    port = free_port()
    process = _start(
        "run", {"PORT": str(port), "MODEL_URI": str(served)}, tmp_path / "log"
    )
    try:
        printed = _wait_for(tmp_path / "log", "(Ctrl-C stops it); try:", process)
        lines = printed.splitlines()
        line = next(text for text in lines if text.startswith("serving "))
        curl = next(text for text in lines if text.strip().startswith("curl "))
        # The curl shown is the one to paste: run it as a shell would.
        tried = subprocess.run(
            curl + " -sS", shell=True, capture_output=True, text=True, timeout=30
        )
        answer = requests.post(
            f"http://127.0.0.1:{port}/predict",
            json={"features": SEED_FEATURES},
            timeout=30,
        )
    finally:
        code = _interrupt(process)

    assert (
        line == f"serving {served} at http://127.0.0.1:{port} (Ctrl-C stops it); try:"
    )
    assert f"http://127.0.0.1:{port}/predict" in curl
    # The row is the served version's typical one, not a row of zeros.
    assert '"features": [0.583361, 0.0297468' in curl
    assert tried.returncode == 0, tried.stderr
    assert set(json.loads(tried.stdout)) == {"prediction", "model_version"}
    assert answer.status_code == 200
    assert code in (0, 2, 130, -signal.SIGINT)  # stopped by the interrupt


def test_make_demo_serves_the_page_beside_a_function_that_allows_it(
    served: Path, tmp_path: Path
) -> None:
    port, page = free_port(), free_port()
    env = {"DEMO_PORT": str(port), "DEMO_WEB_PORT": str(page), "MODEL_URI": str(served)}
    process = _start("demo", env, tmp_path / "log")
    try:
        printed = _wait_for(tmp_path / "log", "the demo page:", process)
        index = requests.get(f"http://127.0.0.1:{page}/index.html", timeout=30)
        module = requests.get(f"http://127.0.0.1:{page}/app.js", timeout=30)
        preflight = requests.options(
            f"http://127.0.0.1:{port}/predict",
            headers={
                "Origin": f"http://127.0.0.1:{page}",
                "Access-Control-Request-Method": "POST",
            },
            timeout=30,
        )
    finally:
        _interrupt(process)

    assert f"the demo page: http://127.0.0.1:{page}/?url=http://127.0.0.1:{port}" in (
        printed
    )
    assert index.status_code == 200 and "<html" in index.text
    assert module.headers["Content-Type"].startswith("text/javascript")
    assert (
        preflight.headers["Access-Control-Allow-Origin"] == f"http://127.0.0.1:{page}"
    )


def test_batch_without_apache_beam_says_what_to_install_in_one_line() -> None:
    code = (
        "import sys, runpy; sys.modules['apache_beam'] = None; "
        "runpy.run_module('batch', run_name='__main__')"
    )

    result = subprocess.run(
        [sys.executable, "-c", code, "--help"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "error: python -m batch needs Apache Beam, which is not installed here; "
        "run `make batch-setup` (pip install -r batch/requirements.txt)"
    ]


def test_stopping_make_run_with_kill_stops_the_function_too(
    served: Path, tmp_path: Path
) -> None:
    """A plain kill of the launcher (SIGTERM, as a process manager sends)
    leaves no function holding the port."""
    port = free_port()
    process = _start(
        "run", {"PORT": str(port), "MODEL_URI": str(served)}, tmp_path / "log"
    )
    try:
        _wait_for(tmp_path / "log", "(Ctrl-C stops it); try:", process)
        launcher = subprocess.run(
            ["pgrep", "-f", "-s", str(process.pid), "infra/local/serve.py"],
            capture_output=True,
            text=True,
        ).stdout.split()
        assert len(launcher) == 1, launcher
        os.kill(int(launcher[0]), signal.SIGTERM)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                requests.get(f"http://127.0.0.1:{port}/health", timeout=1)
            except requests.ConnectionError:
                break
            time.sleep(0.2)
        else:
            raise AssertionError("the function still answers after kill")
        code = process.wait(timeout=20)  # make ends with its command
        time.sleep(1)
        left = subprocess.run(
            ["pgrep", "-s", str(process.pid)], capture_output=True, text=True
        ).stdout.split()
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=20)

    assert code != 0  # make reports its command was stopped
    assert left == [], left
