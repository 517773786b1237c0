"""A row is judged alone by the HTTP API's own `to_table`, and gets its message."""

# Each row is validated as `{"features": row}` would be, before any batch is
# formed: a bad row is rejected with its file and line, never a whole batch.
# A CSV cell becomes the JSON value its column's kind reads it as
# (batch.io.cell_reader); a JSON Lines row keeps its JSON values.

from __future__ import annotations

import csv
import itertools
import json
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np

from batch.io import (
    BLANK_LINES,
    CellReader,
    RecordProblem,
    cell_reader,
    number_cell,
    plain_records,
    text_cell,
)
from skserve.errors import BadRequest, Code
from skserve.rows import Table, judge_columns, to_table
from skserve.schema import BOOLEAN, INTEGER, Column, InputSchema


@dataclass(frozen=True)
class Layout:
    """What rows must hold: the model's input schema, and the columns to pass
    through."""

    schema: InputSchema
    keep: tuple[str, ...] = ()

    @property
    def n_features(self) -> int:
        return len(self.schema.columns)

    @property
    def feature_names(self) -> list[str] | None:
        """The names rows may key features by (None: a model fitted without)."""
        return self.schema.names if self.schema.named else None


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
    # The row, to fix and replay: its CSV cells, its JSON Lines text, the text
    # of a record that could not be read (undecodable bytes as \xNN; of a line
    # beyond the bound, its first characters), or (refused by the model) its
    # values as JSON in the schema's order. Never None.
    row: Any

    def to_json(self) -> str:
        return json.dumps(self._asdict())


def empty_table(schema: InputSchema) -> Table:
    """A Table of no rows with the schema's blocks."""
    return Table(
        np.empty((0, len(schema.numeric_positions)), dtype=np.float64),
        np.empty((0, len(schema.object_positions)), dtype=object),
    )


def row_values(table: Table, row: int, schema: InputSchema) -> list[Any]:
    """Row `row` of `table` as JSON values in the schema's order (missing: None),
    as it would be sent to `POST /predict`."""
    values = []
    for column, cells in zip(schema.columns, table.columns(schema), strict=True):
        value = cells[row]
        if column.numeric:
            value = float(value)
            if math.isnan(value):
                value = None
            elif column.kind == BOOLEAN:
                value = bool(value)
            elif column.kind == INTEGER:
                value = int(value)
        values.append(value)
    return values


def _values(
    cells: Sequence[str], read: CellReader, column: Column
) -> Sequence[Any] | np.ndarray:
    """A column of cells as the JSON values `read` makes of each (see
    batch.io.cell_reader), converted a column at a time where it can be."""
    if read is number_cell:
        try:
            numbers = np.fromiter(map(float, cells), np.float64, len(cells))
        except ValueError:  # a cell that is no number: each read alone
            return list(map(number_cell, cells))
        if not column.numeric or np.isnan(numbers).any():
            # Categories are held as Python numbers; and a float64 array's NaN
            # is a missing value, where a cell's "nan" is a number, refused as
            # not finite.
            return numbers.tolist()
        return numbers
    if read is text_cell:
        return cells if "" not in cells else list(map(text_cell, cells))
    return list(map(read, cells))


class CsvRows:
    """Maps one file's CSV records to features and kept values, by its header
    (columns in any order, extra columns ignored) or by position (no header);
    each feature's cell is read by its column's kind."""

    def __init__(self, layout: Layout, columns: tuple[str, ...] | None) -> None:
        self.layout = layout
        self.columns = columns
        self.readers = [cell_reader(column) for column in layout.schema.columns]
        # A file without a header has no key columns: each kept value is None.
        self.no_keys: tuple[None, ...] = (None,) * len(layout.keep)
        # Where the model's features are in a record, in the model's order
        # (None: the record's cells are the features); None when one is absent.
        self.picks: list[int] | None = None
        self.complete = True
        if columns is None:
            return
        position = {name: i for i, name in enumerate(columns)}
        self.kept_at = [position.get(name) for name in layout.keep]
        if layout.feature_names:
            self.named = [
                (name, position[name], reader)
                for name, reader in zip(layout.feature_names, self.readers, strict=True)
                if name in position
            ]
            self.picks = [i for _, i, _ in self.named]
        else:
            # A model fitted without names takes the columns not kept, in order.
            positional = [
                i for i, name in enumerate(columns) if name not in layout.keep
            ]
            self.positional = [(i, self._reader(k)) for k, i in enumerate(positional)]
            self.picks = positional
        self.complete = len(self.picks) == layout.n_features

    def _reader(self, j: int) -> CellReader:
        """The reader of feature `j`; a surplus cell (the row is refused for its
        count) is read as a number, as rows of numbers always were."""
        return self.readers[j] if j < len(self.readers) else number_cell

    @property
    def width(self) -> int:
        """How many cells a record has when it has one for each column."""
        return self.layout.n_features if self.columns is None else len(self.columns)

    def judge(
        self, cells: Sequence[Sequence[str]], n_rows: int
    ) -> tuple[Table, np.ndarray]:
        """Records of `width` cells each, as columns of cells (by position in
        the record) -> `skserve.rows.judge_columns` of their features: (the
        valid rows' Table, a bool mask of which rows are valid)."""
        schema = self.layout.schema
        at = range(self.layout.n_features) if self.picks is None else self.picks
        values = [
            _values(cells[i], read, column)
            for i, read, column in zip(at, self.readers, schema.columns, strict=True)
        ]
        return judge_columns(values, n_rows, schema)

    def kept(self, cells: Sequence[Sequence[str]], n_rows: int) -> list[tuple]:
        """The kept values of records of `width` cells, given as columns."""
        if self.columns is None:
            return [self.no_keys] * n_rows
        if not self.kept_at:
            return [()] * n_rows
        nothing = [None] * n_rows  # a kept column the header lacks
        kept = (nothing if i is None else cells[i] for i in self.kept_at)
        return list(zip(*kept, strict=True))

    def table_all(
        self, file: str, records: Sequence[tuple[int, Any]]
    ) -> tuple[BlockKey, Table] | None:
        """The chunk's keys and valid rows, when every record has all its cells
        and every row is valid; None otherwise (then each record is taken
        alone). Decoding only: `judge_columns` judges the rows."""
        if not self.complete:
            return None  # a feature column is missing: rows say which
        width = self.width
        for _, cells in records:
            if type(cells) is not list or len(cells) != width:
                return None
        columns = [[cells[i] for _, cells in records] for i in range(width)]
        table, ok = self.judge(columns, len(records))
        if not ok.all():
            return None  # a cell that is no number, or a value refused
        lines = [line for line, _ in records]
        return BlockKey(file, lines, self.kept(columns, len(records))), table

    def parse(self, cells: list[str]) -> tuple[list[Any] | dict[str, Any], tuple]:
        """(the row as the API's `features`, its kept values)."""
        if self.columns is None:
            read = self._reader
            return [read(j)(cell) for j, cell in enumerate(cells)], self.no_keys
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
            features = {
                name: reader(cells[i]) for name, i, reader in self.named if i < width
            }
            return features, kept
        return [reader(cells[i]) for i, reader in self.positional if i < width], kept


# A \u escape of a UTF-16 surrogate: only a pair of them is a character.
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")


def parse_json_row(
    text: str, layout: Layout
) -> tuple[list[Any] | dict[str, Any], tuple]:
    """A JSON Lines row: an object keyed by feature name (other keys ignored,
    kept ones passed through) or a list of values in the model's order."""
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
    if _SURROGATE_ESCAPE.search(text):
        _refuse_lone_surrogates(row)
    if isinstance(row, dict):
        kept = tuple(row.get(name) for name in layout.keep)
        if layout.feature_names:
            names = layout.feature_names
            return {name: row[name] for name in names if name in row}, kept
        return row, kept  # to_table says why an object does not fit this model
    if isinstance(row, list):
        return row, (None,) * len(layout.keep)
    raise BadRequest(
        "a JSON Lines row must be an object of named values or a list of values",
        code=Code.INVALID_REQUEST,
    )


def _refuse_lone_surrogates(row: Any) -> None:
    """A string anywhere in the row (kept or not) that UTF-8 cannot encode is
    no text: it is refused, as bytes that are not UTF-8 are, rather than fail
    the output it would be written to."""
    try:
        json.dumps(row, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError as exc:
        char = exc.object[exc.start]
        raise BadRequest(
            f"unusable JSON: a string holds \\u{ord(char):04x}, a lone surrogate, "
            "which is no character (UTF-8 cannot encode it)",
            code=Code.INVALID_JSON,
        ) from None


def validate(features: list[Any] | dict[str, Any], layout: Layout) -> Table:
    """The row as a one-row Table; BadRequest with the API's message."""
    return to_table([features], single=True, schema=layout.schema)


def parse_record(
    record: list[str] | str | RecordProblem, layout: Layout, csv_rows: CsvRows | None
) -> tuple[list[Any] | dict[str, Any], tuple]:
    """A CSV or JSON Lines record -> (the row as the API's `features`, kept values)."""
    if isinstance(record, RecordProblem):
        raise BadRequest(record.message, code=Code(record.code))
    if csv_rows is not None:
        assert isinstance(record, list)
        return csv_rows.parse(record)
    assert isinstance(record, str)
    return parse_json_row(record, layout)


def _rejection(file: str, line: int, record: Any, error: BadRequest) -> Rejection:
    shown = record.text if isinstance(record, RecordProblem) else record
    return Rejection(file, line, str(error.code), error.message, shown)


def check_records(
    file: str,
    records: Sequence[tuple[int, Any]],
    layout: Layout,
    csv_rows: CsvRows | None,
) -> tuple[BlockKey, Table, list[Rejection]]:
    """Records -> (the valid rows' key, their Table, the rejections). Each row
    is judged as `{"features": row}` would be alone: CSV records with a cell
    for each column are judged a block at once (the same checks, column by
    column), and the rows that fail there, with the other records, one by one,
    which names what is wrong."""
    if csv_rows is None or not csv_rows.complete:
        return _one_by_one(file, records, layout, csv_rows)
    width = csv_rows.width
    shaped = [
        k
        for k, (_, cells) in enumerate(records)
        if type(cells) is list and len(cells) == width
    ]
    columns = [[records[k][1][i] for k in shaped] for i in range(width)]
    lines = [records[k][0] for k in shaped]
    return _checked_block(file, lines, columns, records, shaped, layout, csv_rows)


def check_lines(
    file: str, start: int, lines: list[str], layout: Layout, csv_rows: CsvRows
) -> tuple[BlockKey, Table, list[Rejection]]:
    """`check_records` of plain lines (batch.io.PlainLines, numbered from
    `start`: one record a line, no quote), split and judged a block at once;
    a line without a cell for each column, or whose row fails there, is
    judged alone."""
    if (
        not csv_rows.complete
        or not lines
        or max(map(len, lines)) > csv.field_size_limit()
    ):
        # A feature column missing, or a cell csv may refuse as too large:
        # each line alone says so.
        return _one_by_one(file, plain_records(start, lines), layout, csv_rows)
    width = csv_rows.width
    commas = list(map(str.count, lines, itertools.repeat(",")))
    shaped: Sequence[int]
    if commas.count(width - 1) == len(lines) and (
        width > 1 or not any(map(BLANK_LINES.__contains__, lines))
    ):
        shaped = range(len(lines))
        text = "".join(lines)
    else:
        shaped = [
            k
            for k, count in enumerate(commas)
            if count == width - 1 and lines[k] not in BLANK_LINES
        ]
        text = "".join([lines[k] for k in shaped])
    # A plain line has no quote and breaks only at its end, so its cells are
    # the text between its commas, as csv splits it; and a CR followed by an
    # LF here is one CRLF (no line but a blank one starts with an LF).
    if "\r" in text:
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    cells = text.replace("\n", ",").split(",")
    if text.endswith("\n"):
        cells.pop()  # the empty text after the last line break
    if len(cells) != len(shaped) * width:  # a line break inside a line
        return _one_by_one(file, plain_records(start, lines), layout, csv_rows)
    columns = [cells[i::width] for i in range(width)]
    numbers = [start + k for k in shaped]
    records = [(start + k, line) for k, line in enumerate(lines)]
    return _checked_block(
        file, numbers, columns, records, shaped, layout, csv_rows, plain=True
    )


def _checked_block(
    file: str,
    lines: list[int],
    columns: list[Sequence[str]],
    records: Sequence[tuple[int, Any]],
    shaped: Sequence[int],
    layout: Layout,
    csv_rows: CsvRows,
    plain: bool = False,
) -> tuple[BlockKey, Table, list[Rejection]]:
    """The `shaped` records (numbered `lines`, their cells as `columns`)
    judged as a block, then every other record one by one, as one block in
    line order and the rejections. With `plain`, records hold plain lines."""
    table, ok = csv_rows.judge(columns, len(lines))
    kept = csv_rows.kept(columns, len(lines))
    if len(shaped) == len(records) and ok.all():
        return BlockKey(file, lines, kept), table, []
    good = ok.tolist()
    lines = list(itertools.compress(lines, good))
    kept = list(itertools.compress(kept, good))
    judged = set(itertools.compress(shaped, good))
    rest = [record for k, record in enumerate(records) if k not in judged]
    if plain:
        rest = [
            record for number, line in rest for record in plain_records(number, [line])
        ]
    key, others, rejected = _one_by_one(file, rest, layout, csv_rows)
    if not key.lines:
        return BlockKey(file, lines, kept), table, rejected
    # Rows the block could not judge that passed alone: all in line order.
    numbers, keys = lines + key.lines, kept + key.kept
    order = np.argsort(np.array(numbers), kind="stable")
    both = Table.concat([table, others])
    key = BlockKey(file, [numbers[i] for i in order], [keys[i] for i in order])
    return key, Table(both.numbers[order], both.objects[order]), rejected


def _one_by_one(
    file: str,
    records: Sequence[tuple[int, Any]],
    layout: Layout,
    csv_rows: CsvRows | None,
) -> tuple[BlockKey, Table, list[Rejection]]:
    """Records -> (the valid rows' key, their Table, the rejections), each row
    parsed and judged alone by `to_table`, with the API's message."""
    schema = layout.schema
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
        # The common case, every row valid, in one call; to_table applies the
        # same checks to each row whether it is given one row or many.
        table = to_table(
            [features for _, _, features, _ in parsed], single=False, schema=schema
        )
        for line, kept, _, _ in parsed:
            key.lines.append(line)
            key.kept.append(kept)
        return key, table, rejected
    except BadRequest:
        pass
    tables = []
    for line, kept, features, record in parsed:
        try:
            tables.append(validate(features, layout))
        except BadRequest as error:
            rejected.append(_rejection(file, line, record, error))
            continue
        key.lines.append(line)
        key.kept.append(kept)
    rejected.sort(key=lambda rejection: rejection.line)
    table = Table.concat(tables) if tables else empty_table(schema)
    return key, table, rejected


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
