"""Reading keeps each record's line; writing quotes what CSV must quote."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest

from batch.io import (
    CsvProblem,
    boolean_cell,
    cell_reader,
    csv_line,
    csv_lines,
    csv_records,
    input_format,
    jsonl_line,
    jsonl_records,
    looks_like_header,
    number_cell,
    output_columns,
    text_cell,
    text_stream,
)
from skserve.schema import Column, InputSchema

NUMBERS = InputSchema.numeric(2, ["a", "b"])
TEXT = InputSchema(
    (Column("income", "number", nullable=True), Column("plan", "string")),
    "dataframe",
    named=True,
)


def test_csv_records_number_each_record_from_the_line_it_starts_on() -> None:
    text = 'a,b\n1,2\n\n"multi\nline",3\n4,5\n'
    records = list(csv_records(io.StringIO(text, newline="")))
    assert records == [
        (1, ["a", "b"]),
        (2, ["1", "2"]),
        (4, ["multi\nline", "3"]),
        (6, ["4", "5"]),
    ]


def test_csv_records_report_an_unsplittable_record_and_read_on() -> None:
    huge = "x" * (csv.field_size_limit() + 1)
    records = list(csv_records(io.StringIO(f"1,2\n{huge},3\n4,5\n", newline="")))
    assert records[0] == (1, ["1", "2"])
    assert records[1][0] == 2 and isinstance(records[1][1], CsvProblem)
    assert "field larger than field limit" in records[1][1].message
    assert records[1][1].text == f"{huge},3"  # the record's text, to fix it
    assert records[2] == (3, ["4", "5"])


def test_jsonl_records_skip_blank_lines_and_keep_line_numbers() -> None:
    text = '{"a": 1}\r\n\n  \n[1, 2]\n'
    assert list(jsonl_records(io.StringIO(text, newline=""))) == [
        (1, '{"a": 1}'),
        (4, "[1, 2]"),
    ]


def test_text_stream_drops_a_bom_and_replaces_undecodable_bytes() -> None:
    raw = io.BytesIO(b"\xef\xbb\xbfid,x\n1,\xff\n")
    assert list(csv_records(text_stream(raw))) == [
        (1, ["id", "x"]),
        (2, ["1", "\ufffd"]),
    ]


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("gs://b/in/part-1.csv", "csv"),
        ("s3://b/rows.JSONL", "jsonl"),
        ("/data/rows.ndjson.gz", "jsonl"),
        ("/data/rows.csv.gz", "csv"),
        ("/data/rows.txt", "csv"),
    ],
)
def test_input_format_follows_the_file_suffix(path: str, expected: str) -> None:
    assert input_format(path) == expected


def test_a_first_row_naming_every_feature_is_a_header_even_with_numbers() -> None:
    assert looks_like_header(["id", "2024", "b", "a"], NUMBERS)
    assert looks_like_header([" plan ", "7", "income"], TEXT)


def test_a_first_row_of_numbers_is_data_and_one_without_numbers_a_header() -> None:
    unnamed = InputSchema.numeric(2, None)
    assert not looks_like_header(["1.5", "2", "-3e2"], unnamed)
    assert not looks_like_header(["id", "1.5", "oops"], NUMBERS)
    assert looks_like_header(["id", "x0", "x1"], unnamed)


def test_with_text_features_a_header_is_a_first_row_naming_one_of_them() -> None:
    # A data row of a model with text features may hold no number at all.
    assert not looks_like_header(["", "basic"], TEXT)
    assert not looks_like_header(["id", "premium"], TEXT)
    assert looks_like_header(["id", "plan", "income_usd"], TEXT)


def test_number_cells_become_floats_empty_ones_missing_and_others_stay_text() -> None:
    assert number_cell("1e3") == 1000.0
    assert number_cell(" -2.5 ") == -2.5
    assert number_cell("abc") == "abc"
    assert number_cell(" x ") == " x "
    assert number_cell("") is None
    assert number_cell(" \t ") == " \t "  # only an empty cell is missing


def test_boolean_cells_are_true_or_false_in_any_case_and_nothing_else() -> None:
    assert [boolean_cell(c) for c in ("true", " FALSE ", "True", "")] == [
        True,
        False,
        True,
        None,
    ]
    assert [boolean_cell(c) for c in ("1", "0", "yes", "t")] == ["1", "0", "yes", "t"]


def test_text_cells_keep_their_spaces_and_are_missing_only_when_empty() -> None:
    assert text_cell(" basic ") == " basic "
    assert text_cell("NA") == "NA"
    assert text_cell("  ") == "  "  # as pandas reads it: text, not missing
    assert text_cell("") is None


def test_cells_are_read_by_their_columns_kind() -> None:
    def read(column: Column, cell: str) -> object:
        return cell_reader(column)(cell)

    assert read(Column("n", "number"), "3") == 3.0
    assert read(Column("n", "integer"), "3") == 3.0
    assert read(Column("b", "boolean"), "TRUE") is True
    assert read(Column("s", "string"), "3") == "3"
    assert read(Column("c", "category", categories=("a", "b")), "3") == "3"
    numeric = Column("c", "category", categories=(1, 2, 3))
    assert read(numeric, "2") == 2.0 and read(numeric, "two") == "two"
    assert read(numeric, "") is None


def test_output_columns_keep_keys_first_and_classes_in_model_order() -> None:
    assert output_columns(["id", "day"], ["setosa", "virginica"], True) == [
        "id",
        "day",
        "prediction",
        "probability_setosa",
        "probability_virginica",
        "model_version",
    ]
    assert output_columns([], [0, 1], False) == ["prediction", "model_version"]
    assert output_columns(["id"], None, False, True) == [
        "id",
        "prediction",
        "score",
        "model_version",
    ]


def test_csv_lines_quote_newlines_and_commas_and_spell_json_values() -> None:
    rows = [
        ["a,b", "multi\nline", None, True, 0.1, 3, {"k": [1]}],
        ["plain", "x", "", False, 1e-300, -1, [1, 2]],
    ]
    text = csv_lines(rows)
    assert not text.endswith("\n")
    assert list(csv.reader(io.StringIO(text, newline=""))) == [
        ["a,b", "multi\nline", "", "true", "0.1", "3", '{"k": [1]}'],
        ["plain", "x", "", "false", "1e-300", "-1", "[1, 2]"],
    ]
    assert csv_line(["only"]) == "only"


def test_jsonl_line_keeps_json_types() -> None:
    line = jsonl_line(["id", "prediction", "model_version"], [7, "setosa", "v1"])
    assert json.loads(line) == {"id": 7, "prediction": "setosa", "model_version": "v1"}


def test_text_stream_reads_beams_compressed_files(tmp_path: Path) -> None:
    import gzip

    from apache_beam.io.filesystem import CompressedFile, CompressionTypes

    path = tmp_path / "rows.csv.gz"
    path.write_bytes(gzip.compress(b'a,b\n1,"x\r\ny"\n' * 3000))
    with path.open("rb") as file:
        raw = CompressedFile(file, CompressionTypes.GZIP)
        records = list(csv_records(text_stream(raw)))
    assert len(records) == 6000
    assert records[-1] == (8999, ["1", "x\r\ny"])  # 3 lines per pair
