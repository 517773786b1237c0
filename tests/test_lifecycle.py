"""Model lifecycle in the function: named features, hot refresh, version safety,
and publishes that fail or race without harming what is served."""

from __future__ import annotations

import csv
import json
import os
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from skserve.errors import PreconditionFailed, StoreError, Unavailable
from skserve.holder import ModelHolder
from skserve.loader import LoadedModel, fetch_model
from skserve.manifest import LATEST, MANIFEST, Manifest
from skserve.storage import Store, open_store
from tests.support import SEED_FEATURES, call
from train.cli import main as train
from train.publish import promote_version, publish


@pytest.fixture
def named_model(tmp_path: Path) -> Path:
    """A model trained from a CSV with named columns, served by the function."""
    rng = np.random.default_rng(3)
    path = tmp_path / "houses.csv"
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["rooms", "age", "area", "label"])
        for _ in range(80):
            rooms, age, area = (
                rng.integers(1, 6),
                rng.uniform(0, 50),
                rng.uniform(30, 200),
            )
            writer.writerow([rooms, round(age, 2), round(area, 1), int(area > 110)])
    assert (
        train(["--data", str(path), "--target", "label", "--store", str(tmp_path)]) == 0
    )
    os.environ["MODEL_URI"] = str(tmp_path / "default")
    return tmp_path / "default"


def test_named_rows_in_any_order_equal_positional_rows(named_model: Path) -> None:
    positional = call(json={"instances": [[3, 10.0, 150.0], [1, 40.0, 40.0]]})
    named = call(
        json={
            "instances": [
                {"area": 150.0, "rooms": 3, "age": 10.0},
                {"age": 40.0, "rooms": 1, "area": 40.0},
            ]
        }
    )

    assert named.status_code == 200
    assert named.get_json()["predictions"] == positional.get_json()["predictions"]


def test_named_single_row_uses_the_features_key(named_model: Path) -> None:
    response = call(json={"features": {"rooms": 2, "age": 5.0, "area": 180.0}})

    assert response.status_code == 200
    assert response.get_json()["prediction"] in (0, 1)


def test_named_rows_missing_a_feature_are_rejected_naming_it(named_model: Path) -> None:
    response = call(json={"features": {"rooms": 2, "age": 5.0}})

    error = response.get_json()["error"]
    assert response.status_code == 400
    assert error["code"] == "missing_features"
    assert "'area'" in error["message"]


def test_named_rows_with_an_unknown_feature_are_rejected_naming_it(
    named_model: Path,
) -> None:
    row = {"rooms": 2, "age": 5.0, "area": 99.0, "colour": 1}

    response = call(json={"instances": [row]})

    error = response.get_json()["error"]
    assert response.status_code == 400
    assert error["code"] == "unknown_features"
    assert "'colour'" in error["message"] and "instances[0]" in error["message"]


def test_named_value_that_is_not_a_number_names_the_feature(named_model: Path) -> None:
    response = call(json={"features": {"rooms": 2, "age": None, "area": 99.0}})

    assert response.status_code == 400
    assert "'age'" in response.get_json()["error"]["message"]


# --- hot refresh -------------------------------------------------------------


class _Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class _Versions:
    """A fake store of versions: `latest` can be moved, loads can fail or block."""

    def __init__(self, model: LoadedModel) -> None:
        self.model = model
        self.latest = "v1"
        self.latest_reads = 0
        self.fail = False
        self.gate = threading.Event()
        self.gate.set()

    def read_latest(self) -> str:
        self.latest_reads += 1
        if self.fail:
            raise StoreError("store down")
        return self.latest

    def fetch(self, version: str) -> LoadedModel:
        self.gate.wait(10)
        if self.fail:
            raise StoreError("store down")
        manifest = Manifest({**self.model.manifest.data, "version": version})
        return LoadedModel(manifest, self.model.runtime)


@pytest.fixture
def versions(model_dir: Path) -> _Versions:
    store = open_store(str(model_dir))
    return _Versions(fetch_model(store, (model_dir / LATEST).read_text().strip()))


def _holder(versions: _Versions, clock: _Clock, **kwargs: object) -> ModelHolder:
    return ModelHolder(versions.fetch, versions.read_latest, clock=clock, **kwargs)  # type: ignore[arg-type]


def test_refresh_swaps_in_a_new_version_after_the_interval(versions: _Versions) -> None:
    clock = _Clock()
    holder = _holder(versions, clock, refresh_seconds=60)
    assert holder.get().version == "v1"
    versions.latest = "v2"

    clock.now = 59
    before = holder.get().version
    clock.now = 60
    after = holder.get().version

    assert (before, after) == ("v1", "v2")
    assert versions.latest_reads == 2


def test_failed_refresh_keeps_serving_the_current_model(
    versions: _Versions, capsys: pytest.CaptureFixture[str]
) -> None:
    clock = _Clock()
    holder = _holder(versions, clock, refresh_seconds=10)
    holder.get()
    versions.latest, versions.fail = "v2", True

    clock.now = 10
    served = holder.get().version

    assert served == "v1"
    assert "model refresh failed, still serving v1" in capsys.readouterr().out
    versions.fail = False
    clock.now = 20
    assert holder.get().version == "v2"


def test_refresh_zero_never_rereads_latest(versions: _Versions) -> None:
    clock = _Clock()
    holder = _holder(versions, clock, refresh_seconds=0)
    holder.get()
    versions.latest = "v2"

    clock.now = 10**6

    assert holder.get().version == "v1"
    assert versions.latest_reads == 1


def test_pinned_version_never_reads_latest(versions: _Versions) -> None:
    clock = _Clock()
    holder = _holder(versions, clock, refresh_seconds=1, pinned="v7")

    clock.now = 1000

    assert [holder.get().version for _ in range(3)] == ["v7"] * 3
    assert versions.latest_reads == 0


def test_only_the_triggering_request_waits_for_a_new_version(
    versions: _Versions,
) -> None:
    clock = _Clock()
    holder = _holder(versions, clock, refresh_seconds=5)
    holder.get()
    versions.latest = "v2"
    versions.gate.clear()  # the new version's download hangs until released
    clock.now = 5
    trigger = threading.Thread(target=holder.get)
    trigger.start()
    time.sleep(0.1)

    others = [holder.get().version for _ in range(20)]  # must not block
    versions.gate.set()
    trigger.join(5)

    assert others == ["v1"] * 20
    assert holder.get().version == "v2"


# --- scikit-learn version safety ------------------------------------------------


OLD_ENVIRONMENT = {
    "python": "3.8.0",
    "scikit-learn": "0.24.2",
    "numpy": "1",
    "scipy": "1",
}


def _rewrite_manifest(model_dir: Path, **changes: object) -> None:
    version = (model_dir / LATEST).read_text().strip()
    path = model_dir / "versions" / version / MANIFEST
    data = json.loads(path.read_text())
    data.update(changes)
    path.write_text(json.dumps(data))


def test_model_pickled_with_another_sklearn_is_refused_naming_both(
    served: Path,
) -> None:
    import sklearn

    _rewrite_manifest(served, environment=OLD_ENVIRONMENT)

    response = call(json={"features": SEED_FEATURES})

    message = response.get_json()["error"]["message"]
    assert response.status_code == 503
    assert response.get_json()["error"]["code"] == "incompatible_model"
    assert "0.24.2" in message and sklearn.__version__ in message
    assert "ALLOW_SKLEARN_VERSION_MISMATCH" in message


def test_version_mismatch_can_be_allowed_and_is_logged(
    served: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _rewrite_manifest(served, environment=OLD_ENVIRONMENT)
    os.environ["ALLOW_SKLEARN_VERSION_MISMATCH"] = "true"

    response = call(json={"features": SEED_FEATURES})

    assert response.status_code == 200
    warning = [
        line for line in capsys.readouterr().out.splitlines() if "0.24.2" in line
    ]
    assert warning and json.loads(warning[0])["severity"] == "WARNING"


# --- publishing safety -----------------------------------------------------------


class _Recording(Store):
    """Wraps a store, recording every call; can fail writes of chosen keys."""

    def __init__(self, inner: Store, fail_on: str | None = None) -> None:
        self.inner, self.fail_on, self.calls = inner, fail_on, []
        self.uri = inner.uri

    def read(self, key: str) -> bytes:
        self.calls.append(("read", key.rsplit("/", 1)[-1]))
        return self.inner.read(key)

    def read_token(self, key: str) -> tuple[bytes, str]:
        self.calls.append(("read_token", key.rsplit("/", 1)[-1]))
        return self.inner.read_token(key)

    def write(self, key: str, data: bytes, **kwargs: object) -> None:
        self.calls.append(("write", key.rsplit("/", 1)[-1]))
        if self.fail_on and key.endswith(self.fail_on):
            raise StoreError(f"injected failure writing {key}")
        self.inner.write(key, data, **kwargs)  # type: ignore[arg-type]

    def list(self, prefix: str) -> list[str]:
        return self.inner.list(prefix)


def _artifact(model_dir: Path) -> tuple[bytes, dict]:
    version = (model_dir / LATEST).read_text().strip()
    folder = model_dir / "versions" / version
    manifest = json.loads((folder / MANIFEST).read_text())
    return (folder / "model.pkl").read_bytes(), manifest


def test_latest_moves_only_after_files_are_written_and_read_back(
    model_dir: Path,
) -> None:
    store = _Recording(open_store(str(model_dir)))
    artifact, facts = _artifact(model_dir)

    publish(store, artifact, facts, name="seed")

    writes = [name for op, name in store.calls if op == "write"]
    assert writes == ["model.pkl", "manifest.json", "LATEST"]
    latest_write = store.calls.index(("write", "LATEST"))
    assert ("read", "manifest.json") in store.calls[:latest_write]
    assert ("read", "model.pkl") in store.calls[:latest_write]


def test_publish_failing_at_the_manifest_leaves_latest_and_serving_intact(
    served: Path,
) -> None:
    before = (served / LATEST).read_text()
    artifact, facts = _artifact(served)
    store = _Recording(open_store(str(served)), fail_on=MANIFEST)

    with pytest.raises(StoreError):
        publish(store, artifact, facts, name="seed")

    assert (served / LATEST).read_text() == before
    response = call(json={"features": SEED_FEATURES})
    assert response.status_code == 200
    assert response.headers["X-Model-Version"] == before.strip()


def _racing_promote(store: Store, mine: str, theirs: str) -> None:
    """Promote `mine`, while another publisher promotes `theirs` just after we
    read LATEST (the window a conditional write must close)."""
    real_read_token = store.read_token

    def read_then_race(key: str) -> tuple[bytes, str]:
        result = real_read_token(key)
        if key != LATEST:
            return result
        del store.read_token  # the rival publisher reads normally
        promote_version(store, theirs)
        return result

    store.read_token = read_then_race  # type: ignore[method-assign]
    promote_version(store, mine)


def _two_versions(store: Store, model_dir: Path) -> tuple[str, str]:
    artifact, facts = _artifact(model_dir)
    a = publish(store, artifact, facts, name="seed", promote=False).version
    b = publish(store, artifact, facts, name="seed", promote=False).version
    return a, b


def test_concurrent_promotes_on_a_local_store_cannot_interleave(
    model_dir: Path,
) -> None:
    store = open_store(str(model_dir))
    mine, theirs = _two_versions(store, model_dir)

    with pytest.raises(PreconditionFailed, match="another publisher"):
        _racing_promote(store, mine, theirs)

    assert (model_dir / LATEST).read_text().strip() == theirs


def test_concurrent_promotes_on_s3_cannot_interleave(
    aws_credentials: None, model_dir: Path
) -> None:
    import boto3
    from moto import mock_aws

    with mock_aws():
        boto3.client("s3", region_name="us-east-1").create_bucket(Bucket="race")
        store = open_store("s3://race/models/seed")
        mine, theirs = _two_versions(store, model_dir)
        promote_version(store, mine)

        with pytest.raises(PreconditionFailed):
            _racing_promote(store, mine, theirs)

        assert store.read(LATEST).decode().strip() == theirs


def test_loader_uses_the_same_manifest_as_the_model_it_swaps_in(served: Path) -> None:
    import main

    call(json={"features": SEED_FEATURES})
    model = main._get_service().models.current

    assert isinstance(model, LoadedModel)
    assert model.runtime.manifest is model.manifest
    with pytest.raises(Unavailable):
        fetch_model(open_store(str(served)), "20000101T000000Z-00000000")


def test_promote_whose_retried_write_finds_its_own_version_succeeds(
    model_dir: Path,
) -> None:
    """An SDK retry of a conditional write that had landed gets 412: not a race."""
    store = open_store(str(model_dir))
    mine, _ = _two_versions(store, model_dir)
    real_write = store.write

    def landed_then_412(key: str, data: bytes, **kwargs: object) -> None:
        real_write(key, data, **kwargs)  # type: ignore[arg-type]
        if key == LATEST:
            raise PreconditionFailed("412 on the retry of our own write")

    store.write = landed_then_412  # type: ignore[method-assign]

    previous = promote_version(store, mine)

    assert previous is not None and previous != mine
    assert (model_dir / LATEST).read_text().strip() == mine
