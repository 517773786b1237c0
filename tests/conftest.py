"""Shared fixtures: a published seed model, a clean environment, fake credentials."""

from __future__ import annotations

import io
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import joblib
import pytest

from tests.support import run_train


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


def published_model(model_dir: Path) -> Any:
    """The estimator exactly as published (to compare against its own predictions)."""
    version = (model_dir / "LATEST").read_text().strip()
    data = (model_dir / "versions" / version / "model.pkl").read_bytes()
    return joblib.load(io.BytesIO(data))


@pytest.fixture
def seed_model(model_dir: Path) -> Any:
    return published_model(model_dir)
