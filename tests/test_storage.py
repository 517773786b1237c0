"""The storage backends (local folder, S3, GCS) against the one `Store` contract.

S3 runs in-process under moto's `mock_aws`; GCS runs against gcp-storage-emulator
for reads, writes and listings, and against a fake bucket at the client boundary
for conditional writes (the emulator does not enforce generation preconditions).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from skserve.errors import (
    ConfigError,
    ObjectNotFound,
    PreconditionFailed,
    StoreError,
)
from skserve.storage import join_uri, open_store, split_model_uri
from skserve.storage.base import Store
from skserve.storage.gcs import GCSStore
from skserve.storage.local import LocalStore
from skserve.storage.s3 import S3Store
from tests.support import REPO, GCSEmulator, free_port

BUCKET = "test-bucket"


# --------------------------------------------------------------------------- #
# Fixtures
# --------------------------------------------------------------------------- #


@pytest.fixture
def s3_bucket(aws_credentials: None) -> Iterator[str]:
    """An empty bucket in moto's in-process S3; clients are made inside the mock."""
    import boto3
    from moto import mock_aws

    for name in ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3"):
        os.environ.pop(name, None)
    with mock_aws():
        boto3.client("s3", region_name="us-east-1").create_bucket(Bucket=BUCKET)
        yield BUCKET


@pytest.fixture(scope="module")
def emulator() -> Iterator[GCSEmulator]:
    """One gcp-storage-emulator process for this module, holding `test-bucket`."""
    server = GCSEmulator(BUCKET)
    yield server
    server.stop()


@pytest.fixture
def gcs_host(emulator: GCSEmulator) -> str:
    """Point google-cloud-storage at the emulator (the autouse fixture undoes it)."""
    os.environ["STORAGE_EMULATOR_HOST"] = emulator.host
    return emulator.host


@pytest.fixture(params=["local", "s3", "gcs"])
def root_uri(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty place to open stores in, one per backend."""
    if request.param == "local":
        return str(tmp_path)
    if request.param == "s3":
        return f"s3://{request.getfixturevalue('s3_bucket')}"
    request.getfixturevalue("gcs_host")
    # The emulator lives for the whole module: give each test its own folder.
    return f"gs://{BUCKET}/{uuid.uuid4().hex}"


@pytest.fixture
def store(root_uri: str) -> Store:
    return open_store(join_uri(root_uri, "models"))


class FakeBlob:
    """The few `google.cloud.storage.Blob` methods GCSStore calls."""

    def __init__(self, bucket: FakeBucket, name: str) -> None:
        self._bucket = bucket
        self.name = name
        stored = bucket.objects.get(name)
        self.generation: int | None = stored[1] if stored else None

    def download_as_bytes(self, **kwargs: Any) -> bytes:
        from google.api_core import exceptions as api

        stored = self._bucket.objects.get(self.name)
        if stored is None:
            raise api.NotFound(f"No such object: {self.name}")
        match = kwargs.get("if_generation_match")
        if match is not None and match != stored[1]:
            raise api.PreconditionFailed("generation does not match")
        return stored[0]

    def upload_from_string(self, data: bytes, **kwargs: Any) -> None:
        from google.api_core import exceptions as api

        self._bucket.uploads.append({"name": self.name, **kwargs})
        current = self._bucket.objects.get(self.name, (b"", 0))[1]
        match = kwargs.get("if_generation_match")
        if match is not None and match != current:
            raise api.PreconditionFailed("conditionNotMet")
        self._bucket.generation += 1
        self._bucket.objects[self.name] = (data, self._bucket.generation)


class FakeBucket:
    """Objects as name -> (bytes, generation); records every upload's kwargs."""

    def __init__(self) -> None:
        self.objects: dict[str, tuple[bytes, int]] = {}
        self.uploads: list[dict[str, Any]] = []
        self.generation = 1000

    def blob(self, name: str) -> FakeBlob:
        return FakeBlob(self, name)

    def get_blob(self, name: str, **kwargs: Any) -> FakeBlob | None:
        return FakeBlob(self, name) if name in self.objects else None


@pytest.fixture
def fake_gcs(monkeypatch: pytest.MonkeyPatch) -> FakeBucket:
    """Every GCSStore talks to one in-memory fake bucket instead of the network."""
    bucket = FakeBucket()
    monkeypatch.setattr(GCSStore, "_gcs_bucket", lambda self: bucket)
    return bucket


@pytest.fixture(params=["local", "s3", "gcs-fake"])
def cas_root(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A root whose backend enforces conditional writes."""
    if request.param == "local":
        return str(tmp_path)
    if request.param == "s3":
        return f"s3://{request.getfixturevalue('s3_bucket')}"
    request.getfixturevalue("fake_gcs")
    return f"gs://{BUCKET}"


@pytest.fixture
def cas_store(cas_root: str) -> Store:
    return open_store(join_uri(cas_root, "models"))


# --------------------------------------------------------------------------- #
# The contract, on every backend
# --------------------------------------------------------------------------- #


def test_write_then_read_returns_the_same_bytes(store: Store) -> None:
    data = bytes(range(256)) * 4

    store.write("iris/versions/v1/model.pkl", data)

    assert store.read("iris/versions/v1/model.pkl") == data


def test_unconditional_write_replaces_the_object(store: Store) -> None:
    store.write("iris/LATEST", b"v1\n")

    store.write("iris/LATEST", b"v2\n")

    assert store.read("iris/LATEST") == b"v2\n"


def test_keys_are_stored_under_the_store_prefix(root_uri: str) -> None:
    store = open_store(join_uri(root_uri, "models"))

    store.write("iris/LATEST", b"v1\n")

    assert open_store(root_uri).read("models/iris/LATEST") == b"v1\n"


def test_list_returns_keys_under_prefix_relative_to_store_root(
    root_uri: str,
) -> None:
    store = open_store(join_uri(root_uri, "models"))
    store.write("iris/LATEST", b"v1\n")
    store.write("iris/versions/v1/model.pkl", b"pickle")
    store.write("wine/LATEST", b"v7\n")
    # A sibling root whose name starts with the same letters must stay invisible.
    open_store(join_uri(root_uri, "models-old")).write("iris/LATEST", b"v0\n")

    under_iris = store.list("iris")
    everything = store.list("")

    assert sorted(under_iris) == ["iris/LATEST", "iris/versions/v1/model.pkl"]
    assert sorted(everything) == [
        "iris/LATEST",
        "iris/versions/v1/model.pkl",
        "wine/LATEST",
    ]


def test_list_of_an_absent_prefix_is_empty(store: Store) -> None:
    store.write("iris/LATEST", b"v1\n")

    assert store.list("wine") == []


@pytest.mark.parametrize("method", ["read", "read_token"])
def test_read_missing_key_raises_object_not_found_naming_the_location(
    store: Store, method: str
) -> None:
    with pytest.raises(StoreError) as exc_info:
        getattr(store, method)("iris/versions/v9/model.pkl")

    assert type(exc_info.value) is ObjectNotFound
    assert join_uri(store.uri, "iris/versions/v9/model.pkl") in str(exc_info.value)
    assert exc_info.value.__cause__ is None


def test_write_if_absent_creates_a_missing_key(cas_store: Store) -> None:
    cas_store.write("iris/versions/v1/model.pkl", b"pickle", if_absent=True)

    assert cas_store.read("iris/versions/v1/model.pkl") == b"pickle"


def test_write_if_absent_refuses_to_overwrite_and_keeps_the_original(
    cas_store: Store,
) -> None:
    cas_store.write("iris/versions/v1/model.pkl", b"original")

    with pytest.raises(PreconditionFailed) as exc_info:
        cas_store.write("iris/versions/v1/model.pkl", b"intruder", if_absent=True)

    assert "iris/versions/v1/model.pkl" in str(exc_info.value)
    assert cas_store.read("iris/versions/v1/model.pkl") == b"original"


def test_write_if_token_succeeds_when_the_object_is_unchanged(
    cas_store: Store,
) -> None:
    cas_store.write("iris/LATEST", b"v1\n")
    data, token = cas_store.read_token("iris/LATEST")

    cas_store.write("iris/LATEST", b"v2\n", if_token=token)

    assert data == b"v1\n"
    assert cas_store.read("iris/LATEST") == b"v2\n"


def test_write_if_token_fails_after_another_writer_changed_the_object(
    cas_store: Store,
) -> None:
    cas_store.write("iris/LATEST", b"v1\n")
    _, token = cas_store.read_token("iris/LATEST")
    other_writer = open_store(cas_store.uri)
    other_writer.write("iris/LATEST", b"theirs\n")

    with pytest.raises(PreconditionFailed):
        cas_store.write("iris/LATEST", b"mine\n", if_token=token)

    assert cas_store.read("iris/LATEST") == b"theirs\n"


def test_read_token_changes_with_every_write(cas_store: Store) -> None:
    cas_store.write("iris/LATEST", b"v1\n")
    _, first = cas_store.read_token("iris/LATEST")

    cas_store.write("iris/LATEST", b"v2\n", if_token=first)
    _, second = cas_store.read_token("iris/LATEST")

    assert second != first


# --------------------------------------------------------------------------- #
# Local folder
# --------------------------------------------------------------------------- #


@pytest.mark.parametrize(
    "key", ["../escape", "iris/../../escape", "iris/./LATEST", "", "/"]
)
@pytest.mark.parametrize("method", ["read", "read_token", "write"])
def test_local_rejects_keys_that_leave_or_alias_the_root(
    tmp_path: Path, key: str, method: str
) -> None:
    store = LocalStore(tmp_path / "models")
    args: tuple[Any, ...] = (key, b"x") if method == "write" else (key,)

    with pytest.raises(StoreError, match="invalid key"):
        getattr(store, method)(*args)

    assert not (tmp_path / "escape").exists()


def test_local_list_ignores_leftover_temporary_files(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    store.write("iris/LATEST", b"v1\n")
    (tmp_path / "iris" / ".tmp-crashed").write_bytes(b"partial")

    assert store.list("iris") == ["iris/LATEST"]


def test_local_write_leaves_no_temporary_file_after_a_refused_write(
    tmp_path: Path,
) -> None:
    store = LocalStore(tmp_path)
    store.write("iris/LATEST", b"v1\n")

    with pytest.raises(PreconditionFailed):
        store.write("iris/LATEST", b"v2\n", if_absent=True)

    assert not [p for p in (tmp_path / "iris").iterdir() if p.name.startswith(".tmp-")]
    assert store.list("iris") == ["iris/LATEST"]


# --------------------------------------------------------------------------- #
# S3
# --------------------------------------------------------------------------- #


def _call(store: Store, operation: str) -> object:
    if operation == "write":
        return store.write("iris/LATEST", b"v1\n")
    if operation == "list":
        return store.list("iris")
    return getattr(store, operation)("iris/LATEST")


@pytest.mark.parametrize("operation", ["read", "read_token", "write", "list"])
def test_s3_missing_bucket_is_a_store_error_naming_the_code(
    aws_credentials: None, operation: str
) -> None:
    from moto import mock_aws

    with mock_aws():
        store = open_store("s3://no-such-bucket/models")

        with pytest.raises(StoreError) as exc_info:
            _call(store, operation)

    assert type(exc_info.value) is StoreError  # not ObjectNotFound: a config error
    assert "NoSuchBucket" in str(exc_info.value)
    assert "s3://no-such-bucket/models/iris" in str(exc_info.value)


@pytest.mark.parametrize("operation", ["read", "read_token", "write", "list"])
def test_s3_access_denied_is_a_store_error_naming_the_code(
    s3_bucket: str, operation: str
) -> None:
    """Credentials of an IAM user without any policy, with moto enforcing IAM."""
    import boto3
    from moto.core import enable_iam_authentication

    iam = boto3.client("iam", region_name="us-east-1")
    iam.create_user(UserName="no-permissions")
    key = iam.create_access_key(UserName="no-permissions")["AccessKey"]
    os.environ.pop("AWS_SESSION_TOKEN", None)
    os.environ.pop("AWS_SECURITY_TOKEN", None)
    os.environ["AWS_ACCESS_KEY_ID"] = key["AccessKeyId"]
    os.environ["AWS_SECRET_ACCESS_KEY"] = key["SecretAccessKey"]
    store = open_store(f"s3://{s3_bucket}/models")

    with enable_iam_authentication(), pytest.raises(StoreError) as exc_info:
        _call(store, operation)

    assert type(exc_info.value) is StoreError
    assert "AccessDenied" in str(exc_info.value)
    assert f"s3://{s3_bucket}/models/iris" in str(exc_info.value)


@pytest.mark.parametrize("operation", ["read", "read_token", "write", "list"])
def test_s3_unreachable_endpoint_is_a_store_error_naming_the_location(
    aws_credentials: None, operation: str
) -> None:
    os.environ["AWS_ENDPOINT_URL_S3"] = f"http://127.0.0.1:{free_port()}"
    store = open_store(f"s3://{BUCKET}/models")

    with pytest.raises(StoreError) as exc_info:
        _call(store, operation)

    assert type(exc_info.value) is StoreError
    assert f"s3://{BUCKET}/models/iris" in str(exc_info.value)
    assert exc_info.value.__cause__ is None


def test_s3_write_if_token_uses_the_etag_from_read_token(s3_bucket: str) -> None:
    import boto3

    store = open_store(f"s3://{s3_bucket}/models")
    store.write("iris/LATEST", b"v1\n")

    _, token = store.read_token("iris/LATEST")

    head = boto3.client("s3", region_name="us-east-1").head_object(
        Bucket=s3_bucket, Key="models/iris/LATEST"
    )
    assert token == head["ETag"]


# --------------------------------------------------------------------------- #
# GCS
# --------------------------------------------------------------------------- #


def test_gcs_read_token_is_the_object_generation(gcs_host: str) -> None:
    from google.cloud import storage

    store = open_store(f"gs://{BUCKET}/{uuid.uuid4().hex}")
    store.write("iris/LATEST", b"v1\n")

    _, token = store.read_token("iris/LATEST")

    blob = storage.Client().bucket(BUCKET).get_blob(f"{store.prefix}/iris/LATEST")
    assert token == str(blob.generation)
    assert int(token) > 0


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
    from skserve.storage.gcs import GCSStore

    seen: list[object] = []

    class Blob:
        generation = 7

        def download_as_bytes(self, **kwargs: object) -> bytes:
            seen.append(kwargs["retry"])
            return b"v"

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

    monkeypatch.setattr(GCSStore, "_gcs_bucket", lambda self: Bucket())
    store = open_store(f"gs://{BUCKET}/models")

    store.read("k")
    store.read_token("k")
    store.write("k", b"v", if_absent=True)
    store.list("")

    assert len(seen) == 5
    assert all(0 < retry._timeout <= 10 for retry in seen)  # type: ignore[attr-defined]


def test_gcs_missing_bucket_is_named_as_a_possible_cause(gcs_host: str) -> None:
    store = open_store("gs://no-such-bucket/models")

    with pytest.raises(ObjectNotFound) as exc_info:
        store.read("iris/LATEST")

    assert "bucket no-such-bucket does not" in str(exc_info.value)


def test_list_treats_the_prefix_as_a_folder(store: Store) -> None:
    store.write("iris/LATEST", b"1")
    store.write("iris2/LATEST", b"2")

    assert store.list("iris") == ["iris/LATEST"]
    assert store.list("iris/") == ["iris/LATEST"]
    assert sorted(store.list("")) == ["iris/LATEST", "iris2/LATEST"]


def test_gcs_write_if_absent_sends_generation_zero(fake_gcs: FakeBucket) -> None:
    store = open_store(f"gs://{BUCKET}/models")

    store.write("iris/versions/v1/model.pkl", b"pickle", if_absent=True)

    assert fake_gcs.uploads[-1]["name"] == "models/iris/versions/v1/model.pkl"
    assert fake_gcs.uploads[-1]["if_generation_match"] == 0


def test_gcs_write_if_absent_maps_the_google_precondition_error(
    fake_gcs: FakeBucket,
) -> None:
    store = open_store(f"gs://{BUCKET}/models")
    store.write("iris/LATEST", b"v1\n")

    with pytest.raises(PreconditionFailed) as exc_info:
        store.write("iris/LATEST", b"v2\n", if_absent=True)

    assert fake_gcs.uploads[-1]["if_generation_match"] == 0
    assert f"gs://{BUCKET}/models/iris/LATEST" in str(exc_info.value)
    assert exc_info.value.__cause__ is None
    assert fake_gcs.objects["models/iris/LATEST"][0] == b"v1\n"


def test_gcs_write_if_token_sends_the_token_as_generation(
    fake_gcs: FakeBucket,
) -> None:
    store = open_store(f"gs://{BUCKET}/models")
    store.write("iris/LATEST", b"v1\n")
    _, token = store.read_token("iris/LATEST")
    generation = fake_gcs.objects["models/iris/LATEST"][1]

    store.write("iris/LATEST", b"v2\n", if_token=token)

    assert token == str(generation)
    assert fake_gcs.uploads[-1]["if_generation_match"] == generation
    assert fake_gcs.objects["models/iris/LATEST"][0] == b"v2\n"


def test_gcs_write_if_token_after_another_write_raises_precondition_failed(
    fake_gcs: FakeBucket,
) -> None:
    store = open_store(f"gs://{BUCKET}/models")
    store.write("iris/LATEST", b"v1\n")
    _, token = store.read_token("iris/LATEST")
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


# --------------------------------------------------------------------------- #
# URIs and lazy imports
# --------------------------------------------------------------------------- #


@pytest.mark.parametrize(
    ("uri", "cls", "where"),
    [
        ("model-store", LocalStore, "model-store"),
        ("/srv/models", LocalStore, "/srv/models"),
        ("file:///srv/models", LocalStore, "/srv/models"),
        ("file:///srv/my%20models", LocalStore, "/srv/my models"),
        ("C:\\models", LocalStore, "C:\\models"),
        ("gs://bucket/team/models", GCSStore, "gs://bucket/team/models"),
        ("gs://bucket", GCSStore, "gs://bucket"),
        ("s3://bucket/team/models/", S3Store, "s3://bucket/team/models"),
        ("s3://bucket", S3Store, "s3://bucket"),
    ],
)
def test_open_store_picks_the_backend_from_the_scheme(
    uri: str, cls: type[Store], where: str
) -> None:
    store = open_store(uri)

    assert type(store) is cls
    assert store.uri == where


def test_open_store_splits_bucket_and_prefix() -> None:
    gcs = open_store("gs://bucket/team/models")
    s3 = open_store("s3://bucket/team/models/")

    assert isinstance(gcs, GCSStore) and isinstance(s3, S3Store)
    assert (gcs.bucket_name, gcs.prefix) == ("bucket", "team/models")
    assert (s3.bucket, s3.prefix) == ("bucket", "team/models")


def test_open_store_rejects_an_unknown_scheme_listing_the_valid_ones() -> None:
    with pytest.raises(ConfigError) as exc_info:
        open_store("ftp://x/models")

    message = str(exc_info.value)
    assert "ftp://x/models" in message
    assert all(scheme in message for scheme in ("gs://", "s3://", "file://"))


@pytest.mark.parametrize("uri", ["s3://", "gs://", "s3:///models"])
def test_open_store_rejects_a_bucket_uri_without_a_bucket(uri: str) -> None:
    with pytest.raises(ConfigError, match="no bucket"):
        open_store(uri)


@pytest.mark.parametrize(
    ("uri", "expected"),
    [
        ("s3://b/p/name", ("s3://b/p/name", None)),
        ("s3://b/p/name/", ("s3://b/p/name", None)),
        ("s3://b/p/name/versions/v1", ("s3://b/p/name", "v1")),
        ("gs://b/name/versions/20240101-abc/", ("gs://b/name", "20240101-abc")),
        (
            "/srv/models/name/versions/v1/model.pkl",
            ("/srv/models/name/versions/v1/model.pkl", None),
        ),
    ],
)
def test_split_model_uri(uri: str, expected: tuple[str, str | None]) -> None:
    assert split_model_uri(uri) == expected


def test_join_uri_does_not_double_slashes() -> None:
    assert join_uri("s3://b/models/", "/iris/", "LATEST") == "s3://b/models/iris/LATEST"


def test_cloud_sdks_are_imported_on_first_use_not_on_open(tmp_path: Path) -> None:
    probe = (
        "import json, sys\n"
        "from skserve.storage import open_store\n"
        "def loaded():\n"
        "    return sorted(m for m in ('boto3', 'botocore', 'google.cloud.storage')"
        " if m in sys.modules)\n"
        "gcs = open_store('gs://bucket/models')\n"
        "s3 = open_store('s3://bucket/models')\n"
        "opened = loaded()\n"
        "gcs._gcs_bucket()\n"
        "s3._s3()\n"
        "print(json.dumps({'opened': opened, 'used': loaded()}))\n"
    )
    env = {
        **os.environ,
        "PYTHONPATH": "function",
        "STORAGE_EMULATOR_HOST": f"http://127.0.0.1:{free_port()}",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }

    result = subprocess.run(
        [sys.executable, "-c", probe],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert result.returncode == 0, result.stderr
    modules = json.loads(result.stdout)
    assert modules["opened"] == []
    assert modules["used"] == ["boto3", "botocore", "google.cloud.storage"]


def test_local_conditional_write_waits_for_a_writer_in_another_process(
    tmp_path: Path,
) -> None:
    """Two CLI publishers are two processes: the check-and-replace must be locked
    across them, not only across threads."""
    import fcntl

    store = LocalStore(tmp_path)
    store.write("m/LATEST", b"v1\n")
    _, token = store.read_token("m/LATEST")
    script = (
        "import sys; from skserve.storage.local import LocalStore; "
        f"LocalStore({str(tmp_path)!r}).write('m/LATEST', b'v2\\n', if_token={token!r})"
    )
    with open(tmp_path / "m" / ".LATEST.lock", "a+") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        writer = subprocess.Popen(
            [sys.executable, "-c", script],
            env={**os.environ, "PYTHONPATH": "function"},
            cwd=REPO,
        )
        time.sleep(1.0)
        blocked = writer.poll() is None
        fcntl.flock(lock, fcntl.LOCK_UN)
    writer.wait(timeout=30)

    assert blocked, "the other process wrote while we held the lock"
    assert writer.returncode == 0
    assert store.read("m/LATEST") == b"v2\n"


def test_gcs_checksum_mismatch_on_download_is_a_store_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """google-cloud-storage's DataCorruption is neither an API nor an HTTP error."""
    from google.cloud.storage.exceptions import DataCorruption

    class Blob:
        def download_as_bytes(self, **kwargs: object) -> bytes:
            raise DataCorruption(None, "Checksum mismatch while downloading")

    class Bucket:
        def blob(self, name: str) -> Blob:
            return Blob()

    monkeypatch.setattr(GCSStore, "_gcs_bucket", lambda self: Bucket())

    with pytest.raises(StoreError) as exc_info:
        open_store(f"gs://{BUCKET}/models").read("iris/LATEST")

    assert "Checksum mismatch" in str(exc_info.value)
