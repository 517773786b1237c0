"""Rows are judged by the HTTP API's own rules, alone, with its messages."""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from batch.io import CsvProblem
from batch.validate import (
    CsvRows,
    Layout,
    check_records,
    header_problems,
    parse_json_row,
    validate,
)
from skserve.errors import BadRequest
from tests.support import call

NAMED = Layout(2, ["a", "b"], ("id",))
UNNAMED = Layout(2, None, ("id",))


def reference(
    records: list[tuple[int, Any]], layout: Layout, rows: CsvRows
) -> tuple[list[int], list[list[float]], list[tuple[int, str]]]:
    """Each row judged alone by parse + to_matrix: what the fast path must match."""
    lines, vectors, rejected = [], [], []
    for line, cells in records:
        try:
            vectors.append(validate(rows.parse(cells)[0], layout).tolist())
            lines.append(line)
        except BadRequest as error:
            rejected.append((line, error.message))
    return lines, vectors, rejected


CELLS = ["1.5", "-2", " 3 ", "1e3", "nan", "inf", "1e999", "abc", "", "1_0", "0x1"]


@pytest.mark.parametrize("layout", [NAMED, UNNAMED], ids=["named", "unnamed"])
def test_a_chunk_gets_the_same_verdicts_as_each_row_judged_alone(
    layout: Layout,
) -> None:
    columns = ("b", "id", "a")
    rows = CsvRows(layout, columns)
    pairs = list(itertools.product(CELLS, repeat=2))
    records = [(i + 2, [b, f"k{i}", a]) for i, (a, b) in enumerate(pairs)]
    records += [(900, ["1", "short"]), (901, ["1", "k", "2", "extra"])]
    for chunk in (records, [r for r in records if r[1][0] == "1.5"][:5]):
        key, matrix, rejections = check_records("f.csv", chunk, layout, rows)
        lines, vectors, rejected = reference(chunk, layout, rows)
        assert key.lines == lines
        assert matrix.tolist() == vectors
        assert [(r.line, r.error) for r in rejections] == rejected
        by_line = dict(chunk)
        assert key.kept == [(by_line[line][1],) for line in lines]


def test_named_header_maps_columns_in_any_order_and_ignores_extra_ones() -> None:
    rows = CsvRows(Layout(2, ["a", "b"], ("id", "absent")), ("x", "b", "id", "a"))
    key, matrix, rejected = check_records(
        "f", [(2, ["?", "2", "k1", "1"]), (3, ["?", "4", "k2", "3"])], rows.layout, rows
    )
    assert matrix.tolist() == [[1.0, 2.0], [3.0, 4.0]]
    assert key.kept == [("k1", None), ("k2", None)]
    assert rejected == []


def test_unnamed_model_takes_the_header_columns_not_kept_in_file_order() -> None:
    rows = CsvRows(UNNAMED, ("x1", "id", "x0"))
    key, matrix, _ = check_records("f", [(2, ["1", "k", "2"])], UNNAMED, rows)
    assert matrix.tolist() == [[1.0, 2.0]] and key.kept == [("k",)]


def test_rejections_carry_file_line_code_and_the_row() -> None:
    rows = CsvRows(NAMED, ("id", "a", "b"))
    records = [(5, ["k", "1", "x"]), (6, CsvProblem("cannot split this CSV line"))]
    key, matrix, rejected = check_records("in.csv", records, NAMED, rows)
    assert key.lines == [] and matrix.shape == (0, 2)
    assert [tuple(r) for r in rejected] == [
        (
            "in.csv",
            5,
            "invalid_value",
            "features[1] ('b') must be a finite number, got \"x\"",
            ["k", "1", "x"],
        ),
        ("in.csv", 6, "invalid_request", "cannot split this CSV line", None),
    ]
    assert json.loads(rejected[0].to_json())["line"] == 5


JSON_ROWS = [
    "[1, 2, 3]",
    '[1, 2, 3, 4, 5, 6, 7, 8, 9, "x"]',
    "[1, 2, 3, 4, 5, 6, 7, 8, 9, null]",
    "[1, 2, 3, 4, 5, 6, 7, 8, 9, true]",
    "[1, 2, 3, 4, 5, 6, 7, 8, 9, 1e400]",
    '{"a": 1}',
    "[[1, 2, 3, 4, 5, 6, 7, 8, 9, 10]]",
]


@pytest.mark.parametrize("text", JSON_ROWS)
def test_messages_equal_the_http_apis_for_the_same_row(served: Path, text: str) -> None:
    """The function answers `{"features": row}` with the message the dead-letter
    output gives the same row."""
    layout = Layout(10, None)
    features, _ = parse_json_row(text, layout)
    with pytest.raises(BadRequest) as raised:
        validate(features, layout)
    response = call(json={"features": json.loads(text)})
    assert response.status_code == 400
    assert response.get_json()["error"] == {
        "code": str(raised.value.code),
        "message": raised.value.message,
    }


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "{oops",
            "malformed JSON: Expecting property name enclosed in double "
            "quotes (column 2)",
        ),
        (
            '"row"',
            "a JSON Lines row must be an object of named numbers or a list of numbers",
        ),
    ],
)
def test_json_lines_that_are_no_row_are_refused_clearly(
    text: str, message: str
) -> None:
    with pytest.raises(
        BadRequest, match="^" + message.replace("(", r"\(").replace(")", r"\)") + "$"
    ):
        parse_json_row(text, NAMED)


def test_json_objects_keep_json_values_and_ignore_unknown_keys() -> None:
    features, kept = parse_json_row('{"b": 2, "a": 1, "id": [7], "z": 0}', NAMED)
    assert features == {"a": 1, "b": 2} and kept == ([7],)
    assert np.array_equal(validate(features, NAMED), [1.0, 2.0])


def test_header_problems_name_what_is_missing() -> None:
    assert header_problems(("id", "a"), NAMED, "the header of f.csv") == [
        "the header of f.csv lacks the model's features b (expected: a, b)"
    ]
    assert header_problems(("a", "b", "a"), Layout(2, ["a", "b"], ("k",)), "h") == [
        "h repeats the columns a",
        "--keep names columns that h lacks: k",
    ]
    assert header_problems(("id", "x", "y", "z"), UNNAMED, "h") == [
        "the model has no feature names, so its 2 features are the columns not "
        "named by --keep; h has 3 such columns"
    ]
    assert header_problems(("y", "id", "x"), UNNAMED, "h") == []


def test_a_file_without_a_header_passes_none_for_each_kept_column() -> None:
    rows = CsvRows(UNNAMED, None)
    fast, matrix, _ = check_records("f", [(1, ["1", "2"])], UNNAMED, rows)
    assert fast.kept == [(None,)] and matrix.tolist() == [[1.0, 2.0]]
    slow, matrix, rejected = check_records(
        "f", [(1, ["1", "2"]), (2, ["x", "2"])], UNNAMED, rows
    )
    assert slow.kept == [(None,)] and [r.line for r in rejected] == [2]
