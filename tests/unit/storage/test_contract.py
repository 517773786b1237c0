"""The `Store` contract, on every backend: local folder, S3 and GCS.

Bounded reads refuse an object over the limit from the size the store reports,
before its body is fetched; the proof for S3 and GCS is the byte count of a
proxy between the client and a real HTTP server.
"""

from __future__ import annotations

import pytest

from skserve.errors import (
    ObjectNotFound,
    ObjectTooLarge,
    PreconditionFailed,
    StoreError,
)
from skserve.storage import join_uri, open_store
from skserve.storage.base import Store
from tests.unit.storage.proxy import CountingProxy

MiB = 1024 * 1024


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


def test_list_treats_the_prefix_as_a_folder(store: Store) -> None:
    store.write("iris/LATEST", b"1")
    store.write("iris2/LATEST", b"2")

    assert store.list("iris") == ["iris/LATEST"]
    assert store.list("iris/") == ["iris/LATEST"]
    assert sorted(store.list("")) == ["iris/LATEST", "iris2/LATEST"]


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


@pytest.fixture
def v1_token(cas_store: Store) -> str:
    """`iris/LATEST` written as v1; the token its read_token returned."""
    cas_store.write("iris/LATEST", b"v1\n")
    data, token = cas_store.read_token("iris/LATEST")
    assert data == b"v1\n"
    return token


def test_write_if_token_succeeds_when_the_object_is_unchanged(
    cas_store: Store, v1_token: str
) -> None:
    cas_store.write("iris/LATEST", b"v2\n", if_token=v1_token)

    assert cas_store.read("iris/LATEST") == b"v2\n"


def test_write_if_token_fails_after_another_writer_changed_the_object(
    cas_store: Store, v1_token: str
) -> None:
    other_writer = open_store(cas_store.uri)
    other_writer.write("iris/LATEST", b"theirs\n")

    with pytest.raises(PreconditionFailed):
        cas_store.write("iris/LATEST", b"mine\n", if_token=v1_token)

    assert cas_store.read("iris/LATEST") == b"theirs\n"


def test_read_token_changes_with_every_write(cas_store: Store, v1_token: str) -> None:
    cas_store.write("iris/LATEST", b"v2\n", if_token=v1_token)
    _, second = cas_store.read_token("iris/LATEST")

    assert second != v1_token


# --- bounded reads ----------------------------------------------------------------


@pytest.mark.parametrize("method", ["read", "read_token"])
def test_read_with_max_bytes_equal_to_the_size_returns_the_object(
    store: Store, method: str
) -> None:
    data = bytes(range(256)) * 40
    store.write("iris/versions/v1/model.pkl", data)

    result = getattr(store, method)("iris/versions/v1/model.pkl", max_bytes=len(data))

    assert (result[0] if method == "read_token" else result) == data


@pytest.mark.parametrize("method", ["read", "read_token"])
def test_read_over_max_bytes_raises_object_too_large_naming_key_and_limit(
    store: Store, method: str
) -> None:
    secret = b"SECRET-" * 1462 + b"!"  # 10235 bytes, whose content must not leak
    store.write("iris/versions/v1/model.pkl", secret)

    with pytest.raises(ObjectTooLarge) as exc_info:
        getattr(store, method)("iris/versions/v1/model.pkl", max_bytes=len(secret) - 1)

    message = str(exc_info.value)
    assert join_uri(store.uri, "iris/versions/v1/model.pkl") in message
    assert str(len(secret) - 1) in message
    assert "SECRET" not in message
    assert exc_info.value.size == len(secret)  # known before any download
    assert exc_info.value.__cause__ is None


def test_read_of_an_empty_object_with_max_bytes_zero_returns_it(store: Store) -> None:
    store.write("iris/LATEST", b"")

    assert store.read("iris/LATEST", max_bytes=0) == b""
    assert store.read_token("iris/LATEST", max_bytes=0)[0] == b""


def test_read_of_a_missing_key_with_max_bytes_is_object_not_found(
    store: Store,
) -> None:
    with pytest.raises(StoreError) as exc_info:
        store.read("iris/versions/v9/model.pkl", max_bytes=1000)

    assert type(exc_info.value) is ObjectNotFound


def test_bounded_read_of_a_large_object_does_not_download_its_body(
    proxied: tuple[Store, CountingProxy],
) -> None:
    """50 MiB against a 1000-byte limit: refused from the headers, with almost
    nothing on the wire (bytes counted, not seconds); then the same object read
    whole through the same proxy, which proves the proxy sees every download."""
    store, proxy = proxied
    size = 50 * MiB
    store.write("big/model.pkl", bytes(size))

    with pytest.raises(ObjectTooLarge) as exc_info:
        store.read("big/model.pkl", max_bytes=1000)
    whole = store.read("big/model.pkl")
    proxy.stop()  # waits for every connection, so the count is final

    assert exc_info.value.size == size
    assert len(whole) == size
    refused_bytes = proxy.downloaded - size  # the whole read's body is `size`
    assert refused_bytes < 1 * MiB, f"the refused read downloaded {refused_bytes}"
