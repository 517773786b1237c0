"""scikit-learn's trees, forests and gradient boosting as float64 TreeEnsembles."""

# skl2onnx writes trees as TreeEnsembleRegressor/Classifier, whose outputs are
# float32 in every ai.onnx.ml opset: regression values then miss 1e-6, and
# rounded probabilities tie where scikit-learn's do not. TreeEnsemble (opset
# 5) computes in float64, so these build it from the fitted trees.

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from train.twin.graph import Forest, Graph

# Every integer up to 2**53 is a float64, so sums of such integers are exact in
# any order.
EXACT_INTEGERS = 2**53


def _single_output(estimator: Any) -> None:
    if getattr(estimator, "n_outputs_", 1) != 1:
        raise NotImplementedError("multi-output trees get no twin")


def _forest_members(estimator: Any) -> list[Any]:
    return [estimator] if hasattr(estimator, "tree_") else list(estimator.estimators_)


@dataclass(frozen=True)
class Packing:
    """How per-class leaf fractions become exact integer counts, several classes
    to one TreeEnsemble target.

    Each leaf's fraction of class k is `count_k / scale` (scale a power of two);
    a tree adds `sum_k count_k * base ** (k % per_target)` to target
    `k // per_target`. No class's count summed over the trees reaches `base`, so
    the digits never carry into each other, and every sum stays below 2**53.
    """

    scale: int
    base: int
    per_target: int
    n_classes: int

    @property
    def n_targets(self) -> int:
        return -(-self.n_classes // self.per_target)

    def weights(self, fractions: np.ndarray, leaves: np.ndarray) -> np.ndarray:
        """Per node of one tree, each target's packed counts (0 off the leaves)."""
        counts = np.zeros(fractions.shape, dtype=np.int64)
        counts[leaves] = (fractions[leaves] * self.scale).astype(np.int64)
        packed = np.zeros((len(fractions), self.n_targets), dtype=np.int64)
        for k in range(self.n_classes):
            target, digit = divmod(k, self.per_target)
            packed[:, target] += counts[:, k] * self.base**digit
        return packed.astype(np.float64)


def packing(leaf_fractions: list[np.ndarray], n_trees: int) -> Packing | None:
    """A Packing for these per-tree leaf fractions ([leaves, classes] each), or
    None when it would not save a target or could not be exact.

    Exact needs each fraction to be a multiple of 1/scale, each leaf's fractions
    to sum to exactly 1, and base ** per_target <= 2**53. Then the twin's class
    sums equal the real sums, hence scikit-learn's own float sums, whatever the
    order: fully grown forests have pure leaves (fractions 0 or 1), so they
    qualify; leaves holding fractions such as 1/3 do not.
    """
    fractions = np.concatenate(leaf_fractions)
    n_classes = fractions.shape[1]
    if n_classes < 2 or not np.all((fractions >= 0) & (fractions <= 1)):
        return None
    scale = 1
    while (n_trees * scale + 1) ** 2 <= EXACT_INTEGERS:
        scaled = fractions * scale  # exact: scale is a power of two
        if np.array_equal(scaled, np.floor(scaled)):
            break
        scale *= 2
    else:
        return None
    if not np.all(scaled.astype(np.int64).sum(axis=1) == scale):
        return None
    base = n_trees * scale + 1  # one more than a class's largest sum
    per_target = 1
    while per_target < n_classes and base ** (per_target + 1) <= EXACT_INTEGERS:
        per_target += 1
    found = Packing(scale, base, per_target, n_classes)
    return found if found.n_targets < n_classes else None


def _convert_forest_classifier(scope: Any, operator: Any, container: Any) -> None:
    """RandomForest/ExtraTrees/DecisionTree classifiers, as scikit-learn computes
    them: per-class leaf fractions summed over trees, divided by the tree count,
    and the first most probable class.

    Each tree is written once per TreeEnsemble target, so a tree that scored
    each class on its own target would be written once per class: onnxruntime's
    memory and load time grow with that. Where the fractions allow (`packing`),
    several classes share a target as exact integer counts, and one copy of
    each tree serves them all (a binary forest: half the nodes).
    """
    estimator = operator.raw_operator
    _single_output(estimator)
    classes = np.asarray(estimator.classes_)
    members = _forest_members(estimator)
    fractions = [member.tree_.value[:, 0, : len(classes)] for member in members]
    leaves = [np.flatnonzero(member.tree_.children_left < 0) for member in members]
    plan = packing(
        [values[where] for values, where in zip(fractions, leaves, strict=True)],
        len(members),
    )
    graph = Graph(scope, container)
    features = graph.as_float32(operator.inputs[0].full_name)
    if plan is None:
        forest = Forest(len(classes))
        for member, values in zip(members, fractions, strict=True):
            for k in range(len(classes)):
                forest.add_tree(member.tree_, k, values[:, k])
        sums = graph.ensemble(features, forest)
    else:
        forest = Forest(plan.n_targets)
        for member, values, where in zip(members, fractions, leaves, strict=True):
            packed = plan.weights(values, where)
            for target in range(plan.n_targets):
                forest.add_tree(member.tree_, target, packed[:, target])
        sums = _unpacked(graph, graph.ensemble(features, forest), plan)
    probabilities = operator.outputs[1].full_name
    _mean(graph, estimator, sums, len(members), probabilities)
    best = graph.node("ArgMax", [probabilities], axis=1, keepdims=0)
    graph.labels(classes, best, operator.outputs[0].full_name)


def _unpacked(graph: Graph, packed: str, plan: Packing) -> str:
    """The per-class sums [N, classes] (float64) held by the packed targets:
    class k's count is digit k % per_target of its target, in base `base`."""
    from onnx import TensorProto

    totals = graph.node("Cast", [packed], to=TensorProto.INT64)  # exact integers
    digits = np.arange(plan.n_classes)
    if plan.n_targets > 1:
        column = graph.constant((digits // plan.per_target).astype(np.int64))
        totals = graph.node("Gather", [totals, column], axis=1)
    powers = np.array([plan.base**d for d in digits % plan.per_target], np.int64)
    shifted = graph.node("Div", [totals, graph.constant(powers)])
    counts = graph.node("Mod", [shifted, graph.constant(np.int64(plan.base))])
    sums = graph.node("Cast", [counts], to=TensorProto.DOUBLE)
    if plan.scale == 1:
        return sums
    # A power of two: the division is exact.
    return graph.node("Div", [sums, graph.constant(float(plan.scale))])


def _mean(graph: Graph, estimator: Any, sums: str, trees: int, out: str) -> None:
    """`out` = the sums over the trees divided by the tree count, as
    scikit-learn does for forests (a single tree: the sums themselves)."""
    if hasattr(estimator, "estimators_"):
        graph.node("Div", [sums, graph.constant(float(trees))], out)
    else:
        graph.node("Identity", [sums], out)


def _convert_forest_regressor(scope: Any, operator: Any, container: Any) -> None:
    """RandomForest/ExtraTrees/DecisionTree regressors: leaf values summed over
    trees, divided by the tree count."""
    estimator = operator.raw_operator
    _single_output(estimator)
    members = _forest_members(estimator)
    forest = Forest(1)
    for member in members:
        forest.add_tree(member.tree_, 0, member.tree_.value[:, 0, 0])
    graph = Graph(scope, container)
    features = graph.as_float32(operator.inputs[0].full_name)
    sums = graph.ensemble(features, forest)
    _mean(graph, estimator, sums, len(members), operator.outputs[0].full_name)


def _boosted_scores(scope: Any, operator: Any, container: Any) -> tuple[Graph, str]:
    """The raw predictions of a GradientBoosting model: its constant start, then
    learning_rate * leaf value of each stage's tree, summed in stage order."""
    from sklearn.dummy import DummyClassifier, DummyRegressor

    estimator = operator.raw_operator
    # Only a start that ignores X can be the constant the twin begins from.
    constant = (DummyClassifier, DummyRegressor)
    if not (estimator.init in (None, "zero") or isinstance(estimator.init, constant)):
        raise NotImplementedError(
            f"init={type(estimator.init).__name__} depends on X; only a constant "
            "start gets a twin"
        )
    stages = np.asarray(estimator.estimators_, dtype=object)
    start = estimator._raw_predict_init(np.zeros((1, estimator.n_features_in_)))[0]
    forest = Forest(stages.shape[1])
    for k in range(stages.shape[1]):
        forest.add_constant(k, float(start[k]))
    for stage in stages:
        for k, member in enumerate(stage):
            value = estimator.learning_rate * member.tree_.value[:, 0, 0]
            forest.add_tree(member.tree_, k, value)
    graph = Graph(scope, container)
    return graph, graph.ensemble(graph.as_float32(operator.inputs[0].full_name), forest)


def _convert_boosting_regressor(scope: Any, operator: Any, container: Any) -> None:
    graph, scores = _boosted_scores(scope, operator, container)
    graph.node("Identity", [scores], operator.outputs[0].full_name)


def _convert_boosting_classifier(scope: Any, operator: Any, container: Any) -> None:
    """Binary: link inverse of the score, the class 1 when the score is >= 0;
    several classes: softmax, and the first highest score."""
    from onnx import TensorProto

    estimator = operator.raw_operator
    classes = np.asarray(estimator.classes_)
    graph, scores = _boosted_scores(scope, operator, container)
    probabilities = operator.outputs[1].full_name
    if len(classes) > 2:
        graph.node("Softmax", [scores], probabilities, axis=1)
        best = graph.node("ArgMax", [scores], axis=1, keepdims=0)
    else:
        link = type(estimator._loss.link).__name__
        if link == "HalfLogitLink":  # the exponential loss: expit(2 * raw)
            scores = graph.node("Mul", [scores, graph.constant(2.0)])
        elif link != "LogitLink":
            raise NotImplementedError(f"loss link {link} is not supported")
        positive = graph.node("Sigmoid", [scores])
        negative = graph.node("Sub", [graph.constant(1.0), positive])
        graph.node("Concat", [negative, positive], probabilities, axis=1)
        flat = graph.node("Reshape", [scores, graph.constant(np.array([-1]))])
        decided = graph.node("GreaterOrEqual", [flat, graph.constant(0.0)])
        best = graph.node("Cast", [decided], to=TensorProto.INT64)
    graph.labels(classes, best, operator.outputs[0].full_name)


def converters() -> dict[type, Callable[..., None]]:
    """Converters for scikit-learn's trees that keep float64 end to end.

    skl2onnx writes trees as TreeEnsembleRegressor/Classifier, whose outputs are
    float32 in every ai.onnx.ml opset: regression values then miss 1e-6, and
    rounded probabilities tie where scikit-learn's do not. TreeEnsemble (opset
    5) computes in float64, so these build it from the fitted trees.
    """
    from sklearn import ensemble, tree

    return {
        ensemble.RandomForestClassifier: _convert_forest_classifier,
        ensemble.ExtraTreesClassifier: _convert_forest_classifier,
        tree.DecisionTreeClassifier: _convert_forest_classifier,
        tree.ExtraTreeClassifier: _convert_forest_classifier,
        ensemble.RandomForestRegressor: _convert_forest_regressor,
        ensemble.ExtraTreesRegressor: _convert_forest_regressor,
        tree.DecisionTreeRegressor: _convert_forest_regressor,
        tree.ExtraTreeRegressor: _convert_forest_regressor,
        ensemble.GradientBoostingClassifier: _convert_boosting_classifier,
        ensemble.GradientBoostingRegressor: _convert_boosting_regressor,
    }
