"""Protocol v1, the function's own JSON API: `POST /predict` (and `/`), `GET /health`,
`GET /metadata`, `GET /openapi.json`; errors `{"error": {"code", "message"}}`.

The seed tutorial's `{"features": [...]}` -> `{"prediction": N}` is its core;
`{"instances": [...]}` -> `{"predictions": [...]}` is the Vertex AI / KServe v1 shape.
Bodies are parsed and checked for shape before the model is loaded, so malformed
requests never wait for it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import flask
from werkzeug.routing import Rule

from skserve.errors import BadRequest, Code, PayloadTooLarge, ServingError
from skserve.http import (
    check_containers,
    decode_json,
    json_response,
    read_body,
    require_json,
)
from skserve.protocols.base import Endpoint, Protocol, timed_predict
from skserve.rows import to_table
from skserve.runtimes import Prediction

OPENAPI = Path(__file__).resolve().parent.parent / "openapi.json"


class V1Protocol(Protocol):
    """The seed-compatible JSON API."""

    name: ClassVar[str] = "v1"
    prefix: ClassVar[str] = ""  # the fallback: renders errors of unknown paths

    def rules(self) -> list[Rule]:
        return [
            Rule("/", methods=["POST"], endpoint=self.predict),
            Rule("/predict", methods=["POST"], endpoint=self.predict),
            Rule("/health", methods=["GET"], endpoint=self.health),
            Rule("/metadata", methods=["GET"], endpoint=self.metadata),
            Rule("/openapi.json", methods=["GET"], endpoint=self.openapi),
        ]

    def public(self) -> frozenset[Endpoint]:
        return frozenset({self.health})

    @staticmethod
    def render(error: ServingError) -> flask.Response:
        """{"error": {"code", "message"}}: also how errors are answered before a
        service exists (a bad setting) or outside it (functions-framework's own)."""
        body = {"error": {"code": str(error.code), "message": error.message}}
        return json_response(body, error.status, error.headers())

    def no_route(self, path: str) -> str:
        return f"no route {path}; use POST /predict, GET /health or GET /metadata"

    def health(self, request: flask.Request) -> flask.Response:
        """Liveness only: never touches the model or the store."""
        return json_response({"status": "ok"})

    def openapi(self, request: flask.Request) -> flask.Response:
        """The OpenAPI document shipped beside the package."""
        return flask.Response(OPENAPI.read_bytes(), mimetype="application/json")

    def metadata(self, request: flask.Request) -> flask.Response:
        """The loaded model's manifest facts (loading it if needed)."""
        model = self.context.model(request)
        manifest = model.manifest
        # The manifest's "runtime" names its pickle's runtime, not the one
        # answering: shown as the runtimes of what is stored, beside served_by.
        hidden = ("signature", "runtime")
        facts = {k: v for k, v in manifest.data.items() if k not in hidden}
        twin = manifest.twin
        stored = [manifest.runtime]
        if twin is not None and isinstance(twin.get("runtime", "onnx"), str):
            stored.append(str(twin.get("runtime", "onnx")))
        body = {
            **facts,
            "stored_runtimes": stored,
            # What rows may hold; a manifest published before schemas gets
            # the all-numeric one it is served with.
            "input_schema": model.schema.to_json(),
            "model_version": model.version,
            "served_by": model.runtime.name,
        }
        return json_response(body)

    def predict(self, request: flask.Request) -> flask.Response:
        """`features` (one row) or `instances` (a batch) -> predictions."""
        settings = self.context.settings
        require_json(request)
        payload = parse_payload(
            read_body(request, settings.max_body_bytes), max_rows=settings.max_rows
        )
        model = self.context.model(request)
        table = to_table(payload.rows, single=payload.single, schema=model.schema)
        request.environ["skserve.rows"] = len(table)
        result = timed_predict(
            request,
            model,
            table,
            probabilities=payload.probabilities,
            scores=payload.scores,
        )
        body = {**encode(result, single=payload.single), "model_version": model.version}
        return json_response(body)


def encode(prediction: Prediction, *, single: bool) -> dict[str, Any]:
    """The answer's keys: the seed's `prediction` for one row, else KServe's
    `predictions`; labels keep their JSON type (int, str or float)."""
    labels = prediction.labels.tolist()
    probabilities = (
        None if prediction.probabilities is None else prediction.probabilities.tolist()
    )
    scores = None if prediction.scores is None else prediction.scores.tolist()
    body: dict[str, Any]
    if single:
        body = {"prediction": labels[0]}
        if probabilities is not None:
            body["probabilities"] = probabilities[0]
        if scores is not None:
            body["score"] = scores[0]
    else:
        body = {"predictions": labels}
        if probabilities is not None:
            body["probabilities"] = probabilities
        if scores is not None:
            body["scores"] = scores
    if prediction.classes is not None:
        body["classes"] = prediction.classes
    return body


@dataclass(frozen=True)
class Payload:
    """A structurally valid request: one row (`features`) or a batch (`instances`)."""

    rows: list[list[Any] | dict[str, Any]]
    single: bool
    probabilities: bool
    scores: bool = False


def parse_payload(body: bytes, *, max_rows: int) -> Payload:
    """Decode the JSON body and check its shape; BadRequest/PayloadTooLarge if not."""
    # One object holding one list of at most MAX_ROWS rows (lists or objects).
    check_containers(body, max_rows=max_rows, extra=2)
    data = decode_json(body, what="body")
    if not isinstance(data, dict):
        raise BadRequest(
            'body must be a JSON object such as {"features": [...]}',
            code=Code.INVALID_REQUEST,
        )
    probabilities, scores = (_flag(data, key) for key in ("probabilities", "scores"))
    if ("features" in data) == ("instances" in data):
        raise BadRequest(
            'send either "features" (one row) or "instances" (a list of rows)'
            + (", not both" if "features" in data else ""),
            code=Code.MISSING_INPUT,
        )
    if "features" in data:
        row = data["features"]
        if not isinstance(row, list | dict):
            raise BadRequest(
                '"features" must be a list of values or an object of named values',
                code=Code.INVALID_REQUEST,
            )
        return Payload([row], True, probabilities, scores)
    rows = data["instances"]
    if not isinstance(rows, list):
        raise BadRequest(
            '"instances" must be a list of rows', code=Code.INVALID_REQUEST
        )
    if not rows:
        raise BadRequest(
            '"instances" is empty; send at least one row', code=Code.EMPTY_BATCH
        )
    if len(rows) > max_rows:
        raise PayloadTooLarge(
            f"{len(rows)} rows exceed MAX_ROWS={max_rows}; split the batch",
            code=Code.TOO_MANY_ROWS,
        )
    for i, row in enumerate(rows):
        if not isinstance(row, list | dict):
            raise BadRequest(
                f"instances[{i}] must be a list of values or an object of named values",
                code=Code.INVALID_REQUEST,
            )
    return Payload(rows, False, probabilities, scores)


def _flag(data: dict[str, Any], key: str) -> bool:
    value = data.get(key, False)
    if not isinstance(value, bool):
        raise BadRequest(f'"{key}" must be true or false', code=Code.INVALID_REQUEST)
    return value
