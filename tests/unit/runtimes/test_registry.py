"""skserve.runtimes: runtimes are chosen by name and imported only when chosen."""

from __future__ import annotations

from pathlib import Path

import pytest

from skserve.errors import IncompatibleModel
from skserve.runtimes import RUNTIME_CHOICES, RUNTIMES, runtime_class
from skserve.runtimes.sklearn import SklearnRuntime
from tests.support import block_onnxruntime, imported_after


@pytest.fixture
def runtime_needing_a_missing_library(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> str:
    """A runtime registered as `fast` whose module imports a library that is
    not installed, as a runtime deployed without its requirements would."""
    module = tmp_path / "skserve_test_fast_runtime.py"
    module.write_text(
        "import skserve_test_not_installed_lib\n\nclass FastRuntime:\n    pass\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setitem(RUNTIMES, "fast", "skserve_test_fast_runtime:FastRuntime")
    return "fast"


def test_runtime_class_imports_the_registered_class() -> None:
    assert runtime_class("sklearn") is SklearnRuntime


@pytest.mark.parametrize("name", sorted(RUNTIMES))
def test_every_registered_runtime_answers_to_its_registry_name(name: str) -> None:
    """`name` is what MODEL_RUNTIME and the logs call it, `artifact` the file."""
    runtime = runtime_class(name)

    assert runtime.name == name
    assert runtime.artifact.startswith("model.")


def test_model_runtime_choices_are_auto_and_every_registered_runtime() -> None:
    assert ("auto", *RUNTIMES) == RUNTIME_CHOICES


@pytest.mark.parametrize("name", ["tensorflow", "auto", "", "SKLEARN"])
def test_an_unknown_runtime_is_incompatible_listing_the_valid_ones(name: str) -> None:
    with pytest.raises(IncompatibleModel) as raised:
        runtime_class(name)

    message = raised.value.message
    assert f"unknown model runtime {name!r}" in message
    assert all(valid in message for valid in RUNTIMES)
    assert raised.value.status == 503


def test_a_runtime_whose_library_is_missing_is_incompatible_naming_it(
    runtime_needing_a_missing_library: str,
) -> None:
    with pytest.raises(IncompatibleModel) as raised:
        runtime_class(runtime_needing_a_missing_library)

    message = raised.value.message
    assert "the fast runtime is not installed here" in message
    assert "skserve_test_not_installed_lib" in message
    assert raised.value.code == "incompatible_model"


def test_the_onnx_runtime_without_onnxruntime_is_incompatible_naming_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A deployment without onnxruntime: choosing `onnx` must say so at once
    (MODEL_RUNTIME=auto relies on this to fall back to scikit-learn)."""
    block_onnxruntime(monkeypatch)

    with pytest.raises(IncompatibleModel) as raised:
        runtime_class("onnx")

    assert "onnxruntime" in raised.value.message


def test_importing_the_function_imports_no_model_library() -> None:
    """Cold start pays for scikit-learn (or onnxruntime) only when a version
    that needs it is loaded: the registry names classes, it does not import them."""
    code = "import main, skserve.runtimes, skserve.loader"
    libraries = ("sklearn", "joblib", "scipy", "onnxruntime")

    assert imported_after(code, libraries) == []


def test_choosing_the_sklearn_runtime_does_not_import_sklearn_yet() -> None:
    code = "from skserve.runtimes import runtime_class\nruntime_class('sklearn')"

    assert imported_after(code, ("sklearn", "joblib")) == []
