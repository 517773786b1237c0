"""Web page and client in Chromium, two origins: the page shows what the model says."""

from __future__ import annotations

import csv
import json
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import numpy as np
import pytest
import requests
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.ui import WebDriverWait
from sklearn.linear_model import LogisticRegression

from batch.io import spreadsheet_text
from tests.e2e.web_support import (
    SlowEndpoint,
    StaticSite,
    await_js,
    browser_url,
    download,
    open_page,
    request_lines,
    run_js,
    save_screenshot,
    start_chromium,
    start_js,
    visible,
)
from tests.spreadsheet_cells import FORMULAS, NUMBER_TEXT, PLAIN_TEXT
from tests.support import (
    FunctionServer,
    free_port,
    latest_version,
    publish_estimator,
    published_model,
    run_train,
)

pytestmark = pytest.mark.e2e

KEY = "web-test-key-0123456789"
FEATURES = ["rooms", "age", "area"]
ROW = {"rooms": 3, "age": 12.5, "area": 140.0}
# Limits below the 500-row upload: the page must split it. A 500-row request
# is over MAX_BODY_BYTES (413, so the page halves it); 250 rows fit both limits.
MAX_ROWS = 300
MAX_BODY_BYTES = 6000


def houses(rows: int, seed: int) -> np.ndarray:
    """rooms, age, area: the three features of the test model."""
    rng = np.random.default_rng(seed)
    return np.column_stack(
        [
            rng.integers(1, 7, rows),
            rng.uniform(0, 80, rows).round(1),
            rng.uniform(30, 250, rows).round(1),
        ]
    )


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A classifier with named features and string classes, via `python -m train`."""
    folder = tmp_path_factory.mktemp("houses")
    data = houses(300, seed=3)
    score = data[:, 2] / 50 + data[:, 0] * 0.6 - data[:, 1] / 40
    bands = np.where(score < 3.5, "low", np.where(score < 5.5, "mid", "high"))
    source = folder / "houses.csv"
    with source.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow([*FEATURES, "price_band"])
        writer.writerows([*row, band] for row, band in zip(data, bands, strict=True))
    store = folder / "store"
    result = run_train(
        "--data", str(source), "--target", "price_band",
        "--store", str(store), "--name", "houses",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    return store / "houses"


@pytest.fixture(scope="module")
def model(model_dir: Path) -> Any:
    return published_model(model_dir)


@pytest.fixture(scope="module")
def site() -> Iterator[StaticSite]:
    """The page's origin, the only one the function allows."""
    served = StaticSite()
    yield served
    served.stop()


@pytest.fixture(scope="module")
def other_site() -> Iterator[StaticSite]:
    """The same page on an origin the function does not allow."""
    served = StaticSite()
    yield served
    served.stop()


def function_env(model_uri: Path, site: StaticSite) -> dict[str, str]:
    return {
        "MODEL_URI": str(model_uri),
        "API_KEYS": KEY,
        "CORS_ALLOW_ORIGINS": site.origin,
        "MAX_ROWS": str(MAX_ROWS),
        "MAX_BODY_BYTES": str(MAX_BODY_BYTES),
    }


@pytest.fixture(scope="module")
def function(
    model_dir: Path, site: StaticSite, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[FunctionServer]:
    logs = tmp_path_factory.mktemp("function-logs")
    with FunctionServer(function_env(model_dir, site), logs) as running:
        yield running


@pytest.fixture
def down_store(tmp_path: Path) -> Path:
    """A model folder with nothing published in it: LATEST is missing."""
    folder = tmp_path / "store" / "houses"
    folder.mkdir(parents=True)
    return folder


@pytest.fixture
def down_function(
    down_store: Path, site: StaticSite, tmp_path: Path
) -> Iterator[FunctionServer]:
    with FunctionServer(function_env(down_store, site), tmp_path) as running:
        yield running


@pytest.fixture(scope="module")
def downloads(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("downloads")


@pytest.fixture(scope="module")
def browser(downloads: Path) -> Iterator[WebDriver]:
    driver = start_chromium(downloads)
    yield driver
    driver.quit()


def predict_in_page(driver: WebDriver) -> None:
    """Fill the generated form and submit it from the keyboard."""
    for name in FEATURES:
        field = driver.find_element(By.NAME, name)
        field.clear()
        field.send_keys(str(ROW[name]))
    driver.find_element(By.NAME, FEATURES[-1]).send_keys(Keys.ENTER)
    visible(driver, "result")


# The page


@pytest.fixture(scope="module")
def demo_function(
    seed_store: Path, site: StaticSite, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[FunctionServer]:
    """What `make demo` serves: the tutorial's model, allowing the page."""
    env = {"MODEL_URI": str(seed_store / "seed"), "CORS_ALLOW_ORIGINS": site.origin}
    with FunctionServer(env, tmp_path_factory.mktemp("demo-logs")) as running:
        yield running


def test_demo_page_opens_on_the_example_row_and_shows_its_prediction_in_view(
    browser: WebDriver, site: StaticSite, demo_function: FunctionServer,
    seed_store: Path,
) -> None:  # fmt: skip
    """The first view is a filled form (the manifest's typical row); one click
    on Predict shows the answer beside it, with no scrolling on a laptop."""
    example = requests.get(demo_function.url + "/metadata", timeout=30).json()[
        "example"
    ]
    seed = published_model(seed_store / "seed")
    browser.set_window_size(1280, 800)
    try:
        open_page(browser, site, url=browser_url(demo_function))
        visible(browser, "single")
        fields = browser.find_elements(By.CSS_SELECTOR, "#features input")
        assert [float(field.get_attribute("value")) for field in fields] == example
        assert any(value != 0 for value in example)  # a typical row, not zeros
        save_screenshot(browser, "demo-first-view.png")

        browser.find_element(By.CSS_SELECTOR, "#predict-form button").click()
        result = visible(browser, "result")
        shown = browser.find_element(By.ID, "prediction").text
        bottom, height, scrolled = browser.execute_script(
            "const box = document.getElementById('prediction').getBoundingClientRect();"
            "return [box.bottom, window.innerHeight, window.scrollY];",
        )
        save_screenshot(browser, "demo-prediction.png")
    finally:
        browser.set_window_size(1280, 1000)

    assert result.is_displayed()
    assert shown == str(seed.predict([example])[0])
    assert scrolled == 0 and bottom <= height  # beside the form, in the first view


def test_page_builds_form_from_metadata_and_shows_prediction_with_bars(
    browser: WebDriver,
    site: StaticSite,
    function: FunctionServer,
    model: Any,
) -> None:
    open_page(browser, site, url=browser_url(function), key=KEY)
    visible(browser, "single")
    labels = browser.find_elements(By.CSS_SELECTOR, "#features label")
    assert [label.text for label in labels] == FEATURES
    assert "key=" not in browser.current_url  # kept out of history

    predict_in_page(browser)

    row = [[ROW[name] for name in FEATURES]]
    assert browser.find_element(By.ID, "prediction").text == model.predict(row)[0]
    bars = browser.find_elements(By.CSS_SELECTOR, "#bars li")
    assert [bar.get_attribute("data-class") for bar in bars] == list(model.classes_)
    shown = [float(bar.get_attribute("data-probability")) for bar in bars]
    assert shown == model.predict_proba(row)[0].tolist()
    drawn = [
        browser.execute_script(
            "const [fill, track] = arguments;"
            "return fill.getBoundingClientRect().width"
            " / track.getBoundingClientRect().width;",
            bar.find_element(By.CLASS_NAME, "bar-fill"),
            bar.find_element(By.CLASS_NAME, "bar-track"),
        )
        for bar in bars
    ]
    assert np.allclose(drawn, shown, atol=0.01)  # each bar drawn to scale
    sent = requests.post(
        function.url + "/predict",
        json={"features": ROW},
        headers={"Authorization": f"Bearer {KEY}"},
        timeout=30,
    )
    assert (
        browser.find_element(By.ID, "version").text == sent.headers["X-Model-Version"]
    )
    browser.set_window_size(1280, 1300)
    save_screenshot(browser, "web-prediction.png")
    browser.set_window_size(1280, 1000)


def test_page_scores_500_row_csv_in_batches_and_downloads_the_results(
    browser: WebDriver,
    site: StaticSite,
    function: FunctionServer,
    model: Any,
    model_dir: Path,
    downloads: Path,
    tmp_path: Path,
) -> None:
    data = houses(500, seed=11)
    upload = tmp_path / "to-score.csv"
    with upload.open("w", newline="") as handle:  # columns out of order, plus an id
        writer = csv.writer(handle)
        writer.writerow(["area", "id", "rooms", "age"])
        for i, (rooms, age, area) in enumerate(data):
            writer.writerow([area, f"house-{i}", int(rooms), age])
    as_sent = [[int(rooms), age, area] for rooms, age, area in data.tolist()]
    body = {"instances": as_sent, "probabilities": True}
    size = len(json.dumps(body, separators=(",", ":")))
    assert size > MAX_BODY_BYTES > len(json.dumps(as_sent[:250])) + 40
    open_page(browser, site, url=browser_url(function), key=KEY)
    visible(browser, "batch")

    browser.find_element(By.ID, "csv").send_keys(str(upload))
    browser.find_element(By.CSS_SELECTOR, "#batch-form button").click()
    visible(browser, "batch-result", timeout=40)

    assert len(browser.find_elements(By.CSS_SELECTOR, "#results tbody tr")) == 500
    status = browser.find_element(By.ID, "batch-status").text
    # 500 rows got a 413 (MAX_BODY_BYTES), so the page halved the request.
    assert "Scored 500 rows in 2 requests of at most 250 rows" in status, status
    assert "Ignored columns: id" in browser.find_element(By.ID, "table-note").text
    target = downloads / "predictions.csv"
    target.unlink(missing_ok=True)
    browser.find_element(By.ID, "download").click()
    deadline = time.monotonic() + 20
    while not target.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    with target.open(newline="") as handle:
        table = list(csv.DictReader(handle))
    assert len(table) == 500
    features = np.array([[float(line[name]) for name in FEATURES] for line in table])
    assert np.array_equal(features, data)
    assert [line["prediction"] for line in table] == model.predict(data).tolist()
    probabilities = [
        [float(line[f"probability_{label}"]) for label in model.classes_]
        for line in table
    ]
    assert np.array_equal(np.array(probabilities), model.predict_proba(data))
    version = latest_version(model_dir)
    assert {line["model_version"] for line in table} == {version}

    size_field = browser.find_element(By.ID, "batch-size")
    size_field.clear()
    size_field.send_keys("120")
    before = len(request_lines(function, "POST /predict 200"))
    browser.find_element(By.CSS_SELECTOR, "#batch-form button").click()
    WebDriverWait(browser, 40).until(
        lambda driver: (
            "in 5 requests" in driver.find_element(By.ID, "batch-status").text
        )
    )
    scored = request_lines(function, "POST /predict 200")[before:]
    assert [entry["rows"] for entry in scored] == [120, 120, 120, 120, 20]


def test_page_names_the_bad_cell_of_a_csv(
    browser: WebDriver, site: StaticSite, function: FunctionServer, tmp_path: Path
) -> None:
    upload = tmp_path / "bad.csv"
    upload.write_text("rooms,age,area\n3,12.5,140\n2,abc,90\n")
    open_page(browser, site, url=browser_url(function), key=KEY)
    visible(browser, "batch")

    browser.find_element(By.ID, "csv").send_keys(str(upload))
    browser.find_element(By.CSS_SELECTOR, "#batch-form button").click()

    error = visible(browser, "batch-error", errors=False).text
    assert (
        error == 'Cannot read the CSV file: line 3, column "age": "abc" is not a number'
    )


def test_page_uses_x0_to_xn_and_positional_csv_for_a_model_without_names(
    browser: WebDriver, site: StaticSite, tmp_path: Path
) -> None:
    rng = np.random.default_rng(21)
    train = rng.normal(size=(80, 4))
    unnamed = LogisticRegression().fit(train, (train[:, 0] > train[:, 1]).astype(int))
    model_dir = tmp_path / "store" / "unnamed"
    publish_estimator(model_dir, unnamed)  # fitted on arrays: feature_names null
    data = rng.normal(size=(20, 4)).round(6)
    upload = tmp_path / "positional.csv"
    upload.write_text("\n".join(",".join(map(str, row)) for row in data) + "\n")
    with FunctionServer(function_env(model_dir, site), tmp_path) as server:
        open_page(browser, site, url=browser_url(server), key=KEY)
        visible(browser, "batch")
        labels = [
            e.text for e in browser.find_elements(By.CSS_SELECTOR, "#features label")
        ]
        browser.find_element(By.ID, "csv").send_keys(str(upload))
        browser.find_element(By.CSS_SELECTOR, "#batch-form button").click()
        visible(browser, "batch-result", timeout=40)
        shown = browser.execute_script(
            "return [...document.querySelectorAll('#results tbody tr')]"
            ".map((tr) => tr.cells[5].textContent);"
        )

    assert labels == ["x0", "x1", "x2", "x3"]
    expected = published_model(model_dir).predict(data)
    assert shown == [str(label) for label in expected.tolist()]


@pytest.mark.parametrize(
    ("key", "message"),
    [
        ("wrong-key-0123456789abcdef", "invalid API key"),
        ("", "missing API key"),
    ],
)
def test_page_shows_the_401_message_for_a_wrong_or_missing_key(
    browser: WebDriver,
    site: StaticSite,
    function: FunctionServer,
    key: str,
    message: str,
) -> None:
    open_page(browser, site, url=browser_url(function), key=key)

    error = visible(browser, "connect-error", errors=False).text

    assert error.startswith(f"Error 401 (unauthorized): {message}"), error
    assert "Request id: " in error
    assert not browser.find_element(By.ID, "single").is_displayed()


def test_page_takes_the_key_from_the_fragment_which_never_reaches_the_host(
    browser: WebDriver, site: StaticSite, function: FunctionServer
) -> None:
    before = len(site.requested)
    connected = len(request_lines(function, "GET /metadata 200"))

    open_page(browser, site, url=browser_url(function), key=KEY)

    visible(browser, "single")  # the function wants the key: it was sent
    assert len(request_lines(function, "GET /metadata 200")) == connected + 1
    assert browser.current_url == (
        f"{site.origin}/index.html?{urlencode({'url': browser_url(function)})}"
    )  # no fragment left for history or bookmarks
    served = site.requested[before:]
    assert served and not [path for path in served if KEY in path]
    assert not browser.find_element(By.ID, "key-note").is_displayed()


KEY_NOTE = (
    "The API key was in this address's query string (?key=), which your browser "
    "sent to the server hosting this page, so it may be in that server's logs. "
    "The page did not use it: replace that key, and give the next one after a # "
    "(index.html#key=…), which browsers never send."
)


def test_page_refuses_a_key_in_the_query_string_and_says_it_leaked(
    browser: WebDriver, site: StaticSite, function: FunctionServer
) -> None:
    before = len(site.requested)
    calls = len(function.logs().splitlines())
    browser.get("about:blank")
    browser.get(
        f"{site.origin}/index.html?"
        + urlencode({"url": browser_url(function), "key": KEY, "lang": "en"})
    )

    note = visible(browser, "key-note", errors=False).text
    time.sleep(1)  # time enough for a request the page should not send

    assert note == KEY_NOTE
    # The host did log it: why the page will not use it.
    assert [p for p in site.requested[before:] if f"key={KEY}" in p]
    assert browser.current_url == (
        f"{site.origin}/index.html?"
        + urlencode({"url": browser_url(function), "lang": "en"})
    )
    assert browser.find_element(By.ID, "key").get_attribute("value") == ""
    assert browser.find_element(By.ID, "url").get_attribute("value") == browser_url(
        function
    )
    assert len(function.logs().splitlines()) == calls  # nothing was sent
    assert not browser.find_element(By.ID, "model").is_displayed()

    # Typed into the form instead, the key works.
    browser.find_element(By.ID, "key").send_keys(KEY)
    browser.find_element(By.CSS_SELECTOR, "#connect-form button").click()
    visible(browser, "single", errors=False)


def test_a_key_given_after_the_page_loaded_connects_with_it(
    browser: WebDriver, site: StaticSite, function: FunctionServer
) -> None:
    """Pasting `#key=...` onto the open page's address does not reload it: the
    page reads the new fragment (and drops it) all the same."""
    open_page(browser, site, url=browser_url(function))
    visible(browser, "connect-error", errors=False)  # no key: a 401
    connected = len(request_lines(function, "GET /metadata 200"))

    browser.execute_script("location.hash = arguments[0];", urlencode({"key": KEY}))

    visible(browser, "single", errors=False)
    assert len(request_lines(function, "GET /metadata 200")) == connected + 1
    assert "#" not in browser.current_url and KEY not in browser.current_url
    assert not browser.find_element(By.ID, "connect-error").is_displayed()


def test_page_reports_a_blocked_request_from_an_origin_not_allowed(
    browser: WebDriver, other_site: StaticSite, function: FunctionServer
) -> None:
    open_page(browser, other_site, url=browser_url(function), key=KEY)

    error = visible(browser, "connect-error", errors=False).text

    assert error.startswith("Blocked request (cors_blocked):"), error
    assert f"({other_site.origin}) is not in the function's CORS_ALLOW_ORIGINS" in error


def test_page_retries_as_retry_after_says_then_shows_the_503(
    browser: WebDriver, site: StaticSite, down_function: FunctionServer
) -> None:
    started = time.monotonic()
    open_page(browser, site, url=browser_url(down_function), key=KEY)

    error = visible(browser, "connect-error", errors=False).text
    elapsed = time.monotonic() - started

    assert error.startswith("Error 503 (not_found_in_store): no model is published")
    assert "Tried 3 times, waiting as the function's Retry-After asked" in error
    attempts = request_lines(down_function, "GET /metadata 503")
    assert len(attempts) == 3
    # One id for the call: the page shows the one the function logged.
    assert {a["request_id"] for a in attempts} == {error.rsplit(" ", 1)[-1]}
    assert elapsed >= 1 + 2  # Retry-After: 1, then 2 (the function's backoff)


def test_page_fits_360_px_with_every_input_labelled(
    browser: WebDriver, site: StaticSite, function: FunctionServer
) -> None:
    browser.set_window_size(360, 1400)
    try:
        open_page(browser, site, url=browser_url(function), key=KEY)
        visible(browser, "single")
        predict_in_page(browser)
        width = browser.execute_script("return window.innerWidth;")
        scroll = browser.execute_script("return document.documentElement.scrollWidth;")
        unlabelled = browser.execute_script(
            "return [...document.querySelectorAll('input')]"
            ".filter((input) => input.labels.length === 0).map((i) => i.id);"
        )
        browser.find_element(By.ID, "url").click()
        order = []
        for _ in range(2):
            browser.switch_to.active_element.send_keys(Keys.TAB)
            active = browser.switch_to.active_element
            order.append(
                f"{active.tag_name}:{active.get_attribute('id') or active.text}"
            )
        browser.execute_script("document.getElementById('result').scrollIntoView();")
        save_screenshot(browser, "web-prediction-360px.png")
    finally:
        browser.set_window_size(1280, 1000)

    assert width <= 360
    assert scroll <= width  # nothing scrolls sideways
    assert unlabelled == []
    assert order == ["input:key", "button:Connect"]


# The client module


def test_client_answers_match_scikit_learn(
    browser: WebDriver, site: StaticSite, function: FunctionServer, model: Any
) -> None:
    open_page(browser, site)

    outcome = run_js(
        browser,
        """
        const c = client.createClient({ url: args[0], apiKey: args[1] });
        return {
          health: await c.health(),
          meta: await c.metadata(),
          one: await c.predict(args[2]),
          batch: await c.predictBatch(args[3], { probabilities: true }),
        };
        """,
        browser_url(function),
        KEY,
        ROW,
        houses(5, seed=5).tolist(),
    )

    answers = outcome["ok"]
    assert answers["health"] == {"status": "ok"}
    assert answers["meta"]["feature_names"] == FEATURES
    assert answers["meta"]["classes"] == list(model.classes_)
    row = [[ROW[name] for name in FEATURES]]
    assert answers["one"]["prediction"] == model.predict(row)[0]
    batch = houses(5, seed=5)
    assert answers["batch"]["predictions"] == model.predict(batch).tolist()
    assert np.array_equal(
        np.array(answers["batch"]["probabilities"]), model.predict_proba(batch)
    )


def test_client_api_errors_carry_status_code_message_and_request_id(
    browser: WebDriver, site: StaticSite, function: FunctionServer
) -> None:
    open_page(browser, site)

    outcome = run_js(
        browser,
        """
        const c = client.createClient({ url: args[0], apiKey: args[1] });
        await c.predict([1, 2]);
        """,
        browser_url(function),
        KEY,
    )

    error = outcome["error"]
    assert error["isSkserveError"]
    assert error["kind"] == "api"
    assert error["status"] == 400
    assert error["code"] == "wrong_feature_count"
    direct = requests.post(
        function.url + "/predict",
        json={"features": [1, 2]},
        headers={"Authorization": f"Bearer {KEY}"},
        timeout=30,
    ).json()["error"]
    assert error["message"] == direct["message"]  # the API's words, verbatim
    assert "expected 3" in error["message"]
    logged = request_lines(function, "POST /predict 400")
    assert error["requestId"] in {entry["request_id"] for entry in logged}


def test_client_retries_a_503_as_retry_after_says_then_throws_it(
    browser: WebDriver, site: StaticSite, down_function: FunctionServer
) -> None:
    open_page(browser, site)

    outcome = run_js(
        browser,
        """
        const retries = [];
        const t0 = performance.now();
        const c = client.createClient({
          url: args[0], apiKey: args[1], maxRetries: 2,
          onRetry: ({ attempt, delayMs, error }) =>
            retries.push({ attempt, delayMs, at: performance.now() - t0,
                           status: error.status }),
        });
        try {
          await c.metadata();
        } catch (e) {
          return { retries, elapsed: performance.now() - t0, status: e.status,
                   code: e.code, retryAfterMs: e.retryAfterMs, requestId: e.requestId };
        }
        """,
        browser_url(down_function),
        KEY,
    )

    result = outcome["ok"]
    retries = result["retries"]
    assert [(r["attempt"], r["delayMs"], r["status"]) for r in retries] == [
        (1, 1000, 503),
        (2, 2000, 503),
    ]
    assert result["elapsed"] >= retries[1]["at"] + 2000  # it waited before the last
    assert retries[1]["at"] >= retries[0]["at"] + 1000
    assert (result["status"], result["code"]) == (503, "not_found_in_store")
    assert result["retryAfterMs"] == 4000  # the last answer's, not retried again
    attempts = request_lines(down_function, "GET /metadata 503")
    assert [a["request_id"] for a in attempts] == [result["requestId"]] * 3


def test_client_retry_succeeds_once_the_model_is_published(
    browser: WebDriver,
    site: StaticSite,
    down_function: FunctionServer,
    down_store: Path,
    model_dir: Path,
) -> None:
    open_page(browser, site)
    start_js(
        browser,
        """
        let retried = 0;
        const c = client.createClient({
          url: args[0], apiKey: args[1], maxRetries: 3,
          onRetry: () => { retried += 1; },
        });
        const meta = await c.metadata();
        return { version: meta.model_version, retried };
        """,
        browser_url(down_function),
        KEY,
    )
    deadline = time.monotonic() + 10
    while not request_lines(down_function, "GET /metadata 503"):
        assert time.monotonic() < deadline, down_function.logs()
        time.sleep(0.02)

    # Publish as the trainer does: the version's files first, LATEST last.
    shutil.copytree(model_dir / "versions", down_store / "versions")
    shutil.copyfile(model_dir / "LATEST", down_store / "LATEST")
    outcome = await_js(browser, timeout=20)

    assert outcome["ok"]["version"] == latest_version(model_dir)
    assert outcome["ok"]["retried"] >= 1


def test_client_aborts_a_request_that_outlives_its_timeout(
    browser: WebDriver, site: StaticSite
) -> None:
    slow = SlowEndpoint(allow_origin=site.origin, delay=8)
    try:
        open_page(browser, site)
        outcome = run_js(
            browser,
            """
            const c = client.createClient({ url: args[0], timeoutMs: 400 });
            const t0 = performance.now();
            try {
              await c.health();
            } catch (e) {
              return { kind: e.kind, code: e.code, status: e.status,
                       elapsed: performance.now() - t0 };
            }
            """,
            slow.origin,
        )
        deadline = time.monotonic() + 5
        while "aborted /health" not in slow.events and time.monotonic() < deadline:
            time.sleep(0.02)
    finally:
        slow.stop()

    result = outcome["ok"]
    assert (result["kind"], result["code"], result["status"]) == (
        "timeout",
        "timeout",
        0,
    )
    assert 400 <= result["elapsed"] < 3000
    assert slow.events == ["aborted /health"]  # the browser hung up: not left running


def test_client_tells_network_failure_and_cors_block_from_api_errors(
    browser: WebDriver,
    site: StaticSite,
    other_site: StaticSite,
    function: FunctionServer,
) -> None:
    body = """
        const c = client.createClient({ url: args[0], apiKey: args[1] });
        await c.metadata();
    """
    open_page(browser, site)
    unreachable = run_js(browser, body, f"http://localhost:{free_port()}", KEY)
    open_page(browser, other_site)
    blocked = run_js(browser, body, browser_url(function), KEY)

    network, cors = unreachable["error"], blocked["error"]
    assert network["isSkserveError"] and cors["isSkserveError"]
    assert (network["kind"], network["code"], network["status"]) == (
        "network",
        "network_error",
        0,
    )
    assert network["message"].startswith("cannot reach http://localhost:")
    assert (cors["kind"], cors["code"], cors["status"]) == ("cors", "cors_blocked", 0)
    assert other_site.origin in cors["message"]
    assert len(network["requestId"]) == 32  # the one it sent, to find in logs


HARMLESS = NUMBER_TEXT + PLAIN_TEXT


def test_csv_download_defuses_text_a_spreadsheet_would_run_but_not_numbers(
    browser: WebDriver, site: StaticSite
) -> None:
    open_page(browser, site)

    outcome = run_js(
        browser,
        """
        const [formulas, harmless] = args;
        return {
          formulas: formulas.map(csv.spreadsheetText),
          harmless: harmless.map(csv.spreadsheetText),
          written: csv.toCsv(
            ["id", "=x", "prediction"],
            [["=cmd|' /C calc'!A0", -1.5, "@SUM(1)"],
             ["-1.5", 3, '+HYPERLINK("http://x")'],
             ["\t=1", 1e-7, "-2+3"],
             ["a;=1", null, true]]),
        };
        """,
        FORMULAS,
        HARMLESS,
    )

    got = outcome["ok"]
    assert got["formulas"] == ["'" + text for text in FORMULAS]
    assert got["harmless"] == HARMLESS
    # The batch job's CSV output applies the same rule to the same cells.
    assert [spreadsheet_text(text) for text in FORMULAS + HARMLESS] == (
        got["formulas"] + got["harmless"]
    )
    assert got["written"] == (
        "id,'=x,prediction\r\n"
        "'=cmd|' /C calc'!A0,-1.5,'@SUM(1)\r\n"
        '-1.5,3,"\'+HYPERLINK(""http://x"")"\r\n'
        "\"'\t=1\",1e-7,'-2+3\r\n"
        '"a;=1",,true\r\n'
    )


@pytest.fixture
def formula_labels(tmp_path: Path) -> tuple[Path, Any]:
    """A classifier whose class labels are spreadsheet formulas (and a number
    written as text), with named features."""
    train = houses(150, seed=5)
    labels = np.array(['=HYPERLINK("http://evil.example")', "@SUM(1)", "-1.5"])
    target = labels[np.digitize(train[:, 2], [100, 170])]  # by area
    model = LogisticRegression(max_iter=2000).fit(train, target)
    model_dir = tmp_path / "store" / "formulas"
    publish_estimator(model_dir, model, feature_names=FEATURES)
    return model_dir, model


def test_page_download_defuses_formula_class_labels(
    browser: WebDriver,
    site: StaticSite,
    downloads: Path,
    formula_labels: tuple[Path, Any],
    tmp_path: Path,
) -> None:
    model_dir, model = formula_labels
    data = houses(30, seed=8)
    upload = tmp_path / "rows.csv"
    upload.write_text(
        "rooms,age,area\n" + "".join(f"{int(r)},{a},{b}\n" for r, a, b in data)
    )
    with FunctionServer(function_env(model_dir, site), tmp_path) as server:
        open_page(browser, site, url=browser_url(server), key=KEY)
        visible(browser, "batch")
        browser.find_element(By.ID, "csv").send_keys(str(upload))
        browser.find_element(By.CSS_SELECTOR, "#batch-form button").click()
        visible(browser, "batch-result", timeout=40)
        shown = browser.execute_script(
            "return [...document.querySelectorAll('#results tbody tr')]"
            ".map((tr) => tr.cells[4].textContent);"
        )
        with download(browser, downloads).open(newline="") as handle:
            table = list(csv.reader(handle))

    expected = model.predict(data).tolist()
    assert set(expected) == set(model.classes_)  # every label is written
    assert shown == expected  # the page itself shows the labels as they are
    header, rows = table[0], table[1:]
    assert header == [
        *FEATURES,
        "prediction",
        *(f"probability_{label}" for label in model.classes_),
        "model_version",
    ]
    defused = {"-1.5": "-1.5", "@SUM(1)": "'@SUM(1)"}
    defused['=HYPERLINK("http://evil.example")'] = '\'=HYPERLINK("http://evil.example")'
    assert [row[3] for row in rows] == [defused[label] for label in expected]
    assert np.array_equal([[float(c) for c in row[:3]] for row in rows], data)


def test_csv_module_reads_quoting_reorders_columns_and_names_bad_cells(
    browser: WebDriver, site: StaticSite
) -> None:
    open_page(browser, site)

    outcome = run_js(
        browser,
        """
        const fails = (f) => { try { f(); return null; } catch (e) {
          return `${e.name}: ${e.message}`; } };
        const [text, names] = args;
        const rows = (key) => csv.csvToRows(csv.parseCsv(text[key]), names, true);
        return {
          quoted: csv.parseCsv(text.quoted),
          named: rows("named"),
          positional: rows("positional"),
          badCell: fails(() => rows("badCell")),
          missing: fails(() => rows("missing")),
          ragged: fails(() => rows("ragged")),
          unclosed: fails(() => csv.parseCsv(text.unclosed)),
          written: csv.toCsv(["x", "label"], [[1.5, text.label]]),
          retryAfter: [client.retryAfterMs("3"), client.retryAfterMs("soon"),
                       client.retryAfterMs(new Date(Date.now() + 60000).toUTCString())],
        };
        """,
        {
            "quoted": 'a,"b,c","d ""q"""\r\n1,2,3\n',
            "named": "area,id,rooms,age\n140,x,3,12.5\n\n",
            "positional": "3,12.5,140\n1,2,3",
            "badCell": "rooms,age,area\n1,2,3\n1,0x1f,3",
            "missing": "rooms,size\n1,2",
            "ragged": "1,2,3\n1,2",
            "unclosed": 'a,"b\n1,2',
            "label": 'say "hi", ok',
        },
        FEATURES,
    )

    got = outcome["ok"]
    assert got["quoted"] == [["a", "b,c", 'd "q"'], ["1", "2", "3"]]
    assert got["named"] == {"rows": [[3, 12.5, 140]], "ignored": ["id"]}
    assert got["positional"] == {"rows": [[3, 12.5, 140], [1, 2, 3]], "ignored": []}
    assert got["badCell"] == ('CsvError: line 3, column "age": "0x1f" is not a number')
    assert got["missing"] == (
        'CsvError: the header lacks the model\'s features "age", "area" '
        "(it expects rooms, age, area)"
    )
    assert got["ragged"] == "CsvError: line 2 has 2 values; expected 3"
    assert got["unclosed"].startswith("CsvError: the file ends inside a quoted field")
    assert got["written"] == 'x,label\r\n1.5,"say ""hi"", ok"\r\n'
    assert got["retryAfter"][:2] == [3000, None]
    assert 58000 <= got["retryAfter"][2] <= 60000
