"""skserve.runtimes.onnx: the twin answers in scikit-learn's JSON, without sklearn."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sklearn.datasets import load_iris, make_classification, make_regression
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC
from sklearn.tree import DecisionTreeRegressor

from skserve.errors import BadRequest, IncompatibleModel
from skserve.manifest import Manifest, sha256_hex
from skserve.rows import Table
from skserve.runtimes.base import LoadOptions
from skserve.runtimes.onnx import OnnxRuntime
from train.twin import Twin, build_twin

ROOT = Path(__file__).resolve().parents[3]


def _manifest(model: Any, data: bytes, facts: dict[str, Any] | None) -> Manifest:
    classes = getattr(model, "classes_", None)
    body: dict[str, Any] = {
        "name": "twin-test",
        "version": "v1",
        "task": "classification" if classes is not None else "regression",
        "n_features": int(model.n_features_in_),
        "files": {"model.onnx": {"sha256": sha256_hex(data), "bytes": len(data)}},
        "classes": None if classes is None else np.asarray(classes).tolist(),
    }
    if facts is not None:
        body["twin"] = facts
    return Manifest(json.loads(json.dumps(body)))  # as read back from the store


def _serve(model: Any, X: np.ndarray) -> tuple[OnnxRuntime, Twin]:
    built = build_twin(model, X)
    assert isinstance(built, Twin), built
    runtime = OnnxRuntime.load(
        _manifest(model, built.data, built.facts),
        {"model.onnx": built.data},
        LoadOptions(),
    )
    return runtime, built


def _rows(X: np.ndarray, count: int = 500) -> np.ndarray:
    rng = np.random.default_rng(77)
    return rng.normal(X.mean(axis=0), 2 * X.std(axis=0), (count, X.shape[1]))


@pytest.fixture(scope="module")
def forest() -> tuple[Any, np.ndarray, OnnxRuntime, Twin]:
    X, y = make_classification(n_samples=300, n_features=6, random_state=0)
    model = RandomForestClassifier(n_estimators=20, random_state=0).fit(X, y)
    runtime, built = _serve(model, X)
    return model, X, runtime, built


@pytest.fixture(scope="module")
def regressor() -> tuple[Any, np.ndarray, OnnxRuntime, Twin]:
    X, y = make_regression(n_samples=200, n_features=5, random_state=1)
    model = DecisionTreeRegressor(max_depth=6, random_state=0).fit(X, y + 500)
    runtime, built = _serve(model, X)
    return model, X, runtime, built


def test_int_labels_give_the_same_json_as_sklearn(forest: Any) -> None:
    model, X, runtime, _ = forest
    rows = _rows(X)
    prediction = runtime.predict(Table.of_matrix(rows), probabilities=True)
    assert prediction.labels.dtype == np.int64
    assert json.dumps(prediction.labels.tolist()) == json.dumps(
        model.predict(rows).tolist()
    )
    assert prediction.probabilities is not None
    assert prediction.probabilities.dtype == np.float64
    assert np.abs(prediction.probabilities - model.predict_proba(rows)).max() <= 1e-6
    assert prediction.classes == [0, 1]


def test_labels_only_unless_probabilities_are_asked(forest: Any) -> None:
    _, X, runtime, _ = forest
    prediction = runtime.predict(Table.of_matrix(X[:3]), probabilities=False)
    assert prediction.probabilities is None and prediction.classes is None


def test_string_labels_give_the_same_json_as_sklearn() -> None:
    iris = load_iris()
    y = iris.target_names[iris.target]
    model = make_pipeline(StandardScaler(), LogisticRegression()).fit(iris.data, y)
    runtime, _ = _serve(model, iris.data)
    rows = _rows(iris.data)
    prediction = runtime.predict(Table.of_matrix(rows), probabilities=True)
    assert json.dumps(prediction.labels.tolist()) == json.dumps(
        model.predict(rows).tolist()
    )
    assert all(isinstance(label, str) for label in prediction.labels.tolist())
    assert prediction.classes == ["setosa", "versicolor", "virginica"]


def test_float_labels_give_the_same_json_as_sklearn() -> None:
    X, y = make_classification(n_samples=200, n_features=4, random_state=2)
    model = RandomForestClassifier(n_estimators=10, random_state=0)
    model.fit(X, y.astype(np.float64) + 1.0)  # classes 1.0 and 2.0
    runtime, _ = _serve(model, X)
    rows = _rows(X)
    labels = runtime.predict(Table.of_matrix(rows), probabilities=False).labels
    assert labels.dtype == np.float64
    text = json.dumps(labels.tolist())
    assert text == json.dumps(model.predict(rows).tolist())
    assert "1.0" in text or "2.0" in text


def test_regression_values_are_float64_within_tolerance(regressor: Any) -> None:
    model, X, runtime, _ = regressor
    rows = _rows(X)
    values = runtime.predict(Table.of_matrix(rows), probabilities=False).labels
    assert values.dtype == np.float64 and values.shape == (len(rows),)
    assert np.abs(values - model.predict(rows)).max() <= 1e-6


def test_probabilities_of_a_regressor_are_refused(regressor: Any) -> None:
    _, X, runtime, _ = regressor
    with pytest.raises(BadRequest) as caught:
        runtime.predict(Table.of_matrix(X[:1]), probabilities=True)
    assert caught.value.code == "probabilities_unsupported"
    assert caught.value.message == (
        "this model does not give probabilities (task: regression); "
        'remove "probabilities"'
    )


def test_probabilities_of_a_classifier_without_predict_proba_are_refused() -> None:
    X, y = make_classification(n_samples=100, n_features=4, random_state=4)
    model = SVC().fit(X, y)
    runtime, _ = _serve(model, X)
    assert runtime.predict(
        Table.of_matrix(X[:5]), probabilities=False
    ).labels.tolist() == (model.predict(X[:5]).tolist())
    with pytest.raises(BadRequest) as caught:
        runtime.predict(Table.of_matrix(X[:1]), probabilities=True)
    assert caught.value.code == "probabilities_unsupported"
    assert "(task: classification)" in caught.value.message


def test_values_beyond_float32_are_refused_as_sklearn_refuses_them(
    forest: Any,
) -> None:
    model, X, runtime, _ = forest
    row = X[:1].copy()
    row[0, 2] = 1e39
    with pytest.raises(ValueError) as sklearn_error, np.errstate(over="ignore"):
        model.predict(row)
    with pytest.raises(BadRequest) as caught:
        runtime.predict(Table.of_matrix(row), probabilities=False)
    assert caught.value.code == "invalid_value"
    assert caught.value.message.endswith(str(sklearn_error.value).splitlines()[0])


def test_non_finite_output_is_invalid_value() -> None:
    X, y = make_regression(n_samples=100, n_features=3, random_state=3)
    model = make_pipeline(StandardScaler(), Ridge()).fit(X, y)
    runtime, built = _serve(model, X)
    assert built.facts["input"]["max_abs"] is None  # so the output check decides
    with pytest.raises(BadRequest) as caught:
        runtime.predict(Table.of_matrix(np.full((1, 3), 1e308)), probabilities=False)
    assert caught.value.code == "invalid_value"


def test_corrupt_onnx_file_is_an_incompatible_model(forest: Any) -> None:
    model, _, _, built = forest
    corrupt = built.data[: len(built.data) // 2]
    manifest = _manifest(model, corrupt, built.facts)
    with pytest.raises(IncompatibleModel) as caught:
        OnnxRuntime.load(manifest, {"model.onnx": corrupt}, LoadOptions())
    assert "model v1" in caught.value.message


def test_manifest_without_twin_facts_is_an_incompatible_model(forest: Any) -> None:
    model, _, _, built = forest
    manifest = _manifest(model, built.data, None)
    with pytest.raises(IncompatibleModel) as caught:
        OnnxRuntime.load(manifest, {"model.onnx": built.data}, LoadOptions())
    assert "model v1 has no ONNX twin" in caught.value.message


def test_twin_of_another_model_is_refused_at_load(forest: Any) -> None:
    model, _, _, built = forest
    manifest = _manifest(model, built.data, built.facts)
    manifest.data["n_features"] = 7
    with pytest.raises(IncompatibleModel) as caught:
        OnnxRuntime.load(manifest, {"model.onnx": built.data}, LoadOptions())
    assert "does not take 7 features" in caught.value.message


def test_concurrent_predictions_match_a_single_thread(forest: Any) -> None:
    _, X, runtime, _ = forest
    rows = _rows(X, 64)
    expected = runtime.predict(Table.of_matrix(rows), probabilities=True)
    failures: list[str] = []

    def work() -> None:
        for start in range(0, 64, 4):
            got = runtime.predict(
                Table.of_matrix(rows[start : start + 4]), probabilities=True
            )
            assert got.probabilities is not None and expected.probabilities is not None
            if got.labels.tolist() != expected.labels[start : start + 4].tolist():
                failures.append(f"labels differ at {start}")
            if not np.array_equal(
                got.probabilities, expected.probabilities[start : start + 4]
            ):
                failures.append(f"probabilities differ at {start}")

    threads = [threading.Thread(target=work) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []


def test_runtime_never_imports_sklearn_scipy_or_joblib(
    forest: Any, tmp_path: Path
) -> None:
    model, X, _, built = forest
    (tmp_path / "model.onnx").write_bytes(built.data)
    (tmp_path / "manifest.json").write_bytes(
        _manifest(model, built.data, built.facts).to_bytes()
    )
    np.save(tmp_path / "rows.npy", X[:5])
    script = f"""
import json, sys
from pathlib import Path
import numpy as np
sys.path.insert(0, {str(ROOT / "function")!r})
from skserve.manifest import Manifest
from skserve.runtimes.base import LoadOptions
from skserve.runtimes.onnx import OnnxRuntime
from skserve.rows import Table
folder = Path({str(tmp_path)!r})
manifest = Manifest.from_bytes((folder / "manifest.json").read_bytes())
files = {{"model.onnx": (folder / "model.onnx").read_bytes()}}
runtime = OnnxRuntime.load(manifest, files, LoadOptions())
rows = Table.of_matrix(np.load(folder / "rows.npy"))
prediction = runtime.predict(rows, probabilities=True)
heavy = sorted(
    name for name in sys.modules
    if name.split(".")[0] in ("sklearn", "scipy", "joblib", "pandas")
)
print(json.dumps({{"labels": prediction.labels.tolist(), "heavy": heavy}}))
"""
    result = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    answer = json.loads(result.stdout.strip().splitlines()[-1])
    assert answer["heavy"] == []
    assert answer["labels"] == model.predict(X[:5]).tolist()


# --- typed rows: strings reach the twin as category codes


@pytest.fixture(scope="module")
def typed() -> tuple[Any, Any, OnnxRuntime]:
    """The canonical mixed pipeline and its twin, served by this runtime."""
    import pandas as pd
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    from train.schema import accepted_rows, example_row, infer_schema, to_table

    rng = np.random.default_rng(3)
    frame = pd.DataFrame(
        {
            "income": rng.normal(50, 10, 200),
            "plan": rng.choice(["basic", "premium", "standard"], 200),
        }
    )
    frame.loc[::6, "income"] = np.nan
    y = np.where((frame.income.fillna(50) > 50) ^ (frame.plan == "basic"), "a", "b")
    model = make_pipeline(
        ColumnTransformer(
            [
                ("num", make_pipeline(SimpleImputer(), StandardScaler()), ["income"]),
                ("cat", OneHotEncoder(handle_unknown="ignore"), ["plan"]),
            ]
        ),
        LogisticRegression(),
    ).fit(frame, y)
    schema = infer_schema(model, frame)
    built = build_twin(
        model, to_table(accepted_rows(frame, schema), schema), schema=schema
    )
    assert isinstance(built, Twin), built
    manifest = _manifest(model, built.data, built.facts)
    manifest = Manifest(
        {
            **manifest.data,
            "feature_names": ["income", "plan"],
            "input_schema": schema.to_json(),
            "example": example_row(schema, frame),
        }
    )
    runtime = OnnxRuntime.load(manifest, {"model.onnx": built.data}, LoadOptions())
    return model, schema, runtime


def test_strings_and_missing_values_are_served_without_pandas_or_sklearn(
    typed: tuple[Any, Any, OnnxRuntime],
) -> None:
    import pandas as pd

    from skserve.rows import to_table

    model, schema, runtime = typed
    rows = [[None, "basic"], [61.0, "gold"], [38.5, "standard"]]

    prediction = runtime.predict(
        to_table(rows, single=False, schema=schema), probabilities=True
    )

    frame = pd.DataFrame(
        {"income": [np.nan, 61.0, 38.5], "plan": ["basic", "gold", "standard"]}
    )
    assert prediction.labels.tolist() == model.predict(frame).tolist()
    assert prediction.probabilities is not None
    assert np.abs(prediction.probabilities - model.predict_proba(frame)).max() <= 1e-6


def test_codes_are_category_indices_unseen_minus_one_missing_nan() -> None:
    from skserve.rows import Table
    from skserve.runtimes.onnx import code_lookups, encode
    from skserve.schema import Column, InputSchema

    schema = InputSchema(
        (Column("x", nullable=True), Column("c", "string", True, ("a", "b"))),
    )
    objects = np.array([["b"], ["zz"], [None]], dtype=object)
    table = Table(np.array([[1.5], [np.nan], [2.0]]), objects)

    matrix = encode(table, schema, code_lookups(schema))

    assert matrix[:, 1].tolist()[:2] == [1.0, -1.0] and np.isnan(matrix[2, 1])
    assert matrix[0, 0] == 1.5 and np.isnan(matrix[1, 0])


def test_a_twin_without_codes_cannot_serve_string_columns(
    typed: tuple[Any, Any, OnnxRuntime],
) -> None:
    _, _, runtime = typed
    facts = json.loads(json.dumps(runtime.manifest.data["twin"]))
    del facts["input"]["encoding"]
    manifest = Manifest({**runtime.manifest.data, "twin": facts})

    with pytest.raises(IncompatibleModel, match="cannot take its string columns"):
        OnnxRuntime.load(manifest, {"model.onnx": b"unused"}, LoadOptions())


def test_a_clusterers_labels_are_integers_as_scikit_learns() -> None:
    from sklearn.cluster import KMeans

    X, _ = make_classification(n_samples=200, n_features=4, random_state=2)
    model = KMeans(3, n_init=2, random_state=0).fit(X)
    built = build_twin(model, X)
    assert isinstance(built, Twin), built
    manifest = Manifest(
        {**_manifest(model, built.data, built.facts).data, "task": "clustering"}
    )
    runtime = OnnxRuntime.load(manifest, {"model.onnx": built.data}, LoadOptions())

    labels = runtime.predict(Table.of_matrix(X[:20])).labels

    assert labels.dtype == np.int64
    assert json.dumps(labels.tolist()) == json.dumps(model.predict(X[:20]).tolist())


# --- loading: the heap a tree ensemble's session build freed goes back


def test_loading_a_twin_hands_the_freed_heap_back(
    forest: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from skserve.runtimes import onnx as runtime_module

    model, _, _, built = forest
    calls: list[str] = []
    monkeypatch.setattr(
        runtime_module, "release_freed_memory", lambda: calls.append("trim") or True
    )

    OnnxRuntime.load(
        _manifest(model, built.data, built.facts),
        {"model.onnx": built.data},
        LoadOptions(),
    )

    assert calls == ["trim"]


def test_a_session_that_fails_to_build_still_hands_the_heap_back(
    forest: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from skserve.runtimes import onnx as runtime_module

    model, _, _, built = forest
    calls: list[str] = []
    monkeypatch.setattr(
        runtime_module, "release_freed_memory", lambda: calls.append("trim") or True
    )
    import onnx

    twin = onnx.load_from_string(built.data)
    for opset in twin.opset_import:  # a version onnxruntime does not know
        opset.version = 99 if opset.domain == "ai.onnx.ml" else opset.version
    broken = twin.SerializeToString()

    with pytest.raises(IncompatibleModel, match="cannot load the ONNX twin"):
        OnnxRuntime.load(
            _manifest(model, broken, built.facts), {"model.onnx": broken}, LoadOptions()
        )

    assert calls == ["trim"]


def test_without_malloc_trim_releasing_is_a_no_op(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from skserve.runtimes import onnx as runtime_module

    class NoTrim:  # a C library without malloc_trim (musl, macOS)
        pass

    monkeypatch.setattr(runtime_module.ctypes, "CDLL", lambda name: NoTrim())
    assert runtime_module.release_freed_memory() is False

    def unloadable(name: Any) -> Any:
        raise OSError("no C library")

    monkeypatch.setattr(runtime_module.ctypes, "CDLL", unloadable)
    assert runtime_module.release_freed_memory() is False


def test_a_large_forest_sessions_freed_heap_leaves_the_process(tmp_path: Path) -> None:
    """glibc keeps what building a tree ensemble's session freed; after
    release_freed_memory the process holds megabytes less (RSS, fresh process)."""
    from train.twin.convert import convert

    X, y = make_classification(
        n_samples=1000, n_features=10, n_informative=5, random_state=42
    )
    model = RandomForestClassifier(n_estimators=300, random_state=42).fit(X, y)
    (tmp_path / "model.onnx").write_bytes(convert(model, 10).SerializeToString())
    script = f"""
import json, sys
from pathlib import Path
sys.path.insert(0, {str(ROOT / "function")!r})
import onnxruntime
from skserve.runtimes.onnx import release_freed_memory, session_options

def rss():
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024

data = Path({str(tmp_path / "model.onnx")!r}).read_bytes()
session = onnxruntime.InferenceSession(
    data, sess_options=session_options(), providers=["CPUExecutionProvider"]
)
built = rss()
released = release_freed_memory()
print(json.dumps({{"released": released, "freed_mib": built - rss()}}))
"""
    result = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    answer = json.loads(result.stdout.strip().splitlines()[-1])
    assert answer["released"] is True  # glibc, as on Cloud Functions and Lambda
    assert answer["freed_mib"] > 4, answer
