"""The parity gate: the twin is kept only if it matches scikit-learn on every row."""

# The gate compares labels exactly and probabilities or values within 1e-6, on
# reference rows plus generated ones: uniform over 1.5x each feature's range,
# Gaussian around reference rows, at and beside every tree split threshold, and
# with each column that may be missing missing.

from __future__ import annotations

import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from skserve.schema import InputSchema
from train.twin.common import NoTwin, is_classifier, is_clusterer, one_line, session
from train.twin.encoding import (
    decoded,
    every_category,
    model_input,
    valid_codes,
)

TOLERANCE = 1e-6
UNIFORM_ROWS = 5_000
MISSING_ROWS = 200  # per column that may be missing
GAUSSIAN_ROWS = 5_000
MAX_THRESHOLD_ROWS = 40_000
RANGE_FACTOR = 1.5  # uniform rows span 1.5x each feature's observed range
GAUSSIAN_SCALE = 0.25  # noise, in units of each feature's standard deviation


@dataclass(frozen=True)
class GateRows:
    """The rows the gate compares on, and how many came from each source."""

    matrix: np.ndarray
    counts: dict[str, int]


def gate_rows(
    model: Any,
    reference: np.ndarray,
    *,
    seed: int = 0,
    missing: Sequence[int] = (),
    schema: InputSchema | None = None,
) -> GateRows:
    """`reference`, uniform rows over 1.5x each feature's range, Gaussian rows
    around reference rows, rows at and beside every tree split threshold, for
    each column in `missing` reference rows with it missing (NaN), and (with a
    schema of string columns, whose codes the rows hold) every category of each
    in turn, an unseen one where accepted, and only codes the function sends."""
    rng = np.random.default_rng(seed)
    with warnings.catch_warnings():  # an all-missing column: no range to span
        warnings.simplefilter("ignore", RuntimeWarning)
        low, high = np.nanmin(reference, axis=0), np.nanmax(reference, axis=0)
        spread = np.nanstd(reference, axis=0)
    low, high = np.nan_to_num(low), np.nan_to_num(high)
    middle = (low + high) / 2
    half = (high - low) / 2 * RANGE_FACTOR
    half = np.where(half > 0, half, np.maximum(np.abs(middle), 1.0) / 2)
    uniform = rng.uniform(middle - half, middle + half, (UNIFORM_ROWS, len(low)))
    spread = np.where(spread > 0, spread, np.maximum(np.abs(middle), 1.0))
    centres = reference[rng.integers(len(reference), size=GAUSSIAN_ROWS)]
    gaussian = centres + rng.normal(0.0, GAUSSIAN_SCALE, centres.shape) * spread
    thresholds = _threshold_rows(model, reference, rng)
    gaps = []
    for j in missing:
        block = reference[rng.integers(len(reference), size=MISSING_ROWS)].copy()
        block[:, j] = np.nan
        gaps.append(block)
    parts = {
        "reference": reference,
        "uniform": uniform,
        "gaussian": gaussian,
        "thresholds": thresholds,
        "missing": np.vstack(gaps) if gaps else np.empty((0, reference.shape[1])),
    }
    if schema is not None and not schema.all_numeric:
        parts["categories"] = every_category(reference, schema, rng)
        for block in parts.values():
            valid_codes(block, schema, rng)
    return GateRows(
        matrix=np.vstack(list(parts.values())),
        counts={source: len(rows) for source, rows in parts.items()},
    )


def check_parity(
    model: Any, data: bytes, rows: GateRows, schema: InputSchema | None = None
) -> dict[str, Any] | NoTwin:
    """The gate: the twin's labels equal `model.predict` on every row and its
    probabilities or values are within TOLERANCE. Returns the evidence, or why not.
    Rows go in as the function feeds them: to the twin as its float64 matrix,
    to scikit-learn as the array or DataFrame its runtime builds."""
    name = type(model).__name__
    schema = schema or InputSchema.numeric(rows.matrix.shape[1], None)
    X = model_input(model, decoded(rows.matrix, schema), schema)
    try:
        running = session(data)
        declared = running.get_inputs()[0]
        outputs = running.run(None, {declared.name: rows.matrix})
    except Exception as exc:  # onnxruntime's errors carry no common base class
        return NoTwin(f"onnxruntime cannot run the twin of {name}: {one_line(exc)}")
    roles = output_roles(model, len(outputs))
    if roles is None:
        return NoTwin(f"the twin of {name} has {len(outputs)} outputs; unexpected")
    n = len(rows.matrix)
    with np.errstate(all="ignore"):
        expected = np.asarray(model.predict(X))
    if expected.ndim != 1:
        return NoTwin(f"{name} predicts {expected.shape[1]} outputs per row")
    compared: list[str] = []
    worst = 0.0
    agreement: float | None = None
    for role, output in zip(roles, outputs, strict=True):
        got = np.asarray(output)
        if role == "labels":
            same = _same_labels(expected, got.reshape(-1))
            agreement = float(same.mean()) if same.size == n else 0.0
            if agreement < 1.0:
                differ = n - int(same.sum()) if same.size == n else n
                return NoTwin(
                    f"the twin's labels differ from scikit-learn's on {differ} of "
                    f"{n} rows ({differ / n:.2%})"
                )
        elif role in ("probabilities", "values"):
            with np.errstate(all="ignore"):
                truth = (
                    np.asarray(model.predict_proba(X), dtype=np.float64)
                    if role == "probabilities"
                    else expected.astype(np.float64)
                )
            got = got.astype(np.float64)
            if got.size == truth.size:
                got = got.reshape(truth.shape)
            if got.shape != truth.shape:
                return NoTwin(
                    f"the twin's {role} have shape {got.shape}, "
                    f"scikit-learn's {truth.shape}"
                )
            difference = _max_abs_difference(truth, got)
            if not difference <= TOLERANCE:
                return NoTwin(
                    f"the twin's {role} differ from scikit-learn's by up to "
                    f"{difference:.3g} (tolerance {TOLERANCE:g})"
                )
            worst = max(worst, difference)
        else:
            continue  # decision scores are never served, so not compared
        compared.append(role)
    return {
        "rows_checked": n,
        "label_agreement": agreement,
        "max_abs_difference": worst,
        "tolerance": TOLERANCE,
        "compared": compared,
        "rows": dict(rows.counts),
    }


def output_roles(model: Any, count: int) -> list[str] | None:
    """What each ONNX output holds, in order; None if the count is unexpected."""
    if is_classifier(model):
        second = "probabilities" if hasattr(model, "predict_proba") else "scores"
        return ["labels", second] if count == 2 else None
    if is_clusterer(model):  # the cluster, and distances that are never served
        return ["labels", "scores"] if count == 2 else None
    return ["values"] if count == 1 else None


def _same_labels(expected: np.ndarray, got: np.ndarray) -> np.ndarray:
    """Elementwise equality as JSON sees it: 1 == 1.0, "a" == "a"."""
    if expected.shape != got.shape:
        return np.zeros(0, dtype=bool)
    return np.asarray(expected.astype(object) == got.astype(object), dtype=bool)


def _max_abs_difference(truth: np.ndarray, got: np.ndarray) -> float:
    if truth.size == 0:
        return 0.0
    with np.errstate(all="ignore"):
        difference = np.abs(truth - got)
    # Matching infinities are agreement; NaN anywhere is not.
    difference[(truth == got)] = 0.0
    return float(np.nan) if np.isnan(difference).any() else float(difference.max())


def model_reference(
    model: Any, n_features: int, *, rows: int = 1000, seed: int = 0
) -> np.ndarray:
    """Reference rows for a model published without data: per feature, the
    span of the trees' split thresholds, else the first step's mean and scale
    (a StandardScaler), else a standard normal. The gate then widens them."""
    rng = np.random.default_rng(seed)
    low, high = np.full(n_features, -1.0), np.full(n_features, 1.0)
    for before, splits in _tree_splits(model):
        if before:  # thresholds in a transformed space: not the inputs' scale
            continue
        for feature, thresholds in splits.items():
            if feature < n_features and len(thresholds):
                low[feature], high[feature] = thresholds.min(), thresholds.max()
        break
    first = (getattr(model, "steps", None) or [("model", model)])[0][1]
    mean, scale = getattr(first, "mean_", None), getattr(first, "scale_", None)
    if mean is not None and scale is not None and len(mean) == n_features:
        low, high = mean - 3 * np.asarray(scale), mean + 3 * np.asarray(scale)
    width = np.where(high > low, high - low, 1.0)
    return rng.uniform(low, low + width, (rows, n_features))


def _threshold_rows(
    model: Any, reference: np.ndarray, rng: np.random.Generator
) -> np.ndarray:
    """Rows whose values sit at, and one step either side of, split thresholds,
    in the space each tree sees (mapped back through invertible Pipeline steps)."""
    blocks = []
    for before, splits in _tree_splits(model):
        try:
            seen = _transform(before, reference)
        except Exception:  # a step that cannot transform: no threshold rows for it
            continue
        values = {
            feature: _near(splits[feature])
            for feature in splits
            if feature < seen.shape[1]
        }
        if not values:
            continue
        count = min(max(len(v) for v in values.values()), MAX_THRESHOLD_ROWS)
        block = seen[rng.integers(len(seen), size=count)].copy()
        for feature, candidates in values.items():
            picked = (
                rng.permutation(candidates)
                if len(candidates) <= count
                else rng.choice(candidates, size=count, replace=False)
            )
            block[:, feature] = np.resize(picked, count)
        block = _invert(before, block)
        if block is not None:
            blocks.append(block)
    if not blocks:
        return np.empty((0, reference.shape[1]))
    rows = np.vstack(blocks)
    rows = rows[np.isfinite(rows).all(axis=1)]
    if len(rows) > MAX_THRESHOLD_ROWS:
        rows = rows[rng.choice(len(rows), size=MAX_THRESHOLD_ROWS, replace=False)]
    return rows


def _near(thresholds: np.ndarray) -> np.ndarray:
    """Each threshold t, its double neighbours, the float32 values either side
    of it, and the rounding boundary between them (scikit-learn compares
    float32(x) <= t, so these are where a twin could branch differently)."""
    t = np.unique(thresholds)
    below = t.astype(np.float32)
    below = np.where(below.astype(np.float64) > t, np.nextafter(below, -np.inf), below)
    above = np.nextafter(below, np.float32(np.inf))
    below, above = below.astype(np.float64), above.astype(np.float64)
    middle = (below + above) / 2
    parts = [
        t,
        np.nextafter(t, -np.inf),
        np.nextafter(t, np.inf),
        below,
        above,
        middle,
        np.nextafter(middle, -np.inf),
        np.nextafter(middle, np.inf),
    ]
    values = np.unique(np.concatenate(parts))
    return values[np.isfinite(values)]


def _tree_splits(model: Any) -> Iterator[tuple[list[Any], dict[int, np.ndarray]]]:
    """(the Pipeline steps before the trees, feature -> thresholds) per estimator."""
    steps = getattr(model, "steps", None) or [("model", model)]
    for index, (_, step) in enumerate(steps):
        splits = _splits_of(step)
        if splits:
            yield [s for _, s in steps[:index]], splits


def _splits_of(estimator: Any) -> dict[int, np.ndarray]:
    features: list[np.ndarray] = []
    thresholds: list[np.ndarray] = []
    for tree in _trees(estimator):
        internal = tree.feature >= 0
        features.append(tree.feature[internal])
        thresholds.append(tree.threshold[internal])
    if not features:
        return {}
    feature = np.concatenate(features)
    threshold = np.concatenate(thresholds)
    return {int(f): threshold[feature == f] for f in np.unique(feature)}


def _trees(estimator: Any) -> Iterator[Any]:
    if getattr(estimator, "_predictors", None) is not None:
        # HistGradientBoosting: its numeric splits, features as input columns.
        from train.twin.hist_gradient_boosting import split_trees

        yield from split_trees(estimator)
        return
    tree = getattr(estimator, "tree_", None)
    if tree is not None:
        yield tree
        return
    members = getattr(estimator, "estimators_", None)
    if members is None:
        return
    for member in np.asarray(members, dtype=object).ravel():
        yield from _trees(member)


def _transform(steps: list[Any], rows: np.ndarray) -> np.ndarray:
    for step in steps:
        rows = step.transform(rows)
    return np.asarray(rows, dtype=np.float64)


def _invert(steps: list[Any], block: np.ndarray) -> np.ndarray | None:
    """Map rows from a tree's input space back through the Pipeline steps before
    it; None when a step cannot be inverted."""
    try:
        for step in reversed(steps):
            block = step.inverse_transform(block)
    except Exception:  # no inverse_transform, or one that fails on these rows
        return None
    return np.asarray(block, dtype=np.float64)
