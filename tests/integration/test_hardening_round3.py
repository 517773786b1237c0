"""What an attacker with write access to an unsigned store, a cross-site page
or a crafted header can reach: each test here failed before the fix it names
(issue: hardening, round 3)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from skserve.manifest import LATEST, MANIFEST, sha256_hex
from tests.support import SEED_FEATURES, call


def _version_dir(store: Path) -> Path:
    return store / "versions" / (store / LATEST).read_text().strip()


def _install_twin(
    store: Path, data: bytes, outputs: list[dict[str, str]] | None = None
) -> None:
    """Replace the promoted version's twin (an unsigned store lets anyone)."""
    folder = _version_dir(store)
    (folder / "model.onnx").write_bytes(data)
    manifest = json.loads((folder / MANIFEST).read_text())
    manifest["files"]["model.onnx"] = {"sha256": sha256_hex(data), "bytes": len(data)}
    if outputs is not None:
        manifest["twin"]["outputs"] = outputs
    (folder / MANIFEST).write_text(json.dumps(manifest))


def _constant_twin(labels: np.ndarray, probabilities: np.ndarray) -> bytes:
    """A twin that ignores its input and answers constants."""
    nodes = [
        helper.make_node(
            "Constant", [], ["label"], value=numpy_helper.from_array(labels)
        ),
        helper.make_node(
            "Constant",
            [],
            ["probabilities"],
            value=numpy_helper.from_array(probabilities),
        ),
    ]
    graph = helper.make_graph(
        nodes,
        "crafted",
        [helper.make_tensor_value_info("X", TensorProto.DOUBLE, [None, 10])],
        [
            helper.make_tensor_value_info("label", TensorProto.INT64, [None]),
            helper.make_tensor_value_info(
                "probabilities", TensorProto.DOUBLE, [None, 2]
            ),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21)])
    return model.SerializeToString()


ROLES = [
    {"name": "label", "role": "labels"},
    {"name": "probabilities", "role": "probabilities"},
]


def _predict_with(runtime: str, probabilities: bool = True) -> Any:
    """One row through a function serving with MODEL_RUNTIME=`runtime`."""
    import main

    os.environ["MODEL_RUNTIME"] = runtime
    main._service = None  # built again from the environment
    return call(json={"instances": [SEED_FEATURES], "probabilities": probabilities})


# --- 2. twins refer to nothing outside their own bytes; answers are checked


def test_a_twin_keeping_data_in_a_file_beside_the_server_is_refused(
    served: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    twin = onnx.load_from_string((_version_dir(served) / "model.onnx").read_bytes())
    (tensor,) = [
        t for t in twin.graph.initializer if t.data_type == TensorProto.DOUBLE
    ][:1]
    size = len(numpy_helper.to_array(tensor).tobytes())
    tensor.ClearField("raw_data")
    tensor.ClearField("double_data")
    tensor.data_location = TensorProto.EXTERNAL
    for key, value in {"location": "secret.bin", "length": str(size)}.items():
        entry = tensor.external_data.add()
        entry.key, entry.value = key, value
    _install_twin(served, twin.SerializeToString())
    (tmp_path / "secret.bin").write_bytes(np.full(size // 8, 7.0).tobytes())
    monkeypatch.chdir(tmp_path)  # where a relative location would be read

    refused = _predict_with("onnx")
    fallback = _predict_with("auto")

    assert refused.status_code == 503
    assert refused.get_json()["error"]["code"] == "incompatible_model"
    assert (
        "refers to data outside its own bytes" in refused.get_json()["error"]["message"]
    )
    assert fallback.status_code == 200  # `auto` serves the verified pickle instead
    assert call("GET", "/metadata").get_json()["served_by"] == "sklearn"


def test_a_twin_answering_more_rows_than_it_was_asked_about_is_refused(
    served: Path,
) -> None:
    crafted = _constant_twin(np.zeros(28, dtype=np.int64), np.full((28, 2), 0.5))
    _install_twin(served, crafted, ROLES)

    response = _predict_with("onnx", probabilities=False)

    assert response.status_code == 503
    error = response.get_json()["error"]
    assert error["code"] == "incompatible_model"
    assert "predictions for 28 rows when asked about 1" in error["message"]


def test_a_twin_answering_a_class_the_model_does_not_have_is_refused(
    served: Path,
) -> None:
    crafted = _constant_twin(np.array([7], dtype=np.int64), np.full((1, 2), 0.5))
    _install_twin(served, crafted, ROLES)

    response = _predict_with("onnx")

    assert response.status_code == 503
    error = response.get_json()["error"]
    assert error == {
        "code": "incompatible_model",
        "message": error["message"],
    }
    assert "not one of its manifest's classes" in error["message"]
    assert "7" not in error["message"].replace(_version_dir(served).name, "")
