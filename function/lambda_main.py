"""AWS Lambda entry point: the same `predict` function, behind API Gateway.

serverless.yml routes API Gateway HTTP API events (payload 2.0) here; REST API
(1.0) and ALB events work too. apig-wsgi turns each event into a WSGI request
for the Flask app that functions-framework builds around `main.predict`, so
routing, errors and headers are the ones Cloud Functions serves.

Handler: lambda_main.handler (the artifact holds function/ at its root).
"""

from __future__ import annotations

from pathlib import Path

import functions_framework
from apig_wsgi import make_lambda_handler

# Built once per execution environment, during the cold start's init phase.
# Executing main.py reads no setting, store or model: the first request builds
# the service and loads the model, exactly as under functions-framework.
app = functions_framework.create_app(
    target="predict",
    source=str(Path(__file__).resolve().with_name("main.py")),
    signature_type="http",
)
handler = make_lambda_handler(app)
