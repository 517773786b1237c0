"""Shared fixtures: a published seed model, a clean environment, fake credentials."""

from __future__ import annotations

import os
import shutil
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any, NamedTuple

import flask
import pytest
from flask.testing import FlaskClient

from tests.support import REPO, GCSEmulator, free_port, published_model, run_train


@pytest.fixture(autouse=True)
def _restore_environ() -> Iterator[None]:
    """Every test gets back the environment it started with (as Flask's tests do)."""
    saved = dict(os.environ)
    yield
    os.environ.clear()
    os.environ.update(saved)


@pytest.fixture(autouse=True)
def _fresh_service() -> Iterator[None]:
    """The function builds its service lazily from the environment; reset it."""
    import main

    main._service = None
    yield
    main._service = None


class FunctionApp(NamedTuple):
    """The app functions-framework serves, and the `main` module it executed."""

    app: flask.Flask
    module: ModuleType


@pytest.fixture(scope="session")
def _function_app() -> FunctionApp:
    """Built once: create_app executes function/main.py as a new `main` module
    (and registers it in sys.modules) and points functions_framework's
    errorhandler at this app, exactly as `functions-framework` does at start."""
    import functions_framework

    app = functions_framework.create_app(
        target="predict", source=str(REPO / "function" / "main.py")
    )
    return FunctionApp(app, sys.modules["main"])


@pytest.fixture
def client(_function_app: FunctionApp) -> Iterator[FlaskClient]:
    """A Flask test client of the app functions-framework serves.

    Its `main` is the `main` of sys.modules for the test, so `call()` and
    `main._service = None` reach the same lazily built service, which is reset
    around the test (it reads the environment when first built).
    """
    app, module = _function_app
    # Another test (e.g. tests/deploy's Lambda handler) may have imported a
    # `main` of its own meanwhile.
    saved = sys.modules.get("main")
    sys.modules["main"] = module
    module._service = None
    yield app.test_client()
    module._service = None
    if saved is not None:
        sys.modules["main"] = saved


@pytest.fixture
def aws_credentials() -> None:
    """Fake credentials first, so nothing can reach a real AWS account."""
    os.environ.update(
        AWS_ACCESS_KEY_ID="testing",
        AWS_SECRET_ACCESS_KEY="testing",
        AWS_SECURITY_TOKEN="testing",
        AWS_SESSION_TOKEN="testing",
        AWS_DEFAULT_REGION="us-east-1",
    )


@pytest.fixture(scope="session")
def seed_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A store holding the seed's model, published once by `python -m train`."""
    store = tmp_path_factory.mktemp("seed-store")
    result = run_train("--store", str(store), "--name", "seed")
    assert result.returncode == 0, result.stderr
    return store


@pytest.fixture
def model_dir(seed_store: Path, tmp_path: Path) -> Path:
    """A private copy of the published seed model that a test may change."""
    target = tmp_path / "store" / "seed"
    shutil.copytree(seed_store / "seed", target)
    return target


@pytest.fixture
def served(model_dir: Path) -> Path:
    """MODEL_URI points the function at `model_dir`."""
    os.environ["MODEL_URI"] = str(model_dir)
    return model_dir


@pytest.fixture
def seed_model(model_dir: Path) -> Any:
    return published_model(model_dir)


@pytest.fixture(scope="session")
def moto_server() -> Iterator[str]:
    """moto's S3 over real HTTP for the whole session; returns its endpoint URL."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=free_port(), verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture
def s3_env(
    aws_credentials: None, moto_server: str, request: pytest.FixtureRequest
) -> dict:
    """Environment for a process using a fresh bucket on the moto server."""
    import boto3

    bucket = "models-" + uuid.uuid4().hex[:12]
    env = {k: os.environ[k] for k in os.environ if k.startswith("AWS_")}
    env["AWS_ENDPOINT_URL_S3"] = moto_server
    os.environ.update(env)
    boto3.client("s3", region_name="us-east-1").create_bucket(Bucket=bucket)
    return {**env, "BUCKET": bucket}


@pytest.fixture(scope="session")
def gcs_emulator() -> Iterator[GCSEmulator]:
    """gcp-storage-emulator over real HTTP, one bucket, for the whole session."""
    emulator = GCSEmulator("models")
    yield emulator
    emulator.stop()
