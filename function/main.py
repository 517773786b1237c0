"""HTTP Cloud Function serving a published scikit-learn model.

Run locally:  functions-framework --source function/main.py --target predict
"""

from __future__ import annotations

import threading

import flask
import functions_framework

from skserve.errors import ConfigError
from skserve.http import error_response, framework_error_response, request_id
from skserve.logs import log
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
    """Entry point for every path of the function's URL (see README "HTTP API")."""
    try:
        service = _get_service()
    except ConfigError as error:
        log("ERROR", f"invalid configuration: {error.message}")
        response = error_response(
            ConfigError("the function is misconfigured; its logs say which setting")
        )
        response.headers.update(
            {"X-Request-Id": request_id(request), "X-Model-Version": "none"}
        )
        return response
    return service.handle(request)


# functions-framework answers a few paths itself (/robots.txt) and turns a crash
# into an HTML or str(e) 500; render those as our JSON errors too. The decorator
# only exists when functions-framework is the one importing this module.
if hasattr(functions_framework, "errorhandler"):
    from werkzeug.exceptions import HTTPException

    functions_framework.errorhandler(HTTPException)(framework_error_response)
    functions_framework.errorhandler(500)(framework_error_response)
