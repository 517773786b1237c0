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


def one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    first = text[0] if text else ""
    return f"{type(exc).__name__}: {first[:200]}" if first else type(exc).__name__


def is_classifier(model: Any) -> bool:
    from sklearn.base import is_classifier

    return bool(is_classifier(model))


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
