"""Rows -> the typed columns a model takes, judged by the input schema alone.

Every way a row arrives (v1 lists and objects, V2 tensors and columns, the
batch job) ends here, so a value is accepted or refused with the same words
everywhere. Messages name a cell as the JSON API does: `features[j]` for one
row, else `instances[i][j]`, plus the column's name when the model has names.
Runs after the model is loaded, since the schema comes with it.
"""

from __future__ import annotations

import itertools
import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from skserve.errors import BadRequest, Code
from skserve.schema import BOOLEAN, CATEGORY, INTEGER, NUMBER, Column, InputSchema

_NUMBER = (int, float)
_NUMBER_TYPES = frozenset(_NUMBER)
_NONE = type(None)
_SHOWN_CATEGORIES = 10
# (row, position) -> how a cell is named in messages.
Where = Callable[[int, int], str]


@dataclass(frozen=True)
class Table:
    """Valid rows as two blocks, columns in the schema's order within each:
    `numbers` (rows, numeric columns) float64 with NaN where a value is
    missing, and `objects` (rows, string and category columns) with None."""

    numbers: np.ndarray
    objects: np.ndarray

    def __len__(self) -> int:
        return int(self.numbers.shape[0])

    @classmethod
    def of_matrix(cls, matrix: np.ndarray) -> Table:
        """All-numeric rows as they are (no copy)."""
        return cls(matrix, np.empty((len(matrix), 0), dtype=object))

    @classmethod
    def concat(cls, tables: Sequence[Table]) -> Table:
        if len(tables) == 1:
            return tables[0]
        return cls(
            np.concatenate([t.numbers for t in tables]),
            np.concatenate([t.objects for t in tables]),
        )

    def rows(self, start: int, stop: int) -> Table:
        return Table(self.numbers[start:stop], self.objects[start:stop])

    def columns(self, schema: InputSchema) -> list[np.ndarray]:
        """Every column in the schema's order (views, not copies)."""
        out: list[np.ndarray] = [np.empty(0)] * len(schema.columns)
        for k, position in enumerate(schema.numeric_positions):
            out[position] = self.numbers[:, k]
        for k, position in enumerate(schema.object_positions):
            out[position] = self.objects[:, k]
        return out

    def matrix(self, schema: InputSchema) -> np.ndarray:
        """One (rows, features) array in the schema's order: float64 when every
        column is numeric, else object (for a model fitted on such an array)."""
        if schema.all_numeric:
            return self.numbers
        matrix = np.empty((len(self), len(schema.columns)), dtype=object)
        matrix[:, list(schema.numeric_positions)] = self.numbers
        matrix[:, list(schema.object_positions)] = self.objects
        return matrix


def to_table(
    rows: Sequence[list[Any] | dict[str, Any]], *, single: bool, schema: InputSchema
) -> Table:
    """Order each row's values as the model expects and check each against its
    column; BadRequest naming the first bad cell (in row order).

    Rows are lists in the model's order or objects keyed by feature name.
    """
    where = "features" if single else "instances[{i}]"
    names = schema.names if schema.named else None
    allowed = frozenset(names or ())
    n_features = len(schema.columns)
    if all(type(row) is list and len(row) == n_features for row in rows):
        ordered = list(rows)  # already in the model's order, nothing to refuse
    else:
        ordered = [
            _ordered(row, n_features, names, allowed, where.format(i=i))
            for i, row in enumerate(rows)
        ]
    if schema.strict_numeric:
        matrix = _strict_matrix(ordered, n_features)
        if matrix is not None:
            return Table.of_matrix(matrix)
    columns = [[row[j] for row in ordered] for j in range(n_features)]
    return from_columns(columns, len(ordered), schema, _row_cells(single, names))


def from_columns(
    columns: Sequence[Sequence[Any] | np.ndarray],
    n_rows: int,
    schema: InputSchema,
    where: Where,
) -> Table:
    """Columns of JSON values (or float64 arrays, NaN = missing) in the schema's
    order -> a Table; BadRequest naming the first bad cell in row order, as
    `where(row, position)` names it."""
    numbers = np.empty((n_rows, len(schema.numeric_positions)), dtype=np.float64)
    objects = np.empty((n_rows, len(schema.object_positions)), dtype=object)
    first_bad: tuple[int, int] | None = None
    for k, position in enumerate(schema.numeric_positions):
        column = schema.columns[position]
        array, ok = _numeric(columns[position], column)
        if ok.all():
            numbers[:, k] = array
            continue
        bad = int(np.flatnonzero(~ok)[0])
        if first_bad is None or (bad, position) < first_bad:
            first_bad = (bad, position)
    for k, position in enumerate(schema.object_positions):
        column = schema.columns[position]
        values = columns[position]
        refused = _bad_objects(values, column)
        if not refused:
            objects[:, k] = values
        elif first_bad is None or (refused[0], position) < first_bad:
            first_bad = (refused[0], position)
    if first_bad is not None:
        row, position = first_bad
        value = columns[position][row]
        if isinstance(value, np.floating):  # from a binary tensor
            value = float(value)
        raise refusal(where(row, position), value, schema.columns[position])
    return Table(numbers, objects)


def judge_columns(
    columns: Sequence[Sequence[Any] | np.ndarray], n_rows: int, schema: InputSchema
) -> tuple[Table, np.ndarray]:
    """`from_columns` for a block of rows at once, by the same checks: (a Table
    of the rows whose every cell its column allows, a bool mask of which rows
    those are). The others are left to be judged alone (by `to_table` or
    `from_columns`), which names their first bad cell."""
    numbers = np.empty((n_rows, len(schema.numeric_positions)), dtype=np.float64)
    objects = np.empty((n_rows, len(schema.object_positions)), dtype=object)
    ok = np.ones(n_rows, dtype=bool)
    for k, position in enumerate(schema.numeric_positions):
        array, allowed = _numeric(columns[position], schema.columns[position])
        numbers[:, k] = array
        ok &= allowed
    for k, position in enumerate(schema.object_positions):
        values = columns[position]
        refused = _bad_objects(values, schema.columns[position])
        if refused:
            # A refused value may be a JSON list: numpy would spread it over
            # cells, so it is left out rather than copied.
            ok[refused] = False
            values = list(values)
            for row in refused:
                values[row] = None
        objects[:, k] = values
    if ok.all():
        return Table(numbers, objects), ok
    return Table(numbers[ok], objects[ok]), ok


def from_matrix(matrix: np.ndarray, schema: InputSchema, where: Where) -> Table:
    """A float64 (rows, features) matrix (e.g. a binary V2 tensor), NaN where a
    value is missing -> a Table, every column judged as JSON values would be."""
    if schema.strict_numeric:
        bad = np.flatnonzero(~np.isfinite(matrix).all(axis=1))
        if not bad.size:
            return Table.of_matrix(matrix)
    return from_columns(
        [matrix[:, j] for j in range(matrix.shape[1])], len(matrix), schema, where
    )


def refusal(where: str, value: Any, column: Column) -> BadRequest:
    """The 400 for a value `column` does not allow, saying what it expected."""
    expected = _expected(column)
    if value is None:
        return BadRequest(
            f"{where} may not be missing: this model needs {expected} there, got null",
            code=Code.INVALID_VALUE,
        )
    if column.refuses_unknown and _of_kind(value, column):
        assert column.categories is not None
        shown = ", ".join(json.dumps(c) for c in column.categories[:_SHOWN_CATEGORIES])
        more = len(column.categories) - _SHOWN_CATEGORIES
        if more > 0:
            shown += f" and {more} more (GET /metadata lists them)"
        return BadRequest(
            f"{where} must be one of {shown}, got {_shown(value)}",
            code=Code.INVALID_VALUE,
        )
    return BadRequest(
        f"{where} must be {expected}, got {_shown(value)}", code=Code.INVALID_VALUE
    )


def _expected(column: Column) -> str:
    if column.kind == NUMBER:
        return "a finite number"
    if column.kind == INTEGER:
        return "an integer"
    if column.kind == BOOLEAN:
        return "true or false"
    if _numeric_categories(column):
        return "a number (one of its categories)"
    return "a string"


def _shown(value: Any) -> str:
    try:
        shown = json.dumps(value)
    except (TypeError, ValueError):
        shown = repr(value)
    except RecursionError:  # a value nested as deep as the decoder allowed
        shown = "[...]" if isinstance(value, list) else "{...}"
    return shown if len(shown) <= 40 else shown[:37] + "..."


def _row_cells(single: bool, names: list[str] | None) -> Where:
    def where(row: int, position: int) -> str:
        cell = f"features[{position}]" if single else f"instances[{row}][{position}]"
        return f"{cell} ({names[position]!r})" if names else cell

    return where


def _strict_matrix(ordered: list[list[Any]], n_features: int) -> np.ndarray | None:
    """Finite JSON numbers only, as one float64 matrix; None if any value is
    not one (the column checks then name it)."""
    # The set of the cells' types, built in C: several times faster than a
    # generator testing each cell.
    if not set(map(type, itertools.chain.from_iterable(ordered))) <= _NUMBER_TYPES:
        return None
    try:
        matrix = np.array(ordered, dtype=np.float64).reshape(len(ordered), n_features)
    except OverflowError:  # an integer beyond float range
        return None
    return matrix if np.isfinite(matrix).all() else None


def _numeric(
    values: Sequence[Any] | np.ndarray, column: Column
) -> tuple[np.ndarray, np.ndarray]:
    """(the column as float64 with NaN for missing, a bool mask of the rows
    whose value `column` allows)."""
    if isinstance(values, np.ndarray):  # floats from a tensor: NaN is missing
        array = np.asarray(values, dtype=np.float64)
        missing = np.isnan(array)
        ok = np.isfinite(array) | (missing & column.nullable)
    else:
        array, ok = _numbers(values, column)
    if column.kind == INTEGER:
        with np.errstate(invalid="ignore"):
            ok &= (np.mod(array, 1) == 0) | np.isnan(array)
    elif column.kind == BOOLEAN:  # a float tensor's 0.5 is no boolean
        ok &= (array == 0) | (array == 1) | np.isnan(array)
    if column.refuses_unknown:
        assert column.categories is not None
        known = np.array(column.categories, dtype=np.float64)
        ok &= np.isin(array, known) | np.isnan(array)
    return array, ok


def _numbers(values: Sequence[Any], column: Column) -> tuple[np.ndarray, np.ndarray]:
    """JSON values -> (float64 with NaN for missing, whether each is a finite
    value of the column's JSON type or an allowed null)."""
    kinds = set(map(type, values))
    wanted = {bool} if column.kind == BOOLEAN else set(_NUMBER)
    if column.nullable:
        wanted.add(_NONE)
    if kinds <= wanted:
        try:
            # numpy turns None into NaN for float64, and True into 1.0.
            array = np.array(values, dtype=np.float64)
        except OverflowError:  # an integer beyond float range: one by one
            pass
        else:
            ok = np.isfinite(array)
            if _NONE in kinds:
                ok |= np.array([v is None for v in values])
            return array, ok
    # The slow way, value by value, so each bad one is known.
    ok = np.fromiter(
        (_allows(column, v) for v in values), dtype=bool, count=len(values)
    )
    cells = zip(values, ok, strict=True)
    array = np.array(
        [float(v) if good and v is not None else np.nan for v, good in cells],
        dtype=np.float64,
    )
    return array, ok


def _allows(column: Column, value: Any) -> bool:
    """Whether `column` takes this one JSON value (None: missing)."""
    if value is None:
        return column.nullable
    if not _of_kind(value, column):
        return False
    if column.kind == INTEGER and not float(value).is_integer():
        return False
    if column.refuses_unknown:
        assert column.categories is not None
        return value in column.categories
    return True


def _fits(value: Any) -> bool:
    try:
        return math.isfinite(float(value))
    except (OverflowError, TypeError):
        return False


def _bad_objects(values: Sequence[Any] | np.ndarray, column: Column) -> list[int]:
    """The rows whose value `column` does not allow, in order."""
    known = frozenset(column.categories) if column.refuses_unknown else None  # type: ignore[arg-type]
    if not _numeric_categories(column):
        # Text: every value a string (or an allowed null) of a known category,
        # checked a column at a time before looking at any value alone.
        kinds = set(map(type, values))
        allowed = {str, _NONE} if column.nullable else {str}
        if kinds <= allowed and (
            known is None or known.issuperset(set(values) - {None})
        ):
            return []
    refused = []
    for i, value in enumerate(values):
        if value is None:
            if not column.nullable:
                refused.append(i)
        elif not _of_kind(value, column) or (known is not None and value not in known):
            refused.append(i)
    return refused


def _numeric_categories(column: Column) -> bool:
    """Whether `column` holds categories that are numbers."""
    return bool(
        column.kind == CATEGORY
        and column.categories
        and not isinstance(column.categories[0], str)
    )


def _of_kind(value: Any, column: Column) -> bool:
    """Whether `value` has the JSON type of `column`'s values."""
    if _numeric_categories(column):
        return type(value) in _NUMBER and _fits(value)  # 10**400: not a float
    if column.numeric:
        if column.kind == BOOLEAN:
            return type(value) is bool
        return type(value) in _NUMBER and _fits(value)
    return type(value) is str


def _ordered(
    row: list[Any] | dict[str, Any],
    n_features: int,
    names: list[str] | None,
    allowed: frozenset[str],
    where: str,
) -> list[Any]:
    if isinstance(row, list):
        if len(row) != n_features:
            hint = ""
            if where == "features" and row and isinstance(row[0], list):
                hint = '; to send several rows, use "instances"'
            raise BadRequest(
                f"{where} has {len(row)} features, expected {n_features}{hint}",
                code=Code.WRONG_FEATURE_COUNT,
            )
        return row
    if not names:
        raise BadRequest(
            f"{where} is an object, but this model has no feature names; "
            f"send a list of {n_features} values",
            code=Code.INVALID_REQUEST,
        )
    missing = [name for name in names if name not in row]
    unknown = sorted(key for key in row if key not in allowed)
    if missing or unknown:
        parts = []
        if missing:
            parts.append(f"missing {', '.join(map(repr, missing))}")
        if unknown:
            parts.append(f"unknown {', '.join(map(repr, unknown[:20]))}")
        raise BadRequest(
            f"{where}: {'; '.join(parts)} (expected: {', '.join(names)})",
            code=Code.UNKNOWN_FEATURES if unknown else Code.MISSING_FEATURES,
        )
    return [row[name] for name in names]
