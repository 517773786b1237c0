"""train/twin.py: a twin exists only if it matches scikit-learn on every gate row."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import onnx
import onnxruntime
import pytest
from onnx import numpy_helper
from sklearn.datasets import load_iris, make_classification, make_regression
from sklearn.ensemble import GradientBoostingRegressor, RandomForestRegressor
from sklearn.linear_model import LinearRegression, LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.tree import DecisionTreeClassifier

from skserve.errors import ConfigError
from train import twin
from train.estimators import MODEL_KINDS, make_model
from train.seed import SEED_DATA, fit_seed


def _run(data: bytes, rows: np.ndarray) -> list[np.ndarray]:
    session = onnxruntime.InferenceSession(data, providers=["CPUExecutionProvider"])
    return session.run(None, {"X": rows})


def _fresh_rows(reference: np.ndarray, count: int = 2_000) -> np.ndarray:
    """Rows the gate never saw: another seed, a wider spread."""
    rng = np.random.default_rng(2026)
    centre, spread = reference.mean(axis=0), reference.std(axis=0)
    return rng.normal(centre, 2 * spread, (count, reference.shape[1]))


def _assert_one_line(reason: str) -> None:
    assert reason and "\n" not in reason and len(reason) < 300


@pytest.fixture(scope="module")
def seed() -> tuple[Any, np.ndarray, twin.Twin]:
    X, _ = make_classification(**SEED_DATA)
    model, _ = fit_seed()
    built = twin.build_twin(model, X)
    assert isinstance(built, twin.Twin), built
    return model, X, built


def test_seed_forest_twin_gives_sklearn_labels_on_fresh_rows(seed: Any) -> None:
    model, X, built = seed
    rows = _fresh_rows(X)
    labels, probabilities = _run(built.data, rows)
    assert labels.tolist() == model.predict(rows).tolist()
    assert np.abs(probabilities - model.predict_proba(rows)).max() <= 1e-6


def test_seed_forest_facts_record_the_parity_evidence(seed: Any) -> None:
    _, X, built = seed
    facts = json.loads(json.dumps(built.facts))  # JSON-serialisable, as published
    assert facts["file"] == "model.onnx"
    assert facts["input"] == {
        "name": "X",
        "dtype": "float64",
        "n_features": 10,
        "max_abs": float(np.finfo(np.float32).max),
    }
    assert facts["outputs"] == [
        {"name": "label", "role": "labels"},
        {"name": "probabilities", "role": "probabilities"},
    ]
    assert facts["opset"]["ai.onnx.ml"] == 5
    assert facts["converter"].startswith("skl2onnx 1.")
    assert facts["onnxruntime"] == onnxruntime.__version__
    assert facts["onnx"] == onnx.__version__
    parity = facts["parity"]
    assert parity["label_agreement"] == 1.0
    assert parity["tolerance"] == 1e-6
    assert parity["max_abs_difference"] <= 1e-6
    assert parity["compared"] == ["labels", "probabilities"]
    counts = parity["rows"]
    assert counts["reference"] == len(X)
    assert counts["uniform"] + counts["gaussian"] + counts["thresholds"] >= 10_000
    assert counts["thresholds"] > 0
    assert parity["rows_checked"] == sum(counts.values())


def test_seed_forest_twin_takes_float64(seed: Any) -> None:
    """The input the function feeds: float64, named X. (How long the build
    takes is a machine's figure, not asserted.)"""
    _, _, built = seed
    graph = onnx.load_from_string(built.data).graph
    (declared,) = graph.input
    assert declared.name == "X"
    assert declared.type.tensor_type.elem_type == onnx.TensorProto.DOUBLE


def test_scaler_logistic_regression_pipeline_gets_a_twin() -> None:
    X, y = make_classification(n_samples=300, n_features=6, random_state=1)
    model = make_pipeline(StandardScaler(), LogisticRegression()).fit(X, y)
    built = twin.build_twin(model, X)
    assert isinstance(built, twin.Twin), built
    rows = _fresh_rows(X)
    labels, probabilities = _run(built.data, rows)
    assert labels.tolist() == model.predict(rows).tolist()
    assert np.abs(probabilities - model.predict_proba(rows)).max() <= 1e-6


# Every (--model kind, task) pair, each decided here: offered with a twin that
# must pass, or not offered at all. Nothing is discovered or skipped, so a kind
# added to the trainer fails test_every_trainer_model_kind_is_covered until it
# is listed in one of the two.
TWIN_CASES = [
    ("random-forest", "classification"),
    ("random-forest", "regression"),
    ("gradient-boosting", "classification"),
    ("gradient-boosting", "regression"),
    ("hist-gradient-boosting", "classification"),
    ("hist-gradient-boosting", "regression"),
    ("logistic-regression", "classification"),
    ("linear-regression", "regression"),
]
NOT_OFFERED = [
    ("logistic-regression", "regression"),
    ("linear-regression", "classification"),
]


def _fitted(kind: str, task: str) -> tuple[Any, np.ndarray]:
    if task == "classification":
        X, y = make_classification(
            n_samples=300, n_features=6, n_informative=4, n_classes=3, random_state=3
        )
    else:
        # Targets in the hundreds: float32 outputs would miss 1e-6 by far.
        X, y = make_regression(n_samples=300, n_features=6, noise=5.0, random_state=3)
        y = y + 300.0
    return make_model(kind, task, 42).fit(X, y), X


@pytest.mark.parametrize(("kind", "task"), TWIN_CASES)
def test_every_trainer_model_kind_gets_a_twin_that_passes(kind: str, task: str) -> None:
    model, X = _fitted(kind, task)
    built = twin.build_twin(model, X)
    assert isinstance(built, twin.Twin), f"{kind}/{task}: {built}"
    parity = built.facts["parity"]
    assert parity["max_abs_difference"] <= 1e-6
    rows = _fresh_rows(X)
    outputs = _run(built.data, rows)
    if task == "classification":
        assert parity["label_agreement"] == 1.0
        assert outputs[0].tolist() == model.predict(rows).tolist()
    else:
        assert parity["compared"] == ["values"]
        values = outputs[0].reshape(-1)
        assert np.abs(values - model.predict(rows)).max() <= 1e-6


def test_every_trainer_model_kind_is_covered() -> None:
    pairs = [(k, t) for k in MODEL_KINDS for t in ("classification", "regression")]

    assert sorted(TWIN_CASES + NOT_OFFERED) == sorted(pairs)
    assert len(set(TWIN_CASES + NOT_OFFERED)) == len(pairs)  # each decided once
    for kind, task in TWIN_CASES:
        assert make_model(kind, task, 42) is not None
    for kind, task in NOT_OFFERED:
        with pytest.raises(ConfigError, match=f"--model {kind} does not fit a {task}"):
            make_model(kind, task, 42)


def test_string_class_labels_come_back_as_strings() -> None:
    iris = load_iris()
    y = iris.target_names[iris.target]
    model = DecisionTreeClassifier(random_state=0).fit(iris.data, y)
    built = twin.build_twin(model, iris.data)
    assert isinstance(built, twin.Twin), built
    labels, _ = _run(built.data, iris.data)
    assert all(isinstance(label, str) for label in labels)
    assert labels.tolist() == model.predict(iris.data).tolist()


def test_build_twin_refuses_a_float32_twin(
    seed: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """float32 input is refused whatever the gate would say: the function feeds
    float64, and float32 rounds the features of non-tree models."""
    from skl2onnx import to_onnx
    from skl2onnx.common.data_types import FloatTensorType

    model, X, _ = seed

    def float32_input(model: Any, n_features: int, *schema: Any) -> Any:
        return to_onnx(
            model,
            initial_types=[("X", FloatTensorType([None, n_features]))],
            options={id(model): {"zipmap": False}},
        )

    monkeypatch.setattr(twin, "convert", float32_input)
    verdict = twin.build_twin(model, X)
    assert isinstance(verdict, twin.NoTwin)
    _assert_one_line(verdict.reason)
    assert "tensor(float), not X double" in verdict.reason


def test_gate_refuses_skl2onnx_default_double_trees(seed: Any) -> None:
    """skl2onnx's own converter rounds split values to float32: the threshold
    rows catch the rows that fall on the other side."""
    from skl2onnx import to_onnx
    from skl2onnx.common.data_types import DoubleTensorType

    model, X, _ = seed
    default = to_onnx(
        model,
        initial_types=[("X", DoubleTensorType([None, 10]))],
        options={id(model): {"zipmap": False}},
    ).SerializeToString()
    verdict = twin.check_parity(model, default, twin.gate_rows(model, X))
    assert isinstance(verdict, twin.NoTwin)
    assert "differ from scikit-learn's" in verdict.reason


def test_build_twin_refuses_a_converted_twin_that_disagrees(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    X, y = make_classification(n_samples=300, n_features=5, random_state=4)
    model = DecisionTreeClassifier(max_depth=4, random_state=0).fit(X, y)
    real_convert = twin.convert

    def shifted_splits(model: Any, n_features: int, *schema: Any) -> Any:
        converted = real_convert(model, n_features, *schema)
        (trees,) = [n for n in converted.graph.node if n.op_type == "TreeEnsemble"]
        (splits,) = [a for a in trees.attribute if a.name == "nodes_splits"]
        moved = numpy_helper.to_array(splits.t) + 0.05  # a converter off by 0.05
        splits.t.CopyFrom(numpy_helper.from_array(moved))
        return converted

    monkeypatch.setattr(twin, "convert", shifted_splits)
    verdict = twin.build_twin(model, X)
    assert isinstance(verdict, twin.NoTwin)
    _assert_one_line(verdict.reason)
    assert "labels differ from scikit-learn's on" in verdict.reason


def test_multi_output_forest_gets_a_one_line_reason() -> None:
    X, y = make_regression(n_samples=100, n_features=4, random_state=5)
    model = RandomForestRegressor(n_estimators=3, random_state=0)
    model.fit(X, np.c_[y, -y])
    verdict = twin.build_twin(model, X)
    assert isinstance(verdict, twin.NoTwin)
    _assert_one_line(verdict.reason)
    assert "multi-output" in verdict.reason


def test_boosting_started_from_an_x_dependent_model_gets_a_reason() -> None:
    X, y = make_regression(n_samples=100, n_features=4, random_state=6)
    model = GradientBoostingRegressor(init=LinearRegression(), n_estimators=5)
    model.fit(X, y)
    verdict = twin.build_twin(model, X)
    assert isinstance(verdict, twin.NoTwin)
    _assert_one_line(verdict.reason)
    assert "init=LinearRegression" in verdict.reason


def test_estimator_unknown_to_skl2onnx_gets_a_reason_naming_it() -> None:
    from sklearn.base import BaseEstimator, ClassifierMixin

    class Majority(ClassifierMixin, BaseEstimator):
        def fit(self, X: np.ndarray, y: np.ndarray) -> Majority:
            self.classes_, counts = np.unique(y, return_counts=True)
            self.n_features_in_ = X.shape[1]
            self.majority_ = self.classes_[counts.argmax()]
            return self

        def predict(self, X: np.ndarray) -> np.ndarray:
            return np.full(len(X), self.majority_)

    X, y = make_classification(
        n_samples=50, n_features=3, n_informative=2, n_redundant=0, random_state=7
    )
    verdict = twin.build_twin(Majority().fit(X, y), X)
    assert isinstance(verdict, twin.NoTwin)
    _assert_one_line(verdict.reason)
    assert verdict.reason.startswith("cannot convert Majority to ONNX")


def test_reference_rows_of_the_wrong_width_give_a_reason() -> None:
    X, y = make_classification(n_samples=100, n_features=5, random_state=8)
    model = LogisticRegression().fit(X, y)
    verdict = twin.build_twin(model, X[:, :3])
    assert isinstance(verdict, twin.NoTwin)
    assert "(rows, 5)" in verdict.reason


def test_gate_rows_span_beyond_the_observed_range() -> None:
    X, y = make_classification(n_samples=200, n_features=4, random_state=9)
    model = LogisticRegression().fit(X, y)
    rows = twin.gate_rows(model, X)
    assert rows.counts["uniform"] + rows.counts["gaussian"] >= 10_000
    assert rows.counts["thresholds"] == 0  # no trees
    spread = rows.matrix.max(axis=0) - rows.matrix.min(axis=0)
    assert np.all(spread > 1.4 * (X.max(axis=0) - X.min(axis=0)))


def test_threshold_rows_sit_at_and_beside_every_split() -> None:
    X, y = make_classification(n_samples=200, n_features=4, random_state=10)
    model = DecisionTreeClassifier(max_depth=5, random_state=0).fit(X, y)
    rows = twin.gate_rows(model, X)
    block = rows.matrix[-rows.counts["thresholds"] :]
    tree = model.tree_
    for node in np.flatnonzero(tree.feature >= 0):
        column = block[:, tree.feature[node]]
        threshold = tree.threshold[node]
        below = np.float32(threshold)
        if below > threshold:
            below = np.nextafter(below, np.float32(-np.inf))
        above = np.nextafter(below, np.float32(np.inf))
        for value in (threshold, np.nextafter(threshold, np.inf), below, above):
            assert np.any(column == np.float64(value)), (node, value)


def test_threshold_rows_reach_trees_behind_a_scaler() -> None:
    X, y = make_classification(n_samples=200, n_features=4, random_state=11)
    model = make_pipeline(StandardScaler(), DecisionTreeClassifier(max_depth=3))
    model.fit(X, y)
    rows = twin.gate_rows(model, X)
    assert rows.counts["thresholds"] > 0
    scaled = model[0].transform(rows.matrix[-rows.counts["thresholds"] :])
    tree = model[-1].tree_
    node = int(np.flatnonzero(tree.feature >= 0)[0])
    closest = np.abs(scaled[:, tree.feature[node]] - tree.threshold[node]).min()
    assert closest < 1e-9
