"""A row is judged alone by the HTTP API's own `to_table`, and gets its message."""

# Each row is validated as `{"features": row}` would be, before any batch is
# formed: a bad row is rejected with its file and line, never a whole batch.
# A CSV cell becomes the JSON value its column's kind reads it as
# (batch.io.cell_reader); a JSON Lines row keeps its JSON values.

from batch.validate.check import (
    check_lines,
    check_records,
    empty_table,
    row_values,
    validate,
)
from batch.validate.layout import BlockKey, Layout, Rejection
from batch.validate.rows import CsvRows, header_problems, parse_json_row, parse_record

__all__ = [
    "BlockKey",
    "CsvRows",
    "Layout",
    "Rejection",
    "check_lines",
    "check_records",
    "empty_table",
    "header_problems",
    "parse_json_row",
    "parse_record",
    "row_values",
    "validate",
]
