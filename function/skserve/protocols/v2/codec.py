"""V2 bodies: every field is checked for its JSON type, shape and limits before
any tensor data is read, and values reach the model only through skserve.rows."""

from __future__ import annotations

import json
import math
import struct
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import flask
import numpy as np

from skserve.errors import BadRequest, Code, PayloadTooLarge, ServingError
from skserve.http import check_containers, decode_json, json_response
from skserve.logs import clip
from skserve.rows import Table, from_columns, from_matrix
from skserve.runtimes import Prediction
from skserve.schema import (
    ARRAY,
    BOOLEAN,
    CATEGORY,
    INTEGER,
    NUMBER,
    STRING,
    Column,
    InputSchema,
)

# Tensor data is JSON (null: a missing value) or, with Triton's binary tensor
# data extension, raw little-endian bytes after the JSON header, whose length
# this header gives (NaN: a missing value; a BYTES element: its 4-byte length,
# then UTF-8).
HEADER_LENGTH = "Inference-Header-Content-Length"
# Outputs as MLServer's scikit-learn runtime names them: the labels ([rows, 1]),
# class probabilities (FP64 [rows, classes]) and an outlier detector's scores
# (FP64 [rows, 1]).
PREDICT, PREDICT_PROBA, DECISION_FUNCTION = (
    "predict",
    "predict_proba",
    "decision_function",
)
OUTPUTS = (PREDICT, PREDICT_PROBA, DECISION_FUNCTION)
INPUT_NAME = "input-0"  # advertised for one tensor; like MLServer, any name does
# Each datatype's little-endian layout in binary tensor data (BYTES has none:
# its elements are length-prefixed).
FLOAT_TYPES = {"FP64": "<f8", "FP32": "<f4", "FP16": "<f2"}
INTEGER_TYPES = {
    "INT64": "<i8",
    "INT32": "<i4",
    "INT16": "<i2",
    "INT8": "i1",
    "UINT64": "<u8",
    "UINT32": "<u4",
    "UINT16": "<u2",
    "UINT8": "u1",
}
NUMBER_TYPES = (*FLOAT_TYPES, *INTEGER_TYPES)
LAYOUTS = {**FLOAT_TYPES, **INTEGER_TYPES, "BOOL": "u1"}
DATATYPES = (*NUMBER_TYPES, "BOOL", "BYTES")
NUMBER_TYPES_SHOWN = "FP64, FP32, FP16, INT8-INT64 or UINT8-UINT64"
# MLServer's content types: "pd" (request: one input per column), "np"
# (request: one tensor; input: a numpy array), "str" (BYTES of UTF-8 text) and
# "pd_json" (BYTES whose elements are JSON texts: how MLServer sends a string
# column holding a missing value).
PANDAS, NUMPY, STR, PANDAS_JSON = "pd", "np", "str", "pd_json"
REQUEST_CONTENT_TYPES = (PANDAS, NUMPY)
INPUT_CONTENT_TYPES = (NUMPY, STR, PANDAS_JSON)
# Arrays and objects a valid request holds besides its rows: the request, its
# parameters and outputs (three, each with parameters), with room for clients'
# own parameters; and per input (the input, its shape, flat data, parameters)
# for a model of up to MAX_COLUMNS columns sent one input per column.
CONTAINERS = 32
MAX_COLUMNS = 4096
INPUT_CONTAINERS = 4 * MAX_COLUMNS
_NUMBER = (int, float)
_SHOWN_NAMES = 20
# flat element index -> how a cell is named in messages.
Cell = Callable[[int], str]


@dataclass(frozen=True)
class Tensor:
    """One input as declared, its data flat in row-major order: the JSON
    values as sent, or the binary data read as its datatype (an array; BYTES:
    the strings). Its shape and size are checked; its values are not yet."""

    index: int
    name: str
    datatype: str  # one of DATATYPES
    shape: tuple[int, ...]  # [rows] or [rows, columns], rows >= 1
    data: list[Any] | np.ndarray
    binary: bool = False
    content_type: str | None = None

    @property
    def at(self) -> str:
        return f"inputs[{self.index}]"

    @property
    def rows(self) -> int:
        return self.shape[0]


@dataclass(frozen=True)
class RequestedOutput:
    name: str  # one of OUTPUTS
    binary: bool


@dataclass(frozen=True)
class InferRequest:
    """A structurally valid inference request."""

    id: str | None
    inputs: tuple[Tensor, ...]
    outputs: tuple[RequestedOutput, ...]
    content_type: str | None = None  # the request's parameters.content_type


# --- requests: structure


@dataclass(frozen=True)
class _Declared:
    """An input's checked declaration, before its binary data is read."""

    index: int
    name: str
    datatype: str
    shape: tuple[int, ...]
    content_type: str | None
    data: list[Any] | None  # flat JSON values, or None with binary data
    size: int | None  # binary_data_size

    @property
    def at(self) -> str:
        return f"inputs[{self.index}]"

    @property
    def count(self) -> int:
        return math.prod(self.shape)


def decode_infer(
    body: bytes, header_length: str | None, *, max_rows: int
) -> InferRequest:
    """Split off binary data, parse the JSON header and check every field's
    type, the inputs' shapes, sizes and the limits; read the binary data only
    then. BadRequest/PayloadTooLarge naming the first problem."""
    header, binary = split_body(body, header_length)
    check_containers(header, max_rows=max_rows, extra=CONTAINERS + INPUT_CONTAINERS)
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
    content_type = _content_type(parameters, "parameters", REQUEST_CONTENT_TYPES)
    inputs = data.get("inputs")
    if not isinstance(inputs, list) or not inputs:
        raise BadRequest(
            '"inputs" must be a non-empty list: one tensor of shape '
            "[rows, n_features], or one input per column",
            code=Code.MISSING_INPUT,
        )
    declared = [_declare(spec, i, max_rows) for i, spec in enumerate(inputs)]
    _check_together(declared)
    outputs = _outputs(data, binary_default)
    tensors = _read(declared, binary)
    return InferRequest(request_id, tensors, outputs, content_type)


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


def _content_type(
    parameters: dict[str, Any], where: str, allowed: tuple[str, ...]
) -> str | None:
    """parameters.content_type: absent, or one of `allowed`."""
    if "content_type" not in parameters:
        return None
    value = parameters["content_type"]
    if value not in allowed:
        raise BadRequest(
            f'"{where}.content_type" must be one of '
            f"{', '.join(map(json.dumps, allowed))}, got {_shown(value)}",
            code=Code.INVALID_REQUEST,
        )
    return str(value)


def _is_count(value: Any) -> bool:
    return type(value) is int and value >= 0


def _declare(spec: Any, index: int, max_rows: int) -> _Declared:
    """Check one input's fields and its data's size against its shape."""
    at = f"inputs[{index}]"
    if not isinstance(spec, dict):
        raise BadRequest(f"{at} must be an object", code=Code.INVALID_REQUEST)
    name = spec.get("name")
    if not isinstance(name, str):
        raise BadRequest(f'{at} needs a "name" string', code=Code.INVALID_REQUEST)
    datatype = spec.get("datatype")
    if datatype not in DATATYPES:
        raise BadRequest(
            f"{at}.datatype must be one of {', '.join(DATATYPES)}, got "
            f"{_shown(datatype)}",
            code=Code.INVALID_REQUEST,
        )
    shape = spec.get("shape")
    if not (
        isinstance(shape, list) and 1 <= len(shape) <= 2 and all(map(_is_count, shape))
    ):
        raise BadRequest(
            f"{at}.shape must be [rows, n_features] (one tensor) or [rows] / "
            f"[rows, 1] (one input per column), got {_shown(shape)}",
            code=Code.INVALID_REQUEST,
        )
    rows = shape[0]
    if rows == 0:
        raise BadRequest(f"{at} has no rows; send at least one", code=Code.EMPTY_BATCH)
    if rows > max_rows:
        raise PayloadTooLarge(
            f"{rows} rows exceed MAX_ROWS={max_rows}; split the batch",
            code=Code.TOO_MANY_ROWS,
        )
    parameters = _object(spec, "parameters", f"{at}.parameters")
    content_type = _content_type(parameters, f"{at}.parameters", INPUT_CONTENT_TYPES)
    if content_type in (STR, PANDAS_JSON) and datatype != "BYTES":
        raise BadRequest(
            f'{at} is {datatype}: content_type "{content_type}" is for BYTES',
            code=Code.INVALID_REQUEST,
        )
    if "binary_data_size" not in parameters:
        values = _json_values(spec.get("data"), shape, at)
        return _Declared(
            index, name, datatype, tuple(shape), content_type, values, None
        )
    if "data" in spec:
        raise BadRequest(
            f'{at} has both "data" and parameters.binary_data_size; send one',
            code=Code.INVALID_REQUEST,
        )
    size = parameters["binary_data_size"]
    if not _is_count(size):
        raise BadRequest(
            f"{at}.parameters.binary_data_size must be a byte count, got "
            f"{_shown(size)}",
            code=Code.INVALID_REQUEST,
        )
    return _Declared(index, name, datatype, tuple(shape), content_type, None, size)


def _json_values(data: Any, shape: list[int], at: str) -> list[Any]:
    """The data flattened row-major: given flat, or nested exactly as the shape."""
    count = math.prod(shape)
    if not isinstance(data, list):
        raise BadRequest(
            f'{at} needs "data" (a list of values, flat or nested as its shape) '
            "or parameters.binary_data_size",
            code=Code.MISSING_INPUT,
        )
    if any(isinstance(row, list) for row in data):
        if not (
            len(shape) == 2
            and len(data) == shape[0]
            and all(isinstance(row, list) and len(row) == shape[1] for row in data)
        ):
            raise BadRequest(
                f"{at}.data is nested but not as shape {_shown(shape)}; send it "
                "flat, or as that many rows of that many values",
                code=Code.INVALID_REQUEST,
            )
        return [value for row in data for value in row]
    if len(data) != count:
        raise BadRequest(
            f"{at}.shape {_shown(shape)} holds {_shown(count)} elements, data has "
            f"{len(data)}",
            code=Code.INVALID_REQUEST,
        )
    return data


def _check_together(declared: list[_Declared]) -> None:
    """Inputs are named once each and hold the same rows."""
    seen: dict[str, int] = {}
    first = declared[0]
    for spec in declared:
        if spec.name in seen:
            raise BadRequest(
                f"{spec.at} is named {_name(spec.name)} like inputs"
                f"[{seen[spec.name]}]; name each input once",
                code=Code.INVALID_REQUEST,
            )
        seen[spec.name] = spec.index
        if spec.shape[0] != first.shape[0]:
            raise BadRequest(
                f"{spec.at} has {spec.shape[0]} rows, inputs[0] has "
                f"{first.shape[0]}; every input holds the same rows",
                code=Code.INVALID_REQUEST,
            )


def _read(declared: list[_Declared], binary: bytes) -> tuple[Tensor, ...]:
    """Each input's data, its binary part cut from `binary` in input order once
    every declared size matches the body and the input's shape."""
    sized = [spec for spec in declared if spec.size is not None]
    if not sized:
        if binary:
            raise BadRequest(
                f"{len(binary)} bytes of binary data follow the JSON header, but no "
                "input declares a binary_data_size",
                code=Code.INVALID_REQUEST,
            )
    else:
        # Numbers a client declares are shown clipped: they may be thousands
        # of digits.
        total = sum(spec.size or 0 for spec in sized)
        if total != len(binary):
            who = (
                f"{sized[0].at} declares"
                if len(sized) == 1
                else f"{', '.join(s.at for s in sized)} declare"
            )
            raise BadRequest(
                f"{who} {_shown(total)} bytes of binary data, the body has "
                f"{len(binary)} after the JSON header ({HEADER_LENGTH})",
                code=Code.INVALID_REQUEST,
            )
        for spec in sized:
            _check_size(spec)
    tensors = []
    offset = 0
    for spec in declared:
        if spec.size is None:
            assert spec.data is not None
            data: list[Any] | np.ndarray = spec.data
        else:
            raw = binary[offset : offset + spec.size]
            offset += spec.size
            data = (
                _strings(raw, spec.count, spec.at)
                if spec.datatype == "BYTES"
                else np.frombuffer(raw, dtype=LAYOUTS[spec.datatype])
            )
        tensors.append(
            Tensor(
                spec.index,
                spec.name,
                spec.datatype,
                spec.shape,
                data,
                binary=spec.size is not None,
                content_type=spec.content_type,
            )
        )
    return tuple(tensors)


def _check_size(spec: _Declared) -> None:
    """A binary input's declared size against its shape, before it is read."""
    assert spec.size is not None
    count = spec.count
    if spec.datatype == "BYTES":
        if spec.size < 4 * count:
            raise BadRequest(
                f"{spec.at}: shape {_shown(list(spec.shape))} of BYTES needs at "
                f"least {_shown(4 * count)} bytes (a 4-byte length per element), "
                f"binary_data_size says {spec.size}",
                code=Code.INVALID_REQUEST,
            )
        return
    expected = count * np.dtype(LAYOUTS[spec.datatype]).itemsize
    if spec.size != expected:
        raise BadRequest(
            f"{spec.at}: shape {_shown(list(spec.shape))} of {spec.datatype} is "
            f"{_shown(expected)} bytes, binary_data_size says {spec.size}",
            code=Code.INVALID_REQUEST,
        )


def _strings(raw: bytes, count: int, at: str) -> list[str]:
    """BYTES binary data: `count` elements, each a 4-byte little-endian length
    then that many bytes of UTF-8, filling `raw` exactly."""
    strings = []
    offset = 0
    for k in range(count):
        if offset + 4 > len(raw):
            raise BadRequest(
                f"{at}'s binary data ends inside element {k}; each BYTES element "
                "is a 4-byte little-endian length, then that many bytes",
                code=Code.INVALID_REQUEST,
            )
        (length,) = struct.unpack_from("<I", raw, offset)
        offset += 4
        if offset + length > len(raw):
            raise BadRequest(
                f"{at}'s binary data ends inside element {k}: it says {length} "
                f"bytes, {len(raw) - offset} are left",
                code=Code.INVALID_REQUEST,
            )
        try:
            strings.append(raw[offset : offset + length].decode("utf-8"))
        except UnicodeDecodeError:
            raise BadRequest(
                f"{at} element {k} is not valid UTF-8", code=Code.INVALID_VALUE
            ) from None
        offset += length
    if offset != len(raw):
        raise BadRequest(
            f"{at}'s binary data has {len(raw) - offset} bytes after its {count} "
            "elements",
            code=Code.INVALID_REQUEST,
        )
    return strings


def _outputs(data: dict[str, Any], binary_default: bool) -> tuple[RequestedOutput, ...]:
    """The outputs asked for (default: `predict`), each binary or JSON."""
    value = data.get("outputs", [])
    if not isinstance(value, list):
        raise BadRequest('"outputs" must be a list', code=Code.INVALID_REQUEST)
    if not value:
        return (RequestedOutput(PREDICT, binary_default),)
    outputs: list[RequestedOutput] = []
    for i, spec in enumerate(value):
        if not isinstance(spec, dict) or not isinstance(spec.get("name"), str):
            raise BadRequest(
                f'outputs[{i}] must be an object with a "name" string',
                code=Code.INVALID_REQUEST,
            )
        name = spec["name"]
        if name not in OUTPUTS:
            raise BadRequest(
                f"unknown output {_name(name)}; outputs are {PREDICT}, "
                f"{PREDICT_PROBA} (classifiers) and {DECISION_FUNCTION} (outlier "
                "detectors)",
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


# --- requests: rows, once the model's schema is known


def columnar(request: InferRequest, schema: InputSchema) -> bool:
    """Whether the request sends one input per column, named by its feature,
    [rows] or [rows, 1], BYTES for strings (as MLServer's pandas codec sends a
    DataFrame), else one tensor [rows, n_features] of numbers named anything
    (as tritonclient and KServe send an array).

    One input per column when the request says so (parameters.content_type
    "pd"), or has several inputs, or its one input is named by a feature and
    shaped as one column; content_type "np" says one tensor."""
    if request.content_type is not None:
        return request.content_type == PANDAS
    if len(request.inputs) > 1:
        return True
    (tensor,) = request.inputs
    one_column = len(tensor.shape) == 1 or tensor.shape[1] == 1
    return one_column and tensor.name in schema.names


def table_of(request: InferRequest, schema: InputSchema) -> Table:
    """The request's rows as typed columns, every value judged by the schema
    (skserve.rows); BadRequest naming the input, row (and column) of the first
    bad one, what was expected and what came."""
    if columnar(request, schema):
        return _columns_table(request, schema)
    return _tensor_table(request, schema)


def _tensor_table(request: InferRequest, schema: InputSchema) -> Table:
    """One tensor [rows, n_features] of numbers, in the model's column order."""
    if len(request.inputs) != 1:
        raise BadRequest(
            f'"inputs" has {len(request.inputs)} tensors; with parameters.'
            'content_type "np" send one, of shape [rows, n_features]',
            code=Code.INVALID_REQUEST,
        )
    (tensor,) = request.inputs
    blocked = [c for c in schema.columns if c.kind not in (NUMBER, INTEGER)]
    if blocked:
        raise BadRequest(
            f"this model takes {_kinds(blocked)} in "
            f"{_names([c.name for c in blocked])}, which one tensor of numbers "
            "cannot hold: send one input per column, named by its feature ("
            f"{_names(schema.names, quoted=False)}), BYTES for strings, with "
            'parameters.content_type "pd"',
            code=Code.INVALID_REQUEST,
        )
    if len(tensor.shape) != 2:
        raise BadRequest(
            f"{tensor.at}.shape must be [rows, n_features], got "
            f"{_shown(list(tensor.shape))}",
            code=Code.INVALID_REQUEST,
        )
    if tensor.datatype not in NUMBER_TYPES:
        raise BadRequest(
            f"{tensor.at}.datatype must be {NUMBER_TYPES_SHOWN} for one tensor "
            f"of shape [rows, n_features], got {tensor.datatype}",
            code=Code.INVALID_REQUEST,
        )
    rows, columns = tensor.shape
    n_features = len(schema.columns)
    if columns != n_features:
        raise BadRequest(
            f"{tensor.at} has shape [{rows}, {_shown(columns)}], this model takes "
            f"[rows, {n_features}]",
            code=Code.WRONG_FEATURE_COUNT,
        )
    names = schema.names if schema.named else None

    def where(row: int, position: int) -> str:
        cell = f"{tensor.at} row {row}, column {position}"
        return f"{cell} ({names[position]!r})" if names else cell

    values = _values(tensor, lambda i: where(*divmod(i, columns)))
    if isinstance(values, list):
        numbers = _finite_numbers(values)
        if numbers is None:  # the schema names the first value it refuses
            return from_columns(
                [values[j::columns] for j in range(columns)], rows, schema, where
            )
        values = numbers
    return from_matrix(values.reshape(rows, columns), schema, where)


def _columns_table(request: InferRequest, schema: InputSchema) -> Table:
    """One input per column, named by its feature, in any order."""
    names = schema.names
    position_of = {name: j for j, name in enumerate(names)}
    unknown = [t.name for t in request.inputs if t.name not in position_of]
    sent = {t.name for t in request.inputs}
    missing = [name for name in names if name not in sent]
    if missing or unknown:
        parts = []
        if missing:
            parts.append(f"missing {_names(missing)}")
        if unknown:
            parts.append(f"unknown {_names(unknown)}")
        raise BadRequest(
            f"inputs: {'; '.join(parts)} (this model takes one input per column: "
            f"{_names(names, quoted=False)})",
            code=Code.UNKNOWN_FEATURES if unknown else Code.MISSING_FEATURES,
        )
    by_position: dict[int, Tensor] = {}
    for tensor in request.inputs:
        position = position_of[tensor.name]
        _check_column(tensor, schema.columns[position])
        by_position[position] = tensor

    def where(row: int, position: int) -> str:
        tensor = by_position[position]
        return f"{tensor.at} ({tensor.name!r}) row {row}"

    columns: list[Sequence[Any] | np.ndarray] = []
    for position, column in enumerate(schema.columns):
        tensor = by_position[position]
        values = _values(tensor, lambda i, p=position: where(i, p))
        if not column.numeric:  # objects: Python values, None where missing
            values = _objects(values)
        columns.append(values)
    return from_columns(columns, request.inputs[0].rows, schema, where)


def _check_column(tensor: Tensor, column: Column) -> None:
    """One input per column: shaped as one, of a datatype its kind takes."""
    if len(tensor.shape) == 2 and tensor.shape[1] != 1:
        raise BadRequest(
            f"{tensor.at} ({tensor.name!r}) has shape {_shown(list(tensor.shape))}; "
            "an input per column is [rows] or [rows, 1]",
            code=Code.INVALID_REQUEST,
        )
    accepted = accepted_types(column)
    if tensor.datatype not in accepted:
        shown = NUMBER_TYPES_SHOWN if accepted == NUMBER_TYPES else accepted[0]
        raise BadRequest(
            f"{tensor.at} ({tensor.name!r}) is {tensor.datatype}, but "
            f"{column.name!r} is {_kind(column)} column: send {shown}",
            code=Code.INVALID_REQUEST,
        )


def accepted_types(column: Column) -> tuple[str, ...]:
    """The datatypes an input for `column` may have."""
    if column.kind == BOOLEAN:
        return ("BOOL",)
    if column.kind == STRING or (
        column.kind == CATEGORY and _string_categories(column)
    ):
        return ("BYTES",)
    return NUMBER_TYPES


def _string_categories(column: Column) -> bool:
    """A category column of strings (else of numbers), as skserve.rows reads it."""
    return not (column.categories and not isinstance(column.categories[0], str))


def _kind(column: Column) -> str:
    if column.kind == CATEGORY:
        of = "strings" if _string_categories(column) else "numbers"
        return f"a category (of {of})"
    return {INTEGER: "an integer", BOOLEAN: "a boolean"}.get(
        column.kind, f"a {column.kind}"
    )


def _kinds(columns: list[Column]) -> str:
    kinds = {
        "true or false" if c.kind == BOOLEAN else "strings or categories"
        for c in columns
    }
    return " and ".join(sorted(kinds))


def _values(tensor: Tensor, cell: Cell) -> list[Any] | np.ndarray:
    """The tensor's values as its datatype makes them, for skserve.rows to
    judge: JSON values as sent (FP32/FP16 numbers rounded to that type), or
    binary numbers as float64 with NaN where missing, or strings. Refuses what
    the datatype itself rules out (a number beyond FP32, 2.5 in an INT32, a
    BOOL byte other than 0 and 1, a pd_json element that is not JSON)."""
    datatype = tensor.datatype
    data = tensor.data
    if tensor.content_type == PANDAS_JSON:
        return _json_texts(data, cell)
    if isinstance(data, np.ndarray):
        if datatype == "BOOL":
            bad = np.flatnonzero(data > 1)
            if bad.size:
                index = int(bad[0])
                raise BadRequest(
                    f"{cell(index)} must be a BOOL byte, 0 or 1, got "
                    f"{int(data[index])}",
                    code=Code.INVALID_VALUE,
                )
        return data.astype(np.float64)
    if datatype in ("FP32", "FP16"):
        return _rounded(data, datatype, cell)
    if datatype in INTEGER_TYPES:
        _check_integers(data, datatype, cell)
    return data


def _rounded(values: list[Any], datatype: str, cell: Cell) -> list[Any] | np.ndarray:
    """JSON numbers of an FP32 or FP16 tensor as that type holds them; a finite
    number beyond its range is refused."""
    dtype = np.dtype(FLOAT_TYPES[datatype])
    limit = float(np.finfo(dtype).max)
    numbers = _finite_numbers(values)
    if numbers is not None:  # the common case, at numpy's speed
        beyond = np.flatnonzero(np.abs(numbers) > limit)
        if not beyond.size:
            return numbers.astype(dtype).astype(np.float64)
    rounded = list(values)
    for i, value in enumerate(values):
        if type(value) not in _NUMBER or (
            type(value) is float and not math.isfinite(value)
        ):
            continue  # not a number, or a NaN or Infinity literal: the schema judges
        try:
            number = float(value)
        except OverflowError:  # an integer beyond float range
            number = math.inf
        if not abs(number) <= limit:
            raise BadRequest(
                f"{cell(i)} must be a finite {datatype} number, got {_shown(value)}",
                code=Code.INVALID_VALUE,
            )
        rounded[i] = float(dtype.type(number))
    return rounded


def _check_integers(values: list[Any], datatype: str, cell: Cell) -> None:
    """JSON numbers of an INT or UINT tensor must be integers of its range."""
    info = np.iinfo(np.dtype(INTEGER_TYPES[datatype]))
    low, high = int(info.min), int(info.max)
    for i, value in enumerate(values):
        if type(value) in _NUMBER and not (type(value) is int and low <= value <= high):
            raise BadRequest(
                f"{cell(i)} must be {'an' if datatype[0] == 'I' else 'a'} "
                f"{datatype} integer ({low} to {high}), got "
                f"{_shown(value)}",
                code=Code.INVALID_VALUE,
            )


def _json_texts(values: list[Any] | np.ndarray, cell: Cell) -> list[Any]:
    """BYTES with content_type "pd_json": each element a JSON text (how
    MLServer sends a string column that holds a missing value, as null)."""
    decoded = []
    for i, value in enumerate(values):
        if not isinstance(value, str):
            raise BadRequest(
                f'{cell(i)} must be a JSON text (content_type "pd_json"), got '
                f"{_shown(value)}",
                code=Code.INVALID_VALUE,
            )
        try:
            decoded.append(json.loads(value))
        except (ValueError, RecursionError):
            raise BadRequest(
                f'{cell(i)} must be a JSON text (content_type "pd_json"), got '
                f"{_shown(value)}",
                code=Code.INVALID_VALUE,
            ) from None
    return decoded


def _finite_numbers(values: list[Any]) -> np.ndarray | None:
    """The values as float64 when every one is a finite JSON number, else None
    (then NaN could not tell a JSON NaN from a missing value)."""
    if not all(type(v) in _NUMBER for v in values):
        return None
    try:
        array = np.array(values, dtype=np.float64)
    except OverflowError:  # an integer beyond float range
        return None
    return array if np.isfinite(array).all() else None


def _objects(values: list[Any] | np.ndarray) -> list[Any]:
    """A column held as objects (strings, categories): Python values, with
    None for a binary NaN (a missing value)."""
    if isinstance(values, list):
        return values
    return [None if v != v else v for v in values.tolist()]


# --- metadata


def input_tensors(schema: InputSchema) -> tuple[list[dict[str, Any]], dict | None]:
    """The model metadata's inputs, and its parameters: one FP64 tensor
    [-1, n_features] for a model of plain finite numbers taking an array (as
    always); else one input per column, as MLServer describes a pandas model
    (content_type "pd"), BYTES for strings and categories of strings."""
    if schema.strict_numeric and schema.format == ARRAY:
        tensor = {
            "name": INPUT_NAME,
            "datatype": "FP64",
            "shape": [-1, len(schema.columns)],
        }
        return [tensor], None
    inputs = []
    for column in schema.columns:
        datatype = _advertised(column)
        entry: dict[str, Any] = {
            "name": column.name,
            "datatype": datatype,
            "shape": [-1, 1],
        }
        if datatype == "BYTES":
            entry["parameters"] = {"content_type": STR}
        inputs.append(entry)
    return inputs, {"content_type": PANDAS}


def _advertised(column: Column) -> str:
    accepted = accepted_types(column)
    if accepted != NUMBER_TYPES:
        return accepted[0]
    if column.kind == INTEGER:
        return "INT64"
    if column.kind == CATEGORY and all(type(c) is int for c in column.categories or ()):
        return "INT64"
    return "FP64"


def label_type(manifest: dict[str, Any]) -> dict[str, Any]:
    """The `predict` output's datatype and shape, from the manifest: cluster
    indices and outlier labels (1, -1) are INT64, regression FP64, classes
    their own type."""
    classes = manifest.get("classes")
    task = manifest.get("task")
    if task in ("clustering", "outlier_detection"):
        datatype = "INT64"
    elif task != "classification" or not isinstance(classes, list):
        datatype = "FP64"
    elif classes and all(isinstance(c, str) for c in classes):
        datatype = "BYTES"
    elif classes and all(isinstance(c, bool) for c in classes):
        datatype = "BOOL"
    elif all(isinstance(c, int) and not isinstance(c, bool) for c in classes):
        datatype = "INT64"
    else:
        datatype = "FP64"
    return {"datatype": datatype, "shape": [-1, 1]}


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
    arrays = {
        PREDICT: prediction.labels,
        PREDICT_PROBA: prediction.probabilities,
        DECISION_FUNCTION: prediction.scores,
    }
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


# --- messages


def _shown(value: Any) -> str:
    """A value a client sent, as JSON, clipped (it may be thousands of digits)."""
    try:
        shown = json.dumps(value)
    except (TypeError, ValueError):
        shown = repr(value)
    return shown if len(shown) <= 40 else shown[:37] + "..."


def _name(name: str) -> str:
    return repr(clip(name, 60))


def _names(names: list[str], *, quoted: bool = True) -> str:
    """Up to _SHOWN_NAMES names (the model may have thousands)."""
    shown = [_name(n) if quoted else clip(n, 60) for n in names[:_SHOWN_NAMES]]
    more = len(names) - _SHOWN_NAMES
    if more > 0:
        shown.append(f"and {more} more (the model's metadata lists them)")
    return ", ".join(shown)


__all__ = [
    "DATATYPES",
    "DECISION_FUNCTION",
    "HEADER_LENGTH",
    "INPUT_NAME",
    "OUTPUTS",
    "PREDICT",
    "PREDICT_PROBA",
    "InferRequest",
    "RequestedOutput",
    "Tensor",
    "accepted_types",
    "columnar",
    "decode_infer",
    "encode_output",
    "infer_response",
    "input_tensors",
    "label_type",
    "split_body",
    "table_of",
]
