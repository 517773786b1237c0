"""train.commands: what users bring publishes with its schema and is served as
fitted: text columns and empty cells, clusterers and outlier detectors,
schema corrections; what cannot be served is one error line and no publish."""

from __future__ import annotations

import csv
import io
import json
import pickle
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pandas as pd
import pytest
from sklearn.cluster import KMeans
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import IsolationForest
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.mixture import GaussianMixture
from sklearn.neighbors import LocalOutlierFactor
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from tests.support import call
from train.cli import main

HEADER = ["income", "age", "plan", "region", "churned"]


def _customers(path: Path, n: int = 120) -> Path:
    """A CSV as users have them: empty cells, text columns, a text label."""
    rng = np.random.default_rng(4)
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(HEADER)
        for i in range(n):
            income = round(float(rng.normal(50, 10)), 2)
            plan = str(rng.choice(["basic", "standard", "premium"]))
            churned = "yes" if (income < 50) ^ (plan == "basic") else "no"
            writer.writerow(
                [
                    "" if i % 7 == 0 else income,
                    int(rng.integers(18, 80)),
                    "" if i % 11 == 0 else plan,
                    str(rng.choice(["north", "south"])),
                    churned,
                ]
            )
    return path


def _run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def _latest(root: Path) -> tuple[dict[str, Any], Any]:
    version = (root / "LATEST").read_text().strip()
    folder = root / "versions" / version
    manifest = json.loads((folder / "manifest.json").read_text())
    return manifest, joblib.load(io.BytesIO((folder / "model.pkl").read_bytes()))


def test_a_csv_with_text_and_empty_cells_fits_an_imputing_encoding_pipeline(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    data = _customers(tmp_path / "customers.csv")
    store = tmp_path / "store"

    code, out, err = _run(
        capsys,
        *("--data", str(data), "--target", "churned"),
        *("--store", str(store), "--name", "churn"),
    )

    assert code == 0, err
    manifest, model = _latest(store / "churn")
    assert isinstance(model, Pipeline)
    assert isinstance(model.named_steps["prepare"], ColumnTransformer)
    assert manifest["classes"] == ["no", "yes"]
    assert manifest["input_schema"]["format"] == "dataframe"
    kinds = [(c["kind"], c["nullable"]) for c in manifest["input_schema"]["columns"]]
    assert kinds == [
        ("number", True),
        ("number", True),
        ("string", True),
        ("string", True),
    ]
    assert manifest["input_schema"]["columns"][2]["categories"] == [
        "basic",
        "premium",
        "standard",
    ]
    assert "input schema: the model takes a pandas DataFrame of these columns" in out
    assert "with ONNX twin model.onnx: parity on" in out
    assert manifest["twin"]["input"]["encoding"] == "codes"
    assert len(manifest["example"]) == 4


def test_a_text_and_missing_row_is_served_as_the_pipeline_predicts_it(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    data = _customers(tmp_path / "customers.csv")
    store = tmp_path / "store"
    assert _run(capsys, "--data", str(data), "--target", "churned", "--no-twin",
                "--store", str(store), "--name", "churn")[0] == 0  # fmt: skip
    _, model = _latest(store / "churn")
    rows = [
        {"income": None, "age": 30, "plan": "basic", "region": "north"},
        {"income": 61.5, "age": 44, "plan": "gold", "region": None},
    ]

    import os

    os.environ["MODEL_URI"] = str(store / "churn")
    response = call(json={"instances": rows, "probabilities": True})

    assert response.status_code == 200, response.get_json()
    body = response.get_json()
    frame = pd.DataFrame(rows).astype({"income": float, "age": float})
    frame = frame.replace({None: np.nan})
    assert body["predictions"] == model.predict(frame).tolist()
    assert np.allclose(body["probabilities"], model.predict_proba(frame), atol=0)


def test_a_holdout_with_empty_cells_and_text_is_accepted_at_publish(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    rng = np.random.default_rng(0)
    frame = pd.DataFrame(
        {
            "income": rng.normal(50, 10, 80),
            "plan": rng.choice(["basic", "premium"], 80),
        }
    )
    frame.loc[::5, "income"] = np.nan
    model = make_pipeline(
        ColumnTransformer(
            [
                ("num", make_pipeline(SimpleImputer(), StandardScaler()), ["income"]),
                ("cat", OneHotEncoder(handle_unknown="ignore"), ["plan"]),
            ]
        ),
        LogisticRegression(),
    ).fit(frame, frame.plan == "basic")
    pickle_path, holdout = tmp_path / "m.pkl", tmp_path / "holdout.csv"
    pickle_path.write_bytes(pickle.dumps(model))
    frame.to_csv(holdout, index=False)

    code, _out, err = _run(
        capsys, "publish", str(pickle_path), "--holdout", str(holdout),
        "--store", str(tmp_path / "store"), "--name", "m",
    )  # fmt: skip

    assert code == 0, err
    manifest, _ = _latest(tmp_path / "store" / "m")
    assert manifest["input_schema"]["columns"][0]["nullable"] is True
    assert manifest["example"][1] in ("basic", "premium")


@pytest.mark.parametrize(
    ("model", "task"),
    [
        (KMeans(3, n_init=1, random_state=0), "clustering"),
        (GaussianMixture(2, random_state=0), "clustering"),
        (IsolationForest(random_state=0), "outlier_detection"),
        (LocalOutlierFactor(novelty=True), "outlier_detection"),
    ],
)
def test_clusterers_and_outlier_detectors_publish_with_their_task(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, model: Any, task: str
) -> None:
    X = np.random.default_rng(2).normal(size=(60, 3))
    path = tmp_path / "m.pkl"
    path.write_bytes(pickle.dumps(model.fit(X)))

    code, _out, err = _run(
        capsys, "publish", str(path), "--store", str(tmp_path / "store"), "--name", "m"
    )

    assert code == 0, err
    manifest, _ = _latest(tmp_path / "store" / "m")
    assert manifest["task"] == task
    assert manifest["classes"] is None


def test_a_local_outlier_factor_without_novelty_is_refused_saying_how(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    X = np.random.default_rng(2).normal(size=(60, 3))
    path = tmp_path / "m.pkl"
    path.write_bytes(pickle.dumps(LocalOutlierFactor().fit(X)))

    code, out, err = _run(
        capsys, "publish", str(path), "--store", str(tmp_path / "store"), "--name", "m"
    )

    assert code == 1 and out == ""
    assert "fit it with novelty=True" in err
    assert not (tmp_path / "store" / "m").exists()


def _plain_pickle(tmp_path: Path) -> Path:
    X = np.random.default_rng(1).normal(size=(40, 2))
    path = tmp_path / "lr.pkl"
    path.write_bytes(pickle.dumps(LogisticRegression().fit(X, X[:, 0] > 0)))
    return path


def test_a_schema_file_corrects_the_inferred_schema(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    model = make_pipeline(SimpleImputer(), LogisticRegression())
    X = np.random.default_rng(1).normal(size=(40, 2))
    path = tmp_path / "m.pkl"
    path.write_bytes(pickle.dumps(model.fit(X, X[:, 0] > 0)))
    schema = tmp_path / "schema.json"
    schema.write_text(json.dumps({"columns": {"x1": {"nullable": False}}}))

    code, out, err = _run(
        capsys, "publish", str(path), "--schema", str(schema),
        "--store", str(tmp_path / "store"), "--name", "m",
    )  # fmt: skip

    assert code == 0, err
    manifest, _ = _latest(tmp_path / "store" / "m")
    assert [c["nullable"] for c in manifest["input_schema"]["columns"]] == [
        True,
        False,
    ]
    assert "\n  x0  number, may be missing\n  x1  number\n" in out


def test_a_schema_correction_the_model_refuses_publishes_nothing(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, model_dir: Path
) -> None:
    schema = tmp_path / "schema.json"
    schema.write_text(json.dumps({"columns": {"x1": {"nullable": True}}}))
    latest = (model_dir / "LATEST").read_bytes()
    versions = set((model_dir / "versions").iterdir())

    code, out, err = _run(
        capsys, "publish", str(_plain_pickle(tmp_path)), "--schema", str(schema),
        "--store", str(model_dir.parent), "--name", model_dir.name,
    )  # fmt: skip

    assert code == 1 and out == ""
    assert err.startswith(
        "error: the schema says 'x1' may be missing, but the model refuses it missing"
    )
    assert (model_dir / "LATEST").read_bytes() == latest
    assert set((model_dir / "versions").iterdir()) == versions


def test_the_default_model_stores_a_typical_row_of_its_training_data(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """The demo page opens on the manifest's example: for the tutorial's model,
    the median of each column it was fitted on, not a row of zeros."""
    from sklearn.datasets import make_classification

    from train.seed import SEED_DATA

    store = tmp_path / "store"
    assert _run(capsys, "--store", str(store), "--no-twin")[0] == 0
    manifest = _latest(store / "default")[0]
    X = make_classification(**SEED_DATA)[0]
    assert manifest["example"] == pytest.approx(np.median(X, axis=0), abs=1e-5)
    assert [c["name"] for c in manifest["input_schema"]["columns"]] == [
        f"x{j}" for j in range(10)
    ]
