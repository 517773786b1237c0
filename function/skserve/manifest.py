"""The manifest: what a published version contains, and how to verify it.

Readers trust nothing they download until its SHA-256 matches the manifest.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import json
import re
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from skserve.errors import IntegrityError
from skserve.schema import InputSchema

MANIFEST = "manifest.json"
MAX_MANIFEST_BYTES = 1024 * 1024  # far above any real one; bounds what we parse
LATEST = "LATEST"
TASKS = ("classification", "regression", "clustering", "outlier_detection")
_VERSION_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
_FILE_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")  # one path segment
_REQUIRED = ("name", "version", "task", "n_features", "files")


def sha256_hex(data: bytes) -> str:
    """Hex SHA-256 of `data`."""
    return hashlib.sha256(data).hexdigest()


def new_version(now: datetime | None = None) -> str:
    """A version id that sorts by time and will not collide, to the millisecond:
    20261127T073000.123Z-3f9a1c2b."""
    now = now or datetime.now(UTC)
    return f"{now:%Y%m%dT%H%M%S}.{now.microsecond // 1000:03d}Z-{secrets.token_hex(4)}"


def check_version(version: str) -> str:
    """Return `version` if it is a safe version id (it becomes part of a key)."""
    if not _VERSION_RE.match(version):
        raise IntegrityError(f"invalid model version id {version[:80]!r}")
    return version


def version_key(version: str, filename: str) -> str:
    """The store key of one file of one version."""
    return f"versions/{check_version(version)}/{filename}"


@dataclass(frozen=True)
class Manifest:
    """A parsed manifest.json; `data` keeps every field as published."""

    data: dict[str, Any]

    @classmethod
    def from_bytes(cls, raw: bytes) -> Manifest:
        """Parse and sanity-check a manifest; IntegrityError if it is unusable."""
        try:
            data = json.loads(raw)
        except (ValueError, RecursionError):
            raise IntegrityError("manifest.json is not valid JSON") from None
        if not isinstance(data, dict):
            raise IntegrityError("manifest.json is not a JSON object")
        missing = [key for key in _REQUIRED if key not in data]
        if missing:
            raise IntegrityError(f"manifest.json lacks {', '.join(missing)}")
        if data["task"] not in TASKS or not isinstance(data["files"], dict):
            raise IntegrityError("manifest.json has an invalid task or files entry")
        if not isinstance(data["version"], str) or not _VERSION_RE.match(
            data["version"]
        ):
            raise IntegrityError("manifest.json has an invalid version id")
        if not all(isinstance(f, str) and _FILE_RE.match(f) for f in data["files"]):
            raise IntegrityError("manifest.json lists a file with an unsafe name")
        return cls(data)

    def to_bytes(self) -> bytes:
        # Strict JSON: a NaN would not read back equal, nor render in /metadata.
        text = json.dumps(self.data, indent=2, sort_keys=True, allow_nan=False)
        return text.encode() + b"\n"

    @property
    def version(self) -> str:
        return str(self.data["version"])

    @property
    def task(self) -> str:
        return str(self.data["task"])

    @property
    def n_features(self) -> int:
        return int(self.data["n_features"])

    @property
    def feature_names(self) -> list[str] | None:
        return self.data.get("feature_names")

    @functools.cached_property
    def input_schema(self) -> InputSchema:
        """What each feature may hold (all finite numbers for a manifest
        published before schemas); IntegrityError if it is malformed."""
        return InputSchema.from_manifest(self.data)

    @property
    def runtime(self) -> str:
        """The runtime the version's primary artifact is for (older: sklearn)."""
        return str(self.data.get("runtime") or "sklearn")

    @property
    def twin(self) -> dict[str, Any] | None:
        """The verified fast twin's facts (file, runtime, parity), if published."""
        twin = self.data.get("twin")
        return twin if isinstance(twin, dict) else None

    @property
    def files(self) -> dict[str, dict[str, Any]]:
        return self.data["files"]

    def verify(self, filename: str, data: bytes) -> None:
        """Raise IntegrityError unless `data` is exactly the file the manifest lists."""
        entry = self.files.get(filename)
        if not isinstance(entry, dict) or "sha256" not in entry:
            raise IntegrityError(f"manifest of {self.version} does not list {filename}")
        refusing = "unpickle" if filename.endswith(".pkl") else "load"
        size = entry.get("bytes")
        if size != len(data):
            says = f"{size}" if type(size) is int else "an invalid size"
            raise IntegrityError(
                f"{filename} of {self.version} is {len(data)} bytes, "
                f"manifest says {says}; refusing to {refusing} it"
            )
        expected = str(entry["sha256"]).encode("utf-8", "replace")
        if not hmac.compare_digest(sha256_hex(data).encode(), expected):
            raise IntegrityError(
                f"{filename} of {self.version} does not match its SHA-256 in the "
                f"manifest; refusing to {refusing} it"
            )
