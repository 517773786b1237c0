"""A page on a site the function does not allow cannot make its visitors'
browsers spend the function's work: headless Chromium sends what a hostile
page would (a no-cors POST, which the browser hides the answer of but still
sends), and the function refuses it before loading any model."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from selenium.webdriver.remote.webdriver import WebDriver

from tests.e2e.web_support import (
    StaticSite,
    browser_url,
    open_page,
    request_lines,
    start_chromium,
)
from tests.support import SEED_FEATURES, FunctionServer

pytestmark = pytest.mark.e2e

V2_BODY = {
    "inputs": [
        {"name": "x", "datatype": "FP64", "shape": [1, 10], "data": SEED_FEATURES}
    ]
}


@pytest.fixture(scope="module")
def site() -> Iterator[StaticSite]:
    served = StaticSite()
    yield served
    served.stop()


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WebDriver]:
    driver = start_chromium(tmp_path_factory.mktemp("downloads"))
    yield driver
    driver.quit()


def _no_cors_post(driver: WebDriver, url: str, body: str) -> None:
    """What a hostile page does: fire and forget (the answer is opaque)."""
    driver.execute_async_script(
        """
        const [url, body, done] = arguments;
        fetch(url, {method: "POST", mode: "no-cors", body: new Blob([body])})
          .then(() => done(null), () => done(null));
        """,
        url,
        body,
    )


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/v2/models/seed/infer", V2_BODY),
        ("/predict", {"features": SEED_FEATURES}),
    ],
)
def test_a_no_cors_post_from_a_page_not_allowed_loads_no_model(
    served: Path,
    site: StaticSite,
    browser: WebDriver,
    tmp_path: Path,
    path: str,
    body: object,
) -> None:
    with FunctionServer({"MODEL_URI": str(served)}, tmp_path) as server:
        open_page(browser, site)

        _no_cors_post(browser, browser_url(server) + path, json.dumps(body))

        assert request_lines(server, f"POST {path} 403")
        assert server.load_count() == 0
        assert not request_lines(server, f"POST {path} 200")
