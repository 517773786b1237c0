"""bench/coldstart.py (the bench package) measures every server, checks every
answer and reports every figure (no timings asserted)."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import flask
import numpy as np
import pytest
from werkzeug.exceptions import BadRequest, UnsupportedMediaType

from bench import alone, client, load, models, run, servers
from bench.common import NOOP_ANSWER, PARSE_ANSWER, BenchError, Target
from bench.report import cells, medians, targets
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
    "RF400_SKLEARN",
    "RF400_ONNX",
    "RF1000_SKLEARN",
    "RF1000_ONNX",
    "NOOP",
    "PARSE",
]
OURS = [name for name in SERVERS if name.endswith(("SKLEARN", "ONNX"))]
TWINS = [name for name in OURS if name.endswith("ONNX")]
TYPED = [name for name in OURS if name.startswith(("CT_", "HGB_"))]
BATCHED = [*OURS, "PARSE"]


def _bench(
    *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=1200,
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
    assert all(_number(batch[name]) > 0 for name in BATCHED), batch
    assert batch["NOOP"] == "n/a"

    ratios = {row[0]: row[1:] for row in _table(done.stdout, "| server | cold start |")}
    assert list(ratios) == SERVERS
    assert ratios["SEED"][:6] == ["1.00x"] * 6
    assert ratios["NOOP"][6] == "1.00x" and ratios["NOOP"][5] == "n/a"
    for name in OURS:
        # Every figure of ours has a ratio to the tutorial's and to the floor's.
        assert all(_number(cell) > 0 for cell in ratios[name]), (name, ratios[name])

    floors = _table(done.stdout, "| server | cold start vs NOOP | cold start vs PARSE")
    assert [row[0] for row in floors] == OURS
    assert all(_number(cell) > 0 for row in floors for cell in row[1:]), floors
    assert all(len(row) == 9 for row in floors)  # 4 figures x 2 floors

    twins = _table(done.stdout, "| model | cold start |")
    assert [row[0] for row in twins] == [
        "the tutorial's RandomForest",
        "ColumnTransformer + RandomForest",
        "HistGradientBoosting, categories",
        "RandomForest, 400 trees",
        "RandomForest, 1,000 trees",
    ]
    assert all(_number(cell) > 0 for row in twins for cell in row[1:]), twins

    forests = _table(done.stdout, "| trees |")
    assert [row[0] for row in forests] == ["100", "400", "1,000"]
    for row in forests:
        pairs = [row[1], row[2], row[4], row[5], row[7]]
        assert all(_number(part) > 0 for cell in pairs for part in cell.split("/"))
        assert _number(row[3]) > 0 and _number(row[6]) > 0, row
    sizes = [float(row[1].split("/")[0]) for row in forests]
    assert sizes == sorted(sizes)  # model.onnx grows with the trees

    alone_rows = _table(done.stdout, "| server | over HTTP rows/s")
    assert [row[0] for row in alone_rows] == TWINS
    assert all(_number(cell) > 0 for row in alone_rows for cell in row[1:])
    loading = _table(done.stdout, "| server | cold start (ms) | port open")
    assert [row[0] for row in loading] == TWINS
    assert all(_number(cell) >= 0 for row in loading for cell in row[1:]), loading

    goals = _table(done.stdout, "| target | wanted |")
    assert [row[0] for row in goals] == [goal[0] for goal in targets.GOALS]
    assert {row[3] for row in goals} <= {"met", "missed"}

    raw = json.loads(raw_path.read_text())
    assert [r["target"] for r in raw["runs"]] == SERVERS
    libraries = {name: row["libraries"] for name, row in raw["summary"].items()}
    assert {"numpy", "sklearn"} <= set(libraries["SEED"])
    for name in TWINS:
        # The twin serves typed rows without scikit-learn or pandas.
        assert "onnxruntime" in libraries[name], (name, libraries[name])
        assert not {"sklearn", "pandas"} & set(libraries[name]), libraries[name]
    for name in ("CT_SKLEARN", "HGB_SKLEARN"):
        assert {"sklearn", "pandas"} <= set(libraries[name]), libraries[name]
    assert libraries["NOOP"] == [] and libraries["PARSE"] == []
    for entry in raw["runs"]:
        assert len(entry["latencies_ms"]) == 20
        assert entry["load_requests"] > 0
        batches = 2 if entry["target"] in BATCHED else 0
        assert len(entry["batch_latencies_ms"]) == batches
        # onnxruntime alone ran (and gave the model's own labels) for twins only.
        assert (entry["alone"] is not None) == (entry["target"] in TWINS)
        assert (entry["model_load_ms"] is not None) == (entry["target"] in OURS)
    assert (
        raw["artifact_bytes"]["forest1000"]["model.onnx"]
        > (raw["artifact_bytes"]["seed"]["model.onnx"])
    )
    # The bench checked every answer against these labels (it exits 1 on any
    # other): they must be the models' own, and the typed rows' two requests
    # must differ, so a server answering a constant cannot pass.
    requests = raw["settings"]["requests"]
    assert [r["expected_label"] for r in requests["seed"]] == [0]
    for forest in ("forest400", "forest1000"):
        own = _forest_labels(models.FORESTS[forest], [PAYLOAD_ROW])
        assert [r["expected_label"] for r in requests[forest]] == own
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


PAYLOAD_ROW = [0.1, -0.5, 1.2, -0.8, 0.3, 0.9, -1.1, 0.4, -0.2, 1.5]


def _forest_labels(n_trees: int, rows: list[list[float]]) -> list[int]:
    """The tutorial's forest grown to `n_trees`, fitted here independently of
    the bench, and its labels for `rows`."""
    from sklearn.datasets import make_classification
    from sklearn.ensemble import RandomForestClassifier

    X, y = make_classification(
        n_samples=1000, n_features=10, n_informative=5, random_state=42
    )
    model = RandomForestClassifier(n_estimators=n_trees, random_state=42).fit(X, y)
    return model.predict(np.array(rows)).tolist()


def _own_labels(model: str, rows: list[dict[str, Any]]) -> list[Any]:
    """The `model` bench model's labels for `rows`, on the frame pandas reads from
    a CSV of them with the training dtypes (empty cells NaN; categories as
    trained, so an unseen one is missing): a path independent of the bench's."""
    import pandas as pd

    fitted, training = models.fit_typed(model)
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
    rows = models.typed_batch_rows(300)
    assert any(row["income"] is None for row in rows)
    assert any(row["plan"] is None for row in rows)
    assert any(row["plan"] == "gold" for row in rows)  # never seen in training
    for model in models.TYPED_MODELS:
        path, labels = models.train_typed(model, tmp_path, rows)
        assert path.is_file()
        assert labels == _own_labels(model, rows)
        assert set(labels) == {"yes", "no"}


def test_the_100_tree_forest_is_the_tutorials_model_and_the_others_grow_it(
    tmp_path: Path,
) -> None:
    """SKLEARN and ONNX serve `python -m train`'s default, the tutorial's model:
    the forests beside them are that model with more trees."""
    import pickle

    from train.seed import fit_seed

    rows = models.batch_rows(500)
    seed_path = models.train_seed(tmp_path)
    with open(seed_path, "rb") as file:
        seed = pickle.load(file)
    published, _ = fit_seed()
    assert np.array_equal(
        seed.predict_proba(np.array(rows)), published.predict_proba(np.array(rows))
    )
    grown = models.train_seed(tmp_path, 400)
    assert grown != seed_path
    assert models.reference_labels(grown, rows) == _forest_labels(400, rows)
    assert len(pickle.loads(grown.read_bytes()).estimators_) == 400


def test_model_rows_follow_the_models_option() -> None:
    pickles = {"seed": REPO / "x.pkl"}
    found = servers.targets(
        {"seed": "file:///s/bench", "hgb": "/s/hgb", "forest1000": "/s/f"}, pickles
    )
    assert [t.name for t in found] == [
        "SEED",
        "SKLEARN",
        "ONNX",
        "HGB_SKLEARN",
        "HGB_ONNX",
        "RF1000_SKLEARN",
        "RF1000_ONNX",
        "NOOP",
        "PARSE",
    ]
    hgb = {t.name: t for t in found if t.workload == "hgb"}
    assert {t.env["MODEL_RUNTIME"] for t in hgb.values()} == {"sklearn", "onnx"}
    assert {t.env["MODEL_URI"] for t in hgb.values()} == {"/s/hgb"}
    forest = [t for t in found if t.workload == "forest1000"]
    assert [t.title for t in forest] == [
        "RandomForest, 1,000 trees, scikit-learn",
        "RandomForest, 1,000 trees, ONNX twin",
    ]
    default = ["canonical", "hgb", "forest400", "forest1000"]
    from bench.cli import parse_args

    assert parse_args([]).models == default
    assert parse_args([]).runs == 3
    assert parse_args(["--models", "none"]).models == []
    assert parse_args(["--models", "forest400"]).models == ["forest400"]


def test_bench_refuses_an_unknown_model_row() -> None:
    done = _bench("--models", "canonical,forest100")
    assert done.returncode == 2
    assert (
        "--models takes a comma-separated list of canonical, hgb, forest400, "
        "forest1000" in done.stderr
    )
    assert "'canonical,forest100'" in done.stderr
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


def test_python_dash_m_bench_is_the_same_command() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "bench", "--runs", "0"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    assert "--runs: must be >= 1, got 0" in done.stderr


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
    measured = load.parse_wrk("ONNX", output)
    assert (measured.requests, measured.rps, measured.p50_ms, measured.p99_ms) == (
        500,
        250.0,
        1.5,
        9.0,
    )


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
    with pytest.raises(BenchError, match=f"'{error}': 3"):
        load.parse_wrk("SEED", f"WRK_JSON {json.dumps(line)}\n")


def test_wrk_output_without_the_summary_line_is_refused() -> None:
    with pytest.raises(BenchError, match="wrk printed no summary"):
        load.parse_wrk("NOOP", "unable to connect to 127.0.0.1:1 Connection refused\n")


def _floor_module(name: str) -> Any:
    import importlib.util

    spec = importlib.util.spec_from_file_location(name, REPO / "bench" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_noop_answer_is_the_constant_the_bench_checks() -> None:
    noop = _floor_module("noop_main")
    body, status, headers = noop.predict(object())
    assert status == 200 and headers == {"Content-Type": "application/json"}
    assert json.loads(body) == NOOP_ANSWER


def test_the_parsing_floor_answers_its_constant_only_once_the_body_parsed() -> None:
    parse = _floor_module("parse_main")
    app = flask.Flask("floor")
    with app.test_request_context("/predict", method="POST", json={"features": [1]}):
        body, status, headers = parse.predict(flask.request)
    assert status == 200 and headers == {"Content-Type": "application/json"}
    assert json.loads(body) == PARSE_ANSWER
    with (
        app.test_request_context(
            "/predict", method="POST", data="{not json", content_type="application/json"
        ),
        pytest.raises(BadRequest),
    ):
        parse.predict(flask.request)
    with (
        app.test_request_context("/predict", method="POST", data="[1]"),
        pytest.raises(UnsupportedMediaType),
    ):
        parse.predict(flask.request)


def _target(kind: str) -> Target:
    return Target(kind.upper(), kind, kind, REPO / "bench" / "x.py", {})


def test_a_wrong_label_fails_the_run() -> None:
    with pytest.raises(BenchError, match="expected prediction 0"):
        client.check_answer(_target("ours"), 200, b'{"prediction": 1}', 0)


def test_a_wrong_string_label_fails_the_run() -> None:
    client.check_answer(_target("ours"), 200, b'{"prediction": "yes"}', "yes")
    with pytest.raises(BenchError, match='expected prediction "yes"'):
        client.check_answer(_target("ours"), 200, b'{"prediction": "no"}', "yes")
    with pytest.raises(BenchError, match="answered 400"):
        client.check_answer(_target("ours"), 400, b'{"error": {}}', "yes")


def test_the_floors_must_answer_their_constant() -> None:
    client.check_answer(_target("noop"), 200, b'{"noop": true}', 0)
    with pytest.raises(BenchError, match=r"noop_main\.py's constant"):
        client.check_answer(_target("noop"), 200, b'{"noop": false}', 0)
    client.check_batch(_target("parse"), 200, b'{"parsed": true}', [0, 1])
    with pytest.raises(BenchError, match=r"parse_main\.py's constant"):
        client.check_batch(_target("parse"), 400, b'{"parsed": true}', [0, 1])


def test_a_batch_with_one_wrong_label_says_how_many_differ() -> None:
    answer = json.dumps({"predictions": [0, 1, 0], "model_version": "v"}).encode()
    client.check_batch(_target("ours"), 200, answer, [0, 1, 0])
    with pytest.raises(BenchError, match="1 of 3 labels differ"):
        client.check_batch(_target("ours"), 200, answer, [0, 1, 1])
    with pytest.raises(BenchError, match="not a list of 3 predictions"):
        client.check_batch(_target("ours"), 413, b'{"error": {}}', [0, 1, 1])


def test_the_functions_load_time_is_read_from_its_load_log_line() -> None:
    log = "\n".join(
        [
            "[INFO] Starting gunicorn",
            '{"severity": "ERROR", "event": "load", "outcome": "error"}',
            '{"severity": "INFO", "event": "load", "outcome": "ok", "load_ms": 48.5}',
            '{"severity": "INFO", "event": "request", "latency_ms": 51.0}',
        ]
    )
    assert run.model_load_ms(log) == 48.5
    assert run.model_load_ms("[INFO] Booting worker\n") is None


def _row(**figures: float) -> dict[str, Any]:
    keys = (*medians.SUMMARY_FIELDS, "alone_rows_per_s")
    return {key: figures.get(key) for key in keys}


def test_targets_compare_the_servers_they_name_and_skip_absent_ones() -> None:
    summary = {
        "ONNX": _row(p50_ms=1.0, cold_start_ms=900, pss_mib=60, load_rps=1_000),
        "SKLEARN": _row(p50_ms=8.0, cold_start_ms=2_000, pss_mib=120, load_rps=130),
        "PARSE": _row(p50_ms=0.5, cold_start_ms=300, pss_mib=30, load_rps=2_000),
    }
    summary["ONNX"]["batch_rows_per_s"] = 90_000
    summary["ONNX"]["alone_rows_per_s"] = 100_000
    rows = {
        title: (measured, verdict)
        for title, _, measured, verdict in targets.goals(summary)
    }
    assert rows["ONNX p50 vs PARSE"] == ("2.00x", "missed")
    assert rows["ONNX req/s vs PARSE"] == ("0.50x", "missed")
    assert rows["ONNX cold start vs PARSE"] == ("3.00x", "missed")
    assert rows["ONNX 1,000-row rows/s vs onnxruntime alone"] == ("0.90x", "met")
    assert rows["ONNX PSS vs SKLEARN"] == ("0.50x", "met")
    assert rows["ONNX cold start vs SKLEARN"] == ("0.45x", "met")
    # SEED, NOOP and the larger forests were not measured: no row for them.
    assert not [title for title in rows if "SEED" in title or "RF" in title]
    assert "ONNX p50 vs NOOP" not in rows


@pytest.mark.e2e
@pytest.mark.slow
def test_onnxruntime_alone_runs_the_published_twin_on_the_servers_rows(
    tmp_path: Path,
) -> None:
    uri = models.publish(tmp_path / "store", "bench")
    rows = models.batch_rows(200)
    pickle_path = models.train_seed(tmp_path)
    labels = models.reference_labels(pickle_path, rows)

    measured = alone.measure(uri, rows, labels, 3)

    assert len(measured.run_ms) == 3 and measured.rows_per_s > 0
    assert measured.session_ms > 0 and measured.import_ms > 0
    assert measured.session_pss_mib is not None
    flipped = [1 - label for label in labels]
    with pytest.raises(BenchError, match="200 of 200 labels unlike the model's own"):
        alone.measure(uri, rows, flipped, 1)


def test_small_ratios_keep_two_significant_digits() -> None:
    shown = [cells.times(r) for r in (0.0043, 0.05, 0.5, 1.0, 12.34, None)]
    assert shown == ["0.0043x", "0.05x", "0.50x", "1.00x", "12.3x", "n/a"]
