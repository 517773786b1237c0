"""HistGradientBoosting's twin routes every row as scikit-learn's predictors do."""

# skl2onnx's converter writes TreeEnsembleRegressor/Classifier, whose outputs
# are float32 (onnxruntime then refuses the double outputs a twin declares),
# and it ignores categorical splits (sklearn-onnx#1051), so this one writes
# one float64 TreeEnsemble (ai.onnx.ml opset 5) from the fitted predictors.
#
# What scikit-learn does, and how the twin does the same:
# - Categorical features first go through the model's `_preprocessor`, an
#   OrdinalEncoder (unknown and missing -> NaN) whose output puts the
#   categorical columns first, the numeric ones after. The twin rebuilds that
#   matrix: each categorical column becomes its ordinal code by exact
#   comparison with the encoder's categories (a code column of the function's
#   encoding: with 0..k-1, after checking the schema's categories are the
#   encoder's), NaN for anything else (-1, unseen values, missing).
# - Numeric split: x <= num_threshold in float64 goes left, NaN goes where
#   missing_go_to_left says (nodes_missing_value_tracks_true).
# - Categorical split: a code in the node's raw_left_cat_bitset goes left, any
#   other known code right, NaN (missing or unknown) where missing_go_to_left
#   says. The twin tests membership of the set whose branch NaN does not take,
#   so NaN, which is in no set, falls to the other branch (BRANCH_MEMBER).
#   The tested values are whole codes: onnxruntime truncates inputs to
#   integers when a set is large or holds values beyond 30, so raw values
#   are never tested directly.
# - Raw scores: the baseline, then each iteration's trees, summed in order;
#   labels from the raw scores (binary: class 1 iff raw > 0; several
#   classes: the first highest score), probabilities through the loss's
#   inverse link in float64 (expit, softmax), regression values likewise
#   (identity, or exp for the poisson, gamma and tweedie losses).

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

import numpy as np

from skserve.schema import InputSchema
from train.twin.graph import SKL2ONNX_ML_OPSET, Graph

# ai.onnx.ml TreeEnsemble node modes.
BRANCH_LEQ, BRANCH_MEMBER = 0, 6
# Where prepare() records, on the converted copy, the input columns the
# function sends as category codes (position -> the schema's categories).
CODES = "_skserve_code_columns"


def converters() -> dict[type, Callable[..., None]]:
    from sklearn.ensemble import (
        HistGradientBoostingClassifier,
        HistGradientBoostingRegressor,
    )

    return {
        HistGradientBoostingClassifier: _convert_classifier,
        HistGradientBoostingRegressor: _convert_regressor,
    }


def prepare(model: Any, schema: InputSchema) -> None:
    """Tell a HistGradientBoosting model that sees the function's input columns
    unchanged (alone, or after passthrough steps) which of them hold codes."""
    from sklearn.ensemble import (
        HistGradientBoostingClassifier,
        HistGradientBoostingRegressor,
    )

    estimator = model
    for _, step in getattr(model, "steps", None) or []:
        if step is None or (isinstance(step, str) and step == "passthrough"):
            continue
        estimator = step
        break
    if isinstance(
        estimator, HistGradientBoostingClassifier | HistGradientBoostingRegressor
    ):
        setattr(
            estimator,
            CODES,
            {
                position: tuple(schema.columns[position].categories or ())
                for position in schema.object_positions
            },
        )


def split_trees(estimator: Any) -> Iterator[SimpleNamespace]:
    """Each predictor's numeric splits as (feature, threshold) arrays, features
    as input columns (-1 for leaves and categorical splits): the parity gate's
    threshold rows."""
    order = _layout(estimator, {}, values=False).order
    for iteration in estimator._predictors:
        for predictor in iteration:
            nodes = predictor.nodes
            numeric = (nodes["is_leaf"] == 0) & (nodes["is_categorical"] == 0)
            feature = np.full(len(nodes), -1, dtype=np.int64)
            feature[numeric] = order[nodes["feature_idx"][numeric]]
            yield SimpleNamespace(
                feature=feature, threshold=nodes["num_threshold"].astype(np.float64)
            )


@dataclass(frozen=True)
class _Layout:
    """The predictors' feature space: order[f] is the input column of predictor
    feature f; categories[f] the values a categorical one holds in the twin's
    input, in the encoder's order (its position is the ordinal code)."""

    order: np.ndarray
    categories: dict[int, np.ndarray]


def _layout(
    estimator: Any, codes: dict[int, tuple[Any, ...]], *, values: bool = True
) -> _Layout:
    preprocessor = getattr(estimator, "_preprocessor", None)
    n_features = int(estimator.n_features_in_)
    if preprocessor is None:
        if codes:
            raise NotImplementedError(
                f"{_name(next(iter(codes)), estimator)} holds categories but "
                "HistGradientBoosting reads it as a number"
            )
        return _Layout(np.arange(n_features), {})
    inputs = preprocessor._transformer_to_input_indices
    # The ColumnTransformer's output: the encoder's columns, then the others.
    names = [name for name in ("encoder", "numerical") if len(inputs.get(name, []))]
    names.sort(key=lambda name: preprocessor.output_indices_[name].start)
    order = [int(i) for name in names for i in inputs[name]]
    if sorted(order) != list(range(n_features)):
        raise NotImplementedError("HistGradientBoosting's preprocessor drops columns")
    encoded = [int(i) for i in inputs.get("encoder", [])]
    categories: dict[int, np.ndarray] = {}
    if values:
        learned = preprocessor.named_transformers_["encoder"].categories_
        for column, known in zip(encoded, learned, strict=True):
            categories[order.index(column)] = _twin_values(
                estimator, column, known, codes
            )
    unread = set(codes) - set(encoded)
    if unread:
        raise NotImplementedError(
            f"{_name(min(unread), estimator)} holds categories but "
            "HistGradientBoosting reads it as a number"
        )
    return _Layout(np.asarray(order, dtype=np.int64), categories)


def _twin_values(
    estimator: Any, column: int, known: np.ndarray, codes: dict[int, tuple[Any, ...]]
) -> np.ndarray:
    """What the twin's input holds for each entry of a categorical column's
    encoder categories (the entry's position is its ordinal code): its index
    among the schema's categories where the function sends codes, else the
    value; NaN, which equals nothing, for a missing marker (None or NaN: the
    encoder makes those missing, so no code is ever theirs)."""
    from sklearn.utils._missing import is_scalar_nan

    entries = list(np.asarray(known, dtype=object))
    missing = [value is None or is_scalar_nan(value) for value in entries]
    present = [value for value, gap in zip(entries, missing, strict=True) if not gap]
    if column in codes:
        plain = [value.item() if hasattr(value, "item") else value for value in present]
        if list(codes[column]) != plain:
            raise NotImplementedError(
                f"the schema's categories of {_name(column, estimator)} are not "
                "HistGradientBoosting's (its encoder's, in order)"
            )
        held = iter(range(len(present)))
        return np.array([np.nan if gap else next(held) for gap in missing], float)
    try:
        return np.array(
            [
                np.nan if gap else float(v)
                for v, gap in zip(entries, missing, strict=True)
            ],
            dtype=np.float64,
        )
    except (TypeError, ValueError):
        raise NotImplementedError(
            f"{_name(column, estimator)} holds categories the twin's input cannot "
            "hold (not numbers, and not sent as codes)"
        ) from None


def _name(column: int, estimator: Any) -> str:
    names = getattr(estimator, "feature_names_in_", None)
    return repr(str(names[column])) if names is not None else f"column {column}"


class _Ensemble:
    """The attributes of one TreeEnsemble node (ai.onnx.ml opset 5) holding
    HistGradientBoosting predictors, tree by tree, one target each."""

    def __init__(self, n_targets: int) -> None:
        self.n_targets = n_targets
        self.roots: list[int] = []
        self.columns: dict[str, list[Any]] = {
            key: []
            for key in (
                "feature",
                "split",
                "mode",
                "true",
                "true_leaf",
                "false",
                "false_leaf",
                "missing_true",
            )
        }
        self.members: list[float] = []  # each set's codes, then NaN
        self.leaf_targets: list[int] = []
        self.leaf_weights: list[float] = []

    def add_constant(self, target: int, weight: float) -> None:
        """A tree that always answers `weight`: one split whose branches are two
        leaves of that weight. (Both branches on one leaf mean a lone leaf, which
        onnx's reference evaluator looks up by node index, not leaf index.)"""
        true, false = self._leaf(target, weight), self._leaf(target, weight)
        self.roots.append(len(self.columns["feature"]))
        self._node(0, 0.0, BRANCH_LEQ, (true, 1), (false, 1), 0)

    def add_predictor(
        self, predictor: Any, target: int, categories: dict[int, np.ndarray]
    ) -> None:
        nodes = predictor.nodes
        if nodes["is_leaf"][0]:
            self.add_constant(target, float(nodes["value"][0]))
            return
        internal = np.flatnonzero(nodes["is_leaf"] == 0)
        index = np.full(len(nodes), -1, dtype=np.int64)
        index[internal] = len(self.columns["feature"]) + np.arange(len(internal))
        for i in np.flatnonzero(nodes["is_leaf"]):
            index[i] = self._leaf(target, float(nodes["value"][i]))
        self.roots.append(int(index[0]))  # node 0 is the root, the first internal

        def child(i: int) -> tuple[int, int]:
            return int(index[i]), int(nodes["is_leaf"][i])

        for i in internal:
            node = nodes[i]
            left, right = child(int(node["left"])), child(int(node["right"]))
            feature = int(node["feature_idx"])
            if not node["is_categorical"]:
                tracks = int(node["missing_go_to_left"])
                split = float(node["num_threshold"])
                self._node(feature, split, BRANCH_LEQ, left, right, tracks)
                continue
            count = len(categories[feature])
            bitset = predictor.raw_left_cat_bitsets[int(node["bitset_idx"])]
            codes = np.arange(count)
            goes_left = (bitset[codes >> 5] >> (codes & 31).astype(np.uint32)) & 1
            if node["missing_go_to_left"]:  # NaN must fail the test: test "right"
                tested, true, false = codes[goes_left == 0], right, left
            else:
                tested, true, false = codes[goes_left == 1], left, right
            if tested.size == 0:  # nothing passes: x <= -inf fails for codes, NaN
                self._node(feature, -np.inf, BRANCH_LEQ, true, false, 0)
                continue
            self.members.extend(float(c) for c in tested)
            self.members.append(np.nan)
            self._node(feature, 0.0, BRANCH_MEMBER, true, false, 0)

    def _leaf(self, target: int, weight: float) -> int:
        self.leaf_targets.append(target)
        self.leaf_weights.append(weight)
        return len(self.leaf_weights) - 1

    def _node(
        self,
        feature: int,
        split: float,
        mode: int,
        true: tuple[int, int],
        false: tuple[int, int],
        missing_true: int,
    ) -> None:
        values = (feature, split, mode, *true, *false, missing_true)
        for key, value in zip(self.columns, values, strict=True):
            self.columns[key].append(value)

    def attributes(self) -> dict[str, Any]:
        from onnx import numpy_helper

        columns = self.columns
        attributes: dict[str, Any] = {
            "n_targets": self.n_targets,
            "aggregate_function": 1,  # SUM
            "post_transform": 0,  # NONE
            "tree_roots": self.roots,
            "nodes_featureids": columns["feature"],
            "nodes_splits": numpy_helper.from_array(
                np.asarray(columns["split"], dtype=np.float64)
            ),
            "nodes_modes": numpy_helper.from_array(
                np.asarray(columns["mode"], dtype=np.uint8)
            ),
            "nodes_truenodeids": columns["true"],
            "nodes_trueleafs": columns["true_leaf"],
            "nodes_falsenodeids": columns["false"],
            "nodes_falseleafs": columns["false_leaf"],
            "nodes_missing_value_tracks_true": columns["missing_true"],
            "leaf_targetids": self.leaf_targets,
            "leaf_weights": numpy_helper.from_array(
                np.asarray(self.leaf_weights, dtype=np.float64)
            ),
        }
        if self.members:
            attributes["membership_values"] = numpy_helper.from_array(
                np.asarray(self.members, dtype=np.float64)
            )
        return attributes


def _raw_scores(graph: Graph, operator: Any) -> str:
    """The model's raw predictions [N, trees per iteration], as _raw_predict."""
    estimator = operator.raw_operator
    layout = _layout(estimator, getattr(estimator, CODES, {}))
    features = _predictor_input(graph, operator.inputs[0].full_name, layout)
    baseline = np.asarray(estimator._baseline_prediction, dtype=np.float64).ravel()
    ensemble = _Ensemble(int(estimator.n_trees_per_iteration_))
    for k, value in enumerate(baseline):
        ensemble.add_constant(k, float(value))
    for iteration in estimator._predictors:
        for k, predictor in enumerate(iteration):
            ensemble.add_predictor(predictor, k, layout.categories)
    return graph.node(
        "TreeEnsemble",
        [features],
        op_domain="ai.onnx.ml",
        op_version=SKL2ONNX_ML_OPSET,  # raised to 5 by convert()
        **ensemble.attributes(),
    )


def _predictor_input(graph: Graph, X: str, layout: _Layout) -> str:
    """The matrix the predictors read: the input's columns in the
    preprocessor's order, categorical ones as ordinal codes (NaN: none)."""
    if not layout.categories and np.array_equal(
        layout.order, np.arange(len(layout.order))
    ):
        return X
    parts: list[str] = []
    numeric: list[int] = []  # consecutive numeric columns, taken in one Gather

    def take(columns: list[int]) -> str:
        return graph.node("Gather", [X, graph.constant(np.array(columns))], axis=1)

    for position, column in enumerate(layout.order.tolist()):
        if position not in layout.categories:
            numeric.append(column)
            continue
        if numeric:
            parts.append(take(numeric))
            numeric = []
        parts.append(_ordinal(graph, take([column]), layout.categories[position]))
    if numeric:
        parts.append(take(numeric))
    return graph.node("Concat", parts, axis=1) if len(parts) > 1 else parts[0]


def _ordinal(graph: Graph, column: str, known: np.ndarray) -> str:
    """[N, 1] values -> the index of the equal known value, NaN if none."""
    from onnx import TensorProto

    if known.size == 0:  # every value is unknown: missing
        return graph.node("Mul", [column, graph.constant(np.nan)])
    equal = graph.node("Equal", [column, graph.constant(known.reshape(1, -1))])
    hits = graph.node("Cast", [equal], to=TensorProto.DOUBLE)
    index = graph.node("ArgMax", [hits], axis=1, keepdims=1)
    found = graph.node("MatMul", [hits, graph.constant(np.ones((known.size, 1)))])
    return graph.node(
        "Where",
        [
            graph.node("Greater", [found, graph.constant(0.5)]),
            graph.node("Cast", [index], to=TensorProto.DOUBLE),
            graph.constant(np.array([[np.nan]])),
        ],
    )


def _link(estimator: Any) -> str:
    return type(estimator._loss.link).__name__


def _convert_classifier(scope: Any, operator: Any, container: Any) -> None:
    from onnx import TensorProto

    estimator = operator.raw_operator
    classes = np.asarray(estimator.classes_)
    link = _link(estimator)
    graph = Graph(scope, container)
    probabilities = operator.outputs[1].full_name
    if len(classes) > 2:
        if link != "MultinomialLogit":
            raise _unknown_link(estimator, link)
        scores = _raw_scores(graph, operator)
        graph.node("Softmax", [scores], probabilities, axis=1)
        best = graph.node("ArgMax", [scores], axis=1, keepdims=0)
    else:
        if link not in ("LogitLink", "HalfLogitLink"):
            raise _unknown_link(estimator, link)
        scores = _raw_scores(graph, operator)
        flat = graph.node("Reshape", [scores, graph.constant(np.array([-1, 1]))])
        inner = flat
        if link == "HalfLogitLink":  # expit(2 * raw)
            inner = graph.node("Mul", [flat, graph.constant(2.0)])
        positive = graph.node("Sigmoid", [inner])
        negative = graph.node("Sub", [graph.constant(1.0), positive])
        graph.node("Concat", [negative, positive], probabilities, axis=1)
        # scikit-learn: class 1 iff raw > 0 (a tie is class 0, as argmax).
        row = graph.node("Reshape", [scores, graph.constant(np.array([-1]))])
        decided = graph.node("Greater", [row, graph.constant(0.0)])
        best = graph.node("Cast", [decided], to=TensorProto.INT64)
    graph.labels(classes, best, operator.outputs[0].full_name)


def _convert_regressor(scope: Any, operator: Any, container: Any) -> None:
    estimator = operator.raw_operator
    link = _link(estimator)
    inverse = {"IdentityLink": "Identity", "LogLink": "Exp"}.get(link)
    if inverse is None:
        raise _unknown_link(estimator, link)
    graph = Graph(scope, container)
    scores = _raw_scores(graph, operator)
    graph.node(inverse, [scores], operator.outputs[0].full_name)


def _unknown_link(estimator: Any, link: str) -> NotImplementedError:
    loss = estimator.loss
    name = repr(loss) if isinstance(loss, str) else type(loss).__name__
    return NotImplementedError(
        f"loss {name} predicts through link {link}; the twin knows the identity "
        "and log links (regression), logit and softmax (classification)"
    )
