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
    """Features, the target as given, and where they came from. `X` is a float
    array when every feature is a complete number column, else a pandas
    DataFrame (float64 columns with NaN for empty cells, text columns as
    strings with NaN), as pandas would read the file."""

    X: Any
    y: np.ndarray
    feature_names: list[str]
    target: str
    source: str

    @property
    def tabular(self) -> bool:
        """Whether X is a DataFrame (text columns or empty cells)."""
        return not isinstance(self.X, np.ndarray)


def read_csv(path: str) -> tuple[list[str], list[list[str]]]:
    """(header, data rows) of a CSV file whose rows all have the header's
    width; blank lines are skipped."""
    file = Path(path)
    try:
        with file.open(newline="", encoding="utf-8-sig") as handle:
            rows = [row for row in csv.reader(handle) if any(c.strip() for c in row)]
    except FileNotFoundError:
        raise DataError(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise DataError(f"{path}: cannot read it as CSV ({exc})") from None
    if not rows:
        raise DataError(f"{path} is empty; it needs a header row and data rows")
    header = [name.strip() for name in rows[0]]
    body = rows[1:]
    if not body:
        raise DataError(f"{path} has a header but no data rows")
    if len(set(header)) != len(header) or "" in header:
        raise DataError(f"{path} has empty or duplicate column names in its header")
    for number, row in enumerate(body, start=2):
        if len(row) != len(header):
            raise DataError(
                f"{path} line {number} has {len(row)} fields, "
                f"the header has {len(header)}"
            )
    return header, body


def load_csv(path: str, target: str) -> Dataset:
    """Read `path`: `target` is what to predict, every other column a feature.
    Columns of numbers are numbers, others text; an empty cell is missing."""
    header, body = read_csv(path)
    if target not in header:
        raise DataError(
            f"column {target!r} is not in {path}; columns: {', '.join(header)}"
        )
    t = header.index(target)
    names = [name for i, name in enumerate(header) if i != t]
    if not names:
        raise DataError(f"{path} has no feature columns besides {target!r}")
    columns = {
        name: typed_column([row[i] for row in body], path, name)
        for i, name in enumerate(header)
        if i != t
    }
    y = _target([row[t].strip() for row in body], path, target)
    source = f"csv:{Path(path).name}"
    complete = all(
        c.dtype == np.float64 and not np.isnan(c).any() for c in columns.values()
    )
    if complete:
        X = np.column_stack(list(columns.values()))
        return Dataset(X, y, names, target, source)
    import pandas as pd

    return Dataset(pd.DataFrame(columns), y, names, target, source)


def load_frame(path: str, feature_names: list[str] | None, n_features: int) -> Any:
    """Feature rows from a CSV with a header (e.g. a published model's holdout)
    as a DataFrame of the model's columns in its order (others, such as the
    target, are ignored), typed as `load_csv` types them; a model without
    names takes exactly `n_features` columns, named x0, x1..."""
    import pandas as pd

    header, body = read_csv(path)
    if feature_names:
        missing = [name for name in feature_names if name not in header]
        if missing:
            raise DataError(f"{path} lacks the model's columns {', '.join(missing)}")
        picked = [(name, header.index(name)) for name in feature_names]
    elif len(header) == n_features:
        picked = [(f"x{i}", i) for i in range(n_features)]
    else:
        raise DataError(
            f"{path} has {len(header)} columns; the model takes {n_features} features"
        )
    return pd.DataFrame(
        {
            name: typed_column([row[i] for row in body], path, header[i])
            for name, i in picked
        }
    )


def typed_column(cells: list[str], path: str, name: str) -> np.ndarray:
    """Numbers as float64 (NaN for empty cells) when every filled cell is one,
    else the text as it is (NaN for empty cells), as pandas reads a CSV: only
    an empty cell is missing (" " is text)."""
    missing = [cell == "" for cell in cells]  # as pandas reads a CSV
    try:
        values = [
            np.nan if gap else float(c) for c, gap in zip(cells, missing, strict=True)
        ]
    except ValueError:
        return np.array(
            [np.nan if gap else c for c, gap in zip(cells, missing, strict=True)],
            dtype=object,
        )
    array = np.array(values, dtype=np.float64)
    bad = np.flatnonzero(~np.isfinite(array) & ~np.array(missing, dtype=bool))
    if bad.size:
        line = int(bad[0]) + 2
        raise DataError(
            f"column {name!r} of {path} has {cells[bad[0]].strip()!r} at line "
            f"{line}; numbers must be finite (leave a missing value empty)"
        )
    return array


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
