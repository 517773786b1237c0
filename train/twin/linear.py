"""LinearSVC and CalibratedClassifierCV decide as scikit-learn does, in float64."""

# skl2onnx's LinearSVC converter refuses float64 input unless asked for raw
# scores, and its CalibratedClassifierCV converter is wrong in three ways: a
# Pipeline base estimator fails (skl2onnx asks its LinearSVC for a ZipMap it
# lacks, and never asks a Pipeline's classifier for the decision function the
# calibrators were fitted on), isotonic calibration takes the nearest
# threshold where scikit-learn interpolates (labels then differ), and a fold
# whose estimator never saw a class is read as if it had every class (the
# twin cannot run). These write the decision functions and calibrators as
# scikit-learn computes them; other outputs of members come from skl2onnx (and
# this package's families) through `member_outputs`.

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from skserve.schema import InputSchema
from train.twin.graph import Graph

# scikit-learn sets calibrated probabilities in (1, 1 + 1e-5] to exactly 1.
_PROBABILITY_SLACK = 1e-5


def is_linear(estimator: Any) -> bool:
    """A classifier whose decision_function is X @ coef_.T + intercept_."""
    from sklearn.linear_model._base import LinearClassifierMixin

    return (
        isinstance(estimator, LinearClassifierMixin)
        and type(estimator).decision_function is LinearClassifierMixin.decision_function
        and np.ndim(getattr(estimator, "coef_", None)) == 2
    )


def linear_decision(graph: Graph, features: str, estimator: Any) -> str:
    """scikit-learn's decision_function as a float64 [N, m] tensor (m = 1 for two
    classes): X @ coef_.T + intercept_."""
    coef = np.asarray(estimator.coef_, dtype=np.float64)
    intercept = np.broadcast_to(
        np.asarray(estimator.intercept_, dtype=np.float64), (coef.shape[0],)
    )
    product = graph.node("MatMul", [features, graph.constant(coef.T.copy())])
    return graph.node("Add", [product, graph.constant(intercept.copy())])


def decision_labels(graph: Graph, decision: str, classes: np.ndarray, out: str) -> None:
    """LinearClassifierMixin.predict: the second class where the one score is
    > 0, else the first highest score (ArgMax takes the first, as numpy)."""
    from onnx import TensorProto

    if len(classes) == 2:
        positive = graph.node("Greater", [decision, graph.constant(0.0)])
        index = graph.node("Cast", [positive], to=TensorProto.INT64)
        index = graph.node("Reshape", [index, graph.constant(np.array([-1]))])
    else:
        index = graph.node("ArgMax", [decision], axis=1, keepdims=0)
    graph.labels(classes, index, out)


def _convert_linear_svc(scope: Any, operator: Any, container: Any) -> None:
    """Labels, and the decision function as the scores ([N, 1] for two classes)."""
    estimator = operator.raw_operator
    if not is_linear(estimator):
        raise NotImplementedError(f"{type(estimator).__name__} is not linear")
    graph = Graph(scope, container)
    decision = linear_decision(graph, operator.inputs[0].full_name, estimator)
    graph.node("Identity", [decision], operator.outputs[1].full_name)
    decision_labels(
        graph, decision, np.asarray(estimator.classes_), operator.outputs[0].full_name
    )


def final_input(scope: Any, estimator: Any, variable: Any) -> tuple[Any, Any]:
    """(the final estimator, the variable it reads): a Pipeline's transformers
    are converted as skl2onnx and this package's families convert them."""
    from skl2onnx._parse import _parse_sklearn

    steps = [s for _, s in getattr(estimator, "steps", [("", estimator)])]
    for step in steps[:-1]:
        if step is None or step == "passthrough":
            continue
        variable = _parse_sklearn(scope, step, [variable])[0]
    return steps[-1], variable


def member_outputs(
    scope: Any, container: Any, estimator: Any, variable: Any
) -> tuple[str, str]:
    """The (labels, probabilities or scores) names of a classifier inside another
    estimator, converted on `variable` with ZipMap off wherever skl2onnx has it."""
    from skl2onnx._parse import _parse_sklearn

    final, variable = final_input(scope, estimator, variable)
    if "zipmap" in allowed_options(final):
        scope.add_options(id(final), {"zipmap": False})
        container.add_options(id(final), {"zipmap": False})
    outputs = _parse_sklearn(scope, final, [variable])
    if len(outputs) != 2:
        raise NotImplementedError(
            f"{type(final).__name__} converts to {len(outputs)} outputs, not 2"
        )
    return outputs[0].full_name, outputs[1].full_name


def allowed_options(estimator: Any) -> dict[str, Any]:
    """The options skl2onnx's converter for `estimator` declares (it refuses
    any other, e.g. ZipMap for LinearSVC)."""
    from skl2onnx._supported_operators import sklearn_operator_name_map
    from skl2onnx.common._registration import get_converter

    alias = sklearn_operator_name_map.get(type(estimator))
    if alias is None:
        return {}
    try:
        return dict(get_converter(alias).get_allowed_options() or {})
    except ValueError:  # no converter registered under that alias
        return {}


def response(
    graph: Graph, scope: Any, container: Any, estimator: Any, variable: Any
) -> str:
    """What CalibratedClassifierCV calibrates (scikit-learn's
    _get_response_values, decision_function first, then predict_proba), as a
    float64 [N, m] tensor: binary classifiers give one column (the second
    class's)."""
    from onnx import TensorProto

    name = type(estimator).__name__
    if hasattr(estimator, "decision_function"):
        final, variable = final_input(scope, estimator, variable)
        if not is_linear(final):
            raise NotImplementedError(
                f"calibrating the decision_function of {type(final).__name__} is "
                "not supported (only linear classifiers' and predict_proba)"
            )
        return linear_decision(graph, variable.full_name, final)
    if not hasattr(estimator, "predict_proba"):
        raise NotImplementedError(f"{name} has neither decision_function nor proba")
    _, probabilities = member_outputs(scope, container, estimator, variable)
    probabilities = graph.node("Cast", [probabilities], to=TensorProto.DOUBLE)
    if len(estimator.classes_) == 2:
        return column(graph, probabilities, 1)
    return probabilities


def column(graph: Graph, matrix: str, k: int) -> str:
    """matrix[:, k:k+1]."""
    return graph.node(
        "Slice",
        [
            matrix,
            graph.constant(np.array([k])),
            graph.constant(np.array([k + 1])),
            graph.constant(np.array([1])),
        ],
    )


def row_sum(graph: Graph, columns: list[str]) -> str:
    """np.sum(matrix, axis=1) of the matrix of `columns`, added in numpy's order
    (pairwise_sum: in turn below 8 terms, else eight running sums combined as
    ((r0+r1)+(r2+r3))+((r4+r5)+(r6+r7)) and the rest added in turn)."""

    def add(a: str, b: str) -> str:
        return graph.node("Add", [a, b])

    def pairwise(terms: list[str]) -> str:
        n = len(terms)
        if n < 8:
            total = terms[0]
            for term in terms[1:]:
                total = add(total, term)
            return total
        if n <= 128:
            r = list(terms[:8])
            i = 8
            while i < n - n % 8:
                r = [add(r[j], terms[i + j]) for j in range(8)]
                i += 8
            total = add(
                add(add(r[0], r[1]), add(r[2], r[3])),
                add(add(r[4], r[5]), add(r[6], r[7])),
            )
            for term in terms[i:]:
                total = add(total, term)
            return total
        half = n // 2
        half -= half % 8
        return add(pairwise(terms[:half]), pairwise(terms[half:]))

    return pairwise(columns)


def _sigmoid(graph: Graph, scores: str, calibrator: Any) -> str:
    """_SigmoidCalibration.predict: expit(-(a * T + b)) = 1 / (1 + exp(a * T + b))."""
    product = graph.node("Mul", [scores, graph.constant(float(calibrator.a_))])
    exponent = graph.node("Add", [product, graph.constant(float(calibrator.b_))])
    denominator = graph.node(
        "Add", [graph.constant(1.0), graph.node("Exp", [exponent])]
    )
    return graph.node("Div", [graph.constant(1.0), denominator])


def _isotonic(graph: Graph, scores: str, calibrator: Any) -> str:
    """IsotonicRegression.predict with out_of_bounds="clip": T clipped to the
    fitted range, then np.interp over the thresholds: for the j with
    x[j] <= T < x[j+1], slope_j * (T - x[j]) + y[j], y[j] where T == x[j]
    (or is the last threshold), and from x[j+1] if that gives NaN."""
    from onnx import TensorProto

    if calibrator.out_of_bounds != "clip":
        raise NotImplementedError(
            f"isotonic calibration with out_of_bounds={calibrator.out_of_bounds!r}"
        )
    x = np.asarray(calibrator.X_thresholds_, dtype=np.float64)
    y = np.asarray(calibrator.y_thresholds_, dtype=np.float64)
    clipped = graph.node(
        "Clip",
        [
            scores,
            graph.constant(np.float64(calibrator.X_min_)),
            graph.constant(np.float64(calibrator.X_max_)),
        ],
    )
    if len(y) == 1:  # scikit-learn answers the one value whatever T is
        zero = graph.node("Mul", [clipped, graph.constant(0.0)])
        return graph.node("Add", [zero, graph.constant(y)])
    with np.errstate(all="ignore"):
        slopes = np.append((y[1:] - y[:-1]) / (x[1:] - x[:-1]), 0.0)
    # j = how many thresholds after the first are <= T: T >= x[0] once clipped.
    above = graph.node("LessOrEqual", [graph.constant(x[1:].reshape(1, -1)), clipped])
    index = graph.node(
        "ReduceSum",
        [
            graph.node("Cast", [above], to=TensorProto.INT64),
            graph.constant(np.array([1])),
        ],
        keepdims=1,
    )
    index = graph.node("Min", [index, graph.constant(np.array([len(x) - 1]))])
    x_low = graph.node("Gather", [graph.constant(x), index])
    y_low = graph.node("Gather", [graph.constant(y), index])
    slope = graph.node("Gather", [graph.constant(slopes), index])
    upper = graph.node("Add", [index, graph.constant(np.array([1]))])
    upper = graph.node("Min", [upper, graph.constant(np.array([len(x) - 1]))])
    x_high = graph.node("Gather", [graph.constant(x), upper])
    y_high = graph.node("Gather", [graph.constant(y), upper])

    def line(start: str, value: str) -> str:
        offset = graph.node("Sub", [clipped, start])
        return graph.node("Add", [graph.node("Mul", [slope, offset]), value])

    value = line(x_low, y_low)
    retry = line(x_high, y_high)
    value = graph.node("Where", [graph.node("IsNaN", [value]), retry, value])
    exact = graph.node("Equal", [x_low, clipped])
    return graph.node("Where", [exact, y_low, value])


def _calibrated_probabilities(
    graph: Graph, scope: Any, container: Any, calibrated: Any, variable: Any
) -> str:
    """_CalibratedClassifier.predict_proba: each calibrator maps its column of
    the base estimator's response onto its class; two classes: [1 - p, p];
    more: rows normalised (uniform where they sum to 0); then values just
    above 1 set to 1."""
    from sklearn.preprocessing import LabelEncoder

    calibrate = _sigmoid if calibrated.method == "sigmoid" else _isotonic
    classes = np.asarray(calibrated.classes)
    n_classes = len(classes)
    scores = response(graph, scope, container, calibrated.estimator, variable)
    positions = LabelEncoder().fit(classes).transform(calibrated.estimator.classes_)
    calibrated_columns: dict[int, str] = {}
    for k, (position, calibrator) in enumerate(
        zip(positions, calibrated.calibrators, strict=False)
    ):
        position = position + 1 if n_classes == 2 else position
        calibrated_columns[position] = calibrate(
            graph, column(graph, scores, k), calibrator
        )
    present = next(iter(calibrated_columns.values()))
    if n_classes == 2:
        calibrated_columns[0] = graph.node("Sub", [graph.constant(1.0), present])
    missing = [k for k in range(n_classes) if k not in calibrated_columns]
    if missing:  # classes this fold's estimator never saw: probability 0
        zeros = graph.node(
            "ConstantOfShape",
            [graph.node("Shape", [present])],
            value=_double_tensor(0.0),
        )
        calibrated_columns.update(dict.fromkeys(missing, zeros))
    columns = [calibrated_columns[k] for k in range(n_classes)]
    probabilities = graph.node("Concat", columns, axis=1)
    if n_classes > 2:
        total = row_sum(graph, columns)
        normalised = graph.node("Div", [probabilities, total])
        nonzero = graph.node("Not", [graph.node("Equal", [total, graph.constant(0.0)])])
        uniform = graph.constant(1.0 / n_classes)
        probabilities = graph.node("Where", [nonzero, normalised, uniform])
    over = graph.node(
        "And",
        [
            graph.node("Greater", [probabilities, graph.constant(1.0)]),
            graph.node(
                "LessOrEqual",
                [probabilities, graph.constant(1.0 + _PROBABILITY_SLACK)],
            ),
        ],
    )
    return graph.node("Where", [over, graph.constant(1.0), probabilities])


def _double_tensor(value: float) -> Any:
    from onnx import TensorProto, helper

    return helper.make_tensor("value", TensorProto.DOUBLE, [1], [value])


def _convert_calibrated(scope: Any, operator: Any, container: Any) -> None:
    """CalibratedClassifierCV: the mean of its calibrated classifiers'
    probabilities (added in turn, then divided), and the first most probable
    class."""
    model = operator.raw_operator
    if model.method not in ("sigmoid", "isotonic"):
        raise NotImplementedError(
            f"CalibratedClassifierCV(method={model.method!r}) is not supported; "
            "'sigmoid' and 'isotonic' are"
        )
    graph = Graph(scope, container)
    variable = operator.inputs[0]
    total = None
    for calibrated in model.calibrated_classifiers_:
        probabilities = _calibrated_probabilities(
            graph, scope, container, calibrated, variable
        )
        total = (
            probabilities
            if total is None
            else graph.node("Add", [total, probabilities])
        )
    count = float(len(model.calibrated_classifiers_))
    mean = graph.node(
        "Div", [total, graph.constant(count)], operator.outputs[1].full_name
    )
    best = graph.node("ArgMax", [mean], axis=1, keepdims=0)
    graph.labels(np.asarray(model.classes_), best, operator.outputs[0].full_name)


def raw_step(model: Any) -> Any:
    """The estimator that sees the model's input columns: the model, or a
    Pipeline's first step."""
    steps = [s for _, s in getattr(model, "steps", [("", model)])]
    return next((s for s in steps if s is not None and s != "passthrough"), model)


def prepare_members(members: list[Any], schema: InputSchema) -> None:
    """Members that read the input columns get them as the columns family
    gives them to the model itself (a ColumnTransformer's by position)."""
    try:
        from train.twin import columns
    except ModuleNotFoundError as exc:  # no columns family: names stay names
        if exc.name != "train.twin.columns":
            raise
        return
    for member in members:
        if member is not None and member != "drop":
            columns.prepare(member, schema)


def prepare(model: Any, schema: InputSchema) -> None:
    """CalibratedClassifierCV's fitted base estimators read the input columns."""
    from sklearn.calibration import CalibratedClassifierCV

    calibrated = raw_step(model)
    if isinstance(calibrated, CalibratedClassifierCV):
        prepare_members(
            [c.estimator for c in calibrated.calibrated_classifiers_], schema
        )


def converters() -> dict[type, Callable[..., None]]:
    """LinearSVC (skl2onnx refuses it on float64 input without raw scores) and
    CalibratedClassifierCV (skl2onnx's is wrong; see the module comment)."""
    from sklearn.calibration import CalibratedClassifierCV
    from sklearn.svm import LinearSVC

    return {
        LinearSVC: _convert_linear_svc,
        CalibratedClassifierCV: _convert_calibrated,
    }
