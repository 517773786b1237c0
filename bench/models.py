"""The models the servers answer for: trained, pickled, published and asked for
their own labels in a child process, so the bench itself never imports numpy,
pandas or scikit-learn."""

from __future__ import annotations

import multiprocessing
import pickle
import random
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

from bench.common import (
    N_FEATURES,
    PAYLOAD,
    ROOT,
    TRAIN_TIMEOUT_SECONDS,
    BenchError,
    Workload,
)

# The tutorial's training data and model (its train_and_save_model.py).
SEED_DATA = {"n_samples": 1000, "n_features": 10, "n_informative": 5}
SEED_TREES = 100
RANDOM_STATE = 42
# The typed models: their training data, and the one-row requests they are sent.
# The first row is the cold start's and wrk's; the sequential requests alternate
# between both, so half of them carry a null in each nullable text and number
# column.
CUSTOMERS = ROOT / "train" / "examples" / "customers.csv"
CUSTOMERS_TARGET = "churned"
TYPED_ROWS = (
    {"income": 52000, "age": 41, "plan": "basic", "region": "north"},
    {"income": None, "age": 41, "plan": None, "region": "north"},
)
# --models name: (server name prefix, short title, what the model is).
TYPED_MODELS = {
    "canonical": (
        "CT",
        "ColumnTransformer + RandomForest",
        "Pipeline(ColumnTransformer([SimpleImputer + StandardScaler on income, age; "
        'OneHotEncoder(handle_unknown="ignore") on plan, region]), '
        "RandomForestClassifier(n_estimators=100, random_state=42))",
    ),
    "hgb": (
        "HGB",
        "HistGradientBoosting, categories",
        'HistGradientBoostingClassifier(categorical_features="from_dtype", '
        "random_state=42) with plan and region as pandas categories",
    ),
}
# --models name: trees of the tutorial's RandomForest fitted on its own data.
# 100 trees is the tutorial's model itself (the SKLEARN and ONNX servers).
FORESTS = {"forest400": 400, "forest1000": 1000}
MODELS = (*TYPED_MODELS, *FORESTS)
DEFAULT_MODELS = MODELS
MODEL_TITLES = {
    "seed": "the tutorial's RandomForest",
    **{name: title for name, (_, title, _) in TYPED_MODELS.items()},
    **{name: f"RandomForest, {trees:,} trees" for name, trees in FORESTS.items()},
}
# Values the typed batches draw from: known ones, plus an unseen plan ("gold")
# that both models accept (OneHotEncoder ignores it; HistGradientBoosting
# treats it as missing).
PLANS = ("basic", "standard", "premium")
REGIONS = ("east", "north", "south", "west")


def prefix(model: str) -> str:
    """The server-name prefix of `model`'s servers ("" for the tutorial's)."""
    if model == "seed":
        return ""
    if model in FORESTS:
        return f"RF{FORESTS[model]}_"
    return f"{TYPED_MODELS[model][0]}_"


def trees(model: str) -> int | None:
    """How many trees `model`'s RandomForest has (None: not one of the forests)."""
    return SEED_TREES if model == "seed" else FORESTS.get(model)


def train_seed(directory: Path, n_trees: int = SEED_TREES) -> Path:
    """The tutorial's train_and_save_model.py, writing its pickle into
    `directory`; with `n_trees`, the same forest grown to that many trees."""
    from sklearn.datasets import make_classification
    from sklearn.ensemble import RandomForestClassifier

    X, y = make_classification(**SEED_DATA, random_state=RANDOM_STATE)
    model = RandomForestClassifier(n_estimators=n_trees, random_state=RANDOM_STATE)
    model.fit(X, y)
    directory.mkdir(parents=True, exist_ok=True)
    name = "random_forest_model" if n_trees == SEED_TREES else f"forest{n_trees}"
    filename = directory / f"{name}.pkl"
    with open(filename, "wb") as file:
        pickle.dump(model, file)
    return filename


def reference_labels(pickle_path: Path, rows: list[list[float]]) -> list[int]:
    """A numeric model's labels for `rows`, predicted in this process."""
    import numpy as np

    with open(pickle_path, "rb") as file:
        model = pickle.load(file)
    return [int(label) for label in model.predict(np.array(rows, dtype=np.float64))]


def batch_rows(count: int) -> list[list[float]]:
    """`count` fixed pseudo-random rows on the scale of the seed's training data."""
    draw = random.Random(42)
    return [
        [round(draw.gauss(0.0, 2.0), 6) for _ in range(N_FEATURES)]
        for _ in range(count)
    ]


def typed_batch_rows(count: int) -> list[dict[str, Any]]:
    """`count` fixed pseudo-random customers on the scale of customers.csv, as
    objects keyed by column: about 10% miss their income, 10% their plan, and 3%
    have a plan the models never saw."""
    draw = random.Random(42)
    rows = []
    for _ in range(count):
        income = max(15_000, round(draw.gauss(60_000, 20_000) / 100) * 100)
        pick = draw.random()
        plan = None if pick < 0.10 else "gold" if pick < 0.13 else draw.choice(PLANS)
        rows.append(
            {
                "income": None if draw.random() < 0.10 else income,
                "age": draw.randint(18, 80),
                "plan": plan,
                "region": draw.choice(REGIONS),
            }
        )
    return rows


def _customers() -> tuple[Any, Any]:
    """customers.csv as pandas reads it: (features, target); empty cells are NaN."""
    import pandas as pd

    data = pd.read_csv(CUSTOMERS)
    return data.drop(columns=CUSTOMERS_TARGET), data[CUSTOMERS_TARGET]


def fit_typed(name: str) -> tuple[Any, Any]:
    """(the fitted `name` model of TYPED_MODELS, the frame it was fitted on)."""
    X, y = _customers()
    numbers = X.select_dtypes("number").columns.tolist()
    texts = X.select_dtypes("object").columns.tolist()
    if name == "canonical":
        from sklearn.compose import ColumnTransformer
        from sklearn.ensemble import RandomForestClassifier
        from sklearn.impute import SimpleImputer
        from sklearn.pipeline import Pipeline, make_pipeline
        from sklearn.preprocessing import OneHotEncoder, StandardScaler

        preprocess = ColumnTransformer(
            [
                ("num", make_pipeline(SimpleImputer(), StandardScaler()), numbers),
                ("cat", OneHotEncoder(handle_unknown="ignore"), texts),
            ]
        )
        forest = RandomForestClassifier(n_estimators=100, random_state=42)
        model = Pipeline([("preprocess", preprocess), ("classify", forest)])
        return model.fit(X, y), X
    from sklearn.ensemble import HistGradientBoostingClassifier

    X = X.astype({column: "category" for column in texts})
    model = HistGradientBoostingClassifier(
        categorical_features="from_dtype", random_state=42
    )
    return model.fit(X, y), X


def typed_frame(rows: list[dict[str, Any]], training: Any) -> Any:
    """`rows` as a DataFrame with the training frame's columns and dtypes, as
    pandas would hold them: missing is NaN, an unseen category is missing."""
    import numpy as np
    import pandas as pd

    data: dict[str, Any] = {}
    for name, dtype in training.dtypes.items():
        values = [row[name] for row in rows]
        if isinstance(dtype, pd.CategoricalDtype):
            data[name] = pd.Categorical(values, categories=dtype.categories)
        elif dtype.kind == "O":
            data[name] = np.array([np.nan if v is None else v for v in values], object)
        else:
            column = np.array([np.nan if v is None else v for v in values], float)
            # Integers stay integers unless a value is missing, as in read_csv.
            data[name] = column if np.isnan(column).any() else column.astype(dtype)
    return pd.DataFrame(data)


def train_typed(
    name: str, directory: Path, rows: list[dict[str, Any]]
) -> tuple[Path, list[Any]]:
    """Fit and pickle the `name` model into `directory`; return the pickle and
    its own labels for `rows`, predicted on a frame with the training dtypes."""
    model, training = fit_typed(name)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{name}.pkl"
    with open(path, "wb") as file:
        pickle.dump(model, file)
    return path, model.predict(typed_frame(rows, training)).tolist()


def prepare_models(
    directory: Path, rows: int, models: list[str]
) -> tuple[dict[str, Path], dict[str, Workload]]:
    """Train the seed model and `models`, and predict every reference label, in
    a child process: (pickles, workloads), keyed "seed" and by model.

    The benchmark process itself never imports numpy, pandas or scikit-learn: it
    stays a light client, and shares no library pages with the servers it
    measures.
    """
    seed_batch = batch_rows(rows)
    typed_batch = typed_batch_rows(rows)
    payloads = [{"features": row} for row in TYPED_ROWS]
    single = len(TYPED_ROWS)
    context = multiprocessing.get_context("spawn")
    pickles: dict[str, Path] = {}
    workloads: dict[str, Workload] = {}
    numeric = [("seed", SEED_TREES)]
    numeric += [(name, FORESTS[name]) for name in models if name in FORESTS]
    with context.Pool(1) as pool:
        try:
            for name, n_trees in numeric:
                pickles[name] = pool.apply_async(train_seed, (directory, n_trees)).get(
                    TRAIN_TIMEOUT_SECONDS
                )
                labels = pool.apply_async(
                    reference_labels,
                    (pickles[name], [PAYLOAD["features"], *seed_batch]),
                ).get(TRAIN_TIMEOUT_SECONDS)
                workloads[name] = Workload(
                    [PAYLOAD], labels[:1], seed_batch, labels[1:]
                )
            for name in models:
                if name not in TYPED_MODELS:
                    continue
                pickles[name], labels = pool.apply_async(
                    train_typed, (name, directory, [*TYPED_ROWS, *typed_batch])
                ).get(TRAIN_TIMEOUT_SECONDS)
                workloads[name] = Workload(
                    payloads, labels[:single], typed_batch, labels[single:]
                )
        except multiprocessing.TimeoutError:
            raise BenchError(
                f"training the models took over {TRAIN_TIMEOUT_SECONDS}s"
            ) from None
    return pickles, workloads


def publish(store: Path, name: str, pickle_path: Path | None = None) -> str:
    """Publish into `store` as `name`; return its MODEL_URI.

    Without `pickle_path`: `python -m train --store STORE --name NAME`, which fits
    the tutorial's model. With a typed model's pickle: `python -m train publish
    FILE --holdout customers.csv ...`, so the manifest carries the schema
    inferred from real rows and the twin's parity gate runs on them; with a
    forest's, `python -m train publish FILE ...` (gate rows from the model's own
    scales and splits). BenchError unless it published an ONNX twin too: the
    ONNX server needs it.
    """
    command = [sys.executable, "-m", "train"]
    if pickle_path is not None:
        command += ["publish", str(pickle_path)]
        if name in TYPED_MODELS:
            command += ["--holdout", str(CUSTOMERS)]
    command += ["--store", str(store), "--name", name]
    try:
        done = subprocess.run(
            command,
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=TRAIN_TIMEOUT_SECONDS,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise BenchError(
            f"{shlex.join(command)} took over {TRAIN_TIMEOUT_SECONDS}s"
        ) from None
    lines = done.stdout.splitlines()
    uris = [line.split("=", 1)[1] for line in lines if line.startswith("MODEL_URI=")]
    if done.returncode != 0 or not uris:
        raise BenchError(
            f"{shlex.join(command)} failed ({done.returncode}):\n"
            f"{done.stdout}{done.stderr}"
        )
    if not any(line.startswith("with ONNX twin") for line in lines):
        raise BenchError(
            f"{shlex.join(command)} published no ONNX twin, so the ONNX server "
            f"cannot be measured:\n{done.stdout}{done.stderr}"
        )
    return uris[-1]


def artifact_sizes(uri: str) -> dict[str, int]:
    """Bytes of each file the latest version under `uri` (a folder) lists in its
    manifest, read as JSON without the function's packages."""
    import json

    root = Path(uri.removeprefix("file://"))
    latest = (root / "LATEST").read_text().strip()
    try:  # LATEST holds a version id, or a JSON pointer naming one
        version = json.loads(latest)["version"]
    except (ValueError, TypeError, KeyError):
        version = latest
    manifest = json.loads((root / "versions" / version / "manifest.json").read_text())
    return {
        name: int(entry["bytes"])
        for name, entry in manifest.get("files", {}).items()
        if isinstance(entry, dict) and isinstance(entry.get("bytes"), int)
    }
