"""The page and client send typed rows: forms and CSV cells follow the input schema."""

from __future__ import annotations

import contextlib
import csv
import json
import pickle
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import requests
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.ui import Select
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from tests.e2e.web_support import (
    StaticSite,
    browser_url,
    download,
    open_page,
    request_lines,
    run_js,
    save_screenshot,
    start_chromium,
    visible,
)
from tests.support import FunctionServer, published_model, run_train

pytestmark = pytest.mark.e2e

PLANS = ["basic", "standard", "premium"]
REGIONS = ["north", "south", "east"]
CITIES = ["Lyon", "Paris", "Nice"]
HOUSE_COLUMNS = ["area", "rooms", "floors", "garden", "city"]
MAY_BE_EMPTY = "may be left empty"
# The functions serve each model's ONNX twin where it has one (MODEL_RUNTIME=auto):
# probabilities agree with the model's own within the twin's parity gate.
TOLERANCE = 1e-6
FEATURES_OF_CUSTOMERS = ["income", "age", "plan", "region"]


def customers(rows: int, seed: int) -> pd.DataFrame:
    """Income and age with gaps (NaN), plan and region as text."""
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(
        {
            "income": rng.normal(50, 12, rows).round(2),
            "age": rng.integers(18, 80, rows).astype(float),
            "plan": rng.choice(PLANS, rows).astype(object),
            "region": rng.choice(REGIONS, rows).astype(object),
        }
    )
    frame.loc[::9, "income"] = np.nan
    frame.loc[::11, "age"] = np.nan
    return frame


def churn(frame: pd.DataFrame) -> np.ndarray:
    """String labels that depend on every column, so each one moves the answer."""
    score = (
        frame["income"].fillna(50) / 10
        + (frame["plan"] == "premium") * 2.0
        - (frame["region"] == "south") * 1.5
        + frame["age"].fillna(40) / 30
    )
    noise = np.random.default_rng(1).normal(0, 0.7, len(frame))
    return np.where(score + noise > 7.2, "leaves", "stays")


def houses(rows: int, seed: int) -> pd.DataFrame:
    """A number, an integer, integer-coded floors, a boolean and a city."""
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "area": rng.uniform(30, 250, rows).round(1),
            "rooms": rng.integers(1, 7, rows),
            "floors": rng.integers(1, 4, rows),
            "garden": rng.random(rows) < 0.4,
            "city": rng.choice(CITIES, rows).astype(object),
        }
    )


def price(frame: pd.DataFrame) -> np.ndarray:
    score = (
        frame["area"] / 50
        + frame["rooms"] * 0.5
        + frame["garden"]
        + (frame["city"] == "Paris") * 1.5
        - frame["floors"] * 0.3
    )
    return np.where(score > 4.5, "dear", "cheap")


@dataclass
class Served:
    """A model published with the CLI and served by functions-framework."""

    name: str
    model: Any  # the estimator exactly as published
    train: pd.DataFrame  # its training frame: the columns and dtypes it knows
    server: FunctionServer
    metadata: dict[str, Any]

    def frame(self, rows: list[list[Any]]) -> pd.DataFrame:
        """Rows (None = missing) as the model was fitted: the training dtypes
        (missing -> NaN; a category dtype holds an unseen value as missing)."""
        frame = pd.DataFrame(rows, columns=list(self.train.columns), dtype=object)
        return frame.astype(self.train.dtypes.to_dict())


def close(got: Any, want: np.ndarray) -> bool:
    """Probabilities as the served runtime gives them, against the model's own."""
    got = np.asarray(got, dtype=float)
    return got.shape == want.shape and float(np.abs(got - want).max()) <= TOLERANCE


def publish_with_cli(
    folder: Path, name: str, model: Any, train: pd.DataFrame, *extra: str
) -> Path:
    """`python -m train publish` with the training rows as the holdout CSV
    (empty cells where values are missing); the model's folder in the store."""
    pickled = folder / f"{name}.pkl"
    pickled.write_bytes(pickle.dumps(model))
    holdout = folder / f"{name}-holdout.csv"
    train.to_csv(holdout, index=False)
    store = folder / "store"
    result = run_train(
        "publish", str(pickled), "--holdout", str(holdout),
        "--store", str(store), "--name", name, *extra,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    return store / name


def canonical_pipeline() -> tuple[Any, pd.DataFrame]:
    train = customers(400, seed=7)
    pre = ColumnTransformer(
        [
            (
                "num",
                make_pipeline(SimpleImputer(), StandardScaler()),
                ["income", "age"],
            ),
            ("cat", OneHotEncoder(handle_unknown="ignore"), ["plan", "region"]),
        ]
    )
    return Pipeline([("pre", pre), ("clf", LogisticRegression())]).fit(
        train, churn(train)
    ), train


def native_categories() -> tuple[Any, pd.DataFrame]:
    train = customers(400, seed=8)
    train.loc[::7, "plan"] = np.nan
    train.loc[::13, "region"] = np.nan
    labels = churn(train)
    train["plan"] = train["plan"].astype(pd.CategoricalDtype(sorted(PLANS)))
    train["region"] = train["region"].astype(pd.CategoricalDtype(sorted(REGIONS)))
    model = HistGradientBoostingClassifier(
        categorical_features="from_dtype", random_state=0
    )
    return model.fit(train, labels), train


def typed_houses() -> tuple[Any, pd.DataFrame]:
    train = houses(300, seed=5)
    pre = ColumnTransformer(
        [
            ("num", StandardScaler(), ["area", "rooms"]),
            (
                "cat",
                OneHotEncoder(handle_unknown="error"),
                ["floors", "garden", "city"],
            ),
        ]
    )
    return Pipeline([("pre", pre), ("clf", LogisticRegression())]).fit(
        train, price(train)
    ), train


@pytest.fixture(scope="module")
def site() -> Iterator[StaticSite]:
    served = StaticSite()
    yield served
    served.stop()


@pytest.fixture(scope="module")
def downloads(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("downloads")


@pytest.fixture(scope="module")
def browser(downloads: Path) -> Iterator[WebDriver]:
    driver = start_chromium(downloads)
    yield driver
    driver.quit()


@pytest.fixture(scope="module")
def served(
    site: StaticSite, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, Served]]:
    """The three models, each published with the CLI and served on its own port."""
    folder = tmp_path_factory.mktemp("typed")
    # The CLI infers number kinds from a CSV; "rooms" is told to be an integer.
    schema_file = folder / "houses-schema.json"
    schema_file.write_text(json.dumps({"columns": {"rooms": {"kind": "integer"}}}))
    made = {
        "pipeline": (*canonical_pipeline(), ()),
        "native": (*native_categories(), ()),
        "houses": (*typed_houses(), ("--schema", str(schema_file))),
    }
    with contextlib.ExitStack() as stack:
        running = {}
        for name, (model, train, extra) in made.items():
            model_dir = publish_with_cli(folder, name, model, train, *extra)
            env = {"MODEL_URI": str(model_dir), "CORS_ALLOW_ORIGINS": site.origin}
            server = stack.enter_context(FunctionServer(env, folder))
            metadata = requests.get(server.url + "/metadata", timeout=60).json()
            running[name] = Served(
                name, published_model(model_dir), train, server, metadata
            )
        yield running


def connect(driver: WebDriver, site: StaticSite, model: Served) -> None:
    open_page(driver, site, url=browser_url(model.server))
    visible(driver, "single")


def controls(driver: WebDriver) -> list[dict[str, Any]]:
    """Each field of the "Predict one row" form as a person sees it."""
    return driver.execute_script(
        """
        return [...document.querySelectorAll('#features > .field')].map((field) => {
          const control = field.querySelector('select, input');
          const select = control.tagName === 'SELECT';
          const other = field.querySelector('.other');
          const chosen = select ? control.options[control.selectedIndex] : null;
          return {
            label: field.querySelector('label').textContent,
            control: select ? 'select' : `${control.type} step ${control.step}`,
            options: select ? [...control.options].map((o) => o.textContent) : null,
            empty: field.querySelector('.hint')?.textContent ?? null,
            value: select ? chosen.textContent : control.value,
            other: other && !other.hidden ? other.querySelector('input').value : null,
          };
        });
        """
    )


def predictions_shown(driver: WebDriver) -> tuple[str, list[str], list[float]]:
    """The prediction, and the classes and probabilities its bars show."""
    bars = driver.find_elements(By.CSS_SELECTOR, "#bars li")
    return (
        driver.find_element(By.ID, "prediction").text,
        [bar.get_attribute("data-class") for bar in bars],
        [float(bar.get_attribute("data-probability")) for bar in bars],
    )


def fill(driver: WebDriver, name: str, text: str) -> None:
    field = driver.find_element(By.NAME, name)
    field.clear()
    if text:
        field.send_keys(text)


def choose(driver: WebDriver, name: str, choice: str, other: str | None = None) -> None:
    Select(driver.find_element(By.NAME, name)).select_by_visible_text(choice)
    if other is not None:
        fill(driver, f"{name} (other)", other)


def submit(driver: WebDriver, form: str) -> None:
    driver.find_element(By.CSS_SELECTOR, f"#{form} button").click()


def upload(driver: WebDriver, path: Path) -> None:
    driver.find_element(By.ID, "csv").send_keys(str(path))
    submit(driver, "batch-form")


def write_csv(path: Path, header: list[str], rows: list[list[str]]) -> Path:
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    return path


# The form


EXPECTED_FORMS = {
    # (label, control, options, may be left empty)
    "pipeline": [
        ("income", "number step any", None, True),
        ("age", "number step any", None, True),
        ("plan", "select", ["basic", "premium", "standard", "other…"], False),
        ("region", "select", ["east", "north", "south", "other…"], False),
    ],
    "native": [
        ("income", "number step any", None, True),
        ("age", "number step any", None, True),
        (
            "plan",
            "select",
            ["(missing)", "basic", "premium", "standard", "other…"],
            True,
        ),
        ("region", "select", ["(missing)", "east", "north", "south", "other…"], True),
    ],
    "houses": [
        ("area", "number step any", None, False),
        ("rooms", "number step 1", None, False),
        ("floors", "select", ["1", "2", "3"], False),
        ("garden", "select", ["false", "true"], False),
        ("city", "select", ["Lyon", "Nice", "Paris"], False),
    ],
}


@pytest.mark.parametrize("name", list(EXPECTED_FORMS))
def test_form_has_a_control_per_schema_column_and_starts_from_the_example(
    browser: WebDriver, site: StaticSite, served: dict[str, Served], name: str
) -> None:
    model = served[name]
    connect(browser, site, model)

    fields = controls(browser)

    seen = [(f["label"], f["control"], f["options"], f["empty"]) for f in fields]
    assert seen == [
        (label, control, options, MAY_BE_EMPTY if empty else None)
        for label, control, options, empty in EXPECTED_FORMS[name]
    ]
    # The same facts as GET /metadata gives them: empty only where nullable,
    # "other…" only where unknown categories are accepted.
    schema = model.metadata["input_schema"]["columns"]
    assert [f["empty"] is not None for f in fields] == [c["nullable"] for c in schema]
    assert [f["options"] is not None and "other…" in f["options"] for f in fields] == [
        c.get("unknown", False) and c["kind"] != "boolean" for c in schema
    ]
    example = model.metadata["example"]
    assert len(example) == len(schema) and None not in example
    shown = []
    for field, value in zip(fields, example, strict=True):
        if field["options"] is None:
            shown.append(float(field["value"]) == value)
        else:
            shown.append(field["value"] == json.dumps(value).strip('"'))
    assert all(shown), list(zip(fields, example, strict=True))
    assert all(field["other"] is None for field in fields)


@pytest.mark.parametrize(
    ("name", "region_choice", "region"),
    [("pipeline", "south", "south"), ("native", "(missing)", None)],
    ids=["pipeline", "native-missing-region"],
)
def test_one_row_with_an_empty_field_and_a_typed_unknown_plan_matches_the_model(
    browser: WebDriver,
    site: StaticSite,
    served: dict[str, Served],
    name: str,
    region_choice: str,
    region: str | None,
) -> None:
    model = served[name]
    connect(browser, site, model)

    fill(browser, "income", "")  # missing: the column may be
    fill(browser, "age", "41")
    choose(browser, "plan", "other…", other="platinum")  # a plan it never saw
    choose(browser, "region", region_choice)
    submit(browser, "predict-form")
    visible(browser, "result")
    save_screenshot(browser, f"web-typed-row-{name}.png")

    frame = model.frame([[None, 41.0, "platinum", region]])
    assert frame["income"].isna().all()
    prediction, classes, probabilities = predictions_shown(browser)
    assert prediction == model.model.predict(frame)[0]
    assert classes == list(model.model.classes_)
    assert close(probabilities, model.model.predict_proba(frame)[0])


def test_integer_boolean_and_coded_choices_are_sent_as_json_values(
    browser: WebDriver, site: StaticSite, served: dict[str, Served]
) -> None:
    model = served["houses"]
    connect(browser, site, model)

    fill(browser, "area", "120.5")
    fill(browser, "rooms", "4")
    choose(browser, "floors", "3")
    choose(browser, "garden", "true")
    choose(browser, "city", "Nice")
    submit(browser, "predict-form")
    visible(browser, "result")

    frame = model.frame([[120.5, 4, 3, True, "Nice"]])
    prediction, _, probabilities = predictions_shown(browser)
    assert prediction == model.model.predict(frame)[0]
    assert close(probabilities, model.model.predict_proba(frame)[0])


@pytest.mark.parametrize(
    ("name", "field", "text", "message"),
    [
        (
            "houses",
            "area",
            "",
            "area may not be left empty: this model needs a number there",
        ),
        (
            "houses",
            "rooms",
            "",
            "rooms may not be left empty: this model needs a whole number there",
        ),
        ("houses", "rooms", "2.5", "rooms must be a whole number, got 2.5"),
        (
            "pipeline",
            "plan (other)",
            "",
            "plan may not be left empty: this model needs a string there",
        ),
    ],
    ids=["empty-area", "empty-rooms", "fractional-rooms", "empty-other-plan"],
)
def test_a_field_the_model_needs_is_refused_in_words_without_a_request(
    browser: WebDriver,
    site: StaticSite,
    served: dict[str, Served],
    name: str,
    field: str,
    text: str,
    message: str,
) -> None:
    model = served[name]
    connect(browser, site, model)
    before = len(request_lines(model.server, "POST /predict 200"))
    before += len(request_lines(model.server, "POST /predict 400"))

    if field.endswith(" (other)"):
        choose(browser, field.removesuffix(" (other)"), "other…")
    fill(browser, field, text)
    submit(browser, "predict-form")

    error = visible(browser, "predict-error", errors=False).text
    assert error == f"Check the form: {message}"
    assert browser.switch_to.active_element.get_attribute("name") == field
    assert not browser.find_element(By.ID, "result").is_displayed()
    after = len(request_lines(model.server, "POST /predict 200"))
    after += len(request_lines(model.server, "POST /predict 400"))
    assert after == before  # refused in the page: nothing was sent


# CSV files


def csv_cells(value: Any) -> str:
    return (
        ""
        if value is None or (isinstance(value, float) and np.isnan(value))
        else str(value)
    )


@pytest.mark.parametrize("name", ["pipeline", "native"])
def test_csv_with_empty_cells_unseen_categories_and_text_scores_like_the_model(
    browser: WebDriver,
    site: StaticSite,
    served: dict[str, Served],
    downloads: Path,
    tmp_path: Path,
    name: str,
) -> None:
    model = served[name]
    data = customers(40, seed=31)
    if name == "native":  # gaps in the category columns too
        data.loc[::5, "plan"] = None
        data.loc[::6, "region"] = None
    rows = [[csv_cells(v) for v in row] for row in data.itertuples(index=False)]
    # Unseen categories, text that looks like a number, and spaces that make
    # another category than the trimmed word: all sent exactly as written.
    rows += [
        ["", "", "platinum", "south"],
        ["61.5", "", "basic", "007"],
        ["", "33", "Basic", " south"],
        ["48", "70", "premium", "north "],
    ]
    header = ["region", "id", "plan", "age", "income"]  # any order, an extra column
    written = [[row[3], f"c-{i}", row[2], row[1], row[0]] for i, row in enumerate(rows)]
    path = write_csv(tmp_path / "customers.csv", header, written)
    connect(browser, site, model)

    upload(browser, path)
    visible(browser, "batch-result", timeout=40)
    with download(browser, downloads).open(newline="") as handle:
        table = list(csv.DictReader(handle))

    sent = [
        [
            float(r[0]) if r[0] else None,
            float(r[1]) if r[1] else None,
            r[2] or None,
            r[3] or None,
        ]
        for r in rows
    ]
    frame = model.frame(sent)
    assert len(table) == len(rows)
    # The download echoes each row as it was sent: text exact, gaps empty.
    assert [[line[c] for c in ("plan", "region")] for line in table] == [
        [r[2], r[3]] for r in rows
    ]
    assert [
        [float(line[c]) if line[c] else None for c in ("income", "age")]
        for line in table
    ] == [r[:2] for r in sent]
    assert [line["prediction"] for line in table] == model.model.predict(frame).tolist()
    classes = list(model.model.classes_)
    probabilities = [
        [float(line[f"probability_{c}"]) for c in classes] for line in table
    ]
    assert close(probabilities, model.model.predict_proba(frame))
    note = browser.find_element(By.ID, "table-note").text
    assert "Ignored columns: id" in note
    shown = browser.execute_script(
        "return [...document.querySelectorAll('#results tbody tr')]"
        ".map((tr) => [...tr.cells].slice(1, 5).map((td) => td.textContent));"
    )
    assert shown[len(data)] == ["", "", "platinum", "south"]


def test_csv_download_defuses_formula_text_but_keeps_numbers_and_number_text(
    browser: WebDriver,
    site: StaticSite,
    served: dict[str, Served],
    downloads: Path,
    tmp_path: Path,
) -> None:
    model = served["pipeline"]  # plan and region take any text
    rows = [
        ["-1.5", "40", "=cmd|' /C calc'!A0", "@SUM(1)"],
        ["52", "-3", '+HYPERLINK("http://evil.example","x")', "-1.5"],
        ["", "33", "-2+3", "\t=1+1"],
        ["1e-3", "", "basic", "north;=1+1"],
    ]
    path = write_csv(tmp_path / "formulas.csv", FEATURES_OF_CUSTOMERS, rows)
    connect(browser, site, model)

    upload(browser, path)
    visible(browser, "batch-result", timeout=40)
    with download(browser, downloads).open(newline="") as handle:
        table = list(csv.DictReader(handle))

    sent = [
        [float(r[0]) if r[0] else None, float(r[1]) if r[1] else None, r[2], r[3]]
        for r in rows
    ]
    # Scored as written: the model saw the text itself.
    assert [line["prediction"] for line in table] == model.model.predict(
        model.frame(sent)
    ).tolist()
    assert [[line["plan"], line["region"]] for line in table] == [
        ["'=cmd|' /C calc'!A0", "'@SUM(1)"],
        ['\'+HYPERLINK("http://evil.example","x")', "-1.5"],
        ["'-2+3", "'\t=1+1"],
        ["basic", "north;=1+1"],
    ]
    assert [[line["income"], line["age"]] for line in table] == [
        ["-1.5", "40"],
        ["52", "-3"],
        ["", "33"],
        ["0.001", ""],
    ]
    shown = browser.execute_script(
        "return [...document.querySelectorAll('#results tbody tr')]"
        ".map((tr) => [...tr.cells].slice(3, 5).map((td) => td.textContent));"
    )
    assert shown[0] == ["=cmd|' /C calc'!A0", "@SUM(1)"]  # the page shows text


@pytest.mark.parametrize(
    ("name", "header", "rows", "message"),
    [
        (
            "pipeline",
            ["income", "age", "plan", "region"],
            [["50", "40", "basic", "north"], ["51", "", "", "south"]],
            'line 3, column "plan": empty, but this model needs a string there '
            "(it may not be missing)",
        ),
        (
            "pipeline",
            ["plan", "region", "income", "age"],
            [
                ["basic", "north", "50", "40"],
                ["basic", "east", "", ""],
                ["premium", "south", "abc", "30"],
            ],
            'line 4, column "income": "abc" is not a number',
        ),
        (
            "houses",
            HOUSE_COLUMNS,
            [["120", "3", "4", "true", "Lyon"]],
            'line 2, column "floors": "4" is not one of 1, 2, 3 '
            "(this model refuses other values)",
        ),
        (
            "houses",
            HOUSE_COLUMNS,
            [["120", "3", "2", "TRUE", "Lyon"], ["90", "2", "1", "yes", "Nice"]],
            'line 3, column "garden": "yes" is not true or false',
        ),
        (
            "houses",
            HOUSE_COLUMNS,
            [["120", "2.5", "2", "false", "Lyon"]],
            'line 2, column "rooms": "2.5" is not a whole number',
        ),
        (
            "houses",
            HOUSE_COLUMNS,
            [["120", "3", "2", "false", "Marseille"]],
            'line 2, column "city": "Marseille" is not one of "Lyon", "Nice", '
            '"Paris" (this model refuses other values)',
        ),
    ],
    ids=[
        "empty-plan",
        "text-income",
        "unknown-floors",
        "yes-garden",
        "fractional-rooms",
        "unknown-city",
    ],
)
def test_csv_bad_row_is_named_by_line_and_column_without_a_request(
    browser: WebDriver,
    site: StaticSite,
    served: dict[str, Served],
    tmp_path: Path,
    name: str,
    header: list[str],
    rows: list[list[str]],
    message: str,
) -> None:
    model = served[name]
    path = write_csv(tmp_path / "bad.csv", header, rows)
    connect(browser, site, model)
    before = len(request_lines(model.server, "POST /predict 200"))

    upload(browser, path)

    error = visible(browser, "batch-error", errors=False).text
    assert error == f"Cannot read the CSV file: {message}"
    assert len(request_lines(model.server, "POST /predict 200")) == before


def test_csv_without_header_takes_typed_cells_in_the_models_order(
    browser: WebDriver,
    site: StaticSite,
    served: dict[str, Served],
    downloads: Path,
    tmp_path: Path,
) -> None:
    model = served["houses"]
    rows = [
        ["120.5", "4", "3", "true", "Nice"],
        ["45", "1", "1", "False", "Lyon"],
        ["230", "6", "2", "TRUE", "Paris"],
    ]
    path = tmp_path / "houses.csv"
    path.write_text("".join(",".join(row) + "\n" for row in rows))
    connect(browser, site, model)

    upload(browser, path)
    visible(browser, "batch-result", timeout=40)
    with download(browser, downloads).open(newline="") as handle:
        table = list(csv.DictReader(handle))

    frame = model.frame(
        [[120.5, 4, 3, True, "Nice"], [45.0, 1, 1, False, "Lyon"],
         [230.0, 6, 2, True, "Paris"]]
    )  # fmt: skip
    assert [line["garden"] for line in table] == ["true", "false", "true"]
    assert [line["prediction"] for line in table] == model.model.predict(frame).tolist()


# The client module


def test_client_sends_nulls_strings_and_booleans_and_refuses_nan_before_sending(
    browser: WebDriver, site: StaticSite, served: dict[str, Served]
) -> None:
    pipeline, houses_model = served["pipeline"], served["houses"]
    open_page(browser, site)
    before = len(request_lines(pipeline.server, "POST /predict 200"))

    outcome = run_js(
        browser,
        """
        const [pipelineUrl, housesUrl] = args;
        const fails = (f) => { try { f(); return null; } catch (e) {
          return `${e.name}: ${e.message}`; } };
        const p = client.createClient({ url: pipelineUrl });
        const h = client.createClient({ url: housesUrl });
        return {
          named: await p.predict(
            { income: null, age: 41, plan: "platinum", region: "007" }),
          batch: await p.predictBatch(
            [[null, null, "basic", "south"], [72.5, 30, "premium", "north"]],
            { probabilities: true }),
          typed: await h.predictBatch([[120.5, 4, 3, true, "Nice"]]),
          nan: fails(() => p.predictBatch([[NaN, 41, "basic", "north"]])),
          infinite: fails(() => p.predict({ income: Infinity, age: 1, plan: "a",
                                            region: "b" })),
          undefinedValue: fails(() => p.predict([undefined, 41, "basic", "north"])),
          nested: fails(() => p.predict([[1], 41, "basic", "north"])),
        };
        """,
        browser_url(pipeline.server),
        browser_url(houses_model.server),
    )

    got = outcome["ok"]
    one = pipeline.frame([[None, 41.0, "platinum", "007"]])
    assert got["named"]["prediction"] == pipeline.model.predict(one)[0]
    rows = pipeline.frame(
        [[None, None, "basic", "south"], [72.5, 30.0, "premium", "north"]]
    )
    assert got["batch"]["predictions"] == pipeline.model.predict(rows).tolist()
    assert close(got["batch"]["probabilities"], pipeline.model.predict_proba(rows))
    typed = houses_model.frame([[120.5, 4, 3, True, "Nice"]])
    assert got["typed"]["predictions"] == houses_model.model.predict(typed).tolist()
    assert got["nan"] == (
        "TypeError: rows[0][0] is NaN, which JSON cannot carry; "
        "send null for a missing value"
    )
    assert got["infinite"] == (
        'TypeError: row["income"] is Infinity, which JSON cannot carry; '
        "send null for a missing value"
    )
    assert got["undefinedValue"] == (
        "TypeError: row[0] must be a number, string, boolean or null, got undefined"
    )
    assert got["nested"] == (
        "TypeError: row[0] must be a number, string, boolean or null, got an array"
    )
    # The three good calls reached the function; the refused ones did not.
    assert len(request_lines(pipeline.server, "POST /predict 200")) == before + 2


def test_csv_module_reads_cells_by_each_columns_kind(
    browser: WebDriver, site: StaticSite, served: dict[str, Served]
) -> None:
    open_page(browser, site)
    columns = served["native"].metadata["input_schema"]["columns"]
    house_columns = served["houses"].metadata["input_schema"]["columns"]

    outcome = run_js(
        browser,
        """
        const [text, columns, houseColumns] = args;
        const names = columns.map((c) => c.name);
        const houseNames = houseColumns.map((c) => c.name);
        const rows = (key, cols = columns) => csv.csvToRows(
          csv.parseCsv(text[key]), cols.map((c) => c.name), true, cols);
        const fails = (f) => { try { f(); return null; } catch (e) {
          return `${e.name}: ${e.message}`; } };
        return {
          header: rows("header"),
          positional: rows("positional"),
          houses: rows("houses", houseColumns),
          headerless: fails(() => rows("headerlessBad", houseColumns)),
          oldModel: csv.csvToRows(csv.parseCsv(text.numbers), ["a", "b"], false),
        };
        """,
        {
            "header": "plan,income,region,age\n,,007, 3\n premium,1e3,x,\n",
            "positional": "12.5,,basic,\n,40,,n s\n",
            "houses": "area,rooms,floors,garden,city\n1.5,2,3,False,Nice\n",
            "headerlessBad": "1.5,2,3,false,Nice\n1.5,2,3,false,\n",
            "numbers": "1,2\n3,4\n",
        },
        columns,
        house_columns,
    )

    got = outcome["ok"]
    assert got["header"] == {
        "rows": [[None, 3, None, "007"], [1000, None, " premium", "x"]],
        "ignored": [],
    }
    assert got["positional"] == {
        "rows": [[12.5, None, "basic", None], [None, 40, None, "n s"]],
        "ignored": [],
    }
    assert got["houses"]["rows"] == [[1.5, 2, 3, False, "Nice"]]
    assert got["headerless"] == (
        'CsvError: line 2, column 5 ("city"): empty, but this model needs a string '
        "there (it may not be missing)"
    )
    assert got["oldModel"] == {"rows": [[1, 2], [3, 4]], "ignored": []}
