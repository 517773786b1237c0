"""Amazon S3 (boto3): a read over its limit is refused from ContentLength, unread.

The endpoint comes from boto3's own AWS_ENDPOINT_URL_S3.
"""

from __future__ import annotations

from contextlib import closing
from typing import Any

from skserve.errors import ObjectNotFound, PreconditionFailed, StoreError
from skserve.storage.base import (
    Precondition,
    PrefixedStore,
    check_size,
    read_bounded,
)

_MISSING = {"NoSuchKey", "404", "NotFound"}
_CONFLICT = {"PreconditionFailed", "412", "ConditionalRequestConflict", "409"}


class S3Store(PrefixedStore):
    """Objects under s3://bucket/prefix; the client is made on first use."""

    scheme = "s3"

    def _make_client(self) -> Any:
        import boto3
        from botocore.config import Config
        from botocore.exceptions import BotoCoreError

        # Bounded retries and timeouts: a cold start must fail fast
        # (503 + Retry-After) rather than hang while the store is down.
        config = Config(
            connect_timeout=5,
            read_timeout=60,
            retries={"mode": "standard", "max_attempts": 3},
        )
        try:
            return boto3.session.Session().client("s3", config=config)
        except (BotoCoreError, ValueError) as exc:  # ValueError: a malformed endpoint
            raise StoreError(
                f"cannot make an S3 client for {self.uri}: {exc}"
            ) from None

    def _call(self, what: str, key: str, method: str, **kwargs: Any) -> Any:
        from botocore.exceptions import BotoCoreError, ClientError

        where = self._where(key)
        try:
            return getattr(self._client(), method)(Bucket=self.bucket, **kwargs)
        except ClientError as exc:
            error = exc.response.get("Error", {})
            code = str(error.get("Code", ""))
            if code in _MISSING:
                raise ObjectNotFound(f"{where} does not exist") from None
            if code in _CONFLICT:
                raise PreconditionFailed(
                    f"{where} was changed by another writer"
                ) from None
            message = error.get("Message") or code
            raise StoreError(f"cannot {what} {where}: {code}: {message}") from None
        except BotoCoreError as exc:
            raise StoreError(f"cannot {what} {where}: {exc}") from None

    def read(self, key: str, *, max_bytes: int | None = None) -> bytes:
        return self._get(key, max_bytes)[0]

    def read_token(
        self, key: str, *, max_bytes: int | None = None
    ) -> tuple[bytes, str]:
        return self._get(key, max_bytes)

    def _get(self, key: str, max_bytes: int | None) -> tuple[bytes, str]:
        from botocore.exceptions import BotoCoreError

        where = self._where(key)
        response = self._call("read", key, "get_object", Key=self._key(key))
        # Closing a body left unread drops its connection instead of draining it:
        # the bytes past the headers are never fetched into this process.
        with closing(response["Body"]) as body:
            check_size(where, response.get("ContentLength"), max_bytes)
            try:
                return read_bounded(where, body.read, max_bytes), response["ETag"]
            except BotoCoreError as exc:
                raise StoreError(f"cannot read {where}: {exc}") from None

    def _put(self, key: str, data: bytes, when: Precondition) -> None:
        extra: dict[str, str] = {}
        if when.absent:
            extra["IfNoneMatch"] = "*"
        elif when.token is not None:
            extra["IfMatch"] = when.token
        self._call("write", key, "put_object", Key=self._key(key), Body=data, **extra)

    def list(self, prefix: str) -> list[str]:
        from botocore.exceptions import BotoCoreError, ClientError

        folder = self._folder(prefix)
        keys: list[str] = []
        try:
            pages = self._client().get_paginator("list_objects_v2")
            for page in pages.paginate(Bucket=self.bucket, Prefix=folder):
                keys.extend(
                    self._relative(item["Key"]) for item in page.get("Contents", [])
                )
        except (BotoCoreError, ClientError) as exc:
            raise StoreError(
                f"cannot list s3://{self.bucket}/{folder}: {exc}"
            ) from None
        return keys
