"""A CSV cell becomes the JSON value the HTTP API would be sent for it, by its kind."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from skserve.schema import BOOLEAN, CATEGORY, Column

# A CSV cell's text -> the JSON value the API would be sent for it.
CellReader = Callable[[str], Any]


def is_number(cell: str) -> bool:
    try:
        float(cell)
    except ValueError:
        return False
    return True


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
