"""The GCS store's own behaviour: generations as tokens, preconditions, retries,
error mapping, and bounded reads of blobs that inflate while downloading.

Conditional writes and transcoding are checked at the client boundary with a
fake bucket: gcp-storage-emulator does neither.
"""

from __future__ import annotations

import gzip
import os
import uuid
from collections.abc import Callable

import pytest

from skserve.errors import (
    ObjectNotFound,
    ObjectTooLarge,
    PreconditionFailed,
    StoreError,
)
from skserve.storage import open_store
from skserve.storage.base import Store
from skserve.storage.gcs import GCSStore
from tests.support import free_port
from tests.unit.storage.fakes import CHUNK, FakeBucket

BUCKET = "test-bucket"


def test_gcs_read_token_is_the_object_generation(gcs_bucket: str) -> None:
    from google.cloud import storage

    store = open_store(f"gs://{gcs_bucket}/{uuid.uuid4().hex}")
    assert isinstance(store, GCSStore)
    store.write("iris/LATEST", b"v1\n")

    _, token = store.read_token("iris/LATEST")

    blob = storage.Client().bucket(gcs_bucket).get_blob(f"{store.prefix}/iris/LATEST")
    assert token == str(blob.generation)
    assert int(token) > 0


# Slow: each waits out the store's bounded retries (up to 10 s) by design.
@pytest.mark.slow
@pytest.mark.parametrize(
    "operation",
    [
        lambda s: s.read("iris/LATEST"),
        lambda s: s.write("iris/LATEST", b"v", if_absent=True),
        lambda s: s.list("iris"),
    ],
    ids=["read", "write", "list"],
)
def test_gcs_unreachable_emulator_is_a_store_error(
    operation: Callable[[Store], object],
) -> None:
    os.environ["STORAGE_EMULATOR_HOST"] = f"http://127.0.0.1:{free_port()}"
    store = open_store(f"gs://{BUCKET}/models")

    with pytest.raises(StoreError) as exc_info:
        operation(store)

    assert type(exc_info.value) is StoreError
    assert f"gs://{BUCKET}/models/iris" in str(exc_info.value)


def test_gcs_calls_use_a_bounded_retry(monkeypatch: pytest.MonkeyPatch) -> None:
    """The library retries for 120 s by default; ours must give up within 10 s."""
    seen: list[object] = []

    class Blob:
        generation = 7
        size = 1

        def download_to_file(self, file_obj: object, **kwargs: object) -> None:
            seen.append(kwargs["retry"])

        def upload_from_string(self, data: bytes, **kwargs: object) -> None:
            seen.append(kwargs["retry"])

    class Client:
        def list_blobs(self, bucket: str, **kwargs: object) -> list[object]:
            seen.append(kwargs["retry"])
            return []

    class Bucket:
        client = Client()

        def blob(self, name: str) -> Blob:
            return Blob()

        def get_blob(self, name: str, **kwargs: object) -> Blob:
            seen.append(kwargs["retry"])
            return Blob()

    monkeypatch.setattr(GCSStore, "_client", lambda self: Bucket())
    store = open_store(f"gs://{BUCKET}/models")

    store.read("k")
    store.read_token("k")
    store.write("k", b"v", if_absent=True)
    store.list("")

    assert len(seen) == 5
    assert all(0 < retry._timeout <= 10 for retry in seen)  # type: ignore[attr-defined]


@pytest.mark.parametrize("max_bytes", [None, 1000])
def test_gcs_missing_bucket_is_named_as_a_possible_cause(
    gcs_bucket: str, max_bytes: int | None
) -> None:
    store = open_store("gs://no-such-bucket/models")

    with pytest.raises(ObjectNotFound) as exc_info:
        store.read("iris/LATEST", max_bytes=max_bytes)

    assert "bucket no-such-bucket does not" in str(exc_info.value)


def test_gcs_write_if_absent_sends_generation_zero(fake_gcs: FakeBucket) -> None:
    store = open_store(f"gs://{BUCKET}/models")

    store.write("iris/versions/v1/model.pkl", b"pickle", if_absent=True)

    assert fake_gcs.uploads[-1]["name"] == "models/iris/versions/v1/model.pkl"
    assert fake_gcs.uploads[-1]["if_generation_match"] == 0


@pytest.fixture
def fake_latest(fake_gcs: FakeBucket) -> tuple[Store, str]:
    """A store on the fake bucket holding `iris/LATEST` = v1, and its token."""
    store = open_store(f"gs://{BUCKET}/models")
    store.write("iris/LATEST", b"v1\n")
    return store, store.read_token("iris/LATEST")[1]


def test_gcs_write_if_absent_maps_the_google_precondition_error(
    fake_gcs: FakeBucket, fake_latest: tuple[Store, str]
) -> None:
    store, _ = fake_latest

    with pytest.raises(PreconditionFailed) as exc_info:
        store.write("iris/LATEST", b"v2\n", if_absent=True)

    assert fake_gcs.uploads[-1]["if_generation_match"] == 0
    assert f"gs://{BUCKET}/models/iris/LATEST" in str(exc_info.value)
    assert exc_info.value.__cause__ is None
    assert fake_gcs.objects["models/iris/LATEST"][0] == b"v1\n"


def test_gcs_write_if_token_sends_the_token_as_generation(
    fake_gcs: FakeBucket, fake_latest: tuple[Store, str]
) -> None:
    store, token = fake_latest
    generation = fake_gcs.objects["models/iris/LATEST"][1]

    store.write("iris/LATEST", b"v2\n", if_token=token)

    assert token == str(generation)
    assert fake_gcs.uploads[-1]["if_generation_match"] == generation
    assert fake_gcs.objects["models/iris/LATEST"][0] == b"v2\n"


def test_gcs_write_if_token_after_another_write_raises_precondition_failed(
    fake_gcs: FakeBucket, fake_latest: tuple[Store, str]
) -> None:
    store, token = fake_latest
    store.write("iris/LATEST", b"theirs\n")

    with pytest.raises(PreconditionFailed, match="changed by another writer"):
        store.write("iris/LATEST", b"mine\n", if_token=token)

    assert fake_gcs.uploads[-1]["if_generation_match"] == int(token)
    assert fake_gcs.objects["models/iris/LATEST"][0] == b"theirs\n"


def test_gcs_unconditional_write_sends_no_generation_condition(
    fake_gcs: FakeBucket,
) -> None:
    store = open_store(f"gs://{BUCKET}/models")

    store.write("iris/LATEST", b"v1\n")

    assert "if_generation_match" not in fake_gcs.uploads[-1]


def test_gcs_checksum_mismatch_on_download_is_a_store_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """google-cloud-storage's DataCorruption is neither an API nor an HTTP error."""
    from google.cloud.storage.exceptions import DataCorruption

    class Blob:
        def download_to_file(self, file_obj: object, **kwargs: object) -> None:
            raise DataCorruption(None, "Checksum mismatch while downloading")

    class Bucket:
        def blob(self, name: str) -> Blob:
            return Blob()

    monkeypatch.setattr(GCSStore, "_client", lambda self: Bucket())

    with pytest.raises(StoreError) as exc_info:
        open_store(f"gs://{BUCKET}/models").read("iris/LATEST")

    assert "Checksum mismatch" in str(exc_info.value)


@pytest.mark.parametrize("method", ["read", "read_token"])
def test_gcs_bounded_read_stops_a_transcoded_blob_that_inflates_past_the_limit(
    fake_gcs: FakeBucket, method: str
) -> None:
    """A gzip-encoded blob is served decompressed: its stored size (the check
    before download) says nothing of what arrives, so the download itself is cut
    at the chunk that crosses the limit."""
    inflated = bytes(10 * 1024 * 1024)
    fake_gcs.objects["models/bomb"] = (gzip.compress(inflated), 1)
    fake_gcs.gzipped.add("models/bomb")
    store = open_store(f"gs://{BUCKET}/models")

    with pytest.raises(ObjectTooLarge) as exc_info:
        getattr(store, method)("bomb", max_bytes=100_000)

    assert exc_info.value.size is None
    assert "gs://test-bucket/models/bomb" in str(exc_info.value)
    assert fake_gcs.served <= 100_000 + CHUNK


def test_gcs_bounded_read_refuses_from_the_stored_size_before_downloading(
    fake_gcs: FakeBucket,
) -> None:
    fake_gcs.objects["models/big"] = (bytes(50_000), 1)
    store = open_store(f"gs://{BUCKET}/models")

    with pytest.raises(ObjectTooLarge) as exc_info:
        store.read("big", max_bytes=49_999)

    assert exc_info.value.size == 50_000
    assert fake_gcs.served == 0
