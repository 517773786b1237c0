"""Rows judged a block at once get exactly the verdicts each gets judged alone."""

from __future__ import annotations

import csv
import itertools
import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from batch.io import BLANK_LINES, RecordProblem, plain_records
from batch.validate.layout import BlockKey, Layout, Rejection
from batch.validate.rows import CsvRows, parse_record
from skserve.errors import BadRequest
from skserve.rows import Table, to_table
from skserve.schema import BOOLEAN, INTEGER, InputSchema


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


def validate(features: list[Any] | dict[str, Any], layout: Layout) -> Table:
    """The row as a one-row Table; BadRequest with the API's message."""
    return to_table([features], single=True, schema=layout.schema)


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
