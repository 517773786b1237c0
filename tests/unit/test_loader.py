"""skserve.loader: MODEL_RUNTIME and the twin pick the runtime; big files go unread."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from skserve.errors import IncompatibleModel, IntegrityError
from skserve.loader import choose_runtime, fetch_model, read_latest
from skserve.manifest import Manifest
from skserve.runtimes import RUNTIMES, runtime_class
from skserve.runtimes.sklearn import SklearnRuntime
from skserve.storage import open_store
from tests.support import RecordingStore, block_onnxruntime

TWIN = {"file": "model.onnx", "converter": "skl2onnx", "outputs": []}


def _manifest(twin: dict[str, Any] | None = None) -> Manifest:
    facts: dict[str, Any] = {
        "name": "m",
        "version": "20261127T073000Z-3f9a1c2b",
        "task": "classification",
        "n_features": 2,
        "files": {},
    }
    if twin is not None:
        facts["twin"] = twin
    return Manifest(facts)


@pytest.fixture
def missing_twin_runtime(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A registered runtime `fast` whose library is not installed here."""
    (tmp_path / "skserve_test_fast_twin.py").write_text(
        "import skserve_test_not_installed_lib\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setitem(RUNTIMES, "fast", "skserve_test_fast_twin:FastRuntime")
    return "fast"


def test_auto_without_a_twin_serves_the_pickle() -> None:
    assert choose_runtime(_manifest(), "auto") is SklearnRuntime


def test_auto_with_a_twin_serves_the_twin() -> None:
    chosen = choose_runtime(_manifest(TWIN), "auto")

    assert chosen is runtime_class("onnx")
    assert chosen.artifact == "model.onnx"


def test_auto_falls_back_to_the_pickle_when_the_twins_runtime_cannot_import(
    missing_twin_runtime: str, capsys: pytest.CaptureFixture[str]
) -> None:
    manifest = _manifest({**TWIN, "runtime": missing_twin_runtime})

    assert choose_runtime(manifest, "auto") is SklearnRuntime
    assert "without its twin" in capsys.readouterr().out  # the log says why


def test_auto_falls_back_to_the_pickle_where_onnxruntime_is_not_installed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """DESIGN.md: auto serves the twin "when present and onnxruntime imports,
    else scikit-learn", so a deployment without onnxruntime still serves."""
    block_onnxruntime(monkeypatch)

    assert choose_runtime(_manifest(TWIN), "auto") is SklearnRuntime


@pytest.mark.parametrize("twin", [None, TWIN])
def test_sklearn_serves_the_pickle_with_or_without_a_twin(
    twin: dict[str, Any] | None,
) -> None:
    assert choose_runtime(_manifest(twin), "sklearn") is SklearnRuntime


def test_onnx_with_a_twin_serves_the_twin() -> None:
    assert choose_runtime(_manifest(TWIN), "onnx") is runtime_class("onnx")


def test_onnx_without_a_twin_is_incompatible_naming_model_runtime() -> None:
    with pytest.raises(IncompatibleModel) as raised:
        choose_runtime(_manifest(), "onnx")

    message = raised.value.message
    assert message.startswith("MODEL_RUNTIME=onnx, but version ")
    assert "has no onnx artifact (it has sklearn)" in message
    assert "MODEL_RUNTIME=auto" in message  # how to fix it
    assert raised.value.status == 503


def test_an_artifact_over_max_model_bytes_is_refused_before_it_is_read(
    model_dir: Path,
) -> None:
    store = RecordingStore(open_store(str(model_dir)))
    version = read_latest(store)

    with pytest.raises(IncompatibleModel) as raised:
        fetch_model(
            store, version, name="seed", runtime="sklearn", max_model_bytes=1024
        )

    assert "model.pkl" in raised.value.message
    assert "over MAX_MODEL_BYTES=1024" in raised.value.message
    assert ("read", "model.pkl") not in store.calls
    assert ("read", "manifest.json") in store.calls


def test_an_artifact_within_max_model_bytes_is_loaded(model_dir: Path) -> None:
    store = open_store(str(model_dir))
    version = read_latest(store)
    size = (model_dir / "versions" / version / "model.pkl").stat().st_size

    model = fetch_model(
        store, version, name="seed", runtime="sklearn", max_model_bytes=size
    )

    assert model.version == version
    assert model.runtime.name == "sklearn"


@pytest.mark.parametrize("latest", ["../../etc\n", "", "v1/../../x"])
def test_latest_without_a_version_id_is_an_integrity_error(
    tmp_path: Path, latest: str
) -> None:
    (tmp_path / "LATEST").write_text(latest)

    with pytest.raises(IntegrityError):
        read_latest(open_store(str(tmp_path)))
