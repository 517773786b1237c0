"""Output keeps the user's key columns; no text cell runs as a spreadsheet formula."""

from __future__ import annotations

import itertools
import json
import math
import re
from collections.abc import Sequence
from typing import Any

# Columns the output writes itself; a kept column may not reuse their names.
PREDICTION = "prediction"
MODEL_VERSION = "model_version"
PROBABILITY = "probability_"
SCORE = "score"
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
