"""Fetching one version: LATEST -> manifest -> signature -> verified files -> runtime.

Nothing downloaded is trusted until it matches the manifest, and the manifest
is not trusted until its signature does (when signing keys are configured).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from skserve.errors import (
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
from skserve.signing import verify
from skserve.storage import Store

LATEST_MAX_BYTES = 1024  # a version id and a newline; anything longer is not one


@dataclass(frozen=True)
class LoadedModel:
    """A model and the manifest it was verified against, swapped as one object."""

    manifest: Manifest
    runtime: Runtime

    @property
    def version(self) -> str:
        return self.manifest.version

    @property
    def schema(self) -> InputSchema:
        return self.manifest.input_schema


def read_latest(store: Store) -> str:
    """The promoted version id of the model rooted at `store`."""
    text = store.read(LATEST, max_bytes=LATEST_MAX_BYTES)
    text = text.decode("utf-8", "replace").strip()
    try:
        return check_version(text)
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
    manifest = Manifest.from_bytes(
        store.read(version_key(version, MANIFEST), max_bytes=MAX_MANIFEST_BYTES)
    )
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
        return _build(store, manifest, chosen, max_model_bytes, options)
    except (IncompatibleModel, IntegrityError, ObjectNotFound) as error:
        if runtime != "auto" or chosen.name == manifest.runtime:
            raise
        # `auto` may serve the verified pickle when its twin cannot be used; a
        # damaged twin is still worth an operator's look.
        log("ERROR", f"twin of {version} unusable, serving its pickle: {error}")
    primary = runtime_class(manifest.runtime)
    return _build(store, manifest, primary, max_model_bytes, options)


def _build(
    store: Store,
    manifest: Manifest,
    chosen: type[Runtime],
    max_model_bytes: int | None,
    options: LoadOptions,
) -> LoadedModel:
    """Read and verify the runtime's file, then build the runtime from it."""
    artifact = read_artifact(store, manifest, chosen.artifact, max_model_bytes)
    manifest.verify(chosen.artifact, artifact)  # before anything is deserialised
    return LoadedModel(
        manifest, chosen.load(manifest, {chosen.artifact: artifact}, options)
    )
