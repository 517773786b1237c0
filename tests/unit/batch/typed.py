"""The typed schema the batch unit tests share: every kind, missing values
allowed in some columns, a closed category list and an open one of numbers."""

from __future__ import annotations

from skserve.schema import InputSchema

TYPED_SCHEMA = InputSchema.from_json(
    {
        "format": "dataframe",
        "columns": [
            {"name": "income", "kind": "number", "nullable": True},
            {"name": "age", "kind": "integer", "nullable": False},
            {"name": "member", "kind": "boolean", "nullable": True},
            {"name": "plan", "kind": "string", "nullable": False},
            {
                "name": "region",
                "kind": "category",
                "nullable": True,
                "categories": ["n", "s"],
                "unknown": False,
            },
            {
                "name": "tier",
                "kind": "category",
                "nullable": False,
                "categories": [1, 2, 3],
                "unknown": True,
            },
        ],
    },
    named=True,
)
