"""Settings read from the environment, in one place.

Every error names the variable so an operator can fix the deployment.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from skserve.errors import ConfigError, ServingError

DEFAULT_MODEL_URI = "model-store/default"
# Artifacts above this are refused before download: a 1 GiB instance must hold
# the downloaded bytes and the model built from them at once.
DEFAULT_MAX_MODEL_BYTES = 256 * 1024 * 1024


def _int(env: Mapping[str, str], name: str, default: int, minimum: int) -> int:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name} must be an integer, got {raw!r}") from None
    if value < minimum:
        raise ConfigError(f"{name} must be >= {minimum}, got {value}")
    return value


def _list(env: Mapping[str, str], name: str) -> tuple[str, ...]:
    return tuple(item.strip() for item in env.get(name, "").split(",") if item.strip())


def _keys(env: Mapping[str, str], name: str, minimum: int) -> tuple[str, ...]:
    """A comma list of secrets from `name`, or from the file named by `name`_FILE
    (how Cloud Functions and Kubernetes mount secrets)."""
    values = _list(env, name)
    path = env.get(f"{name}_FILE", "").strip()
    if path:
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError(
                f"{name}_FILE: cannot read {path}: {exc.strerror}"
            ) from None
        except UnicodeDecodeError:
            raise ConfigError(f"{name}_FILE: {path} is not UTF-8 text") from None
        values += tuple(
            v.strip() for v in text.replace("\n", ",").split(",") if v.strip()
        )
    short = [v for v in values if len(v) < minimum]
    if short:
        raise ConfigError(f"{name}: every key must be at least {minimum} characters")
    return values


def signing_keys(env: Mapping[str, str] | None = None) -> tuple[str, ...]:
    """MODEL_SIGNING_KEY or MODEL_SIGNING_KEY_FILE: the first signs, any verifies."""
    return _keys(os.environ if env is None else env, "MODEL_SIGNING_KEY", 16)


@dataclass(frozen=True)
class ModelURI:
    """MODEL_URI parsed once: `<store>/<name>` follows LATEST, `.../versions/<v>`
    pins one version."""

    uri: str
    root: str  # <store>/<name>: the model's folder, a store of its own
    name: str  # the last segment of the root, which manifests must carry
    pinned: str | None  # a version id, or None to follow LATEST

    @classmethod
    def parse(cls, uri: str) -> ModelURI:
        """Split and check `uri` without any network access; ConfigError if unusable."""
        from skserve.manifest import check_version
        from skserve.storage import open_store, split_model_uri

        root, pinned = split_model_uri(uri)
        try:
            open_store(root)  # parses the URI only; no client, no network
            if pinned is not None:
                check_version(pinned)
        except ServingError as error:
            raise ConfigError(f"MODEL_URI={uri!r}: {error.message}") from None
        return cls(uri, root, root.rstrip("/").rsplit("/", 1)[-1], pinned)


def _model_uri(env: Mapping[str, str]) -> ModelURI:
    return ModelURI.parse(env.get("MODEL_URI", "").strip() or DEFAULT_MODEL_URI)


def _runtime(env: Mapping[str, str]) -> str:
    from skserve.runtimes import RUNTIME_CHOICES

    raw = env.get("MODEL_RUNTIME", "").strip().lower() or "auto"
    if raw not in RUNTIME_CHOICES:
        raise ConfigError(
            f"MODEL_RUNTIME must be one of {', '.join(RUNTIME_CHOICES)}, got {raw!r}"
        )
    return raw


def _flag(env: Mapping[str, str], name: str) -> bool:
    raw = env.get(name, "").strip().lower()
    if raw in ("", "0", "false", "no", "off"):
        return False
    if raw in ("1", "true", "yes", "on"):
        return True
    raise ConfigError(f"{name} must be true or false, got {raw!r}")


@dataclass(frozen=True)
class Settings:
    """The function's configuration; see docs/configuration.md."""

    model_uri: ModelURI = field(
        default_factory=lambda: ModelURI.parse(DEFAULT_MODEL_URI)
    )
    runtime: str = "auto"  # see skserve.runtimes.RUNTIME_CHOICES
    refresh_seconds: int = 60
    max_body_bytes: int = 10 * 1024 * 1024
    max_rows: int = 10_000
    max_model_bytes: int = DEFAULT_MAX_MODEL_BYTES
    cors_allow_origins: tuple[str, ...] = ()  # ("*",) allows any origin
    api_keys: tuple[str, ...] = ()
    signing_keys: tuple[str, ...] = ()
    allow_version_mismatch: bool = False
    project: str = ""  # for trace ids in logs

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """Read every setting from `env` (default: os.environ), validating each."""
        env = os.environ if env is None else env
        return cls(
            model_uri=_model_uri(env),
            runtime=_runtime(env),
            refresh_seconds=_int(env, "MODEL_REFRESH_SECONDS", 60, 0),
            max_body_bytes=_int(env, "MAX_BODY_BYTES", 10 * 1024 * 1024, 1),
            max_rows=_int(env, "MAX_ROWS", 10_000, 1),
            max_model_bytes=_int(env, "MAX_MODEL_BYTES", DEFAULT_MAX_MODEL_BYTES, 1024),
            cors_allow_origins=_list(env, "CORS_ALLOW_ORIGINS"),
            api_keys=_keys(env, "API_KEYS", 16),
            signing_keys=signing_keys(env),
            allow_version_mismatch=_flag(env, "ALLOW_SKLEARN_VERSION_MISMATCH"),
            project=env.get("GOOGLE_CLOUD_PROJECT") or env.get("GCP_PROJECT") or "",
        )
