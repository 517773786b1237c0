"""The interface every backend implements; a read never buffers past its limit."""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

from skserve.errors import ObjectTooLarge


@dataclass(frozen=True)
class Precondition:
    """When a write may happen: only if absent, only if the object still has a
    token (ETag, generation, inode), or always (neither)."""

    absent: bool = False
    token: str | None = None


class Store(ABC):
    """A key/value view of a URI prefix. Keys are relative, '/'-separated.

    Implementations must be thread-safe: one instance serves every request thread.
    """

    uri: str

    @abstractmethod
    def read(self, key: str, *, max_bytes: int | None = None) -> bytes:
        """Return the object's bytes; ObjectNotFound if absent, StoreError if the
        store cannot be reached, ObjectTooLarge if it holds more than `max_bytes`
        (checked against the stored size before the body is fetched)."""

    @abstractmethod
    def read_token(
        self, key: str, *, max_bytes: int | None = None
    ) -> tuple[bytes, str]:
        """Return the object's bytes and a token (ETag, generation, mtime) that
        `write(..., if_token=...)` can check to detect a concurrent writer.
        `max_bytes` bounds the read as in `read`."""

    def write(
        self,
        key: str,
        data: bytes,
        *,
        if_absent: bool = False,
        if_token: str | None = None,
    ) -> None:
        """Write an object. `if_absent` refuses to overwrite; `if_token` writes only
        if the object still has that token. A lost race raises PreconditionFailed."""
        self._put(key, data, Precondition(if_absent, if_token))

    @abstractmethod
    def _put(self, key: str, data: bytes, when: Precondition) -> None:
        """Each backend's write, under the condition `when`."""

    @abstractmethod
    def list(self, prefix: str) -> list[str]:
        """Keys under `prefix` (relative to the store root), in no given order."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.uri!r})"


def too_large(where: str, max_bytes: int, size: int | None = None) -> ObjectTooLarge:
    """The error for an object over the limit; it names the place, never the data."""
    if size is None:
        return ObjectTooLarge(f"{where} holds more than the {max_bytes} bytes allowed")
    return ObjectTooLarge(
        f"{where} holds {size} bytes, more than the {max_bytes} allowed", size=size
    )


def check_size(where: str, size: int | None, max_bytes: int | None) -> None:
    """Refuse an object from the size the store reports, before its body is read."""
    if max_bytes is not None and size is not None and size > max_bytes:
        raise too_large(where, max_bytes, size)


def read_bounded(
    where: str, read: Callable[[int | None], bytes], max_bytes: int | None
) -> bytes:
    """Read a stream whole, or at most `max_bytes` + 1 bytes of it: one byte past
    the limit proves the object too large without buffering the rest."""
    if max_bytes is None:
        return read(None)
    data = read(max_bytes + 1)
    if len(data) > max_bytes:
        raise too_large(where, max_bytes)
    return data


class PrefixedStore(Store):
    """Objects under `<scheme>://bucket/prefix` in a cloud bucket.

    The SDK client is made on first use (never at import or open, so a cold start
    pays for it only when a model is read) and once per store, by one thread.
    """

    scheme: ClassVar[str]

    def __init__(self, bucket: str, prefix: str) -> None:
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.uri = f"{self.scheme}://{bucket}/{self.prefix}".rstrip("/")
        self._client_made: Any = None
        self._client_lock = threading.Lock()

    @abstractmethod
    def _make_client(self) -> Any:
        """Import the SDK and build its client; errors must already be StoreErrors."""

    def _client(self) -> Any:
        client = self._client_made
        if client is None:
            with self._client_lock:
                # Another thread may have made it while this one waited.
                if self._client_made is None:
                    self._client_made = self._make_client()
                client = self._client_made
        return client

    def _key(self, key: str) -> str:
        """The bucket's object name for a store key."""
        return f"{self.prefix}/{key}" if self.prefix else key

    def _where(self, key: str) -> str:
        """The object's URI, for messages."""
        return f"{self.scheme}://{self.bucket}/{self._key(key)}"

    def _folder(self, prefix: str) -> str:
        """The object-name prefix listing `prefix` as a folder: `iris` and `iris/`
        both mean `iris/...`, never `iris2/...`."""
        folder = prefix.strip("/")
        return self._key(folder + "/") if folder else self._key("")

    def _relative(self, name: str) -> str:
        """A bucket object name back to its store key."""
        return name[len(self.prefix) + 1 :] if self.prefix else name
