"""A model's ONNX twin is kept only if it matches scikit-learn on every gate row."""

# The twin is converted with float64 input; the gate compares labels exactly and
# probabilities or values within 1e-6. Needs scikit-learn, skl2onnx and
# onnxruntime: the trainer imports this module, the function never does.

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from skserve.schema import DATAFRAME, InputSchema

FILE = "model.onnx"
INPUT = "X"
TOLERANCE = 1e-6
UNIFORM_ROWS = 5_000
MISSING_ROWS = 200  # per column that may be missing
GAUSSIAN_ROWS = 5_000
MAX_THRESHOLD_ROWS = 40_000
RANGE_FACTOR = 1.5  # uniform rows span 1.5x each feature's observed range
GAUSSIAN_SCALE = 0.25  # noise, in units of each feature's standard deviation
# TreeEnsemble, the tree operator that computes in float64, is ai.onnx.ml 5;
# skl2onnx refuses to target beyond 3, so the model's import is raised after.
ML_OPSET = 5
SKL2ONNX_ML_OPSET = 3
# scikit-learn trees cast X to float32 and refuse values beyond its range.
FLOAT32_MAX = float(np.finfo(np.float32).max)


@dataclass(frozen=True)
class Twin:
    """A twin that passed the gate."""

    data: bytes  # the serialized ONNX model (model.onnx)
    facts: dict[str, Any]  # goes into the manifest as manifest["twin"]


@dataclass(frozen=True)
class NoTwin:
    """Why a model gets no twin."""

    reason: str  # one line, for the CLI ("no ONNX twin: <why>")


@dataclass(frozen=True)
class GateRows:
    """The rows the gate compares on, and how many came from each source."""

    matrix: np.ndarray
    counts: dict[str, int]


def build_twin(
    model: Any,
    reference: np.ndarray | None,
    *,
    seed: int = 0,
    schema: InputSchema | None = None,
) -> Twin | NoTwin:
    """Convert `model` to ONNX with float64 input and keep it only if it passes the
    parity gate on `reference` plus generated rows (and, for each column the
    schema lets be missing, the same rows with it missing). Never raises for a
    model it cannot convert: the reason comes back as a NoTwin."""
    from sklearn.base import is_classifier, is_regressor

    name = type(model).__name__
    if not (is_classifier(model) or is_regressor(model)):
        return NoTwin(f"{name} is neither a classifier nor a regressor")
    if schema is not None and (not schema.all_numeric or schema.format == DATAFRAME):
        takes = "text columns" if not schema.all_numeric else "a DataFrame"
        return NoTwin(f"{name} takes {takes}; twins take numeric arrays only")
    if reference is None:
        return NoTwin("no reference rows for the parity gate")
    missing = (
        []
        if schema is None
        else [j for j, column in enumerate(schema.columns) if column.nullable]
    )
    n_features = getattr(model, "n_features_in_", None)
    if not isinstance(n_features, int | np.integer):
        return NoTwin(f"{name} does not record its feature count (n_features_in_)")
    try:
        reference = _reference_matrix(reference, int(n_features), missing)
    except ValueError as exc:
        return NoTwin(f"reference rows unusable: {exc}")
    try:
        # Converters warn about the estimators' deprecated attributes they read;
        # the trainer's user can act on none of it.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            onnx_model = convert(model, int(n_features))
        data = onnx_model.SerializeToString()
    except Exception as exc:  # converters raise anything for models they lack
        return NoTwin(f"cannot convert {name} to ONNX: {_one_line(exc)}")
    problem = _interface_problem(data, int(n_features))
    if problem:
        return NoTwin(problem)
    try:
        with warnings.catch_warnings():
            # Fitted on a DataFrame, given the float array the runtime gives it.
            warnings.filterwarnings("ignore", "X does not have valid feature names")
            rows = gate_rows(model, reference, seed=seed, missing=missing)
            verdict = check_parity(model, data, rows)
    except Exception as exc:  # e.g. the model's own predict fails on gate rows
        return NoTwin(f"the parity gate could not run for {name}: {_one_line(exc)}")
    if isinstance(verdict, NoTwin):
        return verdict
    return Twin(data=data, facts=_facts(model, onnx_model, verdict))


def convert(model: Any, n_features: int) -> Any:
    """The skl2onnx conversion with float64 input "X", ZipMap off, and
    scikit-learn's trees as float64 TreeEnsemble nodes (ai.onnx.ml opset 5)."""
    from skl2onnx import convert_sklearn, get_latest_tested_opset_version
    from skl2onnx.common.data_types import DoubleTensorType

    options = None
    final = _final_estimator(model)
    if _is_classifier(final):
        options = {id(final): {"zipmap": False}}
    onnx_model = convert_sklearn(
        model,
        initial_types=[(INPUT, DoubleTensorType([None, n_features]))],
        target_opset={
            "": get_latest_tested_opset_version(),
            "ai.onnx.ml": SKL2ONNX_ML_OPSET,
        },
        options=options,
        custom_conversion_functions=_tree_converters(),
    )
    _outputs_as_double(onnx_model)
    if any(node.op_type == "TreeEnsemble" for node in onnx_model.graph.node):
        for item in onnx_model.opset_import:
            if item.domain == "ai.onnx.ml":
                item.version = ML_OPSET
    return onnx_model


def gate_rows(
    model: Any, reference: np.ndarray, *, seed: int = 0, missing: Sequence[int] = ()
) -> GateRows:
    """`reference`, uniform rows over 1.5x each feature's range, Gaussian rows
    around reference rows, rows at and beside every tree split threshold, and
    for each column in `missing` reference rows with it missing (NaN)."""
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
    return GateRows(
        matrix=np.vstack(list(parts.values())),
        counts={source: len(rows) for source, rows in parts.items()},
    )


def check_parity(model: Any, data: bytes, rows: GateRows) -> dict[str, Any] | NoTwin:
    """The gate: the twin's labels equal `model.predict` on every row and its
    probabilities or values are within TOLERANCE. Returns the evidence, or why not.
    Rows go in as float64, as the function will feed them."""
    name = type(model).__name__
    try:
        session = _session(data)
        declared = session.get_inputs()[0]
        outputs = session.run(None, {declared.name: rows.matrix})
    except Exception as exc:  # onnxruntime's errors carry no common base class
        return NoTwin(f"onnxruntime cannot run the twin of {name}: {_one_line(exc)}")
    roles = output_roles(model, len(outputs))
    if roles is None:
        return NoTwin(f"the twin of {name} has {len(outputs)} outputs; unexpected")
    n = len(rows.matrix)
    with np.errstate(all="ignore"):
        expected = np.asarray(model.predict(rows.matrix))
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
                    np.asarray(model.predict_proba(rows.matrix), dtype=np.float64)
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
    if _is_classifier(model):
        second = "probabilities" if hasattr(model, "predict_proba") else "scores"
        return ["labels", second] if count == 2 else None
    return ["values"] if count == 1 else None


def _facts(model: Any, onnx_model: Any, parity: dict[str, Any]) -> dict[str, Any]:
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
            "max_abs": FLOAT32_MAX if _refuses_beyond_float32(model) else None,
        },
        "outputs": [
            {"name": output.name, "role": role}
            for output, role in zip(onnx_model.graph.output, roles, strict=True)
        ],
        "opset": {
            item.domain or "ai.onnx": item.version for item in _opsets(onnx_model)
        },
        "converter": f"skl2onnx {skl2onnx.__version__}",
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


def _refuses_beyond_float32(model: Any) -> bool:
    """Trees cast X to float32, so scikit-learn refuses values beyond its range; the
    twin would answer. Recorded so the runtime refuses them too."""
    n = int(model.n_features_in_)
    for feature in range(n):  # any feature: a Pipeline may drop or rescale some
        for sign in (1, -1):
            row = np.zeros((1, n))
            row[0, feature] = sign * FLOAT32_MAX * 2
            try:
                with np.errstate(all="ignore"):
                    model.predict(row)
            except ValueError as exc:
                if "float32" in str(exc):
                    return True
    return False


def _interface_problem(data: bytes, n_features: int) -> str | None:
    """The runtime feeds one float64 (rows, n_features) matrix named X."""
    try:
        inputs = _session(data).get_inputs()
    except Exception as exc:  # onnxruntime's errors carry no common base class
        return f"onnxruntime cannot load the twin: {_one_line(exc)}"
    if len(inputs) != 1:
        return f"the twin takes {len(inputs)} inputs, not one matrix"
    (declared,) = inputs
    if declared.name != INPUT or declared.type != "tensor(double)":
        return f"the twin's input is {declared.name} {declared.type}, not X double"
    if list(declared.shape)[1:] != [n_features]:
        return f"the twin's input shape is {declared.shape}, not [N, {n_features}]"
    return None


def _session(data: bytes) -> Any:
    """A session configured as the function serves it (tree sums in one thread)."""
    import onnxruntime

    from skserve.runtimes.onnx import session_options

    return onnxruntime.InferenceSession(
        data, sess_options=session_options(), providers=["CPUExecutionProvider"]
    )


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


def _final_estimator(model: Any) -> Any:
    steps = getattr(model, "steps", None)
    return steps[-1][1] if steps else model


def _is_classifier(model: Any) -> bool:
    from sklearn.base import is_classifier

    return bool(is_classifier(model))


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    first = text[0] if text else ""
    return f"{type(exc).__name__}: {first[:200]}" if first else type(exc).__name__


class _Forest:
    """The attributes of one ai.onnx.ml TreeEnsemble node (opset 5), tree by tree.

    Every leaf holds one target's weight, so a tree that scores K targets is
    written K times, once per target.
    """

    def __init__(self, n_targets: int) -> None:
        self.n_targets = n_targets
        self._roots: list[int] = []
        self._nodes: dict[str, list[np.ndarray]] = {
            key: [] for key in ("feature", "split", "true", "true_leaf", "false")
        }
        self._nodes["false_leaf"] = []
        self._leaf_targets: list[np.ndarray] = []
        self._leaf_weights: list[np.ndarray] = []
        self._node_count = 0
        self._leaf_count = 0

    def add_constant(self, target: int, weight: float) -> None:
        """A tree that always answers `weight` (one split, both sides one leaf)."""
        leaf = np.array([self._leaf_count])
        self._add_leaves(target, np.array([weight], dtype=np.float64))
        self._add_nodes(
            np.array([0]), np.array([0.0]), leaf, np.array([1]), leaf, np.array([1])
        )

    def add_tree(self, tree: Any, target: int, weights: np.ndarray) -> None:
        """scikit-learn's `tree_` with `weights[node]` on its leaves for `target`."""
        left, right = tree.children_left, tree.children_right
        internal = np.flatnonzero(left >= 0)  # leaves have no children (-1)
        if internal.size == 0:
            self.add_constant(target, float(weights[0]))
            return
        leaves = np.flatnonzero(left < 0)
        index = np.full(len(left), -1)
        index[internal] = self._node_count + np.arange(len(internal))
        index[leaves] = self._leaf_count + np.arange(len(leaves))
        self._add_leaves(target, np.asarray(weights, dtype=np.float64)[leaves])
        true, false = left[internal], right[internal]
        # Node 0 is the root, and the first internal node, so it becomes the root.
        self._add_nodes(
            tree.feature[internal],
            tree.threshold[internal],
            index[true],
            (left[true] < 0).astype(np.int64),
            index[false],
            (left[false] < 0).astype(np.int64),
        )

    def _add_leaves(self, target: int, weights: np.ndarray) -> None:
        self._leaf_targets.append(np.full(len(weights), target))
        self._leaf_weights.append(weights)
        self._leaf_count += len(weights)

    def _add_nodes(self, *columns: np.ndarray) -> None:
        self._roots.append(self._node_count)
        for key, column in zip(self._nodes, columns, strict=True):
            self._nodes[key].append(np.asarray(column))
        self._node_count += len(columns[0])

    def attributes(self) -> dict[str, Any]:
        from onnx import numpy_helper

        def ints(key: str) -> list[int]:
            return np.concatenate(self._nodes[key]).astype(np.int64).tolist()

        splits = np.concatenate(self._nodes["split"]).astype(np.float64)
        return {
            "n_targets": self.n_targets,
            "aggregate_function": 1,  # SUM
            "post_transform": 0,  # NONE
            "tree_roots": self._roots,
            "nodes_featureids": ints("feature"),
            "nodes_splits": numpy_helper.from_array(splits),
            "nodes_modes": numpy_helper.from_array(
                np.zeros(len(splits), dtype=np.uint8)  # BRANCH_LEQ: x <= split
            ),
            "nodes_truenodeids": ints("true"),
            "nodes_trueleafs": ints("true_leaf"),
            "nodes_falsenodeids": ints("false"),
            "nodes_falseleafs": ints("false_leaf"),
            "leaf_targetids": np.concatenate(self._leaf_targets).tolist(),
            "leaf_weights": numpy_helper.from_array(
                np.concatenate(self._leaf_weights).astype(np.float64)
            ),
        }


class _Graph:
    """Adds nodes to a skl2onnx container under unique names."""

    def __init__(self, scope: Any, container: Any) -> None:
        self.scope = scope
        self.container = container

    def node(
        self, op_type: str, inputs: list[str], output: str | None = None, **attrs: Any
    ) -> str:
        output = output or self.scope.get_unique_variable_name(op_type.lower())
        domain = attrs.pop("op_domain", "")
        version = attrs.pop("op_version", None)
        self.container.add_node(
            op_type,
            inputs,
            [output],
            name=self.scope.get_unique_operator_name(op_type),
            op_domain=domain,
            op_version=version,
            **attrs,
        )
        return output

    def constant(self, values: Any) -> str:
        from onnx import TensorProto

        array = np.asarray(values)
        name = self.scope.get_unique_variable_name("constant")
        kind = {"U": TensorProto.STRING, "i": TensorProto.INT64}.get(
            array.dtype.kind, TensorProto.DOUBLE
        )
        content = array.ravel().tolist()
        self.container.add_initializer(name, kind, list(array.shape), content)
        return name

    def as_float32(self, name: str) -> str:
        """x rounded to float32 and back: scikit-learn's trees compare
        float32(x) <= threshold, so the twin compares exactly that."""
        from onnx import TensorProto

        rounded = self.node("Cast", [name], to=TensorProto.FLOAT)
        return self.node("Cast", [rounded], to=TensorProto.DOUBLE)

    def ensemble(self, features: str, forest: _Forest) -> str:
        return self.node(
            "TreeEnsemble",
            [features],
            op_domain="ai.onnx.ml",
            op_version=SKL2ONNX_ML_OPSET,  # raised to ML_OPSET by convert()
            **forest.attributes(),
        )

    def labels(self, classes: np.ndarray, index: str, output: str) -> None:
        self.node("Gather", [self.constant(_class_constant(classes)), index], output)


def _class_constant(classes: np.ndarray) -> np.ndarray:
    """Classes as an ONNX tensor can hold them; the runtime maps them back."""
    if classes.dtype.kind in "OUS":
        return classes.astype(str)
    if classes.dtype.kind in "biu" or (
        classes.dtype.kind == "f" and np.all(np.mod(classes, 1) == 0)
    ):
        return classes.astype(np.int64)
    raise NotImplementedError(f"class labels of dtype {classes.dtype} are not integral")


def _single_output(estimator: Any) -> None:
    if getattr(estimator, "n_outputs_", 1) != 1:
        raise NotImplementedError("multi-output trees get no twin")


def _forest_members(estimator: Any) -> list[Any]:
    return [estimator] if hasattr(estimator, "tree_") else list(estimator.estimators_)


def _convert_forest_classifier(scope: Any, operator: Any, container: Any) -> None:
    """RandomForest/ExtraTrees/DecisionTree classifiers, as scikit-learn computes
    them: per-class leaf fractions summed over trees, divided by the tree count,
    and the first most probable class."""
    estimator = operator.raw_operator
    _single_output(estimator)
    classes = np.asarray(estimator.classes_)
    members = _forest_members(estimator)
    forest = _Forest(len(classes))
    for member in members:
        fractions = member.tree_.value[:, 0, : len(classes)]
        for k in range(len(classes)):
            forest.add_tree(member.tree_, k, fractions[:, k])
    graph = _Graph(scope, container)
    probabilities = operator.outputs[1].full_name
    _mean_over_trees(graph, operator, estimator, forest, len(members), probabilities)
    best = graph.node("ArgMax", [probabilities], axis=1, keepdims=0)
    graph.labels(classes, best, operator.outputs[0].full_name)


def _mean_over_trees(
    graph: _Graph, operator: Any, estimator: Any, forest: _Forest, trees: int, out: str
) -> None:
    """`out` = the ensemble's sums over its trees, divided by the tree count as
    scikit-learn does for forests (a single tree: the sums themselves)."""
    sums = graph.ensemble(graph.as_float32(operator.inputs[0].full_name), forest)
    if hasattr(estimator, "estimators_"):
        graph.node("Div", [sums, graph.constant(float(trees))], out)
    else:
        graph.node("Identity", [sums], out)


def _convert_forest_regressor(scope: Any, operator: Any, container: Any) -> None:
    """RandomForest/ExtraTrees/DecisionTree regressors: leaf values summed over
    trees, divided by the tree count."""
    estimator = operator.raw_operator
    _single_output(estimator)
    members = _forest_members(estimator)
    forest = _Forest(1)
    for member in members:
        forest.add_tree(member.tree_, 0, member.tree_.value[:, 0, 0])
    graph = _Graph(scope, container)
    values = operator.outputs[0].full_name
    _mean_over_trees(graph, operator, estimator, forest, len(members), values)


def _boosted_scores(scope: Any, operator: Any, container: Any) -> tuple[_Graph, str]:
    """The raw predictions of a GradientBoosting model: its constant start, then
    learning_rate * leaf value of each stage's tree, summed in stage order."""
    from sklearn.dummy import DummyClassifier, DummyRegressor

    estimator = operator.raw_operator
    # Only a start that ignores X can be the constant the twin begins from.
    constant = (DummyClassifier, DummyRegressor)
    if not (estimator.init in (None, "zero") or isinstance(estimator.init, constant)):
        raise NotImplementedError(
            f"init={type(estimator.init).__name__} depends on X; only a constant "
            "start gets a twin"
        )
    stages = np.asarray(estimator.estimators_, dtype=object)
    start = estimator._raw_predict_init(np.zeros((1, estimator.n_features_in_)))[0]
    forest = _Forest(stages.shape[1])
    for k in range(stages.shape[1]):
        forest.add_constant(k, float(start[k]))
    for stage in stages:
        for k, member in enumerate(stage):
            value = estimator.learning_rate * member.tree_.value[:, 0, 0]
            forest.add_tree(member.tree_, k, value)
    graph = _Graph(scope, container)
    return graph, graph.ensemble(graph.as_float32(operator.inputs[0].full_name), forest)


def _convert_boosting_regressor(scope: Any, operator: Any, container: Any) -> None:
    graph, scores = _boosted_scores(scope, operator, container)
    graph.node("Identity", [scores], operator.outputs[0].full_name)


def _convert_boosting_classifier(scope: Any, operator: Any, container: Any) -> None:
    """Binary: link inverse of the score, the class 1 when the score is >= 0;
    several classes: softmax, and the first highest score."""
    from onnx import TensorProto

    estimator = operator.raw_operator
    classes = np.asarray(estimator.classes_)
    graph, scores = _boosted_scores(scope, operator, container)
    probabilities = operator.outputs[1].full_name
    if len(classes) > 2:
        graph.node("Softmax", [scores], probabilities, axis=1)
        best = graph.node("ArgMax", [scores], axis=1, keepdims=0)
    else:
        link = type(estimator._loss.link).__name__
        if link == "HalfLogitLink":  # the exponential loss: expit(2 * raw)
            scores = graph.node("Mul", [scores, graph.constant(2.0)])
        elif link != "LogitLink":
            raise NotImplementedError(f"loss link {link} is not supported")
        positive = graph.node("Sigmoid", [scores])
        negative = graph.node("Sub", [graph.constant(1.0), positive])
        graph.node("Concat", [negative, positive], probabilities, axis=1)
        flat = graph.node("Reshape", [scores, graph.constant(np.array([-1]))])
        decided = graph.node("GreaterOrEqual", [flat, graph.constant(0.0)])
        best = graph.node("Cast", [decided], to=TensorProto.INT64)
    graph.labels(classes, best, operator.outputs[0].full_name)


def _tree_converters() -> dict[type, Callable[..., None]]:
    """Converters for scikit-learn's trees that keep float64 end to end.

    skl2onnx writes trees as TreeEnsembleRegressor/Classifier, whose outputs are
    float32 in every ai.onnx.ml opset: regression values then miss 1e-6, and
    rounded probabilities tie where scikit-learn's do not. TreeEnsemble (opset
    5) computes in float64, so these build it from the fitted trees.
    """
    from sklearn import ensemble, tree

    return {
        ensemble.RandomForestClassifier: _convert_forest_classifier,
        ensemble.ExtraTreesClassifier: _convert_forest_classifier,
        tree.DecisionTreeClassifier: _convert_forest_classifier,
        tree.ExtraTreeClassifier: _convert_forest_classifier,
        ensemble.RandomForestRegressor: _convert_forest_regressor,
        ensemble.ExtraTreesRegressor: _convert_forest_regressor,
        tree.DecisionTreeRegressor: _convert_forest_regressor,
        tree.ExtraTreeRegressor: _convert_forest_regressor,
        ensemble.GradientBoostingClassifier: _convert_boosting_classifier,
        ensemble.GradientBoostingRegressor: _convert_boosting_regressor,
    }


def _outputs_as_double(onnx_model: Any) -> None:
    """Declare every float output float64 (skl2onnx declares some classifiers'
    probabilities float32 even when they are computed in float64)."""
    from onnx import TensorProto, helper

    graph = onnx_model.graph
    for output in graph.output:
        tensor = output.type.tensor_type
        if tensor.elem_type != TensorProto.FLOAT:
            continue
        inner = f"{output.name}_undeclared"
        for node in graph.node:
            node.output[:] = [inner if o == output.name else o for o in node.output]
            node.input[:] = [inner if i == output.name else i for i in node.input]
        graph.node.append(
            helper.make_node(
                "Cast",
                [inner],
                [output.name],
                name=f"Cast_{output.name}_double",
                to=TensorProto.DOUBLE,
            )
        )
        tensor.elem_type = TensorProto.DOUBLE
