"""KMeans picks a row's cluster from the same float64 sums scikit-learn compares."""

# scikit-learn's KMeans.predict compares ||c||^2 - 2 x.c over the centres c
# (one BLAS gemm, then the first smallest); skl2onnx's converter adds ||x||^2
# first, which rounds those sums to the precision of ||x||^2 and so ties or
# swaps centres that scikit-learn tells apart (e.g. for rows far from the
# origin). This writes scikit-learn's sums: Gemm(X, C, ||C||^2, alpha=-2).

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from train.twin.graph import Graph


def _convert_kmeans(scope: Any, operator: Any, container: Any) -> None:
    """Labels: the first centre with the smallest ||c||^2 - 2 x.c; scores: the
    distances to every centre (as KMeans.transform; never served)."""
    from onnx import TensorProto
    from sklearn.utils.extmath import row_norms

    model = operator.raw_operator
    if model.cluster_centers_.dtype != np.float64:
        # scikit-learn then computes in float32, and refuses float64 rows.
        raise NotImplementedError(
            f"{type(model).__name__} was fitted on {model.cluster_centers_.dtype} "
            "data; only float64 centres are supported"
        )
    centres = np.asarray(model.cluster_centers_, dtype=np.float64)
    graph = Graph(scope, container)
    X = graph.node("Cast", [operator.inputs[0].full_name], to=TensorProto.DOUBLE)
    partial = graph.node(
        "Gemm",
        [X, graph.constant(centres), graph.constant(row_norms(centres, squared=True))],
        alpha=-2.0,
        beta=1.0,
        transB=1,
    )
    graph.node("ArgMin", [partial], operator.outputs[0].full_name, axis=1, keepdims=0)
    squares = graph.node(
        "ReduceSum",
        [graph.node("Mul", [X, X]), graph.constant(np.array([1]))],
        keepdims=1,
    )
    distances = graph.node(
        "Max", [graph.node("Add", [squares, partial]), graph.constant(0.0)]
    )
    graph.node("Sqrt", [distances], operator.outputs[1].full_name)


def converters() -> dict[type, Callable[..., None]]:
    """KMeans and MiniBatchKMeans (same predict)."""
    from sklearn.cluster import KMeans, MiniBatchKMeans

    return {KMeans: _convert_kmeans, MiniBatchKMeans: _convert_kmeans}
