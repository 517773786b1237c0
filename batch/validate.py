"""A row is judged alone by the HTTP API's own `to_matrix`, and gets its message."""

# Each row is validated as `{"features": row}` would be, before any batch is
# formed: a bad row is rejected with its file and line, never a whole batch.

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np

from batch.io import CsvProblem, number
from skserve.errors import BadRequest, Code
from skserve.rows import to_table
from skserve.schema import InputSchema


@dataclass(frozen=True)
class Layout:
    """What rows must hold: the model's features, and the columns to pass through."""

    n_features: int
    feature_names: list[str] | None
    keep: tuple[str, ...] = ()


class BlockKey(NamedTuple):
    """Where a block's rows came from (one file, a line each) and their kept
    column values (None if absent). Plain lists, so Beam encodes a block's key
    in one pass instead of pickling an object per row."""

    file: str
    lines: list[int]
    kept: list[tuple[Any, ...]]


class Rejection(NamedTuple):
    """A row that was not scored, and why, in the API's words."""

    file: str
    line: int
    code: str
    error: str
    row: Any  # the row's cells (CSV) or text (JSON Lines), to fix and replay

    def to_json(self) -> str:
        return json.dumps(self._asdict())


class CsvRows:
    """Maps one file's CSV records to features and kept values, by its header
    (columns in any order, extra columns ignored) or by position (no header)."""

    def __init__(self, layout: Layout, columns: tuple[str, ...] | None) -> None:
        self.layout = layout
        self.columns = columns
        # A file without a header has no key columns: each kept value is None.
        self.no_keys: tuple[None, ...] = (None,) * len(layout.keep)
        if columns is None:
            return
        position = {name: i for i, name in enumerate(columns)}
        self.kept_at = [position.get(name) for name in layout.keep]
        if layout.feature_names:
            self.named = [
                (name, position[name])
                for name in layout.feature_names
                if name in position
            ]
        else:
            # A model fitted without names takes the columns not kept, in order.
            self.positional = [
                i for i, name in enumerate(columns) if name not in layout.keep
            ]

    def parse_all(
        self, file: str, records: Sequence[tuple[int, Any]]
    ) -> tuple[BlockKey, list[list[float]]] | None:
        """The chunk's keys and rows as floats in the model's order, when every
        record has all its cells and every feature cell spells a number; None
        otherwise (then `parse` takes each record alone). Decoding only:
        `to_matrix` still judges the rows."""
        layout = self.layout
        if self.columns is None:
            width, picks = layout.n_features, None
        else:
            width = len(self.columns)
            if layout.feature_names:
                if len(self.named) != layout.n_features:
                    return None  # a feature column is missing: rows say which
                picks = [i for _, i in self.named]
            else:
                picks = self.positional
        rows = []
        try:
            for _, cells in records:
                if type(cells) is not list or len(cells) != width:
                    return None
                picked = cells if picks is None else [cells[i] for i in picks]
                rows.append(list(map(float, picked)))  # as number() does
        except ValueError:
            return None
        lines = [line for line, _ in records]
        if self.columns is None:
            return BlockKey(file, lines, [self.no_keys] * len(lines)), rows
        kept_at = self.kept_at
        kept = [
            tuple(None if i is None else cells[i] for i in kept_at)
            for _, cells in records
        ]
        return BlockKey(file, lines, kept), rows

    def parse(self, cells: list[str]) -> tuple[list[Any] | dict[str, Any], tuple]:
        """(the row as the API's `features`, its kept values)."""
        if self.columns is None:
            return [number(cell) for cell in cells], self.no_keys
        if len(cells) > len(self.columns):
            raise BadRequest(
                f"line has {len(cells)} cells, but the header has "
                f"{len(self.columns)} columns",
                code=Code.INVALID_REQUEST,
            )
        width = len(cells)
        kept = tuple(
            cells[i] if i is not None and i < width else None for i in self.kept_at
        )
        if self.layout.feature_names:
            return {name: number(cells[i]) for name, i in self.named if i < width}, kept
        return [number(cells[i]) for i in self.positional if i < width], kept


def parse_json_row(
    text: str, layout: Layout
) -> tuple[list[Any] | dict[str, Any], tuple]:
    """A JSON Lines row: an object keyed by feature name (other keys ignored,
    kept ones passed through) or a list of numbers in the model's order."""
    try:
        row = json.loads(text)
    except json.JSONDecodeError as exc:
        raise BadRequest(
            f"malformed JSON: {exc.msg} (column {exc.colno})", code=Code.INVALID_JSON
        ) from None
    except RecursionError:
        raise BadRequest("JSON is nested too deeply", code=Code.INVALID_JSON) from None
    except ValueError as exc:  # an integer beyond Python's digit limit
        raise BadRequest(f"unusable JSON: {exc}", code=Code.INVALID_JSON) from None
    if isinstance(row, dict):
        kept = tuple(row.get(name) for name in layout.keep)
        if layout.feature_names:
            names = layout.feature_names
            return {name: row[name] for name in names if name in row}, kept
        return row, kept  # to_matrix says why an object does not fit this model
    if isinstance(row, list):
        return row, (None,) * len(layout.keep)
    raise BadRequest(
        "a JSON Lines row must be an object of named numbers or a list of numbers",
        code=Code.INVALID_REQUEST,
    )


def _matrix(rows: list[Any], layout: Layout, *, single: bool) -> np.ndarray:
    schema = InputSchema.numeric(layout.n_features, layout.feature_names)
    return to_table(rows, single=single, schema=schema).numbers


def validate(features: list[Any] | dict[str, Any], layout: Layout) -> np.ndarray:
    """The row as the model's float64 vector; BadRequest with the API's message."""
    return _matrix([features], layout, single=True)[0]


def parse_record(
    record: list[str] | str | CsvProblem, layout: Layout, csv_rows: CsvRows | None
) -> tuple[list[Any] | dict[str, Any], tuple]:
    """A CSV or JSON Lines record -> (the row as the API's `features`, kept values)."""
    if isinstance(record, CsvProblem):
        raise BadRequest(record.message, code=Code.INVALID_REQUEST)
    if csv_rows is not None:
        assert isinstance(record, list)
        return csv_rows.parse(record)
    assert isinstance(record, str)
    return parse_json_row(record, layout)


def _rejection(file: str, line: int, record: Any, error: BadRequest) -> Rejection:
    shown = None if isinstance(record, CsvProblem) else record
    return Rejection(file, line, str(error.code), error.message, shown)


def check_records(
    file: str,
    records: Sequence[tuple[int, Any]],
    layout: Layout,
    csv_rows: CsvRows | None,
) -> tuple[BlockKey, np.ndarray, list[Rejection]]:
    """Records -> (the valid rows' key, their (rows, n_features) matrix, the
    rejections). Each row is judged alone, as `{"features": row}` would be."""
    if csv_rows is not None:
        decoded = csv_rows.parse_all(file, records)
        if decoded is not None:
            key, rows = decoded
            try:
                return key, _matrix(rows, layout, single=False), []
            except BadRequest:
                pass  # a value to_matrix refuses: judge each row alone
    rejected: list[Rejection] = []
    parsed: list[tuple[int, tuple, Any, Any]] = []
    for line, record in records:
        try:
            features, kept = parse_record(record, layout, csv_rows)
        except BadRequest as error:
            rejected.append(_rejection(file, line, record, error))
            continue
        parsed.append((line, kept, features, record))
    key = BlockKey(file, [], [])
    try:
        # The common case, every row valid, in one call; to_matrix applies the
        # same checks to each row whether it is given one row or many.
        matrix = _matrix(
            [features for _, _, features, _ in parsed], layout, single=False
        )
        for line, kept, _, _ in parsed:
            key.lines.append(line)
            key.kept.append(kept)
        return key, matrix, rejected
    except BadRequest:
        pass
    vectors = []
    for line, kept, features, record in parsed:
        try:
            vectors.append(validate(features, layout))
        except BadRequest as error:
            rejected.append(_rejection(file, line, record, error))
            continue
        key.lines.append(line)
        key.kept.append(kept)
    matrix = np.array(vectors, dtype=np.float64).reshape(
        len(vectors), layout.n_features
    )
    rejected.sort(key=lambda rejection: rejection.line)
    return key, matrix, rejected


def header_problems(columns: Sequence[str], layout: Layout, where: str) -> list[str]:
    """Why a header cannot serve this model and these --keep columns (none: it can)."""
    problems = []
    duplicated = sorted({c for c in columns if list(columns).count(c) > 1})
    if duplicated:
        problems.append(f"{where} repeats the columns {', '.join(duplicated)}")
    absent = [name for name in layout.keep if name not in columns]
    if absent:
        problems.append(f"--keep names columns that {where} lacks: {', '.join(absent)}")
    if layout.feature_names:
        missing = [name for name in layout.feature_names if name not in columns]
        if missing:
            problems.append(
                f"{where} lacks the model's features {', '.join(missing)} "
                f"(expected: {', '.join(layout.feature_names)})"
            )
    else:
        features = [name for name in columns if name not in layout.keep]
        if len(features) != layout.n_features:
            problems.append(
                f"the model has no feature names, so its {layout.n_features} "
                f"features are the columns not named by --keep; {where} has "
                f"{len(features)} such columns"
            )
    return problems
