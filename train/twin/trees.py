"""scikit-learn's trees, forests and gradient boosting as float64 TreeEnsembles."""

# skl2onnx writes trees as TreeEnsembleRegressor/Classifier, whose outputs are
# float32 in every ai.onnx.ml opset: regression values then miss 1e-6, and
# rounded probabilities tie where scikit-learn's do not. TreeEnsemble (opset
# 5) computes in float64, so these build it from the fitted trees.

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from train.twin.graph import Forest, Graph


def _single_output(estimator: Any) -> None:
    if getattr(estimator, "n_outputs_", 1) != 1:
        raise NotImplementedError("multi-output trees get no twin")


def _forest_members(estimator: Any) -> list[Any]:
    return [estimator] if hasattr(estimator, "tree_") else list(estimator.estimators_)


def _convert_forest_classifier(scope: Any, operator: Any, container: Any) -> None:
    """RandomForest/ExtraTrees/DecisionTree classifiers, as scikit-learn computes
    them: per-class leaf fractions summed over trees, divided by the tree count,
    and the first most probable class."""
    estimator = operator.raw_operator
    _single_output(estimator)
    classes = np.asarray(estimator.classes_)
    members = _forest_members(estimator)
    forest = Forest(len(classes))
    for member in members:
        fractions = member.tree_.value[:, 0, : len(classes)]
        for k in range(len(classes)):
            forest.add_tree(member.tree_, k, fractions[:, k])
    graph = Graph(scope, container)
    probabilities = operator.outputs[1].full_name
    _mean_over_trees(graph, operator, estimator, forest, len(members), probabilities)
    best = graph.node("ArgMax", [probabilities], axis=1, keepdims=0)
    graph.labels(classes, best, operator.outputs[0].full_name)


def _mean_over_trees(
    graph: Graph, operator: Any, estimator: Any, forest: Forest, trees: int, out: str
) -> None:
    """`out` = the ensemble's sums over its trees, divided by the tree count as
    scikit-learn does for forests (a single tree: the sums themselves)."""
    sums = graph.ensemble(graph.as_float32(operator.inputs[0].full_name), forest)
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
    values = operator.outputs[0].full_name
    _mean_over_trees(graph, operator, estimator, forest, len(members), values)


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
