"""Reading keeps each record's line; writing quotes what CSV must quote."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest

import batch.io.lines
from batch.io import (
    EXCERPT_CHARS,
    MAX_LINE_CHARS,
    RecordProblem,
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
    spreadsheet_text,
    text_cell,
    text_lines,
    text_stream,
)
from skserve.schema import Column, InputSchema
from tests.spreadsheet_cells import FORMULAS, NUMBER_TEXT, PLAIN_TEXT

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
    assert records[1][0] == 2 and isinstance(records[1][1], RecordProblem)
    assert "field larger than field limit" in records[1][1].message
    assert records[1][1].text == f"{huge},3"  # the record's text, to fix it
    assert records[2] == (3, ["4", "5"])


def test_jsonl_records_skip_blank_lines_and_keep_line_numbers() -> None:
    text = '{"a": 1}\r\n\n  \n[1, 2]\n'
    assert list(jsonl_records(io.StringIO(text, newline=""))) == [
        (1, '{"a": 1}'),
        (4, "[1, 2]"),
    ]


def test_text_stream_drops_a_bom_and_an_undecodable_byte_rejects_its_line() -> None:
    raw = io.BytesIO(b"\xef\xbb\xbfid,x\n1,caf\xe9\n2,ok\n")
    records = list(csv_records(text_lines(text_stream(raw))))
    assert records == [
        (1, ["id", "x"]),
        (
            2,
            RecordProblem(
                "line 2 is not UTF-8: byte 0xE9 at character 6 (save the file "
                "as UTF-8)",
                "1,caf\\xe9",
            ),
        ),
        (3, ["2", "ok"]),
    ]
    assert records[1][1].code == "invalid_request"


def test_an_undecodable_line_inside_a_quoted_field_rejects_the_whole_record() -> None:
    raw = io.BytesIO(b'id,x\n1,"two\nli\xffnes"\n3,"a\nb"\n')
    records = list(csv_records(text_lines(text_stream(raw))))
    assert records[0] == (1, ["id", "x"])
    line, problem = records[1]
    assert line == 2 and isinstance(problem, RecordProblem)
    assert problem.message.startswith("line 3 is not UTF-8: byte 0xFF")
    assert problem.text == '1,"two\nli\\xffnes"'
    # Reading goes on from the next line, numbered as before.
    assert records[2:] == [(4, ["3", "a\nb"])]


@pytest.mark.parametrize("ending", ["\n", "\r\n", "\r"])
def test_a_line_of_exactly_the_bound_is_read_and_one_more_character_is_not(
    ending: str,
) -> None:
    text = f"{'x' * 10}{ending}{'y' * 11}{ending}1\n"
    lines = list(text_lines(io.StringIO(text, newline=""), 10))
    assert lines[0] == f"{'x' * 10}{ending}" and lines[2:] == ["1\n"]
    assert isinstance(lines[1], RecordProblem)
    assert lines[1].code == "payload_too_large"
    assert lines[1].message.startswith("line 2 has 11 characters, more than the 10")


def test_the_last_line_without_a_line_break_is_bounded_too() -> None:
    assert list(text_lines(io.StringIO("1\n" + "x" * 10), 10)) == ["1\n", "x" * 10]
    last = list(text_lines(io.StringIO("1\n" + "x" * 11), 10))[1]
    assert isinstance(last, RecordProblem) and last.text == "x" * 10 + "…"


def test_a_line_beyond_the_bound_is_skipped_whole_with_a_short_excerpt() -> None:
    head = "".join(f"{i % 10}" for i in range(EXCERPT_CHARS))
    long_line = head + "z" * 100_000
    text = f"a,b\r\n{long_line}\r\n1,2\r\n"
    stream = io.StringIO(text, newline="")
    lines = list(text_lines(stream, max_chars=1000))
    assert lines[0] == "a,b\r\n" and lines[2] == "1,2\r\n" and len(lines) == 3
    problem = lines[1]
    assert isinstance(problem, RecordProblem)
    assert problem.message == (
        f"line 2 has {len(long_line):,} characters, more than the 1,000 a line "
        "may have (--max-line-chars)"
    )
    assert problem.text == head + "…"


def test_a_line_cut_between_its_cr_and_lf_leaves_no_phantom_line() -> None:
    # The bound falls between the CR and the LF of an over-long line.
    text = "x" * 11 + "\r\n" + "next\n"
    lines = list(text_lines(io.StringIO(text, newline=""), max_chars=10))
    assert isinstance(lines[0], RecordProblem)
    assert lines[1:] == ["next\n"]


@pytest.mark.parametrize("skip", [1, 2, 3, 7])
def test_line_breaks_split_between_reads_still_end_one_line(
    monkeypatch: pytest.MonkeyPatch, skip: int
) -> None:
    # Pieces of 4: a long line outgrows the bound mid-read, so its rest is skipped.
    monkeypatch.setattr(batch.io.lines, "_PIECE_CHARS", 4)
    monkeypatch.setattr(batch.io.lines, "_SKIP_CHARS", skip)  # pieces of a long line
    for n in range(11, 30):
        data = b"ab\r\n" + b"x" * n + b"\r\n" + b"yy\r\n" + b"z" * n + b"\r" + b"w\n"
        for chunk in (1, 3, 8192):  # the decoder's reads
            text = text_stream(io.BytesIO(data + b"q" * n))
            text._CHUNK_SIZE = chunk  # type: ignore[attr-defined]
            lines = list(text_lines(text, 10))
            assert [
                x if isinstance(x, str) else x.message.split()[3] for x in lines
            ] == [
                "ab\r\n",
                f"{n}",
                "yy\r\n",
                f"{n}",
                "w\n",
                f"{n}",
            ], (skip, n, chunk)


def test_reading_a_line_of_twenty_megabytes_holds_at_most_a_few_of_them() -> None:
    import tracemalloc

    size = 20_000_000
    raw = io.BytesIO(b"a,b\n" + b"9" * size + b"\n1,2\n")
    tracemalloc.start()
    try:
        records = list(csv_records(text_lines(text_stream(raw))))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert [r for _, r in records if not isinstance(r, RecordProblem)] == [
        ["a", "b"],
        ["1", "2"],
    ]
    assert records[1][0] == 2 and isinstance(records[1][1], RecordProblem)
    assert peak < 8 * MAX_LINE_CHARS < size  # the bound, not the line


def test_a_quoted_field_may_not_grow_a_record_past_the_bound_over_many_lines() -> None:
    # Each line closes a quoted field and opens another: no line is long, but
    # the record would never end.
    text = "a,b\n" + '"' + '",1,"\n' * 5000 + '"\n3,4\n'
    records = list(csv_records(io.StringIO(text, newline=""), max_chars=1000))
    assert records[0] == (1, ["a", "b"])
    line, problem = records[1]
    assert line == 2 and isinstance(problem, RecordProblem)
    assert problem.code == "payload_too_large"
    assert "more than the 1,000 characters a record may have" in problem.message
    assert len(problem.text) <= EXCERPT_CHARS + 1


def test_jsonl_records_pass_on_a_line_that_could_not_be_read() -> None:
    raw = io.BytesIO(b'{"a": 1}\n{"a": "\xc3"}\n\n[1]\n')
    records = list(jsonl_records(text_lines(text_stream(raw))))
    assert records[0] == (1, '{"a": 1}') and records[2] == (4, "[1]")
    assert records[1][0] == 2 and isinstance(records[1][1], RecordProblem)
    assert records[1][1].text == '{"a": "\\xc3"}'


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


@pytest.mark.parametrize("text", FORMULAS)
def test_text_a_spreadsheet_would_run_gets_a_leading_apostrophe(text: str) -> None:
    assert spreadsheet_text(text) == "'" + text
    written = csv_lines([[text, text]])
    assert list(csv.reader(io.StringIO(written, newline=""))) == [
        ["'" + text, "'" + text]
    ]


@pytest.mark.parametrize("text", [*NUMBER_TEXT, *PLAIN_TEXT])
def test_text_that_runs_nothing_is_written_as_it_is(text: str) -> None:
    assert spreadsheet_text(text) == text
    written = csv_lines([[text, "v1"]])
    assert list(csv.reader(io.StringIO(written, newline=""))) == [[text, "v1"]]


def test_numbers_are_written_as_numbers_whatever_their_sign() -> None:
    assert csv_lines([[-1.5, 3, -1, 1e-3, -2.5e-300, True, None]]) == (
        "-1.5,3,-1,0.001,-2.5e-300,true,"
    )


def test_a_cell_holding_a_separator_of_any_locale_is_quoted() -> None:
    # Spreadsheets in many locales split on ";" (or a tab): quoted, a cell
    # cannot start another one that begins with "=".
    written = csv_lines([["a;=1+1", "b\t=2", 'say "hi"', "x,=y"]])
    assert written == '"a;=1+1","b\t=2","say ""hi""","x,=y"'


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
