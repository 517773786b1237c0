"""The conversion: skl2onnx with float64 input, ZipMap off, and this package's
own converters where skl2onnx's compute in float32 or are wrong."""

# One module per estimator family (FAMILIES) adds what skl2onnx lacks. Each may
# define any of:
#   converters() -> {estimator class: converter}  (skl2onnx's
#       custom_conversion_functions: replaces its converter for that class)
#   shape_calculators() -> {estimator class: shape calculator}
#   prepare(model, schema) -> None: adjusts the copy of the model that is
#       converted (never the published one), e.g. column names to indices.
# The twin's input "X" holds the function's encoding of a row (see
# encoding.py): numbers, and string columns as category codes.

from __future__ import annotations

import copy
import importlib
from collections.abc import Callable
from types import ModuleType
from typing import Any

from skserve.schema import InputSchema
from train.twin.common import final_estimator, is_classifier
from train.twin.graph import ML_OPSET, SKL2ONNX_ML_OPSET

INPUT = "X"
OWN_CONVERTERS = "skserve.own_converters"  # metadata_props key
FAMILIES = (
    "trees",
    "hist_gradient_boosting",
    "columns",
    "linear",
    "ensembles",
    "polynomial",
    "clusters",
)


def families() -> list[ModuleType]:
    """The family modules that exist (each is optional)."""
    found = []
    for name in FAMILIES:
        try:
            found.append(importlib.import_module(f"train.twin.{name}"))
        except ModuleNotFoundError as exc:
            if exc.name != f"train.twin.{name}":
                raise
    return found


def convert(model: Any, n_features: int, schema: InputSchema | None = None) -> Any:
    """The skl2onnx conversion of a prepared copy of `model` with float64 input
    "X", ZipMap off, and the families' converters (trees as float64
    TreeEnsemble nodes, ai.onnx.ml opset 5)."""
    from skl2onnx import convert_sklearn, get_latest_tested_opset_version
    from skl2onnx.common.data_types import DoubleTensorType

    schema = schema or InputSchema.numeric(n_features, None)
    modules = families()
    prepared = copy.deepcopy(model)
    for module in modules:
        if hasattr(module, "prepare"):
            module.prepare(prepared, schema)
    conversions: dict[type, Callable[..., None]] = {}
    shapes: dict[type, Callable[..., None]] = {}
    for module in modules:
        conversions.update(getattr(module, "converters", dict)())
        shapes.update(getattr(module, "shape_calculators", dict)())
    used: set[str] = set()
    conversions = {cls: _recorded(cls, fn, used) for cls, fn in conversions.items()}
    onnx_model = convert_sklearn(
        prepared,
        initial_types=[(INPUT, DoubleTensorType([None, n_features]))],
        target_opset={
            "": get_latest_tested_opset_version(),
            "ai.onnx.ml": SKL2ONNX_ML_OPSET,
        },
        options=_options(prepared),
        custom_conversion_functions=conversions,
        custom_shape_calculators=shapes,
    )
    _outputs_as_double(onnx_model)
    # Which estimators this package wrote itself (the rest are skl2onnx's).
    entry = onnx_model.metadata_props.add()
    entry.key, entry.value = OWN_CONVERTERS, ",".join(sorted(used))
    if any(node.op_type == "TreeEnsemble" for node in onnx_model.graph.node):
        for item in onnx_model.opset_import:
            if item.domain == "ai.onnx.ml":
                item.version = ML_OPSET
    return onnx_model


def _recorded(
    cls: type, converter: Callable[..., None], used: set[str]
) -> Callable[..., None]:
    """`converter`, noting in `used` that it converted a `cls`."""

    def run(scope: Any, operator: Any, container: Any) -> None:
        used.add(cls.__name__)
        converter(scope, operator, container)

    return run


def own_converters(onnx_model: Any) -> list[str]:
    """The estimator classes this package's converters wrote into `onnx_model`."""
    for entry in onnx_model.metadata_props:
        if entry.key == OWN_CONVERTERS:
            return [name for name in entry.value.split(",") if name]
    return []


def _options(model: Any) -> dict[int, dict[str, Any]] | None:
    """skl2onnx options: no ZipMap (a list of dicts) on a classifier's
    probabilities, so they come out as one float matrix. skl2onnx refuses an
    option its converter does not declare (LinearSVC has no ZipMap), so such
    a classifier gets none; it is still named, or skl2onnx's Pipeline parser
    would hand it the Pipeline's default ZipMap."""
    from skl2onnx._supported_operators import sklearn_operator_name_map
    from skl2onnx.common._registration import get_converter

    final = final_estimator(model)
    if not is_classifier(final):
        return None
    alias = sklearn_operator_name_map.get(type(final))
    try:
        allowed = get_converter(alias).get_allowed_options() or {}
    except ValueError:  # unknown to skl2onnx: it will say so when converting
        allowed = {"zipmap": None}
    return {id(final): {"zipmap": False} if "zipmap" in allowed else {}}


def _outputs_as_double(onnx_model: Any) -> None:
    """Declare every float output float64 (skl2onnx declares some classifiers'
    probabilities float32 even when they are computed in float64)."""
    from onnx import TensorProto, helper

    graph = onnx_model.graph
    for output in graph.output:
        tensor = output.type.tensor_type
        if tensor.elem_type != TensorProto.FLOAT:
            continue
        inner = f"{output.name}_undeclared"
        for node in graph.node:
            node.output[:] = [inner if o == output.name else o for o in node.output]
            node.input[:] = [inner if i == output.name else i for i in node.input]
        graph.node.append(
            helper.make_node(
                "Cast",
                [inner],
                [output.name],
                name=f"Cast_{output.name}_double",
                to=TensorProto.DOUBLE,
            )
        )
        tensor.elem_type = TensorProto.DOUBLE
