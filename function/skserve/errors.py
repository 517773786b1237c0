"""One exception tree for the whole package; each class carries its HTTP status.

Only the HTTP layer turns these into responses; the CLI prints their message.
"""

from __future__ import annotations


class ServingError(Exception):
    """Base of every error this package raises on purpose."""

    status: int = 500
    code: str = "internal_error"

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code

    def headers(self) -> dict[str, str]:
        """Extra response headers this error needs (e.g. Allow, Retry-After)."""
        return {}


class BadRequest(ServingError):
    status, code = 400, "bad_request"


class Unauthorized(ServingError):
    status, code = 401, "unauthorized"

    def headers(self) -> dict[str, str]:
        return {"WWW-Authenticate": 'Bearer realm="predict"'}


class NotFound(ServingError):
    status, code = 404, "not_found"


class MethodNotAllowed(ServingError):
    status, code = 405, "method_not_allowed"

    def __init__(self, message: str, *, allow: list[str]) -> None:
        super().__init__(message)
        self.allow = allow

    def headers(self) -> dict[str, str]:
        return {"Allow": ", ".join(self.allow)}


class PayloadTooLarge(ServingError):
    status, code = 413, "payload_too_large"


class UnsupportedMediaType(ServingError):
    status, code = 415, "unsupported_media_type"


class ConfigError(ServingError):
    """A setting (environment variable or CLI flag) has an invalid value."""

    status, code = 500, "configuration_error"


class Unavailable(ServingError):
    """The model cannot be served right now; a later request tries again."""

    status, code = 503, "model_unavailable"
    retry_after: int = 1

    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(self.retry_after)}

    def public_message(self) -> str:
        """What a client may read; `message` (logged) may name private places."""
        return "the model could not be loaded; the function's log has the details"


class StoreError(Unavailable):
    """The store could not be reached, or refused us (network, auth, bucket)."""

    code = "store_unavailable"

    def public_message(self) -> str:
        return "the model store cannot be read right now; the function's log says why"


class ObjectNotFound(StoreError):
    """A key the reader expected is absent from the store."""

    code = "not_found_in_store"

    def public_message(self) -> str:
        return (
            "no model is published at the configured MODEL_URI (LATEST or a file "
            "of the promoted version is missing)"
        )


class PreconditionFailed(StoreError):
    """A conditional write lost a race with another writer."""

    code = "concurrent_write"


class IntegrityError(Unavailable):
    """Published files do not match their manifest (checksum, size, signature)."""

    code = "integrity_error"

    def public_message(self) -> str:
        return self.message  # names versions and files, never store locations


class IncompatibleModel(Unavailable):
    """The artifact cannot be used by this runtime (not an estimator, versions)."""

    code = "incompatible_model"

    def public_message(self) -> str:
        return self.message  # names versions, never store locations
