"""The conversion: skl2onnx with float64 input, ZipMap off, and this package's
own converters where skl2onnx's compute in float32 or are wrong."""

from __future__ import annotations

from typing import Any

from train.twin.common import final_estimator, is_classifier
from train.twin.graph import ML_OPSET, SKL2ONNX_ML_OPSET
from train.twin.trees import tree_converters

INPUT = "X"


def convert(model: Any, n_features: int) -> Any:
    """The skl2onnx conversion with float64 input "X", ZipMap off, and
    scikit-learn's trees as float64 TreeEnsemble nodes (ai.onnx.ml opset 5)."""
    from skl2onnx import convert_sklearn, get_latest_tested_opset_version
    from skl2onnx.common.data_types import DoubleTensorType

    options = None
    final = final_estimator(model)
    if is_classifier(final):
        options = {id(final): {"zipmap": False}}
    onnx_model = convert_sklearn(
        model,
        initial_types=[(INPUT, DoubleTensorType([None, n_features]))],
        target_opset={
            "": get_latest_tested_opset_version(),
            "ai.onnx.ml": SKL2ONNX_ML_OPSET,
        },
        options=options,
        custom_conversion_functions=tree_converters(),
    )
    _outputs_as_double(onnx_model)
    if any(node.op_type == "TreeEnsemble" for node in onnx_model.graph.node):
        for item in onnx_model.opset_import:
            if item.domain == "ai.onnx.ml":
                item.version = ML_OPSET
    return onnx_model


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
