"""The function's request handling: routing, model use, and error rendering."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import flask

from skserve.errors import MethodNotAllowed, NotFound, ServingError
from skserve.http import error_response, json_response, read_json_body, request_id
from skserve.logs import log_exception
from skserve.model import LoadedModel, ModelHolder, fetch_model, read_latest
from skserve.payload import parse_payload, to_matrix
from skserve.settings import Settings
from skserve.storage import open_store, split_model_uri

Handler = Callable[[flask.Request], flask.Response]


class Service:
    """One instance per process: settings, the model holder and the routes."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        root, pinned = split_model_uri(settings.model_uri)
        self.store = open_store(root)  # no network: clients are made on first use
        self.models = ModelHolder(
            functools.partial(
                fetch_model,
                self.store,
                allow_version_mismatch=settings.allow_version_mismatch,
            ),
            functools.partial(read_latest, self.store),
            pinned=pinned,
            refresh_seconds=settings.refresh_seconds,
        )
        self.routes: dict[str, dict[str, Handler]] = {
            "/": {"POST": self.predict},
            "/predict": {"POST": self.predict},
            "/health": {"GET": self.health},
            "/metadata": {"GET": self.metadata},
        }

    def handle(self, request: flask.Request) -> flask.Response:
        """Answer any request; never raises (functions-framework would leak str(e))."""
        rid = request_id(request)
        try:
            response = self.dispatch(request)
        except ServingError as error:
            response = error_response(error)
        except Exception as exc:
            log_exception("unhandled error", exc, request_id=rid)
            response = error_response(
                ServingError(
                    f"internal error; quote request id {rid} when reporting it"
                )
            )
        model = self.models.current
        response.headers["X-Request-Id"] = rid
        response.headers.setdefault(
            "X-Model-Version", model.version if model else "none"
        )
        return response

    def dispatch(self, request: flask.Request) -> flask.Response:
        path = request.path.rstrip("/") or "/"
        methods = self.routes.get(path)
        if methods is None:
            raise NotFound(
                f"no route {path}; use POST /predict, GET /health or GET /metadata"
            )
        method = "GET" if request.method == "HEAD" else request.method
        allow = sorted(
            {*methods, "OPTIONS"} | ({"HEAD"} if "GET" in methods else set())
        )
        if method == "OPTIONS":
            return flask.Response(status=204, headers={"Allow": ", ".join(allow)})
        if method not in methods:
            raise MethodNotAllowed(
                f"{request.method} is not allowed on {path}; use {', '.join(methods)}",
                allow=allow,
            )
        return methods[method](request)

    def health(self, request: flask.Request) -> flask.Response:
        return json_response({"status": "ok"})

    def metadata(self, request: flask.Request) -> flask.Response:
        model = self.models.get()
        facts = {k: v for k, v in model.manifest.data.items() if k != "signature"}
        return self._with_version(
            json_response({**facts, "model_version": model.version}), model
        )

    def predict(self, request: flask.Request) -> flask.Response:
        payload = parse_payload(
            read_json_body(request, self.settings.max_body_bytes),
            max_rows=self.settings.max_rows,
        )
        model = self.models.get()
        manifest = model.manifest
        rows = to_matrix(payload, manifest.n_features, manifest.feature_names)
        result = model.runtime.predict(rows, probabilities=payload.probabilities)
        body: dict[str, Any]
        if payload.single:
            body = {"prediction": result.labels[0]}
            if result.probabilities is not None:
                body["probabilities"] = result.probabilities[0]
        else:
            body = {"predictions": result.labels}
            if result.probabilities is not None:
                body["probabilities"] = result.probabilities
        if result.classes is not None:
            body["classes"] = result.classes
        body["model_version"] = model.version
        return self._with_version(json_response(body), model)

    @staticmethod
    def _with_version(response: flask.Response, model: LoadedModel) -> flask.Response:
        # The version that answered, even if a refresh swapped models meanwhile.
        response.headers["X-Model-Version"] = model.version
        return response
