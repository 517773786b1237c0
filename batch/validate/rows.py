"""A record becomes the API's `features` as a request body would hold that row."""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import Any

import numpy as np

from batch.io import CellReader, RecordProblem, cell_reader, number_cell, text_cell
from batch.validate.layout import BlockKey, Layout
from skserve.errors import BadRequest, Code
from skserve.rows import Table, judge_columns
from skserve.schema import Column


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
