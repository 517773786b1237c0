"""skserve.protocols.v2.codec, called directly: every malformed request is a
400/413 naming the problem, every valid one the typed rows of exactly the
values sent (one tensor or one input per column, JSON or binary), judged by
the model's schema; answers carry the V2 datatype of each output."""

from __future__ import annotations

import json
import math
import struct
from typing import Any

import numpy as np
import pytest

from skserve.errors import ServingError
from skserve.protocols.v2 import (
    DATATYPES,
    HEADER_LENGTH,
    InferRequest,
    RequestedOutput,
    accepted_types,
    columnar,
    decode_infer,
    encode_output,
    infer_response,
    input_tensors,
    label_type,
    table_of,
)
from skserve.protocols.v2.codec import LAYOUTS
from skserve.rows import Table
from skserve.runtimes import Prediction
from skserve.schema import Column, InputSchema

THREE = InputSchema.numeric(3, None)  # the all-numeric schema of 3 features
# A DataFrame model's schema: every kind, nullable and not, known categories.
TYPED = InputSchema(
    (
        Column("income", "number", nullable=True),
        Column("age", "integer"),
        Column("plan", "string", categories=("basic", "premium"), unknown=True),
        Column(
            "region", "category", nullable=True, categories=("n", "s"), unknown=False
        ),
        Column("member", "boolean", nullable=True),
        Column("tier", "category", categories=(1, 2, 3), unknown=False),
    ),
    "dataframe",
    named=True,
)
NULLABLE = InputSchema(
    (Column("a", "number", nullable=True), Column("b"), Column("c")),
    "array",
    named=True,
)


def tensor(**overrides: Any) -> dict[str, Any]:
    """One valid FP64 input of shape [2, 3], with `overrides` applied."""
    spec = {
        "name": "x",
        "datatype": "FP64",
        "shape": [2, 3],
        "data": [1, 2.5, -3, 4, 5, 6],
    }
    return {**spec, **overrides}


def decode(body: dict[str, Any], *, max_rows: int = 10) -> InferRequest:
    return decode_infer(json.dumps(body).encode(), None, max_rows=max_rows)


def rows(
    body: bytes | dict[str, Any],
    schema: InputSchema = THREE,
    header: str | None = None,
) -> Table:
    """The typed rows of a request, judged by `schema`."""
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return table_of(decode_infer(raw, header, max_rows=10), schema)


def refused(
    body: bytes | dict[str, Any],
    header: str | None = None,
    schema: InputSchema = THREE,
) -> ServingError:
    """The error decoding (and judging by `schema`) raises."""
    with pytest.raises(ServingError) as raised:
        rows(body, schema, header)
    return raised.value


def binary_body(
    inputs: list[tuple[dict[str, Any], bytes]], **request: Any
) -> tuple[bytes, str]:
    """A binary tensor data request: each input's declaration (its size added)
    and bytes, in order; and its Inference-Header-Content-Length."""
    specs = [
        {
            **spec,
            "parameters": {"binary_data_size": len(raw), **spec.get("parameters", {})},
        }
        for spec, raw in inputs
    ]
    header = json.dumps({"inputs": specs, **request}).encode()
    return header + b"".join(raw for _, raw in inputs), str(len(header))


def binary_request(
    values: np.ndarray, datatype: str = "FP64", **parameters: Any
) -> tuple[bytes, str]:
    """A binary tensor data request body for one tensor of `values`."""
    raw = values.tobytes()
    spec = {
        "name": "x",
        "datatype": datatype,
        "shape": list(values.shape),
        "parameters": {"binary_data_size": len(raw), **parameters},
    }
    header = json.dumps({"inputs": [spec]}).encode()
    return header + raw, str(len(header))


def strings(*values: str) -> bytes:
    """BYTES binary data: each element's 4-byte little-endian length, then it."""
    return b"".join(struct.pack("<I", len(v.encode())) + v.encode() for v in values)


def column(name: str, datatype: str, data: list[Any], **extra: Any) -> dict[str, Any]:
    """One input per column, shaped [rows, 1] as MLServer's pandas codec sends it."""
    return {
        "name": name,
        "datatype": datatype,
        "shape": [len(data), 1],
        "data": data,
        **extra,
    }


def typed_inputs(**changes: dict[str, Any]) -> list[dict[str, Any]]:
    """Two valid rows for TYPED, one input per column; `changes` replace inputs."""
    inputs = {
        "income": column("income", "FP64", [52.5, None]),
        "age": column("age", "INT64", [30, 41]),
        "plan": column(
            "plan", "BYTES", ["basic", "gold"], parameters={"content_type": "str"}
        ),
        "region": column("region", "BYTES", ["n", None]),
        "member": column("member", "BOOL", [True, None]),
        "tier": column("tier", "INT32", [1, 3]),
    }
    inputs.update(changes)
    return list(inputs.values())


def typed_refusal(**changes: dict[str, Any]) -> str:
    error = refused({"inputs": typed_inputs(**changes)}, schema=TYPED)
    assert error.status == 400
    return error.message


# --- one tensor [rows, n_features] (existing behaviour)


def test_flat_and_nested_data_give_the_same_row_major_matrix() -> None:
    flat = rows({"inputs": [tensor()]}).numbers
    nested = rows({"inputs": [tensor(data=[[1, 2.5, -3], [4, 5, 6]])]}).numbers

    assert flat.dtype == np.float64
    assert flat.tolist() == nested.tolist() == [[1, 2.5, -3], [4, 5, 6]]


def test_fp32_json_values_are_rounded_to_float32_then_widened() -> None:
    matrix = rows({"inputs": [tensor(datatype="FP32", data=[0.1] * 6)]}).numbers

    assert matrix.dtype == np.float64
    assert matrix[0, 0] == float(np.float32(0.1)) != 0.1


@pytest.mark.parametrize("datatype", ["FP64", "FP32"])
def test_binary_tensor_data_is_read_little_endian(datatype: str) -> None:
    values = np.arange(6, dtype="<f8" if datatype == "FP64" else "<f4").reshape(2, 3)
    body, length = binary_request(values, datatype)

    assert rows(body, header=length).numbers.tolist() == values.tolist()


@pytest.mark.parametrize("datatype", ["INT64", "INT8", "UINT16"])
def test_one_tensor_of_integers_is_taken_as_numbers(datatype: str) -> None:
    as_json = rows({"inputs": [tensor(datatype=datatype, data=[1, 2, 3, 4, 5, 6])]})
    values = np.arange(1, 7).astype(LAYOUTS[datatype]).reshape(2, 3)
    body, length = binary_request(values, datatype)

    as_binary = rows(body, THREE, length)

    assert (
        as_json.numbers.tolist() == as_binary.numbers.tolist() == [[1, 2, 3], [4, 5, 6]]
    )


def test_defaults_are_one_json_predict_output_and_the_id_is_echoed() -> None:
    request = decode({"id": "r-1", "inputs": [tensor()], "parameters": {"x": 1}})

    assert request.id == "r-1"
    assert request.outputs == (RequestedOutput("predict", binary=False),)


def test_binary_outputs_follow_the_request_and_output_parameters() -> None:
    request = decode(
        {
            "inputs": [tensor()],
            "parameters": {"binary_data_output": True},
            "outputs": [
                {"name": "predict"},
                {"name": "predict_proba", "parameters": {"binary_data": False}},
                {"name": "decision_function"},
            ],
        }
    )

    assert request.outputs == (
        RequestedOutput("predict", binary=True),
        RequestedOutput("predict_proba", binary=False),
        RequestedOutput("decision_function", binary=True),
    )


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b'{"inputs": [', "malformed JSON"),
        (b"\xff\xfe", "not UTF-8"),
        (b"[1, 2]", "must be a JSON object"),
        ({"inputs": []}, '"inputs" must be a non-empty list'),
        ({"inputs": [tensor(), tensor()]}, "inputs[1] is named 'x' like inputs[0]"),
        (
            {"inputs": [tensor(datatype="BYTES")]},
            "inputs[0].datatype must be FP64, FP32, FP16, INT8-INT64 or UINT8-UINT64",
        ),
        ({"inputs": [tensor(datatype="FP128")]}, "datatype must be one of FP64"),
        ({"inputs": [tensor(shape=[6])]}, "shape must be [rows, n_features], got [6]"),
        ({"inputs": [tensor(shape=[2, -3])]}, "shape must be [rows, n_features]"),
        ({"inputs": [tensor(shape=[1, 2, 3])]}, "shape must be [rows, n_features]"),
        ({"inputs": [tensor(shape=[0, 3], data=[])]}, "has no rows"),
        ({"inputs": [tensor(data=[1, 2, 3])]}, "holds 6 elements, data has 3"),
        ({"inputs": [tensor(data=[[1, 2, 3]])]}, "nested but not as shape [2, 3]"),
        ({"inputs": [tensor(data=None)]}, 'needs "data"'),
        ({"inputs": [tensor(data=[1, 2, "3", 4, 5, 6])]}, "row 0, column 2"),
        ({"inputs": [tensor(data=[1, 2, 3, True, 5, 6])]}, "row 1, column 0"),
        ({"inputs": [tensor(data=[1, 2, 3, 4, 5, 10**400])]}, "row 1, column 2"),
        ({"inputs": [tensor(shape=[2, 4], data=[0] * 8)]}, "takes [rows, 3]"),
        ({"id": 7, "inputs": [tensor()]}, '"id" must be a string'),
        ({"inputs": [tensor()], "parameters": None}, '"parameters" must be an'),
        ({"inputs": [tensor()], "outputs": [{"name": "proba"}]}, "unknown output"),
        ({"inputs": [tensor()], "outputs": None}, '"outputs" must be a list'),
        (
            {"inputs": [tensor()], "outputs": [{"name": "predict"}] * 2},
            "asked for twice",
        ),
        (
            {
                "inputs": [tensor()],
                "outputs": [{"name": "predict", "parameters": {"classification": 2}}],
            },
            "classification extension is not supported",
        ),
    ],
)
def test_malformed_requests_are_refused_with_a_message_naming_the_problem(
    body: bytes | dict[str, Any], message: str
) -> None:
    error = refused(body)

    assert error.status == 400
    assert message in error.message


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity", "1e999"])
def test_non_finite_json_values_are_refused_naming_the_cell(literal: str) -> None:
    body = json.dumps({"inputs": [tensor(data=[0] * 6)]}).replace(
        "[0, 0, 0, 0, 0, 0]", f"[0, 0, 0, 0, {literal}, 0]"
    )

    error = refused(body.encode())

    assert error.status == 400
    assert error.message.startswith("inputs[0] row 1, column 1 must be a finite")


def test_a_value_beyond_float32_is_refused_for_an_fp32_tensor_only() -> None:
    body = {"inputs": [tensor(datatype="FP32", data=[1, 2, 3, 4, 5, 1e39])]}

    assert "finite FP32 number, got 1e+39" in refused(body).message
    body["inputs"][0]["datatype"] = "FP64"
    assert rows(body).numbers[1, 2] == 1e39


def test_non_finite_binary_values_are_refused_naming_the_cell() -> None:
    values = np.zeros((2, 3), "<f8")
    values[1, 2] = np.nan
    infinite = values.copy()
    infinite[1, 2] = np.inf

    error = refused(*binary_request(values))
    named = refused(*binary_request(infinite), schema=NULLABLE)

    assert error.message == "inputs[0] row 1, column 2 must be a finite number, got NaN"
    assert named.message == (
        "inputs[0] row 1, column 2 ('c') must be a finite number, got Infinity"
    )


def test_binary_sizes_are_checked_against_the_shape_before_reading() -> None:
    values = np.zeros((2, 3), "<f8")
    body, length = binary_request(values)

    wrong_size = refused(*binary_request(values, binary_data_size=47))
    short_body = refused(body[:-8], length)
    extra = refused(body + b"\0", length)

    assert "declares 47 bytes of binary data, the body has 48" in wrong_size.message
    assert "declares 48 bytes of binary data, the body has 40" in short_body.message
    assert "the body has 49" in extra.message


def test_binary_data_must_be_exactly_the_shapes_size() -> None:
    body, length = binary_request(np.zeros(47, "u1"), binary_data_size=47)
    header = json.loads(body[: int(length)])
    header["inputs"][0].update(datatype="FP64", shape=[2, 3])
    fixed = json.dumps(header).encode()

    error = refused(fixed + body[int(length) :], str(len(fixed)))

    assert "shape [2, 3] of FP64 is 48 bytes, binary_data_size says 47" in (
        error.message
    )


def test_huge_declared_numbers_are_clipped_in_messages() -> None:
    body = {"inputs": [tensor(shape=[1, 10**4000], data=[1.0])]}

    error = refused(body)

    assert error.status == 400
    assert "holds 1000" in error.message and len(error.message) < 200


@pytest.mark.parametrize("length", ["0", "-1", "abc", "100000", " ", "9" * 5000])
def test_a_bad_inference_header_content_length_is_refused(length: str) -> None:
    body, _ = binary_request(np.zeros((2, 3), "<f8"))

    error = refused(body, length)

    assert error.status == 400
    assert HEADER_LENGTH in error.message


def test_binary_data_without_a_declaring_input_is_refused() -> None:
    header = json.dumps({"inputs": [tensor()]}).encode()

    error = refused(header + b"\0" * 8, str(len(header)))

    assert "8 bytes of binary data follow the JSON header, but no input declares" in (
        error.message
    )


def test_data_and_binary_data_size_together_are_refused() -> None:
    header = json.dumps(
        {"inputs": [tensor(parameters={"binary_data_size": 48})]}
    ).encode()

    error = refused(header + b"\0" * 48, str(len(header)))

    assert 'both "data" and parameters.binary_data_size' in error.message


def test_rows_over_max_rows_are_refused_before_the_data_is_read() -> None:
    # A huge declared shape with no data: the limit, not the count, answers.
    body = {"inputs": [tensor(shape=[10**12, 3], data=[])]}

    with pytest.raises(ServingError) as raised:
        decode(body, max_rows=5)

    assert raised.value.status == 413
    assert "MAX_ROWS=5" in raised.value.message


def test_a_body_of_empty_lists_is_refused_before_it_is_decoded() -> None:
    # 4 MiB of `[],` would be over a million Python lists once decoded.
    body = b'{"inputs": [' + b"[]," * ((4 << 20) // 3) + b"[]]}"

    with pytest.raises(ServingError) as raised:
        decode_infer(body, None, max_rows=10)

    assert raised.value.status == 413
    assert "more JSON arrays and objects than a request of MAX_ROWS=10" in (
        raised.value.message
    )


def test_brackets_in_strings_and_binary_data_do_not_count_as_containers() -> None:
    values = np.frombuffer(b"[" * 48, "<f8").reshape(2, 3)  # finite: ~1.2e132
    body, length = binary_request(values)
    # More brackets than the budget (rows + request + one input per column of
    # the widest model), all inside a string.
    named = {"id": "[{" * 20_000, "inputs": [tensor()]}

    matrix = rows(body, header=length).numbers

    assert matrix.tolist() == values.tolist()
    assert decode(named, max_rows=2).id == "[{" * 20_000


# --- the form: one tensor, or one input per column


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ({"inputs": [tensor()]}, False),
        ({"inputs": [tensor(name="a", shape=[2, 3])]}, False),
        ({"inputs": [tensor(name="a", shape=[6], data=[0] * 6)]}, True),
        ({"inputs": [tensor(name="a", shape=[6, 1], data=[0] * 6)]}, True),
        ({"inputs": [tensor(name="x", shape=[6, 1], data=[0] * 6)]}, False),
        (
            {
                "inputs": [tensor(name="a", shape=[6, 1], data=[0] * 6)],
                "parameters": {"content_type": "np"},
            },
            False,
        ),
        (
            {"inputs": [tensor()], "parameters": {"content_type": "pd"}},
            True,
        ),
        ({"inputs": [tensor(name="p"), tensor(name="q")]}, True),
    ],
)
def test_one_input_per_column_is_told_from_one_tensor(
    body: dict[str, Any], expected: bool
) -> None:
    assert columnar(decode(body), NULLABLE) is expected


def test_inputs_per_column_in_any_order_give_the_models_column_order() -> None:
    inputs = typed_inputs()[::-1]

    table = rows({"inputs": inputs}, TYPED)

    assert table.numbers.tolist()[0] == [52.5, 30, 1.0]
    assert np.isnan(table.numbers[1, 0]) and np.isnan(table.numbers[1, 2])
    assert table.objects.tolist() == [["basic", "n", 1], ["gold", None, 3]]


def test_mlservers_pandas_form_with_a_missing_string_as_pd_json() -> None:
    # How MLServer's PandasCodec.encode_request sends a string column holding
    # a missing value: each element a JSON text.
    region = column(
        "region", "BYTES", ['"s"', "null"], parameters={"content_type": "pd_json"}
    )
    body = {"parameters": {"content_type": "pd"}, "inputs": typed_inputs(region=region)}

    table = rows(body, TYPED)

    assert table.objects[:, 1].tolist() == ["s", None]


def test_one_column_model_takes_one_named_input_of_shape_rows() -> None:
    schema = InputSchema((Column("plan", "string"),), "dataframe", named=True)
    body = {
        "inputs": [
            {"name": "plan", "datatype": "BYTES", "shape": [2], "data": ["a", "b"]}
        ]
    }

    assert rows(body, schema).objects.tolist() == [["a"], ["b"]]


@pytest.mark.parametrize(
    "datatype",
    [
        "FP64",
        "FP32",
        "FP16",
        "INT64",
        "INT32",
        "INT16",
        "INT8",
        "UINT64",
        "UINT32",
        "UINT16",
        "UINT8",
    ],
)
def test_every_number_datatype_fills_a_number_column(datatype: str) -> None:
    income = column("income", datatype, [7, 100])

    table = rows({"inputs": typed_inputs(income=income)}, TYPED)

    assert table.numbers[:, 0].tolist() == [7.0, 100.0]


@pytest.mark.parametrize(
    ("datatype", "layout"),
    [
        ("FP64", "<f8"),
        ("FP32", "<f4"),
        ("FP16", "<f2"),
        ("INT64", "<i8"),
        ("INT32", "<i4"),
        ("INT16", "<i2"),
        ("INT8", "i1"),
        ("UINT64", "<u8"),
        ("UINT32", "<u4"),
        ("UINT16", "<u2"),
        ("UINT8", "u1"),
    ],
)
def test_every_number_datatype_is_read_from_binary_data(
    datatype: str, layout: str
) -> None:
    values = np.array([[7], [100]], dtype=layout)
    spec = {"name": "age", "datatype": datatype, "shape": [2, 1]}
    inputs = [i for i in typed_inputs() if i["name"] != "age"]
    header = json.dumps(
        {
            "inputs": [
                *inputs,
                {**spec, "parameters": {"binary_data_size": values.nbytes}},
            ]
        }
    ).encode()

    table = rows(header + values.tobytes(), TYPED, str(len(header)))

    assert table.numbers[:, 1].tolist() == [7.0, 100.0]


def test_binary_bytes_bool_and_numbers_with_nan_as_missing() -> None:
    income = np.array([1.5, np.nan], "<f8")
    age = np.array([30, 41], "<i8")
    member = np.array([1, 0], "u1")
    tier = np.array([2.0, 3.0], "<f8")  # a category of numbers
    body, length = binary_body(
        [
            (
                {"name": "plan", "datatype": "BYTES", "shape": [2, 1]},
                strings("basic", "dög"),
            ),
            ({"name": "income", "datatype": "FP64", "shape": [2, 1]}, income.tobytes()),
            ({"name": "age", "datatype": "INT64", "shape": [2]}, age.tobytes()),
            (
                {"name": "region", "datatype": "BYTES", "shape": [2, 1]},
                strings("s", "n"),
            ),
            ({"name": "member", "datatype": "BOOL", "shape": [2, 1]}, member.tobytes()),
            ({"name": "tier", "datatype": "FP64", "shape": [2, 1]}, tier.tobytes()),
        ],
        parameters={"content_type": "pd"},
    )

    table = rows(body, TYPED, length)

    assert table.numbers[0].tolist() == [1.5, 30.0, 1.0]
    assert math.isnan(table.numbers[1, 0]) and table.numbers[1, 1:].tolist() == [41, 0]
    assert table.objects.tolist() == [["basic", "s", 2.0], ["dög", "n", 3.0]]


def test_binary_nan_is_missing_in_a_nullable_column_of_one_tensor() -> None:
    body, length = binary_request(np.array([[np.nan, 1.0, 2.0]], "<f8"))

    table = rows(body, NULLABLE, length)

    assert math.isnan(table.numbers[0, 0]) and table.numbers[0, 1:].tolist() == [1, 2]


def test_json_null_is_missing_in_a_nullable_column_only() -> None:
    ok = rows({"inputs": [tensor(data=[None, 1, 2, 3, 4, 5])]}, NULLABLE)
    error = refused({"inputs": [tensor(data=[1, None, 2, 3, 4, 5])]}, schema=NULLABLE)

    assert math.isnan(ok.numbers[0, 0])
    assert error.message == (
        "inputs[0] row 0, column 1 ('b') may not be missing: this model needs a "
        "finite number there, got null"
    )


def test_a_json_nan_literal_is_not_a_missing_value() -> None:
    body = json.dumps({"inputs": [tensor(data=[0] * 6)]}).replace(
        "[0, 0, 0, 0, 0, 0]", "[NaN, 0, 0, 0, 0, 0]"
    )

    error = refused(body.encode(), schema=NULLABLE)

    assert (
        error.message
        == "inputs[0] row 0, column 0 ('a') must be a finite number, got NaN"
    )


# --- refusals, one input per column


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        (
            {"age": column("age", "FP64", [30, None])},
            "inputs[1] ('age') row 1 may not be missing: this model needs an "
            "integer there, got null",
        ),
        (
            {"age": column("age", "FP64", [30, 4.5])},
            "inputs[1] ('age') row 1 must be an integer, got 4.5",
        ),
        (
            {"plan": column("plan", "BYTES", ["basic", 3])},
            "inputs[2] ('plan') row 1 must be a string, got 3",
        ),
        (
            {"plan": column("plan", "BYTES", ["basic", None])},
            "inputs[2] ('plan') row 1 may not be missing: this model needs a string "
            "there, got null",
        ),
        (
            {"region": column("region", "BYTES", ["w", "n"])},
            'inputs[3] (\'region\') row 0 must be one of "n", "s", got "w"',
        ),
        (
            {"member": column("member", "BOOL", [1, True])},
            "inputs[4] ('member') row 0 must be true or false, got 1",
        ),
        (
            {"tier": column("tier", "INT64", [1, 9])},
            "inputs[5] ('tier') row 1 must be one of 1, 2, 3, got 9",
        ),
        (
            {"income": column("income", "FP64", ["52", 1])},
            "inputs[0] ('income') row 0 must be a finite number, got \"52\"",
        ),
    ],
)
def test_values_the_schema_refuses_name_input_row_expectation_and_value(
    changes: dict[str, Any], message: str
) -> None:
    assert typed_refusal(**changes) == message


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        (
            {"plan": column("plan", "FP64", [1, 2])},
            "inputs[2] ('plan') is FP64, but 'plan' is a string column: send BYTES",
        ),
        (
            {"income": column("income", "BYTES", ["1", "2"])},
            "inputs[0] ('income') is BYTES, but 'income' is a number column: send "
            "FP64, FP32, FP16, INT8-INT64 or UINT8-UINT64",
        ),
        (
            {"member": column("member", "INT64", [1, 0])},
            "inputs[4] ('member') is INT64, but 'member' is a boolean column: "
            "send BOOL",
        ),
        (
            {"region": column("region", "FP64", [1, 0])},
            "inputs[3] ('region') is FP64, but 'region' is a category (of strings) "
            "column: send BYTES",
        ),
        (
            {"tier": column("tier", "BYTES", ["1", "2"])},
            "inputs[5] ('tier') is BYTES, but 'tier' is a category (of numbers) "
            "column: send FP64, FP32, FP16, INT8-INT64 or UINT8-UINT64",
        ),
    ],
)
def test_a_datatype_its_column_does_not_take_is_refused(
    changes: dict[str, Any], message: str
) -> None:
    assert typed_refusal(**changes) == message


def test_missing_and_unknown_inputs_are_named_with_the_expected_ones() -> None:
    inputs = [i for i in typed_inputs() if i["name"] not in ("age", "tier")]
    inputs.append(column("agee", "INT64", [1, 2]))

    error = refused({"inputs": inputs}, schema=TYPED)

    assert error.message == (
        "inputs: missing 'age', 'tier'; unknown 'agee' (this model takes one input "
        "per column: income, age, plan, region, member, tier)"
    )
    assert error.code == "unknown_features"


def test_one_tensor_is_refused_for_a_model_of_strings_pointing_to_columns() -> None:
    body = {"inputs": [tensor(name="input-0", shape=[1, 6], data=[0] * 6)]}

    error = refused(body, schema=TYPED)

    assert error.message.startswith(
        "this model takes strings or categories and true or false in 'plan', "
        "'region', 'member', 'tier', which one tensor of numbers cannot hold: send "
        "one input per column"
    )


@pytest.mark.parametrize(
    ("inputs", "message"),
    [
        (
            typed_inputs(
                income={**column("income", "FP64", [1, 2, 3, 4]), "shape": [2, 2]}
            ),
            "inputs[0] ('income') has shape [2, 2]; an input per column is [rows] "
            "or [rows, 1]",
        ),
        (
            typed_inputs(age=column("age", "INT32", [1, 2.5])),
            "inputs[1] ('age') row 1 must be an INT32 integer (-2147483648 to "
            "2147483647), got 2.5",
        ),
        (
            typed_inputs(age=column("age", "UINT8", [1, 256])),
            "inputs[1] ('age') row 1 must be a UINT8 integer (0 to 255), got 256",
        ),
        (
            typed_inputs(income=column("income", "FP16", [1, 70000])),
            "inputs[0] ('income') row 1 must be a finite FP16 number, got 70000",
        ),
        (
            typed_inputs(
                region=column(
                    "region",
                    "BYTES",
                    ['"n"', "{"],
                    parameters={"content_type": "pd_json"},
                )
            ),
            "inputs[3] ('region') row 1 must be a JSON text "
            '(content_type "pd_json"), got "{"',
        ),
        (
            typed_inputs(
                income=column(
                    "income", "FP64", [1, 2], parameters={"content_type": "str"}
                )
            ),
            'inputs[0] is FP64: content_type "str" is for BYTES',
        ),
        (
            typed_inputs(age=column("age", "INT64", [1])),
            "inputs[1] has 1 rows, inputs[0] has 2; every input holds the same rows",
        ),
    ],
)
def test_malformed_inputs_per_column_are_refused(
    inputs: list[dict[str, Any]], message: str
) -> None:
    assert refused({"inputs": inputs}, schema=TYPED).message == message


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (
            strings("basic") + b"\x05\0\0\0ab",
            "inputs[0]'s binary data ends inside element 1: it says 5 bytes, 2 "
            "are left",
        ),
        (
            strings("basic") + b"\x05\0",
            "inputs[0]'s binary data ends inside element 1; each BYTES element "
            "is a 4-byte little-endian length, then that many bytes",
        ),
        (
            strings("basic", "a", "b"),
            "inputs[0]'s binary data has 5 bytes after its 2 elements",
        ),
        (
            strings("basic") + struct.pack("<I", 2) + b"\xff\xfe",
            "inputs[0] element 1 is not valid UTF-8",
        ),
    ],
)
def test_binary_bytes_must_be_length_prefixed_utf8_filling_their_size(
    raw: bytes, message: str
) -> None:
    body, length = binary_body(
        [({"name": "plan", "datatype": "BYTES", "shape": [2, 1]}, raw)]
    )

    assert refused(body, length, TYPED).message == message


def test_binary_bytes_smaller_than_their_length_prefixes_are_refused_unread() -> None:
    body, length = binary_body(
        [({"name": "plan", "datatype": "BYTES", "shape": [3, 1]}, b"\0" * 8)]
    )

    assert refused(body, length, TYPED).message == (
        "inputs[0]: shape [3, 1] of BYTES needs at least 12 bytes (a 4-byte length "
        "per element), binary_data_size says 8"
    )


def test_a_bool_byte_other_than_0_or_1_is_refused() -> None:
    inputs = [i for i in typed_inputs() if i["name"] != "member"]
    body, length = binary_body(
        [({"name": "member", "datatype": "BOOL", "shape": [2, 1]}, b"\x01\x07")]
    )
    header = json.loads(body[: int(length)])
    header["inputs"] = inputs + header["inputs"]
    text = json.dumps(header).encode()

    error = refused(text + b"\x01\x07", str(len(text)), TYPED)

    assert (
        error.message == "inputs[5] ('member') row 1 must be a BOOL byte, 0 or 1, got 7"
    )


def test_several_binary_inputs_are_cut_in_order_and_sized_together() -> None:
    a = np.array([1.0, 2.0], "<f8")
    b = np.array([3, 4], "<i4")
    c = np.array([5.0, 6.0], "<f4")
    schema = InputSchema(
        (Column("a", "number"), Column("b", "integer"), Column("c", "number")),
        named=True,
    )
    inputs = [
        ({"name": "c", "datatype": "FP32", "shape": [2]}, c.tobytes()),
        ({"name": "a", "datatype": "FP64", "shape": [2]}, a.tobytes()),
        ({"name": "b", "datatype": "INT32", "shape": [2]}, b.tobytes()),
    ]
    body, length = binary_body(inputs)

    table = rows(body, schema, length)
    short = refused(body[:-1], length, schema)

    assert table.numbers.tolist() == [[1, 3, 5], [2, 4, 6]]
    assert short.message == (
        "inputs[0], inputs[1], inputs[2] declare 32 bytes of binary data, "
        "the body has 31 after the JSON header (Inference-Header-Content-Length)"
    )


def test_max_rows_holds_for_every_input() -> None:
    body = {"inputs": [column("a", "FP64", [1, 2]), column("b", "FP64", [1, 2, 3])]}

    with pytest.raises(ServingError) as raised:
        decode(body, max_rows=2)

    assert raised.value.status == 413
    assert raised.value.message == "3 rows exceed MAX_ROWS=2; split the batch"


@pytest.mark.parametrize(
    ("parameters", "message"),
    [
        (
            {"content_type": "str"},
            '"parameters.content_type" must be one of "pd", "np", got "str"',
        ),
        (
            {"content_type": 1},
            '"parameters.content_type" must be one of "pd", "np", got 1',
        ),
    ],
)
def test_request_content_types_other_than_pd_and_np_are_refused(
    parameters: dict[str, Any], message: str
) -> None:
    error = refused({"inputs": [tensor()], "parameters": parameters})

    assert error.message == message


def test_np_says_one_tensor_whatever_the_inputs() -> None:
    body = {
        "inputs": [tensor(name="a"), tensor(name="b")],
        "parameters": {"content_type": "np"},
    }

    assert '"inputs" has 2 tensors' in refused(body).message


def test_each_kind_accepts_the_datatypes_it_can_hold() -> None:
    accepted = {c.name: accepted_types(c) for c in TYPED.columns}

    assert accepted["plan"] == accepted["region"] == ("BYTES",)
    assert accepted["member"] == ("BOOL",)
    assert set(accepted["income"]) == set(accepted["age"]) == set(accepted["tier"])
    assert set(accepted["income"]) == set(DATATYPES) - {"BOOL", "BYTES"}


# --- metadata


def test_metadata_keeps_one_fp64_tensor_for_plain_numbers_taken_as_an_array() -> None:
    inputs, parameters = input_tensors(THREE)

    assert inputs == [{"name": "input-0", "datatype": "FP64", "shape": [-1, 3]}]
    assert parameters is None


def test_metadata_lists_one_input_per_column_as_mlserver_describes_pandas() -> None:
    inputs, parameters = input_tensors(TYPED)
    nullable, _ = input_tensors(NULLABLE)

    assert parameters == {"content_type": "pd"}
    assert inputs == [
        {"name": "income", "datatype": "FP64", "shape": [-1, 1]},
        {"name": "age", "datatype": "INT64", "shape": [-1, 1]},
        {
            "name": "plan",
            "datatype": "BYTES",
            "shape": [-1, 1],
            "parameters": {"content_type": "str"},
        },
        {
            "name": "region",
            "datatype": "BYTES",
            "shape": [-1, 1],
            "parameters": {"content_type": "str"},
        },
        {"name": "member", "datatype": "BOOL", "shape": [-1, 1]},
        {"name": "tier", "datatype": "INT64", "shape": [-1, 1]},
    ]
    assert [i["name"] for i in nullable] == ["a", "b", "c"]


@pytest.mark.parametrize(
    ("manifest", "datatype"),
    [
        ({"task": "classification", "classes": [0, 1]}, "INT64"),
        ({"task": "classification", "classes": ["a", "b"]}, "BYTES"),
        ({"task": "classification", "classes": [0.5, 1.5]}, "FP64"),
        ({"task": "regression", "classes": None}, "FP64"),
        ({"task": "clustering", "classes": None}, "INT64"),
        ({"task": "outlier_detection", "classes": None}, "INT64"),
    ],
)
def test_metadata_names_the_label_datatype_from_the_manifest(
    manifest: dict[str, Any], datatype: str
) -> None:
    assert label_type(manifest) == {"datatype": datatype, "shape": [-1, 1]}


# --- responses


@pytest.mark.parametrize(
    ("labels", "datatype", "data"),
    [
        (np.array([1, 0]), "INT64", [1, 0]),
        (np.array(["cat", "dög"]), "BYTES", ["cat", "dög"]),
        (np.array([0.5, -1.25]), "FP64", [0.5, -1.25]),
        (np.array([True, False]), "BOOL", [True, False]),
    ],
)
def test_labels_are_encoded_with_the_v2_datatype_of_their_dtype(
    labels: np.ndarray, datatype: str, data: list[Any]
) -> None:
    entry, chunk = encode_output("predict", labels, binary=False)

    assert entry == {
        "name": "predict",
        "datatype": datatype,
        "shape": [2, 1],
        "data": data,
    }
    assert chunk is None


def test_binary_outputs_are_little_endian_and_bytes_are_length_prefixed() -> None:
    numbers, number_bytes = encode_output("predict", np.array([1, -2]), binary=True)
    text, string_bytes = encode_output("predict", np.array(["a", "dög"]), binary=True)

    assert number_bytes == struct.pack("<qq", 1, -2)
    assert numbers["parameters"] == {"binary_data_size": 16}
    assert "data" not in numbers
    assert string_bytes == strings("a", "dög")
    assert text["parameters"] == {"binary_data_size": len(string_bytes)}


def test_a_response_with_binary_outputs_says_where_its_json_ends() -> None:
    request = InferRequest(
        "r-9",
        decode({"inputs": [tensor()]}).inputs,
        (RequestedOutput("predict", False), RequestedOutput("predict_proba", True)),
    )
    prediction = Prediction(
        labels=np.array([0, 1]),
        probabilities=np.array([[0.75, 0.25], [0.5, 0.5]]),
        classes=[0, 1],
    )

    response = infer_response(
        request, prediction, model_name="seed", model_version="v1"
    )

    body = response.get_data()
    length = int(response.headers[HEADER_LENGTH])
    header = json.loads(body[:length])
    assert header["id"] == "r-9" and header["model_version"] == "v1"
    assert header["outputs"][0]["data"] == [0, 1]
    assert header["outputs"][1]["shape"] == [2, 2]
    assert np.frombuffer(body[length:], "<f8").tolist() == [0.75, 0.25, 0.5, 0.5]


def test_decision_function_is_an_fp64_column_of_the_scores() -> None:
    request = InferRequest(
        None,
        decode({"inputs": [tensor()]}).inputs,
        (
            RequestedOutput("predict", False),
            RequestedOutput("decision_function", False),
        ),
    )
    prediction = Prediction(labels=np.array([1, -1]), scores=np.array([0.25, -0.5]))

    response = infer_response(request, prediction, model_name="m", model_version="v")

    outputs = response.get_json()["outputs"]
    assert outputs == [
        {"name": "predict", "datatype": "INT64", "shape": [2, 1], "data": [1, -1]},
        {
            "name": "decision_function",
            "datatype": "FP64",
            "shape": [2, 1],
            "data": [0.25, -0.5],
        },
    ]
