"""AWS Lambda entry point: the same `predict` function, behind API Gateway; its
secrets come from SSM Parameter Store at run time, never from plain variables.

serverless.yml routes API Gateway HTTP API events (payload 2.0) here; REST API
(1.0) and ALB events work too. apig-wsgi turns each event into a WSGI request
for the Flask app that functions-framework builds around `main.predict`, so
routing, errors and headers are the ones Cloud Functions serves.

API_KEYS_SSM_PARAMETER and MODEL_SIGNING_KEY_SSM_PARAMETER name SSM parameters
(SecureString, String or StringList: keys separated by commas or newlines).
The first request of an execution environment reads them, before it builds the
service; until a read succeeds every request gets a JSON error and the next
one tries again, so the function never serves without the keys it was given.

Handler: lambda_main.handler (the artifact holds function/ at its root).
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any

import flask
import functions_framework
from apig_wsgi import make_lambda_handler

from skserve.errors import ConfigError, ServingError, Unavailable
from skserve.logs import log
from skserve.protocols import answer_outside

# SSM errors that another request cannot fix: the deployment names a parameter
# that is missing, unreadable or undecryptable by the function's role.
_DEPLOYMENT_ERRORS = frozenset(
    {
        "AccessDeniedException",
        "ParameterNotFound",
        "ParameterVersionNotFound",
        "InvalidKeyId",
        "ValidationException",
        "KMSAccessDeniedException",
        "KMSDisabledException",
        "KMSInvalidStateException",
        "KMSNotFoundException",
    }
)

# Built once per execution environment, during the cold start's init phase.
# Executing main.py reads no setting, store or model: the first request builds
# the service and loads the model, exactly as under functions-framework.
app = functions_framework.create_app(
    target="predict",
    source=str(Path(__file__).resolve().with_name("main.py")),
    signature_type="http",
)
handler = make_lambda_handler(app)

_secrets_loaded = False
_secrets_lock = threading.Lock()


def _secret_parameters() -> dict[str, str]:
    """{setting: SSM parameter name} for each secret the deployment names."""
    named = {
        "API_KEYS": os.environ.get("API_KEYS_SSM_PARAMETER", "").strip(),
        "MODEL_SIGNING_KEY": os.environ.get(
            "MODEL_SIGNING_KEY_SSM_PARAMETER", ""
        ).strip(),
    }
    return {setting: name for setting, name in named.items() if name}


def _read_parameter(client: Any, setting: str, name: str) -> str:
    """The parameter's keys as one comma list; the value is never logged."""
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        found = client.get_parameter(Name=name, WithDecryption=True)
    except ClientError as error:
        code = error.response.get("Error", {}).get("Code", "")
        log("ERROR", f"{setting}: cannot read SSM parameter {name}: {code}")
        if code in _DEPLOYMENT_ERRORS:
            raise ConfigError(f"{setting}_SSM_PARAMETER={name}: {code}") from None
        raise Unavailable(f"{setting}: SSM answered {code}") from None
    except BotoCoreError as error:
        log("ERROR", f"{setting}: cannot reach SSM for {name}: {type(error).__name__}")
        raise Unavailable(f"{setting}: SSM cannot be reached") from None
    keys = [
        key.strip()
        for key in found["Parameter"]["Value"].replace("\n", ",").split(",")
        if key.strip()
    ]
    if not keys:
        # An empty value would switch the check off: fail closed instead.
        log("ERROR", f"{setting}: SSM parameter {name} holds no keys")
        raise ConfigError(f"{setting}_SSM_PARAMETER={name} holds no keys")
    return ",".join(keys)


def _load_secrets() -> None:
    """Put each named parameter's keys where Settings reads them, once."""
    global _secrets_loaded
    if _secrets_loaded:  # every warm request: no lock
        return
    with _secrets_lock:
        if _secrets_loaded:
            return
        parameters = _secret_parameters()
        for setting in parameters:
            if os.environ.get(setting, "").strip():
                log("ERROR", f"both {setting} and {setting}_SSM_PARAMETER are set")
                raise ConfigError(f"{setting} and {setting}_SSM_PARAMETER both set")
        if parameters:
            import boto3
            from botocore.config import Config

            # Short timeouts: a cold start must answer within API Gateway's 30 s.
            client = boto3.client(
                "ssm",
                config=Config(
                    connect_timeout=2,
                    read_timeout=5,
                    retries={"max_attempts": 3, "mode": "standard"},
                ),
            )
            values = {
                setting: _read_parameter(client, setting, name)
                for setting, name in parameters.items()
            }
            os.environ.update(values)
        _secrets_loaded = True


@app.before_request
def _require_secrets() -> flask.Response | None:
    """Answer a JSON error, never the function, while the secrets are unread."""
    try:
        _load_secrets()
    except ServingError as error:
        public: ServingError
        if isinstance(error, ConfigError):
            public = ConfigError(
                "the function is misconfigured; its logs say which setting"
            )
        else:
            public = Unavailable(
                "the function's secrets cannot be read right now; try again"
            )
        return answer_outside(flask.request, public)
    return None
