"""Introspect a model someone else pickled, before publishing it.

Unpickling runs code: only publish files you (or your own pipeline) produced.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np

from skserve.errors import Code, ConfigError


class ArtifactError(ConfigError):
    """The file is not a fitted scikit-learn estimator this trainer can publish."""

    code = Code.INVALID_ARTIFACT


def load_estimator(path: str) -> tuple[Any, bytes]:
    """Return (estimator, the file's exact bytes); ArtifactError if unusable."""
    import joblib
    import sklearn
    from sklearn.base import BaseEstimator
    from sklearn.exceptions import InconsistentVersionWarning, NotFittedError
    from sklearn.utils.validation import check_is_fitted

    file = Path(path)
    try:
        data = file.read_bytes()
    except FileNotFoundError:
        raise ArtifactError(f"{path}: no such file") from None
    except OSError as exc:
        raise ArtifactError(f"{path}: {exc.strerror}") from None
    with warnings.catch_warnings():
        warnings.simplefilter("error", InconsistentVersionWarning)
        try:
            model = joblib.load(file)
        except InconsistentVersionWarning as warning:
            raise ArtifactError(
                f"{path} was pickled with scikit-learn "
                f"{warning.original_sklearn_version}, this trainer runs "
                f"{sklearn.__version__}: re-pickle it with {sklearn.__version__} "
                "(a function refuses mismatched versions)"
            ) from None
        except Exception as exc:  # not a pickle, truncated, missing module...
            raise ArtifactError(
                f"{path} is not a loadable pickle or joblib file "
                f"({type(exc).__name__}: {str(exc)[:100]})"
            ) from None
    if type(model).__name__ == "LocalOutlierFactor" and not getattr(
        model, "novelty", True
    ):
        raise ArtifactError(
            f"{path} holds a LocalOutlierFactor fitted with novelty=False, which "
            "cannot predict new rows; fit it with novelty=True"
        )
    if not isinstance(model, BaseEstimator) or not callable(
        getattr(model, "predict", None)
    ):
        raise ArtifactError(
            f"{path} holds a {type(model).__module__}.{type(model).__name__}, "
            "not a scikit-learn estimator or Pipeline with predict()"
        )
    try:
        check_is_fitted(model)
    except NotFittedError:
        raise ArtifactError(
            f"{path} holds an unfitted {type(model).__name__}; fit it first"
        ) from None
    if not hasattr(model, "n_features_in_"):
        raise ArtifactError(
            f"{path}: {type(model).__name__} does not say how many features it expects "
            "(no n_features_in_)"
        )
    return model, data


def task_of(model: Any) -> str:
    """classification, regression, clustering or outlier_detection; an
    ArtifactError for an estimator that is none of them."""
    from sklearn.base import (
        is_classifier,
        is_clusterer,
        is_outlier_detector,
        is_regressor,
    )
    from sklearn.mixture import GaussianMixture
    from sklearn.mixture._base import BaseMixture

    final = model.steps[-1][1] if hasattr(model, "steps") else model
    if is_classifier(model):
        return "classification"
    if is_regressor(model):
        return "regression"
    if is_outlier_detector(model) or is_outlier_detector(final):
        return "outlier_detection"
    # A Gaussian mixture's predict() gives each row's component: a cluster.
    if is_clusterer(model) or is_clusterer(final) or isinstance(final, BaseMixture):
        return "clustering"
    raise ArtifactError(
        f"{type(final).__name__} is not a classifier, regressor, clusterer "
        f"(e.g. KMeans, {GaussianMixture.__name__}) or outlier detector (e.g. "
        "IsolationForest)"
    )


def describe(model: Any) -> dict[str, Any]:
    """Manifest facts introspected from a fitted estimator or Pipeline."""
    task = task_of(model)
    classes = getattr(model, "classes_", None) if task == "classification" else None
    names = getattr(model, "feature_names_in_", None)
    return {
        "task": task,
        "estimator": f"{type(model).__module__}.{type(model).__qualname__}",
        "n_features": int(model.n_features_in_),
        "feature_names": None if names is None else [str(n) for n in names],
        "classes": None if classes is None else np.asarray(classes).tolist(),
    }
