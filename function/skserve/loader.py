"""Fetching one version: LATEST -> manifest -> signature -> verified files -> unpickle.

Nothing downloaded is trusted until it matches the manifest, and the manifest
is not trusted until its signature does (when signing keys are configured).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from skserve.errors import IntegrityError
from skserve.logs import log
from skserve.manifest import (
    ARTIFACT,
    LATEST,
    MANIFEST,
    Manifest,
    check_version,
    version_key,
)
from skserve.runtime import SklearnRuntime
from skserve.signing import verify
from skserve.storage import Store


@dataclass(frozen=True)
class LoadedModel:
    """A model and the manifest it was verified against, swapped as one object."""

    manifest: Manifest
    runtime: SklearnRuntime

    @property
    def version(self) -> str:
        return self.manifest.version


def read_latest(store: Store) -> str:
    """The promoted version id of the model rooted at `store`."""
    return check_version(store.read(LATEST).decode("utf-8", "replace").strip())


def fetch_model(
    store: Store,
    version: str,
    *,
    name: str | None = None,
    allow_version_mismatch: bool = False,
    signing_keys: Sequence[str] = (),
) -> LoadedModel:
    """Download `version`, verify its signature (when keys are set) and every file
    against its manifest, and only then unpickle.

    `name` (the last segment of MODEL_URI) must match the manifest's, so a signed
    version of one model cannot be copied in to serve as another.
    """
    manifest = Manifest.from_bytes(store.read(version_key(version, MANIFEST)))
    if signing_keys:
        signed_by = verify(manifest, signing_keys)  # before the artifact is fetched
        log("INFO", f"manifest of {version} signed by key {signed_by}")
    if manifest.version != version:
        raise IntegrityError(f"manifest under {version} describes {manifest.version}")
    if name is not None and manifest.data.get("name") != name:
        raise IntegrityError(
            f"version {version} belongs to model {manifest.data.get('name')!r}, "
            f"not {name!r}"
        )
    artifact = store.read(version_key(version, ARTIFACT))
    manifest.verify(ARTIFACT, artifact)  # before anything is unpickled
    runtime = SklearnRuntime.load(
        manifest, artifact, allow_version_mismatch=allow_version_mismatch
    )
    return LoadedModel(manifest, runtime)
