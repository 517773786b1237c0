"""The interface every model runtime implements: verified files in, arrays out.

A runtime never sees HTTP or JSON: protocols turn its `Prediction` into answers.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

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
