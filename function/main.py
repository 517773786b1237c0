"""HTTP Cloud Function serving a published scikit-learn model.

Run locally:  functions-framework --source function/main.py --target predict
"""

from __future__ import annotations

import threading

import flask
import functions_framework
from werkzeug.exceptions import HTTPException, NotFound

from skserve.errors import ConfigError
from skserve.http import framework_error
from skserve.logs import log
from skserve.protocols import answer_outside, owner_of
from skserve.service import Service
from skserve.settings import Settings

# Built on the first request, not at import: importing must not read the store or
# the network, and a bad setting is then answered as JSON instead of a crash loop.
# The model itself is loaded later still, by the first request that needs it.
_service: Service | None = None
_service_lock = threading.Lock()


def _get_service() -> Service:
    global _service
    if _service is None:
        with _service_lock:
            if _service is None:
                _service = Service(Settings.from_env())
    return _service


@functions_framework.http
def predict(request: flask.Request) -> flask.Response:
    """Entry point for every path of the function's URL (see docs/http-api.md)."""
    try:
        service = _get_service()
    except ConfigError as error:
        log("ERROR", f"invalid configuration: {error.message}")
        return answer_outside(
            request,
            ConfigError("the function is misconfigured; its logs say which setting"),
        )
    return service.handle(request)


def _framework_error_response(error: Exception) -> flask.Response:
    """functions-framework answers a few paths itself (/robots.txt) and turns a
    crash into an HTML or str(e) 500: render those as our JSON errors too, in
    the shape of the protocol whose path it is."""
    if not flask.has_request_context():
        return owner_of("/").render(framework_error(error))
    request = flask.request
    if isinstance(error, NotFound) and request.url_rule is None:
        # Its catch-all route `/<path:path>` cannot match a path holding a
        # newline (werkzeug's path converter): such a path is still ours.
        return predict(request)
    return answer_outside(request, framework_error(error))


functions_framework.errorhandler(HTTPException)(_framework_error_response)
functions_framework.errorhandler(500)(_framework_error_response)
