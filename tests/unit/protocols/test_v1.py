"""skserve.protocols.v1: request shapes are checked before any model is loaded."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest

from skserve.errors import BadRequest, PayloadTooLarge
from skserve.protocols.v1 import encode, parse_payload
from skserve.runtimes import Prediction


def _parse(body: Any, max_rows: int = 5) -> Any:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return parse_payload(raw, max_rows=max_rows)


def test_features_is_one_row() -> None:
    payload = _parse({"features": [1, 2]})

    assert (payload.rows, payload.single, payload.probabilities) == (
        [[1, 2]],
        True,
        False,
    )


def test_instances_is_a_batch_with_optional_probabilities() -> None:
    payload = _parse({"instances": [[1, 2], {"a": 3}], "probabilities": True})

    assert payload.rows == [[1, 2], {"a": 3}]
    assert payload.single is False and payload.probabilities is True


@pytest.mark.parametrize(
    ("body", "code", "fragment"),
    [
        (b'{"features": [1,', "invalid_json", "line 1"),
        (b'{"features": "\xff"}', "invalid_json", "UTF-8"),
        (b'{"a": 1, "a": 2}', "invalid_json", "duplicate key 'a'"),
        ([1, 2], "invalid_request", "JSON object"),
        ({}, "missing_input", '"features" (one row) or "instances"'),
        ({"features": [1], "instances": [[1]]}, "missing_input", "not both"),
        ({"features": 3}, "invalid_request", '"features" must be a list'),
        ({"instances": {"a": 1}}, "invalid_request", "list of rows"),
        ({"instances": []}, "empty_batch", "at least one row"),
        ({"instances": [[1], 2]}, "invalid_request", "instances[1]"),
        ({"features": [1], "probabilities": "yes"}, "invalid_request", "true or"),
    ],
)
def test_malformed_bodies_are_bad_requests_saying_what_to_send(
    body: Any, code: str, fragment: str
) -> None:
    with pytest.raises(BadRequest) as raised:
        _parse(body)

    assert raised.value.code == code
    assert fragment in raised.value.message


def test_rows_over_max_rows_are_payload_too_large() -> None:
    with pytest.raises(PayloadTooLarge) as raised:
        _parse({"instances": [[1]] * 6}, max_rows=5)

    assert raised.value.code == "too_many_rows"
    assert "MAX_ROWS=5" in raised.value.message


def test_rows_at_max_rows_are_accepted() -> None:
    assert len(_parse({"instances": [[1]] * 5}, max_rows=5).rows) == 5


def test_one_row_is_answered_with_the_seeds_key() -> None:
    prediction = Prediction(
        labels=np.array([1]), probabilities=np.array([[0.25, 0.75]]), classes=[0, 1]
    )

    body = encode(prediction, single=True)

    assert body == {"prediction": 1, "probabilities": [0.25, 0.75], "classes": [0, 1]}
    assert type(body["prediction"]) is int


def test_a_batch_is_answered_with_kserves_key_keeping_label_types() -> None:
    strings = encode(Prediction(labels=np.array(["no", "yes"])), single=False)
    floats = encode(Prediction(labels=np.array([1.5, 2.0])), single=False)

    assert strings == {"predictions": ["no", "yes"]}
    assert floats == {"predictions": [1.5, 2.0]}
    assert all(type(value) is float for value in floats["predictions"])
