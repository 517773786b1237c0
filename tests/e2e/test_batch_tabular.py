"""`python -m batch` scores typed rows (missing values, text, categories) as the
model predicts on its own DataFrame, and rejects each bad row as the API does."""

from __future__ import annotations

import csv
import io
import json
import os
import pickle
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from tests.e2e.batch_support import counts, csv_rows, jsonl_rows, run_batch, shards
from tests.support import call, published_model, run_train

pytestmark = pytest.mark.e2e

FEATURES = ["income", "age", "plan", "region"]
PLANS = ["basic", "standard", "premium"]
REGIONS = ["n", "s"]
# name -> (its features, the job's extra flags)
MODELS: dict[str, tuple[list[str], list[str]]] = {
    "ct_lr": (FEATURES, ["--probabilities"]),
    "hgb_nan": (["income", "age"], ["--probabilities"]),
    "hgb_cat": (FEATURES, ["--probabilities"]),
    "kmeans": (["income", "age"], []),
    "iso": (["income", "age"], ["--scores"]),
    # A forest compares in float32: a number beyond it is refused by the model
    # alone, after the schema accepted it.
    "rf_ct": (FEATURES, ["--probabilities"]),
}
VALID_ROWS = 2_400  # several blocks of 1,000 rows, some with bad rows in them


def training_frame() -> tuple[pd.DataFrame, pd.Series]:
    """Numbers with gaps, text categories: what the models are fitted on."""
    rng = np.random.default_rng(0)
    n = 400
    frame = pd.DataFrame(
        {
            "income": rng.normal(50, 10, n).round(2),
            "age": rng.integers(18, 80, n).astype(float),
            "plan": rng.choice(PLANS, n),
            "region": rng.choice(REGIONS, n),
        }
    )
    frame.loc[::9, "income"] = np.nan
    frame.loc[::13, "age"] = np.nan
    target = (
        (frame.income.fillna(50) > 50) ^ (frame.plan == "premium") ^ (frame.age < 30)
    ).astype(int)
    return frame, target


def fitted_models() -> dict[str, Any]:
    from sklearn.cluster import KMeans
    from sklearn.compose import ColumnTransformer
    from sklearn.ensemble import (
        HistGradientBoostingClassifier,
        IsolationForest,
        RandomForestClassifier,
    )
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline, make_pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    frame, target = training_frame()
    numbers = frame[["income", "age"]]
    categorical = frame.assign(
        plan=frame.plan.astype("category"), region=frame.region.astype("category")
    )
    pipeline = Pipeline(
        [
            (
                "columns",
                ColumnTransformer(
                    [
                        (
                            "num",
                            make_pipeline(SimpleImputer(), StandardScaler()),
                            ["income", "age"],
                        ),
                        (
                            "cat",
                            OneHotEncoder(handle_unknown="ignore"),
                            ["plan", "region"],
                        ),
                    ]
                ),
            ),
            ("model", LogisticRegression()),
        ]
    )
    filled = numbers.fillna(numbers.median())
    forest = make_pipeline(
        ColumnTransformer(
            [
                ("num", SimpleImputer(), ["income", "age"]),
                ("cat", OneHotEncoder(handle_unknown="ignore"), ["plan", "region"]),
            ]
        ),
        RandomForestClassifier(n_estimators=20, random_state=0),
    )
    return {
        "ct_lr": pipeline.fit(frame, target),
        "hgb_nan": HistGradientBoostingClassifier(random_state=0).fit(numbers, target),
        "hgb_cat": HistGradientBoostingClassifier(
            categorical_features="from_dtype", random_state=0
        ).fit(categorical, target),
        "kmeans": KMeans(3, n_init=1, random_state=0).fit(filled),
        "iso": IsolationForest(n_estimators=50, random_state=0).fit(filled),
        "rf_ct": forest.fit(frame, target),
    }


@pytest.fixture(scope="session")
def tabular_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The five models, each published by `python -m train publish` with the
    training frame (gaps as empty cells) as its holdout."""
    root = tmp_path_factory.mktemp("tabular")
    frame, _ = training_frame()
    holdout = root / "holdout.csv"
    frame.to_csv(holdout, index=False)
    store = root / "store"
    for name, model in fitted_models().items():
        pkl = root / f"{name}.pkl"
        pkl.write_bytes(pickle.dumps(model))
        result = run_train(
            "publish",
            str(pkl),
            "--holdout",
            str(holdout),
            *("--store", str(store), "--name", name),
        )
        assert result.returncode == 0, result.stdout + result.stderr
    return store


# Rows as the user means them (None: missing), the same in CSV and JSON Lines;
# the API decides which of them each model accepts.
HAND_ROWS: list[dict[str, Any]] = [
    {"income": 52.3, "age": 40.0, "plan": "basic", "region": "n"},
    {"income": None, "age": 33.0, "plan": "premium", "region": "s"},
    {"income": 61.0, "age": None, "plan": "standard", "region": "n"},
    {"income": 45.5, "age": 50.0, "plan": "gold", "region": "s"},  # unseen plan
    {"income": None, "age": None, "plan": "basic", "region": "n"},
    {"income": "abc", "age": 30.0, "plan": "basic", "region": "n"},
    {"income": 50.0, "age": 30.0, "plan": None, "region": "n"},
    {"income": 48.0, "age": 44.0, "plan": " basic", "region": "s"},  # unseen
    {"income": 55.0, "age": 61.0, "plan": "premium", "region": "east"},
    {"income": 1e39, "age": 40.0, "plan": "basic", "region": "n"},  # not float32
    {"income": 47.0, "age": "forty", "plan": "basic", "region": "s"},
    {"income": 50.0},  # a short row: the other features are absent
]
# Where the hand rows go among the valid ones (two of them in the first block).
HAND_AT = [3, 500, 1200, 1201, 1500, 2000, 2100, 2200, 2300, 2350, 2390, 2399]


def valid_rows() -> list[dict[str, Any]]:
    rng = np.random.default_rng(5)
    return [
        {
            "income": round(float(rng.normal(50, 12)), 2),
            "age": float(rng.integers(18, 80)),
            "plan": str(rng.choice(PLANS)),
            "region": str(rng.choice(REGIONS)),
        }
        for _ in range(VALID_ROWS)
    ]


def all_rows() -> list[dict[str, Any]]:
    """Every row with its `id` (`h<k>` for HAND_ROWS[k]): the valid ones with
    the hand rows among them."""
    rows = [{"id": f"r{i}", **row} for i, row in enumerate(valid_rows())]
    for k, (at, row) in enumerate(zip(HAND_AT, HAND_ROWS, strict=True)):
        rows.insert(at, {"id": f"h{k}", **row})
    return rows


def cell(value: Any) -> str:
    return "" if value is None else value if isinstance(value, str) else repr(value)


def write_csv(path: Path, rows: list[dict[str, Any]]) -> dict[int, list[str]]:
    """The rows as CSV (missing: an empty cell), a wide row at the end;
    returns each row's cells by line number."""
    header = ["id", *FEATURES, "note"]
    cells_at: dict[int, list[str]] = {}
    lines = [",".join(header)]
    for row in rows:
        cells = [row["id"], *(cell(row[c]) for c in FEATURES if c in row)]
        if len(cells) == len(header) - 1:
            cells.append("x")
        buffer = io.StringIO()
        csv.writer(buffer, lineterminator="").writerow(cells)
        lines.append(buffer.getvalue())
        cells_at[len(lines)] = cells
    lines.append("wide,50,40,basic,n,x,surplus")
    path.write_text("\n".join(lines) + "\n")
    return cells_at


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> dict[int, str]:
    """The rows as JSON objects (missing: null), a malformed line at the end;
    returns each row's text by line number."""
    lines = [json.dumps({**row, "note": "x"}) for row in rows]
    lines.append("{not json")
    path.write_text("\n".join(lines) + "\n")
    return {i + 1: line for i, line in enumerate(lines[:-1])}


def api_verdicts(
    model_dir: Path, names: list[str], rows: list[dict[str, Any]]
) -> dict[str, dict[str, str] | None]:
    """What `POST /predict` answers each hand row as `{"features": row}` (its
    features only, as the job reads them): None when it predicts, else its
    error. The valid rows must all be scored."""
    os.environ["MODEL_URI"] = str(model_dir)
    verdicts: dict[str, dict[str, str] | None] = {}
    for row in rows:
        if row["id"].startswith("h"):
            features = {name: row[name] for name in names if name in row}
            answer = call(json={"features": features})
            error = None if answer.status_code == 200 else answer.get_json()["error"]
            verdicts[row["id"]] = error
    return verdicts


def expected_frame(
    rows: list[dict[str, Any]], names: list[str], training: pd.DataFrame, name: str
) -> pd.DataFrame:
    """The rows as a DataFrame with the training dtypes: missing -> NaN, and
    the categorical model's columns with the training categories (an unseen
    value is NaN, as pandas makes it)."""
    data: dict[str, Any] = {}
    for column in names:
        values = [row.get(column) for row in rows]
        if column in ("income", "age"):
            data[column] = np.array(
                [np.nan if v is None else v for v in values], dtype=np.float64
            )
        elif name == "hgb_cat":
            categories = training[column].astype("category").cat.categories
            data[column] = pd.Categorical(values, categories=categories)
        else:
            data[column] = np.array(
                [np.nan if v is None else v for v in values], dtype=object
            )
    return pd.DataFrame(data)


@pytest.mark.parametrize("input_format", ["csv", "jsonl"])
@pytest.mark.parametrize("name", list(MODELS))
def test_typed_rows_score_as_the_models_own_predict_or_get_the_apis_message(
    tabular_store: Path, tmp_path: Path, name: str, input_format: str
) -> None:
    names, flags = MODELS[name]
    model_dir = tabular_store / name
    rows = all_rows()
    data = tmp_path / f"rows.{input_format}"
    if input_format == "csv":
        written: dict[int, Any] = write_csv(data, rows)
    else:
        written = write_jsonl(data, rows)
    out_format = "jsonl" if input_format == "csv" else "csv"  # both writers
    result = run_batch(
        *("--model-uri", str(model_dir), "--input", str(data)),
        *("--output", str(tmp_path / "out" / "p"), "--keep", "id"),
        *("--format", out_format, *flags),
    )
    assert result.returncode == 0, result.stderr

    # Which rows the API accepts, and its message for each it refuses.
    verdicts = api_verdicts(model_dir, names, rows)
    refused = {i for i, error in verdicts.items() if error is not None}
    read, scored, rejected = counts(result)
    assert read == len(rows) + 1 == scored + rejected  # + the wide/malformed line
    assert rejected == len(refused) + 1

    texts = [p.read_text() for p in shards(tmp_path / "out", "p")]
    out = jsonl_rows(texts) if out_format == "jsonl" else csv_rows(texts)
    by_id = {row["id"]: row for row in out}
    assert len(by_id) == len(out) == scored
    accepted = [row for row in rows if row["id"] not in refused]
    assert sorted(by_id) == sorted(row["id"] for row in accepted)

    model = published_model(model_dir)
    training, _ = training_frame()
    frame = expected_frame(accepted, names, training, name)
    # IsolationForest casts to float32 as it does when serving: 1e39 becomes
    # inf there too (with numpy's overflow warning, an error under pytest).
    with np.errstate(over="ignore"):
        labels = model.predict(frame).tolist()
    got = [by_id[row["id"]]["prediction"] for row in accepted]
    if out_format == "csv":
        got = [int(value) for value in got]  # every label here is an integer
    assert got == labels
    if "--probabilities" in flags:
        classes = model.classes_.tolist()
        proba = [
            [float(by_id[row["id"]][f"probability_{c}"]) for c in classes]
            for row in accepted
        ]
        np.testing.assert_allclose(proba, model.predict_proba(frame), atol=1e-6)
    if "--scores" in flags:
        scores = [float(by_id[row["id"]]["score"]) for row in accepted]
        with np.errstate(over="ignore"):
            expected = model.decision_function(frame)
        np.testing.assert_allclose(scores, expected, atol=1e-9)
        assert set(labels) == {1, -1}
    columns = ["id", "prediction"]
    if "--probabilities" in flags:
        columns += [f"probability_{c}" for c in model.classes_.tolist()]
    if "--scores" in flags:
        columns.append("score")
    assert list(out[0]) == [*columns, "model_version"]

    # Each refused row, with its line, the API's code and message, and the row.
    errors = jsonl_rows([p.read_text() for p in shards(tmp_path / "out", "p-errors")])
    assert {error["file"] for error in errors} == {str(data)}
    line_of = {row["id"]: i + 2 for i, row in enumerate(rows)}  # CSV: a header
    if input_format == "jsonl":
        line_of = {row["id"]: i + 1 for i, row in enumerate(rows)}
    by_line = {error["line"]: error for error in errors}
    last = len(rows) + (2 if input_format == "csv" else 1)
    assert sorted(by_line) == sorted([*(line_of[i] for i in refused), last])
    for row_id in refused:
        error = by_line[line_of[row_id]]
        assert {"code": error["code"], "message": error["error"]} == verdicts[row_id]
        if error["error"].startswith("the model cannot use these values"):
            # Refused by the model itself: its values, in the schema's order.
            row = next(r for r in rows if r["id"] == row_id)
            assert error["row"] == [row[n] for n in names]
        else:
            assert error["row"] == written[line_of[row_id]]
    if input_format == "csv":
        assert (
            by_line[last]["error"] == "line has 7 cells, but the header has 6 columns"
        )
        assert by_line[last]["row"] == [
            "wide",
            "50",
            "40",
            "basic",
            "n",
            "x",
            "surplus",
        ]
    else:
        assert by_line[last]["code"] == "invalid_json"
        assert by_line[last]["row"] == "{not json"

    # What each kind of model must make of the hand rows.
    messages = [
        None if verdicts[f"h{k}"] is None else verdicts[f"h{k}"]["message"]
        for k in range(len(HAND_ROWS))
    ]
    # KMeans cannot take a missing number; the others can (the imputer, and
    # the trees' own missing-value support).
    if name != "kmeans":
        assert messages[1] is None and messages[2] is None and messages[4] is None
    else:
        assert messages[1] == (
            "features[0] ('income') may not be missing: this model needs a finite "
            "number there, got null"
        )
    if name in ("ct_lr", "hgb_cat", "rf_ct"):  # unseen categories are fine
        assert messages[3] is None and messages[7] is None and messages[8] is None
    if name == "ct_lr":
        assert messages[6] == (
            "features[2] ('plan') may not be missing: this model needs a string "
            "there, got null"
        )
    if name == "hgb_cat":
        assert messages[6] is None
    if name == "rf_ct":
        assert (messages[9] or "").startswith(
            "the model cannot use these values: Input X contains infinity or a "
            "value too large for dtype('float32')"
        )
    else:
        assert messages[9] is None
    assert messages[5] == "features[0] ('income') must be a finite number, got \"abc\""
    assert messages[10] == "features[1] ('age') must be a finite number, got \"forty\""
    assert (messages[11] or "").startswith("features: missing 'age'")
