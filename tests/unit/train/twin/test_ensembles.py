"""train.twin.ensembles: VotingClassifier (soft and hard) and StackingClassifier
twins combine their members' outputs as scikit-learn does, in float64."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.compose import ColumnTransformer
from sklearn.datasets import load_breast_cancer, load_wine
from sklearn.ensemble import (
    RandomForestClassifier,
    StackingClassifier,
    VotingClassifier,
)
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.naive_bayes import GaussianNB
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler
from sklearn.svm import SVC, LinearSVC

from skserve.schema import InputSchema
from train.schema import accepted_rows, correct, infer_schema, settle, to_table
from train.twin import NoTwin, Twin, build_twin
from train.twin.common import session
from train.twin.encoding import encoded, model_input


def _data(kind: str) -> tuple[pd.DataFrame, pd.Series]:
    load = load_breast_cancer if kind == "binary" else load_wine
    X, y = load(return_X_y=True, as_frame=True)
    return X, y


def _scaled(model: Any) -> Any:
    return make_pipeline(StandardScaler(), model)


def _forest() -> RandomForestClassifier:
    return RandomForestClassifier(n_estimators=15, random_state=0)


def _twin(model: Any, frame: pd.DataFrame, schema: InputSchema | None = None) -> Twin:
    schema = schema or infer_schema(model, frame)
    reference = to_table(accepted_rows(frame, schema), schema)
    built = build_twin(model, reference, schema=schema)
    assert isinstance(built, Twin), built
    return built


def _fresh(frame: pd.DataFrame, count: int = 2_000) -> pd.DataFrame:
    """Rows the gate never saw (another seed, twice the spread), with the
    training columns and dtypes."""
    rng = np.random.default_rng(2026)
    values = rng.normal(frame.mean(), 2 * frame.std(), (count, frame.shape[1]))
    return pd.DataFrame(values, columns=frame.columns).astype(frame.dtypes)


def _compare(
    model: Any, built: Twin, rows: list[list[Any]], schema: InputSchema
) -> list[np.ndarray]:
    """The twin's answers on `rows` (encoded as the function encodes them)
    equal the model's own on the DataFrame of the same rows; returns them."""
    table = to_table(rows, schema)
    outputs = session(built.data).run(None, {"X": encoded(table, schema)})
    X = model_input(model, table, schema)
    assert isinstance(X, pd.DataFrame)
    assert outputs[0].tolist() == model.predict(X).tolist()
    if hasattr(model, "predict_proba"):
        assert np.abs(outputs[1] - model.predict_proba(X)).max() <= 1e-6
    return outputs


def _compare_numeric(model: Any, frame: pd.DataFrame) -> tuple[Twin, list[Any]]:
    built = _twin(model, frame)
    rows = _fresh(frame)
    schema = InputSchema.numeric(frame.shape[1], list(frame.columns))
    schema = InputSchema(schema.columns, "dataframe", True)
    return built, _compare(model, built, rows.to_numpy().tolist(), schema)


def _assert_one_line(reason: str, *words: str) -> None:
    assert "\n" not in reason and len(reason) < 300
    for word in words:
        assert word in reason, reason


@pytest.mark.parametrize("kind", ["binary", "multiclass"])
def test_soft_voting_matches_the_mean_of_member_probabilities(kind: str) -> None:
    X, y = _data(kind)
    model = VotingClassifier(
        [("lr", _scaled(LogisticRegression())), ("rf", _forest())], voting="soft"
    ).fit(X, y)
    assert model.flatten_transform  # the default skl2onnx refuses
    built, _ = _compare_numeric(model, X)
    assert built.facts["parity"]["compared"] == ["labels", "probabilities"]


def test_soft_voting_with_weights_divides_by_their_sum_as_numpy_does() -> None:
    X, y = _data("multiclass")
    model = VotingClassifier(
        [
            ("lr", _scaled(LogisticRegression())),
            ("rf", _forest()),
            ("nb", GaussianNB()),
        ],
        voting="soft",
        weights=[1, 2, 0.7],  # a list: skl2onnx's converter cannot sum it
    ).fit(X, y)
    _compare_numeric(model, X)


@pytest.mark.parametrize("kind", ["binary", "multiclass"])
def test_hard_voting_counts_member_predictions_with_a_linear_svc(kind: str) -> None:
    """Each member's predict votes (LinearSVC has no probabilities to argmax)."""
    X, y = _data(kind)
    model = VotingClassifier(
        [
            ("lr", _scaled(LogisticRegression())),
            ("rf", _forest()),
            ("svc", _scaled(LinearSVC())),
        ],
        voting="hard",
        weights=[1.0, 0.5, 1.5],
    ).fit(X, y)
    built, (_, votes) = _compare_numeric(model, X)
    assert built.facts["parity"]["compared"] == ["labels"]
    assert np.allclose(votes.sum(axis=1), 3.0)


def test_hard_voting_ties_go_to_the_first_class_as_bincount_argmax() -> None:
    """Two members: wherever they disagree the vote ties, and scikit-learn
    answers the smaller class index."""
    X, y = _data("multiclass")
    model = VotingClassifier(
        [
            ("lr", _scaled(LogisticRegression())),
            ("svc", LinearSVC(max_iter=20_000)),  # unscaled: often disagrees
        ],
        voting="hard",
    ).fit(X, y)
    _, (labels, votes) = _compare_numeric(model, X)
    rows = _fresh(X)
    first, second = (member.predict(rows) for member in model.estimators_)
    tied = first != second
    assert tied.sum() > 50
    assert (labels[tied] == np.minimum(first, second)[tied]).all()
    assert (votes[tied].max(axis=1) == 1.0).all()


def test_hard_voting_with_a_negative_weight_is_refused_in_one_line() -> None:
    X, y = _data("binary")
    model = VotingClassifier(
        [("lr", _scaled(LogisticRegression())), ("rf", _forest())],
        voting="hard",
        weights=[1.0, -0.5],
    ).fit(X, y)
    built = build_twin(model, X.to_numpy())
    assert isinstance(built, NoTwin)
    _assert_one_line(built.reason, "VotingClassifier", "negative weights")


@pytest.mark.parametrize("kind", ["binary", "multiclass"])
def test_stacking_feeds_the_final_estimator_what_scikit_learn_stacks(
    kind: str,
) -> None:
    """predict_proba (one column when binary) and a LinearSVC's
    decision_function (one column when binary) side by side."""
    X, y = _data(kind)
    model = StackingClassifier(
        [
            ("svc", _scaled(LinearSVC())),
            ("rf", _forest()),
            ("lr", _scaled(LogisticRegression())),
        ]
    ).fit(X, y)
    assert model.stack_method_ == [
        "decision_function",
        "predict_proba",
        "predict_proba",
    ]
    built, _ = _compare_numeric(model, X)
    assert built.facts["parity"]["compared"] == ["labels", "probabilities"]


def test_stacking_with_predict_and_passthrough_stacks_labels_and_inputs() -> None:
    X, y = _data("multiclass")
    model = StackingClassifier(
        [("rf", _forest()), ("nb", GaussianNB())],
        final_estimator=_scaled(LogisticRegression()),
        stack_method="predict",
        passthrough=True,
    ).fit(X, y)
    _compare_numeric(model, X)


def test_stacking_a_nonlinear_decision_function_is_refused_in_one_line() -> None:
    X, y = _data("binary")
    model = StackingClassifier([("svc", _scaled(SVC())), ("rf", _forest())]).fit(X, y)
    assert model.stack_method_[0] == "decision_function"
    built = build_twin(model, X.to_numpy())
    assert isinstance(built, NoTwin)
    _assert_one_line(built.reason, "StackingClassifier", "decision_function", "SVC")


def _customers(n: int = 400) -> tuple[pd.DataFrame, np.ndarray]:
    rng = np.random.default_rng(1)
    frame = pd.DataFrame(
        {
            "income": rng.normal(50, 12, n),
            "age": rng.integers(18, 80, n).astype(float),
            "plan": rng.choice(["basic", "standard", "premium"], n),
            "region": rng.choice(["north", "south", "east"], n),
        }
    )
    frame.loc[::8, "income"] = np.nan
    y = ((frame.income.fillna(50) > 50) ^ (frame.plan == "basic")).astype(int)
    return frame, y.to_numpy()


def _typed(final: Any) -> Any:
    return make_pipeline(
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
        final,
    )


@pytest.mark.parametrize(
    "ensemble",
    [
        pytest.param(
            lambda: VotingClassifier(
                [("lr", _typed(LogisticRegression())), ("rf", _typed(_forest()))],
                voting="soft",
            ),
            id="soft-voting",
        ),
        pytest.param(
            lambda: VotingClassifier(
                [("lr", _typed(LogisticRegression())), ("svc", _typed(LinearSVC()))],
                voting="hard",
            ),
            id="hard-voting",
        ),
        pytest.param(
            lambda: StackingClassifier(
                [("svc", _typed(LinearSVC())), ("rf", _typed(_forest()))]
            ),
            id="stacking",
        ),
    ],
)
def test_members_reading_string_columns_take_category_codes(ensemble: Any) -> None:
    """Members that are ColumnTransformer pipelines read the twin's codes; the
    categories come from a schema correction (inference does not look inside
    ensembles), missing incomes and unseen plans and regions included."""
    frame, y = _customers()
    model = ensemble().fit(frame, y)
    categories = {
        "plan": {"categories": ["basic", "premium", "standard"], "unknown": True},
        "region": {"categories": ["east", "north", "south"], "unknown": True},
    }
    schema = correct(infer_schema(model, frame), {"columns": categories}, "test")
    schema = settle(model, schema, frame, fixed_format=True)
    built = _twin(model, frame, schema)
    assert built.facts["input"]["encoding"] == "codes"
    rng = np.random.default_rng(7)
    rows = [
        [
            None if i % 5 == 0 else float(rng.normal(50, 20)),
            float(rng.integers(18, 80)),
            ["basic", "standard", "premium", "gold"][i % 4],
            ["north", "south", "east", "west"][i % 3 + (i % 7 == 0)],
        ]
        for i in range(400)
    ]
    _compare(model, built, rows, schema)
