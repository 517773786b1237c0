"""The scikit-learn runtime: unpickle a verified artifact and give it exactly
what it was fitted on.

Importing this module imports numpy only; scikit-learn and joblib are imported
when a version is loaded, pandas only when that version takes a DataFrame
(scikit-learn imports pandas whenever it is installed, so it is hidden while
scikit-learn loads a version that does not: ~0.2 s of cold start).
"""

from __future__ import annotations

import contextlib
import functools
import io
import platform
import re
import sys
import warnings
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from skserve.errors import BadRequest, Code, IncompatibleModel
from skserve.logs import clip, log
from skserve.manifest import Manifest
from skserve.runtimes.base import (
    LoadOptions,
    Prediction,
    check_answer,
    known_classes,
)
from skserve.schema import BOOLEAN, CATEGORY, DATAFRAME, INTEGER, InputSchema

if TYPE_CHECKING:
    import pandas

    from skserve.rows import Table

ARTIFACT = "model.pkl"
_VERSION = re.compile(r"[0-9][0-9A-Za-z.+-]{0,39}")


def environment() -> dict[str, str]:
    """Versions of everything a pickle's compatibility depends on."""
    import numpy
    import pandas
    import scipy
    import sklearn

    return {
        "python": platform.python_version(),
        "scikit-learn": sklearn.__version__,
        "numpy": numpy.__version__,
        "scipy": scipy.__version__,
        "pandas": pandas.__version__,
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
        self.schema: InputSchema = manifest.input_schema
        self._dataframe = self.schema.format == DATAFRAME
        self._from_frame = hasattr(estimator, "feature_names_in_")
        self._known = known_classes(manifest)

    @classmethod
    def load(
        cls, manifest: Manifest, files: Mapping[str, bytes], options: LoadOptions
    ) -> SklearnRuntime:
        """Unpickle the artifact; the caller has already checked its SHA-256."""
        dataframe = manifest.input_schema.format == DATAFRAME
        with _pandas_hidden(not dataframe):
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
            estimator = _unpickle(artifact, hide_pandas=not dataframe)
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
        if manifest.input_schema.format == DATAFRAME:
            try:
                import pandas  # noqa: F401  (imported now: its cost is the load's)
            except ImportError:
                raise IncompatibleModel(
                    f"model {manifest.version} takes a pandas DataFrame, but pandas "
                    "is not installed here; deploy with the requirements that "
                    "include it"
                ) from None
        elif hasattr(estimator, "feature_names_in_"):
            _quiet_feature_name_warning()
        return cls(manifest, estimator)

    @property
    def gives_probabilities(self) -> bool:
        return self.manifest.task == "classification" and hasattr(
            self.estimator, "predict_proba"
        )

    @property
    def gives_scores(self) -> bool:
        return self.manifest.task == "outlier_detection" and hasattr(
            self.estimator, "decision_function"
        )

    @property
    def classes(self) -> list[Any] | None:
        classes = getattr(self.estimator, "classes_", None)
        return None if classes is None else np.asarray(classes).tolist()

    def predict(
        self, table: Table, *, probabilities: bool = False, scores: bool = False
    ) -> Prediction:
        """Labels (and class probabilities or outlier scores when asked) for
        rows the schema accepted, given to the model as it was fitted."""
        if probabilities and not self.gives_probabilities:
            raise BadRequest(
                "this model does not give probabilities "
                f'(task: {self.manifest.task}); remove "probabilities"',
                code=Code.PROBABILITIES_UNSUPPORTED,
            )
        if scores and not self.gives_scores:
            raise BadRequest(
                "only outlier detectors give scores "
                f'(task: {self.manifest.task}); remove "scores"',
                code=Code.SCORES_UNSUPPORTED,
            )
        X = (
            frame_of(table, self.schema)
            if self._dataframe
            else array_of(table, self.schema, from_frame=self._from_frame)
        )
        estimator = self.estimator
        try:
            # Overflow is reported below as a 400, not warned about per request.
            with np.errstate(over="ignore", invalid="ignore"):
                labels = estimator.predict(X)
                proba = estimator.predict_proba(X) if probabilities else None
                score = estimator.decision_function(X) if scores else None
        except Exception as exc:  # the model refusing values the schema allowed
            text = str(exc).strip().splitlines()
            reason = text[0][:200] if text else type(exc).__name__
            raise BadRequest(
                f"the model cannot use these values: {reason}",
                code=Code.INVALID_VALUE,
            ) from None
        for output in (labels, proba, score):
            if output is not None and _has_non_finite(output):
                raise BadRequest(
                    "the model's output for these values is not a finite number; "
                    "check their magnitude",
                    code=Code.INVALID_VALUE,
                )
        prediction = Prediction(
            labels=np.asarray(labels),
            probabilities=None if proba is None else np.asarray(proba, np.float64),
            classes=self.classes if probabilities else None,
            scores=None if score is None else np.asarray(score, np.float64).reshape(-1),
        )
        return check_answer(prediction, len(table), self._known, self.manifest.version)


def array_of(table: Table, schema: InputSchema, *, from_frame: bool) -> np.ndarray:
    """Rows as the array a model fitted on `schema`'s columns takes. For one
    fitted on a DataFrame, in column-major order, as pandas hands scikit-learn
    a DataFrame's values: the same layout sums the same way, so a float array
    gets the DataFrame's answers to the last bit (a row-major copy can differ
    in the last bits of a linear model's probabilities)."""
    matrix = table.matrix(schema)
    return np.asfortranarray(matrix) if from_frame else matrix


@contextlib.contextmanager
def _pandas_hidden(hide: bool) -> Iterator[None]:
    """While inside, `import pandas` fails (when `hide` and pandas is not
    imported yet): scikit-learn's own `try: import pandas` then leaves it
    out, and nothing it uses for arrays needs it."""
    if not hide or "pandas" in sys.modules:
        yield
        return
    sys.modules["pandas"] = None  # type: ignore[assignment]
    try:
        yield
    finally:
        if "pandas" in sys.modules and sys.modules["pandas"] is None:
            del sys.modules["pandas"]


def _unpickle(artifact: bytes, *, hide_pandas: bool) -> Any:
    """The estimator in `artifact`; pandas stays hidden unless the pickle
    itself needs it (a model that keeps a pandas object)."""
    import joblib

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            with _pandas_hidden(hide_pandas):
                return joblib.load(io.BytesIO(artifact))
        except ImportError as exc:
            if not hide_pandas or exc.name != "pandas":
                raise
        return joblib.load(io.BytesIO(artifact))


def frame_of(table: Table, schema: InputSchema) -> pandas.DataFrame:
    """Rows as the DataFrame a model was fitted on: its column names, and dtypes
    as pandas gives them (missing: NaN; categories: the training ones, so an
    unseen value is missing, as pandas makes it)."""
    import pandas as pd

    data: dict[str, Any] = {}
    for column, values in zip(schema.columns, table.columns(schema), strict=True):
        if not column.numeric:
            values = np.array([np.nan if v is None else v for v in values], object)
            if column.kind == CATEGORY:
                values = pd.Categorical(values, categories=column.categories)
        elif column.kind in (INTEGER, BOOLEAN) and not column.nullable:
            values = values.astype(column.dtype)
        elif column.kind == BOOLEAN:
            values = np.array(
                [np.nan if np.isnan(v) else bool(v) for v in values], dtype=object
            )
        data[column.name] = values
    return pd.DataFrame(data, copy=False)


def _has_non_finite(values: Any) -> bool:
    array = np.asarray(values)
    return array.dtype.kind in "fc" and not np.isfinite(array).all()
