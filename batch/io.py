"""Input records keep their file and line; output rows keep the user's key columns."""

# Pure functions over text streams and values, so parsing is tested without Beam.

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import IO, Any

FORMATS = ("csv", "jsonl")
HEADER_MODES = ("auto", "yes", "no")
JSONL_SUFFIXES = (".jsonl", ".ndjson")
COMPRESSED_SUFFIXES = (".gz", ".bz2", ".deflate", ".zst", ".lzma")
# Columns the output writes itself; a kept column may not reuse their names.
PREDICTION = "prediction"
MODEL_VERSION = "model_version"
PROBABILITY = "probability_"


@dataclass(frozen=True)
class CsvProblem:
    """A line the csv module could not split (e.g. a NUL byte, a huge field)."""

    message: str


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
    reader = csv.reader(text)
    while True:
        start = reader.line_num + 1
        try:
            cells = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            yield start, CsvProblem(f"cannot split this CSV line: {exc}")
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


def looks_like_header(cells: Sequence[str], feature_names: list[str] | None) -> bool:
    """`--header auto`: a first row is a header when it names every feature of
    the model, or when none of its cells is a number (data rows are numbers)."""
    columns = header_columns(cells)
    if feature_names and set(feature_names) <= set(columns):
        return True
    return not any(is_number(cell) for cell in cells)


def number(cell: str) -> Any:
    """A CSV cell as the float it spells, else the text itself, so validation
    reports it as the JSON API reports a string (`got "abc"`)."""
    try:
        return float(cell)
    except ValueError:
        return cell


def output_columns(
    keep: Sequence[str], classes: Sequence[Any] | None, probabilities: bool
) -> list[str]:
    """The output's columns: kept keys, the prediction, one probability column
    per class (in the model's class order) when asked, the model version."""
    columns = [*keep, PREDICTION]
    if probabilities:
        columns += [f"{PROBABILITY}{cls}" for cls in classes or ()]
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
