"""Rows read, split, judged and written a block at once get exactly what each
row gets alone: the same lines, records, verdicts, messages and output text."""

from __future__ import annotations

import io
import itertools
import math
import re
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import batch.io.lines
import batch.validate.check
from batch.handler import Outcomes, Refused, Scored
from batch.io import (
    EXCERPT_CHARS,
    PlainLines,
    RecordProblem,
    csv_block,
    csv_items,
    csv_lines,
    csv_records,
    first_record,
    line_runs,
    plain_records,
    readable,
    record_count,
    text_lines,
    text_stream,
)
from batch.validate import (
    CsvRows,
    Layout,
    check_lines,
    check_records,
    row_values,
    validate,
)
from skserve.errors import BadRequest, Code
from skserve.rows import Table, judge_columns, to_table
from skserve.schema import InputSchema
from tests.unit.batch.typed import TYPED_SCHEMA as TYPED

SETTINGS = settings(
    max_examples=400,
    derandomize=True,  # a failure reproduces with the same command
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
BUDGET = 300  # generated cases each property test must see run


def spec_lines(text: str, max_chars: int) -> list[str | RecordProblem]:
    """What `text_lines` must give, from the README's rules alone: lines end
    at CR, LF or CRLF; one of more than `max_chars` characters (besides its
    break) is refused with its first characters; one holding an undecodable
    byte (a lone surrogate) is refused naming it."""
    out: list[str | RecordProblem] = []
    lines = re.findall(r"[^\r\n]*(?:\r\n|\r|\n)|[^\r\n]+", text)
    for number, line in enumerate(lines, start=1):
        body = line.rstrip("\r\n")
        if len(body) > max_chars:
            shown = min(EXCERPT_CHARS, max_chars)
            out.append(
                RecordProblem(
                    f"line {number} has {len(body):,} characters, more than the "
                    f"{max_chars:,} a line may have (--max-line-chars)",
                    readable(body[:shown]) + "…",
                    "payload_too_large",
                )
            )
            continue
        bad = next((i for i, c in enumerate(line) if "\udc80" <= c <= "\udcff"), None)
        if bad is None:
            out.append(line)
            continue
        out.append(
            RecordProblem(
                f"line {number} is not UTF-8: byte 0x{ord(line[bad]) - 0xDC00:02X} "
                f"at character {bad + 1} (save the file as UTF-8)",
                readable(body),
            )
        )
    return out


# Characters that make lines hard to cut: breaks of every kind (only CR, LF
# and CRLF end a line), quotes and commas, text beyond ASCII, and undecodable
# bytes as the text stream holds them.
TEXT = st.lists(
    st.sampled_from(
        [
            "a",
            "1",
            ",",
            '"',
            "\r",
            "\n",
            "\r\n",
            "\x0b",
            "\x85",
            "\u2028",
            "é",
            "\udce9",
        ]
    ),
    max_size=60,
).map("".join)


@pytest.fixture
def small_pieces(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Read in pieces of a few characters, so lines and CRLFs straddle them."""
    monkeypatch.setattr(batch.io.lines, "_PIECE_CHARS", 3)
    monkeypatch.setattr(batch.io.lines, "_SKIP_CHARS", 2)
    yield


def test_lines_are_cut_bounded_and_checked_as_the_rules_say() -> None:
    seen = []

    @SETTINGS
    @given(TEXT, st.integers(1, 12), st.integers(1, 9), st.integers(1, 5))
    def check(text: str, max_chars: int, piece: int, skip: int) -> None:
        seen.append(text)
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(batch.io.lines, "_PIECE_CHARS", piece)
            patch.setattr(batch.io.lines, "_SKIP_CHARS", skip)
            got = list(text_lines(io.StringIO(text, newline=""), max_chars))
            runs = list(line_runs(io.StringIO(text, newline=""), max_chars))
        assert got == spec_lines(text, max_chars)
        assert all(runs) and list(itertools.chain.from_iterable(runs)) == got

    check()
    assert len(seen) >= BUDGET


def test_lines_read_from_bytes_in_any_decoder_chunks_are_the_same() -> None:
    seen = []

    @SETTINGS
    @given(TEXT, st.integers(1, 12), st.sampled_from([1, 2, 5, 8192]))
    def check(text: str, max_chars: int, chunk: int) -> None:
        seen.append(text)
        raw = io.BytesIO(text.encode("utf-8", "surrogateescape"))
        stream = text_stream(raw)
        stream._CHUNK_SIZE = chunk  # type: ignore[attr-defined]
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(batch.io.lines, "_PIECE_CHARS", 4)
            got = list(text_lines(stream, max_chars))
        assert got == spec_lines(text, max_chars)

    check()
    assert len(seen) >= BUDGET


def items_as_records(items: Iterator[Any]) -> list[tuple[int, Any]]:
    """csv_items with each run of plain lines split as csv would split it."""
    records = []
    for item in items:
        if isinstance(item, PlainLines):
            records.extend(plain_records(item.start, item.lines))
        else:
            records.append(item)
    return records


def test_csv_items_give_the_records_csv_records_gives_line_by_line() -> None:
    """Plain runs and the runs csv_records reads (quotes, problems, fields
    over many lines and runs) hand over at record boundaries only."""
    seen = []

    @SETTINGS
    @given(TEXT, st.integers(3, 30), st.integers(1, 9))
    def check(text: str, max_chars: int, piece: int) -> None:
        seen.append(text)
        expected = list(csv_records(spec_lines(text, max_chars), max_chars))
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(batch.io.lines, "_PIECE_CHARS", piece)
            stream = io.StringIO(text, newline="")
            items = list(csv_items(line_runs(stream, max_chars), max_chars))
            first, rest, _ = first_record(iter(items))
            _, _, whole = first_record(iter(items))
        assert items_as_records(iter(items)) == expected
        assert first == (expected[0] if expected else None)
        assert items_as_records(rest) == expected[1:]
        assert items_as_records(whole) == expected
        for item in items:
            if isinstance(item, PlainLines):
                counted = len(plain_records(item.start, item.lines))
                assert record_count(item.lines) == counted

    check()
    assert len(seen) >= BUDGET


def test_a_quoted_field_over_many_runs_is_one_record(small_pieces: None) -> None:
    text = 'id,x\n1,2\n"a\nb\nc",3\n4,5\n"d",6\n7,8\n'
    items = list(csv_items(line_runs(io.StringIO(text, newline=""))))
    assert items_as_records(iter(items)) == [
        (1, ["id", "x"]),
        (2, ["1", "2"]),
        (3, ["a\nb\nc", "3"]),
        (6, ["4", "5"]),
        (7, ["d", "6"]),
        (8, ["7", "8"]),
    ]
    # Runs without a quote stay plain lines around the quoted records.
    plain = [item for item in items if isinstance(item, PlainLines)]
    assert plain and plain[-1].lines[-1] == "7,8\n"


# Cells of each column, valid and not: numbers as Python reads them (spaces,
# underscores, exponents, nan, infinity), texts, empty cells.
NUMBER_CELLS = ["52.5", "", " 7 ", "1_0", "1e3", "abc", "nan", "-inf", "1e999", "+.5"]
TYPED_CELLS = {
    "income": NUMBER_CELLS,
    "age": ["40", "40.0", "40.5", "", "forty", "4e1", "-0"],
    "member": ["true", "FALSE", "", "yes", "1", " true "],
    "plan": ["basic", " basic ", "", "NA", "3", "=1+2"],
    "region": ["n", "s", "", "west", "N"],
    "tier": ["2", "7", "2.0", "", "x", "nan"],
}
TYPED_HEADER = ("tier", "id", "region", "plan", "member", "age", "income", "extra")


def alone(
    file: str, records: list[tuple[int, Any]], layout: Layout, rows: CsvRows
) -> tuple[list[int], list[tuple], list[list[Any]], list[tuple]]:
    """Each record judged alone, as `{"features": row}` would be: (accepted
    lines, their kept values, their values, the rejections as tuples)."""
    lines, kept, values, rejected = [], [], [], []
    for line, record in records:
        try:
            if isinstance(record, RecordProblem):
                raise BadRequest(record.message, code=Code(record.code))
            features, keys = rows.parse(record)
            table = validate(features, layout)
        except BadRequest as error:
            row = record.text if isinstance(record, RecordProblem) else record
            rejected.append((file, line, str(error.code), error.message, row))
            continue
        lines.append(line)
        kept.append(keys)
        values.append(row_values(table, 0, layout.schema))
    return lines, kept, values, rejected


def verdicts(
    result: tuple[Any, Table, list[Any]], layout: Layout
) -> tuple[list[int], list[tuple], list[list[Any]], list[tuple]]:
    key, table, rejected = result
    values = [row_values(table, i, layout.schema) for i in range(len(table))]
    return key.lines, key.kept, values, [tuple(r) for r in rejected]


def typed_line(choice: dict[str, str], ending: str, header: tuple[str, ...]) -> str:
    cells = [choice.get(name, f"k{len(choice)}") for name in header[:-1]]
    return ",".join([*cells, "?"]) + ending


TYPED_LINES = st.lists(
    st.one_of(
        st.fixed_dictionaries(
            {name: st.sampled_from(cells) for name, cells in TYPED_CELLS.items()}
        ).flatmap(
            lambda choice: st.sampled_from(["\n", "\r\n", "\r", ""]).map(
                lambda ending: typed_line(choice, ending, TYPED_HEADER)
            )
        ),
        st.sampled_from(["\n", "\r\n", "1,k,n\n", "1,k,n,b,true,4,5,?,wide\n"]),
    ),
    max_size=40,
)


def test_plain_typed_lines_get_the_verdicts_each_row_gets_alone() -> None:
    layout = Layout(TYPED, ("id", "absent"))
    rows = CsvRows(layout, TYPED_HEADER)
    seen = []

    @SETTINGS
    @given(TYPED_LINES)
    def check(lines: list[str]) -> None:
        seen.append(lines)
        # Only the last line of a file may lack its line break.
        lines = [line or "\n" for line in lines]
        lines = [line if line.endswith(("\n", "\r")) else line + "\n" for line in lines]
        result = check_lines("f.csv", 7, lines, layout, rows)
        expected = alone("f.csv", plain_records(7, lines), layout, rows)
        assert verdicts(result, layout) == expected
        assert len(result[1]) == len(result[0].lines)

    check()
    assert len(seen) >= BUDGET


NUMBERS = Layout(InputSchema.numeric(3, ["a", "b", "c"]), ("id",))
UNNAMED = Layout(InputSchema.numeric(3, None), ())


@pytest.mark.parametrize(
    ("layout", "header"),
    [
        (NUMBERS, ("c", "id", "a", "b")),
        (NUMBERS, None),
        (UNNAMED, ("x", "y", "z")),
        (UNNAMED, None),
    ],
    ids=["named", "named-no-header", "unnamed", "unnamed-no-header"],
)
def test_plain_numeric_lines_get_the_verdicts_each_row_gets_alone(
    layout: Layout, header: tuple[str, ...] | None
) -> None:
    rows = CsvRows(layout, header)
    width = rows.width
    seen = []

    @SETTINGS
    @given(
        st.lists(
            st.lists(st.sampled_from(NUMBER_CELLS), min_size=1, max_size=width + 1),
            max_size=30,
        )
    )
    def check(cells: list[list[str]]) -> None:
        seen.append(cells)
        lines = [",".join(row) + "\n" for row in cells]
        result = check_lines("f.csv", 2, lines, layout, rows)
        expected = alone("f.csv", plain_records(2, lines), layout, rows)
        assert verdicts(result, layout) == expected

    check()
    assert len(seen) >= BUDGET


def test_records_judged_as_a_block_get_the_verdicts_each_gets_alone() -> None:
    """check_records (a quoted file's records, problems among them) judges the
    records with all their cells a block at once, the others alone."""
    layout = Layout(TYPED, ("id",))
    rows = CsvRows(layout, TYPED_HEADER)
    problem = RecordProblem("line 3 is not UTF-8: byte 0xE9 at character 2", "a\\xe9")
    seen = []

    @SETTINGS
    @given(
        st.lists(
            st.one_of(
                st.fixed_dictionaries(
                    {n: st.sampled_from(c) for n, c in TYPED_CELLS.items()}
                ).map(lambda row: [row.get(n, "k, quoted\n") for n in TYPED_HEADER]),
                st.just(problem),
                st.just(["1", "k"]),
            ),
            max_size=30,
        )
    )
    def check(records: list[Any]) -> None:
        seen.append(records)
        numbered = [(3 * i + 2, record) for i, record in enumerate(records)]
        result = check_records("q.csv", numbered, layout, rows)
        assert verdicts(result, layout) == alone("q.csv", numbered, layout, rows)

    check()
    assert len(seen) >= BUDGET


def test_a_block_sends_only_its_failing_rows_to_be_judged_alone(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    layout = Layout(InputSchema.numeric(2, ["a", "b"]), ("id",))
    rows = CsvRows(layout, ("id", "a", "b"))
    judged_alone: list[Any] = []
    real = validate

    def counted(features: Any, layout: Layout) -> Table:
        judged_alone.append(features)
        return real(features, layout)

    monkeypatch.setattr(batch.validate.check, "validate", counted)
    lines = [f"k{i},{i},{i}.5\n" for i in range(1000)]
    lines[10] = "k10,1,x\n"
    lines[500] = "k500,nan,2\n"
    key, table, rejected = check_lines("f.csv", 2, lines, layout, rows)
    assert [features["b"] for features in judged_alone] == ["x", 2.0]
    assert math.isnan(judged_alone[1]["a"])
    assert len(key.lines) == len(table) == 998
    assert [(r.line, r.error) for r in rejected] == [
        (12, "features[1] ('b') must be a finite number, got \"x\""),
        (502, "features[0] ('a') must be a finite number, got NaN"),
    ]
    assert table.numbers[:3].tolist() == [[0.0, 0.5], [1.0, 1.5], [2.0, 2.5]]


def test_judge_columns_keeps_the_valid_rows_and_names_none() -> None:
    schema = TYPED
    columns = [
        [1.5, None, "x", 2.0],
        [40.0, 41.0, 42.0, None],
        [True, None, False, 1],
        ["basic", "plus", ["list"], "b"],
        ["n", "west", "s", None],
        [2.0, 3.0, 9.0, 1.0],
    ]
    table, ok = judge_columns(columns, 4, schema)
    assert ok.tolist() == [True, False, False, False]
    assert row_values(table, 0, schema) == [1.5, 40, True, "basic", "n", 2.0]
    whole = to_table([[c[0] for c in columns]], single=True, schema=schema)
    assert np.array_equal(whole.numbers, table.numbers)
    assert whole.objects.tolist() == table.objects.tolist()


# Values of the output's cells: texts a spreadsheet would run or split, numbers
# of every kind, booleans, nulls and kept JSON values.
VALUES = st.one_of(
    st.text(
        st.sampled_from(
            ["a", "=", "+", "-", "@", "\t", "\r", "\n", '"', ",", ";", "1", ".", "e"]
        ),
        max_size=6,
    ),
    st.integers(-(10**20), 10**20),
    st.floats(allow_nan=True, allow_infinity=True),
    st.booleans(),
    st.none(),
    st.lists(st.integers(0, 3), max_size=2),
)


def columns_of(n_rows: int) -> st.SearchStrategy[list[Any]]:
    """A column of `n_rows` values: of any kinds, or of one, as an output's
    columns mostly are (and so written a column at a time)."""
    kinds = [
        VALUES,
        st.text(st.sampled_from('ab1,=;"-'), max_size=4),
        st.integers(-5, 5),
        st.floats(allow_nan=True, allow_infinity=True),
        st.none(),
    ]
    return st.sampled_from(kinds).flatmap(
        lambda kind: st.lists(kind, min_size=n_rows, max_size=n_rows)
    )


def test_csv_block_writes_what_csv_lines_writes_row_by_row() -> None:
    seen = []

    @SETTINGS
    @given(
        st.integers(1, 6).flatmap(
            lambda n_rows: st.lists(columns_of(n_rows), min_size=1, max_size=4)
        ),
        st.sampled_from(["v1", "=v", None]),
    )
    def check(columns: list[list[Any]], last: str | None) -> None:
        seen.append(columns)
        rows = [list(row) for row in zip(*columns, strict=True)]
        full = [[*row, last] for row in rows] if last is not None else rows
        assert csv_block(columns, last=last) == csv_lines(full)

    check()
    assert len(seen) >= BUDGET


def test_outcomes_build_each_rows_scored_or_refused_only_when_asked() -> None:
    first = Outcomes([0, 1], np.array([[0.9, 0.1], [0.2, 0.8]]), None)
    refused = Outcomes.of_refusal(Refused("invalid_value", "beyond float32"))
    last = Outcomes([1], np.array([[0.4, 0.6]]), None)
    both = Outcomes.concat([first, refused, last])
    assert len(both) == 4 and both.refused == {2: refused.refused[0]}
    assert list(both) == [
        Scored(0, [0.9, 0.1]),
        Scored(1, [0.2, 0.8]),
        Refused("invalid_value", "beyond float32"),
        Scored(1, [0.4, 0.6]),
    ]
    tail = both.rows(2, 4)
    assert list(tail) == list(both)[2:] and tail.refused == {0: both[2]}
    assert both[-1] == Scored(1, [0.4, 0.6]) and both[1:3] == list(both)[1:3]
    assert tail + list(first) == [*tail, *first]
    with pytest.raises(IndexError):
        both[4]
    scores = Outcomes([1, -1], None, np.array([0.25, -0.5]))
    assert [o.values for o in scores] == [[1, 0.25], [-1, -0.5]]
