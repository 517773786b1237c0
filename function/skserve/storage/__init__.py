"""Storage backends behind one small interface, chosen by URI scheme.

`gs://` and `s3://` import their SDK only when such a URI is opened.
"""

from __future__ import annotations

from urllib.parse import unquote, urlparse

from skserve.errors import ConfigError
from skserve.storage.base import Store

SCHEMES = ("file", "gs", "s3")


def open_store(uri: str) -> Store:
    """Return the store rooted at `uri` (a bucket URI, file:// URI or plain path)."""
    parsed = urlparse(uri)
    scheme = parsed.scheme if len(parsed.scheme) > 1 else ""  # C:\ is a path
    if scheme in ("", "file"):
        from skserve.storage.local import LocalStore

        path = unquote(parsed.path) if scheme == "file" else uri
        return LocalStore(path)
    if scheme not in SCHEMES:
        raise ConfigError(
            f"unsupported store URI {uri!r}: use one of gs://, s3://, file:// "
            "or a plain path"
        )
    if not parsed.netloc:
        raise ConfigError(f"store URI {uri!r} has no bucket name")
    prefix = parsed.path.strip("/")
    if scheme == "gs":
        from skserve.storage.gcs import GCSStore

        return GCSStore(parsed.netloc, prefix)
    from skserve.storage.s3 import S3Store

    return S3Store(parsed.netloc, prefix)


def join_uri(base: str, *parts: str) -> str:
    """Join path segments onto a store URI without doubling slashes."""
    return "/".join([base.rstrip("/"), *(p.strip("/") for p in parts)])


def split_model_uri(uri: str) -> tuple[str, str | None]:
    """Split MODEL_URI into (model root, pinned version or None).

    `<store>/<name>` follows LATEST; `<store>/<name>/versions/<v>` pins `<v>`.
    """
    head, sep, version = uri.rstrip("/").rpartition("/versions/")
    if sep and version and "/" not in version:
        return head, version
    return uri.rstrip("/"), None


__all__ = ["SCHEMES", "Store", "join_uri", "open_store", "split_model_uri"]
