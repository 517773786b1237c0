"""API Gateway events as Lambda hands them to `lambda_main.handler`: the HTTP
API's payload format 2.0 (what serverless.yml deploys) and the REST API's v1."""

from __future__ import annotations

import base64
import json
import time
import uuid
from typing import Any


def http_api_event(
    method: str,
    path: str,
    body: Any = None,
    *,
    headers: dict[str, str] | None = None,
    base64_body: bool = False,
    route_key: str = "$default",
) -> dict[str, Any]:
    """An HTTP API event, payload format 2.0 (what serverless.yml's httpApi
    sends), through its one route, $default; bytes travel base64-encoded."""
    if isinstance(body, bytes):
        text: str | None = base64.b64encode(body).decode()
        base64_body = True
    else:
        text = body if isinstance(body, str) or body is None else json.dumps(body)
        if text is not None and base64_body:
            text = base64.b64encode(text.encode()).decode()
    return {
        "version": "2.0",
        "routeKey": route_key,
        "rawPath": path,
        "rawQueryString": "",
        "headers": {
            "host": "abc123.execute-api.eu-west-1.amazonaws.com",
            "content-type": "application/json",
            "user-agent": "pytest",
            "x-forwarded-proto": "https",
            "x-forwarded-port": "443",
            **(headers or {}),
        },
        "requestContext": {
            "accountId": "123456789012",
            "apiId": "abc123",
            "domainName": "abc123.execute-api.eu-west-1.amazonaws.com",
            "http": {
                "method": method,
                "path": path,
                "protocol": "HTTP/1.1",
                "sourceIp": "203.0.113.7",
                "userAgent": "pytest",
            },
            "requestId": uuid.uuid4().hex,
            "routeKey": route_key,
            "stage": "$default",
            "timeEpoch": int(time.time() * 1000),
        },
        "body": text,
        "isBase64Encoded": base64_body,
    }


def rest_api_event(
    method: str, path: str, body: Any = None, *, headers: dict[str, str] | None = None
) -> dict[str, Any]:
    """A REST API (v1) proxy event: no "version" key, multi-value headers."""
    text = body if isinstance(body, str) or body is None else json.dumps(body)
    all_headers = {
        "Host": "abc123.execute-api.eu-west-1.amazonaws.com",
        "Content-Type": "application/json",
        "X-Forwarded-Proto": "https",
        "X-Forwarded-Port": "443",
        **(headers or {}),
    }
    return {
        "resource": path,
        "path": path,
        "httpMethod": method,
        "headers": all_headers,
        "multiValueHeaders": {k: [v] for k, v in all_headers.items()},
        "queryStringParameters": None,
        "multiValueQueryStringParameters": None,
        "pathParameters": None,
        "stageVariables": None,
        "requestContext": {
            "accountId": "123456789012",
            "apiId": "abc123",
            "httpMethod": method,
            "path": f"/prod{path}",
            "requestId": uuid.uuid4().hex,
            "resourcePath": path,
            "stage": "prod",
            "identity": {"sourceIp": "203.0.113.7"},
        },
        "body": text,
        "isBase64Encoded": False,
    }
