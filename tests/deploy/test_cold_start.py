"""A cold start imports pandas only when it loads a version with scikit-learn."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.deploy.frames import MIXED_ROWS, publish_canonical
from tests.support import SEED_FEATURES, imported_after

pytestmark = pytest.mark.e2e

WATCHED = ("pandas", "sklearn")

# A fresh interpreter in function/, as functions-framework starts one: the app,
# then one request, which must succeed.
SERVE = """
import json, functions_framework
app = functions_framework.create_app(target="predict", source="main.py")
client = app.test_client()
answer = client.open({path!r}, method={method!r}, json=json.loads({body!r}))
assert answer.status_code == 200, answer.get_data(as_text=True)
"""


def serve(method: str, path: str, body: object = None) -> str:
    return SERVE.format(method=method, path=path, body=json.dumps(body))


@pytest.fixture(scope="module")
def frame_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The canonical mixed-type pipeline's pickle, published by `python -m train
    publish --no-twin` (its twin would be served without scikit-learn)."""
    folder = tmp_path_factory.mktemp("frame")
    published, _, _ = publish_canonical(
        folder, str(folder / "store"), "frame", "--no-twin"
    )
    assert published.returncode == 0, published.stderr
    return folder / "store" / "frame"


@pytest.fixture(scope="module")
def twin_frame_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The same pipeline published with its ONNX twin."""
    folder = tmp_path_factory.mktemp("twin-frame")
    published, _, _ = publish_canonical(folder, str(folder / "store"), "frame")
    assert published.returncode == 0, published.stderr
    assert "with ONNX twin" in published.stdout
    return folder / "store" / "frame"


def test_a_numeric_model_served_by_its_twin_never_imports_pandas(
    seed_store: Path,
) -> None:
    env = {"MODEL_URI": str(seed_store / "seed"), "MODEL_RUNTIME": "auto"}
    code = serve("POST", "/predict", {"instances": [SEED_FEATURES] * 3})

    assert imported_after(code, (*WATCHED, "onnxruntime"), env) == ["onnxruntime"]


def test_a_numeric_pickle_served_by_scikit_learn_never_imports_pandas(
    seed_store: Path,
) -> None:
    """scikit-learn 1.9's sklearn.utils.fixes imports pandas whenever it is
    installed; the runtime hides it while loading a version that takes a
    float array, so an all-numeric model's cold start does not pay for it."""
    env = {"MODEL_URI": str(seed_store / "seed"), "MODEL_RUNTIME": "sklearn"}
    code = serve("POST", "/predict", {"instances": [SEED_FEATURES] * 3})

    assert imported_after(code, WATCHED, env) == ["sklearn"]


def test_a_dataframe_model_imports_pandas_when_it_loads_not_before(
    frame_model: Path,
) -> None:
    env = {"MODEL_URI": str(frame_model)}

    assert imported_after(serve("GET", "/health"), WATCHED, env) == []
    assert imported_after(
        serve("POST", "/predict", {"instances": MIXED_ROWS}), WATCHED, env
    ) == ["pandas", "sklearn"]


def test_a_dataframe_model_served_by_its_twin_imports_neither_pandas_nor_sklearn(
    twin_frame_model: Path,
) -> None:
    env = {"MODEL_URI": str(twin_frame_model), "MODEL_RUNTIME": "auto"}
    code = serve("POST", "/predict", {"instances": MIXED_ROWS})

    assert imported_after(code, (*WATCHED, "onnxruntime"), env) == ["onnxruntime"]
