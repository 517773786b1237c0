"""bench/coldstart.py measures four servers and reports every figure (no timings)."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from tests.support import REPO

SCRIPT = REPO / "bench" / "coldstart.py"
SERVERS = ["SEED", "SKLEARN", "ONNX", "NOOP"]


def _load_bench() -> ModuleType:
    """bench/coldstart.py as a module (bench/ is scripts, not a package)."""
    spec = importlib.util.spec_from_file_location("bench_coldstart", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    # dataclasses look their module up in sys.modules while the class is built.
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


bench = _load_bench()


def _bench(
    *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=240,
        env=env,
        check=False,
    )


def _table(markdown: str, header_start: str) -> list[list[str]]:
    """The body rows of the Markdown table whose header starts with `header_start`."""
    lines = markdown.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(header_start))
    rows = []
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        rows.append([cell.strip() for cell in line.strip("|").split("|")])
    return rows


def _number(cell: str) -> float:
    return float(cell.split()[0].replace(",", "").rstrip("x"))


@pytest.mark.e2e
@pytest.mark.slow
def test_bench_reports_four_servers_with_every_figure(tmp_path: Path) -> None:
    raw_path = tmp_path / "raw.json"
    done = _bench(
        "--runs",
        "1",
        "--requests",
        "20",
        "--duration",
        "2",
        "--batch-requests",
        "2",
        "--json",
        str(raw_path),
    )
    assert done.returncode == 0, done.stderr[-4000:]

    headline = _table(done.stdout, "| server | cold start (ms)")
    assert [row[0].split(":")[0] for row in headline] == SERVERS
    for row in headline:
        # cold start, p50, p99, req/s and PSS are numbers for every server.
        assert all(_number(cell) > 0 for cell in row[1:6]), row
    batch = {row[0].split(":")[0]: row[6] for row in headline}
    assert batch["SEED"].endswith("(1 row/request)")
    assert _number(batch["SKLEARN"]) > 0 and _number(batch["ONNX"]) > 0
    assert batch["NOOP"] == "n/a"

    ratios = {row[0]: row[1:] for row in _table(done.stdout, "| server | cold start |")}
    assert list(ratios) == SERVERS
    assert ratios["SEED"][:6] == ["1.00x"] * 6
    assert ratios["NOOP"][6] == "1.00x" and ratios["NOOP"][5] == "n/a"

    goals = _table(done.stdout, "| target | wanted |")
    assert len(goals) == len(bench.GOALS)
    assert {row[3] for row in goals} <= {"met", "missed"}

    raw = json.loads(raw_path.read_text())
    assert [r["target"] for r in raw["runs"]] == SERVERS
    libraries = {name: row["libraries"] for name, row in raw["summary"].items()}
    assert {"numpy", "sklearn"} <= set(libraries["SEED"])
    assert "onnxruntime" in libraries["ONNX"] and "sklearn" not in libraries["ONNX"]
    assert libraries["NOOP"] == []
    for run in raw["runs"]:
        assert len(run["latencies_ms"]) == 20
        assert run["load_requests"] > 0
        assert len(run["batch_latencies_ms"]) == (
            2 if run["target"] in {"SKLEARN", "ONNX"} else 0
        )
    assert "load average 1/5/15 min at start" in done.stdout
    assert "at commit " in done.stdout


def test_bench_refuses_more_wrk_threads_than_connections() -> None:
    done = _bench("--connections", "2", "--wrk-threads", "4")
    assert done.returncode == 2
    assert "--wrk-threads must not exceed --connections" in done.stderr
    assert "Traceback" not in done.stderr


def test_bench_refuses_a_non_integer_run_count() -> None:
    done = _bench("--runs", "many")
    assert done.returncode == 2
    assert "not an integer: 'many'" in done.stderr
    assert "Traceback" not in done.stderr


def test_bench_says_how_to_install_wrk_when_it_is_missing(tmp_path: Path) -> None:
    env = {**os.environ, "PATH": str(tmp_path)}  # an empty folder: no wrk on it
    done = _bench("--runs", "1", env=env)
    assert done.returncode == 1
    assert "apt-get install -y wrk" in done.stderr
    assert "Traceback" not in done.stderr


def test_wrk_summary_is_read_from_the_lua_scripts_line() -> None:
    output = (
        "Running 2s test @ http://127.0.0.1:1/predict\n"
        'WRK_JSON {"requests": 500, "duration_us": 2000000, "bytes": 9, '
        '"connect_errors": 0, "read_errors": 0, "write_errors": 0, '
        '"status_errors": 0, "timeouts": 0, "latency_p50_us": 1500, '
        '"latency_p99_us": 9000}\n'
    )
    load = bench.parse_wrk("ONNX", output)
    assert (load.requests, load.rps, load.p50_ms, load.p99_ms) == (500, 250.0, 1.5, 9.0)


@pytest.mark.parametrize("error", ["status_errors", "timeouts", "read_errors"])
def test_wrk_run_with_any_error_is_refused(error: str) -> None:
    counts = {
        "connect_errors": 0,
        "read_errors": 0,
        "write_errors": 0,
        "status_errors": 0,
        "timeouts": 0,
    }
    counts[error] = 3
    line = {"requests": 500, "duration_us": 2000000, "bytes": 9, **counts}
    line |= {"latency_p50_us": 1, "latency_p99_us": 2}
    with pytest.raises(bench.BenchError, match=f"'{error}': 3"):
        bench.parse_wrk("SEED", f"WRK_JSON {json.dumps(line)}\n")


def test_wrk_output_without_the_summary_line_is_refused() -> None:
    with pytest.raises(bench.BenchError, match="wrk printed no summary"):
        bench.parse_wrk("NOOP", "unable to connect to 127.0.0.1:1 Connection refused\n")


def test_noop_answer_is_the_constant_the_bench_checks() -> None:
    spec = importlib.util.spec_from_file_location(
        "noop_main", REPO / "bench" / "noop_main.py"
    )
    assert spec is not None and spec.loader is not None
    noop = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(noop)
    body, status, headers = noop.predict(object())
    assert status == 200 and headers == {"Content-Type": "application/json"}
    assert json.loads(body) == bench.NOOP_ANSWER


def _target(kind: str) -> Any:
    return bench.Target(kind.upper(), kind, kind, REPO / "bench" / "x.py", {})


def test_a_wrong_label_fails_the_run() -> None:
    with pytest.raises(bench.BenchError, match="expected prediction 0"):
        bench.check_answer(_target("ours"), 200, b'{"prediction": 1}', 0)


def test_the_floor_must_answer_its_constant() -> None:
    bench.check_answer(_target("noop"), 200, b'{"noop": true}', 0)
    with pytest.raises(bench.BenchError, match=r"noop_main\.py's constant"):
        bench.check_answer(_target("noop"), 200, b'{"noop": false}', 0)


def test_a_batch_with_one_wrong_label_says_how_many_differ() -> None:
    answer = json.dumps({"predictions": [0, 1, 0], "model_version": "v"}).encode()
    bench.check_batch(_target("ours"), 200, answer, [0, 1, 0])
    with pytest.raises(bench.BenchError, match="1 of 3 labels differ"):
        bench.check_batch(_target("ours"), 200, answer, [0, 1, 1])
    with pytest.raises(bench.BenchError, match="not a list of 3 predictions"):
        bench.check_batch(_target("ours"), 413, b'{"error": {}}', [0, 1, 1])
