"""Publishing: artifact files, then manifest, then LATEST, each step verified.

A publish that fails half-way leaves LATEST, and every served version, untouched.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from skserve.errors import IntegrityError, ObjectNotFound, PreconditionFailed
from skserve.loader import (
    LATEST_MAX_BYTES,
    parse_pointer,
    pointer_bytes,
    read_artifact,
)
from skserve.manifest import (
    LATEST,
    MANIFEST,
    MAX_MANIFEST_BYTES,
    Manifest,
    check_version,
    new_version,
    sha256_hex,
    version_key,
)
from skserve.runtimes.sklearn import ARTIFACT, SklearnRuntime, environment
from skserve.signing import sign, verify
from skserve.storage import Store

if TYPE_CHECKING:
    from train.twin import Twin


def publish(
    store: Store,
    artifact: bytes,
    facts: dict[str, Any],
    *,
    name: str,
    promote: bool = True,
    signing_keys: Sequence[str] = (),
    twin: Twin | None = None,
) -> Manifest:
    """Write a new immutable version of model `name`, rooted at `store`.

    `artifact` is the pickle; `twin`, when given, a fast twin that passed its
    parity gate. `facts` holds the manifest fields the caller knows (task,
    estimator, ...). With `signing_keys`, the manifest (which lists every file's
    SHA-256) is signed with the first one.
    """
    now = datetime.now(UTC)
    version = new_version(now)
    files = {ARTIFACT: artifact}
    extra: dict[str, Any] = {"runtime": SklearnRuntime.name}
    if twin is not None:
        files[twin.facts["file"]] = twin.data
        extra["twin"] = twin.facts
    manifest = Manifest(
        {
            **facts,
            **extra,
            "name": name,
            "version": version,
            "created_at": now.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "files": {
                file: {"sha256": sha256_hex(data), "bytes": len(data)}
                for file, data in files.items()
            },
            "environment": environment(),
        }
    )
    if signing_keys:
        manifest = sign(manifest, signing_keys[0])
    for file, data in files.items():
        store.write(version_key(version, file), data, if_absent=True)
    store.write(version_key(version, MANIFEST), manifest.to_bytes(), if_absent=True)
    # Read all back: LATEST must never point at a version a reader cannot verify.
    written = _read_manifest(store, version)
    if written.data != manifest.data:
        raise IntegrityError(f"manifest of {version} did not read back as written")
    _verify_files(store, written)
    if promote:
        promote_version(store, version, signing_keys=signing_keys)
    return manifest


def promote_version(
    store: Store, version: str, *, signing_keys: Sequence[str] = ()
) -> str | None:
    """Point LATEST at an existing, verifiable `version`; return the previous one.

    The write is conditional on LATEST being unchanged since we read it, so two
    concurrent publishers cannot silently overwrite each other. With signing
    keys, an unsigned or mis-signed version cannot be promoted.
    """
    manifest = _read_manifest(store, check_version(version))
    if signing_keys:
        verify(manifest, signing_keys)
    _verify_files(store, manifest)
    try:
        raw, token = store.read_token(LATEST, max_bytes=LATEST_MAX_BYTES)
        previous: str | None = _version_of(raw)
    except ObjectNotFound:
        token, previous = None, None
    # Signed, LATEST names the model and the promotion time: a promotion, even
    # a rollback to an older version, is always newer than the one it replaces.
    pointer = pointer_bytes(
        version,
        name=str(manifest.data.get("name", "")),
        signing_key=signing_keys[0] if signing_keys else None,
        now=datetime.now(UTC) if signing_keys else None,
    )
    try:
        store.write(LATEST, pointer, if_absent=token is None, if_token=token)
    except PreconditionFailed:
        # A retried conditional write may find our own first attempt in place.
        now = store.read(LATEST, max_bytes=LATEST_MAX_BYTES)
        if now == pointer:
            return previous
        raise PreconditionFailed(
            f"LATEST was moved by another publisher while promoting {version}; "
            f"run `python -m train list` and promote again if still wanted"
        ) from None
    return previous


def _version_of(raw: bytes) -> str:
    """The version a LATEST names (its text, cut short, if it names none)."""
    try:
        return parse_pointer(raw).version
    except IntegrityError:
        return raw.decode("utf-8", "replace").strip()[:80]


def _verify_files(store: Store, manifest: Manifest) -> None:
    """Every file the manifest lists is in the store, byte for byte."""
    for file in manifest.files:
        manifest.verify(file, read_artifact(store, manifest, file, None))


def _read_manifest(store: Store, version: str) -> Manifest:
    raw = store.read(version_key(version, MANIFEST), max_bytes=MAX_MANIFEST_BYTES)
    return Manifest.from_bytes(raw)
