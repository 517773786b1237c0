"""The twin sees rows exactly as the function encodes them, and the gate asks
scikit-learn about the same rows exactly as the function would give them.

The function's ONNX runtime turns typed rows into one float64 matrix (numbers
as they are, NaN where missing; each string or category as its index among
the schema's categories, -1 for one the model has not seen). The gate builds
its rows in that space, and decodes them into the typed rows the scikit-learn
runtime would receive, so both sides answer the same request.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from skserve.rows import Table
from skserve.runtimes.onnx import code_lookups, encode
from skserve.runtimes.sklearn import array_of, frame_of
from skserve.schema import DATAFRAME, InputSchema

UNSEEN = "__skserve_unseen_category__"  # a string no model was fitted with


def encoded(table: Table, schema: InputSchema) -> np.ndarray:
    """`table` as the function's ONNX runtime gives it to a twin."""
    return encode(table, schema, code_lookups(schema))


def decoded(matrix: np.ndarray, schema: InputSchema) -> Table:
    """Rows of the twin's input space back as the typed rows they encode."""
    numbers = np.ascontiguousarray(matrix[:, list(schema.numeric_positions)])
    objects = np.empty((len(matrix), len(schema.object_positions)), dtype=object)
    for k, position in enumerate(schema.object_positions):
        column = schema.columns[position]
        categories = list(column.categories or ())
        unseen = unseen_value(categories)
        values = []
        for code in matrix[:, position]:
            if np.isnan(code):
                values.append(None)
            elif code < 0:
                values.append(unseen)
            else:
                values.append(categories[int(code)])
        objects[:, k] = values
    return Table(numbers, objects)


def unseen_value(categories: list[Any]) -> Any:
    """A value of the categories' JSON type that is not one of them."""
    if not categories or isinstance(categories[0], str):
        return UNSEEN
    return int(max(float(c) for c in categories)) + 1


def model_input(model: Any, table: Table, schema: InputSchema) -> Any:
    """What the function's scikit-learn runtime gives `model` for `table`."""
    if schema.format == DATAFRAME:
        return frame_of(table, schema)
    return array_of(table, schema, from_frame=hasattr(model, "feature_names_in_"))


def code_columns(schema: InputSchema) -> dict[int, int]:
    """Position -> number of categories, for every column held as codes."""
    return {
        position: len(schema.columns[position].categories or ())
        for position in schema.object_positions
    }


def valid_codes(
    matrix: np.ndarray, schema: InputSchema, rng: np.random.Generator
) -> None:
    """Make every code column of generated rows hold a code the function can
    send (in place): a category's index, -1 where unknown ones are accepted,
    NaN where the column may be missing; anything else becomes a random one."""
    for position, count in code_columns(schema).items():
        column = schema.columns[position]
        values = matrix[:, position]
        low = -1 if column.unknown else 0
        whole = np.isfinite(values) & (np.mod(values, 1) == 0)
        ok = whole & (values >= low) & (values < count)
        ok |= np.isnan(values) & column.nullable
        bad = ~ok
        if bad.any():
            values[bad] = rng.integers(low, max(count, low + 1), size=int(bad.sum()))
        matrix[:, position] = values


def every_category(
    reference: np.ndarray, schema: InputSchema, rng: np.random.Generator
) -> np.ndarray:
    """Reference rows with each code column set to each of its codes in turn
    (every known category, an unseen one where accepted, missing where it may
    be): the rows a twin's encoders are judged on."""
    blocks = []
    for position, count in code_columns(schema).items():
        column = schema.columns[position]
        codes = list(range(count)) + ([-1] if column.unknown else [])
        codes += [np.nan] if column.nullable else []
        block = reference[rng.integers(len(reference), size=len(codes))].copy()
        block[:, position] = codes
        blocks.append(block)
    return np.vstack(blocks) if blocks else np.empty((0, reference.shape[1]))
