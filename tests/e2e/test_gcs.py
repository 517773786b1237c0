"""GCS end to end through gcp-storage-emulator (STORAGE_EMULATOR_HOST)."""

from __future__ import annotations

import io
import uuid
from pathlib import Path

import joblib
import pytest

from tests.support import SEED_FEATURES, FunctionServer, GCSEmulator, run_train

pytestmark = pytest.mark.e2e


def test_train_publishes_to_gcs_and_the_function_serves_it(
    gcs_emulator: GCSEmulator, tmp_path: Path
) -> None:
    from google.cloud import storage

    env = {"STORAGE_EMULATOR_HOST": gcs_emulator.host}
    prefix = f"run-{uuid.uuid4().hex[:8]}"
    store = f"gs://models/{prefix}"
    published = run_train("--store", store, "--name", "demo", env=env)
    assert published.returncode == 0, published.stderr

    import os

    os.environ.update(env)
    bucket = storage.Client().bucket("models")
    version = bucket.blob(f"{prefix}/demo/LATEST").download_as_bytes().decode().strip()
    artifact = bucket.blob(
        f"{prefix}/demo/versions/{version}/model.pkl"
    ).download_as_bytes()
    model = joblib.load(io.BytesIO(artifact))

    with FunctionServer({**env, "MODEL_URI": f"{store}/demo"}, tmp_path) as server:
        response = server.post({"instances": [SEED_FEATURES, [0.0] * 10]})

    assert response.status_code == 200
    assert (
        response.json()["predictions"]
        == model.predict([SEED_FEATURES, [0.0] * 10]).tolist()
    )
    assert response.headers["X-Model-Version"] == version
