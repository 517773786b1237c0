"""Workers load the launcher's verified version and isolate rows the model refuses."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
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
from skserve.rows import Table, to_table
from skserve.storage import open_store
from tests.support import (
    latest_version,
    publish_estimator,
    publish_signed,
    published_model,
)

KEY = "a-signing-key-of-32-characters!!"


def launch(
    model_dir: Path, keys: tuple[str, ...] = (), runtime: str = "auto"
) -> tuple[ModelSource, LoadedModel]:
    version = latest_version(model_dir)
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
    blocks = [Table.of_matrix(first), Table.of_matrix(second)]
    results = list(handler.run_inference(blocks, model))
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
    assert block_rows(("key", Table.of_matrix(np.zeros((3, 10))))) == 3
    assert block_rows(Table.of_matrix(np.zeros((4, 10)))) == 4


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


def publish_with_schema(root: Path, model: object, frame: pd.DataFrame) -> Path:
    """Publish `model` with the input schema and example the trainer infers."""
    from train.schema import example_row, infer_schema

    schema = infer_schema(model, frame)
    publish_estimator(
        root, model, input_schema=schema.to_json(), example=example_row(schema, frame)
    )
    return root


def test_typed_blocks_isolate_a_row_only_the_model_refuses(tmp_path: Path) -> None:
    """A forest behind a ColumnTransformer takes text and refuses a number
    beyond float32: that row alone is refused, the text rows around it score."""
    from sklearn.compose import ColumnTransformer
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder

    rng = np.random.default_rng(0)
    frame = pd.DataFrame(
        {"income": rng.normal(50, 10, 80), "plan": rng.choice(["a", "b", "c"], 80)}
    )
    target = ((frame.income > 50) ^ (frame.plan == "b")).astype(int)
    model = make_pipeline(
        ColumnTransformer(
            [
                ("plan", OneHotEncoder(handle_unknown="ignore"), ["plan"]),
                ("income", "passthrough", ["income"]),
            ]
        ),
        RandomForestClassifier(n_estimators=5, random_state=0),
    ).fit(frame, target)
    source, loaded = launch(publish_with_schema(tmp_path / "forest", model, frame))
    schema = loaded.schema
    assert not schema.all_numeric
    rows = [
        [float(v), p] for v, p in zip(rng.normal(50, 10, 9), "abcabcxyz", strict=True)
    ]
    rows[6][0] = 1e39  # finite, but beyond the float32 the trees compare in
    blocks = [
        to_table(rows[:4], single=False, schema=schema),
        to_table(rows[4:], single=False, schema=schema),
    ]
    handler = SkserveModelHandler(source, probabilities=True)
    results = list(handler.run_inference(blocks, handler.load_model()))
    assert [len(r.inference) for r in results] == [4, 5]
    assert results[1].example is blocks[1]
    outcomes = results[0].inference + results[1].inference
    refused = outcomes.pop(6)
    assert isinstance(refused, Refused) and "float32" in refused.message
    kept = pd.DataFrame(rows[:6] + rows[7:], columns=["income", "plan"])
    assert [o.label for o in outcomes] == model.predict(kept).tolist()
    np.testing.assert_allclose(
        [o.probabilities for o in outcomes], model.predict_proba(kept), atol=1e-12
    )


def test_outlier_scores_and_cluster_indices_are_scored_like_labels(
    tmp_path: Path,
) -> None:
    from sklearn.cluster import KMeans
    from sklearn.ensemble import IsolationForest

    rng = np.random.default_rng(1)
    frame = pd.DataFrame(rng.normal(size=(60, 2)), columns=["a", "b"])
    rows = np.vstack([rng.normal(size=(6, 2)), [[8.0, -8.0]]])
    detector = IsolationForest(n_estimators=20, random_state=0).fit(frame)
    source, _ = launch(publish_with_schema(tmp_path / "iso", detector, frame))
    handler = SkserveModelHandler(source, probabilities=False, scores=True)
    (result,) = handler.run_inference([Table.of_matrix(rows)], handler.load_model())
    named = pd.DataFrame(rows, columns=["a", "b"])
    assert [o.label for o in result.inference] == detector.predict(named).tolist()
    assert result.inference[-1].label == -1
    np.testing.assert_allclose(
        [o.score for o in result.inference],
        detector.decision_function(named),
        atol=1e-12,
    )
    assert result.inference[0].values == [
        result.inference[0].label,
        result.inference[0].score,
    ]
    clusters = KMeans(3, n_init=1, random_state=0).fit(frame)
    source, _ = launch(publish_with_schema(tmp_path / "km", clusters, frame))
    handler = SkserveModelHandler(source, probabilities=False)
    (result,) = handler.run_inference([Table.of_matrix(rows)], handler.load_model())
    assert [o.label for o in result.inference] == clusters.predict(named).tolist()
    assert all(o.score is None for o in result.inference)
