"""Decoding and encoding of the Open Inference Protocol, called directly and
through the function as Google's samples call it: every malformed request is a
400/413 with the spec's `{"error": "<message>"}`, every valid one a float64
matrix of exactly the values sent."""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from skserve.errors import ServingError
from skserve.protocols.v2 import (
    HEADER_LENGTH,
    InferRequest,
    RequestedOutput,
    decode_infer,
    encode_output,
    infer_response,
    label_type,
    tensor_matrix,
)
from skserve.runtimes import Prediction
from tests.support import SEED_FEATURES, call

INFER = "/v2/models/seed/infer"


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


def refused(body: bytes | dict[str, Any], header: str | None = None) -> ServingError:
    """The error decoding (and converting for 3 features) raises."""
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    with pytest.raises(ServingError) as raised:
        tensor_matrix(decode_infer(raw, header, max_rows=10).tensor, 3)
    return raised.value


def binary_request(
    values: np.ndarray, datatype: str = "FP64", **parameters: Any
) -> tuple[bytes, str]:
    """A binary tensor data request body and its Inference-Header-Content-Length."""
    raw = values.tobytes()
    header = json.dumps(
        {
            "inputs": [
                {
                    "name": "x",
                    "datatype": datatype,
                    "shape": list(values.shape),
                    "parameters": {"binary_data_size": len(raw), **parameters},
                }
            ]
        }
    ).encode()
    return header + raw, str(len(header))


def test_flat_and_nested_data_give_the_same_row_major_matrix() -> None:
    flat = tensor_matrix(decode({"inputs": [tensor()]}).tensor, 3)
    nested = tensor_matrix(
        decode({"inputs": [tensor(data=[[1, 2.5, -3], [4, 5, 6]])]}).tensor, 3
    )

    assert flat.dtype == np.float64
    assert flat.tolist() == nested.tolist() == [[1, 2.5, -3], [4, 5, 6]]


def test_fp32_json_values_are_rounded_to_float32_then_widened() -> None:
    matrix = tensor_matrix(
        decode({"inputs": [tensor(datatype="FP32", data=[0.1] * 6)]}).tensor, 3
    )

    assert matrix.dtype == np.float64
    assert matrix[0, 0] == float(np.float32(0.1)) != 0.1


@pytest.mark.parametrize("datatype", ["FP64", "FP32"])
def test_binary_tensor_data_is_read_little_endian(datatype: str) -> None:
    values = np.arange(6, dtype="<f8" if datatype == "FP64" else "<f4").reshape(2, 3)
    body, length = binary_request(values, datatype)

    request = decode_infer(body, length, max_rows=10)

    assert tensor_matrix(request.tensor, 3).tolist() == values.tolist()


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
            ],
        }
    )

    assert request.outputs == (
        RequestedOutput("predict", binary=True),
        RequestedOutput("predict_proba", binary=False),
    )


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b'{"inputs": [', "malformed JSON"),
        (b"\xff\xfe", "not UTF-8"),
        (b"[1, 2]", "must be a JSON object"),
        ({"inputs": []}, '"inputs" must be a list holding one tensor'),
        ({"inputs": [tensor(), tensor()]}, '"inputs" has 2 tensors'),
        ({"inputs": [tensor(datatype="INT64")]}, "datatype must be FP64 or FP32"),
        ({"inputs": [tensor(shape=[6])]}, "shape must be [rows, n_features], got [6]"),
        ({"inputs": [tensor(shape=[2, -3])]}, "shape must be [rows, n_features]"),
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
    assert tensor_matrix(decode(body).tensor, 3)[1, 2] == 1e39


def test_non_finite_binary_values_are_refused_naming_the_cell() -> None:
    values = np.zeros((2, 3), "<f8")
    values[1, 2] = np.nan

    error = refused(*binary_request(values))

    assert (
        error.message
        == "inputs[0] row 1, column 2 must be a finite FP64 number, got nan"
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

    assert "declares no binary_data_size" in error.message


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
    named = {"id": "[{" * 100, "inputs": [tensor()]}

    matrix = tensor_matrix(decode_infer(body, length, max_rows=2).tensor, 3)

    assert matrix.tolist() == values.tolist()
    assert decode(named, max_rows=2).id == "[{" * 100


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
    strings, string_bytes = encode_output(
        "predict", np.array(["a", "dög"]), binary=True
    )

    assert number_bytes == struct.pack("<qq", 1, -2)
    assert numbers["parameters"] == {"binary_data_size": 16}
    assert "data" not in numbers
    assert string_bytes == struct.pack("<I", 1) + b"a" + struct.pack("<I", 4) + (
        "dög".encode()
    )
    assert strings["parameters"] == {"binary_data_size": len(string_bytes)}


def test_a_response_with_binary_outputs_says_where_its_json_ends() -> None:
    request = InferRequest(
        "r-9",
        decode({"inputs": [tensor()]}).tensor,
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


@pytest.mark.parametrize(
    ("manifest", "datatype"),
    [
        ({"task": "classification", "classes": [0, 1]}, "INT64"),
        ({"task": "classification", "classes": ["a", "b"]}, "BYTES"),
        ({"task": "classification", "classes": [0.5, 1.5]}, "FP64"),
        ({"task": "regression", "classes": None}, "FP64"),
    ],
)
def test_metadata_names_the_label_datatype_from_the_manifest(
    manifest: dict[str, Any], datatype: str
) -> None:
    assert label_type(manifest) == {"datatype": datatype, "shape": [-1, 1]}


# --- through the function, called the way Google's samples call it


def v2_call(
    method: str, path: str, body: Any = None, **headers: str
) -> tuple[int, Any]:
    response = call(
        method,
        path,
        data=None if body is None else json.dumps(body),
        headers=headers,
    )
    assert response.headers["X-Request-Id"]
    return response.status_code, response.get_json()


def test_infer_through_the_function_predicts_like_the_seed_model(
    served: Path, seed_model: Any
) -> None:
    rows = [SEED_FEATURES, [-v for v in SEED_FEATURES]]
    body = {
        "id": "abc",
        "inputs": [{"name": "any", "datatype": "FP64", "shape": [2, 10], "data": rows}],
    }

    status, answer = v2_call("POST", INFER, body)

    assert status == 200, answer
    assert answer["model_name"] == "seed" and answer["id"] == "abc"
    assert answer["model_version"] == (served / "LATEST").read_text().strip()
    assert answer["outputs"] == [
        {
            "name": "predict",
            "datatype": "INT64",
            "shape": [2, 1],
            "data": seed_model.predict(np.array(rows)).tolist(),
        }
    ]


@pytest.mark.parametrize(
    ("method", "path", "status", "message"),
    [
        ("GET", "/v2/models/other", 404, "unknown model 'other'; this server serves"),
        ("GET", "/v2/models/seed/versions/v0/ready", 404, "this instance serves"),
        ("GET", "/v2/nothing", 404, "no route /v2/nothing; use GET /v2"),
        ("PUT", INFER, 405, "PUT is not allowed on /v2/models/seed/infer; use POST"),
        ("POST", INFER, 400, "malformed JSON"),
    ],
)
def test_errors_on_v2_paths_are_a_single_message_string(
    served: Path, method: str, path: str, status: int, message: str
) -> None:
    response = call(method, path, data=b"{", content_type="application/json")

    assert response.status_code == status
    body = response.get_json()
    assert set(body) == {"error"} and isinstance(body["error"], str)
    assert message in body["error"]


def test_predict_keeps_its_own_error_shape_beside_v2(served: Path) -> None:
    response = call("POST", "/predict", data=b"{", content_type="application/json")

    assert response.status_code == 400
    assert response.get_json()["error"]["code"] == "invalid_json"
