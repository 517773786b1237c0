"""PolynomialFeatures multiplies columns in float64 in scikit-learn's order."""

# skl2onnx's converter writes the bias column as a float32 constant beside
# float64 products (onnxruntime refuses the Concat), and multiplies each
# term's columns with ReduceProd, in an order of its own. scikit-learn builds
# degree d from degree d-1: for each feature i, the degree d-1 terms that
# start at i times column i, so x0*x1*x2 is (x2*x1)*x0, bit for bit here.

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from train.twin.graph import Graph


def _columns(graph: Graph, matrix: str, start: int, stop: int, axis: int = 1) -> str:
    """matrix[:, start:stop] (or [start:stop] along another axis)."""
    return graph.node(
        "Slice",
        [
            matrix,
            graph.constant(np.array([start])),
            graph.constant(np.array([stop])),
            graph.constant(np.array([axis])),
        ],
    )


def _convert_polynomial(scope: Any, operator: Any, container: Any) -> None:
    """PolynomialFeatures.transform for dense input, step for step."""
    from onnx import TensorProto, helper

    model = operator.raw_operator
    n = int(model.n_features_in_)
    graph = Graph(scope, container)
    X = graph.node("Cast", [operator.inputs[0].full_name], to=TensorProto.DOUBLE)
    degree_min, degree_max = int(model._min_degree), int(model._max_degree)
    parts: list[str] = []  # the columns of XP, block by block
    if model.include_bias:
        rows = _columns(graph, graph.node("Shape", [X]), 0, 1, axis=0)
        shape = graph.node("Concat", [rows, graph.constant(np.array([1]))], axis=0)
        parts.append(
            graph.node(
                "ConstantOfShape",
                [shape],
                value=helper.make_tensor("value", TensorProto.DOUBLE, [1], [1.0]),
            )
        )
    if degree_max >= 1:
        # `index` and `previous` follow scikit-learn's: index[i] is where the
        # terms of the last degree that start with feature i begin in XP.
        offset = 1 if model.include_bias else 0
        parts.append(X)
        previous, previous_start = X, offset
        index = [offset + i for i in range(n)] + [offset + n]
        current = offset + n
        for _ in range(2, degree_max + 1):
            new_index = []
            end = index[-1]
            blocks = []
            for i in range(n):
                start = index[i]
                new_index.append(current)
                if model.interaction_only:
                    start += index[i + 1] - index[i]
                following = current + end - start
                if following <= current:
                    break
                terms = _columns(
                    graph, previous, start - previous_start, end - previous_start
                )
                feature = _columns(graph, X, i, i + 1)
                blocks.append(graph.node("Mul", [terms, feature]))
                current = following
            new_index.append(current)
            if not blocks:
                break
            previous_start = new_index[0]
            previous = (
                blocks[0] if len(blocks) == 1 else graph.node("Concat", blocks, axis=1)
            )
            parts.append(previous)
            index = new_index
    full = parts[0] if len(parts) == 1 else graph.node("Concat", parts, axis=1)
    if degree_min > 1:
        # scikit-learn keeps the bias and the terms of degree >= min_degree.
        total, kept = int(model._n_out_full), int(model.n_output_features_)
        if model.include_bias:
            upper = _columns(graph, full, total - kept + 1, total)
            full = graph.node("Concat", [parts[0], upper], axis=1)
        else:
            full = _columns(graph, full, total - kept, total)
    graph.node("Identity", [full], operator.outputs[0].full_name)


def converters() -> dict[type, Callable[..., None]]:
    """PolynomialFeatures (skl2onnx's mixes float32 into float64 output)."""
    from sklearn.preprocessing import PolynomialFeatures

    return {PolynomialFeatures: _convert_polynomial}
