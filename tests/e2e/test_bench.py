"""bench/coldstart.py measures every server, checks every answer and reports every
figure (no timings asserted)."""

from __future__ import annotations

import importlib.util
import io
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
SERVERS = [
    "SEED",
    "SKLEARN",
    "ONNX",
    "CT_SKLEARN",
    "CT_ONNX",
    "HGB_SKLEARN",
    "HGB_ONNX",
    "NOOP",
]
OURS = [name for name in SERVERS if name.endswith(("SKLEARN", "ONNX"))]
TYPED = [name for name in OURS if "_" in name]


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
def test_bench_reports_every_server_with_every_figure(tmp_path: Path) -> None:
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
    assert all(_number(batch[name]) > 0 for name in OURS), batch
    assert batch["NOOP"] == "n/a"

    ratios = {row[0]: row[1:] for row in _table(done.stdout, "| server | cold start |")}
    assert list(ratios) == SERVERS
    assert ratios["SEED"][:6] == ["1.00x"] * 6
    assert ratios["NOOP"][6] == "1.00x" and ratios["NOOP"][5] == "n/a"
    for name in OURS:
        # Every figure of ours has a ratio to the tutorial's and to the floor's.
        assert all(_number(cell) > 0 for cell in ratios[name]), (name, ratios[name])

    twins = _table(done.stdout, "| model | cold start |")
    assert [row[0] for row in twins] == [
        "the tutorial's RandomForest",
        "ColumnTransformer + RandomForest",
        "HistGradientBoosting, categories",
    ]
    assert all(_number(cell) > 0 for row in twins for cell in row[1:]), twins

    goals = _table(done.stdout, "| target | wanted |")
    assert len(goals) == len(bench.GOALS)
    assert {row[3] for row in goals} <= {"met", "missed"}

    raw = json.loads(raw_path.read_text())
    assert [r["target"] for r in raw["runs"]] == SERVERS
    libraries = {name: row["libraries"] for name, row in raw["summary"].items()}
    assert {"numpy", "sklearn"} <= set(libraries["SEED"])
    for name in ("ONNX", "CT_ONNX", "HGB_ONNX"):
        # The twin serves typed rows without scikit-learn or pandas.
        assert "onnxruntime" in libraries[name], (name, libraries[name])
        assert not {"sklearn", "pandas"} & set(libraries[name]), libraries[name]
    for name in ("CT_SKLEARN", "HGB_SKLEARN"):
        assert {"sklearn", "pandas"} <= set(libraries[name]), libraries[name]
    assert libraries["NOOP"] == []
    for run in raw["runs"]:
        assert len(run["latencies_ms"]) == 20
        assert run["load_requests"] > 0
        assert len(run["batch_latencies_ms"]) == (2 if run["target"] in OURS else 0)
    # The bench checked every answer against these labels (it exits 1 on any
    # other): they must be the models' own, and the typed rows' two requests
    # must differ, so a server answering a constant cannot pass.
    requests = raw["settings"]["requests"]
    assert [r["expected_label"] for r in requests["seed"]] == [0]
    for model in ("canonical", "hgb"):
        rows = [r["body"]["features"] for r in requests[model]]
        assert any(None in row.values() for row in rows)
        assert any(isinstance(v, str) for row in rows for v in row.values())
        own = _own_labels(model, rows)
        assert [r["expected_label"] for r in requests[model]] == own
        assert len(set(own)) == 2, own
    for name in TYPED:
        assert raw["summary"][name]["workload"] in {"canonical", "hgb"}
    assert "--holdout customers.csv" in done.stdout
    assert "load average 1/5/15 min at start" in done.stdout
    assert "at commit " in done.stdout


def _own_labels(model: str, rows: list[dict[str, Any]]) -> list[Any]:
    """The `model` bench model's labels for `rows`, on the frame pandas reads from
    a CSV of them with the training dtypes (empty cells NaN; categories as
    trained, so an unseen one is missing): a path independent of the bench's."""
    import pandas as pd

    fitted, training = bench.fit_typed(model)
    text = io.StringIO()
    pd.DataFrame(rows, columns=list(training.columns)).to_csv(text, index=False)
    text.seek(0)
    frame = pd.read_csv(text)
    for column, dtype in training.dtypes.items():
        if isinstance(dtype, pd.CategoricalDtype):
            frame[column] = pd.Categorical(frame[column], categories=dtype.categories)
    return fitted.predict(frame).tolist()


def test_typed_batch_carries_nulls_unseen_categories_and_the_models_own_labels(
    tmp_path: Path,
) -> None:
    rows = bench.typed_batch_rows(300)
    assert any(row["income"] is None for row in rows)
    assert any(row["plan"] is None for row in rows)
    assert any(row["plan"] == "gold" for row in rows)  # never seen in training
    for model in bench.TYPED_MODELS:
        path, labels = bench.train_typed(model, tmp_path, rows)
        assert path.is_file()
        assert labels == _own_labels(model, rows)
        assert set(labels) == {"yes", "no"}


def test_model_rows_follow_the_models_option() -> None:
    pickles = {"seed": REPO / "x.pkl"}
    servers = bench.targets({"seed": "file:///s/bench", "hgb": "/s/hgb"}, pickles)
    assert [t.name for t in servers] == [
        "SEED",
        "SKLEARN",
        "ONNX",
        "HGB_SKLEARN",
        "HGB_ONNX",
        "NOOP",
    ]
    hgb = {t.name: t for t in servers if t.workload == "hgb"}
    assert {t.env["MODEL_RUNTIME"] for t in hgb.values()} == {"sklearn", "onnx"}
    assert {t.env["MODEL_URI"] for t in hgb.values()} == {"/s/hgb"}
    assert bench.parse_args([]).models == ["canonical", "hgb"]  # the default
    assert bench.parse_args(["--models", "none"]).models == []


def test_bench_refuses_an_unknown_model_row() -> None:
    done = _bench("--models", "canonical,gold")
    assert done.returncode == 2
    assert "--models takes a comma-separated list of canonical, hgb" in done.stderr
    assert "'canonical,gold'" in done.stderr
    assert "Traceback" not in done.stderr


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


def test_a_wrong_string_label_fails_the_run() -> None:
    bench.check_answer(_target("ours"), 200, b'{"prediction": "yes"}', "yes")
    with pytest.raises(bench.BenchError, match='expected prediction "yes"'):
        bench.check_answer(_target("ours"), 200, b'{"prediction": "no"}', "yes")
    with pytest.raises(bench.BenchError, match="answered 400"):
        bench.check_answer(_target("ours"), 400, b'{"error": {}}', "yes")


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
