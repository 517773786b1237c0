"""The protocol-neutral request pipeline: request id, preflight, auth, routing,
model access, errors, CORS and one log line per request."""

from __future__ import annotations

import threading
import time
from typing import Any

import flask
from werkzeug.exceptions import HTTPException
from werkzeug.routing import Map, MapAdapter, RoutingException, Rule

from skserve.auth import check_api_key
from skserve.cors import add_cors_headers, cross_site_refusal, preflight
from skserve.errors import Code, Forbidden, MethodNotAllowed, NotFound, ServingError
from skserve.holder import ModelHolder
from skserve.http import discard_unread_body, request_id, stamp
from skserve.loader import LoadedModel, fetch_model, read_pointer
from skserve.logs import clip, log_exception, log_request
from skserve.metrics import OK
from skserve.protocols import Endpoint, Protocol, load_protocols, owner_of
from skserve.protocols.base import MODEL_SECONDS
from skserve.runtimes import LoadOptions
from skserve.settings import Settings
from skserve.storage import open_store

_MODEL = "skserve.model"  # request.environ key: the model that answered


class Service:
    """One instance per process: settings, the model holder and the protocols."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        location = settings.model_uri
        self.store = open_store(location.root)  # no network until first use
        self.models = ModelHolder(
            lambda version: fetch_model(
                self.store,
                version,
                name=location.name,
                runtime=settings.runtime,
                options=LoadOptions(
                    allow_version_mismatch=settings.allow_version_mismatch
                ),
                signing_keys=settings.signing_keys,
                max_model_bytes=settings.max_model_bytes,
            ),
            lambda: read_pointer(
                self.store, signing_keys=settings.signing_keys, name=location.name
            ),
            pinned=location.pinned,
            refresh_seconds=settings.refresh_seconds,
        )
        self.protocols = load_protocols(self)
        # Paths are matched as given (no redirects for slashes): a trailing
        # slash is stripped before matching, so `/predict/` is `/predict`.
        self.url_map = Map(
            [rule for protocol in self.protocols for rule in protocol.rules()],
            strict_slashes=False,
            merge_slashes=False,
        )
        # One adapter for every request: matching reads it and never changes it.
        self._adapter = self.url_map.bind("localhost", "/")
        self._static = _static_routes(self.url_map)
        self._public: frozenset[Endpoint] = frozenset().union(
            *(protocol.public() for protocol in self.protocols)
        )
        self._cold = True
        self._cold_lock = threading.Lock()

    # The Context protocols see.
    def model(self, request: flask.Request) -> LoadedModel:
        model = self.models.get()
        request.environ[_MODEL] = model
        return model

    def current(self) -> LoadedModel | None:
        return self.models.current

    def handle(self, request: flask.Request) -> flask.Response:
        """Answer any request; never raises (functions-framework would leak str(e))."""
        started = time.perf_counter()
        rid = request_id(request)
        path = request.path.rstrip("/") or "/"
        adapter = self._adapter
        rule = self._static.get((path, request.method))
        arguments: dict[str, Any] = {}
        if rule is None:
            rule, arguments = _match(adapter, path, request.method)
        owner = rule.endpoint.__self__ if rule else self._owner(path)
        code: str = OK
        try:
            response = self.dispatch(request, adapter, path, rule, arguments)
        except ServingError as error:
            code = error.code
            response = owner.error_response(error)
        except Exception as exc:
            code = Code.INTERNAL_ERROR
            log_exception("unhandled error", exc, request_id=rid)
            response = owner.error_response(
                ServingError(
                    f"internal error; quote request id {rid} when reporting it"
                )
            )
        finally:
            discard_unread_body(request)
        answered: LoadedModel | None = request.environ.get(_MODEL)
        # The version that answered, even if a refresh swapped models meanwhile.
        model = answered or self.models.current
        stamp(response, rid, model.version if model else None)
        add_cors_headers(response, request, self.settings.cors_allow_origins)
        cold = False
        if self._cold:  # only the first request of an instance takes the lock
            with self._cold_lock:
                cold, self._cold = self._cold, False
        log_request(
            request,
            response,
            latency=time.perf_counter() - started,
            cold_start=cold,
            project=self.settings.project,
            protocol=owner.name,
            model=self.settings.model_uri.name,
            code=code,
            model_seconds=request.environ.get(MODEL_SECONDS),
            request_id=rid,
            runtime=answered.runtime.name if answered else None,
        )
        return response

    def dispatch(
        self,
        request: flask.Request,
        adapter: MapAdapter,
        path: str,
        rule: Rule | None,
        arguments: dict[str, Any],
    ) -> flask.Response:
        """Preflight, then auth (except public endpoints), then the route.

        `rule` is the one matching the path and method, if any; the slower
        lookups below run only for preflights and errors.
        """
        if request.method == "OPTIONS":  # CORS preflights never need a key
            allow = ", ".join(_allow(adapter, path))
            return preflight(request, self.settings.cors_allow_origins, allow)
        public = (
            rule.endpoint in self._public if rule else self._is_public(adapter, path)
        )
        if not public:
            # A page on a site not allowed must not make its visitors' browsers
            # spend the function's work (a no-cors POST is still served).
            refusal = cross_site_refusal(request, self.settings.cors_allow_origins)
            if refusal:
                raise Forbidden(refusal)
        if self.settings.api_keys and not public:
            check_api_key(request, self.settings.api_keys)
        if rule is not None:
            return rule.endpoint(request, **arguments)
        shown = clip(path, 100)
        allow = _allow(adapter, path)
        methods = [m for m in allow if m not in ("HEAD", "OPTIONS")]
        if methods:
            raise MethodNotAllowed(
                f"{clip(request.method, 20)} is not allowed on {shown}; "
                f"use {', '.join(methods)}",
                allow=allow,
            )
        raise NotFound(self._owner(path).no_route(shown))

    def _is_public(self, adapter: MapAdapter, path: str) -> bool:
        """Whether any rule for `path` is a public endpoint, whatever the method."""
        for method in adapter.allowed_methods(path):
            rule = _match(adapter, path, method)[0]
            if rule is not None and rule.endpoint in self._public:
                return True
        return False

    def _owner(self, path: str) -> Protocol:
        """The protocol that renders errors for a path no rule answers: the one
        with the longest matching prefix."""
        owner = owner_of(path)
        return next(p for p in self.protocols if type(p) is owner)


def _static_routes(url_map: Map) -> dict[tuple[str, str], Rule]:
    """(path, method) -> rule, for the rules without path parameters: what
    werkzeug would match for them, looked up in a dict (werkzeug's state
    machine costs more than the rest of routing). A path and method not here
    go to werkzeug, which also answers the rules with parameters."""
    adapter = url_map.bind("localhost", "/")
    routes = {}
    for rule in url_map.iter_rules():
        if rule.arguments or rule.defaults:  # werkzeug passes those as arguments
            continue
        for method in rule.methods or ():
            # Kept only where werkzeug itself picks this rule for this pair.
            if _match(adapter, rule.rule, method)[0] is rule:
                routes[(rule.rule, method)] = rule
    return routes


def _match(
    adapter: MapAdapter, path: str, method: str
) -> tuple[Rule | None, dict[str, Any]]:
    """The rule for `path` and `method` and its path arguments, or (None, {})."""
    try:
        rule, arguments = adapter.match(path, method, return_rule=True)
    except (HTTPException, RoutingException):  # 404, 405, or a redirect
        return None, {}
    return rule, arguments


def _allow(adapter: MapAdapter, path: str) -> list[str]:
    """The Allow header's methods for `path`, from the rules (HEAD with GET)."""
    return sorted({*adapter.allowed_methods(path), "OPTIONS"})
