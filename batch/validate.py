"""A row is judged alone by the HTTP API's own `to_table`, and gets its message."""

# Each row is validated as `{"features": row}` would be, before any batch is
# formed: a bad row is rejected with its file and line, never a whole batch.
# A CSV cell becomes the JSON value its column's kind reads it as
# (batch.io.cell_reader); a JSON Lines row keeps its JSON values.

from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np

from batch.io import CellReader, RecordProblem, cell_reader, number_cell
from skserve.errors import BadRequest, Code
from skserve.rows import Table, from_columns, to_table
from skserve.schema import BOOLEAN, INTEGER, InputSchema


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


def _nowhere(row: int, position: int) -> str:
    return ""  # a chunk's failure only sends its rows to be judged alone


class CsvRows:
    """Maps one file's CSV records to features and kept values, by its header
    (columns in any order, extra columns ignored) or by position (no header);
    each feature's cell is read by its column's kind."""

    def __init__(self, layout: Layout, columns: tuple[str, ...] | None) -> None:
        self.layout = layout
        self.columns = columns
        schema = layout.schema
        self.strict = schema.strict_numeric
        self.readers = [cell_reader(column) for column in schema.columns]
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

    def table_all(
        self, file: str, records: Sequence[tuple[int, Any]]
    ) -> tuple[BlockKey, Table] | None:
        """The chunk's keys and valid rows, when every record has all its cells
        and every row is valid; None otherwise (then `parse` takes each record
        alone). Decoding only: `to_table` or `from_columns` judge the rows."""
        layout, schema = self.layout, self.layout.schema
        if not self.complete:
            return None  # a feature column is missing: rows say which
        width = layout.n_features if self.columns is None else len(self.columns)
        picks = self.picks
        for _, cells in records:
            if type(cells) is not list or len(cells) != width:
                return None
        try:
            if self.strict:
                # Numbers only: as `number_cell` reads them, or none at all.
                rows = []
                for _, cells in records:
                    picked = cells if picks is None else [cells[i] for i in picks]
                    rows.append(list(map(float, picked)))
                table = to_table(rows, single=False, schema=schema)
            else:
                at = range(width) if picks is None else picks
                columns = [
                    [read(cells[i]) for _, cells in records]
                    for i, read in zip(at, self.readers, strict=True)
                ]
                table = from_columns(columns, len(records), schema, _nowhere)
        except (ValueError, BadRequest):
            return None  # a cell that is no number, or a value refused
        lines = [line for line, _ in records]
        if self.columns is None:
            return BlockKey(file, lines, [self.no_keys] * len(lines)), table
        kept_at = self.kept_at
        kept = [
            tuple(None if i is None else cells[i] for i in kept_at)
            for _, cells in records
        ]
        return BlockKey(file, lines, kept), table

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
    is judged alone, as `{"features": row}` would be."""
    if csv_rows is not None:
        decoded = csv_rows.table_all(file, records)
        if decoded is not None:
            key, table = decoded
            return key, table, []
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
