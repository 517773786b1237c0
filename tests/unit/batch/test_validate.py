"""Rows are judged by the HTTP API's own rules, alone, with its messages."""

from __future__ import annotations

import itertools
import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from batch.io import RecordProblem
from batch.validate import (
    CsvRows,
    Layout,
    check_records,
    header_problems,
    parse_json_row,
    row_values,
    validate,
)
from skserve.errors import BadRequest
from skserve.manifest import Manifest
from skserve.rows import Table
from skserve.schema import InputSchema
from tests.support import call, latest_version, publish_estimator
from tests.unit.batch.typed import TYPED_SCHEMA

NAMED = Layout(InputSchema.numeric(2, ["a", "b"]), ("id",))
UNNAMED = Layout(InputSchema.numeric(2, None), ("id",))
# Every kind, missing values allowed in some columns, a closed category list.
TYPED = Layout(TYPED_SCHEMA, ("id",))


def served_layout(model_dir: Path, keep: tuple[str, ...] = ()) -> Layout:
    """The layout of the version the function serves from `model_dir`."""
    version = latest_version(model_dir)
    raw = (model_dir / "versions" / version / "manifest.json").read_bytes()
    return Layout(Manifest.from_bytes(raw).input_schema, keep)


def reference(
    records: list[tuple[int, Any]], layout: Layout, rows: CsvRows
) -> tuple[list[int], list[list[Any]], list[tuple[int, str]]]:
    """Each row judged alone by parse + to_table: what the chunk must match."""
    lines, values, rejected = [], [], []
    for line, cells in records:
        try:
            table = validate(rows.parse(cells)[0], layout)
        except BadRequest as error:
            rejected.append((line, error.message))
            continue
        values.append(row_values(table, 0, layout.schema))
        lines.append(line)
    return lines, values, rejected


def table_values(table: Table, layout: Layout) -> list[list[Any]]:
    return [row_values(table, i, layout.schema) for i in range(len(table))]


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
        key, table, rejections = check_records("f.csv", chunk, layout, rows)
        lines, values, rejected = reference(chunk, layout, rows)
        assert key.lines == lines
        assert table_values(table, layout) == values
        assert [(r.line, r.error) for r in rejections] == rejected
        by_line = dict(chunk)
        assert key.kept == [(by_line[line][1],) for line in lines]


# Cells of TYPED's columns, each read by its kind: valid and invalid ones.
TYPED_CELLS = {
    "income": ["52.5", "", " 7 ", "abc", "nan"],
    "age": ["40", "40.0", "40.5", "", "forty"],
    "member": ["true", "FALSE", "", "yes", "1"],
    "plan": ["basic", " basic ", "", "NA", "3"],
    "region": ["n", "s", "", "west", "N"],
    "tier": ["2", "7", "2.0", "", "x"],
}


def test_a_typed_chunk_gets_the_same_verdicts_as_each_row_judged_alone() -> None:
    header = ("tier", "id", "region", "plan", "member", "age", "income", "extra")
    rows = CsvRows(TYPED, header)
    valid = {name: cells[:2] for name, cells in TYPED_CELLS.items()}
    # Each bad cell once in a row of valid ones, and every mix of valid cells.
    records = []
    for name, cells in TYPED_CELLS.items():
        for cell in cells:
            row = {n: valid[n][0] for n in TYPED_CELLS} | {name: cell}
            records.append(row)
    for mix in itertools.product(*valid.values()):
        records.append(dict(zip(TYPED_CELLS, mix, strict=True)))
    chunk: list[tuple[int, Any]] = [
        (i + 2, [row.get(c, f"k{i}") for c in header[:-1]] + ["?"])
        for i, row in enumerate(records)
    ]
    chunk += [(900, ["1", "k", "n"]), (901, ["1"] * 9)]
    good = [
        record
        for record in chunk
        if not reference([record], TYPED, rows)[2]  # no rejection
    ]
    assert rows.table_all("f.csv", good) is not None  # the chunk's fast path
    assert rows.table_all("f.csv", chunk) is None
    for part in (good, chunk):
        key, table, rejections = check_records("f.csv", part, TYPED, rows)
        lines, values, rejected = reference(part, TYPED, rows)
        assert key.lines == lines
        assert table_values(table, TYPED) == values
        assert [(r.line, r.error) for r in rejections] == rejected
        assert key.kept == [(dict(part)[line][1],) for line in lines]
    messages = dict(rejected)
    assert sorted(messages) == [5, 6, 9, 10, 11, 15, 16, 19, 25, 26, 30, 31, 900, 901]
    assert messages[6] == "features[0] ('income') must be a finite number, got NaN"
    assert messages[9] == "features[1] ('age') must be an integer, got 40.5"
    assert messages[10] == (
        "features[1] ('age') may not be missing: this model needs an integer "
        "there, got null"
    )
    assert messages[16] == "features[2] ('member') must be true or false, got \"1\""
    assert messages[26] == ('features[4] (\'region\') must be one of "n", "s", got "N"')
    assert messages[31] == (
        "features[5] ('tier') must be a number (one of its categories), got \"x\""
    )


def test_typed_cells_become_the_json_values_the_api_would_be_sent() -> None:
    rows = CsvRows(TYPED, ("id", "income", "age", "member", "plan", "region", "tier"))
    features, kept = rows.parse(["k", "", "40", "True", " basic ", "", "2"])
    assert kept == ("k",)
    assert features == {
        "income": None,
        "age": 40.0,
        "member": True,
        "plan": " basic ",
        "region": None,
        "tier": 2.0,
    }
    key, table, rejected = check_records(
        "f", [(2, ["k", "", "40", "True", " basic ", "", "2"])], TYPED, rows
    )
    assert rejected == [] and key.lines == [2]
    assert row_values(table, 0, TYPED.schema) == [
        None,
        40,
        True,
        " basic ",
        None,
        2.0,
    ]
    assert table.numbers.shape == (1, 3) and table.objects.shape == (1, 3)


def test_without_a_header_cells_are_read_by_the_kind_of_their_position() -> None:
    rows = CsvRows(TYPED, None)
    key, table, rejected = check_records(
        "f",
        [(1, ["", "3", "false", "x", "s", "1"]), (2, ["1", "3", "no", "x", "s", "1"])],
        TYPED,
        rows,
    )
    assert key.lines == [1] and key.kept == [(None,)]
    assert row_values(table, 0, TYPED.schema) == [None, 3, False, "x", "s", 1.0]
    assert [r.error for r in rejected] == [
        "features[2] ('member') must be true or false, got \"no\""
    ]


def test_named_header_maps_columns_in_any_order_and_ignores_extra_ones() -> None:
    layout = Layout(InputSchema.numeric(2, ["a", "b"]), ("id", "absent"))
    rows = CsvRows(layout, ("x", "b", "id", "a"))
    key, table, rejected = check_records(
        "f", [(2, ["?", "2", "k1", "1"]), (3, ["?", "4", "k2", "3"])], layout, rows
    )
    assert table.numbers.tolist() == [[1.0, 2.0], [3.0, 4.0]]
    assert key.kept == [("k1", None), ("k2", None)]
    assert rejected == []


def test_unnamed_model_takes_the_header_columns_not_kept_in_file_order() -> None:
    rows = CsvRows(UNNAMED, ("x1", "id", "x0"))
    key, table, _ = check_records("f", [(2, ["1", "k", "2"])], UNNAMED, rows)
    assert table.numbers.tolist() == [[1.0, 2.0]] and key.kept == [("k",)]


def test_rejections_carry_file_line_code_and_the_row() -> None:
    rows = CsvRows(NAMED, ("id", "a", "b"))
    records = [
        (5, ["k", "1", "x"]),
        (6, RecordProblem("cannot split this CSV line", 'k,"1\n2')),
    ]
    key, table, rejected = check_records("in.csv", records, NAMED, rows)
    assert key.lines == [] and table.numbers.shape == (0, 2)
    assert [tuple(r) for r in rejected] == [
        (
            "in.csv",
            5,
            "invalid_value",
            "features[1] ('b') must be a finite number, got \"x\"",
            ["k", "1", "x"],
        ),
        ("in.csv", 6, "invalid_request", "cannot split this CSV line", 'k,"1\n2'),
    ]
    assert json.loads(rejected[0].to_json())["line"] == 5


def test_an_empty_cell_of_a_column_that_may_not_be_missing_says_so() -> None:
    rows = CsvRows(NAMED, ("id", "a", "b"))
    _, _, rejected = check_records("f", [(2, ["k", "", "1"])], NAMED, rows)
    assert [r.error for r in rejected] == [
        "features[0] ('a') may not be missing: this model needs a finite number "
        "there, got null"
    ]


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
    layout = served_layout(served)
    features, _ = parse_json_row(text, layout)
    with pytest.raises(BadRequest) as raised:
        validate(features, layout)
    response = call(json={"features": json.loads(text)})
    assert response.status_code == 400
    assert response.get_json()["error"] == {
        "code": str(raised.value.code),
        "message": raised.value.message,
    }


@pytest.fixture
def typed_served(tmp_path: Path) -> Path:
    """The function serves a ColumnTransformer pipeline fitted on a DataFrame
    with missing numbers, text, booleans and numeric categories, published
    with the schema the trainer infers for it."""
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    from train.schema import example_row, infer_schema

    rng = np.random.default_rng(0)
    n = 60
    frame = pd.DataFrame(
        {
            "income": rng.normal(50, 10, n),
            "age": rng.integers(18, 80, n),
            "member": rng.choice([True, False], n),
            "plan": rng.choice(["basic", "premium"], n),
            "region": rng.choice(["n", "s"], n),
            "tier": pd.Categorical(rng.choice([1, 2, 3], n)),
        }
    )
    frame.loc[::7, "income"] = np.nan
    target = (frame.income.fillna(50) > 50).astype(int)
    model = make_pipeline(
        ColumnTransformer(
            [
                ("num", make_pipeline(SimpleImputer(), StandardScaler()), ["income"]),
                ("pass", "passthrough", ["age", "member"]),
                ("open", OneHotEncoder(handle_unknown="ignore"), ["plan", "tier"]),
                ("closed", OneHotEncoder(handle_unknown="error"), ["region"]),
            ]
        ),
        LogisticRegression(),
    ).fit(frame, target)
    schema = infer_schema(model, frame)
    root = tmp_path / "store" / "typed"
    publish_estimator(
        root,
        model,
        input_schema=schema.to_json(),
        example=example_row(schema, frame),
    )
    os.environ["MODEL_URI"] = str(root)
    return root


TYPED_HEADER = ("id", "income", "age", "member", "plan", "region", "tier")
TYPED_RECORDS = [
    ["ok", "52.5", "40", "true", "basic", "n", "2"],
    ["gap", "", "40", "FALSE", "premium", "s", "1"],
    ["spaces", " 61 ", "33", "True", " basic ", "n", "3"],
    ["unseen", "50", "20", "false", "gold", "s", "7"],
    ["no-age", "50", "", "true", "basic", "n", "2"],
    ["text-age", "50", "abc", "true", "basic", "n", "2"],
    ["no-plan", "50", "40", "true", "", "n", "2"],
    ["yes", "50", "40", "yes", "basic", "n", "2"],
    ["no-member", "50", "40", "", "basic", "n", "2"],
    ["west", "50", "40", "true", "basic", "west", "2"],
    ["half-tier", "50", "40", "true", "basic", "n", "2.5"],
    ["text-tier", "50", "40", "true", "basic", "n", "two"],
    ["inf", "1e999", "40", "true", "basic", "n", "2"],
    ["short", "50", "40"],
]
TYPED_JSON = [
    '{"income": null, "age": 40, "member": true, "plan": "basic", "region": "n",'
    ' "tier": 2}',
    '[1.5, 40, false, "gold", "s", 9]',
    '{"income": 1, "age": null, "member": true, "plan": "b", "region": "n", "tier": 2}',
    '{"income": 1, "age": 40, "member": 1, "plan": "b", "region": "n", "tier": 2}',
    '{"income": 1, "age": 40, "member": true, "plan": 3, "region": "n", "tier": 2}',
    '{"income": 1, "age": 40, "member": true, "plan": "b", "region": "n", "tier": "2"}',
    '{"income": "1", "age": 40, "member": true, "plan": "b", "region": "w", "tier": 2}',
    '{"income": 1, "age": 40, "plan": "b", "region": "n", "tier": 2, "z": 0}',
    '[1, 40, true, "b", "n"]',
]


def test_typed_messages_equal_the_http_apis_for_the_same_row(
    typed_served: Path,
) -> None:
    """Each CSV and JSON Lines row of a typed model is accepted exactly when
    `POST /predict` accepts `{"features": row}`, and refused with its message."""
    layout = served_layout(typed_served, ("id",))
    rows = CsvRows(layout, TYPED_HEADER)
    csv_records = [(i + 2, cells) for i, cells in enumerate(TYPED_RECORDS)]
    json_records = [(i + 1, text) for i, text in enumerate(TYPED_JSON)]
    verdicts = 0
    for records, parser in ((csv_records, rows), (json_records, None)):
        key, table, rejected = check_records("f", records, layout, parser)
        assert len(table) == len(key.lines)
        errors = {r.line: (r.code, r.error) for r in rejected}
        assert sorted([*key.lines, *errors]) == [line for line, _ in records]
        for line, record in records:
            if parser is not None:
                features = rows.parse(record)[0]
            else:
                features = parse_json_row(record, layout)[0]
            answer = call(json={"features": features})
            if line in key.lines:
                assert answer.status_code == 200, answer.get_json()
            else:
                assert answer.status_code == 400
                code, message = errors[line]
                assert answer.get_json()["error"] == {"code": code, "message": message}
            verdicts += 1
    assert verdicts == len(TYPED_RECORDS) + len(TYPED_JSON)
    csv_lines, _, csv_rejected = check_records("f", csv_records, layout, rows)
    assert [TYPED_RECORDS[line - 2][0] for line in csv_lines.lines] == [
        "ok",
        "gap",
        "spaces",
        "unseen",
    ]
    assert {r.row[0]: r.error for r in csv_rejected}["no-age"] == (
        "features[1] ('age') may not be missing: this model needs a finite number "
        "there, got null"
    )


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
            "a JSON Lines row must be an object of named values or a list of values",
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


@pytest.mark.parametrize(
    "text",
    [
        '{"a": 1, "b": 2, "id": "\\ud800"}',
        '{"a": 1, "b": 2, "id": ["x\\uDFFFy"]}',
        '{"a": 1, "b": 2, "z": {"k": "\\udc80"}}',
        '["\\ud83d", 2]',
    ],
)
def test_a_json_string_no_utf8_can_hold_rejects_the_row(text: str) -> None:
    # A lone surrogate escape decodes to no character: written to the output,
    # it would fail the whole job.
    key, _, rejected = check_records("f.jsonl", [(4, text)], NAMED, None)
    assert key.lines == []
    assert [(r.line, r.code, r.row) for r in rejected] == [(4, "invalid_json", text)]
    assert rejected[0].error.startswith("unusable JSON: a string holds \\u")
    assert "a lone surrogate, which is no character" in rejected[0].error


def test_a_json_string_with_a_surrogate_pair_is_one_character() -> None:
    _, kept = parse_json_row('{"a": 1, "b": 2, "id": "\\ud83d\\ude00"}', NAMED)
    assert kept == ("\U0001f600",)


def test_an_unreadable_line_is_rejected_with_its_excerpt_as_the_row() -> None:
    problem = RecordProblem(
        "line 9 has 9,999 characters...", "x" * 200 + "…", "payload_too_large"
    )
    for layout, rows in ((NAMED, CsvRows(NAMED, ("id", "a", "b"))), (NAMED, None)):
        key, _, rejected = check_records("f", [(9, problem)], layout, rows)
        assert key.lines == []
        assert [tuple(r) for r in rejected] == [
            ("f", 9, "payload_too_large", problem.message, problem.text)
        ]


def test_json_objects_keep_json_values_and_ignore_unknown_keys() -> None:
    features, kept = parse_json_row('{"b": 2, "a": 1, "id": [7], "z": 0}', NAMED)
    assert features == {"a": 1, "b": 2} and kept == ([7],)
    assert np.array_equal(validate(features, NAMED).numbers, [[1.0, 2.0]])
    typed, _ = parse_json_row(
        '{"tier": 1, "region": null, "plan": " x", "member": null, "age": 3,'
        ' "income": null}',
        TYPED,
    )
    assert row_values(validate(typed, TYPED), 0, TYPED.schema) == [
        None,
        3,
        None,
        " x",
        None,
        1,
    ]


def test_header_problems_name_what_is_missing() -> None:
    assert header_problems(("id", "a"), NAMED, "the header of f.csv") == [
        "the header of f.csv lacks the model's features b (expected: a, b)"
    ]
    keep_k = Layout(InputSchema.numeric(2, ["a", "b"]), ("k",))
    assert header_problems(("a", "b", "a"), keep_k, "h") == [
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
    fast, table, _ = check_records("f", [(1, ["1", "2"])], UNNAMED, rows)
    assert fast.kept == [(None,)] and table.numbers.tolist() == [[1.0, 2.0]]
    slow, table, rejected = check_records(
        "f", [(1, ["1", "2"]), (2, ["x", "2"])], UNNAMED, rows
    )
    assert slow.kept == [(None,)] and [r.line for r in rejected] == [2]


def test_a_refused_rows_values_are_json_in_the_schemas_order() -> None:
    table = validate(
        {
            "income": 1e39,
            "age": 7,
            "member": False,
            "plan": "p",
            "region": "s",
            "tier": 3,
        },
        TYPED,
    )
    assert row_values(table, 0, TYPED.schema) == [1e39, 7, False, "p", "s", 3]
    assert json.loads(json.dumps(row_values(table, 0, TYPED.schema))) == [
        1e39,
        7,
        False,
        "p",
        "s",
        3,
    ]
