"""skserve.rows: rows become a float64 matrix in the model's order, or a 400."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from skserve.errors import BadRequest
from skserve.rows import to_table
from skserve.schema import InputSchema

NAMES = ["rooms", "age", "area"]


def _matrix(rows: list[Any], *, single: bool = False, names: Any = None) -> np.ndarray:
    schema = InputSchema.numeric(3, names)
    return to_table(rows, single=single, schema=schema).numbers


def _refusal(rows: list[Any], **kwargs: Any) -> BadRequest:
    with pytest.raises(BadRequest) as raised:
        _matrix(rows, **kwargs)
    return raised.value


def test_positional_rows_become_a_float64_matrix() -> None:
    matrix = _matrix([[1, 2.5, -3], [0, 0.0, 10**6]])

    assert matrix.dtype == np.float64
    assert matrix.tolist() == [[1.0, 2.5, -3.0], [0.0, 0.0, 1e6]]


def test_named_rows_are_put_in_the_models_order() -> None:
    rows = [{"area": 3, "rooms": 1, "age": 2}, {"age": 5, "area": 6, "rooms": 4}]

    assert _matrix(rows, names=NAMES).tolist() == [[1, 2, 3], [4, 5, 6]]


def test_named_and_positional_rows_can_share_a_batch() -> None:
    rows = [[1, 2, 3], {"area": 6, "rooms": 4, "age": 5}]

    assert _matrix(rows, names=NAMES).tolist() == [[1, 2, 3], [4, 5, 6]]


@pytest.mark.parametrize(
    ("single", "where"), [(True, "features"), (False, "instances[0]")]
)
def test_a_wrong_count_says_expected_and_got(single: bool, where: str) -> None:
    error = _refusal([[1, 2]], single=single)

    assert error.code == "wrong_feature_count"
    assert error.message == f"{where} has 2 features, expected 3"


def test_a_batch_sent_as_one_row_hints_at_instances() -> None:
    error = _refusal([[[1, 2, 3], [4, 5, 6]]], single=True)

    assert error.message.endswith('to send several rows, use "instances"')


def test_missing_and_unknown_names_are_both_listed() -> None:
    error = _refusal([{"rooms": 1, "colour": 2, "size": 3}], names=NAMES)

    assert error.code == "unknown_features"
    assert error.message == (
        "instances[0]: missing 'age', 'area'; unknown 'colour', 'size' "
        "(expected: rooms, age, area)"
    )


def test_only_missing_names_are_a_missing_features_error() -> None:
    error = _refusal([{"rooms": 1, "age": 2}], single=True, names=NAMES)

    assert error.code == "missing_features"
    assert error.message.startswith("features: missing 'area'")


def test_an_object_for_a_model_without_names_says_to_send_a_list() -> None:
    error = _refusal([[1, 2, 3], {"a": 1}])

    assert error.code == "invalid_request"
    assert error.message.startswith("instances[1] is an object")
    assert "send a list of 3 values" in error.message


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        (True, "true"),
        ("1", '"1"'),
        (float("nan"), "NaN"),
        (float("-inf"), "-Infinity"),
        (10**400, "1" + "0" * 36 + "..."),
    ],
)
def test_the_first_value_that_is_not_a_finite_number_is_named(
    value: Any, shown: str
) -> None:
    error = _refusal([[1, 2, 3], [4, value, "later"]])

    assert error.code == "invalid_value"
    assert error.message == f"instances[1][1] must be a finite number, got {shown}"


def test_a_bad_named_value_names_its_feature() -> None:
    error = _refusal([{"rooms": 1, "age": None, "area": 3}], single=True, names=NAMES)

    assert error.message == (
        "features[1] ('age') may not be missing: this model needs a finite number "
        "there, got null"
    )
