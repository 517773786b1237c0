"""Typed rows over the Open Inference Protocol (V2) through a real
functions-framework process: DataFrame models published with the CLI answer
one input per column, from JSON, MLServer's pandas form, tritonclient's binary
BYTES and KServe's REST client, exactly as the model answers a DataFrame of
the same rows with its training dtypes; refused values are 400s naming them."""

from __future__ import annotations

import asyncio
import json
import pickle
from collections.abc import Iterator
from typing import Any

import numpy as np
import pandas as pd
import pytest
import requests
import tritonclient.http as triton
from kserve import InferenceRESTClient, InferInput, InferRequest, RESTConfig
from kserve.protocol.infer_type import RequestedOutput
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler
from tritonclient.utils import InferenceServerException

from tests.support import FunctionServer, published_model, run_train

pytestmark = pytest.mark.e2e

COLUMNS = ["income", "age", "plan", "region"]
STRINGS = ("plan", "region")
# A missing income (nullable: imputed) and a plan never seen in training
# (the encoder ignores it; a pandas category makes it missing).
ROWS = [
    {"income": 61.5, "age": 33.0, "plan": "premium", "region": "s"},
    {"income": None, "age": 52.0, "plan": "gold", "region": "n"},
    {"income": 38.25, "age": 71.0, "plan": "basic", "region": "s"},
]
# The categories model's columns may all be missing, its categories too.
CATEGORY_ROWS = [*ROWS, {"income": 44.0, "age": 29.0, "plan": "basic", "region": None}]


def _training(n: int = 300) -> tuple[pd.DataFrame, np.ndarray]:
    rng = np.random.default_rng(11)
    frame = pd.DataFrame(
        {
            "income": rng.normal(50, 10, n),
            "age": rng.integers(18, 80, n).astype(float),
            "plan": rng.choice(["basic", "standard", "premium"], n),
            "region": rng.choice(["n", "s"], n),
        }
    )
    frame.loc[::9, "income"] = np.nan
    frame.loc[::13, "age"] = np.nan
    y = ((frame.income.fillna(50) > 50) ^ (frame.plan == "basic")).astype(int)
    return frame, y.to_numpy()


@pytest.fixture(scope="module")
def published(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The canonical pipeline and a HistGradientBoosting model on pandas
    categories, pickled by their user and published with `python -m train
    publish --holdout`."""
    work = tmp_path_factory.mktemp("v2-tabular")
    store = work / "store"
    frame, y = _training()
    categorical = frame.astype({"plan": "category", "region": "category"})
    categorical.loc[::17, "region"] = np.nan
    fitted = {
        "customers": Pipeline(
            [
                (
                    "columns",
                    ColumnTransformer(
                        [
                            (
                                "num",
                                make_pipeline(SimpleImputer(), StandardScaler()),
                                ["income", "age"],
                            ),
                            (
                                "cat",
                                OneHotEncoder(handle_unknown="ignore"),
                                ["plan", "region"],
                            ),
                        ]
                    ),
                ),
                ("model", LogisticRegression()),
            ]
        ).fit(frame, y),
        "categories": HistGradientBoostingClassifier(
            max_iter=40, categorical_features="from_dtype", random_state=0
        ).fit(categorical, y),
    }
    holdout = work / "holdout.csv"
    frame.assign(target=y).to_csv(holdout, index=False)  # NaN: empty cells
    for name, model in fitted.items():
        pkl = work / f"{name}.pkl"
        pkl.write_bytes(pickle.dumps(model))
        result = run_train(
            "publish",
            str(pkl),
            "--holdout",
            str(holdout),
            "--store",
            str(store),
            "--name",
            name,
        )
        assert result.returncode == 0, result.stderr
    return {
        "store": store,
        "dtypes": {"customers": frame.dtypes, "categories": categorical.dtypes},
    }


@pytest.fixture(scope="module")
def customers(
    published: dict[str, Any], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[FunctionServer]:
    env = {"MODEL_URI": str(published["store"] / "customers")}
    with FunctionServer(env, tmp_path_factory.mktemp("v2-customers")) as running:
        yield running


@pytest.fixture(scope="module")
def categories(
    published: dict[str, Any], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[FunctionServer]:
    env = {"MODEL_URI": str(published["store"] / "categories")}
    with FunctionServer(env, tmp_path_factory.mktemp("v2-categories")) as running:
        yield running


SERVERS = ["customers", "categories"]


def served(request: pytest.FixtureRequest, name: str) -> FunctionServer:
    return request.getfixturevalue(name)


def expected(
    published: dict[str, Any], name: str, rows: list[dict[str, Any]]
) -> tuple[list[Any], np.ndarray]:
    """The published model's own predict and predict_proba on a DataFrame of
    `rows` with the training dtypes (unseen categories become missing, as
    pandas makes them)."""
    model = published_model(published["store"] / name)
    frame = pd.DataFrame(rows, columns=COLUMNS)
    for column, dtype in published["dtypes"][name].items():
        if isinstance(dtype, pd.CategoricalDtype):
            frame[column] = pd.Categorical(frame[column], categories=dtype.categories)
        else:
            frame[column] = frame[column].astype(dtype)
    return model.predict(frame).tolist(), model.predict_proba(frame)


def assert_same_probabilities(got: np.ndarray, want: np.ndarray) -> None:
    """Equal to rounding: the function serves the pickle, or (MODEL_RUNTIME
    auto) its ONNX twin when the trainer published one, which its parity gate
    proved to give the pickle's probabilities to the last bits or so."""
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-9)


def rows_of(name: str) -> list[dict[str, Any]]:
    return CATEGORY_ROWS if name == "categories" else ROWS


def json_columns(rows: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    """One JSON input per column, BYTES for strings, null where missing."""
    return {
        "inputs": [
            {
                "name": column,
                "datatype": "BYTES" if column in STRINGS else "FP64",
                "shape": [len(rows), 1],
                "data": [row[column] for row in rows],
            }
            for column in COLUMNS
        ],
        "outputs": [{"name": "predict"}, {"name": "predict_proba"}],
        **extra,
    }


def mlserver_pandas(frame: pd.DataFrame) -> dict[str, Any]:
    """The request MLServer's PandasCodec.encode_request(frame) sends as JSON
    (mlserver/codecs/pandas.py): content_type "pd", one input per column of
    shape [rows, 1], NaN as null; an object or category column is BYTES with
    content_type "str" when every value is a string, else "pd_json" with each
    element a JSON text."""
    inputs = []
    for name in frame.columns:
        series = frame[name]
        data = [None if pd.isna(v) else v for v in series.tolist()]
        if series.dtype == object or isinstance(series.dtype, pd.CategoricalDtype):
            datatype = "BYTES"
            if all(isinstance(v, str) for v in data):
                parameters = {"content_type": "str"}
            else:
                parameters = {"content_type": "pd_json"}
                data = [json.dumps(v) for v in data]
        else:
            datatype = {"float64": "FP64", "int64": "INT64", "bool": "BOOL"}[
                str(series.dtype)
            ]
            parameters = None
        entry = {"name": name, "datatype": datatype, "shape": [len(series), 1]}
        entry["data"] = data
        if parameters:
            entry["parameters"] = parameters
        inputs.append(entry)
    return {"parameters": {"content_type": "pd"}, "inputs": inputs}


def post(server: FunctionServer, body: dict[str, Any], name: str) -> requests.Response:
    return requests.post(
        f"{server.url}/v2/models/{name}/infer",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
        timeout=60,
    )


def outputs_of(response: requests.Response) -> tuple[list[Any], np.ndarray]:
    assert response.status_code == 200, response.text
    labels, proba = response.json()["outputs"]
    assert labels["name"] == "predict" and proba["name"] == "predict_proba"
    return labels["data"], np.array(proba["data"]).reshape(proba["shape"])


def error_of(response: requests.Response) -> str:
    """The spec's error body: exactly one key, a message string."""
    assert response.status_code == 400, response.text
    body = response.json()
    assert set(body) == {"error"} and isinstance(body["error"], str), body
    return body["error"]


def triton_inputs(rows: list[dict[str, Any]]) -> list[triton.InferInput]:
    """Binary tensor data: FP64 with NaN where missing, BYTES from numpy object
    arrays of strings."""
    inputs = []
    for column in COLUMNS:
        values = [row[column] for row in rows]
        if column in STRINGS:
            array = np.array(values, dtype=object).reshape(-1, 1)
            tensor = triton.InferInput(column, list(array.shape), "BYTES")
        else:
            array = np.array(
                [np.nan if v is None else v for v in values], np.float64
            ).reshape(-1, 1)
            tensor = triton.InferInput(column, list(array.shape), "FP64")
        tensor.set_data_from_numpy(array, binary_data=True)
        inputs.append(tensor)
    return inputs


# --- metadata


@pytest.mark.parametrize("name", SERVERS)
def test_metadata_lists_one_input_per_column_for_pandas_clients(
    request: pytest.FixtureRequest, name: str
) -> None:
    server = served(request, name)
    client = triton.InferenceServerClient(server.url.removeprefix("http://"))

    metadata = client.get_model_metadata(name)
    client.close()

    assert metadata["parameters"] == {"content_type": "pd"}
    assert [(i["name"], i["datatype"], i["shape"]) for i in metadata["inputs"]] == [
        ("income", "FP64", [-1, 1]),
        ("age", "FP64", [-1, 1]),
        ("plan", "BYTES", [-1, 1]),
        ("region", "BYTES", [-1, 1]),
    ]
    assert [o["name"] for o in metadata["outputs"]] == ["predict", "predict_proba"]


# --- (a) JSON, one BYTES input per string column


@pytest.mark.parametrize("name", SERVERS)
def test_json_inputs_per_column_equal_the_models_own_answers(
    request: pytest.FixtureRequest, published: dict[str, Any], name: str
) -> None:
    rows = rows_of(name)
    body = json_columns(rows)
    body["inputs"].reverse()  # any order

    labels, proba = outputs_of(post(served(request, name), body, name))

    want_labels, want_proba = expected(published, name, rows)
    assert labels == want_labels
    assert_same_probabilities(proba, want_proba)


# --- (b) MLServer's pandas form


@pytest.mark.parametrize("name", SERVERS)
def test_mlservers_pandas_request_equals_the_models_own_answers(
    request: pytest.FixtureRequest, published: dict[str, Any], name: str
) -> None:
    rows = rows_of(name)
    frame = pd.DataFrame(rows, columns=COLUMNS).astype({"income": float})
    body = {
        **mlserver_pandas(frame),
        "outputs": [{"name": "predict"}, {"name": "predict_proba"}],
    }
    if name == "categories":  # the missing region goes as JSON texts
        assert body["inputs"][3]["parameters"] == {"content_type": "pd_json"}

    labels, proba = outputs_of(post(served(request, name), body, name))

    want_labels, want_proba = expected(published, name, rows)
    assert labels == want_labels
    assert_same_probabilities(proba, want_proba)


# --- (c) tritonclient, binary tensor data


@pytest.mark.parametrize("name", SERVERS)
def test_tritonclient_binary_bytes_inputs_equal_the_models_own_answers(
    request: pytest.FixtureRequest, published: dict[str, Any], name: str
) -> None:
    # tritonclient's BYTES cannot say null: the category model's missing
    # region is left out here (sent as JSON above).
    rows = ROWS
    client = triton.InferenceServerClient(
        served(request, name).url.removeprefix("http://")
    )

    result = client.infer(
        name,
        triton_inputs(rows),
        outputs=[
            triton.InferRequestedOutput("predict"),
            triton.InferRequestedOutput("predict_proba"),
        ],
    )
    client.close()

    want_labels, want_proba = expected(published, name, rows)
    assert result.as_numpy("predict").ravel().tolist() == want_labels
    assert_same_probabilities(result.as_numpy("predict_proba"), want_proba)


def test_tritonclient_raises_the_servers_message_for_a_wrong_datatype(
    customers: FunctionServer,
) -> None:
    client = triton.InferenceServerClient(customers.url.removeprefix("http://"))
    inputs = triton_inputs(ROWS)
    plan = np.arange(len(ROWS), dtype=np.float64).reshape(-1, 1)
    inputs[2] = triton.InferInput("plan", list(plan.shape), "FP64")
    inputs[2].set_data_from_numpy(plan)

    with pytest.raises(InferenceServerException) as raised:
        client.infer("customers", inputs)
    client.close()

    assert raised.value.status() == "400"
    assert raised.value.message() == (
        "inputs[2] ('plan') is FP64, but 'plan' is a string column: send BYTES"
    )


# --- (d) KServe's REST client


def kserve_infer(url: str, name: str, rows: list[dict[str, Any]], binary: bool) -> Any:
    """InferInputs per column from numpy arrays (object arrays of strings for
    BYTES), the pandas content type, through KServe's InferenceRESTClient."""
    inputs = []
    for column in COLUMNS:
        values = [row[column] for row in rows]
        if column in STRINGS:
            array = np.array(values, dtype=object).reshape(-1, 1)
            tensor = InferInput(column, list(array.shape), "BYTES")
        else:
            array = np.array(
                [np.nan if v is None else v for v in values], np.float64
            ).reshape(-1, 1)
            tensor = InferInput(column, list(array.shape), "FP64")
        tensor.set_data_from_numpy(array, binary_data=binary)
        inputs.append(tensor)
    request = InferRequest(
        model_name=name,
        infer_inputs=inputs,
        request_id="kserve-tabular",
        parameters={"content_type": "pd"},
        request_outputs=[RequestedOutput("predict"), RequestedOutput("predict_proba")],
    )

    async def run() -> Any:
        async with InferenceRESTClient(RESTConfig(protocol="v2")) as rest:
            return await rest.infer(url, request, model_name=name)

    return asyncio.run(run())


@pytest.mark.parametrize("binary", [False, True], ids=["json", "binary"])
@pytest.mark.parametrize("name", SERVERS)
def test_kserve_rest_client_inputs_per_column_equal_the_models_own_answers(
    request: pytest.FixtureRequest, published: dict[str, Any], name: str, binary: bool
) -> None:
    rows = ROWS  # KServe sends BYTES as str(value): None would be "None"

    response = kserve_infer(served(request, name).url, name, rows, binary)

    want_labels, want_proba = expected(published, name, rows)
    assert response.id == "kserve-tabular"
    labels, proba = response.outputs
    assert labels.as_numpy().ravel().tolist() == want_labels
    assert_same_probabilities(proba.as_numpy(), want_proba)


# --- refusals


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            lambda body: body["inputs"][2]["data"].__setitem__(1, None),
            "inputs[2] ('plan') row 1 may not be missing: this model needs a string "
            "there, got null",
        ),
        (
            lambda body: body["inputs"][3]["data"].__setitem__(0, 7),
            "inputs[3] ('region') row 0 must be a string, got 7",
        ),
        (
            lambda body: body["inputs"][2].update(datatype="INT64", data=[1, 2, 3]),
            "inputs[2] ('plan') is INT64, but 'plan' is a string column: send BYTES",
        ),
        (
            lambda body: body["inputs"].pop(3),
            "inputs: missing 'region' (this model takes one input per column: "
            "income, age, plan, region)",
        ),
        (
            lambda body: body["inputs"][0]["data"].__setitem__(2, "38"),
            "inputs[0] ('income') row 2 must be a finite number, got \"38\"",
        ),
        (
            lambda body: body.update(
                inputs=[
                    {
                        "name": "input-0",
                        "datatype": "FP64",
                        "shape": [1, 4],
                        "data": [1, 2, 3, 4],
                    }
                ]
            ),
            "this model takes strings or categories in 'plan', 'region', which one "
            "tensor of numbers cannot hold: send one input per column, named by its "
            "feature (income, age, plan, region), BYTES for strings, with "
            'parameters.content_type "pd"',
        ),
    ],
    ids=["null", "number-for-string", "datatype", "missing", "string", "one-tensor"],
)
def test_values_the_schema_refuses_are_400s_naming_input_row_and_expectation(
    customers: FunctionServer, change: Any, message: str
) -> None:
    body = json_columns(ROWS)
    change(body)

    assert error_of(post(customers, body, "customers")) == message


def test_each_request_logs_its_rows(customers: FunctionServer) -> None:
    response = requests.post(
        f"{customers.url}/v2/models/customers/infer",
        data=json.dumps(json_columns(ROWS)),
        headers={"X-Request-Id": "v2-tabular-1"},
        timeout=60,
    )

    lines = [
        json.loads(line)
        for line in customers.logs().splitlines()
        if '"request_id":"v2-tabular-1"' in line
    ]
    assert response.status_code == 200
    assert [(line["message"], line["rows"]) for line in lines] == [
        ("POST /v2/models/customers/infer 200", len(ROWS))
    ]
