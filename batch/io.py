"""Input records keep their file and line; output rows keep the user's key columns."""

# Pure functions over text streams and values, so parsing is tested without Beam.

from __future__ import annotations

import csv
import io
import itertools
import json
import math
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import IO, Any

from skserve.errors import Code
from skserve.schema import BOOLEAN, CATEGORY, Column, InputSchema

FORMATS = ("csv", "jsonl")
HEADER_MODES = ("auto", "yes", "no")
JSONL_SUFFIXES = (".jsonl", ".ndjson")
COMPRESSED_SUFFIXES = (".gz", ".bz2", ".deflate", ".zst", ".lzma")
# Columns the output writes itself; a kept column may not reuse their names.
PREDICTION = "prediction"
MODEL_VERSION = "model_version"
PROBABILITY = "probability_"
SCORE = "score"
# A CSV cell's text -> the JSON value the API would be sent for it.
CellReader = Callable[[str], Any]
# The most characters an input line may hold (besides its line break), and a
# CSV record over the lines a quoted field spans: a longer one is rejected
# while it is read, so no line, however long, is held in memory whole.
MAX_LINE_CHARS = 1 << 20
# How much of a rejected over-long line its dead letter shows.
EXCERPT_CHARS = 200
# Characters read at a time while skipping the rest of an over-long line.
_SKIP_CHARS = 1 << 16
# Characters read at a time: each piece is split into lines, checked and
# handed on in one call each, so a line costs no Python call of its own.
_PIECE_CHARS = 1 << 16
# str.splitlines also ends a line at these; a line here ends at CR, LF or CRLF
# only (as a text stream with newline="" reads it).
_OTHER_BREAKS = re.compile("[\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029]")
_LINES = re.compile(r"[^\r\n]*(?:\r\n|\r|\n)|[^\r\n]+")
# The lines csv reads as no record at all.
BLANK_LINES = ("\n", "\r\n", "\r")
# OWASP's CSV injection guidance (and ASVS 1.2.10, which adds NUL): a
# spreadsheet runs a cell that starts with one of these.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r", "\0")
# A number written in decimal notation: a spreadsheet reads it as that number,
# which runs nothing. ASCII digits only, as spreadsheets read them.
_NUMBER = re.compile(r"[-+]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][-+]?[0-9]+)?")
# A cell holding one of these is quoted: RFC 4180's comma, quote and line
# breaks, and the separators of other locales (";", tab), so that no
# spreadsheet splits a cell into one that starts with a formula.
_QUOTED = re.compile(r'[",;\t\r\n]')


@dataclass(frozen=True)
class RecordProblem:
    """A line or record that cannot be read as a row (too long, not UTF-8, not
    splittable as CSV), and what to show of it, to fix and replay."""

    message: str
    text: str = ""
    code: str = Code.INVALID_REQUEST


def input_format(path: str) -> str:
    """`jsonl` for .jsonl/.ndjson files (compressed or not), else `csv`."""
    name = path.lower()
    for suffix in COMPRESSED_SUFFIXES:
        name = name.removesuffix(suffix)
    return "jsonl" if name.endswith(JSONL_SUFFIXES) else "csv"


class _RawReader(io.RawIOBase):
    """Any object with read(n) as the raw stream TextIOWrapper needs (Beam's
    CompressedFile, for .gz and other compressed inputs, is not one)."""

    def __init__(self, source: Any) -> None:
        self.source = source

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        data = self.source.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)


def text_stream(raw: Any) -> IO[str]:
    """UTF-8 text over a binary stream; a BOM is dropped, and an undecodable
    byte becomes a lone surrogate (U+DC80-U+DCFF), which `text_lines` finds,
    so the line it is in is rejected, not the whole file."""
    if not isinstance(raw, io.IOBase):
        raw = io.BufferedReader(_RawReader(raw))
    return io.TextIOWrapper(
        raw, encoding="utf-8-sig", errors="surrogateescape", newline=""
    )


def readable(text: str) -> str:
    """`text` with each undecodable byte shown as \\xNN, for messages and
    dead letters (which must be UTF-8 themselves)."""
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def _excerpt(text: str, limit: int) -> str:
    shown = min(EXCERPT_CHARS, limit)
    return readable(text[:shown]) + ("…" if len(text) > shown else "")


def _break_length(line: str) -> int:
    """How many characters of `line` are its line break (0, 1 or 2)."""
    if line.endswith("\r\n"):
        return 2
    return 1 if line.endswith(("\n", "\r")) else 0


def text_lines(
    text: IO[str], max_chars: int = MAX_LINE_CHARS
) -> Iterator[str | RecordProblem]:
    """Each line of `text` with its line break (CR, LF or CRLF), or, in its
    place, a RecordProblem for a line of more than `max_chars` characters
    (read in pieces and dropped, never held whole) or one that is not UTF-8."""
    return itertools.chain.from_iterable(line_runs(text, max_chars))


def line_runs(
    text: IO[str], max_chars: int = MAX_LINE_CHARS
) -> Iterator[list[str | RecordProblem]]:
    """`text_lines` a run at a time: the lines of each piece of `text` read,
    in order, as one list (never empty)."""
    limit = max_chars + 2  # the line and a CRLF
    read = text.read
    number = 0  # lines handed on so far
    carry = ""  # the start of a line whose end is not read yet
    while True:
        piece = read(_PIECE_CHARS)
        if not piece:
            if carry:
                yield [_checked(carry, number + 1, max_chars)]
            return
        data = carry + piece if carry else piece
        if carry[-1:] not in ("", "\r") and "\n" not in piece and "\r" not in piece:
            lines = []  # the carried line goes on
            carry = data
        else:
            lines = _split_lines(data)
            carry = lines.pop()
            if carry.endswith("\n"):
                lines.append(carry)
                carry = ""
            # else no line break yet, or a CR that an LF may follow.
        if lines:
            if max(map(len, lines)) > max_chars or not _is_utf8(data):
                lines = [
                    _checked(line, number + i, max_chars)
                    for i, line in enumerate(lines, start=1)
                ]
            number += len(lines)
            yield lines
        if len(carry) - _break_length(carry) > max_chars:
            # Over the bound: count the rest of the line while dropping it.
            number += 1
            problem, carry = _skip_line(text, carry, number, max_chars, limit)
            yield [problem]


def _split_lines(data: str) -> list[str]:
    """`data` cut after each CR, LF or CRLF, line breaks kept; the last piece
    may have none."""
    if _OTHER_BREAKS.search(data) is None:
        return data.splitlines(True)
    return _LINES.findall(data)


def _is_utf8(text: str) -> bool:
    """Whether `text` holds no lone surrogate (an undecodable byte)."""
    if text.isascii():
        return True
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _checked(line: str, number: int, max_chars: int) -> str | RecordProblem:
    """The line, or the RecordProblem that replaces it (too long, not UTF-8)."""
    size = len(line) - _break_length(line)
    if size > max_chars:
        return _too_long(number, size, line[: max_chars + 2], max_chars)
    return _utf8_line(line, number)


def _too_long(number: int, size: int, head: str, max_chars: int) -> RecordProblem:
    return RecordProblem(
        f"line {number} has {size:,} characters, more than the {max_chars:,} "
        "a line may have (--max-line-chars)",
        _excerpt(head.rstrip("\r\n"), max_chars),
        Code.PAYLOAD_TOO_LARGE,
    )


def _skip_line(
    text: IO[str], head: str, number: int, max_chars: int, limit: int
) -> tuple[RecordProblem, str]:
    """(the problem of an over-long line whose first characters, `head`, were
    read, what was read after it). The rest of the line is read in pieces and
    dropped."""
    size = len(head) - _break_length(head)
    last, piece = head, len(head)
    while not _break_length(last):
        last = text.readline(_SKIP_CHARS)
        if not last:
            break
        size += len(last) - _break_length(last)
        piece = _SKIP_CHARS
    after = ""
    if last.endswith("\r") and len(last) == piece:
        # The read stopped at a CR: an LF after it ends this line too.
        after = text.read(1)
        if after == "\n":
            after = ""
    return _too_long(number, size, head[:limit], max_chars), after


def _utf8_line(line: str, number: int) -> str | RecordProblem:
    """The line, or a RecordProblem naming its first byte that is not UTF-8."""
    if line.isascii():
        return line
    try:
        line.encode("utf-8")
    except UnicodeEncodeError as exc:  # a lone surrogate: an undecodable byte
        byte = ord(line[exc.start]) - 0xDC00
        return RecordProblem(
            f"line {number} is not UTF-8: byte 0x{byte:02X} at character "
            f"{exc.start + 1} (save the file as UTF-8)",
            readable(line.rstrip("\r\n")),
        )
    return line


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


def is_number(cell: str) -> bool:
    try:
        float(cell)
    except ValueError:
        return False
    return True


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


def number_cell(cell: str) -> Any:
    """A number column's cell: the float it spells, None when it is empty (a
    missing value), else the text itself, so validation reports it as the JSON
    API reports a string (`got "abc"`)."""
    try:
        return float(cell)
    except ValueError:
        return None if cell == "" else cell


def boolean_cell(cell: str) -> Any:
    """A boolean column's cell: true or false in any case, None when empty,
    else the text itself (refused as the API refuses a string there)."""
    folded = cell.strip().lower()
    if folded == "true":
        return True
    if folded == "false":
        return False
    return None if cell == "" else cell


def text_cell(cell: str) -> str | None:
    """A string column's cell exactly as written (spaces are text too), None
    when it is empty: only an empty cell is missing, as pandas reads a CSV."""
    return None if cell == "" else cell


def cell_reader(column: Column) -> CellReader:
    """How a cell of `column` is read: by its kind, and a category column of
    numbers as numbers."""
    if column.kind == BOOLEAN:
        return boolean_cell
    if column.numeric:
        return number_cell
    if (
        column.kind == CATEGORY
        and column.categories
        and not isinstance(column.categories[0], str)
    ):
        return number_cell
    return text_cell


def output_columns(
    keep: Sequence[str],
    classes: Sequence[Any] | None,
    probabilities: bool,
    scores: bool = False,
) -> list[str]:
    """The output's columns: kept keys, the prediction, one probability column
    per class (in the model's class order) when asked, an outlier detector's
    score when asked, the model version."""
    columns = [*keep, PREDICTION]
    if probabilities:
        columns += [f"{PROBABILITY}{cls}" for cls in classes or ()]
    if scores:
        columns.append(SCORE)
    columns.append(MODEL_VERSION)
    return columns


def spreadsheet_text(text: str) -> str:
    """A text cell as a spreadsheet may open it: with a leading apostrophe
    when it starts with a character that makes the spreadsheet run it as a
    formula (OWASP's CSV injection guidance), unless it is a number written
    in decimal notation (-1.5, +3), which a spreadsheet reads as that number."""
    if text.startswith(FORMULA_STARTS) and not _NUMBER.fullmatch(text):
        return "'" + text
    return text


def csv_line(values: Sequence[Any]) -> str:
    """One CSV line (no newline) for values of JSON types."""
    return csv_lines([values])


def csv_lines(rows: Sequence[Sequence[Any]]) -> str:
    """CSV lines joined by newlines (none after the last) for rows of JSON
    types, every text cell as `spreadsheet_text` writes it (numbers, booleans
    and kept JSON objects are no text and are written as they are)."""
    return "\n".join(",".join(map(_csv_cell, values)) for values in rows)


def csv_column(values: Sequence[Any]) -> list[str]:
    """The CSV cell of each value, as `csv_lines` writes it, a column at a
    time: a column of one kind is checked as a whole, and only a column with
    a cell to change is written value by value."""
    kinds = set(map(type, values))
    if kinds == {str}:
        if _QUOTED.search("".join(values)) is None and not any(
            map(str.startswith, values, itertools.repeat(FORMULA_STARTS))
        ):
            return list(values)  # no text that a spreadsheet runs or splits
    elif kinds == {int}:
        return list(map(str, values))
    elif kinds == {float}:
        if all(map(math.isfinite, values)):
            return list(map(repr, values))
    elif kinds == {type(None)}:
        return [""] * len(values)
    return list(map(_csv_cell, values))


def csv_block(columns: Sequence[Sequence[Any]], last: Any = None) -> str:
    """`csv_lines` of rows given as equally long columns (and, with `last`,
    one more cell, the same in every row)."""
    cells = [csv_column(column) for column in columns]
    if last is not None:
        cells.append([_csv_cell(last)] * (len(cells[0]) if cells else 1))
    return "\n".join(map(",".join, zip(*cells, strict=True)))


def jsonl_line(columns: Sequence[str], values: Sequence[Any]) -> str:
    """One JSON object per line; values keep their JSON types (JSON Lines is
    data for programs: nothing is changed for spreadsheets)."""
    return json.dumps(dict(zip(columns, values, strict=True)))


def _csv_cell(value: Any) -> str:
    if isinstance(value, str):
        text = spreadsheet_text(value)
    elif value is None:
        return ""
    elif isinstance(value, bool):
        return "true" if value else "false"
    elif isinstance(value, float):  # never text: written as the number it is
        return repr(value) if math.isfinite(value) else json.dumps(value)
    elif isinstance(value, int):
        return str(value)
    else:
        text = json.dumps(value)  # a kept JSON object or list
    if _QUOTED.search(text):
        return '"' + text.replace('"', '""') + '"'
    return text
