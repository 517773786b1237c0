"""What every part of the twin shares: its session, and how a model is told apart."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Twin:
    """A twin that passed the gate."""

    data: bytes  # the serialized ONNX model (model.onnx)
    facts: dict[str, Any]  # goes into the manifest as manifest["twin"]


@dataclass(frozen=True)
class NoTwin:
    """Why a model gets no twin."""

    reason: str  # one line, for the CLI ("no ONNX twin: <why>")


def root_cause(exc: BaseException) -> BaseException:
    """The innermost exception a converter's error wraps (skl2onnx and onnx
    re-raise with attribute dumps; the cause is what a user can act on)."""
    seen = {id(exc)}
    while (inner := exc.__cause__ or exc.__context__) is not None:
        if id(inner) in seen:
            break
        seen.add(id(inner))
        exc = inner
    return exc


def one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    first = text[0] if text else ""
    return f"{type(exc).__name__}: {first[:200]}" if first else type(exc).__name__


def is_classifier(model: Any) -> bool:
    from sklearn.base import is_classifier

    return bool(is_classifier(model))


def is_clusterer(model: Any) -> bool:
    """KMeans and its kind (a Gaussian mixture too: its predict is a cluster)."""
    from sklearn.base import is_clusterer as clusters
    from sklearn.mixture._base import BaseMixture

    final = final_estimator(model)
    return bool(clusters(model) or clusters(final) or isinstance(final, BaseMixture))


def final_estimator(model: Any) -> Any:
    steps = getattr(model, "steps", None)
    return steps[-1][1] if steps else model


def session(data: bytes) -> Any:
    """A session configured as the function serves it (tree sums in one thread)."""
    import onnxruntime

    from skserve.runtimes.onnx import session_options

    return onnxruntime.InferenceSession(
        data, sess_options=session_options(), providers=["CPUExecutionProvider"]
    )
