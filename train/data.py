"""Training data: a CSV file with a header, or one of scikit-learn's bundled sets."""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from skserve.errors import Code, ConfigError

DATASETS = ("iris", "wine", "breast_cancer", "diabetes")


class DataError(ConfigError):
    """The training data cannot be used as given."""

    code = Code.INVALID_DATA


@dataclass(frozen=True)
class Dataset:
    """Features as floats, the target as given, and where they came from."""

    X: np.ndarray
    y: np.ndarray
    feature_names: list[str]
    target: str
    source: str


def load_csv(path: str, target: str) -> Dataset:
    """Read `path`; every column but `target` must be numeric."""
    file = Path(path)
    try:
        with file.open(newline="", encoding="utf-8-sig") as handle:
            rows = list(csv.reader(handle))
    except FileNotFoundError:
        raise DataError(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise DataError(f"{path}: cannot read it as CSV ({exc})") from None
    rows = [row for row in rows if any(cell.strip() for cell in row)]
    if not rows:
        raise DataError(f"{path} is empty; it needs a header row and data rows")
    header = [name.strip() for name in rows[0]]
    body = rows[1:]
    if not body:
        raise DataError(f"{path} has a header but no data rows")
    if target not in header:
        raise DataError(
            f"column {target!r} is not in {path}; columns: {', '.join(header)}"
        )
    if len(set(header)) != len(header) or "" in header:
        raise DataError(f"{path} has empty or duplicate column names in its header")
    for number, row in enumerate(body, start=2):
        if len(row) != len(header):
            raise DataError(
                f"{path} line {number} has {len(row)} fields, "
                f"the header has {len(header)}"
            )
    t = header.index(target)
    names = [name for i, name in enumerate(header) if i != t]
    if not names:
        raise DataError(f"{path} has no feature columns besides {target!r}")
    X = np.empty((len(body), len(names)))
    for j, (i, name) in enumerate((i, n) for i, n in enumerate(header) if i != t):
        for k, row in enumerate(body):
            X[k, j] = _number(row[i], path, name, k + 2)
    y = _target([row[t].strip() for row in body], path, target)
    return Dataset(X, y, names, target, f"csv:{file.name}")


def load_rows(
    path: str, feature_names: list[str] | None, n_features: int
) -> np.ndarray:
    """Feature rows from a CSV with a header (e.g. a published model's holdout):
    the model's named columns in its order (others, such as the target, are
    ignored), or exactly `n_features` columns for a model without names."""
    file = Path(path)
    try:
        with file.open(newline="", encoding="utf-8-sig") as handle:
            rows = [row for row in csv.reader(handle) if any(c.strip() for c in row)]
    except FileNotFoundError:
        raise DataError(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise DataError(f"{path}: cannot read it as CSV ({exc})") from None
    if len(rows) < 2:
        raise DataError(f"{path} needs a header row and data rows")
    header = [name.strip() for name in rows[0]]
    if feature_names:
        missing = [name for name in feature_names if name not in header]
        if missing:
            raise DataError(f"{path} lacks the model's columns {', '.join(missing)}")
        columns = [header.index(name) for name in feature_names]
    elif len(header) == n_features:
        columns = list(range(n_features))
    else:
        raise DataError(
            f"{path} has {len(header)} columns; the model takes {n_features} features"
        )
    X = np.empty((len(rows) - 1, len(columns)))
    for k, row in enumerate(rows[1:]):
        if len(row) != len(header):
            raise DataError(
                f"{path} line {k + 2} has {len(row)} fields, "
                f"the header has {len(header)}"
            )
        for j, i in enumerate(columns):
            X[k, j] = _number(row[i], path, header[i], k + 2)
    return X


def _number(cell: str, path: str, column: str, line: int) -> float:
    try:
        value = float(cell)
    except ValueError:
        what = "empty" if not cell.strip() else f"{cell.strip()[:30]!r}"
        raise DataError(
            f"column {column!r} of {path} is not numeric (line {line}: {what}); "
            "encode it as numbers or drop it"
        ) from None
    if not np.isfinite(value):
        raise DataError(f"column {column!r} of {path} has {cell!r} at line {line}")
    return value


def _target(values: list[str], path: str, target: str) -> np.ndarray:
    """Keep labels in their natural type: ints, then floats, else strings."""
    if any(not v for v in values):
        raise DataError(f"target column {target!r} of {path} has empty cells")
    for kind in (int, float):
        try:
            y = np.array([kind(v) for v in values])
        except (ValueError, OverflowError):
            continue
        if y.dtype == object or not np.isfinite(y).all():
            raise DataError(
                f"target column {target!r} of {path} has values that are not finite "
                "or too large (nan, inf, huge integers); clean them first"
            )
        return y
    return np.array(values, dtype=object)


def load_bundled(name: str) -> Dataset:
    """One of scikit-learn's small bundled datasets (shipped with it, no download)."""
    from sklearn import datasets

    if name not in DATASETS:
        raise DataError(
            f"unknown dataset {name!r}; choose one of {', '.join(DATASETS)}"
        )
    bunch: Any = getattr(datasets, f"load_{name}")()
    return Dataset(
        np.asarray(bunch.data, dtype=float),
        np.asarray(bunch.target),
        [str(n) for n in bunch.feature_names],
        "target",
        f"sklearn.datasets.load_{name}",
    )
