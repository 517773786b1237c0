"""train.cli: fit, publish, list and promote as DESIGN.md's Training CLI says.

Most tests call `train.cli.main([...])` in-process (fast, output via capsys); the
few marked `slow` run the real `python -m train` process, where "one line, no
traceback" must be proven.
"""

from __future__ import annotations

import csv
import hashlib
import io
import itertools
import json
import os
import pickle
import platform
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import joblib
import numpy as np
import pytest

import train.publish
from tests.support import free_port, latest_version, publish_signed, run_train
from train.cli import main

SIGNING_KEY = "k" * 32
DESIGN_FIELDS = {
    "name",
    "version",
    "created_at",
    "task",
    "estimator",
    "n_features",
    "feature_names",
    "classes",
    "target",
    "metrics",
    "training",
    "files",
    "environment",
    "input_schema",
}


# --------------------------------------------------------------------------- helpers


@dataclass(frozen=True)
class Result:
    """What one CLI run printed and returned."""

    code: int
    out: str
    err: str


@dataclass(frozen=True)
class Existing:
    """A store that already serves a promoted model (the seed's), and its state."""

    store: Path
    name: str
    root: Path
    latest: bytes
    versions: frozenset[str]


def _cli(capsys: pytest.CaptureFixture[str], *args: str) -> Result:
    """Run `python -m train ARGS` in this process."""
    code = main(list(args))
    out, err = capsys.readouterr()
    return Result(code, out, err)


def _error_line(code: int, err: str) -> str:
    """Assert the DESIGN.md failure shape: non-zero, one `error:` line, no trace."""
    lines = [line for line in err.splitlines() if line.strip()]
    assert code != 0, err
    assert "Traceback" not in err, err
    assert len(lines) == 1, err
    assert lines[0].startswith("error:"), err
    return lines[0]


def _write_csv(
    path: Path, header: Sequence[str], rows: Sequence[Sequence[Any]]
) -> Path:
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def _features(n: int, seed: int = 0) -> np.ndarray:
    return np.round(np.random.default_rng(seed).normal(size=(n, 3)), 4)


def _classification_csv(
    path: Path, labels: Sequence[Any], n: int = 100, seed: int = 0
) -> Path:
    """Columns x1, x2, x3, label; the label is a learnable function of x1 and x2."""
    X = _features(n, seed)
    score = X[:, 0] + 0.5 * X[:, 1]
    cuts = np.quantile(score, np.linspace(0, 1, len(labels) + 1)[1:-1])
    rows = [[*x, labels[i]] for x, i in zip(X, np.digitize(score, cuts), strict=True)]
    return _write_csv(path, ["x1", "x2", "x3", "label"], rows)


def _regression_csv(path: Path, n: int = 100, seed: int = 0) -> Path:
    """Columns x1, x2, x3, price; price is a noisy float function of x1 and x2."""
    X = _features(n, seed)
    noise = np.random.default_rng(seed + 1).normal(scale=0.1, size=n)
    price = np.round(2.0 * X[:, 0] - X[:, 1] + 10.0 + noise, 4)
    return _write_csv(
        path,
        ["x1", "x2", "x3", "price"],
        [[*x, p] for x, p in zip(X, price, strict=True)],
    )


def _latest(root: Path) -> str:
    return latest_version(root)


def _versions(root: Path) -> frozenset[str]:
    folder = root / "versions"
    return (
        frozenset(p.name for p in folder.iterdir()) if folder.is_dir() else frozenset()
    )


def _manifest(root: Path, version: str | None = None) -> dict[str, Any]:
    version = version or _latest(root)
    return json.loads((root / "versions" / version / "manifest.json").read_text())


def _artifact(root: Path, version: str | None = None) -> bytes:
    version = version or _latest(root)
    return (root / "versions" / version / "model.pkl").read_bytes()


def _model(root: Path, version: str | None = None) -> Any:
    return joblib.load(io.BytesIO(_artifact(root, version)))


def _published_version(out: str) -> str:
    found = re.search(r"^published (?:and promoted )?\S+ version (\S+)$", out, re.M)
    assert found, out
    return found.group(1)


def _fit_csv(
    capsys: pytest.CaptureFixture[str],
    csv_path: Path,
    target: str,
    store: Path,
    *extra: str,
    name: str = "m",
    twin: bool = False,
) -> Result:
    """Fit and publish a CSV; without an ONNX twin unless `twin`, since building
    and parity-checking one costs seconds per fit (tests/unit/train/test_twin.py
    is about twins; here only test_manifest_has_every_design_field... asks)."""
    result = _cli(
        capsys,
        *("--data", str(csv_path), "--target", target),
        *("--store", str(store), "--name", name),
        *extra,
        *(() if twin else ("--no-twin",)),
    )
    assert result.code == 0, result.err
    return result


def _assert_untouched(existing: Existing) -> None:
    assert (existing.root / "LATEST").read_bytes() == existing.latest
    assert _versions(existing.root) == existing.versions


def _tiny_classifier() -> Any:
    from sklearn.datasets import load_iris
    from sklearn.ensemble import RandomForestClassifier

    X, y = load_iris(return_X_y=True)
    return RandomForestClassifier(n_estimators=5, random_state=0).fit(X, y)


@pytest.fixture
def existing(model_dir: Path) -> Existing:
    """The seed model, published and promoted as `<tmp>/store/seed`."""
    return Existing(
        store=model_dir.parent,
        name=model_dir.name,
        root=model_dir,
        latest=(model_dir / "LATEST").read_bytes(),
        versions=_versions(model_dir),
    )


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each publish happens one minute after the previous one (versions sort)."""
    start = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
    ticks: Iterator[datetime] = (
        start + timedelta(minutes=i) for i in itertools.count()
    )

    def now(tz: tzinfo | None = None) -> datetime:
        return next(ticks)

    monkeypatch.setattr(train.publish, "datetime", SimpleNamespace(now=now))


@pytest.fixture
def tiny_pickle(tmp_path: Path) -> Path:
    path = tmp_path / "tiny.pkl"
    path.write_bytes(pickle.dumps(_tiny_classifier()))
    return path


# ------------------------------------------------------------ fit on the user's CSV


def test_fit_csv_with_string_labels_publishes_a_classifier_with_string_classes(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    data = _classification_csv(tmp_path / "pets.csv", ["cat", "dog", "fish"])

    result = _fit_csv(capsys, data, "label", tmp_path / "store")

    manifest = _manifest(tmp_path / "store" / "m")
    assert manifest["task"] == "classification"
    assert manifest["classes"] == ["cat", "dog", "fish"]
    assert manifest["target"] == "label"
    assert set(manifest["metrics"]) == {"accuracy", "f1"}
    assert all(0.0 <= v <= 1.0 for v in manifest["metrics"].values())
    assert manifest["training"]["source"] == "csv:pets.csv"
    assert manifest["training"]["rows"] == 100
    assert manifest["training"]["holdout_rows"] == 20
    assert manifest["training"]["stratified"] is True
    assert f"version {manifest['version']}" in result.out
    assert list(_model(tmp_path / "store" / "m").classes_) == ["cat", "dog", "fish"]


def test_fit_csv_with_integer_labels_keeps_integer_classes(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    data = _classification_csv(tmp_path / "codes.csv", [3, 7, 11], n=90)

    _fit_csv(capsys, data, "label", tmp_path / "store")

    manifest = _manifest(tmp_path / "store" / "m")
    assert manifest["task"] == "classification"
    assert manifest["classes"] == [3, 7, 11]
    assert all(type(c) is int for c in manifest["classes"])
    assert manifest["training"]["rows"] == 90
    assert manifest["training"]["holdout_rows"] == 18
    assert manifest["training"]["stratified"] is True


def test_fit_csv_with_float_target_publishes_a_regressor_with_r2_and_mae(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    data = _regression_csv(tmp_path / "prices.csv", n=80)

    _fit_csv(capsys, data, "price", tmp_path / "store")

    manifest = _manifest(tmp_path / "store" / "m")
    assert manifest["task"] == "regression"
    assert manifest["classes"] is None
    assert manifest["target"] == "price"
    assert set(manifest["metrics"]) == {"r2", "mae"}
    assert manifest["metrics"]["r2"] > 0.5
    assert manifest["metrics"]["mae"] > 0.0
    assert manifest["training"]["rows"] == 80
    assert manifest["training"]["holdout_rows"] == 16
    assert manifest["training"]["stratified"] is False


def test_fit_csv_feature_names_are_the_header_without_the_target_in_order(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    X = _features(60, seed=5)
    rows = [[x[2], int(x[0] > 0), x[0], x[1]] for x in X]
    data = _write_csv(tmp_path / "mixed.csv", ["zeta", "label", "alpha", "mid"], rows)

    _fit_csv(capsys, data, "label", tmp_path / "store")

    manifest = _manifest(tmp_path / "store" / "m")
    assert manifest["feature_names"] == ["zeta", "alpha", "mid"]
    assert manifest["n_features"] == 3
    assert manifest["classes"] == [0, 1]
    model = _model(tmp_path / "store" / "m")
    # The label is the sign of `alpha`, the second feature in the published order.
    probe = np.array([[-5.0, 3.0, 0.0], [5.0, -3.0, 0.0]])
    assert model.predict(probe).tolist() == [1, 0]


@pytest.mark.parametrize(
    ("kind", "estimator", "final_step"),
    [
        ("random-forest", "RandomForestClassifier", None),
        ("gradient-boosting", "GradientBoostingClassifier", None),
        ("logistic-regression", "Pipeline", "LogisticRegression"),
    ],
)
def test_fit_csv_classification_model_kinds_publish_the_named_estimator(
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    kind: str,
    estimator: str,
    final_step: str | None,
) -> None:
    data = _classification_csv(tmp_path / "pets.csv", ["cat", "dog"], n=80)

    _fit_csv(capsys, data, "label", tmp_path / "store", "--model", kind)

    manifest = _manifest(tmp_path / "store" / "m")
    model = _model(tmp_path / "store" / "m")
    assert manifest["estimator"].startswith("sklearn.")
    assert manifest["estimator"].rsplit(".", 1)[-1] == estimator
    assert type(model).__name__ == estimator
    assert manifest["task"] == "classification"
    assert manifest["training"]["model"] == kind
    if final_step is not None:
        assert type(model[-1]).__name__ == final_step
    assert set(model.predict(_features(5, seed=9))) <= {"cat", "dog"}


@pytest.mark.parametrize(
    ("kind", "estimator", "final_module"),
    [
        ("random-forest", "RandomForestRegressor", None),
        ("gradient-boosting", "GradientBoostingRegressor", None),
        ("linear-regression", "Pipeline", "sklearn.linear_model"),
    ],
)
def test_fit_csv_regression_model_kinds_publish_the_named_estimator(
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    kind: str,
    estimator: str,
    final_module: str | None,
) -> None:
    data = _regression_csv(tmp_path / "prices.csv", n=80)

    _fit_csv(capsys, data, "price", tmp_path / "store", "--model", kind)

    manifest = _manifest(tmp_path / "store" / "m")
    model = _model(tmp_path / "store" / "m")
    assert manifest["estimator"].rsplit(".", 1)[-1] == estimator
    assert type(model).__name__ == estimator
    assert manifest["task"] == "regression"
    assert set(manifest["metrics"]) == {"r2", "mae"}
    if final_module is not None:
        assert type(model[-1]).__module__.startswith(final_module)
    assert model.predict(_features(4, seed=9)).dtype.kind == "f"


def test_fit_regression_target_with_a_classifier_kind_fails_listing_valid_kinds(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, existing: Existing
) -> None:
    data = _regression_csv(tmp_path / "prices.csv", n=60)

    result = _cli(
        capsys,
        *("--data", str(data), "--target", "price", "--model", "logistic-regression"),
        *("--store", str(existing.store), "--name", existing.name),
    )

    line = _error_line(result.code, result.err)
    assert "logistic-regression" in line
    assert (
        "random-forest, gradient-boosting, hist-gradient-boosting, linear-regression"
        in line
    )
    _assert_untouched(existing)


def test_task_classification_forces_classification_of_a_numeric_target(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    labels = ["0.0", "1.0"]  # floats: inferred as regression without --task
    data = _classification_csv(tmp_path / "flags.csv", labels, n=80)
    _fit_csv(capsys, data, "label", tmp_path / "store", name="inferred")

    _fit_csv(
        capsys, data, "label", tmp_path / "store", "--task", "classification", name="m"
    )

    assert _manifest(tmp_path / "store" / "inferred")["task"] == "regression"
    manifest = _manifest(tmp_path / "store" / "m")
    assert manifest["task"] == "classification"
    assert manifest["classes"] == [0, 1]
    assert set(manifest["metrics"]) == {"accuracy", "f1"}
    assert manifest["training"]["stratified"] is True


def test_same_seed_gives_same_metrics_and_the_output_prints_model_uri(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    data = _regression_csv(tmp_path / "prices.csv", n=80)
    store = tmp_path / "store"

    first = _fit_csv(capsys, data, "price", store, "--seed", "7", name="a")
    second = _fit_csv(capsys, data, "price", store, "--seed", "7", name="b")

    a, b = _manifest(store / "a"), _manifest(store / "b")
    assert a["version"] != b["version"]
    assert a["metrics"] == b["metrics"]
    assert a["training"]["seed"] == b["training"]["seed"] == 7
    assert f"MODEL_URI={store}/a" in first.out.splitlines()
    assert f"MODEL_URI={store}/b" in second.out.splitlines()
    assert f"r2={a['metrics']['r2']}" in first.out


@pytest.mark.parametrize(
    ("dataset", "task"),
    [
        ("iris", "classification"),
        ("wine", "classification"),
        ("breast_cancer", "classification"),
        ("diabetes", "regression"),
    ],
)
def test_bundled_dataset_publishes_with_its_feature_names(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, dataset: str, task: str
) -> None:
    from sklearn import datasets

    bunch = getattr(datasets, f"load_{dataset}")()

    result = _cli(capsys, "--dataset", dataset, "--store", str(tmp_path), "--name", "m")

    assert result.code == 0, result.err
    manifest = _manifest(tmp_path / "m")
    assert manifest["task"] == task
    assert manifest["feature_names"] == [str(n) for n in bunch.feature_names]
    assert manifest["n_features"] == bunch.data.shape[1]
    assert manifest["training"]["source"] == f"sklearn.datasets.load_{dataset}"
    assert manifest["training"]["rows"] == bunch.data.shape[0]
    if task == "classification":
        assert manifest["classes"] == sorted(set(bunch.target.tolist()))
    else:
        assert manifest["classes"] is None


def test_no_arguments_publish_the_tutorials_exact_model(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    from sklearn.datasets import make_classification
    from sklearn.ensemble import RandomForestClassifier

    X, y = make_classification(
        n_samples=1000, n_features=10, n_informative=5, random_state=42
    )
    tutorial = RandomForestClassifier(n_estimators=100, random_state=42).fit(X, y)

    result = _cli(capsys, "--store", str(tmp_path))

    assert result.code == 0, result.err
    root = tmp_path / "default"
    manifest = _manifest(root)
    published = _model(root)
    assert manifest["estimator"] == "sklearn.ensemble._forest.RandomForestClassifier"
    assert manifest["n_features"] == 10
    assert manifest["task"] == "classification"
    assert manifest["classes"] == [0, 1]
    assert f"MODEL_URI={root}" in result.out.splitlines()
    assert published.get_params() == tutorial.get_params()
    assert np.array_equal(published.predict(X), tutorial.predict(X))
    # Probabilities and unseen points tell a different forest apart.
    unseen = np.random.default_rng(1).normal(size=(200, 10)) * 2
    assert np.array_equal(published.predict_proba(X), tutorial.predict_proba(X))
    assert np.array_equal(published.predict(unseen), tutorial.predict(unseen))


def test_manifest_has_every_design_field_and_describes_the_real_artifact(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    import pandas as pd
    import scipy
    import sklearn

    data = _classification_csv(tmp_path / "pets.csv", ["cat", "dog"], n=60)

    _fit_csv(capsys, data, "label", tmp_path / "store", name="pets", twin=True)

    root = tmp_path / "store" / "pets"
    version = _latest(root)
    manifest = _manifest(root)
    artifact = _artifact(root)
    assert set(manifest) >= DESIGN_FIELDS
    assert manifest["name"] == "pets"
    assert manifest["version"] == version
    created = datetime.fromisoformat(manifest["created_at"].replace("Z", "+00:00"))
    assert abs(datetime.now(UTC) - created) < timedelta(minutes=5)
    assert manifest["estimator"] == "sklearn.ensemble._forest.RandomForestClassifier"
    assert manifest["n_features"] == 3
    assert manifest["feature_names"] == ["x1", "x2", "x3"]
    assert manifest["files"]["model.pkl"] == {
        "sha256": hashlib.sha256(artifact).hexdigest(),
        "bytes": len(artifact),
    }
    # A forest passes the parity gate: its twin is listed like the pickle.
    twin = (root / "versions" / version / "model.onnx").read_bytes()
    assert set(manifest["files"]) == {"model.pkl", "model.onnx"}
    assert manifest["twin"]["file"] == "model.onnx"
    assert manifest["files"]["model.onnx"] == {
        "sha256": hashlib.sha256(twin).hexdigest(),
        "bytes": len(twin),
    }
    assert manifest["environment"] == {
        "python": platform.python_version(),
        "scikit-learn": sklearn.__version__,
        "numpy": np.__version__,
        "scipy": scipy.__version__,
        "pandas": pd.__version__,
    }
    assert set(manifest["training"]) >= {"source", "rows"}
    assert manifest["input_schema"] == {
        "format": "array",
        "columns": [
            {"name": name, "kind": "number", "nullable": False}
            for name in ("x1", "x2", "x3")
        ],
    }


# ---------------------------------------------------- publish an existing pickle


def _pickled_classifier(path: Path) -> dict[str, Any]:
    path.write_bytes(pickle.dumps(_tiny_classifier(), protocol=4))
    return {"task": "classification", "n_features": 4, "classes": [0, 1, 2]}


def _joblib_pipeline(path: Path) -> dict[str, Any]:
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    bunch = load_iris()
    labels = bunch.target_names[bunch.target]
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=500))
    joblib.dump(model.fit(bunch.data, labels), path)
    return {
        "task": "classification",
        "n_features": 4,
        "classes": ["setosa", "versicolor", "virginica"],
        "estimator": "sklearn.pipeline.Pipeline",
    }


def _pickled_regressor(path: Path) -> dict[str, Any]:
    from sklearn.datasets import load_diabetes
    from sklearn.linear_model import Ridge

    X, y = load_diabetes(return_X_y=True)
    with path.open("wb") as handle:
        pickle.dump(Ridge().fit(X, y), handle)
    return {"task": "regression", "n_features": 10, "classes": None}


@pytest.mark.parametrize(
    "make", [_pickled_classifier, _joblib_pipeline, _pickled_regressor]
)
def test_publish_a_fitted_pickle_stores_its_exact_bytes_and_introspected_facts(
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    make: Callable[[Path], dict[str, Any]],
) -> None:
    path = tmp_path / "model.pkl"
    expected = make(path)
    store = tmp_path / "store"

    result = _cli(capsys, "publish", str(path), "--store", str(store), "--name", "own")

    assert result.code == 0, result.err
    root = store / "own"
    version = _published_version(result.out)
    assert _latest(root) == version
    assert _artifact(root) == path.read_bytes()
    manifest = _manifest(root)
    for key, value in expected.items():
        assert manifest[key] == value, key
    assert manifest["files"]["model.pkl"] == {
        "sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
        "bytes": path.stat().st_size,
    }
    # The file's name only: the trainer's local paths stay out of the store.
    assert manifest["training"]["source"] == f"file:{path.name}"
    assert set(manifest) >= DESIGN_FIELDS
    assert f"MODEL_URI={root}" in result.out.splitlines()


def _missing(path: Path) -> str:
    return "no such file"


def _text(path: Path) -> str:
    path.write_text("this is a CSV, not a pickle\n1,2,3\n")
    return "not a loadable pickle"


def _dict(path: Path) -> str:
    path.write_bytes(pickle.dumps({"weights": [1, 2, 3]}))
    return "builtins.dict"


def _unfitted(path: Path) -> str:
    from sklearn.ensemble import RandomForestClassifier

    path.write_bytes(pickle.dumps(RandomForestClassifier()))
    return "unfitted RandomForestClassifier"


@pytest.mark.parametrize("make", [_missing, _text, _dict, _unfitted])
def test_publish_refuses_what_is_not_a_fitted_estimator_leaving_latest(
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    existing: Existing,
    make: Callable[[Path], str],
) -> None:
    path = tmp_path / "candidate.pkl"
    expected = make(path)

    result = _cli(
        capsys,
        *(
            "publish",
            str(path),
            "--store",
            str(existing.store),
            "--name",
            existing.name,
        ),
    )

    line = _error_line(result.code, result.err)
    assert expected in line
    assert str(path) in line
    assert result.out == ""
    _assert_untouched(existing)


@pytest.mark.slow  # spawns `python -m train`: seconds of imports per run
def test_publish_of_a_non_estimator_pickle_is_one_line_from_a_real_process(
    tmp_path: Path, existing: Existing
) -> None:
    path = tmp_path / "weights.pkl"
    path.write_bytes(pickle.dumps([1.0, 2.0, 3.0]))

    result = run_train(
        *("publish", str(path), "--store", str(existing.store), "--name", existing.name)
    )

    line = _error_line(result.returncode, result.stderr)
    assert "builtins.list" in line
    _assert_untouched(existing)


# --------------------------------------------------------------- list and promote


def _three_versions(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> tuple[Path, list[str]]:
    """Publish three versions of model `m` (oldest first); the last is promoted."""
    store = tmp_path / "store"
    versions = []
    for labels in (["a", "b"], ["a", "b", "c"], ["x", "y"]):
        data = _classification_csv(tmp_path / "data.csv", labels, n=60)
        versions.append(_published_version(_fit_csv(capsys, data, "label", store).out))
    return store, versions


def test_list_prints_versions_newest_first_with_metrics_marking_latest(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, clock: None
) -> None:
    store, versions = _three_versions(capsys, tmp_path)

    result = _cli(capsys, "list", "--store", str(store), "--name", "m")

    assert result.code == 0, result.err
    lines = result.out.splitlines()
    shown = [line[2:].split()[0] for line in lines if line[:2] in ("* ", "  ")]
    assert shown == versions[::-1]
    marked = [line for line in lines if line.startswith("* ")]
    assert len(marked) == 1 and marked[0].split()[1] == versions[-1]
    for version, line in zip(shown, lines, strict=False):
        metrics = _manifest(store / "m", version)["metrics"]
        assert f"accuracy={metrics['accuracy']}" in line
        assert f"f1={metrics['f1']}" in line
        assert "RandomForestClassifier" in line


def test_promote_moves_latest_and_prints_the_previous_version(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, clock: None
) -> None:
    store, versions = _three_versions(capsys, tmp_path)

    result = _cli(capsys, "promote", versions[1], "--store", str(store), "--name", "m")

    assert result.code == 0, result.err
    assert _latest(store / "m") == versions[1]
    assert versions[-1] in result.out
    assert re.search(rf"\bwas {re.escape(versions[-1])}\b", result.out)
    assert f"MODEL_URI={store}/m" in result.out.splitlines()
    listed = _cli(capsys, "list", "--store", str(store), "--name", "m")
    assert f"* {versions[1]}" in listed.out.splitlines()[1]


def test_promoting_an_older_version_rolls_back_to_it(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, clock: None
) -> None:
    store, versions = _three_versions(capsys, tmp_path)

    result = _cli(capsys, "promote", versions[0], "--store", str(store), "--name", "m")

    assert result.code == 0, result.err
    assert _latest(store / "m") == versions[0]
    assert _versions(store / "m") == frozenset(versions)
    assert list(_model(store / "m").classes_) == ["a", "b"]


@pytest.mark.parametrize(
    ("version", "expected"),
    [
        ("20200101T000000Z-deadbeef", "does not exist"),
        ("../../etc", "invalid model version id"),
    ],
)
def test_promoting_an_unknown_version_fails_with_one_line_leaving_latest(
    capsys: pytest.CaptureFixture[str],
    existing: Existing,
    version: str,
    expected: str,
) -> None:
    result = _cli(
        capsys,
        *("promote", version, "--store", str(existing.store), "--name", existing.name),
    )

    line = _error_line(result.code, result.err)
    assert expected in line
    assert version in line
    assert result.out == ""
    _assert_untouched(existing)


def test_list_on_an_empty_store_exits_non_zero_with_a_clear_message(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    result = _cli(capsys, "list", "--store", str(tmp_path), "--name", "nothing")

    lines = [line for line in result.err.splitlines() if line.strip()]
    assert result.code != 0
    assert result.out == ""
    assert len(lines) == 1
    assert "no versions" in lines[0]
    assert str(tmp_path / "nothing") in lines[0]


def test_list_orders_versions_published_in_the_same_second_newest_first(
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    tiny_pickle: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Two publishes within one second (a script, CI) must still list in order.

    The random suffix of a version id must not decide which one looks newest.
    """
    import skserve.manifest

    instant = datetime(2026, 3, 1, 12, 0, 0, 1000, tzinfo=UTC)
    moments = iter([instant, instant + timedelta(milliseconds=500)])
    suffixes = iter(["ffffffff", "00000000"])

    def now(tz: tzinfo | None = None) -> datetime:
        return next(moments)

    def token_hex(nbytes: int | None = None) -> str:
        return next(suffixes)

    monkeypatch.setattr(train.publish, "datetime", SimpleNamespace(now=now))
    monkeypatch.setattr(
        skserve.manifest, "secrets", SimpleNamespace(token_hex=token_hex)
    )
    args = ("--store", str(tmp_path), "--name", "m")
    older = _published_version(_cli(capsys, "publish", str(tiny_pickle), *args).out)
    newer = _published_version(_cli(capsys, "publish", str(tiny_pickle), *args).out)

    result = _cli(capsys, "list", *args)

    assert result.code == 0, result.err
    shown = [line[2:].split()[0] for line in result.out.splitlines()[:2]]
    assert _latest(tmp_path / "m") == newer
    assert shown == [newer, older]


def test_promote_refuses_an_unsigned_version_when_a_key_is_set(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    signed = publish_signed(tmp_path, SIGNING_KEY)
    os.environ["MODEL_SIGNING_KEY"] = SIGNING_KEY
    publish = ["--store", str(tmp_path), "--name", "m", "--no-promote", "--no-twin"]
    assert main(publish) == 0
    os.environ.pop("MODEL_SIGNING_KEY")
    assert main(publish) == 0
    unsigned = capsys.readouterr().out.split("version ")[-1].split()[0]
    os.environ["MODEL_SIGNING_KEY"] = SIGNING_KEY

    status = main(["promote", unsigned, "--store", str(tmp_path), "--name", "m"])

    assert status == 1
    assert "not signed" in capsys.readouterr().err
    assert _latest(tmp_path / "m") == signed


# ----------------------------------------------------------------- bad input to fit


def _bad_missing(tmp_path: Path) -> tuple[list[str], list[str]]:
    path = tmp_path / "nope.csv"
    return ["--data", str(path), "--target", "label"], [str(path), "no such file"]


def _bad_target(tmp_path: Path) -> tuple[list[str], list[str]]:
    path = _classification_csv(tmp_path / "pets.csv", ["cat", "dog"], n=20)
    return (
        ["--data", str(path), "--target", "species"],
        ["'species'", "x1, x2, x3, label"],
    )


def _bad_feature(tmp_path: Path) -> tuple[list[str], list[str]]:
    rows = [[i, i * 2.5, i % 2] for i in range(10)]
    rows[4][1] = "inf"  # data row 5 is line 6 of the file
    path = _write_csv(tmp_path / "bad.csv", ["a", "b", "label"], rows)
    return ["--data", str(path), "--target", "label"], ["'b'", "line 6", "'inf'"]


def _bad_nan_target(tmp_path: Path) -> tuple[list[str], list[str]]:
    rows = [[i, i * 2.5, i % 2] for i in range(20)]
    rows[3][2] = "nan"
    path = _write_csv(tmp_path / "nan.csv", ["a", "b", "label"], rows)
    return ["--data", str(path), "--target", "label"], ["'label'", "not finite"]


def _bad_huge_target(tmp_path: Path) -> tuple[list[str], list[str]]:
    rows = [[i, i * 2.5, i % 2] for i in range(20)]
    rows[3][2] = "9" * 23
    path = _write_csv(tmp_path / "huge.csv", ["a", "b", "label"], rows)
    return ["--data", str(path), "--target", "label"], ["'label'", "too large"]


def _bad_float32_feature(tmp_path: Path) -> tuple[list[str], list[str]]:
    rows = [[i, i * 2.5, i % 2] for i in range(20)]
    rows[3][0] = "1e308"  # finite, but beyond the forest's float32
    path = _write_csv(tmp_path / "f32.csv", ["a", "b", "label"], rows)
    return ["--data", str(path), "--target", "label"], ["cannot fit random-forest"]


def _bad_seed(tmp_path: Path) -> tuple[list[str], list[str]]:
    return ["--dataset", "iris", "--seed", "-1"], ["--seed"]


def _bad_empty(tmp_path: Path) -> tuple[list[str], list[str]]:
    path = tmp_path / "empty.csv"
    path.write_bytes(b"")
    return ["--data", str(path), "--target", "label"], [str(path), "empty"]


def _bad_header_only(tmp_path: Path) -> tuple[list[str], list[str]]:
    path = _write_csv(tmp_path / "header.csv", ["a", "b", "label"], [])
    return ["--data", str(path), "--target", "label"], [str(path), "no data rows"]


def _bad_no_target(tmp_path: Path) -> tuple[list[str], list[str]]:
    path = _classification_csv(tmp_path / "pets.csv", ["cat", "dog"], n=20)
    return ["--data", str(path)], ["--target"]


def _bad_regress_strings(tmp_path: Path) -> tuple[list[str], list[str]]:
    path = _classification_csv(tmp_path / "pets.csv", ["cat", "dog"], n=20)
    return (
        ["--data", str(path), "--target", "label", "--task", "regression"],
        ["'label'", "not numeric"],
    )


BadInput = Callable[[Path], tuple[list[str], list[str]]]


def _case_id(make: BadInput) -> str:
    return make.__name__.removeprefix("_bad_")


BAD_FIT_INPUTS: list[BadInput] = [
    _bad_missing,
    _bad_target,
    _bad_feature,
    _bad_empty,
    _bad_header_only,
    _bad_no_target,
    _bad_regress_strings,
    _bad_nan_target,
    _bad_huge_target,
    _bad_float32_feature,
]


@pytest.mark.parametrize("make", BAD_FIT_INPUTS, ids=_case_id)
def test_bad_fit_input_is_one_error_line_and_leaves_latest_untouched(
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    existing: Existing,
    make: BadInput,
) -> None:
    args, expected = make(tmp_path)

    result = _cli(
        capsys, *args, "--store", str(existing.store), "--name", existing.name
    )

    line = _error_line(result.code, result.err)
    for fragment in expected:
        assert fragment in line
    assert result.out == ""
    _assert_untouched(existing)


@pytest.mark.slow  # spawns `python -m train`: seconds of imports per run
@pytest.mark.parametrize(
    "make", [_bad_missing, _bad_feature, _bad_target, _bad_seed], ids=_case_id
)
def test_bad_fit_input_from_a_real_process_prints_exactly_one_line(
    tmp_path: Path, existing: Existing, make: BadInput
) -> None:
    args, expected = make(tmp_path)

    result = run_train(*args, "--store", str(existing.store), "--name", existing.name)

    line = _error_line(result.returncode, result.stderr)
    for fragment in expected:
        assert fragment in line
    assert result.stdout == ""
    _assert_untouched(existing)


@pytest.mark.slow  # spawns `python -m train`: seconds of imports per run
def test_more_classes_than_holdout_rows_never_ends_in_a_traceback(
    tmp_path: Path, existing: Existing
) -> None:
    """60 rows, 15 string labels: the 12-row stratified holdout cannot hold them."""
    labels = [f"c{i}" for i in range(15)]
    X = _features(60, seed=2)
    rows = [[*x, labels[i % 15]] for i, x in enumerate(X)]
    data = _write_csv(tmp_path / "many.csv", ["x1", "x2", "x3", "label"], rows)

    result = run_train(
        *("--data", str(data), "--target", "label"),
        *("--store", str(existing.store), "--name", existing.name),
    )

    assert result.returncode == 0, result.stderr
    manifest = _manifest(existing.root)
    assert manifest["training"]["stratified"] is False  # reproducible, not stratified
    assert len(manifest["classes"]) == 15


@pytest.mark.slow  # spawns `python -m train`: seconds of imports per run
def test_forcing_classification_of_a_continuous_target_is_one_error_line(
    tmp_path: Path, existing: Existing
) -> None:
    data = _regression_csv(tmp_path / "prices.csv", n=60)

    result = run_train(
        *("--data", str(data), "--target", "price", "--task", "classification"),
        *("--store", str(existing.store), "--name", existing.name),
    )

    line = _error_line(result.returncode, result.stderr)
    assert "price" in line
    _assert_untouched(existing)


# ------------------------------------------------------------------ object storage


def _unreachable_env() -> dict[str, str]:
    return {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ENDPOINT_URL_S3": f"http://127.0.0.1:{free_port()}",
    }


@pytest.mark.slow  # spawns `python -m train`: seconds of imports per run
def test_fit_to_an_unreachable_store_is_one_error_line(
    aws_credentials: None, tmp_path: Path
) -> None:
    data = _classification_csv(tmp_path / "pets.csv", ["cat", "dog"], n=40)

    result = run_train(
        *("--data", str(data), "--target", "label", "--store", "s3://bucket/p"),
        env=_unreachable_env(),
    )

    line = _error_line(result.returncode, result.stderr)
    assert "s3://bucket/p/default/" in line
    assert "LATEST" not in result.stdout


@pytest.mark.slow  # spawns `python -m train`: seconds of imports per run
def test_list_of_an_unreachable_store_is_one_error_line(aws_credentials: None) -> None:
    result = run_train(
        "list", "--store", "s3://bucket/p", "--name", "m", env=_unreachable_env()
    )

    line = _error_line(result.returncode, result.stderr)
    assert "s3://bucket/p/m/" in line


@pytest.mark.parametrize(
    ("who", "code"),
    [("unknown key", "InvalidAccessKeyId"), ("user without policy", "AccessDenied")],
)
def test_an_unauthorised_s3_store_is_one_line_naming_the_error_code(
    capsys: pytest.CaptureFixture[str],
    aws_credentials: None,
    monkeypatch: pytest.MonkeyPatch,
    tiny_pickle: Path,
    who: str,
    code: str,
) -> None:
    import boto3
    from moto import mock_aws
    from moto.core import set_initial_no_auth_action_count

    monkeypatch.delenv("AWS_ENDPOINT_URL_S3", raising=False)
    store = ("--store", "s3://models/team", "--name", "m")
    with mock_aws():
        s3 = boto3.client("s3", region_name="us-east-1")
        s3.create_bucket(Bucket="models")
        assert _cli(capsys, "publish", str(tiny_pickle), *store).code == 0
        latest = s3.get_object(Bucket="models", Key="team/m/LATEST")["Body"].read()
        published = [o["Key"] for o in s3.list_objects_v2(Bucket="models")["Contents"]]
        if who == "user without policy":
            iam = boto3.client("iam", region_name="us-east-1")
            iam.create_user(UserName="nobody")
            key = iam.create_access_key(UserName="nobody")["AccessKey"]
            monkeypatch.setenv("AWS_ACCESS_KEY_ID", key["AccessKeyId"])
            monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", key["SecretAccessKey"])
            monkeypatch.delenv("AWS_SESSION_TOKEN", raising=False)
            monkeypatch.delenv("AWS_SECURITY_TOKEN", raising=False)
        else:
            monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAWRONGWRONGWRONG1")
        denied = set_initial_no_auth_action_count(0)(_cli)

        results = {
            "publish": denied(capsys, "publish", str(tiny_pickle), *store),
            "list": denied(capsys, "list", *store),
            "promote": denied(capsys, "promote", latest.decode().strip(), *store),
        }

        keys = [o["Key"] for o in s3.list_objects_v2(Bucket="models")["Contents"]]
        after = s3.get_object(Bucket="models", Key="team/m/LATEST")["Body"].read()
    for command, result in results.items():
        line = _error_line(result.code, result.err)
        assert result.code == 1, command
        assert code in line, command
        assert "s3://models/team/m/" in line, command
        assert result.out == "", command
    assert after == latest
    assert keys == published  # nothing added, nothing removed


@pytest.mark.slow  # four `python -m train` runs against a moto server
@pytest.mark.e2e
def test_fit_list_and_promote_through_a_real_s3_endpoint(
    s3_env: dict, tmp_path: Path, tiny_pickle: Path
) -> None:
    import boto3

    env = {k: v for k, v in s3_env.items() if k != "BUCKET"}
    bucket = s3_env["BUCKET"]
    store = ("--store", f"s3://{bucket}/team", "--name", "pets")
    data = _classification_csv(tmp_path / "pets.csv", ["cat", "dog"], n=40)
    s3 = boto3.client("s3", region_name="us-east-1")

    fitted = run_train("--data", str(data), "--target", "label", *store, env=env)
    published = run_train("publish", str(tiny_pickle), *store, env=env)
    listed = run_train("list", *store, env=env)
    first, second = (_published_version(r.stdout) for r in (fitted, published))
    promoted = run_train("promote", first, *store, env=env)

    for result in (fitted, published, listed, promoted):
        assert result.returncode == 0, result.stderr
    assert f"MODEL_URI=s3://{bucket}/team/pets" in fitted.stdout.splitlines()
    marked = [line.split()[1] for line in listed.stdout.splitlines() if line[:1] == "*"]
    assert marked == [second]
    assert {first, second} <= set(listed.stdout.split())
    assert "accuracy=" in listed.stdout
    assert f"was {second}" in promoted.stdout
    assert f"MODEL_URI=s3://{bucket}/team/pets" in promoted.stdout.splitlines()
    latest = s3.get_object(Bucket=bucket, Key="team/pets/LATEST")["Body"].read()
    assert latest.decode().strip() == first
    key = f"team/pets/versions/{second}/model.pkl"
    stored = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    assert stored == tiny_pickle.read_bytes()
