"""The input schema: what each feature may hold, read from the signed manifest.

Every row meets the model through it (`skserve.rows`); a manifest published
before schemas existed gets an all-numeric one, so there is one path, not two.
Stored text is never echoed: a malformed schema is refused in general terms.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from skserve.errors import IntegrityError

# Kinds a column may have: the first three are held as float64 (NaN = missing),
# the last two as Python objects (str, or another JSON scalar of a category).
NUMBER, INTEGER, BOOLEAN, STRING, CATEGORY = (
    "number",
    "integer",
    "boolean",
    "string",
    "category",
)
KINDS = (NUMBER, INTEGER, BOOLEAN, STRING, CATEGORY)
NUMERIC_KINDS = frozenset({NUMBER, INTEGER, BOOLEAN})
# How the model takes rows: a float (or, with string columns, object) array in
# the columns' order, or a pandas DataFrame with these names and dtypes.
ARRAY, DATAFRAME = "array", "dataframe"
FORMATS = (ARRAY, DATAFRAME)
MAX_CATEGORIES = 100_000  # per column; the manifest's 1 MiB bounds it anyway
_COLUMN_KEYS = frozenset({"name", "kind", "nullable", "categories", "unknown"})


@dataclass(frozen=True)
class Column:
    """One feature: its name, kind, whether it may be missing (JSON null), its
    known categories (JSON values, or None when the model keeps no list) and
    whether values outside them are accepted."""

    name: str
    kind: str = NUMBER
    nullable: bool = False
    categories: tuple[Any, ...] | None = None
    unknown: bool = True

    @property
    def numeric(self) -> bool:
        """Held as float64 (number, integer, boolean), else as objects."""
        return self.kind in NUMERIC_KINDS

    @property
    def dtype(self) -> str:
        """The pandas dtype a DataFrame gives this column: integers and booleans
        that may be missing are float64 and object, as pandas reads them."""
        if self.kind == INTEGER:
            return "float64" if self.nullable else "int64"
        if self.kind == BOOLEAN:
            return "object" if self.nullable else "bool"
        return {NUMBER: "float64", STRING: "object", CATEGORY: "category"}[self.kind]

    @property
    def refuses_unknown(self) -> bool:
        return self.categories is not None and not self.unknown

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "name": self.name,
            "kind": self.kind,
            "nullable": self.nullable,
        }
        if self.categories is not None:
            data["categories"] = list(self.categories)
            data["unknown"] = self.unknown
        return data


@dataclass(frozen=True)
class InputSchema:
    """The model's features in its order, and the form it takes them in."""

    columns: tuple[Column, ...]
    format: str = ARRAY
    named: bool = False  # rows may be objects keyed by name

    # Where the float64 and the object columns are (derived from `columns`).
    numeric_positions: tuple[int, ...] = field(init=False, repr=False, compare=False)
    object_positions: tuple[int, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        numeric = tuple(i for i, c in enumerate(self.columns) if c.numeric)
        other = tuple(i for i, c in enumerate(self.columns) if not c.numeric)
        object.__setattr__(self, "numeric_positions", numeric)
        object.__setattr__(self, "object_positions", other)

    @property
    def names(self) -> list[str]:
        return [column.name for column in self.columns]

    @property
    def all_numeric(self) -> bool:
        """Every column is held as float64: rows form one float matrix."""
        return not self.object_positions

    @property
    def strict_numeric(self) -> bool:
        """All plain numbers, none may be missing: the schema of every manifest
        published before schemas existed, and of most numeric models."""
        return all(
            c.kind == NUMBER and not c.nullable and c.categories is None
            for c in self.columns
        )

    @classmethod
    def numeric(cls, n_features: int, names: list[str] | None) -> InputSchema:
        """The schema of a manifest that has none: finite numbers only."""
        labels = names or [f"x{i}" for i in range(n_features)]
        return cls(tuple(Column(name) for name in labels), ARRAY, names is not None)

    @classmethod
    def from_manifest(cls, data: dict[str, Any]) -> InputSchema:
        """The manifest's `input_schema`, checked against its feature facts;
        IntegrityError (naming no stored text) if it is malformed."""
        n_features = data.get("n_features")
        names = data.get("feature_names")
        if type(n_features) is not int or n_features < 1:
            raise IntegrityError("manifest.json has an invalid n_features")
        if names is not None and not (
            isinstance(names, list)
            and len(names) == n_features
            and all(isinstance(n, str) for n in names)
            and len(set(names)) == n_features
        ):
            raise IntegrityError("manifest.json has invalid feature_names")
        raw = data.get("input_schema")
        if raw is None:
            return cls.numeric(n_features, names)
        try:
            schema = cls.from_json(raw, named=names is not None)
        except ValueError as exc:
            raise IntegrityError(
                f"manifest.json has an invalid input_schema: {exc}"
            ) from None
        expected = names or [f"x{i}" for i in range(n_features)]
        if schema.names != expected:
            raise IntegrityError(
                "manifest.json's input_schema does not list its feature_names in order"
            )
        return schema

    @classmethod
    def from_json(cls, raw: Any, *, named: bool) -> InputSchema:
        """Parse the JSON form; ValueError says what is wrong without quoting it."""
        if not isinstance(raw, dict) or set(raw) - {"format", "columns"}:
            raise ValueError("it is not an object of format and columns")
        form = raw.get("format", ARRAY)
        if form not in FORMATS:
            raise ValueError(f"its format is not one of {', '.join(FORMATS)}")
        columns = raw.get("columns")
        if not isinstance(columns, list) or not columns:
            raise ValueError("its columns are not a non-empty list")
        parsed = tuple(_column(item, i) for i, item in enumerate(columns))
        if len({c.name for c in parsed}) != len(parsed):
            raise ValueError("it names a column twice")
        return cls(parsed, form, named)

    def to_json(self) -> dict[str, Any]:
        return {
            "format": self.format,
            "columns": [column.to_json() for column in self.columns],
        }


def _column(item: Any, i: int) -> Column:
    if not isinstance(item, dict) or set(item) - _COLUMN_KEYS:
        raise ValueError(
            f"column {i} is not an object of {', '.join(sorted(_COLUMN_KEYS))}"
        )
    name, kind = item.get("name"), item.get("kind", NUMBER)
    nullable, unknown = item.get("nullable", False), item.get("unknown", True)
    if not isinstance(name, str) or not name:
        raise ValueError(f"column {i} has no name")
    if kind not in KINDS:
        raise ValueError(f"column {i}'s kind is not one of {', '.join(KINDS)}")
    if not isinstance(nullable, bool) or not isinstance(unknown, bool):
        raise ValueError(f"column {i}'s nullable and unknown must be true or false")
    categories = item.get("categories")
    if categories is not None:
        categories = _categories(categories, kind, i)
    elif kind == CATEGORY:
        raise ValueError(f"column {i} is a category without categories")
    return Column(name, kind, nullable, categories, unknown)


def _categories(values: Any, kind: str, i: int) -> tuple[Any, ...]:
    """Known values, of the column's JSON type, distinct, finite."""
    if not isinstance(values, list) or len(values) > MAX_CATEGORIES:
        raise ValueError(f"column {i}'s categories are not a list")
    if kind == STRING:
        ok = all(isinstance(v, str) for v in values)
    elif kind == BOOLEAN:
        ok = all(isinstance(v, bool) for v in values)
    elif kind == CATEGORY:
        ok = all(isinstance(v, str) for v in values) or all(
            _is_number(v) for v in values
        )
    else:
        ok = all(_is_number(v) for v in values)
        if ok and kind == INTEGER:
            ok = all(float(v).is_integer() for v in values)
    if not ok:
        raise ValueError(f"column {i}'s categories are not all of its kind")
    if len(set(values)) != len(values):
        raise ValueError(f"column {i} lists a category twice")
    return tuple(values)


def _is_number(value: Any) -> bool:
    return type(value) in (int, float) and math.isfinite(value)
