"""Workers load the launcher's verified version and isolate rows the model refuses."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from batch.handler import (
    BLOCK_ROWS,
    ModelSource,
    PinnedStore,
    Refused,
    Scored,
    SkserveModelHandler,
    block_rows,
    verify_at_launch,
)
from skserve.errors import IntegrityError
from skserve.loader import LoadedModel
from skserve.storage import open_store
from tests.support import publish_signed, published_model

KEY = "a-signing-key-of-32-characters!!"


def launch(
    model_dir: Path, keys: tuple[str, ...] = (), runtime: str = "auto"
) -> tuple[ModelSource, LoadedModel]:
    version = (model_dir / "LATEST").read_text().strip()
    return verify_at_launch(
        str(model_dir),
        model_dir.name,
        version,
        runtime=runtime,
        max_model_bytes=2**30,
        allow_version_mismatch=False,
        keys=keys,
    )


def test_a_manifest_changed_after_launch_is_refused_before_any_pickle(
    model_dir: Path,
) -> None:
    source, _ = launch(model_dir)
    manifest = model_dir / "versions" / source.version / "manifest.json"
    manifest.write_bytes(manifest.read_bytes() + b"\n")  # same facts, other bytes
    with pytest.raises(IntegrityError, match="changed after the job was launched"):
        source.fetch()


def test_the_pinned_store_never_writes(model_dir: Path) -> None:
    store = PinnedStore(open_store(str(model_dir)), "v", None)
    with pytest.raises(IntegrityError, match="never writes"):
        store.write("LATEST", b"v")


@pytest.mark.parametrize("runtime", ["sklearn", "onnx"])
def test_blocks_score_as_sklearn_and_a_refused_row_does_not_fail_them(
    model_dir: Path, runtime: str
) -> None:
    source, _ = launch(model_dir, runtime=runtime)
    handler = SkserveModelHandler(source, probabilities=True)
    model = handler.load_model()
    assert model.runtime.name == runtime
    rng = np.random.default_rng(0)
    first, second = rng.normal(size=(7, 10)), rng.normal(size=(5, 10))
    second[3, 4] = 1e39  # finite, but beyond the float32 the trees compare in
    results = list(handler.run_inference([first, second], model))
    assert [len(r.inference) for r in results] == [7, 5]
    assert {r.model_id for r in results} == {source.version}
    outcomes = results[0].inference + results[1].inference
    refused = outcomes.pop(7 + 3)
    assert isinstance(refused, Refused) and refused.code == "invalid_value"
    assert "float32" in refused.message
    estimator = published_model(model_dir)
    rows = np.delete(np.vstack([first, second]), 7 + 3, axis=0)
    assert all(isinstance(o, Scored) for o in outcomes)
    assert [o.label for o in outcomes] == estimator.predict(rows).tolist()
    np.testing.assert_allclose(
        [o.probabilities for o in outcomes],
        estimator.predict_proba(rows),
        rtol=0,
        atol=1e-6,
    )


def test_batches_are_weighed_in_rows_and_never_smaller_than_a_block(
    model_dir: Path,
) -> None:
    source, _ = launch(model_dir)
    kwargs = SkserveModelHandler(source, probabilities=False).batch_elements_kwargs()
    assert kwargs["min_batch_size"] == BLOCK_ROWS
    assert kwargs["element_size_fn"] is block_rows
    assert block_rows(("key", np.zeros((3, 10)))) == 3
    assert block_rows(np.zeros((4, 10))) == 4


def test_a_worker_with_a_signing_key_verifies_the_signature_too(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    publish_signed(tmp_path, KEY, name="m")
    source, _ = launch(tmp_path / "m", keys=(KEY,))
    handler = SkserveModelHandler(source, probabilities=False)
    monkeypatch.setenv("MODEL_SIGNING_KEY", KEY)
    assert handler.load_model().version == source.version
    monkeypatch.setenv("MODEL_SIGNING_KEY", "another-key-of-32-characters!!!!")
    with pytest.raises(IntegrityError, match="signature"):
        handler.load_model()


def test_an_unsigned_version_fails_at_launch_when_keys_are_set(
    model_dir: Path,
) -> None:
    with pytest.raises(IntegrityError, match="sign"):
        launch(model_dir, keys=(KEY,))
