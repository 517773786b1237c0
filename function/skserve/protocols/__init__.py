"""Request protocols served side by side, each in its own file, chosen by path.

Adding a protocol: one file here plus one line in PROTOCOLS.
"""

from __future__ import annotations

import importlib

import flask

from skserve.errors import ServingError
from skserve.http import discard_unread_body, request_id, stamp
from skserve.protocols.base import Context, Endpoint, Protocol

# "module:Class", in the order their rules are tried.
PROTOCOLS = ("skserve.protocols.v1:V1Protocol", "skserve.protocols.v2:V2Protocol")


def protocol_classes() -> list[type[Protocol]]:
    """Every registered protocol class, imported now (they are light)."""
    classes = []
    for target in PROTOCOLS:
        module, _, cls = target.partition(":")
        classes.append(getattr(importlib.import_module(module), cls))
    return classes


def load_protocols(context: Context) -> list[Protocol]:
    """One instance of every registered protocol, bound to `context`."""
    return [cls(context) for cls in protocol_classes()]


def owner_of(path: str) -> type[Protocol]:
    """The protocol whose errors `path` gets when no rule matched it: the
    longest matching prefix (a whole path segment), else the fallback ("")."""
    return max(
        (cls for cls in protocol_classes() if owns(cls.prefix, path)),
        key=lambda cls: len(cls.prefix),
    )


def answer_outside(request: flask.Request, error: ServingError) -> flask.Response:
    """An error answered before or outside the service (a bad setting, secrets
    not yet read, functions-framework's own 404): in the shape of the protocol
    whose path it is, with the headers every answer has, the body unread."""
    response = owner_of(request.path).render(error)
    stamp(response, request_id(request), None)
    discard_unread_body(request)  # else functions-framework would buffer it
    return response


def owns(prefix: str, path: str) -> bool:
    """Whether `path` is under `prefix`: `/v2` owns `/v2` and `/v2/x`, not `/v2x`."""
    return not prefix or path == prefix or path.startswith(prefix.rstrip("/") + "/")


__all__ = [
    "PROTOCOLS",
    "Context",
    "Endpoint",
    "Protocol",
    "answer_outside",
    "load_protocols",
    "owner_of",
    "owns",
    "protocol_classes",
]
