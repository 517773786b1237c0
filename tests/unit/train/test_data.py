"""train.data: a CSV's columns are numbers when every filled cell is one, text
otherwise; an empty cell is missing; anything unusable is one clear error."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from train.data import DataError, load_bundled, load_csv, load_frame, typed_column


def _csv(path: Path, text: str) -> str:
    path.write_text(text)
    return str(path)


def test_complete_numeric_data_stays_a_float_array(tmp_path: Path) -> None:
    path = _csv(tmp_path / "d.csv", "a,b,y\n1,2.5,0\n3,4,1\n")

    data = load_csv(path, "y")

    assert isinstance(data.X, np.ndarray) and not data.tabular
    assert data.X.tolist() == [[1.0, 2.5], [3.0, 4.0]]
    assert data.feature_names == ["a", "b"] and data.y.tolist() == [0, 1]
    assert data.source == "csv:d.csv"


def test_text_or_empty_cells_make_a_dataframe_as_pandas_reads_it(
    tmp_path: Path,
) -> None:
    path = _csv(tmp_path / "d.csv", "a,plan,y\n1, basic ,no\n,premium,yes\n2,,no\n")

    data = load_csv(path, "y")

    assert data.tabular
    frame = data.X
    assert list(frame.columns) == ["a", "plan"]
    assert frame["a"].dtype == np.float64 and np.isnan(frame["a"][1])
    assert frame["plan"].tolist()[:2] == [" basic ", "premium"]  # text as written
    assert pd.isna(frame["plan"][2])
    assert data.y.tolist() == ["no", "yes", "no"]


@pytest.mark.parametrize(
    ("cells", "kind"),
    [
        (["1", " 2 ", ""], "f"),
        (["1", "x", ""], "O"),
        (["1", " ", ""], "O"),  # only an empty cell is missing, as in pandas
        (["", ""], "f"),
    ],
)
def test_a_column_is_numeric_when_every_filled_cell_is_a_number(
    cells: list[str], kind: str
) -> None:
    assert typed_column(cells, "d.csv", "c").dtype.kind == kind


def test_a_non_finite_number_is_refused_naming_its_line() -> None:
    with pytest.raises(DataError) as raised:
        typed_column(["1", "inf"], "d.csv", "c")

    assert raised.value.message == (
        "column 'c' of d.csv has 'inf' at line 3; numbers must be finite "
        "(leave a missing value empty)"
    )


def test_a_holdout_frame_has_the_models_columns_in_its_order(tmp_path: Path) -> None:
    path = _csv(tmp_path / "h.csv", "label,b,a\nx,,1\ny,q,2\n")

    frame = load_frame(path, ["a", "b"], 2)

    assert list(frame.columns) == ["a", "b"]
    assert frame["a"].tolist() == [1.0, 2.0]
    assert pd.isna(frame["b"][0]) and frame["b"][1] == "q"


def test_a_holdout_for_a_model_without_names_is_taken_by_position(
    tmp_path: Path,
) -> None:
    path = _csv(tmp_path / "h.csv", "p,q\n1,2\n")

    assert list(load_frame(path, None, 2).columns) == ["x0", "x1"]
    with pytest.raises(DataError, match="has 2 columns; the model takes 3"):
        load_frame(path, None, 3)


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("", "is empty"),
        ("a,y\n", "has a header but no data rows"),
        ("a,a\n1,2\n", "empty or duplicate column names"),
        ("a,y\n1,2,3\n", "line 2 has 3 fields, the header has 2"),
    ],
)
def test_unusable_files_are_one_error(tmp_path: Path, text: str, problem: str) -> None:
    with pytest.raises(DataError, match=problem):
        load_csv(_csv(tmp_path / "d.csv", text), "y")


def test_a_bundled_dataset_loads_without_a_download() -> None:
    data = load_bundled("iris")

    assert data.X.shape == (150, 4) and data.source == "sklearn.datasets.load_iris"
    with pytest.raises(DataError, match="choose one of iris, wine"):
        load_bundled("mnist")
