"""Google Cloud Storage: a bounded read checks the blob's size before its body.

The emulator is picked up from STORAGE_EMULATOR_HOST.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from skserve.errors import ObjectNotFound, PreconditionFailed, StoreError
from skserve.storage.base import Precondition, PrefixedStore, check_size, too_large

_TIMEOUT = (5, 60)  # (connect, read) seconds


class GCSStore(PrefixedStore):
    """Objects under gs://bucket/prefix; the client is made on first use."""

    scheme = "gs"

    def _make_client(self) -> Any:
        from google.cloud import storage

        with self._errors("connect to", ""):
            return storage.Client().bucket(self.bucket)

    def _not_found(self, key: str) -> ObjectNotFound:
        # A download's 404 does not say whether the object or the bucket is
        # missing; say both rather than spend a request finding out.
        return ObjectNotFound(
            f"{self._where(key)} does not exist (or bucket {self.bucket} does not)"
        )

    @contextmanager
    def _errors(self, what: str, key: str) -> Iterator[None]:
        from google.api_core import exceptions as api
        from google.auth.exceptions import GoogleAuthError
        from google.cloud.storage.exceptions import DataCorruption, InvalidResponse
        from requests.exceptions import RequestException

        try:
            yield
        except api.NotFound:
            raise self._not_found(key) from None
        except api.PreconditionFailed:
            raise PreconditionFailed(
                f"{self._where(key)} was changed by another writer"
            ) from None
        except (
            api.GoogleAPIError,
            GoogleAuthError,
            RequestException,
            DataCorruption,  # a download whose checksum did not match
            InvalidResponse,
        ) as exc:
            raise StoreError(f"cannot {what} {self._where(key)}: {exc}") from None

    def _retry(self) -> Any:
        from google.cloud.storage.retry import DEFAULT_RETRY

        # The library default retries for 120 s; a cold start should answer 503
        # and let the next request try again, and a CLI should fail promptly.
        # Our writes are all conditional, so retrying them is safe.
        return DEFAULT_RETRY.with_timeout(10.0)

    def _download(self, blob: Any, key: str, max_bytes: int | None, **kw: Any) -> bytes:
        sink = _BoundedSink(self._where(key), max_bytes)
        blob.download_to_file(sink, timeout=_TIMEOUT, retry=self._retry(), **kw)
        return sink.getvalue()

    def read(self, key: str, *, max_bytes: int | None = None) -> bytes:
        if max_bytes is not None:
            return self._get(key, max_bytes)[0]
        with self._errors("read", key):  # one request: no metadata needed
            return self._download(self._client().blob(self._key(key)), key, None)

    def read_token(
        self, key: str, *, max_bytes: int | None = None
    ) -> tuple[bytes, str]:
        return self._get(key, max_bytes)

    def _get(self, key: str, max_bytes: int | None) -> tuple[bytes, str]:
        """The blob's metadata first (its generation, its stored size), then the
        body of that generation."""
        with self._errors("read", key):
            blob = self._client().get_blob(
                self._key(key), timeout=_TIMEOUT, retry=self._retry()
            )
            if blob is None:
                raise self._not_found(key)
            check_size(self._where(key), blob.size, max_bytes)
            # Keep the generation we read: a download may reset it from headers.
            # Downloading that generation also means downloading the size checked.
            generation = blob.generation
            data = self._download(blob, key, max_bytes, if_generation_match=generation)
            return data, str(generation)

    def _put(self, key: str, data: bytes, when: Precondition) -> None:
        condition: dict[str, int] = {}
        if when.absent:
            condition["if_generation_match"] = 0
        elif when.token is not None:
            if not when.token.isdigit():
                raise StoreError(f"invalid GCS generation token {when.token!r}")
            condition["if_generation_match"] = int(when.token)
        with self._errors("write", key):
            self._client().blob(self._key(key)).upload_from_string(
                data,
                content_type=_content_type(key),
                timeout=_TIMEOUT,
                retry=self._retry(),
                **condition,
            )

    def list(self, prefix: str) -> list[str]:
        with self._errors("list", prefix):
            blobs = self._client().client.list_blobs(
                self.bucket,
                prefix=self._folder(prefix),
                timeout=_TIMEOUT,
                retry=self._retry(),
            )
            return [self._relative(blob.name) for blob in blobs]


class _BoundedSink(io.BytesIO):
    """A download target that refuses the chunk taking it past `max_bytes`.

    The stored size is checked first; this catches what it cannot: a blob
    served gzip-transcoded inflates past its stored size while downloading.
    """

    def __init__(self, where: str, max_bytes: int | None) -> None:
        super().__init__()
        self._where = where
        self._max_bytes = max_bytes

    def write(self, data: Any, /) -> int:
        if self._max_bytes is not None and self.tell() + len(data) > self._max_bytes:
            raise too_large(self._where, self._max_bytes)
        return super().write(data)


def _content_type(key: str) -> str:
    if key.endswith(".json"):
        return "application/json"
    if key.endswith("LATEST"):
        return "text/plain"
    return "application/octet-stream"
