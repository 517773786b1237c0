"""`make run` and `make demo`: serve the function locally and say, once it
answers, where it is and what to send it.

It runs functions-framework in the foreground (its log lines go on printing;
Ctrl-C stops everything), waits until GET /health answers, then prints one
line with the URL and a curl to try. With --page-port it also serves the demo
page (web/) on that port, lets the function allow that page's origin
(CORS_ALLOW_ORIGINS), and prints the page's address, connected to the function.
"""

from __future__ import annotations

import argparse
import functools
import http.server
import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
READY_SECONDS = 120.0
SEED_ROW = "[0.1, -0.5, 1.2, -0.8, 0.3, 0.9, -1.1, 0.4, -0.2, 1.5]"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--page-port", type=int, help="also serve web/ here")
    args = parser.parse_args()
    env = dict(os.environ)
    env.setdefault("MODEL_URI", "model-store/default")
    page = None
    if args.page_port:
        origin = f"http://127.0.0.1:{args.page_port}"
        env["CORS_ALLOW_ORIGINS"] = origin
        page = _serve_page(args.page_port)
    command = [
        str(Path(sys.executable).with_name("functions-framework")),
        "--source",
        "function/main.py",
        "--target",
        "predict",
        "--host",
        args.host,
        "--port",
        str(args.port),
    ]
    server = subprocess.Popen(command, cwd=ROOT, env=env)
    # A plain `kill` (SIGTERM) stops the function too, as Ctrl-C does: without
    # this, Python would exit at once and leave it holding the port.
    signal.signal(signal.SIGTERM, _terminated)
    shown_host = "127.0.0.1" if args.host in ("0.0.0.0", "::") else args.host
    url = f"http://{shown_host}:{args.port}"
    try:
        if _wait_ready(server, url):
            _say_ready(url, env["MODEL_URI"], args.page_port)
        return server.wait()
    except KeyboardInterrupt:
        return 130
    finally:
        if server.poll() is None:
            server.send_signal(signal.SIGINT)
            try:
                server.wait(timeout=10)
            except subprocess.TimeoutExpired:
                server.kill()
        if page is not None:
            page.shutdown()


def _terminated(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)


def _wait_ready(server: subprocess.Popen, url: str) -> bool:
    """Whether the function answered GET /health before it exited."""
    deadline = time.monotonic() + READY_SECONDS
    while time.monotonic() < deadline and server.poll() is None:
        try:
            with urllib.request.urlopen(url + "/health", timeout=2) as answer:
                if answer.status == 200:
                    return True
        except (urllib.error.URLError, OSError):
            time.sleep(0.1)
    return False


def _example(url: str) -> str:
    """The served version's example row as JSON (what its manifest says is a
    typical row), or the tutorial's row when /metadata cannot say."""
    try:
        with urllib.request.urlopen(url + "/metadata", timeout=5) as answer:
            example = json.load(answer).get("example")
    except (urllib.error.URLError, OSError, ValueError):
        return SEED_ROW
    if not isinstance(example, list):
        return SEED_ROW
    # A shell's single quotes cannot hold one: escape it as '\'' does.
    return json.dumps(example).replace("'", "'\\''")


def _say_ready(url: str, model_uri: str, page_port: int | None) -> None:
    print(
        f"serving {model_uri} at {url} (Ctrl-C stops it); try:\n"
        f"  curl -X POST {url}/predict -H 'Content-Type: application/json' "
        f"-d '{{\"features\": {_example(url)}}}'",
        flush=True,
    )
    if page_port:
        print(f"the demo page: http://127.0.0.1:{page_port}/?url={url}", flush=True)


class _Page(http.server.SimpleHTTPRequestHandler):
    """web/, quietly, with the MIME type ES modules need whatever the host's
    mime.types says."""

    extensions_map = {
        **http.server.SimpleHTTPRequestHandler.extensions_map,
        ".js": "text/javascript",
    }

    def log_message(self, format: str, *args: object) -> None:
        pass  # the function's log lines are the ones to read


def _serve_page(port: int) -> http.server.ThreadingHTTPServer:
    handler = functools.partial(_Page, directory=str(ROOT / "web"))
    page = http.server.ThreadingHTTPServer(("127.0.0.1", port), handler)
    threading.Thread(target=page.serve_forever, daemon=True).start()
    return page


if __name__ == "__main__":
    sys.exit(main())
