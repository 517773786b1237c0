"""train.estimators: every kind fits every task it names, and mixed data gets
scikit-learn's documented imputing and encoding in front of the model."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from skserve.errors import ConfigError
from train.estimators import MODEL_KINDS, infer_task, make_model, prepare


def _frame() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "income": [1.0, np.nan, 3.0, 4.0],
            "plan": ["a", "b", np.nan, "a"],
        }
    )


def test_mixed_columns_are_imputed_and_one_hot_encoded() -> None:
    frame = _frame()

    out = prepare(frame).fit_transform(frame)

    # income (median-imputed), then one column per plan (a, b; NaN -> "a").
    assert out.tolist() == [
        [1.0, 1.0, 0.0],
        [3.0, 0.0, 1.0],
        [3.0, 1.0, 0.0],
        [4.0, 1.0, 0.0],
    ]


def test_an_unseen_category_encodes_as_all_zeros() -> None:
    frame = _frame()
    step = prepare(frame).fit(frame)

    unseen = pd.DataFrame({"income": [2.0], "plan": ["zzz"]})

    assert step.transform(unseen).tolist() == [[2.0, 0.0, 0.0]]


@pytest.mark.parametrize("kind", MODEL_KINDS)
def test_each_kind_fits_a_dataframe_behind_the_preparation(kind: str) -> None:
    frame = pd.concat([_frame()] * 10, ignore_index=True)
    task = "regression" if kind == "linear-regression" else "classification"
    y = np.arange(len(frame)) % 2 if task == "classification" else np.arange(40.0)

    model = make_model(kind, task, 0, frame).fit(frame, y)

    assert model.predict(frame.head(2)).shape == (2,)


def test_a_kind_that_does_not_fit_the_task_lists_the_valid_ones() -> None:
    with pytest.raises(ConfigError, match="choose one of random-forest"):
        make_model("logistic-regression", "regression", 0)


@pytest.mark.parametrize(
    ("y", "task"),
    [
        (np.array(["a", "b"], dtype=object), "classification"),
        (np.array([0, 1, 1, 0]), "classification"),
        (np.arange(100), "regression"),
        (np.array([0.5, 1.5]), "regression"),
    ],
)
def test_the_task_is_inferred_from_the_target(y: np.ndarray, task: str) -> None:
    assert infer_task(y) == task
