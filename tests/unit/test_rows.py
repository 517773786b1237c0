"""skserve.rows: rows become a float64 matrix in the model's order, or a 400."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from skserve.errors import BadRequest
from skserve.rows import Table, from_columns, from_matrix, to_table
from skserve.schema import Column, InputSchema

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


# --- typed columns, as an input schema allows them

TYPED = InputSchema(
    (
        Column("income", "number", nullable=True),
        Column("plan", "string", categories=("basic", "premium"), unknown=False),
        Column("region", "string", nullable=True, categories=("n", "s")),
        Column("rooms", "integer"),
        Column("member", "boolean"),
        Column("size", "category", categories=(1, 2, 3), unknown=False),
    ),
    "dataframe",
    named=True,
)
ROW = [52.5, "basic", "n", 3, True, 2]


def _typed(rows: list[Any], *, single: bool = False) -> Table:
    return to_table(rows, single=single, schema=TYPED)


def _typed_refusal(rows: list[Any], *, single: bool = False) -> str:
    with pytest.raises(BadRequest) as raised:
        _typed(rows, single=single)
    assert raised.value.code == "invalid_value"
    return raised.value.message


def test_typed_rows_become_float_and_object_blocks() -> None:
    named = dict(zip(TYPED.names, [None, "premium", None, 4, False, 3], strict=True))

    table = _typed([ROW, named])

    assert len(table) == 2
    assert table.numbers.dtype == np.float64
    assert table.numbers[0].tolist() == [52.5, 3.0, 1.0]
    assert np.isnan(table.numbers[1, 0]) and table.numbers[1, 1:].tolist() == [4, 0]
    assert table.objects.tolist() == [["basic", "n", 2], ["premium", None, 3]]


def test_columns_and_matrix_put_every_value_back_in_the_schemas_order() -> None:
    table = _typed([ROW])

    assert [c[0] for c in table.columns(TYPED)] == [52.5, "basic", "n", 3.0, 1.0, 2]
    assert table.matrix(TYPED).tolist() == [[52.5, "basic", "n", 3.0, 1.0, 2]]
    assert table.matrix(TYPED).dtype == object


def test_tables_concatenate_and_slice_by_rows() -> None:
    first, second = _typed([ROW]), _typed([[1.0, "premium", "s", 1, False, 1]] * 2)

    joined = Table.concat([first, second])

    assert len(joined) == 3
    assert joined.rows(1, 3).objects.tolist() == second.objects.tolist()
    assert joined.rows(0, 1).numbers.tolist() == first.numbers.tolist()


def test_an_unknown_category_is_accepted_where_the_model_takes_them() -> None:
    table = _typed([[52.5, "basic", "east", 3, True, 2]])

    assert table.objects[0, 1] == "east"


@pytest.mark.parametrize(
    ("position", "value", "message"),
    [
        (
            1,
            "gold",
            'features[1] (\'plan\') must be one of "basic", "premium", got "gold"',
        ),
        (1, 3, "features[1] ('plan') must be a string, got 3"),
        (
            1,
            None,
            "features[1] ('plan') may not be missing: this model needs a string "
            "there, got null",
        ),
        (3, 2.5, "features[3] ('rooms') must be an integer, got 2.5"),
        (4, 1, "features[4] ('member') must be true or false, got 1"),
        (0, "52", "features[0] ('income') must be a finite number, got \"52\""),
        (0, True, "features[0] ('income') must be a finite number, got true"),
        (5, 7, "features[5] ('size') must be one of 1, 2, 3, got 7"),
        (
            5,
            "2",
            "features[5] ('size') must be a number (one of its categories), got \"2\"",
        ),
    ],
)
def test_each_value_the_schema_forbids_is_named_with_what_was_expected(
    position: int, value: Any, message: str
) -> None:
    row = list(ROW)
    row[position] = value

    assert _typed_refusal([row], single=True) == message


def test_a_whole_number_in_a_float_is_an_integer() -> None:
    row = list(ROW)
    row[3] = 4.0

    assert _typed([row]).numbers[0, 1] == 4.0


def test_the_first_bad_cell_is_named_in_row_order_across_kinds() -> None:
    rows = [list(ROW), list(ROW), list(ROW)]
    rows[1][4] = "yes"  # a later column of an earlier row comes first
    rows[2][0] = "x"

    assert _typed_refusal(rows).startswith("instances[1][4] ('member')")


def test_many_categories_are_listed_in_part_with_where_to_find_them() -> None:
    many = tuple(f"c{i}" for i in range(30))
    schema = InputSchema((Column("c", "string", categories=many, unknown=False),))

    with pytest.raises(BadRequest) as raised:
        to_table([["nope"]], single=True, schema=schema)

    assert '"c9" and 20 more (GET /metadata lists them), got "nope"' in (
        raised.value.message
    )


def test_a_float_matrix_takes_nan_as_missing_where_the_column_may_be_missing() -> None:
    schema = InputSchema((Column("a", nullable=True), Column("b")))
    where = lambda row, column: f"inputs[0] row {row}, column {column}"  # noqa: E731

    table = from_matrix(np.array([[np.nan, 1.0]]), schema, where)

    assert np.isnan(table.numbers[0, 0])
    with pytest.raises(BadRequest) as raised:
        from_matrix(np.array([[1.0, np.nan]]), schema, where)
    assert raised.value.message == (
        "inputs[0] row 0, column 1 must be a finite number, got NaN"
    )


def test_columns_of_json_values_are_judged_like_rows() -> None:
    where = lambda row, column: f"input {TYPED.names[column]!r} row {row}"  # noqa: E731
    columns = [
        [1.0, None],
        ["basic", "gold"],
        ["n", "s"],
        [1, 2],
        [True, False],
        [1, 2],
    ]

    with pytest.raises(BadRequest) as raised:
        from_columns(columns, 2, TYPED, where)

    assert raised.value.message.startswith("input 'plan' row 1 must be one of")


def test_an_unknown_category_before_a_wrong_type_is_named_first() -> None:
    rows = [list(ROW), list(ROW)]
    rows[0][1], rows[1][1] = "gold", 3

    assert _typed_refusal(rows).startswith("instances[0][1] ('plan') must be one of")


def test_a_float_matrix_holds_booleans_as_zero_or_one_only() -> None:
    schema = InputSchema((Column("flag", "boolean"),))
    where = lambda row, column: f"inputs[0] row {row}, column {column}"  # noqa: E731

    assert from_matrix(np.array([[1.0], [0.0]]), schema, where).numbers.tolist() == [
        [1.0],
        [0.0],
    ]
    with pytest.raises(BadRequest, match=r"must be true or false, got 0\.5"):
        from_matrix(np.array([[0.5]]), schema, where)


def test_an_integer_beyond_float_range_in_a_category_column_is_a_refusal() -> None:
    # JSON integers have no size limit; `math.isfinite(10**400)` raises.
    row = list(ROW)
    row[5] = 10**400
    where = lambda row, column: f"input {TYPED.names[column]!r} row {row}"  # noqa: E731
    columns: list[list[Any]] = [[value] for value in row]

    assert _typed_refusal([row], single=True).startswith(
        "features[5] ('size') must be a number (one of its categories), got 1000"
    )
    with pytest.raises(BadRequest) as raised:
        from_columns(columns, 1, TYPED, where)
    assert raised.value.message.startswith("input 'size' row 0 must be a number")


def test_a_value_nested_too_deep_to_print_is_still_a_refusal() -> None:
    nested: list[Any] = []
    for _ in range(100_000):
        nested = [nested]
    row = list(ROW)
    row[0] = nested

    assert _typed_refusal([row], single=True) == (
        "features[0] ('income') must be a finite number, got [...]"
    )
