"""The S3 store's own behaviour: error mapping, ETag tokens, sizes from headers."""

from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from skserve.errors import ObjectTooLarge, StoreError
from skserve.storage import open_store
from skserve.storage.base import Store
from skserve.storage.s3 import S3Store
from tests.support import free_port


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
    store = open_store("s3://test-bucket/models")

    with pytest.raises(StoreError) as exc_info:
        _call(store, operation)

    assert type(exc_info.value) is StoreError
    assert "s3://test-bucket/models/iris" in str(exc_info.value)
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


@pytest.mark.parametrize("method", ["read", "read_token"])
def test_s3_bounded_read_without_a_content_length_stops_past_the_limit(
    s3_bucket: str, method: str
) -> None:
    """Where a response carries no size, the body is read to max_bytes + 1 only."""
    store = open_store(f"s3://{s3_bucket}/models")
    assert isinstance(store, S3Store)
    store.write("iris/versions/v1/model.pkl", bytes(5000))
    unsized: list[int] = []

    def drop_content_length(parsed: dict, **kwargs: object) -> None:
        unsized.append(parsed.pop("ContentLength"))

    store._client().meta.events.register("after-call.s3.GetObject", drop_content_length)

    with pytest.raises(ObjectTooLarge) as exc_info:
        getattr(store, method)("iris/versions/v1/model.pkl", max_bytes=4999)
    within = getattr(store, method)("iris/versions/v1/model.pkl", max_bytes=5000)

    assert unsized == [5000, 5000]
    assert exc_info.value.size is None
    assert "more than the 4999 bytes allowed" in str(exc_info.value)
    assert (within[0] if method == "read_token" else within) == bytes(5000)


def test_s3_client_is_made_once_when_first_reads_race(s3_bucket: str) -> None:
    """Every request thread shares the one client the first of them made: the
    first make waits until all eight threads have asked for the client."""
    open_store(f"s3://{s3_bucket}/models").write("iris/LATEST", b"v1\n")
    store = open_store(f"s3://{s3_bucket}/models")
    assert isinstance(store, S3Store)
    make, client = store._make_client, store._client
    made: list[object] = []
    asked = threading.Semaphore(0)

    def asking() -> object:
        asked.release()
        return client()

    def make_once_all_asked() -> object:
        for _ in range(8):
            assert asked.acquire(timeout=60), "not every thread asked for the client"
        made.append(make())
        return made[-1]

    store._client = asking  # type: ignore[method-assign]
    store._make_client = make_once_all_asked  # type: ignore[method-assign]

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda _: store.read("iris/LATEST"), range(8)))

    assert results == [b"v1\n"] * 8
    assert len(made) == 1
