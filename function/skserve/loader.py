"""Fetching one version: LATEST -> manifest -> signature -> verified files -> runtime.

Nothing downloaded is trusted until it matches the manifest, and the manifest
is not trusted until its signature does (when signing keys are configured).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from skserve.errors import (
    Code,
    IncompatibleModel,
    IntegrityError,
    ObjectNotFound,
    ObjectTooLarge,
)
from skserve.logs import clip, log
from skserve.manifest import (
    LATEST,
    MANIFEST,
    MAX_MANIFEST_BYTES,
    Manifest,
    check_version,
    version_key,
)
from skserve.runtimes import RUNTIMES, LoadOptions, Runtime, runtime_class
from skserve.schema import InputSchema
from skserve.signing import signature, verified, verify
from skserve.storage import Store

# A version id and a newline, or a signed pointer; anything longer is neither.
LATEST_MAX_BYTES = 1024


@dataclass(frozen=True)
class LoadedModel:
    """A model and the manifest it was verified against, swapped as one object."""

    manifest: Manifest
    runtime: Runtime
    # What the load read from the store (manifest and artifacts, a twin that
    # could not be used included): the load's log line reports it.
    bytes_read: int = 0

    @property
    def version(self) -> str:
        return self.manifest.version

    @property
    def schema(self) -> InputSchema:
        return self.manifest.input_schema


@dataclass(frozen=True)
class Pointer:
    """What LATEST says: the promoted version, and when it was promoted (for a
    signed pointer; None for a plain version id)."""

    version: str
    promoted_at: datetime | None = None


def pointer_bytes(
    version: str, *, name: str, signing_key: str | None, now: datetime | None
) -> bytes:
    """LATEST's content: the version id, or with a signing key a signed JSON
    object binding the version, the model's name and the promotion time (so a
    pointer can neither be forged, nor copied from another model, nor replayed
    to roll running instances back)."""
    if signing_key is None or now is None:
        return f"{check_version(version)}\n".encode()
    stamp = (
        now.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")
    )
    data = {"version": check_version(version), "name": name, "promoted_at": stamp}
    data["signature"] = signature(data, signing_key)
    return json.dumps(data, sort_keys=True).encode() + b"\n"


def parse_pointer(
    raw: bytes, *, signing_keys: Sequence[str] = (), name: str | None = None
) -> Pointer:
    """LATEST's content as a Pointer. With signing keys only a pointer signed
    by one of them for model `name` is accepted; IntegrityError otherwise."""
    text = raw.decode("utf-8", "replace").strip()
    if not text.startswith("{"):
        if signing_keys:
            raise IntegrityError(
                "LATEST is not signed, and MODEL_SIGNING_KEY requires a signed "
                "promotion; promote the version again with MODEL_SIGNING_KEY set",
                code=Code.SIGNATURE_INVALID,
            )
        return Pointer(_version_in(text))
    try:
        data = json.loads(text)
        version = _version_in(data["version"])
        promoted_at = datetime.fromisoformat(data["promoted_at"].replace("Z", "+00:00"))
        if promoted_at.tzinfo is None:
            raise ValueError("no time zone")
    except (ValueError, KeyError, TypeError, AttributeError, RecursionError):
        log("ERROR", f"LATEST is malformed: {clip(repr(text), 100)}")
        raise IntegrityError(
            "LATEST does not hold a valid model version id; promote a version "
            "with `python -m train promote`"
        ) from None
    if signing_keys:
        signed_by = verified(
            data,
            signing_keys,
            what=f"LATEST (pointing at {version})",
            fix="promote the version again with MODEL_SIGNING_KEY set",
        )
        if name is not None and data.get("name") != name:
            log(
                "ERROR",
                f"LATEST was signed for model {clip(repr(data.get('name')), 100)}",
            )
            raise IntegrityError(
                f"LATEST was signed for another model, not {name!r}",
                code=Code.SIGNATURE_INVALID,
            )
        log("INFO", f"LATEST ({version}) signed by key {signed_by}")
    return Pointer(version, promoted_at)


def read_pointer(
    store: Store, *, signing_keys: Sequence[str] = (), name: str | None = None
) -> Pointer:
    """The promoted version of the model rooted at `store` (see parse_pointer)."""
    raw = store.read(LATEST, max_bytes=LATEST_MAX_BYTES)
    return parse_pointer(raw, signing_keys=signing_keys, name=name)


def read_latest(store: Store, *, signing_keys: Sequence[str] = ()) -> str:
    """The promoted version id of the model rooted at `store`."""
    return read_pointer(store, signing_keys=signing_keys).version


def _version_in(text: Any) -> str:
    """`text` if it is a version id; IntegrityError naming no stored bytes."""
    try:
        return check_version(text if isinstance(text, str) else "")
    except IntegrityError:
        # What LATEST holds is stored bytes: the log may see some, clients none.
        log("ERROR", f"LATEST holds no version id: {clip(repr(text), 100)}")
        raise IntegrityError(
            "LATEST does not hold a valid model version id; promote a version "
            "with `python -m train promote`"
        ) from None


def read_artifact(
    store: Store, manifest: Manifest, file: str, max_model_bytes: int | None
) -> bytes:
    """One file of a version, never more bytes than its manifest lists (nor than
    MAX_MODEL_BYTES): a bigger object is refused, from its stored size when the
    store knows it, without downloading it whole."""
    entry = manifest.files.get(file)
    size = entry.get("bytes") if isinstance(entry, dict) else None
    if type(size) is not int or size < 0:
        raise IntegrityError(f"manifest of {manifest.version} lists no size for {file}")
    if max_model_bytes is not None and size > max_model_bytes:
        raise IncompatibleModel(
            f"{file} of {manifest.version} is {size} bytes, over "
            f"MAX_MODEL_BYTES={max_model_bytes}; raise the setting to serve it"
        )
    try:
        return store.read(version_key(manifest.version, file), max_bytes=size)
    except ObjectTooLarge:
        raise IntegrityError(
            f"{file} of {manifest.version} is larger than its manifest says; "
            "refusing to load it"
        ) from None


def choose_runtime(manifest: Manifest, setting: str) -> type[Runtime]:
    """The runtime to serve `manifest` with, given MODEL_RUNTIME's `setting`.

    `auto` prefers the verified twin when its runtime imports here, and falls
    back to the version's primary runtime; a named runtime must be available.
    """
    twin = manifest.twin
    twin_runtime = str(twin.get("runtime", "onnx")) if twin else None
    primary = manifest.runtime
    # Both names come from the manifest: messages name registered runtimes only.
    shown = [n if n in RUNTIMES else "an unknown runtime" for n in (primary,)]
    if twin_runtime is not None:
        shown.append(twin_runtime if twin_runtime in RUNTIMES else "an unknown twin")
    if setting == "auto":
        if twin_runtime is not None:
            try:
                return runtime_class(twin_runtime)
            except IncompatibleModel as error:
                log("INFO", f"serving {manifest.version} without its twin: {error}")
        return runtime_class(manifest.runtime)
    if setting in (manifest.runtime, twin_runtime):
        return runtime_class(setting)
    has = " and ".join(shown)
    raise IncompatibleModel(
        f"MODEL_RUNTIME={setting}, but version {manifest.version} has no {setting} "
        f"artifact (it has {has}); publish it with a twin, or serve it with "
        "MODEL_RUNTIME=auto from the full deploy profile"
    )


def fetch_model(
    store: Store,
    version: str,
    *,
    name: str | None = None,
    runtime: str = "auto",
    options: LoadOptions | None = None,
    signing_keys: Sequence[str] = (),
    max_model_bytes: int | None = None,
) -> LoadedModel:
    """Download `version`, verify its signature (when keys are set) and the
    runtime's file against its manifest, and only then build the runtime.

    `name` (the last segment of MODEL_URI) must match the manifest's, so a signed
    version of one model cannot be copied in to serve as another.
    """
    raw = store.read(version_key(version, MANIFEST), max_bytes=MAX_MANIFEST_BYTES)
    read = [len(raw)]  # bytes of every object read, for the load's log line
    manifest = Manifest.from_bytes(raw)
    if signing_keys:
        signed_by = verify(manifest, signing_keys)  # before any artifact is fetched
        log("INFO", f"manifest of {version} signed by key {signed_by}")
    if manifest.version != version:
        raise IntegrityError(f"manifest under {version} describes {manifest.version}")
    if name is not None and manifest.data.get("name") != name:
        shown = clip(repr(manifest.data.get("name")), 100)
        log("ERROR", f"version {version} was published as model {shown}")
        raise IntegrityError(
            f"version {version} was published for another model, not {name!r}"
        )
    manifest.input_schema  # noqa: B018  (a malformed schema fails the load here)
    options = options or LoadOptions()
    chosen = choose_runtime(manifest, runtime)
    try:
        return _build(store, manifest, chosen, max_model_bytes, options, read)
    except (IncompatibleModel, IntegrityError, ObjectNotFound) as error:
        if runtime != "auto" or chosen.name == manifest.runtime:
            raise
        # `auto` may serve the verified pickle when its twin cannot be used; a
        # damaged twin is still worth an operator's look.
        log("ERROR", f"twin of {version} unusable, serving its pickle: {error}")
    primary = runtime_class(manifest.runtime)
    return _build(store, manifest, primary, max_model_bytes, options, read)


def _build(
    store: Store,
    manifest: Manifest,
    chosen: type[Runtime],
    max_model_bytes: int | None,
    options: LoadOptions,
    read: list[int],
) -> LoadedModel:
    """Read and verify the runtime's file, then build the runtime from it;
    `read` gets the bytes read."""
    artifact = read_artifact(store, manifest, chosen.artifact, max_model_bytes)
    read.append(len(artifact))
    manifest.verify(chosen.artifact, artifact)  # before anything is deserialised
    runtime = chosen.load(manifest, {chosen.artifact: artifact}, options)
    return LoadedModel(manifest, runtime, bytes_read=sum(read))
