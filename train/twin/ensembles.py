"""VotingClassifier and StackingClassifier combine members as scikit-learn does."""

# skl2onnx's VotingClassifier converter refuses flatten_transform=True (the
# default, though it only shapes transform()), fails on weights given as a
# list, takes a member's vote as the argmax of its probabilities rather than
# its predict (LinearSVC has none; SVC's differ), and weights probabilities
# before adding them where numpy adds then divides. Its StackingClassifier
# converter stacks two columns where scikit-learn stacks one for a binary
# decision_function (the twin then cannot load), and neither converter takes
# a Pipeline member ending in LinearSVC. These build each member's outputs
# with skl2onnx and this package's families (linear.member_outputs) and
# combine them in numpy's order.

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from skserve.schema import InputSchema
from train.twin.graph import Graph
from train.twin.linear import (
    column,
    final_input,
    is_linear,
    linear_decision,
    member_outputs,
    prepare_members,
    raw_step,
)


def _probabilities(
    graph: Graph, scope: Any, container: Any, member: Any, variable: Any
) -> str:
    from onnx import TensorProto

    _, probabilities = member_outputs(scope, container, member, variable)
    return graph.node("Cast", [probabilities], to=TensorProto.DOUBLE)


def _encoded_labels(
    graph: Graph, scope: Any, container: Any, member: Any, variable: Any
) -> tuple[str, str]:
    """A member's predict as int64 [N], and its probabilities or scores:
    members of a VotingClassifier or StackingClassifier are fitted on the
    encoded target, so their labels are the class indices."""
    from onnx import TensorProto

    classes = np.asarray(member.classes_)
    if classes.dtype.kind not in "iu" or not np.array_equal(
        classes, np.arange(len(classes))
    ):
        raise NotImplementedError(
            f"member {type(member).__name__} has classes {classes.tolist()[:5]}, "
            "not the encoded 0..k-1"
        )
    labels, second = member_outputs(scope, container, member, variable)
    labels = graph.node("Cast", [labels], to=TensorProto.INT64)
    return graph.node("Reshape", [labels, graph.constant(np.array([-1]))]), second


def _weighted_mean(graph: Graph, terms: list[str], weights: Any) -> str:
    """np.average over members (axis 0): without weights their sum in turn
    divided by their count; with weights the sum in turn of each times its
    weight, divided by the weights' sum as numpy computes it."""
    if weights is None:
        scaled, divisor = terms, float(len(terms))
    else:
        values = np.asarray(weights, dtype=np.float64)
        scaled = [
            graph.node("Mul", [term, graph.constant(float(value))])
            for term, value in zip(terms, values, strict=True)
        ]
        _, total = np.average(
            np.ones((len(values), 1, 1)), axis=0, weights=weights, returned=True
        )
        divisor = float(np.asarray(total).ravel()[0])
    running = scaled[0]
    for term in scaled[1:]:
        running = graph.node("Add", [running, term])
    return graph.node("Div", [running, graph.constant(divisor)])


def _votes(graph: Graph, scope: Any, container: Any, model: Any, variable: Any) -> str:
    """np.bincount of the members' predicted classes, with their weights: per
    class the weights of the members that chose it, added in member order."""
    from onnx import TensorProto

    weights = model._weights_not_none
    if weights is not None and np.any(np.asarray(weights) < 0):
        # bincount's argmax then ranges over fewer classes than the twin's.
        raise NotImplementedError("hard voting with negative weights")
    every = graph.constant(np.arange(len(model.classes_)).reshape(1, -1))
    votes = []
    for k, member in enumerate(model.estimators_):
        labels, _ = _encoded_labels(graph, scope, container, member, variable)
        chosen = graph.node("Unsqueeze", [labels, graph.constant(np.array([1]))])
        vote = graph.node(
            "Cast", [graph.node("Equal", [chosen, every])], to=TensorProto.DOUBLE
        )
        if weights is not None:
            vote = graph.node("Mul", [vote, graph.constant(float(weights[k]))])
        votes.append(vote)
    total = votes[0]
    for vote in votes[1:]:
        total = graph.node("Add", [total, vote])
    return total


def _convert_voting(scope: Any, operator: Any, container: Any) -> None:
    """Soft: the (weighted) mean of the members' probabilities and its first
    highest class. Hard: each member's predicted class gets its weight (or
    one vote) and the first class with the most wins, as np.argmax of
    np.bincount; the vote totals are the scores."""
    model = operator.raw_operator
    classes = np.asarray(model.classes_)
    graph = Graph(scope, container)
    variable = operator.inputs[0]
    members = list(model.estimators_)
    weights = model._weights_not_none
    if model.voting == "soft":
        terms = [_probabilities(graph, scope, container, m, variable) for m in members]
        scores = _weighted_mean(graph, terms, weights)
    else:
        scores = _votes(graph, scope, container, model, variable)
    graph.node("Identity", [scores], operator.outputs[1].full_name)
    best = graph.node("ArgMax", [scores], axis=1, keepdims=0)
    graph.labels(classes, best, operator.outputs[0].full_name)


def _meta_features(
    graph: Graph, scope: Any, container: Any, model: Any, variable: Any
) -> str:
    """StackingClassifier.transform: per member its stack method's output,
    one column for a 1-d output and for predict_proba with two classes,
    then the input itself with passthrough."""
    from onnx import TensorProto

    binary = len(model.classes_) == 2
    parts = []
    for member, method in zip(model.estimators_, model.stack_method_, strict=True):
        if member == "drop":
            continue
        if method == "predict_proba":
            probabilities = _probabilities(graph, scope, container, member, variable)
            parts.append(column(graph, probabilities, 1) if binary else probabilities)
        elif method == "decision_function":
            final, features = final_input(scope, member, variable)
            if not is_linear(final):
                raise NotImplementedError(
                    f"stacking the decision_function of {type(final).__name__} is "
                    "not supported (only linear classifiers')"
                )
            parts.append(linear_decision(graph, features.full_name, final))
        elif method == "predict":
            labels, _ = _encoded_labels(graph, scope, container, member, variable)
            labels = graph.node("Cast", [labels], to=TensorProto.DOUBLE)
            parts.append(
                graph.node("Reshape", [labels, graph.constant(np.array([-1, 1]))])
            )
        else:
            raise NotImplementedError(f"stack_method {method!r} is not supported")
    if model.passthrough:
        parts.append(variable.full_name)
    return graph.node("Concat", parts, axis=1)


def _convert_stacking(scope: Any, operator: Any, container: Any) -> None:
    """The final estimator on the stacked member outputs: its labels (encoded,
    so mapped to the classes) and its probabilities or scores."""
    from onnx import TensorProto
    from skl2onnx.common.data_types import DoubleTensorType

    model = operator.raw_operator
    if isinstance(model.classes_, list):
        raise NotImplementedError("multilabel stacking is not supported")
    graph = Graph(scope, container)
    meta = _meta_features(graph, scope, container, model, operator.inputs[0])
    width = int(model.final_estimator_.n_features_in_)
    stacked = scope.declare_local_variable("stacked", DoubleTensorType([None, width]))
    graph.node("Identity", [meta], stacked.onnx_name)
    final = model.final_estimator_
    labels, second = _encoded_labels(graph, scope, container, final, stacked)
    graph.node("Cast", [second], operator.outputs[1].full_name, to=TensorProto.DOUBLE)
    graph.labels(np.asarray(model.classes_), labels, operator.outputs[0].full_name)


def prepare(model: Any, schema: InputSchema) -> None:
    """A VotingClassifier's or StackingClassifier's members read the input
    columns (the final estimator reads the members' outputs)."""
    from sklearn.ensemble import StackingClassifier, VotingClassifier

    ensemble = raw_step(model)
    if isinstance(ensemble, VotingClassifier | StackingClassifier):
        prepare_members(list(ensemble.estimators_), schema)


def converters() -> dict[type, Callable[..., None]]:
    """VotingClassifier (soft and hard) and StackingClassifier; see the module
    comment for what skl2onnx's get wrong."""
    from sklearn.ensemble import StackingClassifier, VotingClassifier

    return {VotingClassifier: _convert_voting, StackingClassifier: _convert_stacking}
