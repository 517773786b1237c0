"""The interface every request protocol implements: routes, decoding, encoding,
and its own error body.

A protocol never loads files or imports a model library: it asks its context for
the model and hands the runtime a float64 matrix.
"""

from __future__ import annotations

import time
import typing
from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import ClassVar

import flask
from werkzeug.routing import Rule

from skserve.errors import ServingError
from skserve.loader import LoadedModel
from skserve.settings import Settings

if typing.TYPE_CHECKING:
    from skserve.rows import Table
    from skserve.runtimes import Prediction

Endpoint = Callable[..., flask.Response]

# request.environ key: seconds the runtime's predict took (the request's log
# line reports it as model_ms, the model's share of the latency).
MODEL_SECONDS = "skserve.model_seconds"


def timed_predict(
    request: flask.Request,
    model: LoadedModel,
    table: Table,
    *,
    probabilities: bool = False,
    scores: bool = False,
) -> Prediction:
    """`model.runtime.predict`, timed for the request's log line (whether it
    answers or raises: a model that fails slowly is still the model's time)."""
    started = time.perf_counter()
    try:
        return model.runtime.predict(table, probabilities=probabilities, scores=scores)
    finally:
        request.environ[MODEL_SECONDS] = time.perf_counter() - started


class Context(typing.Protocol):
    """What the service offers every protocol."""

    settings: Settings

    def model(self, request: flask.Request) -> LoadedModel:
        """The model to answer `request` with, loading it if needed (503 if it
        cannot); recorded so the answer's X-Model-Version names it."""
        ...

    def current(self) -> LoadedModel | None:
        """The loaded model, or None; never loads."""
        ...


class Protocol(ABC):
    """A request protocol served beside the others on the function's URL."""

    name: ClassVar[str]
    # Paths whose errors this protocol renders even when no rule matched; the
    # longest matching prefix wins, and "" makes a protocol the fallback.
    prefix: ClassVar[str]

    def __init__(self, context: Context) -> None:
        self.context = context

    @abstractmethod
    def rules(self) -> list[Rule]:
        """Routes whose endpoints are this protocol's bound methods, each called
        as endpoint(request, **path_arguments)."""

    def public(self) -> frozenset[Endpoint]:
        """Endpoints that need no API key (liveness probes)."""
        return frozenset()

    @staticmethod
    @abstractmethod
    def render(error: ServingError) -> flask.Response:
        """`error` as this protocol's error body, with its status and the error's
        headers (Allow, Retry-After, WWW-Authenticate). Static: errors raised
        before a service exists (a bad setting) are rendered with it too."""

    def error_response(self, error: ServingError) -> flask.Response:
        """How this instance answers `error` (see `render`)."""
        return self.render(error)

    @abstractmethod
    def no_route(self, path: str) -> str:
        """The 404 message for an unknown path, saying what exists."""
