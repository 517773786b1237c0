"""Amazon S3 (boto3). The endpoint comes from boto3's own AWS_ENDPOINT_URL_S3."""

from __future__ import annotations

import threading
from typing import Any

from skserve.errors import ObjectNotFound, PreconditionFailed, StoreError
from skserve.storage.base import Store

_MISSING = {"NoSuchKey", "404", "NotFound"}
_CONFLICT = {"PreconditionFailed", "412", "ConditionalRequestConflict", "409"}


class S3Store(Store):
    """Objects under s3://bucket/prefix; the client is made on first use."""

    def __init__(self, bucket: str, prefix: str) -> None:
        self.bucket = bucket
        self.prefix = prefix
        self.uri = f"s3://{bucket}/{prefix}".rstrip("/")
        self._client: Any = None
        self._lock = threading.Lock()

    def _s3(self) -> Any:
        if self._client is None:
            with self._lock:
                if self._client is None:
                    import boto3
                    from botocore.config import Config

                    # Bounded retries and timeouts: a cold start must fail fast
                    # (503 + Retry-After) rather than hang while the store is down.
                    config = Config(
                        connect_timeout=5,
                        read_timeout=60,
                        retries={"mode": "standard", "max_attempts": 3},
                    )
                    self._client = boto3.session.Session().client("s3", config=config)
        return self._client

    def _key(self, key: str) -> str:
        return f"{self.prefix}/{key}" if self.prefix else key

    def _call(self, what: str, key: str, method: str, **kwargs: Any) -> Any:
        from botocore.exceptions import BotoCoreError, ClientError

        where = f"s3://{self.bucket}/{self._key(key)}"
        try:
            return getattr(self._s3(), method)(Bucket=self.bucket, **kwargs)
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

    def read(self, key: str) -> bytes:
        return self.read_token(key)[0]

    def read_token(self, key: str) -> tuple[bytes, str]:
        from botocore.exceptions import BotoCoreError

        response = self._call("read", key, "get_object", Key=self._key(key))
        try:
            return response["Body"].read(), response["ETag"]
        except BotoCoreError as exc:
            where = f"s3://{self.bucket}/{self._key(key)}"
            raise StoreError(f"cannot read {where}: {exc}") from None

    def write(
        self,
        key: str,
        data: bytes,
        *,
        if_absent: bool = False,
        if_token: str | None = None,
    ) -> None:
        extra: dict[str, str] = {}
        if if_absent:
            extra["IfNoneMatch"] = "*"
        elif if_token is not None:
            extra["IfMatch"] = if_token
        self._call("write", key, "put_object", Key=self._key(key), Body=data, **extra)

    def list(self, prefix: str) -> list[str]:
        from botocore.exceptions import BotoCoreError, ClientError

        full = (
            self._key(prefix.strip("/") + "/") if prefix.strip("/") else self._key("")
        )
        strip = len(self.prefix) + 1 if self.prefix else 0
        keys: list[str] = []
        try:
            pages = self._s3().get_paginator("list_objects_v2")
            for page in pages.paginate(Bucket=self.bucket, Prefix=full):
                keys.extend(item["Key"][strip:] for item in page.get("Contents", []))
        except (BotoCoreError, ClientError) as exc:
            raise StoreError(f"cannot list s3://{self.bucket}/{full}: {exc}") from None
        return keys
