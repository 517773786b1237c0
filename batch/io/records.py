"""A record keeps the line it starts on; one that cannot be read is a RecordProblem."""

from __future__ import annotations

import csv
import itertools
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from batch.io.cells import is_number
from batch.io.lines import MAX_LINE_CHARS, RecordProblem, _excerpt, readable
from skserve.errors import Code
from skserve.schema import InputSchema

FORMATS = ("csv", "jsonl")
HEADER_MODES = ("auto", "yes", "no")
JSONL_SUFFIXES = (".jsonl", ".ndjson")
COMPRESSED_SUFFIXES = (".gz", ".bz2", ".deflate", ".zst", ".lzma")
# The lines csv reads as no record at all.
BLANK_LINES = ("\n", "\r\n", "\r")


def input_format(path: str) -> str:
    """`jsonl` for .jsonl/.ndjson files (compressed or not), else `csv`."""
    name = path.lower()
    for suffix in COMPRESSED_SUFFIXES:
        name = name.removesuffix(suffix)
    return "jsonl" if name.endswith(JSONL_SUFFIXES) else "csv"


class _Unreadable(Exception):
    """Raised through the csv reader to end a record at a line it cannot take."""

    def __init__(self, problem: RecordProblem) -> None:
        super().__init__(problem.message)
        self.problem = problem


def csv_records(
    lines: Iterable[str | RecordProblem],
    max_chars: int = MAX_LINE_CHARS,
    before: int = 0,
) -> Iterator[tuple[int, list[str] | RecordProblem]]:
    """(line number where the record starts, its cells) for each non-blank
    record of `lines` (from `text_lines`, which bounds each line), or a
    RecordProblem for one that cannot be read: a line `text_lines` refused,
    a record that csv cannot split, or one whose quoted fields carry it over
    more than `max_chars` characters. Reading goes on at the next line.
    Lines are numbered from `before` + 1."""
    source = iter(lines)
    taken: list[str] = []  # the lines the reader took for the current record
    read = before  # lines read so far (quoted fields may span lines)
    size = 0

    def feed() -> Iterator[str]:
        nonlocal read, size
        for line in source:
            read += 1
            if isinstance(line, RecordProblem):
                raise _Unreadable(line)
            taken.append(line)
            size += len(line)
            if size > max_chars and len(taken) > 1:
                raise _Unreadable(
                    RecordProblem(
                        f"the record has more than the {max_chars:,} characters a "
                        f"record may have (--max-line-chars) by line {read} (is a "
                        "quoted field never closed?)",
                        _excerpt("".join(taken), max_chars),
                        Code.PAYLOAD_TOO_LARGE,
                    )
                )
            yield line

    reader = csv.reader(feed())
    while True:
        start = read + 1
        taken.clear()
        size = 0
        try:
            cells = next(reader)
        except StopIteration:
            return
        except _Unreadable as stop:
            problem = stop.problem
            if taken and problem.code != Code.PAYLOAD_TOO_LARGE:
                # A line inside a quoted field: the record's lines before it too.
                text = "".join(taken) + problem.text
                problem = RecordProblem(problem.message, readable(text), problem.code)
            yield start, problem
            reader = csv.reader(feed())  # the stopped one cannot go on
            continue
        except csv.Error as exc:
            problem = f"cannot split this CSV line: {exc}"
            text = readable("".join(taken).rstrip("\r\n"))
            yield start, RecordProblem(problem, text)
            continue
        if cells:  # csv yields [] for a blank line: no row there
            yield start, cells


@dataclass(frozen=True)
class PlainLines:
    """Consecutive lines of a CSV file, numbered from `start`, with no quote
    in them: each is one record (csv splits it at its commas alone) or blank."""

    start: int
    lines: list[str]


# What csv_items hands on: plain lines, or one record as csv_records reads it.
CsvItem = PlainLines | tuple[int, list[str] | RecordProblem]


class _RunLines:
    """The lines of a run, then of the runs after it as they are needed,
    counting the lines handed out and the lines of the runs drawn."""

    def __init__(
        self, run: list[str | RecordProblem], runs: Iterator[list[Any]]
    ) -> None:
        self.lines = iter(run)
        self.runs = runs
        self.taken = 0
        self.drawn = len(run)

    def __iter__(self) -> _RunLines:
        return self

    def __next__(self) -> str | RecordProblem:
        while True:
            try:
                line = next(self.lines)
            except StopIteration:
                run = next(self.runs)  # none left: the lines end here
                self.lines = iter(run)
                self.drawn += len(run)
                continue
            self.taken += 1
            return line


def csv_items(
    runs: Iterable[list[str | RecordProblem]], max_chars: int = MAX_LINE_CHARS
) -> Iterator[CsvItem]:
    """The records of `runs` (from `line_runs`), as `csv_records` reads them:
    a run with no quote and no RecordProblem as PlainLines (each line a record
    or blank, split later in bulk), any other run record by record by
    `csv_records`, which goes on into the next runs while a quoted field is
    open and hands back at the first record that ends a run."""
    runs = iter(runs)
    number = 0  # the lines before the current run
    for run in runs:
        try:
            plain = '"' not in "".join(run)  # type: ignore[arg-type]
        except TypeError:  # a RecordProblem in the run
            plain = False
        if plain:
            yield PlainLines(number + 1, run)  # type: ignore[arg-type]
            number += len(run)
            continue
        source = _RunLines(run, runs)
        for record in csv_records(source, max_chars, number):
            yield record
            if source.taken == source.drawn:
                break
        number += source.taken


def plain_records(
    start: int, lines: Sequence[str]
) -> list[tuple[int, list[str] | RecordProblem]]:
    """`csv_records` of plain lines (no quote, breaks only at their ends),
    numbered from `start`: one record a line, none for a blank one."""
    records: list[tuple[int, list[str] | RecordProblem]] = []
    reader = csv.reader(lines)
    for number, line in enumerate(lines, start):
        try:
            cells = next(reader)  # the whole line, even when it fails
        except csv.Error as exc:
            text = readable(line.rstrip("\r\n"))
            records.append(
                (number, RecordProblem(f"cannot split this CSV line: {exc}", text))
            )
            continue
        if cells:
            records.append((number, cells))
    return records


def record_count(lines: Sequence[str]) -> int:
    """How many records plain lines hold: one a line, but for blank ones."""
    return len(lines) - sum(map(lines.count, BLANK_LINES))


def first_record(
    items: Iterator[CsvItem],
) -> tuple[
    tuple[int, list[str] | RecordProblem] | None, Iterator[CsvItem], Iterator[CsvItem]
]:
    """(the first record of `items` or None, the items after it, the items
    with it): the caller goes on with one of the two."""
    for item in items:
        if not isinstance(item, PlainLines):
            return item, items, itertools.chain([item], items)
        for k, line in enumerate(item.lines):
            if line in BLANK_LINES:
                continue
            (record,) = plain_records(item.start + k, [line])
            rest = PlainLines(item.start + k + 1, item.lines[k + 1 :])
            after = itertools.chain([rest] if rest.lines else [], items)
            return record, after, itertools.chain([item], items)
    return None, iter(()), iter(())


def jsonl_records(
    lines: Iterable[str | RecordProblem],
) -> Iterator[tuple[int, str | RecordProblem]]:
    """(line number, text) for each non-blank line, or the RecordProblem
    `text_lines` gave in its place."""
    for number, line in enumerate(lines, start=1):
        if isinstance(line, RecordProblem):
            yield number, line
        elif line.strip():
            yield number, line.rstrip("\r\n")


def header_columns(cells: Sequence[str]) -> tuple[str, ...]:
    """A header row's column names, without surrounding spaces."""
    return tuple(cell.strip() for cell in cells)


def looks_like_header(cells: Sequence[str], schema: InputSchema) -> bool:
    """`--header auto`: a first row is a header when it names every feature of
    the model. Otherwise, for a model with text features (whose data rows may
    hold no number), when it names any of them; for a model of numbers (or one
    without feature names), when none of its cells is a number."""
    columns = set(header_columns(cells))
    if schema.named:
        if set(schema.names) <= columns:
            return True
        if not schema.all_numeric:
            return not columns.isdisjoint(schema.names)
    return not any(is_number(cell) for cell in cells)
