"""Rows -> the float matrix a model expects: order, count and value checks.

Runs after the model is loaded, since feature counts and names come from it.
Messages name rows as the JSON API does: `features` for one row, else
`instances[i]`.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from skserve.errors import BadRequest, Code

_NUMBER = (int, float)


def to_matrix(
    rows: Sequence[list[Any] | dict[str, Any]],
    *,
    single: bool,
    n_features: int,
    feature_names: list[str] | None,
) -> np.ndarray:
    """Order each row's values as the model expects and return a float64 matrix.

    Rows are lists in the model's order or objects keyed by feature name.
    """
    where = "features" if single else "instances[{i}]"
    allowed = frozenset(feature_names or ())
    ordered = [
        _ordered(row, n_features, feature_names, allowed, where.format(i=i))
        for i, row in enumerate(rows)
    ]
    if not all(type(v) in _NUMBER for row in ordered for v in row):
        _raise_first_invalid(ordered, single, feature_names)
    try:
        matrix = np.array(ordered, dtype=np.float64).reshape(len(ordered), n_features)
    except OverflowError:  # an integer beyond float range
        _raise_first_invalid(ordered, single, feature_names)
        raise
    if not np.isfinite(matrix).all():
        _raise_first_invalid(ordered, single, feature_names)
    return matrix


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
            f"send a list of {n_features} numbers",
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


def _raise_first_invalid(
    rows: list[list[Any]], single: bool, names: list[str] | None
) -> None:
    for i, row in enumerate(rows):
        for j, value in enumerate(row):
            if type(value) in _NUMBER and _finite(value):
                continue
            where = f"features[{j}]" if single else f"instances[{i}][{j}]"
            if names:
                where += f" ({names[j]!r})"
            shown = json.dumps(value)
            shown = shown if len(shown) <= 40 else shown[:37] + "..."
            raise BadRequest(
                f"{where} must be a finite number, got {shown}", code=Code.INVALID_VALUE
            )


def _finite(value: float) -> bool:
    try:
        return math.isfinite(value)
    except OverflowError:
        return False
