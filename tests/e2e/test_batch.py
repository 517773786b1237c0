"""`python -m batch` scores every row as scikit-learn does, or rejects it as the API."""

from __future__ import annotations

import csv
import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.e2e.batch_support import counts, csv_rows, jsonl_rows, run_batch, shards
from tests.support import REPO, latest_version, published_model, run_train

pytestmark = pytest.mark.e2e

IRIS = [
    "sepal length (cm)",
    "sepal width (cm)",
    "petal length (cm)",
    "petal width (cm)",
]

ROWS = 100_000


@pytest.fixture(scope="session")
def iris_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A store holding a classifier with feature names (and its ONNX twin)."""
    store = tmp_path_factory.mktemp("iris-store")
    result = run_train("--dataset", "iris", "--store", str(store), "--name", "iris")
    assert result.returncode == 0, result.stderr
    return store


def write_iris_csv(path: Path, rows: int, seed: int) -> np.ndarray:
    """Random iris-like rows, columns in another order than the model's, plus a
    key and a column the model does not use; returns the matrix in model order."""
    rng = np.random.default_rng(seed)
    matrix = np.round(rng.uniform([4, 2, 1, 0], [8, 4.5, 7, 2.5], (rows, 4)), 3)
    with path.open("w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(["note", IRIS[3], "id", IRIS[1], IRIS[0], IRIS[2]])
        for i, (a, b, c, d) in enumerate(matrix.tolist()):
            writer.writerow([f"n{i % 7}", d, f"row-{i}", b, a, c])
    return matrix


def test_local_csv_of_100k_rows_scores_as_sklearn_with_keys_intact(
    iris_store: Path, tmp_path: Path
) -> None:
    data = tmp_path / "in" / "iris.csv"
    data.parent.mkdir()
    matrix = write_iris_csv(data, ROWS, seed=1)
    out = tmp_path / "out"
    result = run_batch(
        "--model-uri",
        str(iris_store / "iris"),
        "--input",
        str(tmp_path / "in" / "*.csv"),
        "--output",
        str(out / "scored"),
        "--keep",
        "id",
        "--probabilities",
    )
    assert result.returncode == 0, result.stderr
    assert counts(result) == (ROWS, ROWS, 0)
    progress = re.findall(
        r"batch: scored ([\d,]+) rows \([\d,]+ rows/s\)", result.stderr
    )
    assert progress, result.stderr
    assert all(0 < int(n.replace(",", "")) <= ROWS for n in progress)
    rows = csv_rows([p.read_text() for p in shards(out, "scored")])
    assert not shards(out, "scored-errors")
    assert len(rows) == ROWS
    assert list(rows[0]) == [
        "id",
        "prediction",
        "probability_0",
        "probability_1",
        "probability_2",
        "model_version",
    ]
    model = published_model(iris_store / "iris")
    expected = model.predict(matrix)
    proba = model.predict_proba(matrix)
    version = latest_version(iris_store / "iris")
    by_id = {row["id"]: row for row in rows}
    assert sorted(by_id) == sorted(f"row-{i}" for i in range(ROWS))
    got = np.array([int(by_id[f"row-{i}"]["prediction"]) for i in range(ROWS)])
    np.testing.assert_array_equal(got, expected)
    got_proba = np.array(
        [
            [float(by_id[f"row-{i}"][f"probability_{c}"]) for c in range(3)]
            for i in range(ROWS)
        ]
    )
    np.testing.assert_allclose(got_proba, proba, rtol=0, atol=1e-6)
    assert {row["model_version"] for row in rows} == {version}


def test_s3_csv_of_100k_rows_scores_as_sklearn(
    s3_env: dict, seed_store: Path, tmp_path: Path
) -> None:
    """Model, input and output all on S3 (moto over HTTP): Beam's S3 filesystem
    and the model store both reach it through AWS_ENDPOINT_URL_S3."""
    import boto3

    bucket = s3_env["BUCKET"]
    store = f"s3://{bucket}/models"
    published = run_train("--store", store, "--name", "seed", env=s3_env)
    assert published.returncode == 0, published.stderr
    s3 = boto3.client("s3", region_name="us-east-1")
    rng = np.random.default_rng(2)
    matrix = rng.normal(size=(ROWS, 10)).round(6)
    lines = ["key," + ",".join(f"x{j}" for j in range(10))]
    lines += [
        f"k{i}," + ",".join(map(repr, row)) for i, row in enumerate(matrix.tolist())
    ]
    s3.put_object(Bucket=bucket, Key="data/part-1.csv", Body="\n".join(lines).encode())
    result = run_batch(
        "--model-uri",
        f"{store}/seed",
        "--input",
        f"s3://{bucket}/data/part-*.csv",
        "--output",
        f"s3://{bucket}/scored/run",
        "--keep",
        "key",
        env=s3_env,
    )
    assert result.returncode == 0, result.stderr
    assert counts(result) == (ROWS, ROWS, 0)
    listed = s3.list_objects_v2(Bucket=bucket, Prefix="scored/")["Contents"]
    keys = sorted(item["Key"] for item in listed)
    assert keys and all(k.startswith("scored/run-0") for k in keys), keys
    texts = [s3.get_object(Bucket=bucket, Key=k)["Body"].read().decode() for k in keys]
    rows = {row["key"]: row for row in csv_rows(texts)}
    assert len(rows) == ROWS
    # The same pickle, read from the store the job used.
    local = tmp_path / "seed"
    version = s3.get_object(Bucket=bucket, Key="models/seed/LATEST")["Body"].read()
    prefix = f"models/seed/versions/{version.decode().strip()}"
    (local / "versions" / version.decode().strip()).mkdir(parents=True)
    (local / "LATEST").write_bytes(version)
    pickle = s3.get_object(Bucket=bucket, Key=f"{prefix}/model.pkl")["Body"].read()
    (local / "versions" / version.decode().strip() / "model.pkl").write_bytes(pickle)
    expected = published_model(local).predict(matrix)
    got = np.array([int(rows[f"k{i}"]["prediction"]) for i in range(ROWS)])
    np.testing.assert_array_equal(got, expected)


BAD_CSV = """\
id,sepal length (cm),sepal width (cm),petal length (cm),petal width (cm),extra
good-1,5.1,3.5,1.4,0.2,x
text,5.1,abc,1.4,0.2,x

short,5.1,3.5
empty,5.1,3.5,,0.2,x
nan,5.1,3.5,1.4,nan,x
huge,5.1,3.5,1.4,1e39,x
"quoted
key",6.7,3.0,5.2,2.3,x
wide,5.1,3.5,1.4,0.2,x,surplus
good-2,6.3,3.3,6.0,2.5,x
"""

BAD_CSV_ERRORS = {  # line -> the message `{"features": row}` gets from the API
    3: "features[1] ('sepal width (cm)') must be a finite number, got \"abc\"",
    5: "features: missing 'petal length (cm)', 'petal width (cm)' (expected: "
    "sepal length (cm), sepal width (cm), petal length (cm), petal width (cm))",
    6: "features[2] ('petal length (cm)') may not be missing: this model needs a "
    "finite number there, got null",
    7: "features[3] ('petal width (cm)') must be a finite number, got NaN",
    8: "the model cannot use these values: Input X contains infinity or a value "
    "too large for dtype('float32').",
    11: "line has 7 cells, but the header has 6 columns",
}


def test_bad_rows_land_in_the_dead_letter_output_with_the_api_messages(
    iris_store: Path, tmp_path: Path
) -> None:
    (tmp_path / "in").mkdir()
    data = tmp_path / "in" / "a-mixed.csv"
    data.write_text(BAD_CSV)
    # Another file of the same input, without the header: its rows are data.
    (tmp_path / "in" / "b-plain.csv").write_text("6.0,2.2,5.0,1.5\n4.9,3.0,1.4,0.2\n")
    result = run_batch(
        "--model-uri",
        str(iris_store / "iris"),
        "--input",
        str(tmp_path / "in" / "*.csv"),
        "--output",
        str(tmp_path / "out" / "p"),
        "--keep",
        "id",
    )
    assert result.returncode == 0, result.stderr
    assert counts(result) == (11, 5, 6)  # the blank line is no row
    scored = csv_rows([p.read_text() for p in shards(tmp_path / "out", "p")])
    assert sorted(row["id"] for row in scored) == [
        "",
        "",
        "good-1",
        "good-2",
        "quoted\nkey",
    ]
    model = published_model(iris_store / "iris")
    rows = [[5.1, 3.5, 1.4, 0.2], [6.3, 3.3, 6.0, 2.5]]
    rows += [[6.0, 2.2, 5.0, 1.5], [4.9, 3.0, 1.4, 0.2]]
    expected = model.predict(rows).tolist()
    by_id = {row["id"]: int(row["prediction"]) for row in scored if row["id"]}
    assert [by_id["good-1"], by_id["good-2"]] == expected[:2]
    plain = sorted(int(row["prediction"]) for row in scored if not row["id"])
    assert plain == sorted(expected[2:])
    errors = jsonl_rows([p.read_text() for p in shards(tmp_path / "out", "p-errors")])
    assert {error["file"] for error in errors} == {str(data)}
    got = {error["line"]: error["error"] for error in errors}
    by_line = {error["line"]: error["row"] for error in errors}
    assert by_line[3] == ["text", "5.1", "abc", "1.4", "0.2", "x"]
    assert by_line[8] == [5.1, 3.5, 1.4, 1e39]  # refused by the model: its numbers
    assert got == BAD_CSV_ERRORS


def test_json_lines_in_and_out_keep_json_types(
    iris_store: Path, tmp_path: Path
) -> None:
    data = tmp_path / "rows.jsonl"
    rows = [
        {"id": 1, IRIS[0]: 5.1, IRIS[1]: 3.5, IRIS[2]: 1.4, IRIS[3]: 0.2, "z": [1]},
        {"id": 2, IRIS[0]: 5.1, IRIS[1]: True, IRIS[2]: 1.4, IRIS[3]: 0.2},
        [6.3, 3.3, 6.0, 2.5],
    ]
    data.write_text("\n".join(json.dumps(r) for r in rows) + "\n{not json\n")
    result = run_batch(
        "--model-uri",
        str(iris_store / "iris"),
        "--input",
        str(data),
        "--output",
        str(tmp_path / "o"),
        "--keep",
        "id",
        "--format",
        "jsonl",
    )
    assert result.returncode == 0, result.stderr
    assert counts(result) == (4, 2, 2)
    out = jsonl_rows([p.read_text() for p in shards(tmp_path, "o")])
    model = published_model(iris_store / "iris")
    expected = model.predict([[5.1, 3.5, 1.4, 0.2], [6.3, 3.3, 6.0, 2.5]]).tolist()
    assert sorted(out, key=lambda r: r["id"] is None) == [
        {"id": 1, "prediction": expected[0], "model_version": out[0]["model_version"]},
        {
            "id": None,
            "prediction": expected[1],
            "model_version": out[0]["model_version"],
        },
    ]
    errors = sorted(
        jsonl_rows([p.read_text() for p in shards(tmp_path, "o-errors")]),
        key=lambda e: e["line"],
    )
    assert [(e["line"], e["error"]) for e in errors] == [
        (2, "features[1] ('sepal width (cm)') must be a finite number, got true"),
        (
            4,
            "malformed JSON: Expecting property name enclosed in double quotes "
            "(column 2)",
        ),
    ]


def test_tampered_model_fails_the_job_before_any_row_is_scored(
    model_dir: Path, tmp_path: Path
) -> None:
    version = latest_version(model_dir)
    for artifact in ("model.pkl", "model.onnx"):
        path = model_dir / "versions" / version / artifact
        data = bytearray(path.read_bytes())
        data[len(data) // 2] ^= 0xFF
        path.write_bytes(bytes(data))
    source = tmp_path / "in.csv"
    source.write_text("1,2,3,4,5,6,7,8,9,10\n")
    out = tmp_path / "out"
    result = run_batch(
        "--model-uri",
        str(model_dir),
        "--input",
        str(source),
        "--output",
        str(out / "p"),
    )
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    # The twin is damaged, so `auto` tries the pickle, damaged too: refused.
    assert lines[0].startswith("error: model.pkl of ")
    assert lines[0].endswith(
        "does not match its SHA-256 in the manifest; refusing to unpickle it"
    )
    assert not out.exists()


def test_pinned_version_is_honoured_over_latest(
    model_dir: Path, tmp_path: Path
) -> None:
    from sklearn.linear_model import LogisticRegression

    from tests.support import publish_estimator

    pinned = latest_version(model_dir)
    seed_model = published_model(model_dir)
    rng = np.random.default_rng(3)
    matrix = rng.normal(size=(200, 10)).round(4)
    # A model that disagrees with the seed's on these rows, then promoted.
    labels = 1 - seed_model.predict(matrix)
    newer = publish_estimator(model_dir, LogisticRegression().fit(matrix, labels))
    assert latest_version(model_dir) == newer != pinned
    source = tmp_path / "in.csv"
    lines = ["id," + ",".join(f"x{j}" for j in range(10))]
    lines += [f"{i}," + ",".join(map(repr, r)) for i, r in enumerate(matrix.tolist())]
    source.write_text("\n".join(lines))
    result = run_batch(
        "--model-uri",
        f"{model_dir}/versions/{pinned}",
        "--input",
        str(source),
        "--output",
        str(tmp_path / "p"),
        "--keep",
        "id",
    )
    assert result.returncode == 0, result.stderr
    rows = csv_rows([p.read_text() for p in shards(tmp_path, "p")])
    assert {row["model_version"] for row in rows} == {pinned}
    got = {int(row["id"]): int(row["prediction"]) for row in rows}
    assert [got[i] for i in range(len(matrix))] == seed_model.predict(matrix).tolist()


def test_unsigned_model_is_refused_when_a_signing_key_is_set(
    model_dir: Path, tmp_path: Path
) -> None:
    source = tmp_path / "in.csv"
    source.write_text("1,2,3,4,5,6,7,8,9,10\n")
    result = run_batch(
        "--model-uri",
        str(model_dir),
        "--input",
        str(source),
        "--output",
        str(tmp_path / "out" / "p"),
        env={"MODEL_SIGNING_KEY": "k" * 32},
    )
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1 and "sign" in result.stderr, result.stderr
    assert not (tmp_path / "out").exists()


def test_the_dataflow_package_carries_skserve_and_batch(tmp_path: Path) -> None:
    """`--setup_file ./pyproject.toml`: Beam builds this sdist (the same command,
    `python -m build --no-isolation --sdist`) and pip installs it on each worker."""
    import tarfile

    dist, site = tmp_path / "dist", tmp_path / "site"
    built = subprocess.run(
        [sys.executable, "-m", "build", "--no-isolation", "--sdist", "-o", dist, REPO],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert built.returncode == 0, built.stderr
    (sdist,) = dist.glob("*.tar.gz")
    with tarfile.open(sdist) as archive:
        names = {name.split("/", 1)[1] for name in archive.getnames() if "/" in name}
    for module in ("batch/pipeline.py", "batch/handler.py", "batch/__main__.py"):
        assert module in names
    assert "function/skserve/loader.py" in names
    assert "function/skserve/openapi.json" in names
    pip = [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps"]
    installed = subprocess.run(
        [*pip, "--no-build-isolation", "--target", site, sdist],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert installed.returncode == 0, installed.stderr
    for path in ("batch/pipeline.py", "skserve/loader.py", "skserve/openapi.json"):
        assert (site / path).is_file(), path
