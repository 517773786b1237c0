"""Stores to test against: every backend empty, per test, under its own prefix.

S3 runs in-process under moto's `mock_aws` (or behind a real HTTP endpoint,
moto's ThreadedMotoServer, where bytes on the wire are counted); GCS runs
against gcp-storage-emulator, and against a fake bucket at the client boundary
for what the emulator does not do (generation preconditions, transcoding).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from skserve.storage import join_uri, open_store
from skserve.storage.base import Store
from skserve.storage.gcs import GCSStore
from tests.support import GCSEmulator
from tests.unit.storage.fakes import FakeBucket
from tests.unit.storage.proxy import CountingProxy

S3_BUCKET = "test-bucket"
GCS_BUCKET = "models"  # the bucket the session's gcp-storage-emulator holds


@pytest.fixture
def s3_bucket(aws_credentials: None) -> Iterator[str]:
    """An empty bucket in moto's in-process S3; clients are made inside the mock."""
    import boto3
    from moto import mock_aws

    for name in ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3"):
        os.environ.pop(name, None)
    with mock_aws():
        boto3.client("s3", region_name="us-east-1").create_bucket(Bucket=S3_BUCKET)
        yield S3_BUCKET


@pytest.fixture
def gcs_bucket(gcs_emulator: GCSEmulator) -> str:
    """Point google-cloud-storage at the emulator (the autouse fixture undoes it)."""
    os.environ["STORAGE_EMULATOR_HOST"] = gcs_emulator.host
    return GCS_BUCKET


def _root(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty place to open stores in, on the backend `request.param` names."""
    backend = request.param
    if backend == "local":
        return str(tmp_path)
    if backend == "s3":
        return f"s3://{request.getfixturevalue('s3_bucket')}"
    if backend == "gcs-fake":
        request.getfixturevalue("fake_gcs")
        return "gs://test-bucket"
    # The emulator lives for the whole session: give each test its own folder.
    return f"gs://{request.getfixturevalue('gcs_bucket')}/{uuid.uuid4().hex}"


@pytest.fixture(params=["local", "s3", "gcs"])
def root_uri(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """One per backend, GCS on the emulator."""
    return _root(request, tmp_path)


@pytest.fixture
def store(root_uri: str) -> Store:
    return open_store(join_uri(root_uri, "models"))


@pytest.fixture
def fake_gcs(monkeypatch: pytest.MonkeyPatch) -> FakeBucket:
    """Every GCSStore talks to one in-memory fake bucket instead of the network."""
    bucket = FakeBucket()
    monkeypatch.setattr(GCSStore, "_client", lambda self: bucket)
    return bucket


@pytest.fixture(params=["local", "s3", "gcs-fake"])
def cas_root(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """One per backend whose conditional writes are enforced (the GCS emulator
    ignores generation preconditions: GCS here is the fake bucket)."""
    return _root(request, tmp_path)


@pytest.fixture
def cas_store(cas_root: str) -> Store:
    return open_store(join_uri(cas_root, "models"))


@pytest.fixture(params=["s3", "gcs"])
def proxied(
    request: pytest.FixtureRequest,
) -> Iterator[tuple[Store, CountingProxy]]:
    """A store on a real HTTP server reached only through a byte-counting proxy."""
    prefix = uuid.uuid4().hex
    if request.param == "s3":
        import boto3

        request.getfixturevalue("aws_credentials")
        server = request.getfixturevalue("moto_server")
        s3 = boto3.client("s3", endpoint_url=server)
        bucket = "proxied-" + prefix[:12]
        s3.create_bucket(Bucket=bucket)
        proxy = CountingProxy(server)
        os.environ["AWS_ENDPOINT_URL_S3"] = proxy.url
        yield open_store(f"s3://{bucket}/{prefix}"), proxy
        # The server lives for the session: free what this test put in it.
        for item in s3.list_objects_v2(Bucket=bucket).get("Contents", []):
            s3.delete_object(Bucket=bucket, Key=item["Key"])
        s3.delete_bucket(Bucket=bucket)
    else:
        from google.cloud import storage

        emulator = request.getfixturevalue("gcs_emulator")
        # Uploads go through the proxy too: the emulator names the proxy in the
        # mediaLink it hands out for downloads.
        proxy = CountingProxy(emulator.host)
        os.environ["STORAGE_EMULATOR_HOST"] = proxy.url
        yield open_store(f"gs://{GCS_BUCKET}/{prefix}"), proxy
        os.environ["STORAGE_EMULATOR_HOST"] = emulator.host
        client = storage.Client()
        for blob in client.list_blobs(GCS_BUCKET, prefix=f"{prefix}/"):
            blob.delete()
    proxy.stop()
