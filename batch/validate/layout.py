"""What rows must hold; a judged row is either in a block's key or a Rejection."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, NamedTuple

from skserve.schema import InputSchema


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
