"""The verified fast runtime end to end: published with its twin, chosen by
MODEL_RUNTIME, verified before a session is built, answering byte for byte as
scikit-learn does."""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from skserve.manifest import LATEST, MANIFEST
from tests.support import REPO, SEED_FEATURES, call
from train.cli import main as train

ROWS = np.random.default_rng(7).normal(size=(200, 10)).tolist()


def _serve(store: Path, runtime: str | None = None) -> None:
    os.environ["MODEL_URI"] = str(store)
    os.environ.pop("MODEL_RUNTIME", None)
    if runtime is not None:
        os.environ["MODEL_RUNTIME"] = runtime
    import main

    main._service = None  # a new instance reads the settings again


def _files(store: Path) -> set[str]:
    version = (store / LATEST).read_text().strip()
    return {p.name for p in (store / "versions" / version).iterdir()}


def test_the_seed_model_is_published_with_its_twin(served: Path) -> None:
    manifest = json.loads(next(served.glob("versions/*/manifest.json")).read_text())

    assert _files(served) == {"model.pkl", "model.onnx", MANIFEST}
    assert set(manifest["files"]) == {"model.pkl", "model.onnx"}
    parity = manifest["twin"]["parity"]
    assert parity["label_agreement"] == 1.0
    assert parity["max_abs_difference"] <= 1e-6
    assert parity["rows_checked"] >= 11_000
    assert manifest["twin"]["converter"].startswith("skl2onnx ")
    assert manifest["twin"]["onnxruntime"]


@pytest.mark.parametrize(
    ("setting", "served_by"), [(None, "onnx"), ("auto", "onnx"), ("sklearn", "sklearn")]
)
def test_model_runtime_chooses_who_answers(
    served: Path, setting: str | None, served_by: str
) -> None:
    _serve(served, setting)

    assert call("GET", "/metadata").get_json()["served_by"] == served_by


def test_both_runtimes_answer_byte_for_byte_the_same(served: Path) -> None:
    bodies = [
        {"features": SEED_FEATURES},
        {"features": SEED_FEATURES, "probabilities": True},
        {"instances": ROWS},
        {"instances": ROWS, "probabilities": True},
    ]
    answers = {}
    for runtime in ("sklearn", "onnx"):
        _serve(served, runtime)
        answers[runtime] = [call(json=body).get_data() for body in bodies]

    assert answers["onnx"] == answers["sklearn"]


def test_string_classes_come_back_as_strings_from_the_twin(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert train(["--dataset", "iris", "--store", str(tmp_path), "--name", "iris"]) == 0
    assert "with ONNX twin model.onnx" in capsys.readouterr().out
    store = tmp_path / "iris"
    row = {"sepal length (cm)": 5.1, "sepal width (cm)": 3.5}
    row |= {"petal length (cm)": 1.4, "petal width (cm)": 0.2}
    answers = {}
    for runtime in ("sklearn", "onnx"):
        _serve(store, runtime)
        answers[runtime] = call(json={"features": row, "probabilities": True})

    assert answers["onnx"].get_data() == answers["sklearn"].get_data()
    assert answers["onnx"].get_json()["prediction"] == 0


def test_onnx_without_a_twin_is_a_503_naming_the_setting(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = train(["--store", str(tmp_path), "--name", "plain", "--no-twin"])
    out = capsys.readouterr().out
    assert code == 0
    assert "no ONNX twin: --no-twin" in out
    assert _files(tmp_path / "plain") == {"model.pkl", MANIFEST}
    _serve(tmp_path / "plain", "onnx")

    response = call(json={"features": SEED_FEATURES})

    assert response.status_code == 503
    assert response.get_json()["error"]["code"] == "incompatible_model"
    assert "MODEL_RUNTIME=onnx" in response.get_json()["error"]["message"]
    assert response.headers["Retry-After"]


def test_auto_serves_a_version_without_a_twin_with_scikit_learn(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert train(["--store", str(tmp_path), "--name", "plain", "--no-twin"]) == 0
    _serve(tmp_path / "plain")

    assert call("GET", "/metadata").get_json()["served_by"] == "sklearn"


def test_a_tampered_twin_is_refused_before_a_session_is_built(
    served: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import onnxruntime

    sessions: list[Any] = []
    monkeypatch.setattr(
        onnxruntime, "InferenceSession", lambda *a, **k: sessions.append(a)
    )
    version = (served / LATEST).read_text().strip()
    twin = served / "versions" / version / "model.onnx"
    data = bytearray(twin.read_bytes())
    data[len(data) // 2] ^= 0xFF
    twin.write_bytes(bytes(data))
    _serve(served, "onnx")

    response = call(json={"features": SEED_FEATURES})

    assert response.status_code == 503
    assert response.get_json()["error"]["code"] == "integrity_error"
    assert "model.onnx" in response.get_json()["error"]["message"]
    assert sessions == []


def test_a_twin_that_fails_its_gate_is_not_published(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The command says why in one line and publishes the pickle alone."""
    import train.twin as twin

    real = twin.check_parity

    def disagreeing(model: Any, data: bytes, rows: Any, *schema: Any) -> Any:
        shifted = twin.GateRows(rows.matrix, rows.counts)
        verdict = real(model, data, shifted, *schema)
        assert not isinstance(verdict, twin.NoTwin)  # the real twin agrees...
        return twin.NoTwin("the twin's labels differ from scikit-learn's on 3 rows")

    monkeypatch.setattr(twin, "check_parity", disagreeing)

    assert train(["--store", str(tmp_path), "--name", "m"]) == 0

    out = capsys.readouterr().out
    assert "no ONNX twin: the twin's labels differ" in out
    assert _files(tmp_path / "m") == {"model.pkl", MANIFEST}


def test_publishing_a_file_builds_its_twin_from_a_holdout(
    tmp_path: Path, seed_model: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "model.pkl").write_bytes(pickle.dumps(seed_model))
    holdout = tmp_path / "holdout.csv"
    header = ",".join(f"x{i}" for i in range(10))
    lines = [",".join(map(str, row)) for row in ROWS]
    holdout.write_text("\n".join([header, *lines]) + "\n")
    store = str(tmp_path / "store")

    pickled = str(tmp_path / "model.pkl")
    code = train(
        ["publish", pickled, "--store", store, "--name", "p", "--holdout", str(holdout)]
    )

    assert code == 0, capsys.readouterr().err
    manifest = json.loads(
        next((tmp_path / "store" / "p").glob("versions/*/manifest.json")).read_text()
    )
    assert manifest["twin"]["parity"]["reference"] == "holdout file:holdout.csv"
    assert manifest["twin"]["parity"]["rows"]["reference"] == len(ROWS)


def test_publishing_a_file_without_holdout_still_gates_its_twin(
    tmp_path: Path, seed_model: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "model.pkl").write_bytes(pickle.dumps(seed_model))

    code = train(["publish", str(tmp_path / "model.pkl"), "--store", str(tmp_path)])

    assert code == 0
    assert "with ONNX twin model.onnx" in capsys.readouterr().out
    manifest = json.loads(
        next((tmp_path / "default").glob("versions/*/manifest.json")).read_text()
    )
    assert "no --holdout" in manifest["twin"]["parity"]["reference"]


def test_a_model_the_converter_cannot_take_is_published_without_a_twin(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import numpy as np
    from sklearn.datasets import make_classification
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import FunctionTransformer

    X, y = make_classification(n_samples=200, n_features=4, random_state=0)
    # Python code inside a model: no converter can write it as ONNX.
    model = make_pipeline(FunctionTransformer(np.abs), LogisticRegression())
    (tmp_path / "custom.pkl").write_bytes(pickle.dumps(model.fit(X, y)))

    code = train(["publish", str(tmp_path / "custom.pkl"), "--store", str(tmp_path)])

    out = capsys.readouterr().out
    assert code == 0
    line = next(line for line in out.splitlines() if line.startswith("no ONNX twin"))
    assert "\n" not in line and len(line) < 300  # one line saying why
    assert _files(tmp_path / "default") == {"model.pkl", MANIFEST}


def test_the_twin_path_never_imports_scikit_learn(served: Path) -> None:
    """In a fresh process: serve predictions on the twin, then look."""
    script = f"""
import json, sys, flask
import main
app = flask.Flask("check")
for body in ({{"features": {SEED_FEATURES}}}, {{"instances": {ROWS[:5]}}}):
    with app.test_request_context("/predict", method="POST", json=body):
        assert main.predict(flask.request).status_code == 200
with app.test_request_context("/metadata"):
    assert main.predict(flask.request).get_json()["served_by"] == "onnx"
heavy = sorted(
    m for m in sys.modules if m.split(".")[0] in ("sklearn", "scipy", "joblib")
)
print(json.dumps(heavy))
"""
    result = subprocess.run(
        [sys.executable, "-c", script],
        cwd=REPO / "function",
        env={**os.environ, "MODEL_URI": str(served), "MODEL_RUNTIME": "onnx"},
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout.strip().splitlines()[-1]) == []


def test_auto_falls_back_to_scikit_learn_where_onnxruntime_is_not_installed(
    served: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name == "onnxruntime" else real(name, *a),
    )
    _serve(served, "auto")

    assert call("GET", "/metadata").get_json()["served_by"] == "sklearn"
    _serve(served, "onnx")
    response = call(json={"features": SEED_FEATURES})
    assert response.status_code == 503
    assert "onnxruntime missing" in response.get_json()["error"]["message"]


def test_auto_serves_the_pickle_when_the_twin_is_damaged(
    served: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The pickle is verified against the same manifest: it may answer, and the
    log says loudly why the twin did not."""
    version = (served / LATEST).read_text().strip()
    twin = served / "versions" / version / "model.onnx"
    twin.write_bytes(twin.read_bytes()[:-1] + b"\0")
    _serve(served, "auto")

    response = call("GET", "/metadata")

    assert response.status_code == 200
    assert response.get_json()["served_by"] == "sklearn"
    assert "twin of" in capsys.readouterr().out


def test_a_stored_runtime_name_is_not_echoed(served: Path) -> None:
    version = (served / LATEST).read_text().strip()
    path = served / "versions" / version / MANIFEST
    manifest = json.loads(path.read_text())
    manifest["twin"]["runtime"] = "gs://private-bucket/secret " + "x" * 5000
    path.write_text(json.dumps(manifest))
    _serve(served, "onnx")

    response = call(json={"features": SEED_FEATURES})

    assert response.status_code == 503
    assert "private-bucket" not in response.get_data(as_text=True)
    assert len(response.get_data()) < 1000


def test_metadata_tells_the_stored_runtimes_from_the_one_answering(
    served: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for runtime in ("onnx", "sklearn"):
        monkeypatch.setenv("MODEL_RUNTIME", runtime)
        import main

        main._service = None

        body = call("GET", "/metadata").get_json()

        assert body["stored_runtimes"] == ["sklearn", "onnx"]
        assert body["served_by"] == runtime
        assert "runtime" not in body  # the manifest's pickle runtime, renamed
