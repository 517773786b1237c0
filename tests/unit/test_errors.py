"""skserve.errors: each error carries its HTTP status, stable code, headers and
what a client may read of it."""

from __future__ import annotations

import pytest

from skserve.errors import (
    BadRequest,
    Code,
    ConfigError,
    Forbidden,
    IncompatibleModel,
    IntegrityError,
    MethodNotAllowed,
    NotFound,
    ObjectNotFound,
    ObjectTooLarge,
    PayloadTooLarge,
    PreconditionFailed,
    ServingError,
    StoreError,
    Unauthorized,
    Unavailable,
    UnsupportedMediaType,
)

# The API's error codes as clients match them (docs/http-api.md): written out,
# so renaming a slug fails here instead of silently breaking clients.
CODES = {
    "bad_request",
    "invalid_json",
    "invalid_request",
    "missing_input",
    "empty_batch",
    "wrong_feature_count",
    "unknown_features",
    "missing_features",
    "invalid_value",
    "probabilities_unsupported",
    "scores_unsupported",
    "unauthorized",
    "origin_not_allowed",
    "not_found",
    "method_not_allowed",
    "payload_too_large",
    "too_many_rows",
    "unsupported_media_type",
    "internal_error",
    "configuration_error",
    "invalid_artifact",
    "invalid_data",
    "model_unavailable",
    "store_unavailable",
    "not_found_in_store",
    "object_too_large",
    "concurrent_write",
    "integrity_error",
    "signature_invalid",
    "incompatible_model",
}


def test_codes_are_the_documented_slugs() -> None:
    assert {code.value for code in Code} == CODES
    assert len(list(Code)) == len(CODES)  # no two members share a slug
    assert Code.NOT_FOUND_IN_STORE == "not_found_in_store"  # a str where it is sent


@pytest.mark.parametrize(
    ("error", "status", "code"),
    [
        (ServingError("x"), 500, "internal_error"),
        (BadRequest("x"), 400, "bad_request"),
        (Unauthorized("x"), 401, "unauthorized"),
        (Forbidden("x"), 403, "origin_not_allowed"),
        (NotFound("x"), 404, "not_found"),
        (MethodNotAllowed("x", allow=["POST"]), 405, "method_not_allowed"),
        (PayloadTooLarge("x"), 413, "payload_too_large"),
        (UnsupportedMediaType("x"), 415, "unsupported_media_type"),
        (ConfigError("x"), 500, "configuration_error"),
        (Unavailable("x"), 503, "model_unavailable"),
        (StoreError("x"), 503, "store_unavailable"),
        (ObjectNotFound("x"), 503, "not_found_in_store"),
        (ObjectTooLarge("x"), 503, "object_too_large"),
        (PreconditionFailed("x"), 503, "concurrent_write"),
        (IntegrityError("x"), 503, "integrity_error"),
        (IncompatibleModel("x"), 503, "incompatible_model"),
    ],
    ids=lambda value: type(value).__name__ if isinstance(value, Exception) else None,
)
def test_each_error_has_its_status_and_code(
    error: ServingError, status: int, code: str
) -> None:
    assert isinstance(error, ServingError)
    assert (error.status, error.code) == (status, code)
    assert error.message == str(error) == "x"


def test_every_store_and_integrity_failure_is_a_503_the_holder_retries() -> None:
    """ModelHolder catches Unavailable: anything that stops a load must be one."""
    for cls in (StoreError, ObjectNotFound, ObjectTooLarge, PreconditionFailed):
        assert issubclass(cls, StoreError) and issubclass(cls, Unavailable)
    for cls in (IntegrityError, IncompatibleModel):
        assert issubclass(cls, Unavailable) and not issubclass(cls, StoreError)


def test_a_code_given_to_one_error_leaves_its_class_unchanged() -> None:
    signature = IntegrityError("bad signature", code=Code.SIGNATURE_INVALID)
    plain = IntegrityError("bad checksum")

    assert signature.code == "signature_invalid"
    assert (signature.status, plain.status) == (503, 503)
    assert plain.code == IntegrityError.code == "integrity_error"


def test_only_errors_that_need_headers_add_them() -> None:
    assert BadRequest("x").headers() == {}
    assert ConfigError("x").headers() == {}
    assert Unauthorized("x").headers() == {"WWW-Authenticate": 'Bearer realm="predict"'}
    assert MethodNotAllowed("x", allow=["GET", "POST"]).headers() == {
        "Allow": "GET, POST"
    }


def test_retry_after_is_one_second_unless_set_and_per_error() -> None:
    later = StoreError("down")
    later.retry_after = 8

    assert Unavailable("x").headers() == {"Retry-After": "1"}
    assert later.headers() == {"Retry-After": "8"}
    assert StoreError("down").headers() == {"Retry-After": "1"}  # class untouched


@pytest.mark.parametrize(
    ("cls", "shown"),
    [
        (Unavailable, "the model could not be loaded"),
        (StoreError, "the model store cannot be read right now"),
        (ObjectNotFound, "no model is published at the configured MODEL_URI"),
        (ObjectTooLarge, "a published file is larger than this function reads"),
        (PreconditionFailed, "the model store cannot be read right now"),
    ],
)
def test_store_errors_show_clients_a_fixed_message_not_the_location(
    cls: type[Unavailable], shown: str
) -> None:
    """Their messages name buckets and keys: those stay in the log."""
    error = cls("s3://private-bucket/prod/m/LATEST: AccessDenied")

    assert error.public_message().startswith(shown)
    assert "private-bucket" not in error.public_message()
    assert "private-bucket" in error.message  # the log keeps the detail


@pytest.mark.parametrize("cls", [IntegrityError, IncompatibleModel])
def test_integrity_and_compatibility_errors_show_clients_their_message(
    cls: type[Unavailable],
) -> None:
    """Their messages name versions, files and settings: what the caller needs."""
    message = "model.pkl of v1 is larger than its manifest says; refusing to load it"

    assert cls(message).public_message() == message


def test_object_too_large_keeps_the_size_the_store_reported() -> None:
    assert ObjectTooLarge("big", size=52_428_800).size == 52_428_800
    assert ObjectTooLarge("grew while read").size is None
