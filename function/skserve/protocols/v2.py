"""Protocol v2, the Open Inference Protocol (KServe V2 / Triton HTTP) under /v2:
errors are `{"error": "<message>"}` (V2 clients fail on anything else), and every
request is checked against its declared shape and the limits before a binary
tensor is viewed, and decoded whole before the model is loaded.

Outputs are named as MLServer's scikit-learn runtime names them: `predict` (the
labels, shape [rows, 1]) and `predict_proba` (FP64, [rows, classes]). Tensor data
may be JSON or, with Triton's binary tensor data extension, raw little-endian
bytes after the JSON header.
"""

from __future__ import annotations

import functools
import json
import math
import struct
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import flask
import numpy as np
from werkzeug.routing import Rule

from skserve.errors import (
    BadRequest,
    Code,
    NotFound,
    PayloadTooLarge,
    ServingError,
    UnsupportedMediaType,
)
from skserve.http import check_containers, decode_json, json_response, read_body
from skserve.loader import LoadedModel
from skserve.protocols.base import Endpoint, Protocol
from skserve.rows import Where, from_matrix
from skserve.runtimes import Prediction

OPENAPI = Path(__file__).resolve().parent.parent / "openapi.json"
SERVER_NAME = "skserve"
EXTENSIONS = ("binary_tensor_data",)
HEADER_LENGTH = "Inference-Header-Content-Length"
# Input datatypes and their little-endian layout in binary tensor data.
INPUT_TYPES = {"FP64": np.dtype("<f8"), "FP32": np.dtype("<f4")}
PREDICT, PREDICT_PROBA = "predict", "predict_proba"
OUTPUTS = (PREDICT, PREDICT_PROBA)
INPUT_NAME = "input-0"  # advertised; like MLServer, any name is accepted
PLATFORMS = {"sklearn": "sklearn", "onnx": "onnxruntime_onnx"}
# Bodies a V2 client sends: tritonclient sends no Content-Type at all.
BODY_TYPES = ("", "application/json", "application/octet-stream")
_NUMBER = (int, float)
# Arrays and objects a valid request holds besides its rows (the request, its
# parameters, inputs, the tensor with its shape, data and parameters, outputs
# and two outputs with theirs), with room for clients' own parameters.
CONTAINERS = 32
# A JSON string, quotes included (unrolled so long strings match in one pass).


@functools.cache
def server_version() -> str:
    """The API version the OpenAPI document states (one source for both)."""
    return str(json.loads(OPENAPI.read_bytes())["info"]["version"])


class V2Protocol(Protocol):
    """The Open Inference Protocol's REST API for the one model this serves."""

    name: ClassVar[str] = "v2"
    prefix: ClassVar[str] = "/v2"

    def rules(self) -> list[Rule]:
        model = "/v2/models/<name>"
        versioned = model + "/versions/<version>"
        return [
            Rule("/v2", methods=["GET"], endpoint=self.server_metadata),
            Rule("/v2/health/live", methods=["GET"], endpoint=self.live),
            Rule("/v2/health/ready", methods=["GET"], endpoint=self.server_ready),
            Rule(model, methods=["GET"], endpoint=self.model_metadata),
            Rule(versioned, methods=["GET"], endpoint=self.model_metadata),
            Rule(model + "/ready", methods=["GET"], endpoint=self.model_ready),
            Rule(versioned + "/ready", methods=["GET"], endpoint=self.model_ready),
            Rule(model + "/infer", methods=["POST"], endpoint=self.infer),
            Rule(versioned + "/infer", methods=["POST"], endpoint=self.infer),
        ]

    def public(self) -> frozenset[Endpoint]:
        # Only liveness: readiness loads the model and reports the store's
        # health, which is not for anonymous callers (as v1's /metadata).
        return frozenset({self.live})

    @staticmethod
    def render(error: ServingError) -> flask.Response:
        """{"error": "<message>"}: the spec's error, the one V2 clients can read."""
        return json_response({"error": error.message}, error.status, error.headers())

    def no_route(self, path: str) -> str:
        model = f"/v2/models/{self.context.settings.model_uri.name}"
        return (
            f"no route {path}; use GET /v2, /v2/health/live, /v2/health/ready, "
            f"{model}, {model}/ready or POST {model}/infer"
        )

    def live(self, request: flask.Request) -> flask.Response:
        """Liveness only: never touches the model or the store."""
        return json_response({"live": True})

    def server_ready(self, request: flask.Request) -> flask.Response:
        """Ready once the one model is loaded; loads it (503 if it cannot)."""
        self.context.model(request)
        return json_response({"ready": True})

    def server_metadata(self, request: flask.Request) -> flask.Response:
        """Name, version and the extensions served; never touches the model."""
        return json_response(
            {
                "name": SERVER_NAME,
                "version": server_version(),
                "extensions": list(EXTENSIONS),
            }
        )

    def model_metadata(
        self, request: flask.Request, name: str, version: str | None = None
    ) -> flask.Response:
        """Name, versions, platform, the input tensor and the outputs."""
        model = self._model(request, name, version)
        manifest = model.manifest
        outputs = [{"name": PREDICT, **label_type(manifest.data)}]
        classes = manifest.data.get("classes")
        if model.runtime.gives_probabilities and isinstance(classes, list):
            outputs.append(
                {"name": PREDICT_PROBA, "datatype": "FP64", "shape": [-1, len(classes)]}
            )
        body = {
            "name": self._name(name),
            "versions": [model.version],
            "platform": PLATFORMS.get(model.runtime.name, model.runtime.name),
            "inputs": [
                {
                    "name": INPUT_NAME,
                    "datatype": "FP64",
                    "shape": [-1, manifest.n_features],
                }
            ],
            "outputs": outputs,
        }
        return json_response(body)

    def model_ready(
        self, request: flask.Request, name: str, version: str | None = None
    ) -> flask.Response:
        """200 once the model is loaded (loading it now if needed), else 503."""
        self._model(request, name, version)
        return json_response({"name": self._name(name), "ready": True})

    def infer(
        self, request: flask.Request, name: str, version: str | None = None
    ) -> flask.Response:
        """Decode and check the request (a malformed one is a 400 whatever the
        path names), then check the model's name and version, predict and encode
        the outputs."""
        settings = self.context.settings
        mimetype = request.mimetype
        if mimetype not in BODY_TYPES and not mimetype.endswith("+json"):
            raise UnsupportedMediaType(
                f"Content-Type must be application/json (or none), got {mimetype[:60]}"
            )
        body = read_body(request, settings.max_body_bytes)
        decoded = decode_infer(
            body, request.headers.get(HEADER_LENGTH), max_rows=settings.max_rows
        )
        model = self._model(request, name, version)
        manifest = model.manifest
        matrix = tensor_matrix(decoded.tensor, manifest.n_features)
        table = from_matrix(matrix, model.schema, _cell_of(matrix.shape[1]))
        request.environ["skserve.rows"] = len(table)
        wanted = {output.name for output in decoded.outputs}
        if PREDICT_PROBA in wanted and manifest.task != "classification":
            raise BadRequest(
                f"{PREDICT_PROBA} is only given by classifiers; this model is a "
                f"{manifest.task} model: ask for {PREDICT}",
                code=Code.PROBABILITIES_UNSUPPORTED,
            )
        try:
            prediction = model.runtime.predict(
                table, probabilities=PREDICT_PROBA in wanted
            )
        except BadRequest as error:
            if error.code != Code.PROBABILITIES_UNSUPPORTED:
                raise
            raise BadRequest(
                f"this model does not give {PREDICT_PROBA}; ask for {PREDICT}",
                code=Code.PROBABILITIES_UNSUPPORTED,
            ) from None
        return infer_response(
            decoded,
            prediction,
            model_name=self._name(name),
            model_version=model.version,
        )

    def _name(self, name: str) -> str:
        """`name` if it is the served model's, else a 404 naming that one."""
        served = self.context.settings.model_uri.name
        if name != served:
            raise NotFound(
                f"unknown model {name[:100]!r}; this server serves {served!r}"
            )
        return name

    def _model(
        self, request: flask.Request, name: str, version: str | None
    ) -> LoadedModel:
        """The served model (loading it), checked against the path's name and
        version: another version is a 404 that names the served one."""
        self._name(name)
        model = self.context.model(request)
        if version is not None and version != model.version:
            raise NotFound(
                f"version {version[:100]!r} of {name!r} is not served here; "
                f"this instance serves version {model.version!r}"
            )
        return model


def label_type(manifest: dict[str, Any]) -> dict[str, Any]:
    """The `predict` output's datatype and shape, from the manifest's classes."""
    classes = manifest.get("classes")
    if manifest.get("task") != "classification" or not isinstance(classes, list):
        return {"datatype": "FP64", "shape": [-1, 1]}
    if classes and all(isinstance(c, str) for c in classes):
        datatype = "BYTES"
    elif classes and all(isinstance(c, bool) for c in classes):
        datatype = "BOOL"
    elif all(isinstance(c, int) and not isinstance(c, bool) for c in classes):
        datatype = "INT64"
    else:
        datatype = "FP64"
    return {"datatype": datatype, "shape": [-1, 1]}


# --- requests


@dataclass(frozen=True)
class Tensor:
    """The one input tensor as a finite float64 (rows, columns) matrix; its
    column count is checked against the model's once that is loaded."""

    name: str
    datatype: str  # a key of INPUT_TYPES
    matrix: np.ndarray


@dataclass(frozen=True)
class RequestedOutput:
    name: str  # one of OUTPUTS
    binary: bool


@dataclass(frozen=True)
class InferRequest:
    """A structurally valid inference request."""

    id: str | None
    tensor: Tensor
    outputs: tuple[RequestedOutput, ...]


def decode_infer(
    body: bytes, header_length: str | None, *, max_rows: int
) -> InferRequest:
    """Split off binary data, parse the JSON header and check the request's
    structure, shape and limits; BadRequest/PayloadTooLarge if they fail."""
    header, binary = split_body(body, header_length)
    check_containers(header, max_rows=max_rows, extra=CONTAINERS)
    data = _load_json(header)
    if not isinstance(data, dict):
        raise BadRequest(
            'the request must be a JSON object such as {"inputs": [...]}',
            code=Code.INVALID_REQUEST,
        )
    request_id = data.get("id")
    if "id" in data and not isinstance(request_id, str):
        raise BadRequest('"id" must be a string', code=Code.INVALID_REQUEST)
    parameters = _object(data, "parameters", "parameters")
    binary_default = _flag(parameters, "binary_data_output", "parameters")
    inputs = data.get("inputs")
    if not isinstance(inputs, list) or not inputs:
        raise BadRequest(
            '"inputs" must be a list holding one tensor of shape [rows, n_features]',
            code=Code.MISSING_INPUT,
        )
    if len(inputs) != 1:
        raise BadRequest(
            f'"inputs" has {len(inputs)} tensors; this model takes one of shape '
            "[rows, n_features]",
            code=Code.INVALID_REQUEST,
        )
    tensor = _tensor(inputs[0], binary, max_rows=max_rows)
    outputs = _outputs(data, binary_default)
    return InferRequest(request_id, tensor, outputs)


def split_body(body: bytes, header_length: str | None) -> tuple[bytes, bytes]:
    """(JSON header, binary data) as the Inference-Header-Content-Length
    header divides the body; without it the body is all JSON."""
    if header_length is None:
        return body, b""
    text = header_length.strip()
    # Digits only, and few: int() refuses thousands of digits with a ValueError.
    length = int(text) if text.isdecimal() and len(text) <= 18 else -1
    if not 0 < length <= len(body):
        raise BadRequest(
            f"{HEADER_LENGTH} must be the JSON header's length in bytes, between 1 "
            f"and the body's {len(body)}, got {header_length[:40]!r}",
            code=Code.INVALID_REQUEST,
        )
    return body[:length], body[length:]


def _load_json(text: bytes) -> Any:
    try:
        # UTF-8 only, as the spec says (json.loads would guess UTF-16 or -32).
        decoded = text.decode("utf-8")
    except UnicodeDecodeError:
        raise BadRequest(
            "the request is not UTF-8 encoded JSON", code=Code.INVALID_JSON
        ) from None
    return decode_json(decoded, what="the request")


def _object(container: dict[str, Any], key: str, where: str) -> dict[str, Any]:
    """container[key], which must be an object when present (null is not one)."""
    if key not in container:
        return {}
    value = container[key]
    if not isinstance(value, dict):
        raise BadRequest(f'"{where}" must be an object', code=Code.INVALID_REQUEST)
    return value


def _flag(parameters: dict[str, Any], key: str, where: str) -> bool:
    value = parameters.get(key, False)
    if not isinstance(value, bool):
        raise BadRequest(
            f'"{where}.{key}" must be true or false', code=Code.INVALID_REQUEST
        )
    return value


def _is_count(value: Any) -> bool:
    return type(value) is int and value >= 0


def _tensor(spec: Any, binary: bytes, *, max_rows: int) -> Tensor:
    """Check one input tensor's declaration and data against each other."""
    if not isinstance(spec, dict):
        raise BadRequest("inputs[0] must be an object", code=Code.INVALID_REQUEST)
    name = spec.get("name")
    if not isinstance(name, str):
        raise BadRequest('inputs[0] needs a "name" string', code=Code.INVALID_REQUEST)
    datatype = spec.get("datatype")
    if datatype not in INPUT_TYPES:
        shown = json.dumps(datatype)[:40]
        raise BadRequest(
            f"inputs[0].datatype must be FP64 or FP32, got {shown}",
            code=Code.INVALID_REQUEST,
        )
    shape = spec.get("shape")
    if not (isinstance(shape, list) and len(shape) == 2 and all(map(_is_count, shape))):
        shown = json.dumps(shape)[:60]
        raise BadRequest(
            f"inputs[0].shape must be [rows, n_features], got {shown}",
            code=Code.INVALID_REQUEST,
        )
    rows, columns = shape
    if rows == 0:
        raise BadRequest(
            "inputs[0] has no rows; send at least one", code=Code.EMPTY_BATCH
        )
    if rows > max_rows:
        raise PayloadTooLarge(
            f"{rows} rows exceed MAX_ROWS={max_rows}; split the batch",
            code=Code.TOO_MANY_ROWS,
        )
    parameters = _object(spec, "parameters", "inputs[0].parameters")
    size = parameters.get("binary_data_size")
    count = rows * columns
    if size is None:
        if binary:
            raise BadRequest(
                f"{len(binary)} bytes of binary data follow the JSON header, but "
                "inputs[0] declares no binary_data_size",
                code=Code.INVALID_REQUEST,
            )
        values = _json_values(spec.get("data"), rows, columns)
        return Tensor(name, datatype, _matrix(values, datatype, rows, columns))
    if "data" in spec:
        raise BadRequest(
            'inputs[0] has both "data" and parameters.binary_data_size; send one',
            code=Code.INVALID_REQUEST,
        )
    if not _is_count(size):
        raise BadRequest(
            "inputs[0].parameters.binary_data_size must be a byte count",
            code=Code.INVALID_REQUEST,
        )
    # Numbers a client declares are shown clipped: they may be thousands of digits.
    if size != len(binary):
        raise BadRequest(
            f"inputs[0] declares {_shown(size)} bytes of binary data, the body has "
            f"{len(binary)} after the JSON header ({HEADER_LENGTH})",
            code=Code.INVALID_REQUEST,
        )
    expected = count * INPUT_TYPES[datatype].itemsize
    if size != expected:
        raise BadRequest(
            f"inputs[0]: shape {_shown(shape)} of {datatype} is {_shown(expected)} "
            f"bytes, binary_data_size says {size}",
            code=Code.INVALID_REQUEST,
        )
    return Tensor(name, datatype, _matrix(binary, datatype, rows, columns))


def _json_values(data: Any, rows: int, columns: int) -> list[Any]:
    """The data flattened row-major: given flat, or nested exactly as the shape."""
    count = rows * columns
    if not isinstance(data, list):
        raise BadRequest(
            'inputs[0] needs "data" (a list of numbers, flat or nested as its '
            "shape) or parameters.binary_data_size",
            code=Code.MISSING_INPUT,
        )
    if any(isinstance(row, list) for row in data):
        if len(data) != rows or not all(
            isinstance(row, list) and len(row) == columns for row in data
        ):
            raise BadRequest(
                f"inputs[0].data is nested but not as shape {_shown([rows, columns])}"
                "; send it flat or as that many rows of that many numbers",
                code=Code.INVALID_REQUEST,
            )
        return [value for row in data for value in row]
    if len(data) != count:
        raise BadRequest(
            f"inputs[0].shape {_shown([rows, columns])} holds {_shown(count)} "
            f"elements, data has {len(data)}",
            code=Code.INVALID_REQUEST,
        )
    return data


def _outputs(data: dict[str, Any], binary_default: bool) -> tuple[RequestedOutput, ...]:
    """The outputs asked for (default: `predict`), each binary or JSON."""
    value = data.get("outputs", [])
    if not isinstance(value, list):
        raise BadRequest('"outputs" must be a list', code=Code.INVALID_REQUEST)
    if not value:
        return (RequestedOutput(PREDICT, binary_default),)
    outputs = []
    for i, spec in enumerate(value):
        if not isinstance(spec, dict) or not isinstance(spec.get("name"), str):
            raise BadRequest(
                f'outputs[{i}] must be an object with a "name"',
                code=Code.INVALID_REQUEST,
            )
        name = spec["name"]
        if name not in OUTPUTS:
            raise BadRequest(
                f"unknown output {name[:60]!r}; this model has {', '.join(OUTPUTS)}",
                code=Code.INVALID_REQUEST,
            )
        if any(output.name == name for output in outputs):
            raise BadRequest(
                f"output {name!r} is asked for twice", code=Code.INVALID_REQUEST
            )
        parameters = _object(spec, "parameters", f"outputs[{i}].parameters")
        if "classification" in parameters:
            raise BadRequest(
                "the classification extension is not supported; ask for "
                f"{PREDICT_PROBA} for class probabilities",
                code=Code.INVALID_REQUEST,
            )
        binary = binary_default
        if "binary_data" in parameters:
            binary = _flag(parameters, "binary_data", f"outputs[{i}].parameters")
        outputs.append(RequestedOutput(name, binary))
    return tuple(outputs)


def _matrix(
    values: list[Any] | bytes, datatype: str, rows: int, columns: int
) -> np.ndarray:
    """JSON numbers or binary data (its size already checked against the shape)
    as a float64 matrix; 400 naming the first value that is not a finite
    number of `datatype`."""
    dtype = INPUT_TYPES[datatype]
    if isinstance(values, bytes):
        flat = np.frombuffer(values, dtype=dtype).astype(np.float64)
    else:
        flat = _numbers(values, columns)
        if datatype == "FP32":  # what an FP32 tensor holds
            with np.errstate(over="ignore"):
                flat = flat.astype(np.float32).astype(np.float64)
    bad = np.flatnonzero(~np.isfinite(flat))
    if bad.size:
        index = int(bad[0])
        shown = (
            repr(float(flat[index]))
            if isinstance(values, bytes)
            else _shown(values[index])
        )
        raise BadRequest(
            f"{_cell(index, columns)} must be a finite {datatype} number, got {shown}",
            code=Code.INVALID_VALUE,
        )
    return flat.reshape(rows, columns)


def tensor_matrix(tensor: Tensor, n_features: int) -> np.ndarray:
    """The tensor's matrix, once its column count is the model's (else 400)."""
    rows, columns = tensor.matrix.shape
    if columns != n_features:
        raise BadRequest(
            f"inputs[0] has shape [{rows}, {columns}], this model takes "
            f"[rows, {n_features}]",
            code=Code.WRONG_FEATURE_COUNT,
        )
    return tensor.matrix


def _numbers(values: list[Any], columns: int) -> np.ndarray:
    """JSON numbers as float64; 400 naming the first value that is not one."""
    for index, value in enumerate(values):
        if type(value) not in _NUMBER:
            raise BadRequest(
                f"{_cell(index, columns)} must be a number, got {_shown(value)}",
                code=Code.INVALID_VALUE,
            )
    try:
        return np.array(values, dtype=np.float64)
    except OverflowError:  # an integer beyond float range
        index = next(i for i, v in enumerate(values) if not _fits_float(v))
        raise BadRequest(
            f"{_cell(index, columns)} must be a finite number, got "
            f"{_shown(values[index])}",
            code=Code.INVALID_VALUE,
        ) from None


def _fits_float(value: float) -> bool:
    try:
        return math.isfinite(float(value))
    except OverflowError:
        return False


def _cell_of(columns: int) -> Where:
    return lambda row, column: _cell(row * columns + column, columns)


def _cell(index: int, columns: int) -> str:
    row, column = divmod(index, columns)
    return f"inputs[0] row {row}, column {column}"


def _shown(value: Any) -> str:
    shown = json.dumps(value)
    return shown if len(shown) <= 40 else shown[:37] + "..."


# --- responses


def infer_response(
    request: InferRequest,
    prediction: Prediction,
    *,
    model_name: str,
    model_version: str,
) -> flask.Response:
    """The response JSON, followed by the binary outputs (if any were asked
    for) with Inference-Header-Content-Length saying where the JSON ends."""
    arrays = {PREDICT: prediction.labels, PREDICT_PROBA: prediction.probabilities}
    outputs, chunks = [], []
    for requested in request.outputs:
        array = arrays[requested.name]
        if array is None:  # a runtime that broke its contract: a bug, so a 500
            raise ServingError(f"the runtime gave no {requested.name} output")
        output, chunk = encode_output(requested.name, array, binary=requested.binary)
        outputs.append(output)
        if chunk is not None:
            chunks.append(chunk)
    body = {
        "model_name": model_name,
        "model_version": model_version,
        "id": request.id if request.id is not None else uuid.uuid4().hex,
        "outputs": outputs,
    }
    if not chunks:
        return json_response(body)
    header = json.dumps(body, allow_nan=False, separators=(",", ":")).encode()
    return flask.Response(
        header + b"".join(chunks),
        mimetype="application/octet-stream",
        headers={HEADER_LENGTH: str(len(header))},
    )


def encode_output(
    name: str, array: np.ndarray, *, binary: bool
) -> tuple[dict[str, Any], bytes | None]:
    """One output tensor: its JSON entry, and its bytes when sent as binary.
    One-dimensional outputs get shape [rows, 1], as MLServer gives them."""
    shape = list(array.shape) if array.ndim > 1 else [len(array), 1]
    datatype, array = _output_type(array)
    entry: dict[str, Any] = {"name": name, "datatype": datatype, "shape": shape}
    if not binary:
        entry["data"] = array.ravel().tolist()
        return entry, None
    if datatype == "BYTES":
        chunk = b"".join(
            struct.pack("<I", len(item)) + item
            for item in (str(v).encode("utf-8") for v in array.ravel().tolist())
        )
    else:
        chunk = np.ascontiguousarray(array, dtype=array.dtype.newbyteorder("<"))
        chunk = chunk.tobytes()
    entry["parameters"] = {"binary_data_size": len(chunk)}
    return entry, chunk


def _output_type(array: np.ndarray) -> tuple[str, np.ndarray]:
    """The V2 datatype of `array`, and the array in that type's numpy form."""
    kind = array.dtype.kind
    if kind == "O":  # labels of mixed Python objects: let numpy pick one type
        array = np.asarray(array.tolist())
        kind = array.dtype.kind
    if kind == "b":
        return "BOOL", array.astype(np.bool_)
    if kind in "iu":
        return "INT64", array.astype(np.int64)
    if kind == "f":
        return "FP64", array.astype(np.float64)
    return "BYTES", array.astype(str)
