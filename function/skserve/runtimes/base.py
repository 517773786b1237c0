"""The interface every model runtime implements: verified files in, arrays out.

A runtime never sees HTTP or JSON: protocols turn its `Prediction` into answers.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

from skserve.errors import IncompatibleModel

if TYPE_CHECKING:
    import numpy as np

    from skserve.manifest import Manifest
    from skserve.rows import Table


@dataclass(frozen=True)
class LoadOptions:
    """What a runtime may need from the settings when it loads a version."""

    allow_version_mismatch: bool = False


@dataclass(frozen=True)
class Prediction:
    """One batch's output, in the model's own types.

    `labels` has one entry per row: class labels with the dtype of the classes the
    manifest lists (int64, float64 or str), float64 regression values, cluster
    indices, or an outlier detector's 1 (inlier) and -1 (outlier).
    `probabilities` is (rows, classes) float64, columns ordered as `classes`;
    `scores` an outlier detector's decision_function (negative: outlier).
    """

    labels: np.ndarray
    probabilities: np.ndarray | None = None
    classes: list[Any] | None = None  # JSON types, as in the manifest
    scores: np.ndarray | None = None


class Runtime(Protocol):
    """Loads one verified version and predicts with it; must be thread-safe."""

    name: ClassVar[str]  # the MODEL_RUNTIME value and the log's `runtime` field
    artifact: ClassVar[str]  # the version's file this runtime loads
    # Top-level modules load() imports: checked (not imported) before choosing it.
    requires: ClassVar[tuple[str, ...]]

    @classmethod
    def load(
        cls, manifest: Manifest, files: Mapping[str, bytes], options: LoadOptions
    ) -> Runtime:
        """Build from `files` (name -> bytes), every one already checked against
        `manifest`; IncompatibleModel if this runtime cannot use them."""
        ...

    @property
    def gives_probabilities(self) -> bool:
        """Whether `predict(..., probabilities=True)` can answer."""
        ...

    @property
    def gives_scores(self) -> bool:
        """Whether `predict(..., scores=True)` can answer."""
        ...

    def predict(
        self, table: Table, *, probabilities: bool = False, scores: bool = False
    ) -> Prediction:
        """Predict for rows the manifest's input schema accepted; BadRequest if
        the model cannot use these values or cannot give what is asked."""
        ...


def known_classes(manifest: Manifest) -> frozenset[Any] | None:
    """The manifest's classes as a set, for `check_answer` (None: no classes)."""
    classes = manifest.data.get("classes")
    if not isinstance(classes, list):
        return None
    try:
        return frozenset(classes)
    except TypeError:  # a list or object among them: no model has such a class
        raise IncompatibleModel(
            f"model {manifest.version}: its manifest's classes are not JSON scalars"
        ) from None


def check_answer(
    prediction: Prediction, rows: int, classes: frozenset[Any] | None, version: str
) -> Prediction:
    """`prediction` if it answers every row once, with labels among the
    manifest's `classes` (when it has them); else IncompatibleModel (a 503):
    a crafted or broken artifact must not answer for a model it is not.
    Nothing the artifact produced is echoed in the message."""
    outputs = {
        "predictions": prediction.labels,
        "probabilities": prediction.probabilities,
        "scores": prediction.scores,
    }
    for name, output in outputs.items():
        if output is not None and (output.ndim < 1 or len(output) != rows):
            raise IncompatibleModel(
                f"model {version} gave {name} for {len(output) if output.ndim else 0} "
                f"rows when asked about {rows}; refusing its answers"
            )
    if prediction.labels.ndim != 1:
        raise IncompatibleModel(
            f"model {version} gave more than one prediction per row; refusing its "
            "answers"
        )
    if classes is not None and not set(prediction.labels.tolist()) <= classes:
        raise IncompatibleModel(
            f"model {version} predicted a label that is not one of its manifest's "
            "classes; refusing its answers"
        )
    return prediction
