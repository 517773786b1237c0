"""Request parsing: JSON body -> a structurally valid Payload.

Checked before the model is loaded, so malformed requests never wait for it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from skserve.errors import BadRequest, PayloadTooLarge


@dataclass(frozen=True)
class Payload:
    """A structurally valid request: one row (`features`) or a batch (`instances`)."""

    rows: list[list[Any] | dict[str, Any]]
    single: bool
    probabilities: bool


def parse_payload(body: bytes, *, max_rows: int) -> Payload:
    """Decode the JSON body and check its shape; BadRequest/PayloadTooLarge if not."""
    try:
        data = json.loads(body, object_pairs_hook=_unique_keys)
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
    except ValueError as exc:  # duplicate keys; integers beyond Python's digit limit
        raise BadRequest(f"unusable JSON: {exc}", code="invalid_json") from None
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


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """Refuse duplicate keys: which value was meant is ambiguous."""
    data = dict(pairs)
    if len(data) != len(pairs):
        seen: set[str] = set()
        duplicate = next(k for k, _ in pairs if k in seen or seen.add(k))
        raise ValueError(f"duplicate key {duplicate[:40]!r}")
    return data
