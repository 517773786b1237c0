"""The function's model lifecycle: named features, version safety, failed publishes."""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import numpy as np
import pytest

from skserve.errors import StoreError, Unavailable
from skserve.loader import LoadedModel, fetch_model
from skserve.manifest import LATEST, MANIFEST
from skserve.storage import open_store
from tests.support import SEED_FEATURES, RecordingStore, call, promoted_files
from train.cli import main as train
from train.publish import publish


@pytest.fixture
def named_model(tmp_path: Path) -> Path:
    """A model trained from a CSV with named columns, served by the function."""
    rng = np.random.default_rng(3)
    path = tmp_path / "houses.csv"
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["rooms", "age", "area", "label"])
        for _ in range(80):
            rooms, age, area = (
                rng.integers(1, 6),
                rng.uniform(0, 50),
                rng.uniform(30, 200),
            )
            writer.writerow([rooms, round(age, 2), round(area, 1), int(area > 110)])
    assert (
        train(["--data", str(path), "--target", "label", "--store", str(tmp_path)]) == 0
    )
    os.environ["MODEL_URI"] = str(tmp_path / "default")
    return tmp_path / "default"


def test_named_rows_in_any_order_equal_positional_rows(named_model: Path) -> None:
    positional = call(json={"instances": [[3, 10.0, 150.0], [1, 40.0, 40.0]]})
    named = call(
        json={
            "instances": [
                {"area": 150.0, "rooms": 3, "age": 10.0},
                {"age": 40.0, "rooms": 1, "area": 40.0},
            ]
        }
    )

    assert named.status_code == 200
    assert named.get_json()["predictions"] == positional.get_json()["predictions"]


def test_named_single_row_uses_the_features_key(named_model: Path) -> None:
    response = call(json={"features": {"rooms": 2, "age": 5.0, "area": 180.0}})

    assert response.status_code == 200
    assert response.get_json()["prediction"] in (0, 1)


def test_named_rows_missing_a_feature_are_rejected_naming_it(named_model: Path) -> None:
    response = call(json={"features": {"rooms": 2, "age": 5.0}})

    error = response.get_json()["error"]
    assert response.status_code == 400
    assert error["code"] == "missing_features"
    assert "'area'" in error["message"]


def test_named_rows_with_an_unknown_feature_are_rejected_naming_it(
    named_model: Path,
) -> None:
    row = {"rooms": 2, "age": 5.0, "area": 99.0, "colour": 1}

    response = call(json={"instances": [row]})

    error = response.get_json()["error"]
    assert response.status_code == 400
    assert error["code"] == "unknown_features"
    assert "'colour'" in error["message"] and "instances[0]" in error["message"]


def test_named_value_that_is_not_a_number_names_the_feature(named_model: Path) -> None:
    response = call(json={"features": {"rooms": 2, "age": None, "area": 99.0}})

    assert response.status_code == 400
    assert "'age'" in response.get_json()["error"]["message"]


# --- scikit-learn version safety ------------------------------------------------


OLD_ENVIRONMENT = {
    "python": "3.8.0",
    "scikit-learn": "0.24.2",
    "numpy": "1",
    "scipy": "1",
}


def _rewrite_manifest(model_dir: Path, **changes: object) -> None:
    version = (model_dir / LATEST).read_text().strip()
    path = model_dir / "versions" / version / MANIFEST
    data = json.loads(path.read_text())
    data.update(changes)
    path.write_text(json.dumps(data))


def test_model_pickled_with_another_sklearn_is_refused_naming_both(
    served: Path,
) -> None:
    os.environ["MODEL_RUNTIME"] = "sklearn"  # the pickle is what has a version
    import sklearn

    _rewrite_manifest(served, environment=OLD_ENVIRONMENT)

    response = call(json={"features": SEED_FEATURES})

    message = response.get_json()["error"]["message"]
    assert response.status_code == 503
    assert response.get_json()["error"]["code"] == "incompatible_model"
    assert "0.24.2" in message and sklearn.__version__ in message
    assert "ALLOW_SKLEARN_VERSION_MISMATCH" in message


def test_version_mismatch_can_be_allowed_and_is_logged(
    served: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    os.environ["MODEL_RUNTIME"] = "sklearn"  # the pickle is what has a version
    _rewrite_manifest(served, environment=OLD_ENVIRONMENT)
    os.environ["ALLOW_SKLEARN_VERSION_MISMATCH"] = "true"

    response = call(json={"features": SEED_FEATURES})

    assert response.status_code == 200
    warning = [
        line for line in capsys.readouterr().out.splitlines() if "0.24.2" in line
    ]
    assert warning and json.loads(warning[0])["severity"] == "WARNING"


# --- what is served while publishing ---------------------------------------------


def test_publish_failing_at_the_manifest_leaves_latest_and_serving_intact(
    served: Path,
) -> None:
    before = (served / LATEST).read_text()
    artifact, facts = promoted_files(served)
    store = RecordingStore(open_store(str(served)), fail_on=MANIFEST)

    with pytest.raises(StoreError):
        publish(store, artifact, facts, name="seed")

    assert (served / LATEST).read_text() == before
    response = call(json={"features": SEED_FEATURES})
    assert response.status_code == 200
    assert response.headers["X-Model-Version"] == before.strip()


def test_loader_uses_the_same_manifest_as_the_model_it_swaps_in(served: Path) -> None:
    import main

    call(json={"features": SEED_FEATURES})
    model = main._get_service().models.current

    assert isinstance(model, LoadedModel)
    assert model.runtime.manifest is model.manifest
    with pytest.raises(Unavailable):
        fetch_model(open_store(str(served)), "20000101T000000Z-00000000")
