"""Opening stores by URI (`skserve.storage`): schemes, buckets, model URIs, and
cloud SDKs imported only on first use."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from skserve.errors import ConfigError
from skserve.storage import join_uri, open_store, split_model_uri
from skserve.storage.base import Store
from skserve.storage.gcs import GCSStore
from skserve.storage.local import LocalStore
from skserve.storage.s3 import S3Store
from tests.support import REPO, free_port


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
    assert (gcs.bucket, gcs.prefix) == ("bucket", "team/models")
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


def test_cloud_sdks_are_imported_on_first_use_not_on_open() -> None:
    probe = (
        "import json, sys\n"
        "from skserve.storage import open_store\n"
        "def loaded():\n"
        "    return sorted(m for m in ('boto3', 'botocore', 'google.cloud.storage')"
        " if m in sys.modules)\n"
        "gcs = open_store('gs://bucket/models')\n"
        "s3 = open_store('s3://bucket/models')\n"
        "opened = loaded()\n"
        "gcs._client()\n"
        "s3._client()\n"
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
