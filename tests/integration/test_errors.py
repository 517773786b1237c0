"""Every 4xx row of the DESIGN.md error table, through the function handler."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.support import SEED_FEATURES, call, publish_estimator

ROW = SEED_FEATURES


def _error(response, status: int, code: str) -> str:  # type: ignore[no-untyped-def]
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.mimetype == "application/json"
    body = response.get_json()
    assert body["error"]["code"] == code
    assert response.headers["X-Request-Id"]
    return body["error"]["message"]


def test_predict_rejects_malformed_json(served: Path) -> None:
    message = _error(
        call(data='{"features": [1,', content_type="application/json"),
        400,
        "invalid_json",
    )
    assert "line 1" in message


def test_predict_rejects_a_body_that_is_not_an_object(served: Path) -> None:
    message = _error(call(json=[1, 2, 3]), 400, "invalid_request")
    assert "JSON object" in message


@pytest.mark.parametrize(
    "body", [{}, {"rows": [ROW]}, {"features": ROW, "instances": [ROW]}]
)
def test_predict_rejects_missing_or_ambiguous_input(served: Path, body: dict) -> None:
    message = _error(call(json=body), 400, "missing_input")
    assert '"features"' in message and '"instances"' in message


def test_predict_rejects_wrong_feature_count(served: Path) -> None:
    message = _error(call(json={"features": ROW[:3]}), 400, "wrong_feature_count")
    assert "expected 10" in message and "has 3" in message


def test_predict_rejects_wrong_feature_count_naming_the_row(served: Path) -> None:
    message = _error(
        call(json={"instances": [ROW, [*ROW, 1.0]]}), 400, "wrong_feature_count"
    )
    assert "instances[1]" in message and "11" in message


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        (None, "null"),
        ("1.5", '"1.5"'),
        (True, "true"),
        ([1], "[1]"),
        ({"a": 1}, '{"a": 1}'),
    ],
)
def test_predict_rejects_non_numbers_naming_row_and_column(
    served: Path, value: object, shown: str
) -> None:
    rows = [ROW, [*ROW[:4], value, *ROW[5:]]]

    message = _error(call(json={"instances": rows}), 400, "invalid_value")

    assert "instances[1][4]" in message and shown in message


@pytest.mark.parametrize(
    "literal", ["NaN", "Infinity", "-Infinity", "1e400", "1" * 400]
)
def test_predict_rejects_non_finite_numbers(served: Path, literal: str) -> None:
    body = '{"features": [' + literal + ", 0, 0, 0, 0, 0, 0, 0, 0, 0]}"

    message = _error(
        call(data=body, content_type="application/json"), 400, "invalid_value"
    )

    assert "features[0]" in message and "finite" in message


def test_predict_rejects_probabilities_of_a_regressor(tmp_path: Path) -> None:
    from sklearn.linear_model import LinearRegression

    model = LinearRegression().fit([[0.0], [1.0]], [0.0, 1.0])
    publish_estimator(tmp_path / "reg", model)
    os.environ["MODEL_URI"] = str(tmp_path / "reg")

    message = _error(
        call(json={"features": [1.0], "probabilities": True}),
        400,
        "probabilities_unsupported",
    )
    assert "regression" in message


def test_predict_rejects_non_boolean_probabilities(served: Path) -> None:
    _error(call(json={"features": ROW, "probabilities": "yes"}), 400, "invalid_request")


def test_predict_rejects_an_empty_batch(served: Path) -> None:
    _error(call(json={"instances": []}), 400, "empty_batch")


def test_predict_rejects_named_rows_for_a_model_without_names(served: Path) -> None:
    message = _error(call(json={"features": {"a": 1}}), 400, "invalid_request")
    assert "no feature names" in message


def test_unknown_path_is_404(served: Path) -> None:
    message = _error(call("GET", "/nope"), 404, "not_found")
    assert "/predict" in message


@pytest.mark.parametrize(
    ("method", "path", "allow"),
    [
        ("GET", "/predict", "OPTIONS, POST"),
        ("PUT", "/", "OPTIONS, POST"),
        ("POST", "/health", "GET, HEAD, OPTIONS"),
        ("DELETE", "/metadata", "GET, HEAD, OPTIONS"),
    ],
)
def test_wrong_method_is_405_with_allow(
    served: Path, method: str, path: str, allow: str
) -> None:
    response = call(method, path)

    _error(response, 405, "method_not_allowed")
    assert response.headers["Allow"] == allow


def test_body_over_max_body_bytes_is_413(served: Path) -> None:
    os.environ["MAX_BODY_BYTES"] = "100"

    message = _error(call(json={"instances": [ROW] * 10}), 413, "payload_too_large")

    assert "MAX_BODY_BYTES=100" in message


def test_more_rows_than_max_rows_is_413(served: Path) -> None:
    os.environ["MAX_ROWS"] = "5"

    message = _error(call(json={"instances": [ROW] * 6}), 413, "too_many_rows")

    assert "MAX_ROWS=5" in message


def test_rows_at_max_rows_are_accepted(served: Path) -> None:
    os.environ["MAX_ROWS"] = "5"

    assert call(json={"instances": [ROW] * 5}).status_code == 200


@pytest.mark.parametrize(
    "content_type", ["text/plain", "application/x-www-form-urlencoded"]
)
def test_non_json_content_type_is_415(served: Path, content_type: str) -> None:
    message = _error(
        call(data='{"features": []}', content_type=content_type),
        415,
        "unsupported_media_type",
    )
    assert "application/json" in message


def test_body_without_content_type_is_415(served: Path) -> None:
    _error(call(data=b"\x00\x01"), 415, "unsupported_media_type")


def test_non_utf8_json_is_400(served: Path) -> None:
    _error(
        call(data=b'{"features": "\xff"}', content_type="application/json"),
        400,
        "invalid_json",
    )


def test_finite_values_the_model_cannot_take_are_400_not_500(served: Path) -> None:
    """1e39 is a finite float64 but overflows the forest's float32."""
    message = _error(call(json={"features": [1e39, *ROW[1:]]}), 400, "invalid_value")
    assert "cannot use these values" in message


def test_non_finite_model_output_is_400_not_500(tmp_path: Path) -> None:
    from sklearn.linear_model import LinearRegression

    # A slope of 1e10, fitted on ordinary numbers: 1e300 then predicts 1e310.
    model = LinearRegression().fit([[0.0], [1.0]], [0.0, 1e10])
    publish_estimator(tmp_path / "reg", model)
    os.environ["MODEL_URI"] = str(tmp_path / "reg")

    message = _error(call(json={"features": [1e300]}), 400, "invalid_value")

    assert "not a finite number" in message


def test_integer_beyond_pythons_digit_limit_is_400(served: Path) -> None:
    body = '{"features": [' + "9" * 5000 + "]}"

    _error(call(data=body, content_type="application/json"), 400, "invalid_json")


def test_duplicate_keys_are_400(served: Path) -> None:
    body = '{"features": [1], "features": [2]}'

    message = _error(
        call(data=body, content_type="application/json"), 400, "invalid_json"
    )

    assert "duplicate key 'features'" in message


def test_a_batch_sent_as_features_gets_a_hint(served: Path) -> None:
    message = _error(call(json={"features": [ROW]}), 400, "wrong_feature_count")

    assert '"instances"' in message


def test_long_values_are_shown_truncated(served: Path) -> None:
    body = '{"features": [' + "1" * 400 + ", 0, 0, 0, 0, 0, 0, 0, 0, 0]}"

    message = _error(
        call(data=body, content_type="application/json"), 400, "invalid_value"
    )

    assert "..." in message and len(message) < 120


def test_store_errors_do_not_tell_clients_where_the_store_is(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    secret = tmp_path / "srv-secret-internal" / "prod"
    os.environ["MODEL_URI"] = str(secret)

    message = _error(call(json={"features": ROW}), 503, "not_found_in_store")

    assert "srv-secret-internal" not in message and "MODEL_URI" in message
    assert "srv-secret-internal" in capsys.readouterr().out  # the log has it


def test_unsupported_model_uri_is_a_configuration_error_naming_it(
    capsys: pytest.CaptureFixture[str],
) -> None:
    os.environ["MODEL_URI"] = "http://bucket/models/m"

    response = call(json={"features": ROW})

    assert response.status_code == 500
    assert response.get_json()["error"]["code"] == "configuration_error"
    assert "MODEL_URI='http://bucket/models/m'" in capsys.readouterr().out
