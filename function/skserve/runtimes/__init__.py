"""Model runtimes behind one small interface, chosen by name and imported lazily.

A runtime's heavy imports (scikit-learn, onnxruntime) happen only when a version
that needs it is loaded: the registry names classes, it does not import them.
"""

from __future__ import annotations

import importlib
import importlib.util
import re

from skserve.errors import IncompatibleModel
from skserve.runtimes.base import LoadOptions, Prediction, Runtime

# name -> "module:Class". Adding a runtime: one file here plus one line below.
RUNTIMES = {
    "sklearn": "skserve.runtimes.sklearn:SklearnRuntime",
    "onnx": "skserve.runtimes.onnx:OnnxRuntime",
}
DEFAULT_RUNTIME = "sklearn"  # what a manifest that names no runtime was made for
RUNTIME_CHOICES = ("auto", *RUNTIMES)  # MODEL_RUNTIME's values


def runtime_class(name: str) -> type[Runtime]:
    """The class registered as `name`, imported now; IncompatibleModel if `name`
    is unknown or its libraries are not installed."""
    target = RUNTIMES.get(name)
    if target is None:
        # `name` may come from a manifest: echoed only when it looks like one.
        shown = (
            repr(name) if re.fullmatch(r"[A-Za-z0-9_.-]{0,32}", name) else "(unnamed)"
        )
        raise IncompatibleModel(
            f"unknown model runtime {shown}; this function has "
            f"{', '.join(sorted(RUNTIMES))}"
        )
    module, _, cls = target.partition(":")
    try:
        runtime: type[Runtime] = getattr(importlib.import_module(module), cls)
        missing = [m for m in runtime.requires if importlib.util.find_spec(m) is None]
    except ImportError as exc:
        missing = [exc.name or str(exc)]
    if missing:
        raise IncompatibleModel(
            f"the {name} runtime is not installed here ({', '.join(missing)} "
            "missing); deploy with the requirements that include it"
        )
    return runtime


__all__ = [
    "DEFAULT_RUNTIME",
    "RUNTIMES",
    "RUNTIME_CHOICES",
    "LoadOptions",
    "Prediction",
    "Runtime",
    "runtime_class",
]
