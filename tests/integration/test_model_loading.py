"""The function loads once for many cold requests and unpickles only verified bytes."""

from __future__ import annotations

import os
import pickle
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from skserve.manifest import MANIFEST, Manifest, sha256_hex
from skserve.runtimes.sklearn import ARTIFACT
from tests.support import SEED_FEATURES, UnpicklingMarker, call


def test_32_cold_threads_share_exactly_one_load(served: Path) -> None:
    import main

    service = main._get_service()
    barrier = threading.Barrier(32)

    def one(_: int) -> int:
        barrier.wait()
        return call(json={"features": SEED_FEATURES}).status_code

    with ThreadPoolExecutor(32) as pool:
        statuses = list(pool.map(one, range(32)))

    assert statuses == [200] * 32
    assert service.models.loads == 1


def _swap_artifact(model_dir: Path, data: bytes) -> None:
    version = (model_dir / "LATEST").read_text().strip()
    (model_dir / "versions" / version / ARTIFACT).write_bytes(data)


def test_pickle_replaced_after_publishing_is_refused_unpickled(
    served: Path, tmp_path: Path
) -> None:
    os.environ["MODEL_RUNTIME"] = "sklearn"  # serve the pickle, not a twin
    marker = tmp_path / "unpickled"
    _swap_artifact(served, pickle.dumps(UnpicklingMarker(str(marker))))

    response = call(json={"features": SEED_FEATURES})

    assert response.status_code == 503
    assert response.get_json()["error"]["code"] == "integrity_error"
    assert "refusing to unpickle" in response.get_json()["error"]["message"]
    assert response.headers["Retry-After"]
    assert not marker.exists()


def test_pickle_of_same_size_but_other_bytes_is_refused(
    served: Path, tmp_path: Path
) -> None:
    os.environ["MODEL_RUNTIME"] = "sklearn"  # serve the pickle, not a twin
    version = (served / "LATEST").read_text().strip()
    path = served / "versions" / version / ARTIFACT
    data = bytearray(path.read_bytes())
    data[-2] ^= 0xFF
    path.write_bytes(bytes(data))

    response = call(json={"features": SEED_FEATURES})

    assert response.status_code == 503
    assert "SHA-256" in response.get_json()["error"]["message"]


def test_manifest_and_pickle_both_replaced_still_needs_a_valid_estimator(
    served: Path, tmp_path: Path
) -> None:
    """Checksums prove integrity, not intent: a non-estimator is still refused."""
    os.environ["MODEL_RUNTIME"] = "sklearn"  # serve the pickle, not a twin
    version = (served / "LATEST").read_text().strip()
    folder = served / "versions" / version
    data = pickle.dumps({"not": "a model"})
    manifest = Manifest.from_bytes((folder / MANIFEST).read_bytes())
    manifest.data["files"][ARTIFACT] = {"sha256": sha256_hex(data), "bytes": len(data)}
    (folder / ARTIFACT).write_bytes(data)
    (folder / MANIFEST).write_bytes(manifest.to_bytes())

    response = call(json={"features": SEED_FEATURES})

    assert response.status_code == 503
    assert response.get_json()["error"]["code"] == "incompatible_model"


def test_latest_naming_an_unsafe_version_is_refused(served: Path) -> None:
    (served / "LATEST").write_text("../../etc\n")

    response = call(json={"features": SEED_FEATURES})

    assert response.status_code == 503
    assert response.get_json()["error"]["code"] == "integrity_error"


def test_service_recovers_once_the_model_appears(
    tmp_path: Path, seed_store: Path
) -> None:
    import shutil

    os.environ["MODEL_URI"] = str(tmp_path / "later" / "seed")
    first = call(json={"features": SEED_FEATURES})
    shutil.copytree(seed_store / "seed", tmp_path / "later" / "seed")
    import main

    main._get_service().models._retry_at = 0  # skip the wait, not the retry
    second = call(json={"features": SEED_FEATURES})

    assert first.status_code == 503
    assert second.status_code == 200
