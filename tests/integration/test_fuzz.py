"""Fuzzing: no request, however malformed, gets a 5xx or a non-JSON answer.

schemathesis drives the app against its OpenAPI document; hypothesis drives
request parsing directly and through the function. Marked `slow`: thousands of
generated cases are for `make test`, not for the edit loop.

Each fuzz test checks its own budget (`@pytest.mark.cases(N)`: the cases it
generated itself), so it passes or fails alike alone, under -k, --lf or xdist;
the module prints the process's total. All generation is derandomized, so a CI
failure reproduces locally with the same command.
"""

from __future__ import annotations

import json
import math
import os
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import schemathesis
from flask.testing import FlaskClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    positive_data_acceptance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
    unsupported_method,
)
from sklearn.linear_model import LinearRegression

from skserve.errors import ServingError
from skserve.protocols.v1 import Payload, parse_payload
from skserve.rows import to_table
from skserve.schema import InputSchema
from tests.support import REPO, SEED_FEATURES, call, publish_estimator

SPEC_PATH = REPO / "function" / "skserve" / "openapi.json"
API_KEY = "fuzz-key-0123456789abcdef"
N_SEED = len(SEED_FEATURES)
NAMES = ["a", "b", "ñ", "日本"]
FLOAT32_MAX = float(np.finfo(np.float32).max)
WEIGHTS = [1.0, -2.0, 0.5, 3.0]  # of the named regressor
MAX_ROWS_DEFAULT = 10_000  # the function's MAX_ROWS when unset
CASES: Counter[str] = Counter()  # generated cases, by suite, for the report
_RUN: Counter[str] = Counter()  # cases of the test running now

pytestmark = pytest.mark.slow


def _generated(suite: str) -> None:
    """One generated case of the running test (and of the run's report)."""
    CASES[suite] += 1
    _RUN[suite] += 1


@pytest.fixture(autouse=True)
def _case_budget(request: pytest.FixtureRequest) -> Iterator[None]:
    """Each fuzz test checks its own budget (`@pytest.mark.cases(N)`): it
    must have generated N cases itself, whatever ran before or beside it (a
    test run alone, under -k, --lf or xdist counts the same)."""
    _RUN.clear()
    yield
    marker = request.node.get_closest_marker("cases")
    if marker is not None:
        made = sum(_RUN.values())
        assert made >= marker.args[0], (
            f"{request.node.name} generated {made} cases, fewer than its "
            f"budget of {marker.args[0]}"
        )


@pytest.fixture(scope="module", autouse=True)
def _report() -> Iterator[None]:
    """How many cases this process generated, by suite (a report only)."""
    yield
    total = sum(CASES.values())
    print(f"\nfuzz: {total} generated cases {dict(sorted(CASES.items()))}")


# One settings profile for every property: reproducible in CI (derandomize, no
# example database) and no per-example deadline (the first example loads the
# model). Suppressed health checks: function_scoped_fixture, because the fixtures
# only set up the deployment that every example shares on purpose; too_slow,
# because drawing whole request bodies on a busy 2-core runner is slow and speed
# is not what these tests check.
FUZZ = settings(
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


def _matrix(payload: Payload, n: int, names: list[str] | None) -> np.ndarray:
    """The v1 protocol's rows -> matrix step for a parsed payload."""
    schema = InputSchema.numeric(n, names)
    return to_table(payload.rows, single=payload.single, schema=schema).numbers


def _config(mode: str, **checks: Any) -> schemathesis.Config:
    """An explicit configuration (no schemathesis.toml is looked up)."""
    return schemathesis.Config.from_dict(
        {"generation": {"mode": mode}, "checks": checks}
    )


# The document exactly as served. A schema-violating request may be refused with
# any of the documented client errors (the limits and the key come first).
schema = schemathesis.openapi.from_path(
    SPEC_PATH,
    config=_config(
        "all",  # positive and negative (schema-violating) data
        negative_data_rejection={"expected-statuses": ["400", "401", "413", "415"]},
    ),
)


def _seed_document() -> dict[str, Any]:
    """The document narrowed to the seed model (rows of exactly 10 numbers), so
    that every request it calls valid must be answered 200."""
    document = json.loads(SPEC_PATH.read_text(encoding="utf-8"))
    # The seed forest is a classifier: it gives probabilities, not scores.
    del document["components"]["schemas"]["PredictRequest"]["properties"]["scores"]
    document["components"]["schemas"]["Row"] = {
        "type": "array",
        # A tree ensemble computes in float32: its values must fit one.
        "items": {"type": "number", "minimum": -FLOAT32_MAX, "maximum": FLOAT32_MAX},
        "minItems": N_SEED,
        "maxItems": N_SEED,
    }
    return document


seed_schema = (
    schemathesis.openapi.from_dict(
        _seed_document(),
        # Positive only: its narrowed bounds are this test's, not the app's contract.
        config=_config(
            "positive", positive_data_acceptance={"expected-statuses": ["200"]}
        ),
    )
    .include(method="POST")
    .exclude(path_regex="^/v2/")
)  # v1's rows only

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    response_headers_conformance,
    negative_data_rejection,
    unsupported_method,
]


def _reject_constant(name: str) -> None:
    """json.loads calls this for NaN, Infinity and -Infinity."""
    raise ValueError(f"{name} is not JSON")


def strict_json(text: str) -> Any:
    """Parse a body as RFC 8259 JSON: NaN and Infinity are not numbers there."""
    return json.loads(text, parse_constant=_reject_constant)


def assert_strict_json_answer(
    status: int, text: str, headers: dict[str, str], sent: object, path: str = "/"
) -> Any:
    """The properties every answer has: never 5xx, strict JSON, ids in headers
    (`headers` has lower-case names), errors as {"error": {"code", "message"}},
    or under /v2 as the Open Inference Protocol says: {"error": "<message>"}."""
    assert status < 500, f"{status} {text} for {sent!r:.300}"
    assert headers.get("x-request-id")
    assert headers.get("x-model-version")
    if status == 204:
        assert text == ""
        return None
    body = strict_json(text)
    if status >= 400 and path.startswith("/v2"):
        assert set(body) == {"error"}, body
        assert isinstance(body["error"], str) and body["error"], body
    elif status >= 400:
        assert set(body) == {"error"}, body
        assert set(body["error"]) == {"code", "message"}, body
        assert body["error"]["code"].replace("_", "").isalpha(), body
        assert body["error"]["message"], body
    return body


def lowered(response: schemathesis.Response) -> dict[str, str]:
    """schemathesis' response headers (name -> list of values), one value each."""
    return {name.lower(): values[0] for name, values in response.headers.items()}


@pytest.fixture(params=["open", "locked"])
def deployment(request: pytest.FixtureRequest, served: Path) -> dict[str, str]:
    """open: the defaults. locked: API keys, CORS and tight limits, so that 401
    and both 413s are among the answers."""
    if request.param == "locked":
        os.environ.update(
            API_KEYS=API_KEY,
            CORS_ALLOW_ORIGINS="*",
            MAX_ROWS="3",
            MAX_BODY_BYTES="400",
        )
    return {"name": request.param}


def _count(case: schemathesis.Case, suite: str) -> None:
    """Count one schemathesis case, by generation mode."""
    mode = case.meta.generation.mode.value if case.meta else "explicit"
    _generated(f"{suite}:{mode}")


@pytest.mark.cases(2)
@schema.parametrize()
@settings(FUZZ, max_examples=250)
def test_the_app_conforms_to_its_openapi_document(
    case: schemathesis.Case, client: FlaskClient, deployment: dict[str, str]
) -> None:
    """Positive and negative cases for every operation, in both deployments."""
    _count(case, "schemathesis")
    if deployment["name"] == "locked" and not {
        "authorization",
        "x-api-key",
    } & {name.lower() for name in case.headers or {}}:
        case.headers = {**(case.headers or {}), "X-API-Key": API_KEY}

    response = case.call(app=client.application)

    case.validate_response(response, checks=CHECKS)
    assert_strict_json_answer(
        response.status_code, response.text, lowered(response), case.body, case.path
    )


@pytest.mark.cases(150)
@seed_schema.parametrize()
@settings(FUZZ, max_examples=300)
def test_every_request_valid_for_the_seed_model_is_answered(
    case: schemathesis.Case, client: FlaskClient, served: Path
) -> None:
    """Every request the narrowed document calls valid is answered 200."""
    _count(case, "schemathesis")

    response = case.call(app=client.application)

    checks = [c for c in CHECKS if c is not negative_data_rejection]
    case.validate_response(response, checks=[*checks, positive_data_acceptance])
    body = assert_strict_json_answer(
        response.status_code, response.text, lowered(response), case.body
    )
    if response.status_code == 200:
        sent = case.body
        rows = [sent["features"]] if "features" in sent else sent["instances"]
        labels = [body["prediction"]] if "features" in sent else body["predictions"]
        assert len(labels) == len(rows)


# ---------------------------------------------------------------------------
# Request parsing, directly (parse_payload + to_matrix) and through the function.

# JSON number texts of finite doubles that fit a float32 (trees compute in it).
IN_RANGE = ["5e-324", "-0.0", "0", "2.2250738585072014e-308", "1E-7", "-3.4e38"]
finite_numbers = st.one_of(
    st.floats(-FLOAT32_MAX, FLOAT32_MAX).map(repr),
    st.integers(-(10**38), 10**38).map(str),
    st.sampled_from([*IN_RANGE, repr(FLOAT32_MAX)]),
)
# Finite doubles beyond float32: a model may take them or refuse them (400).
BEYOND_FLOAT32 = ["1e308", "-1.7976931348623157e308", "3.5e38", str(10**308)]
big_numbers = st.one_of(
    st.floats(min_value=3.5e38, allow_infinity=False).map(repr),
    st.floats(max_value=-3.5e38, allow_infinity=False).map(repr),
    st.sampled_from(BEYOND_FLOAT32),
)
# Moderate numbers, for properties about something else than range.
moderate_numbers = st.one_of(
    st.floats(-1e6, 1e6).map(repr),
    st.integers(-(10**6), 10**6).map(str),
    st.sampled_from(IN_RANGE[:5]),
)
NON_FINITE = ["NaN", "Infinity", "-Infinity", "1e309", "-1e400", str(10**400)]
NOT_NUMBERS = ['"1.5"', '""', "null", "true", "false", "[]", "{}", "[1]", '{"a": 1}']
bad_cells = st.sampled_from(NON_FINITE + NOT_NUMBERS)
Cell = tuple[int, int]


@dataclass
class Cells:
    """Rows of JSON value texts, where the bad cells are and where the finite
    numbers beyond float32 are."""

    rows: list[list[str]]
    bad: set[Cell]
    big: set[Cell]

    def first(self, single: bool) -> Cells:
        """Only the first row when the request is a single `features` row."""
        if not single:
            return self
        return Cells(
            self.rows[:1], *({c for c in s if c[0] == 0} for s in (self.bad, self.big))
        )


@st.composite
def cells(
    draw: st.DrawFn,
    numbers: st.SearchStrategy[str],
    n: int,
    max_rows: int,
    big: st.SearchStrategy[str] | None = None,
) -> Cells:
    """Up to max_rows + 1 rows, mostly n values long; of the values 1 in 20 is
    bad and (when `big` is given) 1 in 20 is beyond float32."""
    drawn = Cells([], set(), set())
    for i in range(draw(st.integers(1, max_rows + 1))):
        row = []
        for j in range(draw(st.sampled_from([n] * 8 + [n - 1, n + 1]))):
            kind = draw(st.integers(0, 19))
            if kind == 0:
                row.append(draw(bad_cells))
                drawn.bad.add((i, j))
            elif kind == 1 and big is not None:
                row.append(draw(big))
                drawn.big.add((i, j))
            else:
                row.append(draw(numbers))
        drawn.rows.append(row)
    return drawn


def containers(body: bytes) -> int:
    """Arrays and objects in a JSON text whose strings hold no brackets: a
    request of MAX_ROWS rows has at most MAX_ROWS + 2 (v1.check_structure)."""
    return body.count(b"[") + body.count(b"{")


def render(rows: list[list[str]], single: bool) -> bytes:
    """Raw JSON text, so NaN/Infinity literals and huge numbers reach the parser."""
    texts = ["[" + ", ".join(row) + "]" for row in rows]
    if single:
        return ('{"features": ' + texts[0] + "}").encode()
    return ('{"instances": [' + ", ".join(texts) + "]}").encode()


def expected_error(
    rows: list[list[str]], bad: set[Cell], n: int, single: bool
) -> tuple[str, str] | None:
    """The (code, message start) of the first problem, or None if all is valid.

    Feature counts are checked for every row before any value is; values are
    checked row by row, left to right."""
    for i, row in enumerate(rows):
        if len(row) != n:
            where = "features" if single else f"instances[{i}]"
            return "wrong_feature_count", f"{where} has {len(row)} features"
    if bad:
        i, j = min(bad)
        where = f"features[{j}]" if single else f"instances[{i}][{j}]"
        if rows[i][j] == "null":  # no column of this model may be missing
            return "invalid_value", f"{where} may not be missing"
        return "invalid_value", f"{where} must be a finite number"
    return None


def _same_number(value: float, text: str) -> bool:
    """`value` is the number the JSON `text` denotes, sign of zero included."""
    expected = float(json.loads(text))
    return value == expected and math.copysign(1, value) == math.copysign(1, expected)


@pytest.mark.cases(250)
@settings(FUZZ, max_examples=500)
@given(st.integers(1, 6), st.integers(1, 6), st.booleans(), st.data())
def test_parsing_accepts_finite_numbers_and_names_the_first_bad_cell(
    n: int, max_rows: int, single: bool, data: st.DataObject
) -> None:
    """Raw JSON rows: a float64 matrix of exactly the values, or the first problem."""
    _generated("hypothesis:parse")
    drawn = data.draw(cells(finite_numbers, n, max_rows, big_numbers)).first(single)
    rows = drawn.rows
    # Finite numbers beyond float32 may be taken or refused like bad values.
    allowed = {
        expected_error(rows, drawn.bad, n, single),
        expected_error(rows, drawn.bad | drawn.big, n, single),
    }

    try:
        matrix = _matrix(
            parse_payload(render(rows, single), max_rows=max_rows), n, None
        )
    except ServingError as error:
        body = render(rows, single)
        if (not single and len(rows) > max_rows) or containers(body) > max_rows + 2:
            assert (error.status, error.code) == (413, "too_many_rows")
            assert f"MAX_ROWS={max_rows}" in error.message
            return
        assert error.status == 400
        assert any(
            expected and (error.code, error.message[: len(expected[1])]) == expected
            for expected in allowed
        ), (error.message, allowed)
        return
    assert single or len(rows) <= max_rows
    assert expected_error(rows, drawn.bad, n, single) is None
    assert matrix.dtype == np.float64 and matrix.shape == (len(rows), n)
    assert np.isfinite(matrix).all()
    assert all(
        _same_number(matrix[i, j], text)
        for i, row in enumerate(rows)
        for j, text in enumerate(row)
    )


def json_values(floats: st.SearchStrategy[float]) -> st.SearchStrategy[Any]:
    """Any JSON value: scalars, lists and objects (unicode keys) nested freely."""
    scalars = st.one_of(
        st.none(), st.booleans(), st.integers(-(10**30), 10**30), floats, st.text()
    )
    return st.recursive(
        scalars,
        lambda inner: (
            st.lists(inner, max_size=5)
            | st.dictionaries(st.text(max_size=5), inner, max_size=5)
        ),
        max_leaves=30,
    )


def request_like(values: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """Bodies shaped like requests, with anything where rows and values belong:
    scalars for lists, rows of rows of rows, objects in lists, unicode keys."""
    numbers = st.floats(-1e3, 1e3)
    return st.one_of(
        st.fixed_dictionaries({"features": values}),
        st.fixed_dictionaries({"instances": values}),
        st.fixed_dictionaries({"instances": st.lists(values, max_size=7)}),
        st.fixed_dictionaries(
            {"instances": st.lists(st.lists(values, max_size=5), max_size=7)},
            optional={"probabilities": values, "features": values},
        ),
        st.fixed_dictionaries(
            {"instances": st.lists(st.lists(st.lists(numbers, max_size=3)), max_size=3)}
        ),
        st.fixed_dictionaries(
            {"features": st.dictionaries(st.text(), numbers | values, max_size=6)}
        ),
        values,
    )


PARSE_ERRORS = {
    (400, "invalid_json"),
    (400, "invalid_request"),
    (400, "missing_input"),
    (400, "empty_batch"),
    (400, "wrong_feature_count"),
    (400, "invalid_value"),
    (400, "unknown_features"),
    (400, "missing_features"),
    (413, "too_many_rows"),
}


@pytest.mark.cases(200)
@settings(FUZZ, max_examples=400)
@given(
    request_like(json_values(st.floats(allow_nan=False, allow_infinity=False))),
    st.sampled_from([None, NAMES]),
)
def test_parsing_any_json_gives_a_finite_matrix_or_a_client_error(
    body: Any, names: list[str] | None
) -> None:
    """Whatever the JSON, parsing ends in a finite matrix or a 400/413."""
    _generated("hypothesis:parse")
    n = len(NAMES)

    try:
        payload = parse_payload(json.dumps(body).encode(), max_rows=5)
        matrix = _matrix(payload, n, names)
    except ServingError as error:
        assert (error.status, error.code) in PARSE_ERRORS, error.message
        json.dumps(error.message)  # renderable, whatever the keys were
        return
    assert matrix.shape == (len(payload.rows), n)
    assert np.isfinite(matrix).all()


# Unicode keys, the model's own names, and lone surrogates / NUL (valid in JSON).
unicode_keys = st.one_of(
    st.text(min_size=1, max_size=8),
    st.sampled_from(NAMES),
    st.sampled_from(["\ud800", "a\udfff", "n\u0303", "日本 ", "\x00", ""]),
)


@pytest.mark.cases(150)
@settings(FUZZ, max_examples=300)
@given(st.dictionaries(unicode_keys, st.floats(-1e6, 1e6), max_size=7), st.booleans())
def test_named_rows_are_ordered_by_name_or_name_what_is_missing_or_unknown(
    row: dict[str, float], single: bool
) -> None:
    """Objects keyed by feature name, unicode and surrogate keys included."""
    _generated("hypothesis:parse")
    body = {"features": row} if single else {"instances": [row]}
    where = "features" if single else "instances[0]"
    missing = [name for name in NAMES if name not in row]
    unknown = sorted(key for key in row if key not in NAMES)

    try:
        payload = parse_payload(json.dumps(body).encode(), max_rows=1)
        matrix = _matrix(payload, len(NAMES), NAMES)
    except ServingError as error:
        assert error.status == 400
        assert error.code == ("unknown_features" if unknown else "missing_features")
        assert error.message.startswith(f"{where}: ")
        assert all(repr(name) in error.message for name in missing)
        assert all(repr(key) in error.message for key in unknown[:20])
        return
    assert not missing and not unknown
    assert matrix.tolist() == [[row[name] for name in NAMES]]


@pytest.mark.cases(50)
@settings(FUZZ, max_examples=100)
@given(st.dictionaries(unicode_keys, st.floats(-1e6, 1e6), min_size=1), st.booleans())
def test_named_rows_are_refused_for_a_model_without_names(
    row: dict[str, float], single: bool
) -> None:
    """A model without feature names refuses objects, naming the row."""
    _generated("hypothesis:parse")
    body = {"features": row} if single else {"instances": [row]}

    with pytest.raises(ServingError) as raised:
        _matrix(parse_payload(json.dumps(body).encode(), max_rows=1), 3, None)

    assert (raised.value.status, raised.value.code) == (400, "invalid_request")
    where = "features" if single else "instances[0]"
    assert raised.value.message.startswith(f"{where} is an object, but this model")


# --- through the function, called the way Google's samples call it


@pytest.fixture(scope="module")
def named_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A regressor published with unicode feature names (fitted on numpy data)."""
    root = tmp_path_factory.mktemp("named-store") / "named"
    rng = np.random.default_rng(7)
    x = rng.normal(size=(80, len(NAMES)))
    model = LinearRegression().fit(x, x @ WEIGHTS + 0.25)
    publish_estimator(root, model, feature_names=NAMES)
    return root


def post(body: bytes, content_type: str = "application/json") -> tuple[int, Any]:
    """POST a raw body to the function; check what every answer must be."""
    response = call(data=body, content_type=content_type)
    text = response.get_data(as_text=True)
    headers = {name.lower(): value for name, value in response.headers.items()}
    assert response.mimetype == "application/json"
    return response.status_code, assert_strict_json_answer(
        response.status_code, text, headers, body
    )


def serve(model_uri: Path, **env: str) -> None:
    """Point the function at `model_uri` (with `env`) from the next request on."""
    import main

    os.environ.update(MODEL_URI=str(model_uri), **env)
    main._service = None  # settings are read when the service is built


@pytest.mark.cases(100)
@settings(FUZZ, max_examples=200)
@given(st.booleans(), st.data())
def test_the_function_answers_every_mix_of_cells(
    served: Path, single: bool, data: st.DataObject
) -> None:
    """Good and bad cells through the function: predictions or the first problem."""
    _generated("hypothesis:call")
    drawn = data.draw(cells(moderate_numbers, N_SEED, 4)).first(single)

    status, body = post(render(drawn.rows, single))

    expected = expected_error(drawn.rows, drawn.bad, N_SEED, single)
    if expected is None:
        assert status == 200, body
        labels = [body["prediction"]] if single else body["predictions"]
        assert len(labels) == len(drawn.rows) and set(labels) <= {0, 1}
    else:
        assert status == 400
        assert body["error"]["code"] == expected[0]
        assert body["error"]["message"].startswith(expected[1])


@pytest.mark.cases(100)
@settings(FUZZ, max_examples=200)
@given(request_like(json_values(st.floats(-1e30, 1e30))))
def test_the_function_answers_any_json_body(served: Path, sent: Any) -> None:
    """Any request-like JSON through the function: 200, 400 or 413, never 5xx."""
    _generated("hypothesis:call")

    status, body = post(json.dumps(sent).encode())

    if status == 200:
        rows = [sent["features"]] if "features" in sent else sent["instances"]
        labels = [body["prediction"]] if "features" in sent else body["predictions"]
        assert len(labels) == len(rows)
    else:
        assert (status, body["error"]["code"]) in PARSE_ERRORS, body


DEEP = [b"[" * 100_000, b'{"features": ' + b"[" * 5000 + b"]" * 5000 + b"}"]


@pytest.mark.cases(60)
@settings(FUZZ, max_examples=120)
@given(
    st.one_of(
        st.binary(max_size=64),
        st.text(max_size=32).map(lambda t: t.encode("utf-8", "surrogatepass")),
        st.sampled_from([b"", b"{", b'{"features": [1,', b"\xff\xfe{}", *DEEP]),
        st.integers(1, 60).map(
            lambda k: json.dumps({"instances": [SEED_FEATURES]}).encode()[:-k]
        ),
    ),
    st.sampled_from(["application/json", "application/vnd.api+json", "text/plain"]),
)
def test_the_function_answers_any_bytes(
    served: Path, raw: bytes, mimetype: str
) -> None:
    """Bodies that are not JSON at all: 400 (or 415 when not labelled JSON)."""
    _generated("hypothesis:call")

    status, body = post(raw, content_type=mimetype)

    if status == 413:  # refused before decoding: no request has that many
        assert body["error"]["code"] == "too_many_rows"
        assert containers(raw) > MAX_ROWS_DEFAULT + 2
        return
    assert status in (400, 415), body
    assert status == 400 or mimetype == "text/plain"


@pytest.mark.cases(30)
@settings(FUZZ, max_examples=60)
@given(
    st.sampled_from(["NaN", "Infinity", "-Infinity", "1e400", "-1e999"]),
    st.integers(0, 3),
    st.integers(0, N_SEED - 1),
    st.integers(1, 4),
)
def test_non_finite_literals_are_refused_naming_row_and_column(
    served: Path, literal: str, i: int, j: int, count: int
) -> None:
    """NaN, Infinity and overflowing literals are 400s naming the cell."""
    _generated("hypothesis:call")
    rows = [[repr(0.5 * k) for k in range(N_SEED)] for _ in range(max(count, i + 1))]
    rows[i][j] = literal

    status, body = post(render(rows, single=False))

    assert status == 400
    assert body["error"]["code"] == "invalid_value"
    shown = {"1e400": "Infinity", "-1e999": "-Infinity"}.get(literal, literal)
    message = body["error"]["message"]
    assert message.startswith(f"instances[{i}][{j}] must be a finite number")
    assert message.endswith(f", got {shown}")


@pytest.mark.cases(75)
@settings(FUZZ, max_examples=150)
@given(
    st.lists(
        st.lists(finite_numbers | big_numbers, min_size=N_SEED, max_size=N_SEED),
        min_size=1,
        max_size=3,
    )
)
def test_huge_and_tiny_finite_numbers_are_never_a_server_error(
    served: Path, rows: list[list[str]]
) -> None:
    """Extreme finite numbers are predicted on or refused as invalid values."""
    _generated("hypothesis:call")

    status, body = post(render(rows, single=False))

    if status == 200:
        assert len(body["predictions"]) == len(rows)
    else:  # beyond float32 (trees compute in it): refused as an invalid value
        assert (status, body["error"]["code"]) == (400, "invalid_value"), body


@pytest.mark.cases(18)
@settings(FUZZ, max_examples=120)
@given(st.integers(1, 6), st.sampled_from([-1, 0, 1]), st.booleans())
def test_row_counts_around_max_rows(
    served: Path, max_rows: int, offset: int, probabilities: bool
) -> None:
    """MAX_ROWS - 1 and MAX_ROWS rows are answered; MAX_ROWS + 1 is a 413."""
    _generated("hypothesis:call")
    serve(served, MAX_ROWS=str(max_rows))
    rows = [SEED_FEATURES] * (max_rows + offset)
    body = {"instances": rows, "probabilities": probabilities}

    status, answer = post(json.dumps(body).encode())

    if not rows:
        assert (status, answer["error"]["code"]) == (400, "empty_batch")
    elif offset > 0:
        assert (status, answer["error"]["code"]) == (413, "too_many_rows")
        assert f"MAX_ROWS={max_rows}" in answer["error"]["message"]
    else:
        assert status == 200
        assert len(answer["predictions"]) == len(rows)
        assert len(answer.get("probabilities", rows)) == len(rows)


@pytest.mark.cases(75)
@settings(FUZZ, max_examples=150)
@given(
    st.dictionaries(unicode_keys, st.floats(-1e3, 1e3), max_size=6),
    st.sampled_from(["named", "seed"]),
)
def test_unicode_keys_are_answered_by_name_or_refused(
    served: Path, named_model: Path, row: dict[str, float], model: str
) -> None:
    """Unicode keys through the function, for models with and without names."""
    _generated("hypothesis:call")
    serve(named_model if model == "named" else served)

    status, body = post(json.dumps({"instances": [row]}).encode())

    if model == "seed":
        assert (status, body["error"]["code"]) == (400, "invalid_request")
    elif set(row) == set(NAMES):
        assert status == 200, body
        expected = sum(w * row[name] for w, name in zip(WEIGHTS, NAMES, strict=True))
        assert body["predictions"] == pytest.approx([expected + 0.25], abs=1e-6)
    else:
        assert status == 400
        assert body["error"]["code"] in ("missing_features", "unknown_features")
        assert body["error"]["message"].startswith("instances[0]: ")


# --- known edge cases, one request each (regressions for what fuzzing found)


def test_an_integer_too_long_to_parse_is_a_client_error(served: Path) -> None:
    """Python refuses to convert integers over 4300 digits (int_max_str_digits)."""
    status, body = post(b'{"features": [' + b"1" * 5000 + b"]}")

    assert status == 400, body


def test_a_number_beyond_float32_range_is_a_client_error(served: Path) -> None:
    """Tree ensembles cast rows to float32; 1e39 is a finite double but not that."""
    rows = [[*SEED_FEATURES[:9], 1e39]]

    status, body = post(json.dumps({"instances": rows}).encode())

    assert status == 400, body
    assert body["error"]["code"] == "invalid_value"


def test_a_prediction_that_overflows_is_a_client_error(tmp_path: Path) -> None:
    """A regressor's output for in-range inputs may be +-inf, which JSON lacks."""
    x = np.random.default_rng(3).normal(size=(40, 2))
    steep = LinearRegression().fit(x, x @ [1.0, 1.0])
    steep.coef_ = np.array([1e300, 1e300])  # finite, but 1e10 times it is not
    publish_estimator(tmp_path / "steep", steep)
    serve(tmp_path / "steep")

    status, body = post(json.dumps({"features": [1e10, 1e10]}).encode())

    assert status == 400, body
