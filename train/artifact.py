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


def describe(model: Any) -> dict[str, Any]:
    """Manifest facts introspected from a fitted estimator or Pipeline."""
    from sklearn.base import is_classifier, is_regressor

    if is_classifier(model):
        task = "classification"
    elif is_regressor(model):
        task = "regression"
    else:
        raise ArtifactError(
            f"{type(model).__name__} is neither a classifier nor a regressor"
        )
    classes = getattr(model, "classes_", None)
    names = getattr(model, "feature_names_in_", None)
    return {
        "task": task,
        "estimator": f"{type(model).__module__}.{type(model).__qualname__}",
        "n_features": int(model.n_features_in_),
        "feature_names": None if names is None else [str(n) for n in names],
        "classes": None if classes is None else np.asarray(classes).tolist(),
    }
