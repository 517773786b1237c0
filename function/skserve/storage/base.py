"""The interface every storage backend implements."""

from __future__ import annotations

from abc import ABC, abstractmethod


class Store(ABC):
    """A key/value view of a URI prefix. Keys are relative, '/'-separated.

    Implementations must be thread-safe: one instance serves every request thread.
    """

    uri: str

    @abstractmethod
    def read(self, key: str) -> bytes:
        """Return the object's bytes; ObjectNotFound if absent, StoreError if the
        store cannot be reached."""

    @abstractmethod
    def read_token(self, key: str) -> tuple[bytes, str]:
        """Return the object's bytes and a token (ETag, generation, mtime) that
        `write(..., if_token=...)` can check to detect a concurrent writer."""

    @abstractmethod
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

    @abstractmethod
    def list(self, prefix: str) -> list[str]:
        """Keys under `prefix` (relative to the store root), in no given order."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.uri!r})"
