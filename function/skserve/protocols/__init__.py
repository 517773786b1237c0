"""Request protocols served side by side, each in its own file, chosen by path.

Adding a protocol: one file here plus one line in PROTOCOLS.
"""

from __future__ import annotations

import importlib

from skserve.protocols.base import Context, Endpoint, Protocol

# "module:Class", in the order their rules are tried.
PROTOCOLS = ("skserve.protocols.v1:V1Protocol",)


def load_protocols(context: Context) -> list[Protocol]:
    """One instance of every registered protocol, bound to `context`."""
    protocols = []
    for target in PROTOCOLS:
        module, _, cls = target.partition(":")
        protocols.append(getattr(importlib.import_module(module), cls)(context))
    return protocols


__all__ = ["PROTOCOLS", "Context", "Endpoint", "Protocol", "load_protocols"]
