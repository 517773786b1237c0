"""A model's input schema is inferred from the fitted model and the user's data,
and every promise it makes is proved on the model before it is published.

What the model shows (its encoders' categories, imputers, HistGradientBoosting's
native missing values and categorical features) comes first; the data (the
training frame, or `--holdout` rows) adds kinds and missing values the model
cannot show. Then the model itself is asked: a column is nullable only if the
model predicts with it missing, unknown categories are accepted only if it
predicts with one, and the model takes a float array only if that gives the
same answers as the DataFrame it was fitted on.
"""

from __future__ import annotations

import json
import math
import warnings
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from skserve.errors import Code, ConfigError
from skserve.schema import (
    ARRAY,
    BOOLEAN,
    CATEGORY,
    DATAFRAME,
    INTEGER,
    KINDS,
    NUMBER,
    STRING,
    Column,
    InputSchema,
)

if TYPE_CHECKING:
    import pandas as pd

    from skserve.rows import Table

UNSEEN = "__skserve_unseen_category__"  # a string no model was fitted with
PROBE_ROWS = 20


class SchemaError(ConfigError):
    """The schema cannot be inferred, or a correction contradicts the model."""

    code = Code.INVALID_DATA


@dataclass
class _Hint:
    """What the fitted model shows about one input column."""

    kind: str | None = None
    categories: list[Any] | None = None
    missing_seen: bool = False  # its encoder learned a missing category
    handles_missing: bool = False  # an imputer or a model with native NaN
    dropped: bool = False  # a ColumnTransformer drops it


def infer_schema(
    model: Any, data: pd.DataFrame | None = None, names: list[str] | None = None
) -> InputSchema:
    """The schema of `model`, from its fitted attributes and, when given, a
    frame of its input columns as the user has them (training or holdout rows).
    `names` labels the columns of a model fitted without names (rows may then
    be objects keyed by them; the model still takes an array)."""
    n = int(model.n_features_in_)
    names = _names(model) or names
    hints = [_Hint() for _ in range(n)]
    _walk(model, list(range(n)), hints)
    labels = names or [f"x{i}" for i in range(n)]
    facts = _data_facts(data, labels)
    columns = []
    for label, hint, (kind, _) in zip(labels, hints, facts, strict=True):
        columns.append(_column(label, hint, kind))
    schema = InputSchema(tuple(columns), ARRAY, names is not None)
    return settle(model, schema, data, nullable=_nullable_evidence(hints, facts))


def settle(
    model: Any,
    schema: InputSchema,
    data: pd.DataFrame | None,
    *,
    nullable: list[bool] | None = None,
    fixed_format: bool = False,
) -> InputSchema:
    """Prove `schema` on the model: with `nullable` (evidence per column) the
    columns whose evidence the model confirms become nullable; without it every
    column the schema calls nullable must be (else SchemaError). Then the
    format: a DataFrame unless a float array gives the same answers."""
    base = base_rows(schema, data)
    fitted_on_frame = _names(model) is not None
    probe = _Prober(model, schema, DATAFRAME if fitted_on_frame else ARRAY)
    reason = probe.refusal(base)
    if reason is not None:
        raise SchemaError(
            "cannot infer the model's input schema: it refuses rows made from "
            f"{'the given data' if data is not None else 'its own attributes'} "
            f"({reason}); pass rows it accepts with --holdout, or a --schema file"
        )
    columns = list(schema.columns)
    inferring = nullable is not None
    # May each column be missing? Asked only where there is evidence (when
    # inferring) or a promise to keep (when checking a correction).
    asked = [
        j
        for j, c in enumerate(columns)
        if (nullable[j] if nullable is not None else c.nullable)
    ]
    relaxed = _nullable(schema, asked)
    refused = probe.refusals({j: _with(base, j, None) for j in asked}, relaxed)
    for j in asked:
        if inferring:
            columns[j] = replace(columns[j], nullable=refused[j] is None)
        elif refused[j] is not None:
            raise SchemaError(
                f"the schema says {columns[j].name!r} may be missing, but the "
                f"model refuses it missing ({refused[j]})"
            )
    # Are values outside the known categories accepted?
    asked = [
        j
        for j, c in enumerate(columns)
        if c.categories is not None and (inferring or c.unknown)
    ]
    unseen = {j: _with(base, j, _unseen(columns[j])) for j in asked}
    refused = probe.refusals(unseen, schema)
    for j in asked:
        if inferring:
            columns[j] = replace(columns[j], unknown=refused[j] is None)
        elif refused[j] is not None:
            raise SchemaError(
                f"the schema says {columns[j].name!r} accepts unknown categories, "
                f"but the model refuses them ({refused[j]})"
            )
    if not inferring:  # a column corrected to a number must take one
        asked = [
            j for j, c in enumerate(columns) if c.kind == NUMBER and not c.categories
        ]
        refused = probe.refusals({j: _with(base, j, 1.5) for j in asked}, schema)
        for j in asked:
            if refused[j] is not None:
                raise SchemaError(
                    f"the schema says {columns[j].name!r} is a number, but the "
                    f"model refuses numbers there ({refused[j]})"
                )
    settled = InputSchema(tuple(columns), schema.format, schema.named)
    if fixed_format:
        array_refused = not settled.all_numeric or not probe.same_as_array(
            base, settled
        )
        if settled.format == ARRAY and fitted_on_frame and array_refused:
            raise SchemaError(
                "the schema says the model takes a float array, but it refuses "
                "one or answers it differently from its DataFrame"
            )
        return settled
    form = ARRAY
    if fitted_on_frame and (
        not settled.all_numeric or not probe.same_as_array(base, settled)
    ):
        form = DATAFRAME
    return InputSchema(settled.columns, form, settled.named)


def base_rows(schema: InputSchema, data: pd.DataFrame | None) -> list[list[Any]]:
    """Rows every column of which the model should accept: the data's first
    rows with each gap filled by a typical value, else one typical row."""
    typical = example_row(schema, data)
    if data is None or not len(data):
        return [typical]
    rows = []
    for values in data.head(PROBE_ROWS).itertuples(index=False):
        row = [
            _coerce(_json(v), column)
            for v, column in zip(values, schema.columns, strict=True)
        ]
        rows.append([t if v is None else v for v, t in zip(row, typical, strict=True)])
    return rows


def accepted_rows(data: pd.DataFrame, schema: InputSchema) -> list[list[Any]]:
    """The data's rows as JSON values of the schema's kinds, keeping only those
    the schema accepts (e.g. for the twin's parity gate)."""
    from skserve.errors import BadRequest
    from skserve.rows import to_table

    rows = [
        [_coerce(_json(v), c) for v, c in zip(values, schema.columns, strict=True)]
        for values in data.itertuples(index=False)
    ]

    def accepted(batch: list[list[Any]]) -> bool:
        try:
            to_table(batch, single=False, schema=schema)
        except BadRequest:
            return False
        return True

    return rows if accepted(rows) else [row for row in rows if accepted([row])]


def example_row(schema: InputSchema, data: pd.DataFrame | None) -> list[Any]:
    """A typical row, not a real one (rows of training data may be private):
    the median of each numeric column and the most frequent value of the
    others, from the data; else 0, false or the first known category."""
    row: list[Any] = []
    for j, column in enumerate(schema.columns):
        series = None if data is None else data.iloc[:, j].dropna()
        value: Any
        if series is not None and len(series):
            values = [_coerce(_json(v), column) for v in series.tolist()]
            values = [v for v in values if v is not None]
            if column.kind in (NUMBER, INTEGER) and column.categories is None:
                value = float(np.median(values)) if values else 0.0
                value = round(value) if column.kind == INTEGER else _round(value)
            else:
                value = _mode(values) if values else None
        elif column.categories:
            value = column.categories[0]
        elif column.kind == BOOLEAN:
            value = False
        elif column.numeric:
            value = 0 if column.kind == INTEGER else 0.0
        else:
            value = ""
        if not _fits(value, column):
            value = column.categories[0] if column.categories else value
        row.append(value)
    return row


def read_schema_file(path: str) -> dict[str, Any]:
    """A schema file's corrections: {"format": ..., "columns": {name: {...}}}."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise SchemaError(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise SchemaError(f"{path} is not a JSON file ({exc})") from None
    if not isinstance(data, dict) or set(data) - {"format", "columns"}:
        raise SchemaError(
            f'{path} must be a JSON object with "columns" (and optionally "format")'
        )
    return data


def correct(
    schema: InputSchema, corrections: dict[str, Any], source: str
) -> InputSchema:
    """`schema` with a schema file's corrections applied (checked, not proved)."""
    form = corrections.get("format", schema.format)
    if form not in (ARRAY, DATAFRAME):
        raise SchemaError(f"{source}: format must be {ARRAY} or {DATAFRAME}")
    if form == DATAFRAME and not schema.named:
        raise SchemaError(
            f"{source}: format {DATAFRAME} needs a model fitted with feature names"
        )
    changes = corrections.get("columns", {})
    if not isinstance(changes, dict):
        raise SchemaError(f'{source}: "columns" must map column names to corrections')
    known = {c.name: c for c in schema.columns}
    unknown = sorted(set(changes) - set(known))
    if unknown:
        raise SchemaError(
            f"{source} names columns the model does not have: {', '.join(unknown)} "
            f"(it has {', '.join(known)})"
        )
    columns = []
    for column in schema.columns:
        change = changes.get(column.name, {})
        if not isinstance(change, dict) or set(change) - {
            "kind",
            "nullable",
            "categories",
            "unknown",
        }:
            raise SchemaError(
                f"{source}: the correction of {column.name!r} must be an object of "
                "kind, nullable, categories and unknown"
            )
        merged = {**column.to_json(), **change}
        if "kind" in change and "categories" not in change:
            merged.pop("categories", None)
            merged.pop("unknown", None)
        if merged.get("kind") not in KINDS:
            raise SchemaError(
                f"{source}: {column.name!r} has kind {merged.get('kind')!r}; "
                f"choose one of {', '.join(KINDS)}"
            )
        try:
            parsed = InputSchema.from_json(
                {"format": form, "columns": [merged]}, named=schema.named
            )
        except ValueError as exc:
            raise SchemaError(f"{source}: {column.name!r}: {exc}") from None
        columns.append(parsed.columns[0])
    return InputSchema(tuple(columns), form, schema.named)


def describe_schema(schema: InputSchema) -> list[str]:
    """Lines for the CLI: one per column (one line for plain numbers)."""
    takes = "a pandas DataFrame" if schema.format == DATAFRAME else "a float array"
    if not schema.object_positions and schema.strict_numeric:
        named = "unnamed"
        if schema.named:
            # Whole names, as many as fit a line, then how many more.
            shown = schema.names[:1]
            for name in schema.names[1:]:
                if len(", ".join([*shown, name])) > 60:
                    break
                shown.append(name)
            more = len(schema.names) - len(shown)
            named = ", ".join(shown) + (f" and {more} more" if more else "")
        return [
            f"input schema: {len(schema.columns)} numbers ({named}), none may be "
            f"missing; the model takes {takes}"
        ]
    lines = [f"input schema: the model takes {takes} of these columns"]
    width = max(len(c.name) for c in schema.columns)
    for column in schema.columns:
        parts = [column.kind + (", may be missing" if column.nullable else "")]
        if column.categories is not None:
            shown = ", ".join(str(c) for c in column.categories[:8])
            more = len(column.categories) - 8
            shown += f" and {more} more" if more > 0 else ""
            verdict = "others accepted" if column.unknown else "others refused"
            parts.append(f"categories {shown} ({verdict})")
        lines.append(f"  {column.name:<{width}}  {'; '.join(parts)}")
    return lines


# --- what the model shows


def _names(model: Any) -> list[str] | None:
    names = getattr(model, "feature_names_in_", None)
    return None if names is None else [str(n) for n in names]


def _walk(estimator: Any, positions: list[int], hints: list[_Hint]) -> None:
    """Record what `estimator`, which sees the input columns at `positions`
    unchanged and in this order, shows about them."""
    from sklearn.compose import ColumnTransformer
    from sklearn.ensemble import (
        HistGradientBoostingClassifier,
        HistGradientBoostingRegressor,
    )
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder, OrdinalEncoder

    if isinstance(estimator, Pipeline):
        for _, step in estimator.steps:
            if step is None or step == "passthrough":
                continue
            _walk(step, positions, hints)
            if not _keeps_columns(step):
                break
    elif _members(estimator):  # ensembles: every member sees the columns
        for member in _members(estimator):
            _walk(member, positions, hints)
    elif isinstance(estimator, ColumnTransformer):
        indices = getattr(estimator, "_transformer_to_input_indices", {})
        for name, transformer, _ in estimator.transformers_:
            seen = [positions[i] for i in indices.get(name, []) if i < len(positions)]
            if isinstance(transformer, str) and transformer == "drop":
                for p in seen:
                    hints[p].dropped = True
            elif not isinstance(transformer, str):
                _walk(transformer, seen, hints)
    elif _is_imputer(estimator):
        statistics = getattr(estimator, "statistics_", None)
        for k, p in enumerate(positions):
            hints[p].handles_missing = True
            known = statistics is not None and k < len(statistics)
            if known and isinstance(statistics[k], str):
                hints[p].kind = hints[p].kind or STRING
    elif isinstance(estimator, OneHotEncoder | OrdinalEncoder):
        learned = getattr(estimator, "categories_", [])
        if len(learned) == len(positions):
            for p, values in zip(positions, learned, strict=True):
                _categories(hints[p], values)
    elif isinstance(
        estimator, HistGradientBoostingClassifier | HistGradientBoostingRegressor
    ):
        for p in positions:
            hints[p].handles_missing = True  # NaN is routed natively
        preprocessor = getattr(estimator, "_preprocessor", None)
        if preprocessor is not None:
            _walk(preprocessor, positions, hints)
            if estimator.categorical_features == "from_dtype":
                for p in positions:
                    if hints[p].kind == STRING:
                        hints[p].kind = CATEGORY


def _members(estimator: Any) -> list[Any]:
    """The fitted members of a voting or stacking ensemble, or the calibrated
    estimators of a CalibratedClassifierCV; [] for anything else."""
    from sklearn.calibration import CalibratedClassifierCV
    from sklearn.ensemble import (
        StackingClassifier,
        StackingRegressor,
        VotingClassifier,
        VotingRegressor,
    )

    ensembles = (VotingClassifier, VotingRegressor, StackingClassifier)
    if isinstance(estimator, (*ensembles, StackingRegressor)):
        return [m for m in estimator.estimators_ if not isinstance(m, str)]
    if isinstance(estimator, CalibratedClassifierCV):
        return [c.estimator for c in estimator.calibrated_classifiers_]
    return []


def _is_imputer(estimator: Any) -> bool:
    """SimpleImputer, KNNImputer, IterativeImputer (experimental, so not
    importable without its enabling import): scikit-learn's imputers."""
    cls = type(estimator)
    return cls.__module__.startswith("sklearn.impute") and cls.__name__.endswith(
        "Imputer"
    )


def _keeps_columns(step: Any) -> bool:
    """Whether the columns after `step` are its inputs, in order (so the next
    step sees them too): imputers without indicators, and scalers."""
    from sklearn.impute import SimpleImputer
    from sklearn.preprocessing import (
        MaxAbsScaler,
        MinMaxScaler,
        RobustScaler,
        StandardScaler,
    )

    kept = (SimpleImputer, StandardScaler, MinMaxScaler, MaxAbsScaler, RobustScaler)
    return isinstance(step, kept) and not getattr(step, "add_indicator", False)


def _categories(hint: _Hint, values: np.ndarray) -> None:
    """An encoder's learned categories of one column (missing ones apart)."""
    known = []
    for value in np.asarray(values, dtype=object).tolist():
        if value is None or (isinstance(value, float) and math.isnan(value)):
            hint.missing_seen = True
        else:
            known.append(_json(value))
    hint.categories = known
    if known and all(isinstance(v, str) for v in known):
        hint.kind = STRING
    elif known and all(isinstance(v, bool) for v in known):
        hint.kind = BOOLEAN
    elif all(isinstance(v, int | float) for v in known):
        integral = all(float(v).is_integer() for v in known)
        hint.kind = INTEGER if integral else NUMBER
        hint.categories = [int(v) for v in known] if integral else known


# --- what the data shows


def _data_facts(
    data: pd.DataFrame | None, labels: list[str]
) -> list[tuple[str | None, bool]]:
    """(kind, has missing values) per column, from the user's frame."""
    if data is None:
        return [(None, False)] * len(labels)
    from pandas import CategoricalDtype
    from pandas.api import types

    facts: list[tuple[str | None, bool]] = []
    for label in labels:
        series = data[label]
        if isinstance(series.dtype, CategoricalDtype):
            kind: str | None = CATEGORY
        elif types.is_bool_dtype(series.dtype):
            kind = BOOLEAN
        elif types.is_numeric_dtype(series.dtype):
            kind = NUMBER
        else:
            kind = STRING
        facts.append((kind, bool(series.isna().any())))
    return facts


def _column(label: str, hint: _Hint, kind: str | None) -> Column:
    chosen = hint.kind or kind or NUMBER
    if kind == CATEGORY and chosen == STRING:
        chosen = CATEGORY  # fitted on a pandas category column
    if hint.kind is None and hint.dropped:
        chosen = kind or NUMBER
    categories = hint.categories
    if chosen == CATEGORY and categories is None:
        chosen = STRING
    return Column(
        label,
        chosen,
        nullable=False,
        categories=None if categories is None else tuple(categories),
        unknown=True,
    )


def _nullable_evidence(
    hints: list[_Hint], facts: list[tuple[str | None, bool]]
) -> list[bool]:
    """Columns that may be missing if the model agrees: missing in the data,
    learned as a category, imputed, routed natively, or dropped."""
    return [
        missing or h.missing_seen or h.handles_missing or h.dropped
        for h, (_, missing) in zip(hints, facts, strict=True)
    ]


# --- asking the model


class _Prober:
    """Asks the model whether it predicts on rows, given them as it will be."""

    def __init__(self, model: Any, schema: InputSchema, form: str) -> None:
        self.model = model
        self.schema = schema
        self.form = form

    def refusal(
        self, rows: list[list[Any]], schema: InputSchema | None = None
    ) -> str | None:
        """None if the model predicts on `rows` (finite answers), else why not."""
        schema = schema or self.schema
        try:
            with warnings.catch_warnings(), np.errstate(all="ignore"):
                warnings.simplefilter("ignore")
                X = (to_frame if self.form == DATAFRAME else to_array)(rows, schema)
                outputs = [self.model.predict(X)]
                for method in ("predict_proba", "decision_function"):
                    if hasattr(self.model, method):
                        outputs.append(getattr(self.model, method)(X))
        except Exception as exc:  # the model refusing: anything at all
            return _one_line(exc)
        for output in outputs:
            array = np.asarray(output)
            if array.dtype.kind == "f" and not np.isfinite(array).all():
                return "its answer is not a finite number"
        return None

    def refusals(
        self, cases: dict[int, list[list[Any]]], schema: InputSchema
    ) -> dict[int, str | None]:
        """`refusal` of each case's rows, asked together first: one call for
        a model that accepts them all, however many columns it has."""
        if not cases:
            return {}
        together = self.refusal(
            [row for rows in cases.values() for row in rows], schema
        )
        if together is None or len(cases) == 1:
            return dict.fromkeys(cases, together)
        keys = list(cases)
        half = len(keys) // 2
        first = self.refusals({k: cases[k] for k in keys[:half]}, schema)
        return {**first, **self.refusals({k: cases[k] for k in keys[half:]}, schema)}

    def same_as_array(self, rows: list[list[Any]], schema: InputSchema) -> bool:
        """Whether a float array of `rows` gets the DataFrame's exact answers."""
        try:
            with warnings.catch_warnings(), np.errstate(all="ignore"):
                warnings.simplefilter("ignore")
                frame = to_frame(rows, schema)
                array = to_array(rows, schema, from_frame=True)
                for method in ("predict", "predict_proba", "decision_function"):
                    if not hasattr(self.model, method):
                        continue
                    a = np.asarray(getattr(self.model, method)(frame))
                    b = np.asarray(getattr(self.model, method)(array))
                    if a.shape != b.shape or not np.array_equal(a, b):
                        return False
        except Exception:  # the array refused: the model needs its DataFrame
            return False
        return True


def to_table(rows: list[list[Any]], schema: InputSchema) -> Table:
    """Rows of JSON values as the serving runtime holds them, unchecked (the
    model, not the schema, is being asked)."""
    from skserve.rows import Table

    numeric, other = schema.numeric_positions, schema.object_positions
    numbers = np.array(
        [
            [np.nan if row[j] is None else float(row[j]) for j in numeric]
            for row in rows
        ],
        dtype=np.float64,
    ).reshape(len(rows), len(numeric))
    objects = np.empty((len(rows), len(other)), dtype=object)
    for i, row in enumerate(rows):
        for k, j in enumerate(other):
            objects[i, k] = row[j]
    return Table(numbers, objects)


def to_frame(rows: list[list[Any]], schema: InputSchema) -> pd.DataFrame:
    """Rows as the serving runtime gives them to a DataFrame model."""
    from skserve.runtimes.sklearn import frame_of

    return frame_of(to_table(rows, schema), schema)


def to_array(
    rows: list[list[Any]], schema: InputSchema, *, from_frame: bool = False
) -> np.ndarray:
    """Rows as the serving runtime gives them to an array model (`from_frame`:
    one fitted on a DataFrame)."""
    from skserve.runtimes.sklearn import array_of

    return array_of(to_table(rows, schema), schema, from_frame=from_frame)


def _nullable(schema: InputSchema, positions: list[int]) -> InputSchema:
    columns = list(schema.columns)
    for j in positions:
        columns[j] = replace(columns[j], nullable=True)
    return InputSchema(tuple(columns), schema.format, schema.named)


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0][:160]}" if text else type(exc).__name__


def _with(rows: list[list[Any]], j: int, value: Any) -> list[list[Any]]:
    return [[value if k == j else v for k, v in enumerate(row)] for row in rows]


def _unseen(column: Column) -> Any:
    """A value of the column's kind that is not one of its categories."""
    assert column.categories is not None
    if not column.numeric and (
        not column.categories or isinstance(column.categories[0], str)
    ):
        return UNSEEN
    if column.kind == BOOLEAN:
        return None
    numbers = [float(c) for c in column.categories] or [0.0]
    value = max(numbers) + 1
    return int(value) if column.kind == INTEGER or column.kind == CATEGORY else value


def _json(value: Any) -> Any:
    """A pandas/numpy scalar as its JSON value (None for missing)."""
    if value is None:
        return None
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


def _mode(values: list[Any]) -> Any:
    """The most frequent value; the first seen of the most frequent."""
    counts: dict[Any, int] = {}
    for value in values:
        counts[value] = counts.get(value, 0) + 1
    return max(counts, key=counts.__getitem__)


def _coerce(value: Any, column: Column) -> Any:
    """A data value as a JSON value of the column's kind (None if it cannot
    be one): a CSV's "10001" for a string column stays text, for a number
    column is 10001.0."""
    if value is None:
        return None
    want_text = not column.numeric and not (
        column.categories and not isinstance(column.categories[0], str)
    )
    if want_text:
        if isinstance(value, float) and value.is_integer():
            return str(int(value))
        return value if isinstance(value, str) else str(value)
    if column.kind == BOOLEAN:
        if isinstance(value, bool):
            return value
        text = str(value).strip().lower()
        return {"true": True, "false": False, "1": True, "0": False}.get(text)
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    if not math.isfinite(number):
        return None
    if column.kind in (INTEGER, CATEGORY) and number.is_integer():
        return int(number)
    return number


def _round(value: float) -> float:
    return float(f"{value:.6g}")


def _fits(value: Any, column: Column) -> bool:
    if column.categories is not None and not column.unknown:
        return value in column.categories
    return True
