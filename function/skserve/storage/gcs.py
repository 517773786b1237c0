"""Google Cloud Storage. The emulator is picked up from STORAGE_EMULATOR_HOST."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from skserve.errors import ObjectNotFound, PreconditionFailed, StoreError
from skserve.storage.base import Store

_TIMEOUT = (5, 60)  # (connect, read) seconds


class GCSStore(Store):
    """Objects under gs://bucket/prefix; the client is made on first use."""

    def __init__(self, bucket: str, prefix: str) -> None:
        self.bucket_name = bucket
        self.prefix = prefix
        self.uri = f"gs://{bucket}/{prefix}".rstrip("/")
        self._bucket: Any = None
        self._lock = threading.Lock()

    def _gcs_bucket(self) -> Any:
        if self._bucket is None:
            with self._lock:
                if self._bucket is None:
                    from google.cloud import storage

                    with self._errors("connect to", ""):
                        self._bucket = storage.Client().bucket(self.bucket_name)
        return self._bucket

    def _key(self, key: str) -> str:
        return f"{self.prefix}/{key}" if self.prefix else key

    @contextmanager
    def _errors(self, what: str, key: str) -> Iterator[None]:
        from google.api_core import exceptions as api
        from google.auth.exceptions import GoogleAuthError
        from google.cloud.storage.exceptions import DataCorruption, InvalidResponse
        from requests.exceptions import RequestException

        where = f"gs://{self.bucket_name}/{self._key(key)}"
        try:
            yield
        except api.NotFound:
            # A download's 404 does not say whether the object or the bucket is
            # missing; say both rather than spend a request finding out.
            raise ObjectNotFound(
                f"{where} does not exist (or bucket {self.bucket_name} does not)"
            ) from None
        except api.PreconditionFailed:
            raise PreconditionFailed(f"{where} was changed by another writer") from None
        except (
            api.GoogleAPIError,
            GoogleAuthError,
            RequestException,
            DataCorruption,  # a download whose checksum did not match
            InvalidResponse,
        ) as exc:
            raise StoreError(f"cannot {what} {where}: {exc}") from None

    def _retry(self) -> Any:
        from google.cloud.storage.retry import DEFAULT_RETRY

        # The library default retries for 120 s; a cold start should answer 503
        # and let the next request try again, and a CLI should fail promptly.
        # Our writes are all conditional, so retrying them is safe.
        return DEFAULT_RETRY.with_timeout(10.0)

    def read(self, key: str) -> bytes:
        with self._errors("read", key):
            blob = self._gcs_bucket().blob(self._key(key))
            return blob.download_as_bytes(timeout=_TIMEOUT, retry=self._retry())

    def read_token(self, key: str) -> tuple[bytes, str]:
        with self._errors("read", key):
            blob = self._gcs_bucket().get_blob(
                self._key(key), timeout=_TIMEOUT, retry=self._retry()
            )
            if blob is None:
                raise ObjectNotFound(
                    f"gs://{self.bucket_name}/{self._key(key)} does not exist"
                )
            # Keep the generation we read: a download may reset it from headers.
            generation = blob.generation
            data = blob.download_as_bytes(
                timeout=_TIMEOUT,
                retry=self._retry(),
                if_generation_match=generation,
            )
            return data, str(generation)

    def write(
        self,
        key: str,
        data: bytes,
        *,
        if_absent: bool = False,
        if_token: str | None = None,
    ) -> None:
        condition: dict[str, int] = {}
        if if_absent:
            condition["if_generation_match"] = 0
        elif if_token is not None:
            if not if_token.isdigit():
                raise StoreError(f"invalid GCS generation token {if_token!r}")
            condition["if_generation_match"] = int(if_token)
        upload: Callable[..., None]
        with self._errors("write", key):
            upload = self._gcs_bucket().blob(self._key(key)).upload_from_string
            upload(
                data,
                content_type=_content_type(key),
                timeout=_TIMEOUT,
                retry=self._retry(),
                **condition,
            )

    def list(self, prefix: str) -> list[str]:
        full = self._key(_folder(prefix)) if prefix.strip("/") else self._key("")
        strip = len(self.prefix) + 1 if self.prefix else 0
        with self._errors("list", prefix):
            blobs = self._gcs_bucket().client.list_blobs(
                self.bucket_name, prefix=full, timeout=_TIMEOUT, retry=self._retry()
            )
            return [blob.name[strip:] for blob in blobs]


def _folder(prefix: str) -> str:
    """`versions` and `versions/` both mean the folder, never `versions2/`."""
    return prefix.strip("/") + "/"


def _content_type(key: str) -> str:
    if key.endswith(".json"):
        return "application/json"
    if key.endswith("LATEST"):
        return "text/plain"
    return "application/octet-stream"
