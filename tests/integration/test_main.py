"""The function answers as DESIGN.md says, called as Google's samples call it."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from flask.testing import FlaskClient

from tests.support import SEED_FEATURES, call, publish_estimator


def test_predict_answers_the_seed_request_with_the_seed_key(
    served: Path, seed_model: Any
) -> None:
    response = call(json={"features": SEED_FEATURES})

    assert response.status_code == 200
    body = response.get_json()
    assert body["prediction"] == seed_model.predict([SEED_FEATURES])[0]
    assert type(body["prediction"]) is int
    version = (served / "LATEST").read_text().strip()
    assert body["model_version"] == version
    assert response.headers["X-Model-Version"] == version
    assert response.headers["X-Request-Id"]


def test_predict_on_root_path_is_the_same_as_predict(
    served: Path, seed_model: Any
) -> None:
    """The tutorial's clients post to the function's URL itself: the same
    answer as /predict, refusals included."""
    asked = {"features": SEED_FEATURES, "probabilities": True}
    wrong = {"features": SEED_FEATURES[:3]}

    root, predict = call(path="/", json=asked), call(json=asked)
    root_refused, predict_refused = call(path="/", json=wrong), call(json=wrong)

    assert (root.status_code, predict.status_code) == (200, 200)
    assert root.get_json() == predict.get_json()
    assert root.get_json()["prediction"] == seed_model.predict([SEED_FEATURES])[0]
    assert root.headers["X-Model-Version"] == predict.headers["X-Model-Version"]
    assert (root_refused.status_code, predict_refused.status_code) == (400, 400)
    assert root_refused.get_json() == predict_refused.get_json()
    assert root_refused.get_json()["error"]["code"] == "wrong_feature_count"


def test_predict_batch_equals_model_predict(served: Path, seed_model: Any) -> None:
    rows = np.random.default_rng(0).normal(size=(50, 10)).tolist()

    response = call(json={"instances": rows})

    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.get_json()["predictions"] == seed_model.predict(rows).tolist()


def test_predict_probabilities_follow_classes(served: Path, seed_model: Any) -> None:
    rows = [SEED_FEATURES, [0.0] * 10]

    response = call(json={"instances": rows, "probabilities": True})

    assert response.status_code == 200, response.get_data(as_text=True)
    body = response.get_json()
    assert body["classes"] == [0, 1]
    assert np.allclose(body["probabilities"], seed_model.predict_proba(np.array(rows)))


def test_single_row_probabilities_are_one_list(served: Path, seed_model: Any) -> None:
    response = call(json={"features": SEED_FEATURES, "probabilities": True})

    assert response.status_code == 200, response.get_data(as_text=True)
    probabilities = response.get_json()["probabilities"]
    assert np.allclose(probabilities, seed_model.predict_proba([SEED_FEATURES])[0])
    assert len(probabilities) == 2 and abs(sum(probabilities) - 1) < 1e-9


def test_request_id_is_echoed_when_safe_and_replaced_when_not(served: Path) -> None:
    mine = call(json={"features": SEED_FEATURES}, headers={"X-Request-Id": "abc-123"})
    evil = call(json={"features": SEED_FEATURES}, headers={"X-Request-Id": "a\tb" * 99})

    assert (mine.status_code, evil.status_code) == (200, 200)
    assert mine.headers["X-Request-Id"] == "abc-123"
    assert re.fullmatch(r"[0-9a-f]{32}", evil.headers["X-Request-Id"])


def test_health_never_touches_the_store(tmp_path: Path) -> None:
    os.environ["MODEL_URI"] = str(tmp_path / "nowhere")

    response = call("GET", "/health")

    assert response.status_code == 200
    assert response.get_json() == {"status": "ok"}
    assert response.headers["X-Model-Version"] == "none"
    assert not (tmp_path / "nowhere").exists()


def test_metadata_loads_the_model_and_reports_manifest_facts(served: Path) -> None:
    response = call("GET", "/metadata")

    body = response.get_json()
    assert response.status_code == 200
    assert body["n_features"] == 10
    assert body["classes"] == [0, 1]
    assert body["task"] == "classification"
    assert body["model_version"] == (served / "LATEST").read_text().strip()
    assert set(body["environment"]) == {
        "python",
        "scikit-learn",
        "numpy",
        "scipy",
        "pandas",
    }


def test_metadata_of_a_missing_model_is_503_with_retry_after(tmp_path: Path) -> None:
    os.environ["MODEL_URI"] = str(tmp_path / "missing")

    response = call("GET", "/metadata")

    assert response.status_code == 503
    assert response.headers["Retry-After"].isdigit()
    assert response.get_json()["error"]["code"] == "not_found_in_store"


def test_pinned_version_uri_serves_that_version(served: Path) -> None:
    version = (served / "LATEST").read_text().strip()
    os.environ["MODEL_URI"] = f"{served}/versions/{version}"

    response = call(json={"features": SEED_FEATURES})

    assert response.status_code == 200
    assert response.headers["X-Model-Version"] == version


def test_invalid_setting_is_a_json_500_naming_nothing_secret(served: Path) -> None:
    os.environ["MAX_ROWS"] = "lots"

    response = call(json={"features": SEED_FEATURES})

    assert response.status_code == 500
    assert response.get_json()["error"] == {
        "code": "configuration_error",
        "message": "the function is misconfigured; its logs say which setting",
    }


def test_regression_labels_are_floats(tmp_path: Path) -> None:

    from sklearn.linear_model import LinearRegression

    X = np.arange(20, dtype=float).reshape(10, 2)
    model = LinearRegression().fit(X, X.sum(axis=1))
    publish_estimator(tmp_path / "reg", model)
    os.environ["MODEL_URI"] = str(tmp_path / "reg")

    response = call(json={"instances": [[1, 2], [3, 4]]})

    assert response.status_code == 200, response.get_data(as_text=True)
    body = response.get_json()
    assert np.allclose(body["predictions"], [3.0, 7.0])
    assert all(type(p) is float for p in body["predictions"])


def test_string_class_labels_stay_strings(tmp_path: Path) -> None:

    from sklearn.tree import DecisionTreeClassifier

    model = DecisionTreeClassifier().fit(
        [[0], [1], [2], [3]], ["no", "no", "yes", "yes"]
    )
    publish_estimator(tmp_path / "str", model)
    os.environ["MODEL_URI"] = str(tmp_path / "str")

    response = call(json={"instances": [[0], [3]], "probabilities": True})

    assert response.status_code == 200, response.get_data(as_text=True)
    body = response.get_json()
    assert body["predictions"] == ["no", "yes"]
    assert body["classes"] == ["no", "yes"]


def _strict(text: bytes) -> Any:
    """`text` parsed as strict JSON: NaN, Infinity and -Infinity fail."""

    def refuse(constant: str) -> None:
        raise AssertionError(f"not strict JSON: {constant}")

    return json.loads(text, parse_constant=refuse)


def test_responses_are_strict_json(served: Path, seed_model: Any) -> None:
    """An answer and an error, each with the status it must have: a 503 or any
    other answer parsing cleanly proves nothing."""
    answer = call(json={"features": SEED_FEATURES, "probabilities": True})
    refused = call(json={"features": [*SEED_FEATURES[:9], "NaN"]})

    assert answer.status_code == 200, answer.get_data(as_text=True)
    assert answer.mimetype == "application/json"
    body = _strict(answer.get_data())
    assert body["prediction"] == seed_model.predict([SEED_FEATURES])[0]
    assert np.allclose(
        body["probabilities"], seed_model.predict_proba([SEED_FEATURES])[0]
    )
    assert refused.status_code == 400, refused.get_data(as_text=True)
    assert refused.mimetype == "application/json"
    assert _strict(refused.get_data())["error"]["code"] == "invalid_value"


# --- through the Flask app functions-framework builds around `predict` ------------


def test_the_framework_app_answers_the_seed_request(
    client: FlaskClient, served: Path, seed_model: Any
) -> None:
    response = client.post("/predict", json={"features": SEED_FEATURES})

    assert response.status_code == 200
    assert response.get_json()["prediction"] == seed_model.predict([SEED_FEATURES])[0]
    assert (
        response.headers["X-Model-Version"] == (served / "LATEST").read_text().strip()
    )


def test_a_request_id_ending_in_a_newline_is_replaced_not_echoed(
    client: FlaskClient, served: Path
) -> None:
    """`abc\\n` passes a `^...$` check; echoing it would break the header."""
    response = client.post(
        "/predict",
        json={"features": SEED_FEATURES},
        environ_overrides={"HTTP_X_REQUEST_ID": "abc\n"},
    )

    assert response.status_code == 200
    assert response.headers["X-Request-Id"] != "abc\n"
    assert re.fullmatch(r"[0-9a-f]{32}", response.headers["X-Request-Id"])


@pytest.mark.parametrize("path", ["/predict/", "//predict", "/predict//"])
def test_extra_slashes_around_predict_are_served_as_predict(
    client: FlaskClient, served: Path, seed_model: Any, path: str
) -> None:
    response = client.post(
        "/", json={"features": SEED_FEATURES}, environ_overrides={"PATH_INFO": path}
    )

    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.get_json()["prediction"] == seed_model.predict([SEED_FEATURES])[0]
