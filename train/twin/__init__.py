"""A model's ONNX twin is kept only if it matches scikit-learn on every gate row."""

# The twin is converted with float64 input (convert.py, with this package's own
# converters where skl2onnx's compute in float32 or are wrong); the gate
# (gate.py) compares labels exactly and probabilities or values within 1e-6.
# Needs scikit-learn, skl2onnx and onnxruntime: the trainer imports this
# package, the function never does.

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np

from skserve.rows import Table
from skserve.schema import InputSchema
from train.twin.common import NoTwin, Twin, one_line, root_cause, session
from train.twin.convert import INPUT, convert, own_converters
from train.twin.encoding import decoded, encoded, model_input
from train.twin.gate import (
    TOLERANCE,
    GateRows,
    check_parity,
    gate_rows,
    model_reference,
    output_roles,
)

FILE = "model.onnx"
# scikit-learn trees cast X to float32 and refuse values beyond its range.
FLOAT32_MAX = float(np.finfo(np.float32).max)

__all__ = [
    "FILE",
    "INPUT",
    "TOLERANCE",
    "GateRows",
    "NoTwin",
    "Twin",
    "build_twin",
    "check_parity",
    "convert",
    "gate_rows",
    "model_reference",
    "output_roles",
]


def build_twin(
    model: Any,
    reference: np.ndarray | Table | None,
    *,
    seed: int = 0,
    schema: InputSchema | None = None,
) -> Twin | NoTwin:
    """Convert `model` to ONNX with float64 input and keep it only if it passes
    the parity gate on `reference` (rows as a float matrix, or the typed rows
    of `schema`) plus generated rows: with each column the schema lets be
    missing missing, and each category of each string column in turn. Never
    raises for a model it cannot convert: the reason comes back as a NoTwin."""
    from sklearn.base import is_classifier, is_regressor

    from train.twin.common import is_clusterer

    name = type(model).__name__
    if not (is_classifier(model) or is_regressor(model) or is_clusterer(model)):
        return NoTwin(f"{name} is not a classifier, regressor or clusterer")
    n_features = getattr(model, "n_features_in_", None)
    if not isinstance(n_features, int | np.integer):
        return NoTwin(f"{name} does not record its feature count (n_features_in_)")
    n_features = int(n_features)
    schema = schema or InputSchema.numeric(n_features, None)
    free = [
        schema.columns[j].name
        for j in schema.object_positions
        if schema.columns[j].categories is None
    ]
    if free:
        return NoTwin(
            f"{name} takes free text in {free[0]!r} (no known categories); twins "
            "take numbers and categories"
        )
    if reference is None:
        return NoTwin("no reference rows for the parity gate")
    missing = [j for j, column in enumerate(schema.columns) if column.nullable]
    try:
        if isinstance(reference, Table):
            reference = encoded(reference, schema)
        reference = _reference_matrix(reference, n_features, missing)
    except ValueError as exc:
        return NoTwin(f"reference rows unusable: {exc}")
    try:
        # Converters warn about the estimators' deprecated attributes they read;
        # the trainer's user can act on none of it.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            onnx_model = convert(model, n_features, schema)
        data = onnx_model.SerializeToString()
    except Exception as exc:  # converters raise anything for models they lack
        return NoTwin(f"cannot convert {name} to ONNX: {one_line(root_cause(exc))}")
    problem = _interface_problem(data, n_features)
    if problem:
        return NoTwin(problem)
    try:
        with warnings.catch_warnings():
            # Fitted on a DataFrame, given the float array the runtime gives it.
            warnings.filterwarnings("ignore", "X does not have valid feature names")
            rows = gate_rows(
                model, reference, seed=seed, missing=missing, schema=schema
            )
            verdict = check_parity(model, data, rows, schema)
            beyond = _refuses_beyond_float32(model, schema, reference[0])
    except Exception as exc:  # e.g. the model's own predict fails on gate rows
        return NoTwin(f"the parity gate could not run for {name}: {one_line(exc)}")
    if isinstance(verdict, NoTwin):
        return verdict
    return Twin(data=data, facts=_facts(model, onnx_model, verdict, schema, beyond))


def _facts(
    model: Any,
    onnx_model: Any,
    parity: dict[str, Any],
    schema: InputSchema,
    beyond_float32: bool,
) -> dict[str, Any]:
    import onnx
    import onnxruntime
    import skl2onnx

    roles = output_roles(model, len(onnx_model.graph.output)) or []
    return {
        "runtime": "onnx",
        "file": FILE,
        "input": {
            "name": INPUT,
            "dtype": "float64",
            "n_features": int(model.n_features_in_),
            "max_abs": FLOAT32_MAX if beyond_float32 else None,
            # Strings as their index among the schema's categories.
            **({} if schema.all_numeric else {"encoding": "codes"}),
        },
        "outputs": [
            {"name": output.name, "role": role}
            for output, role in zip(onnx_model.graph.output, roles, strict=True)
        ],
        "opset": {
            item.domain or "ai.onnx": item.version for item in _opsets(onnx_model)
        },
        # skl2onnx's converters, with this project's own for these estimators.
        "converter": f"skl2onnx {skl2onnx.__version__}",
        "own_converters": own_converters(onnx_model),
        "onnxruntime": onnxruntime.__version__,
        "onnx": onnx.__version__,
        "parity": parity,
    }


def _opsets(onnx_model: Any) -> list[Any]:
    seen: dict[str, Any] = {}
    for item in onnx_model.opset_import:
        if item.domain not in seen or item.version > seen[item.domain].version:
            seen[item.domain] = item
    return list(seen.values())


def _refuses_beyond_float32(model: Any, schema: InputSchema, row: np.ndarray) -> bool:
    """Trees cast X to float32, so scikit-learn refuses values beyond its range; the
    twin would answer. Recorded so the runtime refuses them too."""
    for position in schema.numeric_positions:  # a Pipeline may drop some
        for sign in (1, -1):
            rows = row.reshape(1, -1).copy()
            rows[0, position] = sign * FLOAT32_MAX * 2
            try:
                with np.errstate(all="ignore"):
                    model.predict(model_input(model, decoded(rows, schema), schema))
            except ValueError as exc:
                if "float32" in str(exc):
                    return True
    return False


def _interface_problem(data: bytes, n_features: int) -> str | None:
    """The runtime feeds one float64 (rows, n_features) matrix named X."""
    try:
        inputs = session(data).get_inputs()
    except Exception as exc:  # onnxruntime's errors carry no common base class
        return f"onnxruntime cannot load the twin: {one_line(exc)}"
    if len(inputs) != 1:
        return f"the twin takes {len(inputs)} inputs, not one matrix"
    (declared,) = inputs
    if declared.name != INPUT or declared.type != "tensor(double)":
        return f"the twin's input is {declared.name} {declared.type}, not X double"
    if list(declared.shape)[1:] != [n_features]:
        return f"the twin's input shape is {declared.shape}, not [N, {n_features}]"
    return None


def _reference_matrix(
    reference: np.ndarray, n_features: int, missing: Sequence[int] = ()
) -> np.ndarray:
    matrix = np.asarray(reference, dtype=np.float64)
    if matrix.ndim != 2 or matrix.shape[1] != n_features or len(matrix) == 0:
        raise ValueError(
            f"expected a non-empty (rows, {n_features}) matrix, got {matrix.shape}"
        )
    allowed = np.zeros(n_features, dtype=bool)
    allowed[list(missing)] = True
    if np.isinf(matrix).any() or (np.isnan(matrix) & ~allowed).any():
        raise ValueError("they contain NaN or infinite values")
    return matrix
