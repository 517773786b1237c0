"""The function's request handling: routing, auth, CORS, model use, errors, logs."""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Callable
from pathlib import Path

import flask

from skserve.auth import check_api_key
from skserve.cors import add_cors_headers, preflight
from skserve.errors import MethodNotAllowed, NotFound, ServingError
from skserve.http import (
    discard_unread_body,
    error_response,
    json_response,
    read_json_body,
    request_id,
)
from skserve.loader import LoadedModel, fetch_model, read_latest
from skserve.logs import log_exception, log_request
from skserve.model import ModelHolder
from skserve.payload import parse_payload
from skserve.rows import to_matrix
from skserve.settings import Settings
from skserve.storage import open_store, split_model_uri

Handler = Callable[[flask.Request], flask.Response]
OPENAPI = Path(__file__).with_name("openapi.json")
PUBLIC_PATHS = ("/health",)


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
                name=root.rstrip("/").rsplit("/", 1)[-1],
                allow_version_mismatch=settings.allow_version_mismatch,
                signing_keys=settings.signing_keys,
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
            "/openapi.json": {"GET": self.openapi},
        }
        self._cold = True
        self._cold_lock = threading.Lock()

    def handle(self, request: flask.Request) -> flask.Response:
        """Answer any request; never raises (functions-framework would leak str(e))."""
        started = time.perf_counter()
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
        finally:
            discard_unread_body(request)
        model = self.models.current
        response.headers["X-Request-Id"] = rid
        response.headers.setdefault(
            "X-Model-Version", model.version if model else "none"
        )
        add_cors_headers(response, request, self.settings.cors_allow_origins)
        with self._cold_lock:
            cold, self._cold = self._cold, False
        log_request(
            request,
            response,
            latency=time.perf_counter() - started,
            cold_start=cold,
            project=self.settings.project,
            request_id=rid,
        )
        return response

    def dispatch(self, request: flask.Request) -> flask.Response:
        """Preflight, then auth (except public paths), then the route."""
        path = request.path.rstrip("/") or "/"
        methods = self.routes.get(path, {})
        allow = sorted(
            {*methods, "OPTIONS"} | ({"HEAD"} if "GET" in methods else set())
        )
        if request.method == "OPTIONS":  # CORS preflights never need a key
            return preflight(
                request, self.settings.cors_allow_origins, ", ".join(allow)
            )
        if self.settings.api_keys and path not in PUBLIC_PATHS:
            check_api_key(request, self.settings.api_keys)
        if not methods:
            raise NotFound(
                f"no route {path}; use POST /predict, GET /health or GET /metadata"
            )
        method = "GET" if request.method == "HEAD" else request.method
        if method not in methods:
            raise MethodNotAllowed(
                f"{request.method} is not allowed on {path}; use {', '.join(methods)}",
                allow=allow,
            )
        return methods[method](request)

    def health(self, request: flask.Request) -> flask.Response:
        """Liveness only: never touches the model or the store."""
        return json_response({"status": "ok"})

    def openapi(self, request: flask.Request) -> flask.Response:
        """The OpenAPI document shipped beside this module."""
        return flask.Response(OPENAPI.read_bytes(), mimetype="application/json")

    def metadata(self, request: flask.Request) -> flask.Response:
        """The loaded model's manifest facts (loading it if needed)."""
        model = self.models.get()
        facts = {k: v for k, v in model.manifest.data.items() if k != "signature"}
        body = {**facts, "model_version": model.version}
        return self._with_version(json_response(body), model)

    def predict(self, request: flask.Request) -> flask.Response:
        """`features` (one row) or `instances` (a batch) -> predictions."""
        payload = parse_payload(
            read_json_body(request, self.settings.max_body_bytes),
            max_rows=self.settings.max_rows,
        )
        model = self.models.get()
        manifest = model.manifest
        rows = to_matrix(payload, manifest.n_features, manifest.feature_names)
        request.environ["skserve.rows"] = len(rows)
        result = model.runtime.predict(rows, probabilities=payload.probabilities)
        body = {**result.body(single=payload.single), "model_version": model.version}
        return self._with_version(json_response(body), model)

    @staticmethod
    def _with_version(response: flask.Response, model: LoadedModel) -> flask.Response:
        # The version that answered, even if a refresh swapped models meanwhile.
        response.headers["X-Model-Version"] = model.version
        return response
