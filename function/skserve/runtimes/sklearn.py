"""The scikit-learn runtime: unpickle a verified artifact and predict with it.

Importing this module imports numpy only; scikit-learn and joblib are imported
when a version is loaded.
"""

from __future__ import annotations

import functools
import io
import platform
import re
import warnings
from collections.abc import Mapping
from typing import Any, ClassVar

import numpy as np

from skserve.errors import BadRequest, Code, IncompatibleModel
from skserve.logs import clip, log
from skserve.manifest import Manifest
from skserve.runtimes.base import LoadOptions, Prediction

ARTIFACT = "model.pkl"
_VERSION = re.compile(r"[0-9][0-9A-Za-z.+-]{0,39}")


def environment() -> dict[str, str]:
    """Versions of everything a pickle's compatibility depends on."""
    import numpy
    import scipy
    import sklearn

    return {
        "python": platform.python_version(),
        "scikit-learn": sklearn.__version__,
        "numpy": numpy.__version__,
        "scipy": scipy.__version__,
    }


@functools.cache
def _quiet_feature_name_warning() -> None:
    """Fitted on a DataFrame, predicting on an array in the manifest's column order
    is intended. Installed once (catch_warnings per call is not thread-safe), and
    only for such models: scikit-learn re-applies every warning filter for each
    tree of a forest, so a filter costs every prediction a little."""
    warnings.filterwarnings("ignore", message="X does not have valid feature names")


class SklearnRuntime:
    """Wraps one fitted estimator or Pipeline described by `manifest`."""

    name: ClassVar[str] = "sklearn"
    artifact: ClassVar[str] = ARTIFACT
    requires: ClassVar[tuple[str, ...]] = ("sklearn", "joblib", "scipy")

    def __init__(self, manifest: Manifest, estimator: Any) -> None:
        self.manifest = manifest
        self.estimator = estimator

    @classmethod
    def load(
        cls, manifest: Manifest, files: Mapping[str, bytes], options: LoadOptions
    ) -> SklearnRuntime:
        """Unpickle the artifact; the caller has already checked its SHA-256."""
        import joblib
        import sklearn

        artifact = files[ARTIFACT]
        built_with = (manifest.data.get("environment") or {}).get("scikit-learn")
        if built_with != sklearn.__version__:
            if not (isinstance(built_with, str) and _VERSION.fullmatch(built_with)):
                built_with = "an unknown version"  # stored text is never echoed
            detail = (
                f"model {manifest.version} was pickled with scikit-learn {built_with}, "
                f"this function runs scikit-learn {sklearn.__version__}"
            )
            if not options.allow_version_mismatch:
                raise IncompatibleModel(
                    f"{detail}; retrain it with {sklearn.__version__}, or set "
                    "ALLOW_SKLEARN_VERSION_MISMATCH=true at your own risk"
                )
            log("WARNING", f"{detail}; loading anyway (ALLOW_SKLEARN_VERSION_MISMATCH)")
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                estimator = joblib.load(io.BytesIO(artifact))
        except Exception as exc:  # unpickling can raise anything
            missing = (
                getattr(exc, "name", None) if isinstance(exc, ImportError) else None
            )
            log("ERROR", f"cannot unpickle model {manifest.version}: {exc!r}")
            raise IncompatibleModel(
                f"cannot unpickle model {manifest.version}: "
                f"{clip(type(exc).__name__, 60)}"
                + (
                    f" (module {clip(missing, 60)!r} is not installed)"
                    if missing
                    else ""
                )
            ) from None
        if not callable(getattr(estimator, "predict", None)):
            raise IncompatibleModel(
                f"model {manifest.version} is a {clip(type(estimator).__name__, 60)}, "
                "not an estimator with predict()"
            )
        fitted = getattr(estimator, "n_features_in_", manifest.n_features)
        if fitted != manifest.n_features:
            raise IncompatibleModel(
                f"model {manifest.version} expects {fitted} features, "
                f"its manifest says {manifest.n_features}"
            )
        if hasattr(estimator, "feature_names_in_"):
            _quiet_feature_name_warning()
        return cls(manifest, estimator)

    @property
    def gives_probabilities(self) -> bool:
        return self.manifest.task == "classification" and hasattr(
            self.estimator, "predict_proba"
        )

    @property
    def classes(self) -> list[Any] | None:
        classes = getattr(self.estimator, "classes_", None)
        return None if classes is None else np.asarray(classes).tolist()

    def predict(self, matrix: np.ndarray, *, probabilities: bool) -> Prediction:
        """Predict labels (and class probabilities when asked) for a 2-D float array."""
        if probabilities and not self.gives_probabilities:
            raise BadRequest(
                "this model does not give probabilities "
                f'(task: {self.manifest.task}); remove "probabilities"',
                code=Code.PROBABILITIES_UNSUPPORTED,
            )
        try:
            # Overflow is reported below as a 400, not warned about per request.
            with np.errstate(over="ignore", invalid="ignore"):
                labels = self.estimator.predict(matrix)
                proba = self.estimator.predict_proba(matrix) if probabilities else None
        except ValueError as exc:  # e.g. finite in float64, infinite in float32
            raise BadRequest(
                f"the model cannot use these values: {str(exc).splitlines()[0][:200]}",
                code=Code.INVALID_VALUE,
            ) from None
        for output in (labels, proba):
            if output is not None and _has_non_finite(output):
                raise BadRequest(
                    "the model's output for these values is not a finite number; "
                    "check their magnitude",
                    code=Code.INVALID_VALUE,
                )
        return Prediction(
            labels=np.asarray(labels),
            probabilities=None if proba is None else np.asarray(proba, np.float64),
            classes=self.classes if probabilities else None,
        )


def _has_non_finite(values: Any) -> bool:
    array = np.asarray(values)
    return array.dtype.kind in "fc" and not np.isfinite(array).all()
