"""train.publish: LATEST moves last, after a read-back, and never over a rival."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from skserve.errors import PreconditionFailed
from skserve.manifest import LATEST
from skserve.storage import Store, open_store
from tests.support import RecordingStore, promoted_files
from train.publish import promote_version, publish


def test_latest_moves_only_after_files_are_written_and_read_back(
    model_dir: Path,
) -> None:
    store = RecordingStore(open_store(str(model_dir)))
    artifact, facts = promoted_files(model_dir)

    publish(store, artifact, facts, name="seed")

    writes = [name for op, name in store.calls if op == "write"]
    assert writes == ["model.pkl", "manifest.json", "LATEST"]
    latest_write = store.calls.index(("write", "LATEST"))
    assert ("read", "manifest.json") in store.calls[:latest_write]
    assert ("read", "model.pkl") in store.calls[:latest_write]


def _racing_promote(store: Store, mine: str, theirs: str) -> None:
    """Promote `mine`, while another publisher promotes `theirs` just after we
    read LATEST (the window a conditional write must close)."""
    real_read_token = store.read_token

    def read_then_race(key: str, **kwargs: Any) -> tuple[bytes, str]:
        result = real_read_token(key, **kwargs)
        if key != LATEST:
            return result
        del store.read_token  # the rival publisher reads normally
        promote_version(store, theirs)
        return result

    store.read_token = read_then_race  # type: ignore[method-assign]
    promote_version(store, mine)


def _two_versions(store: Store, model_dir: Path) -> tuple[str, str]:
    artifact, facts = promoted_files(model_dir)
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
