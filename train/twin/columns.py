"""Column preprocessing in the twin: ColumnTransformer, imputers and encoders
read the function's encoding of a row (strings as category codes) in float64.

skl2onnx cannot take these as they are: its ColumnTransformer finds columns by
input name, its SimpleImputer keeps fill values in float32 and cannot impute
strings whose missing value is NaN, and its encoders expect strings. The
twin's input is one float64 matrix in which a string column holds each
value's index among its categories (encoding.py), so here a ColumnTransformer
selects columns by position, and the imputer and encoders work on codes:
fill a missing code with the fill value's code, one-hot compare codes.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

from skserve.schema import Column, InputSchema
from train.twin.graph import Graph

# Attribute set on the conversion copy's estimators (never on the published
# model): the schema column each input column is, or None once transformed.
INPUTS = "_skserve_inputs"


def prepare(model: Any, schema: InputSchema) -> None:
    """Give each estimator of the copy that sees the raw columns those columns
    (positions within its input), and each ColumnTransformer positions in
    place of names, as skl2onnx needs with one input matrix."""
    _mark(model, list(schema.columns))


def _mark(estimator: Any, columns: list[Column | None]) -> None:
    from sklearn.compose import ColumnTransformer
    from sklearn.pipeline import Pipeline

    if isinstance(estimator, Pipeline):
        for _, step in estimator.steps:
            if step is None or step == "passthrough":
                continue
            _mark(step, columns)
            if not _keeps_columns(step):
                columns = [None] * len(columns)  # later steps see derived values
        return
    if isinstance(estimator, ColumnTransformer):
        indices = getattr(estimator, "_transformer_to_input_indices", None)
        if indices is None:
            raise NotImplementedError("a ColumnTransformer without its column map")
        rewritten = []
        for name, transformer, _ in estimator.transformers_:
            chosen = [int(i) for i in indices.get(name, [])]
            if not isinstance(transformer, str):
                _mark(transformer, [columns[i] for i in chosen])
            rewritten.append((name, transformer, chosen))
        estimator.transformers_ = rewritten
        return
    setattr(estimator, INPUTS, columns)


def _keeps_columns(step: Any) -> bool:
    from sklearn.impute import SimpleImputer
    from sklearn.preprocessing import (
        MaxAbsScaler,
        MinMaxScaler,
        RobustScaler,
        StandardScaler,
    )

    kept = (StandardScaler, MinMaxScaler, MaxAbsScaler, RobustScaler)
    if isinstance(step, SimpleImputer):
        dropped = not step.keep_empty_features and np.any(_missing(step.statistics_))
        return not step.add_indicator and not dropped
    return isinstance(step, kept)


def shape_calculators() -> dict[type, Callable[..., None]]:
    from sklearn.impute import SimpleImputer

    return {SimpleImputer: _imputer_shape}


def _imputer_shape(operator: Any) -> None:
    """The kept columns, then one indicator per feature it flags (skl2onnx's
    own calculator leaves the indicators out)."""
    from skl2onnx.common.data_types import DoubleTensorType

    imputer = operator.raw_operator
    statistics = np.asarray(imputer.statistics_, dtype=object)
    width = len(statistics)
    if not imputer.keep_empty_features:
        width -= int(np.sum(_missing(statistics)))
    if imputer.add_indicator:
        width += len(imputer.indicator_.features_)
    rows = operator.inputs[0].get_first_dimension()
    operator.outputs[0].type = DoubleTensorType([rows, width])


def converters() -> dict[type, Callable[..., None]]:
    from sklearn.impute import SimpleImputer
    from sklearn.preprocessing import OneHotEncoder, OrdinalEncoder

    return {
        SimpleImputer: _convert_imputer,
        OneHotEncoder: _convert_one_hot,
        OrdinalEncoder: _convert_ordinal,
    }


def _inputs(estimator: Any, width: int) -> list[Column | None]:
    columns = getattr(estimator, INPUTS, None)
    return list(columns) if columns is not None else [None] * width


def _missing(values: Any) -> np.ndarray:
    """Which of `values` (an object or float array) are missing markers."""
    return np.array(
        [v is None or (isinstance(v, float) and math.isnan(v)) for v in values]
    )


def _known(categories: Any) -> list[Any]:
    """An encoder's learned categories of one column, missing markers apart."""
    values = np.asarray(categories, dtype=object).tolist()
    return [
        v for v in values if not (v is None or (isinstance(v, float) and math.isnan(v)))
    ]


def _codes_of(column: Column | None, categories: list[Any], what: str) -> bool:
    """Whether an input column holds codes (a string/category column), checking
    that the codes index exactly `categories`, as the twin's encoding assumes."""
    if column is None or column.numeric:
        if categories and isinstance(categories[0], str):
            raise NotImplementedError(f"{what} reads strings the twin does not get")
        return False
    if list(column.categories or ()) != [_json(c) for c in categories]:
        raise NotImplementedError(
            f"{what}'s categories of {column.name!r} are not the schema's"
        )
    return True


def _json(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


def _column(graph: Graph, matrix: str, k: int) -> str:
    """Column k of a matrix, as a (rows, 1) matrix."""
    return graph.node("Gather", [matrix, graph.constant(np.array([k]))], axis=1)


def _convert_imputer(scope: Any, operator: Any, container: Any) -> None:
    """Each missing value (NaN) becomes its column's learned statistic, in
    float64 (a string column's: its most frequent string's code), followed,
    with add_indicator, by 0/1 columns saying which values were missing."""
    from onnx import TensorProto

    imputer = operator.raw_operator
    if not (
        isinstance(imputer.missing_values, float) and math.isnan(imputer.missing_values)
    ):
        raise NotImplementedError(
            f"SimpleImputer(missing_values={imputer.missing_values!r}): only NaN"
        )
    statistics = np.asarray(imputer.statistics_, dtype=object)
    columns = _inputs(imputer, len(statistics))
    fills, kept = [], []
    for k, value in enumerate(statistics.tolist()):
        column = columns[k]
        if isinstance(value, str):
            if column is None or column.categories is None:
                raise NotImplementedError(
                    "SimpleImputer fills a string the twin cannot code"
                )
            # A fill value the encoder after it never saw is an unknown one: -1.
            known = column.categories
            fills.append(float(known.index(value)) if value in known else -1.0)
            kept.append(k)
        elif value is None or (isinstance(value, float) and math.isnan(value)):
            if imputer.keep_empty_features:
                fills.append(0.0)  # scikit-learn fills an all-missing column with 0
                kept.append(k)
            else:
                fills.append(0.0)  # dropped from the output below
        else:
            fills.append(float(value))
            kept.append(k)
    graph = Graph(scope, container)
    x = operator.inputs[0].full_name
    filled = graph.node(
        "Where",
        [graph.node("IsNaN", [x]), graph.constant(np.array([fills])), x],
    )
    out = operator.outputs[0].full_name
    parts = [filled]
    if len(kept) != len(statistics):
        parts = [graph.node("Gather", [filled, graph.constant(np.array(kept))], axis=1)]
    if imputer.add_indicator:
        indicator = imputer.indicator_
        if indicator.features != "missing-only" and len(indicator.features_) != len(
            statistics
        ):
            raise NotImplementedError("SimpleImputer's indicator of these features")
        which = graph.constant(np.asarray(indicator.features_, dtype=np.int64))
        missing = graph.node("IsNaN", [graph.node("Gather", [x, which], axis=1)])
        parts.append(graph.node("Cast", [missing], to=TensorProto.DOUBLE))
    graph.node(
        "Concat" if len(parts) > 1 else "Identity",
        parts,
        out,
        **({"axis": 1} if len(parts) > 1 else {}),
    )


def _convert_one_hot(scope: Any, operator: Any, container: Any) -> None:
    """One float64 column per (kept) category: 1 where a row's code or number
    is that category, else 0 (an unknown one: all 0, as handle_unknown=
    "ignore" makes it); a learned missing category (always last) is 1 where
    the value is missing."""
    from onnx import TensorProto

    encoder = operator.raw_operator
    if getattr(encoder, "_infrequent_enabled", False):
        raise NotImplementedError("OneHotEncoder with infrequent categories")
    learned = encoder.categories_
    columns = _inputs(encoder, len(learned))
    drop = getattr(encoder, "drop_idx_", None)
    graph = Graph(scope, container)
    x = operator.inputs[0].full_name
    parts = []
    for k, categories in enumerate(learned):
        values = np.asarray(categories, dtype=object).tolist()
        known = _known(values)
        has_missing = len(known) < len(values)
        if has_missing and not _missing(values)[-1]:
            raise NotImplementedError("OneHotEncoder with a missing category inside")
        codes = _codes_of(columns[k], known, "OneHotEncoder")
        targets = [float(i) for i in range(len(known))] if codes else known
        dropped = None if drop is None or drop[k] is None else int(drop[k])
        column = _column(graph, x, k)
        kept = [t for i, t in enumerate(targets) if i != dropped]
        if kept:
            row = graph.constant(np.array([kept], dtype=np.float64))
            hits = graph.node("Equal", [column, row])
            parts.append(graph.node("Cast", [hits], to=TensorProto.DOUBLE))
        if has_missing and dropped != len(values) - 1:
            hit = graph.node("IsNaN", [column])
            parts.append(graph.node("Cast", [hit], to=TensorProto.DOUBLE))
    if not parts:
        raise NotImplementedError("OneHotEncoder with no output column")
    graph.node("Concat", parts, operator.outputs[0].full_name, axis=1)


def _convert_ordinal(scope: Any, operator: Any, container: Any) -> None:
    """A string column's code is its category's index already: keep it, with
    scikit-learn's unknown_value for an unknown one (-1) and
    encoded_missing_value for a missing one."""
    encoder = operator.raw_operator
    if getattr(encoder, "_infrequent_enabled", False):
        raise NotImplementedError("OrdinalEncoder with infrequent categories")
    learned = encoder.categories_
    columns = _inputs(encoder, len(learned))
    for k, categories in enumerate(learned):
        known = _known(categories)
        if not _codes_of(columns[k], known, "OrdinalEncoder"):
            raise NotImplementedError("OrdinalEncoder of numbers")
        values = np.asarray(categories, dtype=object).tolist()
        if len(known) != len(values) and not _missing(values)[-1]:
            raise NotImplementedError("OrdinalEncoder with a missing category inside")
    unknown = (
        encoder.unknown_value
        if encoder.handle_unknown == "use_encoded_value"
        else np.nan
    )
    missing = encoder.encoded_missing_value
    graph = Graph(scope, container)
    x = operator.inputs[0].full_name
    unseen = graph.node("Less", [x, graph.constant(np.array([[0.0]]))])
    known_or_unknown = graph.node(
        "Where", [unseen, graph.constant(np.array([[float(unknown)]])), x]
    )
    graph.node(
        "Where",
        [
            graph.node("IsNaN", [x]),
            graph.constant(np.array([[float(missing)]])),
            known_or_unknown,
        ],
        operator.outputs[0].full_name,
    )
