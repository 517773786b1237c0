"""Browser test helpers; Chromium comes from Debian's packages, never a download."""

from __future__ import annotations

import functools
import http.server
import json
import select
import socket
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
from selenium import webdriver
from selenium.common.exceptions import TimeoutException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support.ui import WebDriverWait

from tests.support import REPO, FunctionServer

WEB = REPO / "web"
ARTIFACTS = Path(__file__).parent / "artifacts"
CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
# Without the background-networking flags Chromium keeps calling Google's
# services, and this closed network refuses the connections.
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1280,1000",
)


class _QuietServer(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A browser that aborts a request resets its socket: not a test failure.
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


class _StaticHandler(http.server.SimpleHTTPRequestHandler):
    # Module scripts need a JavaScript MIME type whatever the host's mime.types says.
    extensions_map = {
        ".js": "text/javascript",
        ".css": "text/css",
        ".html": "text/html",
        "": "application/octet-stream",
    }

    def end_headers(self) -> None:
        self.send_header("Cache-Control", "no-store")
        super().end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


class _Serving:
    """Run an HTTP server on 127.0.0.1 in a daemon thread until stopped."""

    def __init__(self, handler: Callable[..., http.server.BaseHTTPRequestHandler]):
        self.server = _QuietServer(("127.0.0.1", 0), handler)
        self.port = self.server.server_address[1]
        self.origin = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self._thread.join(timeout=10)


class StaticSite(_Serving):
    """`web/` as any static host would serve it, on its own origin; `requested`
    is its access log: each path with its query string, as a host logs it."""

    def __init__(self) -> None:
        requested: list[str] = []
        self.requested = requested

        class Handler(_StaticHandler):
            def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
                requested.append(self.path)

        super().__init__(functools.partial(Handler, directory=str(WEB)))


class SlowEndpoint(_Serving):
    """Answers CORS preflights at once and everything else after `delay` seconds,
    recording whether the caller hung up first (proof that a request was aborted)."""

    def __init__(self, allow_origin: str, delay: float) -> None:
        self.events: list[str] = []
        endpoint = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _cors(self) -> None:
                self.send_header("Access-Control-Allow-Origin", allow_origin)
                self.send_header(
                    "Access-Control-Allow-Headers",
                    "Authorization, Content-Type, X-API-Key, X-Request-Id",
                )
                self.send_header("Access-Control-Allow-Methods", "GET, POST, OPTIONS")

            def do_OPTIONS(self) -> None:
                self.send_response(204)
                self._cors()
                self.send_header("Content-Length", "0")
                self.end_headers()

            def do_GET(self) -> None:
                if endpoint.hung_up(self.connection, delay):
                    endpoint.events.append(f"aborted {self.path}")
                    self.close_connection = True
                    return
                body = json.dumps({"status": "ok"}).encode()
                self.send_response(200)
                self._cors()
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
                endpoint.events.append(f"answered {self.path}")

        super().__init__(Handler)

    @staticmethod
    def hung_up(connection: socket.socket, delay: float) -> bool:
        """Wait up to `delay` s; True as soon as the peer closes the connection."""
        deadline = time.monotonic() + delay
        while (left := deadline - time.monotonic()) > 0:
            readable, _, _ = select.select([connection], [], [], left)
            if readable:
                try:
                    if connection.recv(1, socket.MSG_PEEK) == b"":
                        return True
                except OSError:
                    return True
                time.sleep(0.01)  # pipelined bytes, not a close: keep waiting
        return False


def require_chromium() -> None:
    """Fail (never skip) with the fix when the browser is not installed."""
    missing = [str(p) for p in (CHROMIUM, CHROMEDRIVER) if not p.exists()]
    if missing:
        pytest.fail(
            f"{', '.join(missing)} not found: run `make chromium` (apt-get install "
            "chromium chromium-driver) before the browser tests",
            pytrace=False,
        )


def start_chromium(downloads: Path) -> WebDriver:
    """Headless Chromium with a fresh profile, downloading into `downloads`."""
    require_chromium()
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tempfile.mkdtemp(prefix='chromium-')}")
    options.add_experimental_option(
        "prefs",
        {
            "download.default_directory": str(downloads),
            "download.prompt_for_download": False,
            "safebrowsing.enabled": False,
        },
    )
    driver = webdriver.Chrome(
        service=Service(executable_path=str(CHROMEDRIVER)), options=options
    )
    driver.set_script_timeout(40)
    return driver


# Runs BODY (an async function body using `client`, `csv` and `args`) in the page
# and hands `done` {"ok": value} or {"error": the thrown error's fields}.
_HARNESS = """
(async () => {
  const client = await import("/skserve-client.js");
  const csv = await import("/csv.js");
  try {
    const value = await (async () => { /*BODY*/ })();
    return { ok: value === undefined ? null : value };
  } catch (e) {
    return { error: {
      name: e?.name, kind: e?.kind ?? null, status: e?.status ?? null,
      code: e?.code ?? null, message: String(e?.message ?? e),
      requestId: e?.requestId ?? null, retryAfterMs: e?.retryAfterMs ?? null,
      isSkserveError: e instanceof client.SkserveError,
    } };
  }
})().then(done, (e) => done({ harness: String(e) }));
"""
# execute_async_script passes its callback last; execute_script passes none.
_WAITING = (
    "const done = arguments[arguments.length - 1];"
    "const args = Array.prototype.slice.call(arguments, 0, -1);"
)
_DETACHED = (
    "window.__outcome = null;"
    "const done = (value) => { window.__outcome = value; };"
    "const args = Array.prototype.slice.call(arguments);"
)


def run_js(driver: WebDriver, body: str, *args: Any) -> dict[str, Any]:
    """Run `body` in the current page with the web modules imported; wait for it."""
    outcome = driver.execute_async_script(
        _WAITING + _HARNESS.replace("/*BODY*/", body), *args
    )
    assert "harness" not in outcome, outcome["harness"]
    return outcome


def start_js(driver: WebDriver, body: str, *args: Any) -> None:
    """Like run_js, but return at once; `await_js` collects the outcome."""
    driver.execute_script(_DETACHED + _HARNESS.replace("/*BODY*/", body), *args)


def await_js(driver: WebDriver, timeout: float) -> dict[str, Any]:
    """The outcome of the script `start_js` started, once it has settled."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        outcome = driver.execute_script("return window.__outcome;")
        if outcome is not None:
            assert "harness" not in outcome, outcome["harness"]
            return outcome
        time.sleep(0.05)
    raise TimeoutError(f"the page script did not settle within {timeout} s")


# The page, as a user meets it


def browser_url(server: FunctionServer) -> str:
    """The function on another host name than the page (localhost, not 127.0.0.1)."""
    return f"http://localhost:{server.port}"


def open_page(
    driver: WebDriver, site: StaticSite, *, key: str | None = None, **query: str
) -> None:
    """The page with `query` in its query string and the API key, if any, in
    its fragment (`#key=...`), which the browser never sends to the host."""
    address = f"{site.origin}/index.html" + (f"?{urlencode(query)}" if query else "")
    # From the page itself, an address that differs only in its fragment would
    # not load the page again: start each time from a blank one.
    driver.get("about:blank")
    driver.get(address + (f"#{urlencode({'key': key})}" if key is not None else ""))


def visible(
    driver: WebDriver, element_id: str, timeout: float = 20, *, errors: bool = True
) -> WebElement:
    """Wait for an element; fail at once, with the page's words, if an error
    region shows instead (unless the element is an error region itself)."""

    def shown(driver: WebDriver) -> WebElement | bool:
        target = driver.find_element(By.ID, element_id)
        if target.is_displayed():
            return target
        return errors and any(
            box.is_displayed()
            for box in driver.find_elements(By.CSS_SELECTOR, ".error")
        )

    try:
        found = WebDriverWait(driver, timeout).until(shown)
    except TimeoutException:
        found = None
    if isinstance(found, WebElement):
        return found
    said = driver.execute_script(
        "return [...document.querySelectorAll('.status, .error')]"
        ".map((e) => `${e.id}: ${e.textContent}`).join('\\n');"
    )
    pytest.fail(f"#{element_id} not shown within {timeout} s; the page says:\n{said}")


def request_lines(server: FunctionServer, message: str) -> list[dict[str, Any]]:
    """The function's access-log entries whose message is e.g. 'GET /metadata 503'."""
    entries = [json.loads(line) for line in server.logs().splitlines() if line]
    return [entry for entry in entries if entry.get("message") == message]


def download(driver: WebDriver, folder: Path, timeout: float = 20) -> Path:
    """Click the page's download link and wait for the whole file in `folder`."""
    target = folder / "predictions.csv"
    target.unlink(missing_ok=True)
    driver.find_element(By.ID, "download").click()
    deadline = time.monotonic() + timeout
    # Chromium writes to a .crdownload file and renames it when complete.
    while not target.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert target.exists(), f"no {target.name} in {folder} after {timeout} s"
    return target


def save_screenshot(driver: WebDriver, name: str) -> Path:
    """Kept out of git (tests/e2e/artifacts/) for a person to look at."""
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / name
    assert driver.save_screenshot(str(path))
    print(f"screenshot: {path}")
    return path
