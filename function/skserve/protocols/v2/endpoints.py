"""The Open Inference Protocol's routes under /v2: errors are `{"error":
"<message>"}` (V2 clients fail on anything else), and a request is decoded whole
before the model is loaded, its rows judged by the model's schema after."""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import flask
from werkzeug.routing import Rule

import skserve
from skserve.errors import (
    BadRequest,
    Code,
    NotFound,
    ServingError,
    UnsupportedMediaType,
)
from skserve.http import json_response, read_body
from skserve.loader import LoadedModel
from skserve.protocols.base import Endpoint, Protocol, timed_predict
from skserve.protocols.v2.codec import (
    DECISION_FUNCTION,
    HEADER_LENGTH,
    PREDICT,
    PREDICT_PROBA,
    decode_infer,
    infer_response,
    input_tensors,
    label_type,
    table_of,
)

OPENAPI = Path(__file__).resolve().parent.parent.parent / "openapi.json"
SERVER_NAME = "skserve"
EXTENSIONS = ("binary_tensor_data",)
PLATFORMS = {"sklearn": "sklearn", "onnx": "onnxruntime_onnx"}
# Bodies a V2 client sends: tritonclient sends no Content-Type at all.
BODY_TYPES = ("", "application/json", "application/octet-stream")
# Which task gives each optional output, and the code of asking another for it.
GIVEN_BY = {
    PREDICT_PROBA: ("classification", "classifiers", Code.PROBABILITIES_UNSUPPORTED),
    DECISION_FUNCTION: (
        "outlier_detection",
        "outlier detectors",
        Code.SCORES_UNSUPPORTED,
    ),
}


def server_version() -> str:
    """The package's version (the OpenAPI document states the same one)."""
    return skserve.__version__


def output_tensors(model: LoadedModel) -> list[dict[str, Any]]:
    """The outputs `model` gives: `predict`, `predict_proba` for a classifier
    whose runtime gives probabilities, `decision_function` for an outlier
    detector whose runtime gives scores."""
    manifest = model.manifest
    outputs = [{"name": PREDICT, **label_type(manifest.data)}]
    classes = manifest.data.get("classes")
    if model.runtime.gives_probabilities and isinstance(classes, list):
        outputs.append(
            {"name": PREDICT_PROBA, "datatype": "FP64", "shape": [-1, len(classes)]}
        )
    if model.runtime.gives_scores:
        outputs.append(
            {"name": DECISION_FUNCTION, "datatype": "FP64", "shape": [-1, 1]}
        )
    return outputs


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
        """Name, versions, platform, the inputs the schema takes and the outputs."""
        model = self._model(request, name, version)
        inputs, parameters = input_tensors(model.schema)
        body: dict[str, Any] = {
            "name": self._name(name),
            "versions": [model.version],
            "platform": PLATFORMS.get(model.runtime.name, model.runtime.name),
            "inputs": inputs,
            "outputs": output_tensors(model),
        }
        if parameters is not None:
            body["parameters"] = parameters
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
        path names), then check the model's name and version, judge the rows
        by its schema, predict and encode the outputs."""
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
        table = table_of(decoded, model.schema)
        request.environ["skserve.rows"] = len(table)
        given = [output["name"] for output in output_tensors(model)]
        wanted = {output.name for output in decoded.outputs}
        for output in decoded.outputs:
            if output.name not in given:
                raise _not_given(output.name, model.manifest.task, given)
        try:
            prediction = timed_predict(
                request,
                model,
                table,
                probabilities=PREDICT_PROBA in wanted,
                scores=DECISION_FUNCTION in wanted,
            )
        except BadRequest as error:
            # The runtime's own words name v1's body keys; V2 names outputs.
            name_of = {
                Code.PROBABILITIES_UNSUPPORTED: PREDICT_PROBA,
                Code.SCORES_UNSUPPORTED: DECISION_FUNCTION,
            }
            if error.code not in name_of:
                raise
            refused = name_of[error.code]
            others = [output for output in given if output != refused]
            raise _not_given(refused, None, others) from None
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


def _not_given(output: str, task: str | None, given: list[str]) -> BadRequest:
    """The 400 for an output this model does not give, naming those it does."""
    task_name, givers, code = GIVEN_BY[output]
    outputs = ", ".join(given)
    if task is not None and task != task_name:
        return BadRequest(
            f"{output} is only given by {givers}; this {task.replace('_', ' ')} "
            f"model gives {outputs}",
            code=code,
        )
    return BadRequest(
        f"this model does not give {output}; it gives {outputs}", code=code
    )
