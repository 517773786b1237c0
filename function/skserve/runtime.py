"""The scikit-learn runtime: unpickle a verified artifact and predict with it."""

from __future__ import annotations

import functools
import io
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np

from skserve.errors import BadRequest, IncompatibleModel
from skserve.logs import log
from skserve.manifest import Manifest


@functools.cache
def _quiet_feature_name_warning() -> None:
    """Fitted on a DataFrame, predicting on an array in the manifest's column order
    is intended. Installed once (catch_warnings per call is not thread-safe), and
    only for such models: scikit-learn re-applies every warning filter for each
    tree of a forest, so a filter costs every prediction a little."""
    warnings.filterwarnings("ignore", message="X does not have valid feature names")


@dataclass(frozen=True)
class Prediction:
    """Model output already converted to JSON types."""

    labels: list[Any]
    probabilities: list[list[float]] | None = None
    classes: list[Any] | None = None

    def body(self, *, single: bool) -> dict[str, Any]:
        """The response keys: the seed's `prediction` for one row, else KServe's."""
        body: dict[str, Any]
        if single:
            body = {"prediction": self.labels[0]}
            if self.probabilities is not None:
                body["probabilities"] = self.probabilities[0]
        else:
            body = {"predictions": self.labels}
            if self.probabilities is not None:
                body["probabilities"] = self.probabilities
        if self.classes is not None:
            body["classes"] = self.classes
        return body


class SklearnRuntime:
    """Wraps one fitted estimator or Pipeline described by `manifest`."""

    def __init__(self, manifest: Manifest, estimator: Any) -> None:
        self.manifest = manifest
        self.estimator = estimator

    @classmethod
    def load(
        cls, manifest: Manifest, artifact: bytes, *, allow_version_mismatch: bool
    ) -> SklearnRuntime:
        """Unpickle `artifact`; the caller has already checked its SHA-256."""
        import joblib
        import sklearn

        built_with = (manifest.data.get("environment") or {}).get("scikit-learn")
        if built_with != sklearn.__version__:
            detail = (
                f"model {manifest.version} was pickled with scikit-learn {built_with}, "
                f"this function runs scikit-learn {sklearn.__version__}"
            )
            if not allow_version_mismatch:
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
                f"cannot unpickle model {manifest.version}: {type(exc).__name__}"
                + (f" (module {missing!r} is not installed)" if missing else "")
            ) from None
        if not callable(getattr(estimator, "predict", None)):
            raise IncompatibleModel(
                f"model {manifest.version} is a {type(estimator).__name__}, "
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
    def classes(self) -> list[Any] | None:
        classes = getattr(self.estimator, "classes_", None)
        return None if classes is None else np.asarray(classes).tolist()

    def predict(self, rows: np.ndarray, *, probabilities: bool = False) -> Prediction:
        """Predict labels (and class probabilities when asked) for a 2-D float array."""
        if probabilities and (
            self.manifest.task != "classification"
            or not hasattr(self.estimator, "predict_proba")
        ):
            raise BadRequest(
                "this model does not give probabilities "
                f'(task: {self.manifest.task}); remove "probabilities"',
                code="probabilities_unsupported",
            )
        try:
            # Overflow is reported below as a 400, not warned about per request.
            with np.errstate(over="ignore", invalid="ignore"):
                labels = self.estimator.predict(rows)
                proba = self.estimator.predict_proba(rows) if probabilities else None
        except ValueError as exc:  # e.g. finite in float64, infinite in float32
            raise BadRequest(
                f"the model cannot use these values: {str(exc).splitlines()[0][:200]}",
                code="invalid_value",
            ) from None
        for output in (labels, proba):
            if output is not None and _has_non_finite(output):
                raise BadRequest(
                    "the model's output for these values is not a finite number; "
                    "check their magnitude",
                    code="invalid_value",
                )
        return Prediction(
            labels=np.asarray(labels).tolist(),
            probabilities=None if proba is None else np.asarray(proba).tolist(),
            classes=self.classes if probabilities else None,
        )


def _has_non_finite(values: Any) -> bool:
    array = np.asarray(values)
    return array.dtype.kind in "fc" and not np.isfinite(array).all()
