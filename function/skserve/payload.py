"""Request parsing and validation: JSON body -> rows -> a float matrix.

Structure is checked before the model is loaded; feature counts and names after.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from skserve.errors import BadRequest, PayloadTooLarge

_NUMBER = (int, float)


@dataclass(frozen=True)
class Payload:
    """A structurally valid request: one row (`features`) or a batch (`instances`)."""

    rows: list[list[Any] | dict[str, Any]]
    single: bool
    probabilities: bool


def parse_payload(body: bytes, *, max_rows: int) -> Payload:
    """Decode the JSON body and check its shape; BadRequest/PayloadTooLarge if not."""
    try:
        data = json.loads(body)
    except UnicodeDecodeError:
        raise BadRequest(
            "body is not UTF-8 encoded JSON", code="invalid_json"
        ) from None
    except json.JSONDecodeError as exc:
        raise BadRequest(
            f"malformed JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})",
            code="invalid_json",
        ) from None
    except RecursionError:
        raise BadRequest("JSON is nested too deeply", code="invalid_json") from None
    if not isinstance(data, dict):
        raise BadRequest(
            'body must be a JSON object such as {"features": [...]}',
            code="invalid_request",
        )
    probabilities = data.get("probabilities", False)
    if not isinstance(probabilities, bool):
        raise BadRequest(
            '"probabilities" must be true or false', code="invalid_request"
        )
    if ("features" in data) == ("instances" in data):
        raise BadRequest(
            'send either "features" (one row) or "instances" (a list of rows)'
            + (", not both" if "features" in data else ""),
            code="missing_input",
        )
    if "features" in data:
        row = data["features"]
        if not isinstance(row, list | dict):
            raise BadRequest(
                '"features" must be a list of numbers or an object of named numbers',
                code="invalid_request",
            )
        return Payload([row], single=True, probabilities=probabilities)
    rows = data["instances"]
    if not isinstance(rows, list):
        raise BadRequest('"instances" must be a list of rows', code="invalid_request")
    if not rows:
        raise BadRequest(
            '"instances" is empty; send at least one row', code="empty_batch"
        )
    if len(rows) > max_rows:
        raise PayloadTooLarge(
            f"{len(rows)} rows exceed MAX_ROWS={max_rows}; split the batch",
            code="too_many_rows",
        )
    for i, row in enumerate(rows):
        if not isinstance(row, list | dict):
            raise BadRequest(
                f"instances[{i}] must be a list of numbers or an object of named "
                "numbers",
                code="invalid_request",
            )
    return Payload(rows, single=False, probabilities=probabilities)


def to_matrix(
    payload: Payload, n_features: int, feature_names: list[str] | None
) -> np.ndarray:
    """Order each row's values as the model expects and return a float64 matrix."""
    where = "features" if payload.single else "instances[{i}]"
    ordered = [
        _ordered(row, n_features, feature_names, where.format(i=i))
        for i, row in enumerate(payload.rows)
    ]
    if not all(type(v) in _NUMBER for row in ordered for v in row):
        _raise_first_invalid(ordered, payload.single, feature_names)
    try:
        matrix = np.array(ordered, dtype=np.float64).reshape(len(ordered), n_features)
    except OverflowError:  # an integer beyond float range
        _raise_first_invalid(ordered, payload.single, feature_names)
        raise
    if not np.isfinite(matrix).all():
        _raise_first_invalid(ordered, payload.single, feature_names)
    return matrix


def _ordered(
    row: list[Any] | dict[str, Any],
    n_features: int,
    names: list[str] | None,
    where: str,
) -> list[Any]:
    if isinstance(row, list):
        if len(row) != n_features:
            raise BadRequest(
                f"{where} has {len(row)} features, expected {n_features}",
                code="wrong_feature_count",
            )
        return row
    if not names:
        raise BadRequest(
            f"{where} is an object, but this model has no feature names; "
            f"send a list of {n_features} numbers",
            code="invalid_request",
        )
    missing = [name for name in names if name not in row]
    unknown = sorted(key for key in row if key not in set(names))
    if missing or unknown:
        parts = []
        if missing:
            parts.append(f"missing {', '.join(map(repr, missing))}")
        if unknown:
            parts.append(f"unknown {', '.join(map(repr, unknown[:20]))}")
        raise BadRequest(
            f"{where}: {'; '.join(parts)} (expected: {', '.join(names)})",
            code="unknown_features" if unknown else "missing_features",
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
            shown = json.dumps(value)[:40]
            raise BadRequest(
                f"{where} must be a finite number, got {shown}", code="invalid_value"
            )


def _finite(value: float) -> bool:
    try:
        return math.isfinite(value)
    except OverflowError:
        return False
