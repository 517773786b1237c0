"""skserve.runtimes.onnx_bytes: a twin that keeps any tensor's data outside
its own bytes is found, wherever the tensor sits, without the onnx package."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from skserve.runtimes import onnx_bytes
from skserve.runtimes.onnx_bytes import MalformedModel, external_reference


def _externalise(tensor: TensorProto, location: str = "secret.txt") -> TensorProto:
    tensor.data_location = TensorProto.EXTERNAL
    entry = tensor.external_data.add()
    entry.key, entry.value = "location", location
    tensor.ClearField("raw_data")
    return tensor


def _model(graph: onnx.GraphProto, functions: list | None = None) -> bytes:
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", 21), helper.make_opsetid("local", 1)],
        functions=functions or [],
    )
    return model.SerializeToString()


def _graph(
    nodes: list, initializers: list | None = None, sparse: list | None = None
) -> onnx.GraphProto:
    return helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("X", TensorProto.DOUBLE, [None, 2])],
        [helper.make_tensor_value_info("Y", TensorProto.DOUBLE, [None, 2])],
        initializer=initializers or [],
        sparse_initializer=sparse or [],
    )


def _weights(name: str = "W") -> TensorProto:
    return numpy_helper.from_array(np.ones((2, 2)), name)


def test_a_model_of_its_own_bytes_refers_to_nothing_outside() -> None:
    data = _model(_graph([helper.make_node("MatMul", ["X", "W"], ["Y"])], [_weights()]))

    assert external_reference(data) is None


def test_an_external_initializer_is_found() -> None:
    graph = _graph(
        [helper.make_node("MatMul", ["X", "W"], ["Y"])], [_externalise(_weights())]
    )

    assert external_reference(_model(graph)) == (
        "an initializer keeps its data in an external file"
    )


def test_data_location_alone_is_enough() -> None:
    tensor = _weights()
    tensor.data_location = TensorProto.EXTERNAL
    graph = _graph([helper.make_node("MatMul", ["X", "W"], ["Y"])], [tensor])

    assert (
        external_reference(_model(graph)) == "an initializer says its data is external"
    )


def test_a_constant_nodes_tensor_is_found() -> None:
    constant = helper.make_node("Constant", [], ["W"], value=_externalise(_weights()))
    graph = _graph([constant, helper.make_node("MatMul", ["X", "W"], ["Y"])])

    assert "node attribute's tensor" in str(external_reference(_model(graph)))


def test_a_subgraph_inside_an_if_node_is_searched() -> None:
    inner = helper.make_graph(
        [helper.make_node("Constant", [], ["Z"], value=_externalise(_weights()))],
        "inner",
        [],
        [helper.make_tensor_value_info("Z", TensorProto.DOUBLE, [2, 2])],
    )
    branch = helper.make_node("If", ["C"], ["Y"], then_branch=inner, else_branch=inner)
    graph = _graph([branch], [numpy_helper.from_array(np.array(True), "C")])

    assert "node attribute's tensor" in str(external_reference(_model(graph)))


def test_a_sparse_initializer_and_a_local_function_are_searched() -> None:
    values = _externalise(numpy_helper.from_array(np.array([1.0]), "v"))
    indices = numpy_helper.from_array(np.array([0], dtype=np.int64), "i")
    sparse = helper.make_sparse_tensor(values, indices, [2])
    graph = _graph([helper.make_node("Identity", ["X"], ["Y"])], sparse=[sparse])
    assert "sparse initializer" in str(external_reference(_model(graph)))

    function = helper.make_function(
        "local",
        "f",
        [],
        ["Z"],
        [helper.make_node("Constant", [], ["Z"], value=_externalise(_weights()))],
        [helper.make_opsetid("", 21)],
    )
    plain = _graph([helper.make_node("Identity", ["X"], ["Y"])])
    assert "node attribute's tensor" in str(
        external_reference(_model(plain, [function]))
    )


@pytest.mark.parametrize("data", [b"\x3a\xff", b"\x3a\x05ab", b"\x07", b"\x80" * 11])
def test_bytes_that_are_no_protobuf_are_malformed(data: bytes) -> None:
    with pytest.raises(MalformedModel):
        external_reference(data)


def test_field_numbers_are_onnxs_own() -> None:
    def number(message: type, field: str) -> int:
        return message.DESCRIPTOR.fields_by_name[field].number

    assert number(onnx.ModelProto, "graph") == onnx_bytes.MODEL_GRAPH
    assert number(onnx.ModelProto, "functions") == onnx_bytes.MODEL_FUNCTIONS
    assert number(onnx.GraphProto, "node") == onnx_bytes.GRAPH_NODE
    assert number(onnx.GraphProto, "initializer") == onnx_bytes.GRAPH_INITIALIZER
    assert number(onnx.GraphProto, "sparse_initializer") == (
        onnx_bytes.GRAPH_SPARSE_INITIALIZER
    )
    assert number(onnx.NodeProto, "attribute") == onnx_bytes.NODE_ATTRIBUTE
    for field, value in {
        "t": onnx_bytes.ATTRIBUTE_T,
        "g": onnx_bytes.ATTRIBUTE_G,
        "tensors": onnx_bytes.ATTRIBUTE_TENSORS,
        "graphs": onnx_bytes.ATTRIBUTE_GRAPHS,
        "sparse_tensor": onnx_bytes.ATTRIBUTE_SPARSE_TENSOR,
        "sparse_tensors": onnx_bytes.ATTRIBUTE_SPARSE_TENSORS,
    }.items():
        assert number(onnx.AttributeProto, field) == value
    assert number(onnx.FunctionProto, "node") == onnx_bytes.FUNCTION_NODE
    assert number(onnx.FunctionProto, "attribute_proto") == (
        onnx_bytes.FUNCTION_ATTRIBUTE
    )
    assert number(onnx.TensorProto, "external_data") == onnx_bytes.TENSOR_EXTERNAL_DATA
    assert number(onnx.TensorProto, "data_location") == onnx_bytes.TENSOR_DATA_LOCATION
    assert number(onnx.SparseTensorProto, "values") == onnx_bytes.SPARSE_VALUES
    assert number(onnx.SparseTensorProto, "indices") == onnx_bytes.SPARSE_INDICES
    assert onnx.TensorProto.EXTERNAL == onnx_bytes.EXTERNAL


def test_an_external_tensor_after_a_long_run_of_ints_is_still_found() -> None:
    # A tree ensemble's node attributes are long runs of `ints` entries, which
    # the walk passes over in one match; what follows them is still read.
    ids = [*range(3000), -1, 2**62]  # one-byte to ten-byte varints
    ensemble = helper.make_node(
        "TreeEnsembleClassifier",
        ["X"],
        ["Y"],
        domain="ai.onnx.ml",
        nodes_featureids=ids,  # attributes are written in name order:
        value=_externalise(_weights()),  # this one after the run
    )
    node = ensemble.SerializeToString()
    assert node.index(b"secret.txt") > node.index(bytes([8 << 3, 0x80]))

    assert "node attribute's tensor" in str(
        external_reference(_model(_graph([ensemble])))
    )
    ensemble.attribute.pop()  # the same run alone refers to nothing outside
    assert external_reference(_model(_graph([ensemble]))) is None
