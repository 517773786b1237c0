"""A twin is only its own bytes: no tensor of it may point at data elsewhere.

ONNX lets a tensor keep its values outside the model (`data_location=EXTERNAL`
with a `location` path, read relative to the working directory when a model is
loaded from bytes): a crafted twin could make the function answer with the
bytes of a file beside it. This walks the model's protobuf encoding, every
graph, subgraph and function, without the `onnx` package (the slim deploy does
not carry it), and finds any such tensor before a session is built.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

# Field numbers of onnx.proto (checked against onnx's descriptors by the tests).
MODEL_GRAPH, MODEL_FUNCTIONS = 7, 25
GRAPH_NODE, GRAPH_INITIALIZER, GRAPH_SPARSE_INITIALIZER = 1, 5, 15
NODE_ATTRIBUTE = 5
ATTRIBUTE_T, ATTRIBUTE_G, ATTRIBUTE_TENSORS, ATTRIBUTE_GRAPHS = 5, 6, 10, 11
ATTRIBUTE_SPARSE_TENSOR, ATTRIBUTE_SPARSE_TENSORS = 22, 23
FUNCTION_NODE, FUNCTION_ATTRIBUTE = 7, 11
TENSOR_EXTERNAL_DATA, TENSOR_DATA_LOCATION = 13, 14
SPARSE_VALUES, SPARSE_INDICES = 1, 2
EXTERNAL = 1  # TensorProto.DataLocation.EXTERNAL
MAX_DEPTH = 64  # nested subgraphs; far beyond any converter's output
ATTRIBUTE_INTS_KEY = 8 << 3  # AttributeProto.ints (field 8), one varint each
# A run of `ints` entries: their key byte, then a varint of at most 10 bytes
# (what _varint accepts). A tree ensemble holds one entry per node in each of
# six such attributes, most of a large twin's fields: skipping the run in one
# match took the 1,000-tree forest twin's walk from 992 ms to 69 ms. Anything
# else (a truncated or overlong varint) is left to the field-by-field loop.
INTS_RUN = re.compile(rb"(?:\x40[\x80-\xff]{0,9}[\x00-\x7f])+")


class MalformedModel(ValueError):
    """The bytes are not a protobuf encoding this walk can read."""


def external_reference(data: bytes) -> str | None:
    """Where the model refers to data outside its bytes (a short description),
    or None when it does not."""
    view = memoryview(data)
    for field, value in _fields(view):
        if field == MODEL_GRAPH and isinstance(value, memoryview):
            found = _graph(value, 0)
            if found:
                return found
        elif field == MODEL_FUNCTIONS and isinstance(value, memoryview):
            found = _function(value, 0)
            if found:
                return found
    return None


def _graph(view: memoryview, depth: int) -> str | None:
    if depth > MAX_DEPTH:
        raise MalformedModel("subgraphs nested too deeply")
    for field, value in _fields(view):
        if not isinstance(value, memoryview):
            continue
        found = None
        if field == GRAPH_NODE:
            found = _node(value, depth)
        elif field == GRAPH_INITIALIZER:
            found = _tensor(value, "an initializer")
        elif field == GRAPH_SPARSE_INITIALIZER:
            found = _sparse(value, "a sparse initializer")
        if found:
            return found
    return None


def _function(view: memoryview, depth: int) -> str | None:
    for field, value in _fields(view):
        if not isinstance(value, memoryview):
            continue
        found = None
        if field == FUNCTION_NODE:
            found = _node(value, depth)
        elif field == FUNCTION_ATTRIBUTE:
            found = _attribute(value, depth)
        if found:
            return found
    return None


def _node(view: memoryview, depth: int) -> str | None:
    for field, value in _fields(view):
        if field == NODE_ATTRIBUTE and isinstance(value, memoryview):
            found = _attribute(value, depth)
            if found:
                return found
    return None


def _attribute(view: memoryview, depth: int) -> str | None:
    for field, value in _fields(view, skip_ints=True):
        if not isinstance(value, memoryview):
            continue
        found = None
        if field in (ATTRIBUTE_T, ATTRIBUTE_TENSORS):
            found = _tensor(value, "a node attribute's tensor")
        elif field in (ATTRIBUTE_SPARSE_TENSOR, ATTRIBUTE_SPARSE_TENSORS):
            found = _sparse(value, "a node attribute's sparse tensor")
        elif field in (ATTRIBUTE_G, ATTRIBUTE_GRAPHS):
            found = _graph(value, depth + 1)
        if found:
            return found
    return None


def _sparse(view: memoryview, what: str) -> str | None:
    for field, value in _fields(view):
        if field in (SPARSE_VALUES, SPARSE_INDICES) and isinstance(value, memoryview):
            found = _tensor(value, what)
            if found:
                return found
    return None


def _tensor(view: memoryview, what: str) -> str | None:
    for field, value in _fields(view):
        if field == TENSOR_EXTERNAL_DATA:
            return f"{what} keeps its data in an external file"
        if field == TENSOR_DATA_LOCATION and value == EXTERNAL:
            return f"{what} says its data is external"
    return None


def _fields(
    view: memoryview, skip_ints: bool = False
) -> Iterator[tuple[int, int | memoryview]]:
    """(field number, value) of each field of one message: varints as ints,
    length-delimited fields as views, fixed-size fields skipped as ints. With
    `skip_ints` (an attribute, whose integers cannot point outside), runs of
    well-formed `ints` entries are passed over unreported."""
    position, end = 0, len(view)
    while position < end:
        if skip_ints and view[position] == ATTRIBUTE_INTS_KEY:
            run = INTS_RUN.match(view, position)
            if run:
                position = run.end()
                continue
        key, position = _varint(view, position)
        field, wire = key >> 3, key & 7
        if field == 0:
            raise MalformedModel("field number 0")
        if wire == 0:
            value, position = _varint(view, position)
            yield field, value
        elif wire == 1:
            position += 8
            yield field, 0
        elif wire == 2:
            length, position = _varint(view, position)
            if position + length > end:
                raise MalformedModel("a field runs past its message")
            yield field, view[position : position + length]
            position += length
        elif wire == 5:
            position += 4
            yield field, 0
        else:
            raise MalformedModel(f"wire type {wire}")
        if position > end:
            raise MalformedModel("a field runs past its message")


def _varint(view: memoryview, position: int) -> tuple[int, int]:
    result, shift = 0, 0
    while True:
        if position >= len(view) or shift > 63:
            raise MalformedModel("a truncated or overlong varint")
        byte = view[position]
        position += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, position
        shift += 7
