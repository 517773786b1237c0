"""One exception tree for the whole package; each class carries its HTTP status.

Only the HTTP layer turns these into responses; the CLI prints their message.
"""

from __future__ import annotations

from enum import StrEnum
from typing import ClassVar


class Code(StrEnum):
    """Every error code a client or the CLI can see: the API's stable slugs."""

    BAD_REQUEST = "bad_request"
    INVALID_JSON = "invalid_json"
    INVALID_REQUEST = "invalid_request"
    MISSING_INPUT = "missing_input"
    EMPTY_BATCH = "empty_batch"
    WRONG_FEATURE_COUNT = "wrong_feature_count"
    UNKNOWN_FEATURES = "unknown_features"
    MISSING_FEATURES = "missing_features"
    INVALID_VALUE = "invalid_value"
    PROBABILITIES_UNSUPPORTED = "probabilities_unsupported"
    SCORES_UNSUPPORTED = "scores_unsupported"
    UNAUTHORIZED = "unauthorized"
    ORIGIN_NOT_ALLOWED = "origin_not_allowed"
    NOT_FOUND = "not_found"
    METHOD_NOT_ALLOWED = "method_not_allowed"
    PAYLOAD_TOO_LARGE = "payload_too_large"
    TOO_MANY_ROWS = "too_many_rows"
    UNSUPPORTED_MEDIA_TYPE = "unsupported_media_type"
    INTERNAL_ERROR = "internal_error"
    CONFIGURATION_ERROR = "configuration_error"
    INVALID_ARTIFACT = "invalid_artifact"
    INVALID_DATA = "invalid_data"
    MODEL_UNAVAILABLE = "model_unavailable"
    STORE_UNAVAILABLE = "store_unavailable"
    NOT_FOUND_IN_STORE = "not_found_in_store"
    OBJECT_TOO_LARGE = "object_too_large"
    CONCURRENT_WRITE = "concurrent_write"
    INTEGRITY_ERROR = "integrity_error"
    SIGNATURE_INVALID = "signature_invalid"
    INCOMPATIBLE_MODEL = "incompatible_model"


class ServingError(Exception):
    """Base of every error this package raises on purpose."""

    status: int = 500
    code: Code = Code.INTERNAL_ERROR

    def __init__(self, message: str, *, code: Code | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code

    def headers(self) -> dict[str, str]:
        """Extra response headers this error needs (e.g. Allow, Retry-After)."""
        return {}


class BadRequest(ServingError):
    status, code = 400, Code.BAD_REQUEST


class Unauthorized(ServingError):
    status, code = 401, Code.UNAUTHORIZED

    def headers(self) -> dict[str, str]:
        return {"WWW-Authenticate": 'Bearer realm="predict"'}


class Forbidden(ServingError):
    status, code = 403, Code.ORIGIN_NOT_ALLOWED


class NotFound(ServingError):
    status, code = 404, Code.NOT_FOUND


class MethodNotAllowed(ServingError):
    status, code = 405, Code.METHOD_NOT_ALLOWED

    def __init__(self, message: str, *, allow: list[str]) -> None:
        super().__init__(message)
        self.allow = allow

    def headers(self) -> dict[str, str]:
        return {"Allow": ", ".join(self.allow)}


class PayloadTooLarge(ServingError):
    status, code = 413, Code.PAYLOAD_TOO_LARGE


class UnsupportedMediaType(ServingError):
    status, code = 415, Code.UNSUPPORTED_MEDIA_TYPE


class ConfigError(ServingError):
    """A setting (environment variable or CLI flag) has an invalid value."""

    status, code = 500, Code.CONFIGURATION_ERROR


class Unavailable(ServingError):
    """The model cannot be served right now; a later request tries again."""

    status, code = 503, Code.MODEL_UNAVAILABLE
    retry_after: int = 1
    # What a client may read, where `message` (logged) may name private places;
    # None where the message names only versions and settings.
    public: ClassVar[str | None] = (
        "the model could not be loaded; the function's log has the details"
    )

    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(self.retry_after)}

    def public_message(self) -> str:
        """What a client may read of this error."""
        return self.public or self.message


class StoreError(Unavailable):
    """The store could not be reached, or refused us (network, auth, bucket)."""

    code = Code.STORE_UNAVAILABLE
    public = "the model store cannot be read right now; the function's log says why"


class ObjectNotFound(StoreError):
    """A key the reader expected is absent from the store."""

    code = Code.NOT_FOUND_IN_STORE
    public = (
        "no model is published at the configured MODEL_URI (LATEST or a file "
        "of the promoted version is missing)"
    )


class ObjectTooLarge(StoreError):
    """An object is larger than the reader allows; it was not read whole."""

    code = Code.OBJECT_TOO_LARGE
    public = (
        "a published file is larger than this function reads (its manifest "
        "or MAX_MODEL_BYTES); the function's log names it"
    )

    def __init__(self, message: str, *, size: int | None = None) -> None:
        super().__init__(message)
        self.size = size  # bytes, when the store knows


class PreconditionFailed(StoreError):
    """A conditional write lost a race with another writer."""

    code = Code.CONCURRENT_WRITE


class IntegrityError(Unavailable):
    """Published files do not match their manifest (checksum, size, signature)."""

    code = Code.INTEGRITY_ERROR
    public = None  # its messages name versions and files, never store locations


class IncompatibleModel(Unavailable):
    """The artifact cannot be used by this runtime (not an estimator, versions)."""

    code = Code.INCOMPATIBLE_MODEL
    public = None  # its messages name versions and settings, never locations
