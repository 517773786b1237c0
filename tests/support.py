"""Test helpers: real server processes, free ports, and Google-style handler calls."""

from __future__ import annotations

import ast
import io
import json
import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import flask
import joblib
import pytest
import requests
from werkzeug.routing import Rule

from skserve.errors import ServingError
from skserve.http import json_response
from skserve.protocols import Protocol
from skserve.storage import Store

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
SEED_FEATURES = [0.1, -0.5, 1.2, -0.8, 0.3, 0.9, -1.1, 0.4, -0.2, 1.5]


def stop_process(process: subprocess.Popen) -> None:
    """Terminate, then kill if it will not stop; never leave a server behind."""
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=10)


class UnpicklingMarker:
    """Unpickling this creates a file: proof of whether a pickle was loaded."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, tuple[Path]]:
        return (Path.touch, (Path(self.marker),))


def imported_after(
    code: str, watched: tuple[str, ...], env: Mapping[str, str] | None = None
) -> list[str]:
    """Which of `watched` modules a fresh interpreter has imported after running
    `code` from function/ (as a cold start would): the proof of lazy imports."""
    check = (
        "\nimport json, sys\n"
        f"print(json.dumps(sorted(m for m in {watched!r} if m in sys.modules)))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code + check],
        cwd=REPO / "function",
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def call(
    method: str = "POST",
    path: str = "/predict",
    *,
    json: Any = None,
    data: bytes | str | None = None,
    headers: Mapping[str, str] | None = None,
    content_type: str | None = None,
) -> flask.Response:
    """Call the Cloud Function the way Google's samples test one."""
    import main

    kwargs: dict[str, Any] = {"method": method, "headers": dict(headers or {})}
    if json is not None:
        kwargs["json"] = json
    if data is not None:
        kwargs["data"] = data
    if content_type is not None:
        kwargs["content_type"] = content_type
    with flask.Flask(__name__).test_request_context(path, **kwargs):
        return main.predict(flask.request)


def run_train(
    *args: str, env: Mapping[str, str] | None = None
) -> subprocess.CompletedProcess:
    """Run `python -m train ARGS` from the repo root, as a user would."""
    return subprocess.run(
        [sys.executable, "-m", "train", *args],
        cwd=REPO,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=300,
    )


def publish_estimator(root: Path, model: Any, **facts: Any) -> str:
    """Publish and promote a fitted estimator at `root`; return its version."""
    import pickle

    from skserve.storage import open_store
    from train.artifact import describe
    from train.publish import publish

    manifest = publish(
        open_store(str(root)),
        pickle.dumps(model),
        {**describe(model), **facts},
        name=root.name,
    )
    return manifest.version


def latest_version(model_dir: Path) -> str:
    """The version a model's LATEST names (a plain id, or a signed pointer)."""
    from skserve.loader import parse_pointer

    return parse_pointer((model_dir / "LATEST").read_bytes()).version


def published_model(model_dir: Path) -> Any:
    """The estimator exactly as published (to compare against its own predictions)."""
    version = latest_version(model_dir)
    data = (model_dir / "versions" / version / "model.pkl").read_bytes()
    return joblib.load(io.BytesIO(data))


def block_onnxruntime(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make this process look like a deployment without onnxruntime: importing
    it fails, and the onnx runtime's module is imported afresh (all undone by
    `monkeypatch` after the test)."""
    import skserve.runtimes

    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # `import` raises
    monkeypatch.delitem(sys.modules, "skserve.runtimes.onnx", raising=False)
    monkeypatch.delattr(skserve.runtimes, "onnx", raising=False)


class ExampleProtocol(Protocol):
    """A protocol served beside the real ones under /example, with an error body
    of its own (application/problem+json). Registered by adding EXAMPLE_PROTOCOL
    to skserve.protocols.PROTOCOLS, it proves that routes, `Allow` and error
    rendering come from each protocol's rules, not from a fixed list."""

    name = "example"
    prefix = "/example"

    def rules(self) -> list[Rule]:
        return [
            Rule(
                "/example/items/<int:item>",
                methods=["GET", "DELETE"],
                endpoint=self.item,
            ),
            Rule("/example/boom", methods=["POST"], endpoint=self.boom),
        ]

    @staticmethod
    def render(error: ServingError) -> flask.Response:
        body = {"problem": {"status": error.status, "detail": error.message}}
        response = json_response(body, error.status, error.headers())
        response.mimetype = "application/problem+json"
        return response

    def no_route(self, path: str) -> str:
        return f"the example protocol has no {path}"

    def item(self, request: flask.Request, item: int) -> flask.Response:
        return json_response({"item": item})

    def boom(self, request: flask.Request) -> flask.Response:
        raise RuntimeError("secret internals of the example protocol")


EXAMPLE_PROTOCOL = f"{__name__}:{ExampleProtocol.__qualname__}"


class RecordingStore:
    """Wraps a store, recording every call by the key's last segment; can fail
    writes of keys ending in `fail_on` (a publish that dies half way)."""

    def __init__(self, inner: Store, fail_on: str | None = None) -> None:
        self.inner, self.fail_on = inner, fail_on
        self.calls: list[tuple[str, str]] = []
        self.uri = inner.uri

    def read(self, key: str, **kwargs: Any) -> bytes:
        self.calls.append(("read", key.rsplit("/", 1)[-1]))
        return self.inner.read(key, **kwargs)

    def read_token(self, key: str, **kwargs: Any) -> tuple[bytes, str]:
        self.calls.append(("read_token", key.rsplit("/", 1)[-1]))
        return self.inner.read_token(key, **kwargs)

    def write(self, key: str, data: bytes, **kwargs: Any) -> None:
        from skserve.errors import StoreError

        self.calls.append(("write", key.rsplit("/", 1)[-1]))
        if self.fail_on and key.endswith(self.fail_on):
            raise StoreError(f"injected failure writing {key}")
        self.inner.write(key, data, **kwargs)

    def list(self, prefix: str) -> list[str]:
        return self.inner.list(prefix)


def promoted_files(model_dir: Path) -> tuple[bytes, dict[str, Any]]:
    """The promoted version's pickle and manifest facts, to publish them again."""
    version = (model_dir / "LATEST").read_text().strip()
    folder = model_dir / "versions" / version
    manifest = json.loads((folder / "manifest.json").read_text())
    return (folder / "model.pkl").read_bytes(), manifest


def publish_signed(store: Path, key: str | None, name: str = "m") -> str:
    """Train and promote the seed's model as `<store>/<name>` in this process,
    signed with `key` (unsigned if None); return its version. No ONNX twin:
    the pickle is what signing must protect, and a twin costs seconds."""
    from train.cli import main as train

    if key:
        os.environ["MODEL_SIGNING_KEY"] = key
    try:
        args = ["--store", str(store), "--name", name, "--no-twin"]
        assert train(args) == 0
    finally:
        os.environ.pop("MODEL_SIGNING_KEY", None)
    return latest_version(store / name)


class FunctionServer:
    """A real `functions-framework --target=predict` process on a free port."""

    def __init__(
        self, env: Mapping[str, str], tmp: Path, *, cwd: Path = REPO, wait: bool = True
    ) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = tmp / f"ff-{self.port}.log"
        self._log = self.log_path.open("wb")
        self.process = subprocess.Popen(
            self.command(cwd),
            cwd=cwd,
            env=self.environment(env),
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        if wait:
            self.wait_ready()

    def command(self, cwd: Path) -> list[str]:
        """functions-framework --target=predict on this server's port."""
        return [
            str(BIN / "functions-framework"),
            "--source",
            str(cwd / "main.py") if cwd != REPO else "function/main.py",
            "--target",
            "predict",
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
        ]

    def environment(self, env: Mapping[str, str]) -> dict[str, str]:
        """The process's environment: ours, unbuffered, plus `env`."""
        return {**os.environ, "PYTHONUNBUFFERED": "1", **env}

    def wait_ready(self, timeout: float = 60.0) -> None:
        """Wait until GET /health answers (it never loads the model)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"functions-framework exited:\n{self.logs()}")
            try:
                if requests.get(self.url + "/health", timeout=2).status_code == 200:
                    return
            except requests.ConnectionError:
                pass
            time.sleep(0.05)
        raise TimeoutError(f"functions-framework not ready:\n{self.logs()}")

    def post(
        self, payload: Any, path: str = "/predict", **kwargs: Any
    ) -> requests.Response:
        return requests.post(self.url + path, json=payload, timeout=60, **kwargs)

    def logs(self) -> str:
        if not self._log.closed:
            self._log.flush()
        return self.log_path.read_text(errors="replace")

    def load_count(self) -> int:
        """How many times this process loaded a model (one log line per load)."""
        return self.logs().count('"message":"loaded model version')

    def stop(self) -> None:
        stop_process(self.process)
        self._log.close()

    def __enter__(self) -> FunctionServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


class GCSEmulator:
    """gcp-storage-emulator as its own process, in memory, on a free port."""

    def __init__(self, bucket: str) -> None:
        self.port = free_port()
        self.host = f"http://127.0.0.1:{self.port}"
        self.process = subprocess.Popen(
            [
                str(BIN / "gcp-storage-emulator"),
                "start",
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--in-memory",
                "--default-bucket",
                bucket,
                "-q",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                requests.get(f"{self.host}/storage/v1/b/{bucket}", timeout=2)
                return
            except requests.ConnectionError:
                time.sleep(0.05)
        self.stop()
        raise TimeoutError("gcp-storage-emulator did not start")

    def stop(self) -> None:
        stop_process(self.process)


# The environment variables the function reads, taken from its own code:
# tests/deploy/ holds every deploy path (gcloud, Terraform, serverless.yml) to
# these names, so a setting added to or renamed in settings.py fails them until
# each path can set it.
FUNCTION = REPO / "function"
SETTINGS = FUNCTION / "skserve" / "settings.py"
ENV_NAME = re.compile(r"[A-Z][A-Z0-9_]{2,}")


def settings_fields() -> dict[str, set[str]]:
    """{Settings field: the environment variables Settings.from_env reads for it},
    following calls into settings.py's own helpers (e.g. _model_uri)."""
    tree = ast.parse(SETTINGS.read_text())
    helpers = {n.name: n for n in tree.body if isinstance(n, ast.FunctionDef)}

    def names(node: ast.AST, seen: frozenset[str]) -> set[str]:
        found: set[str] = set()
        for sub in ast.walk(node):
            if (
                isinstance(sub, ast.Constant)
                and isinstance(sub.value, str)
                and ENV_NAME.fullmatch(sub.value)
            ):
                found.add(sub.value)
            elif (
                isinstance(sub, ast.Call)
                and isinstance(sub.func, ast.Name)
                and sub.func.id in helpers
                and sub.func.id not in seen
            ):
                found |= names(helpers[sub.func.id], seen | {sub.func.id})
        return found

    from_env = next(
        n
        for n in ast.walk(tree)
        if isinstance(n, ast.FunctionDef) and n.name == "from_env"
    )
    call = next(
        n
        for n in ast.walk(from_env)
        if isinstance(n, ast.Call) and ast.unparse(n.func) == "cls"
    )
    return {kw.arg: names(kw.value, frozenset()) for kw in call.keywords if kw.arg}


def settings_env_names() -> set[str]:
    """Every environment variable Settings reads."""
    return set().union(*settings_fields().values())


def function_env_names() -> set[str]:
    """Settings' names, and any read with os.environ elsewhere in function/."""
    found = settings_env_names()
    for path in FUNCTION.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if (
                isinstance(node, ast.Call)
                and ast.unparse(node.func) in ("os.environ.get", "os.getenv")
                and node.args
                and isinstance(node.args[0], ast.Constant)
            ):
                found.add(node.args[0].value)
    return found


def unexposed(fields: dict[str, set[str]], exposed: set[str]) -> list[str]:
    """Settings fields none of whose variables a deploy path can set."""
    return sorted(field for field, names in fields.items() if not names & exposed)


def function_pins(name: str) -> dict[str, str]:
    """function/NAME's pins as {normalised package name: version}."""
    found = {}
    for line in (FUNCTION / name).read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            package, version = line.split("==")
            found[re.sub(r"[-_.]+", "-", package).lower()] = version
    return found


def entry_points() -> set[str]:
    """The functions main.py declares with @functions_framework.http."""
    tree = ast.parse((FUNCTION / "main.py").read_text())
    return {
        node.name
        for node in tree.body
        if isinstance(node, ast.FunctionDef)
        and any(
            ast.unparse(d) == "functions_framework.http" for d in node.decorator_list
        )
    }
