"""MODEL_RUNTIME=auto serves a version's pickle where onnxruntime cannot be
imported, and MODEL_RUNTIME=onnx there is a clear 503: run for real, in a fresh
Python 3.12 venv holding the function's requirements minus onnxruntime.

The venv is built as tests/deploy/test_gcf.py builds the deploy's (tests/venvs.py:
pip from function/requirements.txt, the repository's .cache/pip), and serves a
copy of function/ with its own functions-framework, with nothing of the test's
environment: no monkeypatched import stands in for the missing package.
"""

from __future__ import annotations

import json
import pickle
import shutil
import subprocess
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

import numpy as np
import pytest
import requests

from tests.e2e.tabular import SHAPES, Published, customers
from tests.support import REPO, FunctionServer, run_train
from tests.venvs import clean_env, install_venv

pytestmark = pytest.mark.e2e

FUNCTION = REPO / "function"
SHAPE = next(shape for shape in SHAPES if shape.name == "ct_logistic")


def _venv_python(venv: Path, code: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(venv / "bin" / "python"), "-c", code],
        env=clean_env(venv, {}),
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.fixture(scope="module")
def venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh Python 3.12 venv with function/requirements.txt but onnxruntime."""
    folder = tmp_path_factory.mktemp("no-onnxruntime")
    lines = (FUNCTION / "requirements.txt").read_text().splitlines()
    kept = [line for line in lines if line.split("==")[0].strip() != "onnxruntime"]
    assert len(kept) == len(lines) - 1, "requirements.txt pins no onnxruntime"
    requirements = folder / "requirements.txt"
    requirements.write_text("\n".join(kept) + "\n")
    return install_venv(requirements, folder)


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """function/ as deployed: its files, without caches."""
    target = tmp_path_factory.mktemp("function") / "function"
    shutil.copytree(FUNCTION, target, ignore=shutil.ignore_patterns("__pycache__"))
    return target


@pytest.fixture(scope="module")
def published(tmp_path_factory: pytest.TempPathFactory) -> Published:
    """The canonical ColumnTransformer + LogisticRegression on mixed columns
    (missing numbers, text categories), published with its ONNX twin."""
    folder = tmp_path_factory.mktemp("published")
    data, y = customers()
    train = SHAPE.frame(data)
    model = SHAPE.fit(train, y)
    (folder / "model.pkl").write_bytes(pickle.dumps(model))
    train.to_csv(folder / "holdout.csv", index=False)
    store = folder / "store"
    result = run_train(
        "publish",
        str(folder / "model.pkl"),
        "--holdout",
        str(folder / "holdout.csv"),
        "--store",
        str(store),
        "--name",
        SHAPE.name,
    )
    assert result.returncode == 0, result.stderr
    assert "with ONNX twin" in result.stdout, result.stdout
    return Published(SHAPE, model, train, store / SHAPE.name)


def _version(published: Published) -> str:
    return (published.root / "LATEST").read_text().strip()


class _VenvServer(FunctionServer):
    """The venv's functions-framework, started inside the copy of function/ the
    way Cloud Functions starts it, with only the venv's environment."""

    def __init__(
        self, venv: Path, source: Path, env: Mapping[str, str], tmp: Path
    ) -> None:
        self.venv = venv
        super().__init__(env, tmp, cwd=source, wait=False)
        self.wait_ready(timeout=120)

    def command(self, cwd: Path) -> list[str]:
        return [
            str(self.venv / "bin" / "functions-framework"),
            "--target=predict",
            "--host=127.0.0.1",
            f"--port={self.port}",
        ]

    def environment(self, env: Mapping[str, str]) -> dict[str, str]:
        return clean_env(self.venv, env)


@pytest.fixture
def serve(
    venv: Path, source: Path, published: Published, tmp_path: Path
) -> Iterator[Callable[[str], _VenvServer]]:
    """Start a server on `published` with a MODEL_RUNTIME; stopped afterwards."""
    servers: list[_VenvServer] = []

    def start(runtime: str) -> _VenvServer:
        env = {"MODEL_URI": str(published.root), "MODEL_RUNTIME": runtime}
        servers.append(_VenvServer(venv, source, env, tmp_path))
        return servers[-1]

    yield start
    for server in servers:
        server.stop()


def test_the_venv_has_the_function_libraries_but_not_onnxruntime(venv: Path) -> None:
    """What makes the other tests mean something: onnxruntime cannot be
    imported there, everything else the function needs can."""
    missing = _venv_python(venv, "import onnxruntime")
    present = _venv_python(
        venv,
        "import sys, sklearn, pandas, functions_framework; "
        "print(sys.version_info[:2], sklearn.__version__)",
    )

    assert missing.returncode == 1
    assert "ModuleNotFoundError: No module named 'onnxruntime'" in missing.stderr
    assert present.returncode == 0, present.stderr
    assert present.stdout.startswith("(3, 12)")


def test_auto_serves_a_version_with_a_twin_from_scikit_learn_without_onnxruntime(
    serve: Callable[[str], _VenvServer], published: Published
) -> None:
    rows = published.shape.rows()  # typical rows, missing values, "platinum"
    ordered = [[row[c] for c in published.shape.columns] for row in rows]
    manifest = json.loads(
        (
            published.root / "versions" / _version(published) / "manifest.json"
        ).read_text()
    )
    assert manifest["twin"]["runtime"] == "onnx"  # a twin auto would prefer

    server = serve("auto")
    batch = server.post({"instances": rows, "probabilities": True})
    single = server.post({"features": ordered[-1]})
    refused = server.post({"features": {**rows[0], "plan": 3}})
    metadata = requests.get(server.url + "/metadata", timeout=60)
    logs = server.logs()

    assert batch.status_code == 200, logs[-3000:]
    assert batch.headers["X-Model-Version"] == _version(published)
    assert batch.json()["predictions"] == published.expected(rows)
    np.testing.assert_allclose(
        batch.json()["probabilities"],
        published.expected_proba(rows),
        rtol=0,
        atol=1e-12,
    )
    assert single.status_code == 200, single.text
    assert single.json()["prediction"] == published.expected(rows[-1:])[0]
    assert refused.status_code == 400
    assert refused.json()["error"]["code"] == "invalid_value"
    assert "('plan') must be a string, got 3" in refused.json()["error"]["message"]
    assert metadata.status_code == 200
    assert metadata.json()["served_by"] == "sklearn"
    assert (
        f"serving {_version(published)} without its twin: the onnx runtime is not "
        "installed here (onnxruntime missing)" in logs
    )
    assert server.load_count() == 1


def test_onnx_where_onnxruntime_cannot_import_is_a_503_saying_it_is_missing(
    serve: Callable[[str], _VenvServer], published: Published
) -> None:
    server = serve("onnx")
    first = server.post({"instances": published.shape.rows()})
    second = server.post({"instances": published.shape.rows()})
    health = requests.get(server.url + "/health", timeout=60)

    for response in (first, second):
        assert response.status_code == 503, response.text
        assert response.headers["Retry-After"].isdigit()
        assert response.json()["error"] == {
            "code": "incompatible_model",
            "message": "the onnx runtime is not installed here (onnxruntime "
            "missing); deploy with the requirements that include it",
        }
    assert health.status_code == 200  # the function runs; the model cannot
    assert server.load_count() == 0
