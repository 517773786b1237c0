"""Input records keep their file and line; output rows keep the user's key columns."""

# Pure functions over text streams and values, so parsing is tested without Beam.

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import IO, Any

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


@dataclass(frozen=True)
class CsvProblem:
    """A record the csv module could not split (e.g. a field beyond its size
    limit), and the text of the lines it read for it, to fix and replay."""

    message: str
    text: str = ""


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
    """UTF-8 text over a binary stream; a BOM is dropped, and undecodable bytes
    become U+FFFD so the row they are in is rejected, not the whole file."""
    if not isinstance(raw, io.IOBase):
        raw = io.BufferedReader(_RawReader(raw))
    return io.TextIOWrapper(raw, encoding="utf-8-sig", errors="replace", newline="")


def csv_records(text: IO[str]) -> Iterator[tuple[int, list[str] | CsvProblem]]:
    """(line number where the record starts, its cells) for each non-blank record.

    Quoted fields may span lines, so the number comes from the reader itself.
    """
    taken: list[str] = []  # the lines the reader took for the current record

    def lines() -> Iterator[str]:
        for line in text:
            taken.append(line)
            yield line

    reader = csv.reader(lines())
    while True:
        start = reader.line_num + 1
        taken.clear()
        try:
            cells = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            problem = f"cannot split this CSV line: {exc}"
            yield start, CsvProblem(problem, "".join(taken).rstrip("\r\n"))
            continue
        if cells:  # csv yields [] for a blank line: no row there
            yield start, cells


def jsonl_records(text: IO[str]) -> Iterator[tuple[int, str]]:
    """(line number, text) for each non-blank line."""
    for number, line in enumerate(text, start=1):
        if line.strip():
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


def csv_line(values: Sequence[Any]) -> str:
    """One CSV line (no newline) for values of JSON types."""
    return csv_lines([values])


def csv_lines(rows: Sequence[Sequence[Any]]) -> str:
    """CSV lines joined by newlines (none after the last) for rows of JSON types."""
    buffer = io.StringIO()
    # The terminator must be a newline: csv quotes a field only if it holds a
    # character of the terminator (or the delimiter or a quote).
    csv.writer(buffer, lineterminator="\n").writerows(
        [_cell_text(v) for v in values] for values in rows
    )
    return buffer.getvalue()[:-1]


def jsonl_line(columns: Sequence[str], values: Sequence[Any]) -> str:
    """One JSON object per line; values keep their JSON types."""
    return json.dumps(dict(zip(columns, values, strict=True)))


def _cell_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value) if math.isfinite(value) else json.dumps(value)
    if isinstance(value, int):
        return str(value)
    return json.dumps(value)  # a kept JSON object or list
