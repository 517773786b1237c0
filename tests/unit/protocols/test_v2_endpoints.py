"""skserve.protocols.v2.endpoints through the function, called the way Google's
samples call it: metadata shows the schema and the outputs each model gives,
answers equal the model's own on a DataFrame of the same rows, and no field of
any request, whatever its JSON type, gets more than a 4xx `{"error": "..."}`
with no ERROR in the log."""

from __future__ import annotations

import copy
import json
import os
import pickle
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.cluster import KMeans
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import IsolationForest
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from skserve.storage import open_store
from tests.integration.test_fuzz import FUZZ
from tests.support import SEED_FEATURES, call
from train.artifact import describe
from train.publish import publish
from train.schema import example_row, infer_schema

INFER = "/v2/models/seed/infer"


def _customers(n: int = 120) -> tuple[pd.DataFrame, np.ndarray]:
    rng = np.random.default_rng(3)
    frame = pd.DataFrame(
        {
            "income": rng.normal(50, 10, n),
            "age": rng.integers(18, 80, n).astype(float),
            "plan": rng.choice(["basic", "standard", "premium"], n),
            "region": rng.choice(["n", "s"], n),
        }
    )
    frame.loc[::7, "income"] = np.nan
    y = ((frame.income.fillna(50) > 50) ^ (frame.plan == "basic")).astype(int)
    return frame, y.to_numpy()


def _publish(root: Path, model: Any, frame: pd.DataFrame | None, **facts: Any) -> None:
    """Publish as the trainer does: the schema inferred and proved, unless
    `facts` gives one."""
    if "input_schema" not in facts:
        schema = infer_schema(model, frame)
        facts["input_schema"] = schema.to_json()
        facts["example"] = example_row(schema, frame)
    publish(
        open_store(str(root)),
        pickle.dumps(model),
        {**describe(model), **facts},
        name=root.name,
    )


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A DataFrame pipeline with strings and missing values, a clusterer, an
    outlier detector, and a model whose schema promises more than it takes."""
    root = tmp_path_factory.mktemp("v2-models")
    frame, y = _customers()
    numbers = frame[["income", "age"]].fillna(50)
    refusing = LogisticRegression().fit(numbers.to_numpy(), y)
    built = {
        "customers": make_pipeline(
            ColumnTransformer(
                [
                    (
                        "num",
                        make_pipeline(SimpleImputer(), StandardScaler()),
                        ["income", "age"],
                    ),
                    ("cat", OneHotEncoder(handle_unknown="ignore"), ["plan", "region"]),
                ]
            ),
            LogisticRegression(),
        ).fit(frame, y),
        "clusters": KMeans(3, n_init=2, random_state=0).fit(numbers),
        "outliers": IsolationForest(n_estimators=20, random_state=0).fit(numbers),
    }
    _publish(root / "customers", built["customers"], frame)
    _publish(root / "clusters", built["clusters"], numbers)
    _publish(root / "outliers", built["outliers"], numbers)
    # A schema written by hand that lets a missing value through to a model
    # that raises on NaN: the model's exception must be a 400, not a 500.
    _publish(
        root / "refusing",
        refusing,
        None,
        input_schema={
            "format": "array",
            "columns": [
                {"name": "x0", "kind": "number", "nullable": True},
                {"name": "x1", "kind": "number", "nullable": False},
            ],
        },
    )
    return {"root": root, "models": built, "frame": frame}


def serve(models: dict[str, Any], name: str) -> Any:
    """Point the function at the published `name`; return the fitted model."""
    import main

    os.environ["MODEL_URI"] = str(models["root"] / name)
    main._service = None  # settings are read when the service is built
    return models["models"].get(name)


def v2_call(
    method: str, path: str, body: Any = None, **headers: str
) -> tuple[int, Any]:
    response = call(
        method,
        path,
        data=None if body is None else json.dumps(body),
        headers=headers,
    )
    assert response.headers["X-Request-Id"]
    return response.status_code, response.get_json()


def error_of(status: int, body: Any) -> str:
    """The spec's error body: one key, a message string."""
    assert 400 <= status < 500, (status, body)
    assert set(body) == {"error"} and isinstance(body["error"], str), body
    return body["error"]


def columns_body(rows: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    """MLServer's pandas form of the customers' rows: one input per column."""
    strings = {"parameters": {"content_type": "str"}}
    return {
        "parameters": {"content_type": "pd"},
        "inputs": [
            {
                "name": name,
                "datatype": "BYTES" if name in ("plan", "region") else "FP64",
                "shape": [len(rows), 1],
                "data": [row[name] for row in rows],
                **(strings if name in ("plan", "region") else {}),
            }
            for name in ("income", "age", "plan", "region")
        ],
        **extra,
    }


ROWS = [
    {"income": 61.5, "age": 33.0, "plan": "premium", "region": "s"},
    {"income": None, "age": 52.0, "plan": "gold", "region": "n"},  # null, unseen
]


# --- the seed model (existing behaviour)


def test_infer_through_the_function_predicts_like_the_seed_model(
    served: Path, seed_model: Any
) -> None:
    rows = [SEED_FEATURES, [-v for v in SEED_FEATURES]]
    body = {
        "id": "abc",
        "inputs": [{"name": "any", "datatype": "FP64", "shape": [2, 10], "data": rows}],
    }

    status, answer = v2_call("POST", INFER, body)

    assert status == 200, answer
    assert answer["model_name"] == "seed" and answer["id"] == "abc"
    assert answer["model_version"] == (served / "LATEST").read_text().strip()
    assert answer["outputs"] == [
        {
            "name": "predict",
            "datatype": "INT64",
            "shape": [2, 1],
            "data": seed_model.predict(np.array(rows)).tolist(),
        }
    ]


@pytest.mark.parametrize(
    ("method", "path", "status", "message"),
    [
        ("GET", "/v2/models/other", 404, "unknown model 'other'; this server serves"),
        ("GET", "/v2/models/seed/versions/v0/ready", 404, "this instance serves"),
        ("GET", "/v2/nothing", 404, "no route /v2/nothing; use GET /v2"),
        ("PUT", INFER, 405, "PUT is not allowed on /v2/models/seed/infer; use POST"),
        ("POST", INFER, 400, "malformed JSON"),
    ],
)
def test_errors_on_v2_paths_are_a_single_message_string(
    served: Path, method: str, path: str, status: int, message: str
) -> None:
    response = call(method, path, data=b"{", content_type="application/json")

    assert response.status_code == status
    body = response.get_json()
    assert set(body) == {"error"} and isinstance(body["error"], str)
    assert message in body["error"]


def test_predict_keeps_its_own_error_shape_beside_v2(served: Path) -> None:
    response = call("POST", "/predict", data=b"{", content_type="application/json")

    assert response.status_code == 400
    assert response.get_json()["error"]["code"] == "invalid_json"


# --- typed rows


def test_metadata_of_a_dataframe_model_lists_one_input_per_column(
    models: dict[str, Any],
) -> None:
    serve(models, "customers")

    status, metadata = v2_call("GET", "/v2/models/customers")

    assert status == 200, metadata
    assert metadata["parameters"] == {"content_type": "pd"}
    assert metadata["inputs"] == [
        {"name": "income", "datatype": "FP64", "shape": [-1, 1]},
        {"name": "age", "datatype": "FP64", "shape": [-1, 1]},
        {
            "name": "plan",
            "datatype": "BYTES",
            "shape": [-1, 1],
            "parameters": {"content_type": "str"},
        },
        {
            "name": "region",
            "datatype": "BYTES",
            "shape": [-1, 1],
            "parameters": {"content_type": "str"},
        },
    ]
    assert metadata["outputs"] == [
        {"name": "predict", "datatype": "INT64", "shape": [-1, 1]},
        {"name": "predict_proba", "datatype": "FP64", "shape": [-1, 2]},
    ]


def test_inputs_per_column_predict_like_the_model_on_its_dataframe(
    models: dict[str, Any],
) -> None:
    model = serve(models, "customers")
    body = columns_body(ROWS, outputs=[{"name": "predict"}, {"name": "predict_proba"}])
    body["inputs"].reverse()  # any order

    status, answer = v2_call("POST", "/v2/models/customers/infer", body)

    frame = pd.DataFrame(ROWS).astype({"income": float})
    assert status == 200, answer
    labels, proba = answer["outputs"]
    assert labels["data"] == model.predict(frame).tolist()
    assert np.allclose(proba["data"], model.predict_proba(frame).ravel())


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            {"plan": "basic", "region": None},
            "inputs[3] ('region') row 0 may not be missing: this model needs a "
            "string there, got null",
        ),
        (
            {"plan": 7},
            "inputs[2] ('plan') row 0 must be a string, got 7",
        ),
    ],
)
def test_values_the_schema_refuses_are_400s_naming_input_and_row(
    models: dict[str, Any], change: dict[str, Any], message: str
) -> None:
    serve(models, "customers")

    status, body = v2_call(
        "POST", "/v2/models/customers/infer", columns_body([{**ROWS[0], **change}])
    )

    assert error_of(status, body) == message


def test_a_clusterer_gives_int64_cluster_indices_and_no_decision_function(
    models: dict[str, Any],
) -> None:
    model = serve(models, "clusters")
    rows = [[40.0, 20.0], [60.0, 70.0]]
    body = {
        "inputs": [
            {"name": "input-0", "datatype": "FP64", "shape": [2, 2], "data": rows}
        ]
    }

    _, metadata = v2_call("GET", "/v2/models/clusters")
    status, answer = v2_call("POST", "/v2/models/clusters/infer", body)
    refused = v2_call(
        "POST",
        "/v2/models/clusters/infer",
        {**body, "outputs": [{"name": "decision_function"}]},
    )

    assert metadata["inputs"] == [
        {"name": "input-0", "datatype": "FP64", "shape": [-1, 2]}
    ]
    assert metadata["outputs"] == [
        {"name": "predict", "datatype": "INT64", "shape": [-1, 1]}
    ]
    assert status == 200, answer
    (output,) = answer["outputs"]
    frame = pd.DataFrame(rows, columns=["income", "age"])
    assert output["datatype"] == "INT64"
    assert output["data"] == model.predict(frame).tolist()
    assert error_of(*refused) == (
        "decision_function is only given by outlier detectors; this clustering "
        "model gives predict"
    )


def test_an_outlier_detector_gives_its_decision_function_when_asked(
    models: dict[str, Any],
) -> None:
    model = serve(models, "outliers")
    rows = [[50.0, 45.0], [500.0, -300.0]]
    body = {
        "inputs": [
            {"name": "input-0", "datatype": "FP64", "shape": [2, 2], "data": rows}
        ],
        "outputs": [{"name": "predict"}, {"name": "decision_function"}],
    }

    _, metadata = v2_call("GET", "/v2/models/outliers")
    status, answer = v2_call("POST", "/v2/models/outliers/infer", body)

    assert metadata["outputs"] == [
        {"name": "predict", "datatype": "INT64", "shape": [-1, 1]},
        {"name": "decision_function", "datatype": "FP64", "shape": [-1, 1]},
    ]
    assert status == 200, answer
    labels, scores = answer["outputs"]
    frame = pd.DataFrame(rows, columns=["income", "age"])
    assert labels["datatype"] == "INT64"
    assert labels["data"] == model.predict(frame).tolist() == [1, -1]
    assert scores["datatype"] == "FP64" and scores["shape"] == [2, 1]
    assert np.allclose(scores["data"], model.decision_function(frame))


def test_decision_function_of_a_classifier_is_a_400_naming_its_outputs(
    models: dict[str, Any],
) -> None:
    serve(models, "customers")
    body = columns_body(ROWS, outputs=[{"name": "decision_function"}])

    refused = v2_call("POST", "/v2/models/customers/infer", body)

    assert error_of(*refused) == (
        "decision_function is only given by outlier detectors; this classification "
        "model gives predict, predict_proba"
    )


def test_a_model_that_raises_on_allowed_values_is_a_400(
    models: dict[str, Any], capfd: pytest.CaptureFixture[str]
) -> None:
    serve(models, "refusing")
    body = {
        "inputs": [
            {"name": "x", "datatype": "FP64", "shape": [1, 2], "data": [None, 1.0]}
        ]
    }

    status, answer = v2_call("POST", "/v2/models/refusing/infer", body)

    assert error_of(status, answer).startswith("the model cannot use these values: ")
    assert '"severity":"ERROR"' not in capfd.readouterr().out


def test_a_list_where_a_datatype_belongs_is_a_400_not_a_500(served: Path) -> None:
    body = {
        "inputs": [
            {"name": "x", "datatype": ["FP64"], "shape": [1, 10], "data": SEED_FEATURES}
        ]
    }

    status, answer = v2_call("POST", INFER, body)

    assert error_of(status, answer).startswith("inputs[0].datatype must be one of")


# --- every field of every request shape, with every wrong JSON type


JSON_TYPES = ("string", "integer", "number", "bool", "null", "list", "object")
_SCALARS = st.one_of(st.none(), st.booleans(), st.integers(-5, 5), st.text(max_size=4))
VALUES: dict[str, st.SearchStrategy[Any]] = {
    "string": st.text(max_size=12),
    "integer": st.integers(-(10**20), 10**20),
    # Not integers: JSON numbers with a fraction or exponent.
    "number": st.floats(allow_nan=False, allow_infinity=False).filter(
        lambda v: not v.is_integer()
    ),
    "bool": st.booleans(),
    "null": st.none(),
    "list": st.lists(_SCALARS, max_size=3),
    "object": st.dictionaries(st.text(max_size=4), _SCALARS, max_size=3),
}
NUMBERS = {"integer", "number"}


def _matrix(binary: bool) -> tuple[dict[str, Any], bytes]:
    """One [2, 2] FP64 tensor for the clusterer (income, age), every optional
    field present."""
    data = np.array([[40.0, 20.0], [60.0, 70.0]], "<f8")
    tensor: dict[str, Any] = {
        "name": "input-0",
        "datatype": "FP64",
        "shape": [2, 2],
        "parameters": {"content_type": "np"},
    }
    if binary:
        tensor["parameters"]["binary_data_size"] = data.nbytes
    else:
        tensor["data"] = data.tolist()
    body = {
        "id": "r-1",
        "parameters": {"binary_data_output": binary, "content_type": "np"},
        "inputs": [tensor],
        "outputs": [{"name": "predict", "parameters": {"binary_data": binary}}],
    }
    return body, data.tobytes() if binary else b""


def _columns(binary: bool) -> tuple[dict[str, Any], bytes]:
    """The customers' pandas form, every optional field present; binary:
    FP64 and length-prefixed BYTES after the header."""
    incomes = np.array([61.5, 40.0], "<f8")
    plans = b"".join(len(s).to_bytes(4, "little") + s for s in (b"basic", b"gold"))
    inputs: list[dict[str, Any]] = [
        {"name": "income", "datatype": "FP64", "shape": [2, 1]},
        {"name": "age", "datatype": "FP64", "shape": [2], "data": [33.0, None]},
        {
            "name": "plan",
            "datatype": "BYTES",
            "shape": [2, 1],
            "parameters": {"content_type": "str"},
        },
        {"name": "region", "datatype": "BYTES", "shape": [2, 1], "data": ["n", "s"]},
    ]
    if binary:
        inputs[0]["parameters"] = {"binary_data_size": incomes.nbytes}
        inputs[2]["parameters"]["binary_data_size"] = len(plans)
    else:
        inputs[0]["data"] = [[61.5], [None]]
        inputs[2]["data"] = ["basic", "gold"]
    body = {
        "id": "r-2",
        "parameters": {"content_type": "pd", "binary_data_output": False},
        "inputs": inputs,
        "outputs": [
            {"name": "predict_proba", "parameters": {"binary_data": binary}},
            {"name": "predict"},
        ],
    }
    return body, incomes.tobytes() + plans if binary else b""


# name -> (model, body, binary data)
SHAPES = {
    "tensor": ("clusters", *_matrix(False)),
    "tensor-binary": ("clusters", *_matrix(True)),
    "columns": ("customers", *_columns(False)),
    "columns-binary": ("customers", *_columns(True)),
}


def _paths(value: Any, path: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    """Every field's path in a JSON value, the value itself first."""
    yield path
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _paths(item, (*path, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _paths(item, (*path, index))


def _type_of(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    return {str: "string", list: "list", dict: "object"}[type(value)]


def _right_types(body: dict[str, Any], path: tuple[Any, ...]) -> set[str]:
    """The JSON types a field may hold: its own (any number for a number), and
    for a value in the data of the customers' income and age (inputs 0 and 1
    of the pandas form), which may be missing, numbers and null."""
    value = _get(body, path)
    right = {_type_of(value)}
    if right & NUMBERS:
        right |= NUMBERS
    leaf = "data" in path and not isinstance(value, list | dict)
    if leaf and path[1] in (0, 1) and body["inputs"][0]["name"] == "income":
        right |= NUMBERS | {"null"}
    return right


def _get(body: Any, path: tuple[Any, ...]) -> Any:
    for key in path:
        body = body[key]
    return body


# Every field of every shape, with the JSON types it must not hold.
FIELDS = [
    pytest.param(
        shape,
        path,
        wrong,
        id=f"{shape}:{'.'.join(map(str, path)) or 'body'}",
    )
    for shape, (_, body, _) in SHAPES.items()
    for path in _paths(body)
    if (wrong := tuple(t for t in JSON_TYPES if t not in _right_types(body, path)))
]


def _send(body: Any, binary: bytes, model: str) -> Any:
    raw = json.dumps(body).encode()
    headers = {"Inference-Header-Content-Length": str(len(raw))} if binary else {}
    return call("POST", f"/v2/models/{model}/infer", data=raw + binary, headers=headers)


def test_every_request_shape_is_answered_200_as_sent(models: dict[str, Any]) -> None:
    """The bodies the wrong-type cases start from are valid."""
    for model, body, binary in SHAPES.values():
        serve(models, model)
        response = _send(body, binary, model)
        assert response.status_code == 200, response.get_data()


@pytest.mark.slow  # hundreds of requests: for `make test`, not the edit loop
@pytest.mark.parametrize(("shape", "path", "wrong"), FIELDS)
@settings(FUZZ, max_examples=3)
@given(data=st.data())
def test_a_field_of_the_wrong_json_type_is_a_4xx_error_string_never_logged_as_error(
    models: dict[str, Any],
    capfd: pytest.CaptureFixture[str],
    shape: str,
    path: tuple[Any, ...],
    wrong: tuple[str, ...],
    data: st.DataObject,
) -> None:
    """Each example sends the field once with a value of each wrong type."""
    model, body, binary = SHAPES[shape]
    if os.environ.get("MODEL_URI") != str(models["root"] / model):
        serve(models, model)
    for kind in wrong:
        value = data.draw(VALUES[kind], label=kind)
        sent = copy.deepcopy(body)
        if path:
            _get(sent, path[:-1])[path[-1]] = value
        else:
            sent = value
        capfd.readouterr()

        response = _send(sent, binary, model)

        logged = capfd.readouterr().out
        assert 400 <= response.status_code < 500, (response.status_code, sent)
        answer = response.get_json()
        assert set(answer) == {"error"} and isinstance(answer["error"], str), answer
        assert answer["error"]
        assert '"severity":"ERROR"' not in logged, logged
