"""skserve.schema: the manifest's input schema is read strictly, and an older
manifest gets the all-numeric schema it was always served with."""

from __future__ import annotations

import json
from typing import Any

import pytest

from skserve.errors import IntegrityError
from skserve.manifest import Manifest
from skserve.schema import Column, InputSchema

FACTS: dict[str, Any] = {
    "name": "m",
    "version": "20261127T073000.000Z-3f9a1c2b",
    "task": "classification",
    "n_features": 3,
    "feature_names": ["income", "plan", "member"],
    "files": {},
}
SCHEMA: dict[str, Any] = {
    "format": "dataframe",
    "columns": [
        {"name": "income", "kind": "number", "nullable": True},
        {
            "name": "plan",
            "kind": "string",
            "nullable": False,
            "categories": ["basic", "premium"],
            "unknown": False,
        },
        {"name": "member", "kind": "boolean", "nullable": False},
    ],
}


def _manifest(**changes: Any) -> Manifest:
    return Manifest.from_bytes(json.dumps({**FACTS, **changes}).encode())


def test_a_manifest_without_a_schema_takes_finite_numbers_only() -> None:
    schema = _manifest().input_schema

    assert schema.names == FACTS["feature_names"]
    assert schema.format == "array" and schema.named
    assert schema.strict_numeric and schema.all_numeric
    assert all(c == Column(c.name) for c in schema.columns)


def test_a_manifest_without_names_gets_positional_column_names() -> None:
    schema = _manifest(feature_names=None).input_schema

    assert schema.names == ["x0", "x1", "x2"]
    assert not schema.named


def test_a_published_schema_round_trips_through_the_manifest() -> None:
    schema = _manifest(input_schema=SCHEMA).input_schema

    assert schema.to_json() == SCHEMA
    assert schema.numeric_positions == (0, 2)
    assert schema.object_positions == (1,)
    plan = schema.columns[1]
    assert plan.refuses_unknown and plan.categories == ("basic", "premium")
    assert not schema.all_numeric and not schema.strict_numeric


@pytest.mark.parametrize(
    ("kind", "nullable", "dtype"),
    [
        ("number", False, "float64"),
        ("number", True, "float64"),
        ("integer", False, "int64"),
        ("integer", True, "float64"),
        ("boolean", False, "bool"),
        ("boolean", True, "object"),
        ("string", True, "object"),
    ],
)
def test_each_kind_has_the_dtype_pandas_gives_it(
    kind: str, nullable: bool, dtype: str
) -> None:
    assert Column("c", kind, nullable).dtype == dtype


def _columns(**changes: Any) -> dict[str, Any]:
    columns = json.loads(json.dumps(SCHEMA["columns"]))
    columns[1].update(changes)
    return {"format": "dataframe", "columns": columns}


@pytest.mark.parametrize(
    ("schema", "problem"),
    [
        ([], "not an object of format and columns"),
        ({"format": "parquet", "columns": []}, "format is not one of array"),
        ({"columns": []}, "columns are not a non-empty list"),
        (_columns(kind="text"), "column 1's kind is not one of"),
        (_columns(nullable="yes"), "must be true or false"),
        (_columns(categories=["basic", 3]), "categories are not all of its kind"),
        (_columns(categories=["a", "a"]), "lists a category twice"),
        (_columns(colour="red"), "column 1 is not an object of"),
        (_columns(name=""), "column 1 has no name"),
        (
            {"columns": [{"name": "c", "kind": "category"}]},
            "a category without categories",
        ),
    ],
)
def test_a_malformed_schema_is_an_integrity_error_quoting_nothing_stored(
    schema: Any, problem: str
) -> None:
    with pytest.raises(IntegrityError) as raised:
        _manifest(input_schema=schema).input_schema  # noqa: B018

    assert problem in raised.value.message
    assert "colour" not in raised.value.message and "text" not in raised.value.message


def test_a_schema_must_list_the_manifests_feature_names_in_order() -> None:
    swapped = {**SCHEMA, "columns": SCHEMA["columns"][::-1]}

    with pytest.raises(IntegrityError, match="feature_names in order"):
        _manifest(input_schema=swapped).input_schema  # noqa: B018


def test_numeric_categories_of_an_integer_column_must_be_whole() -> None:
    raw = {"columns": [{"name": "x0", "kind": "integer", "categories": [1, 2.5]}]}

    with pytest.raises(ValueError, match="not all of its kind"):
        InputSchema.from_json(raw, named=False)
