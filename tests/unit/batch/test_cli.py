"""The launcher refuses what cannot work in one line, before reading any row."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sklearn.linear_model import LinearRegression, LogisticRegression

import batch.cli
from batch.cli import main
from tests.support import latest_version, publish_estimator


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def named_model(tmp_path: Path) -> Path:
    """A classifier whose manifest names its two features `a` and `b`."""
    root = tmp_path / "store" / "named"
    model = LogisticRegression().fit([[0, 0], [1, 1], [0, 1], [1, 0]], [0, 1, 1, 0])
    publish_estimator(root, model, feature_names=["a", "b"])
    return root


def one_error_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("error: ")
    return lines[0]


def test_an_unknown_option_is_a_usage_error_not_silently_ignored(
    capsys: pytest.CaptureFixture[str], named_model: Path, tmp_path: Path
) -> None:
    code, _, err = run(
        capsys,
        *("--model-uri", str(named_model), "--input", "x", "--output", "y"),
        "--runer=DataflowRunner",
    )
    assert code == 2
    assert "unknown option --runer" in one_error_line(err)


def test_a_pattern_matching_no_file_fails_at_launch(
    capsys: pytest.CaptureFixture[str], named_model: Path, tmp_path: Path
) -> None:
    code, _, err = run(
        capsys,
        *("--model-uri", str(named_model), "--input", str(tmp_path / "*.csv")),
        *("--output", str(tmp_path / "out")),
    )
    assert code == 2
    assert one_error_line(err) == f"error: no input file matches {tmp_path}/*.csv"


def test_a_header_lacking_a_feature_fails_at_launch(
    capsys: pytest.CaptureFixture[str], named_model: Path, tmp_path: Path
) -> None:
    (tmp_path / "in.csv").write_text("id,a,c\n1,2,3\n")
    code, _, err = run(
        capsys,
        *("--model-uri", str(named_model), "--input", str(tmp_path / "in.csv")),
        *("--output", str(tmp_path / "out"), "--keep", "id"),
    )
    assert code == 2
    assert one_error_line(err) == (
        f"error: the header of {tmp_path}/in.csv lacks the model's features b "
        "(expected: a, b) (if it is a data row, pass --header no)"
    )


def test_keep_needs_a_header(
    capsys: pytest.CaptureFixture[str], named_model: Path, tmp_path: Path
) -> None:
    (tmp_path / "in.csv").write_text("1,2\n")
    code, _, err = run(
        capsys,
        *("--model-uri", str(named_model), "--input", str(tmp_path / "in.csv")),
        *("--output", str(tmp_path / "out"), "--keep", "id"),
    )
    assert code == 2
    assert "--keep needs a header row" in one_error_line(err)


def test_a_kept_column_may_not_take_an_output_columns_name(
    capsys: pytest.CaptureFixture[str], named_model: Path, tmp_path: Path
) -> None:
    (tmp_path / "in.csv").write_text("prediction,a,b\n1,2,3\n")
    code, _, err = run(
        capsys,
        *("--model-uri", str(named_model), "--input", str(tmp_path / "in.csv")),
        *("--output", str(tmp_path / "out"), "--keep", "prediction"),
    )
    assert code == 2
    assert "--keep prediction would collide" in one_error_line(err)


def test_probabilities_of_a_regressor_are_refused_at_launch(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    root = tmp_path / "store" / "reg"
    publish_estimator(root, LinearRegression().fit([[0], [1], [2]], [0.0, 1.0, 2.0]))
    (tmp_path / "in.csv").write_text("1\n")
    code, _, err = run(
        capsys,
        *("--model-uri", str(root), "--input", str(tmp_path / "in.csv")),
        *("--output", str(tmp_path / "out"), "--probabilities"),
    )
    assert code == 1
    assert "does not give probabilities" in one_error_line(err)
    assert not (tmp_path / "out").exists()


def test_a_missing_model_fails_at_launch_with_the_loaders_message(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    (tmp_path / "in.csv").write_text("1\n")
    code, _, err = run(
        capsys,
        *("--model-uri", str(tmp_path / "nothing"), "--input", str(tmp_path)),
        *("--output", str(tmp_path / "out")),
    )
    assert code == 1
    assert "LATEST" in one_error_line(err)


def test_counts_that_do_not_add_up_fail_the_job(
    capsys: pytest.CaptureFixture[str],
    named_model: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    (tmp_path / "in.csv").write_text("a,b\n1,0\n0,x\n")
    real = batch.cli.counts

    def lossy(result: object) -> dict[str, int]:
        totals = real(result)
        assert totals == {"read": 2, "scored": 1, "rejected": 1}
        return {**totals, "scored": 0}

    monkeypatch.setattr(batch.cli, "counts", lossy)
    code, out, err = run(
        capsys,
        *("--model-uri", str(named_model), "--input", str(tmp_path / "in.csv")),
        *("--output", str(tmp_path / "out" / "p"), "--progress-seconds", "0"),
    )
    assert code == 1
    assert "read 2, scored 0, rejected 1" in out
    assert err.strip().splitlines()[-1] == (
        "error: 2 rows read but 1 scored or rejected"
    )


@pytest.fixture
def text_model(tmp_path: Path) -> Path:
    """A pipeline fitted on a DataFrame with a text column, published with the
    schema and example row the trainer infers."""
    import pandas as pd
    from sklearn.compose import ColumnTransformer
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder

    from train.schema import example_row, infer_schema

    frame = pd.DataFrame({"a": [0.0, 1.0, 2.0, 3.0], "plan": ["x", "y", "x", "y"]})
    model = make_pipeline(
        ColumnTransformer(
            [("plan", OneHotEncoder(), ["plan"]), ("a", "passthrough", ["a"])]
        ),
        LogisticRegression(),
    ).fit(frame, [0, 1, 0, 1])
    schema = infer_schema(model, frame)
    root = tmp_path / "store" / "text"
    publish_estimator(
        root, model, input_schema=schema.to_json(), example=example_row(schema, frame)
    )
    return root


def test_scores_of_a_classifier_are_refused_at_launch(
    capsys: pytest.CaptureFixture[str], named_model: Path, tmp_path: Path
) -> None:
    (tmp_path / "in.csv").write_text("a,b\n1,2\n")
    code, _, err = run(
        capsys,
        *("--model-uri", str(named_model), "--input", str(tmp_path / "in.csv")),
        *("--output", str(tmp_path / "out"), "--scores"),
    )
    assert code == 1
    assert one_error_line(err) == (
        "error: only outlier detectors give scores (task: classification); "
        'remove "scores"'
    )
    assert not (tmp_path / "out").exists()


def test_a_kept_column_may_not_take_the_score_columns_name(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    from sklearn.ensemble import IsolationForest

    root = tmp_path / "store" / "iso"
    detector = IsolationForest(n_estimators=5, random_state=0)
    publish_estimator(root, detector.fit([[0.0], [1.0], [2.0], [3.0]]))
    (tmp_path / "in.csv").write_text("score,x0\n1,2\n")
    code, _, err = run(
        capsys,
        *("--model-uri", str(root), "--input", str(tmp_path / "in.csv")),
        *("--output", str(tmp_path / "out"), "--keep", "score", "--scores"),
    )
    assert code == 2
    assert "--keep score would collide" in one_error_line(err)


def test_a_model_with_text_features_is_probed_with_its_example_row(
    capsys: pytest.CaptureFixture[str], text_model: Path, tmp_path: Path
) -> None:
    """Zeros would not fit its text column; the launch gets past the probe to
    the input, whose header (no number in it either way) is found by name."""
    (tmp_path / "in.csv").write_text("plan,id\nx,1\n")
    code, _, err = run(
        capsys,
        *("--model-uri", str(text_model), "--input", str(tmp_path / "in.csv")),
        *("--output", str(tmp_path / "out"), "--keep", "id"),
    )
    assert code == 2
    assert one_error_line(err) == (
        f"error: the header of {tmp_path}/in.csv lacks the model's features a "
        "(expected: a, plan) (if it is a data row, pass --header no)"
    )


def test_an_example_row_its_own_schema_refuses_fails_at_launch(
    capsys: pytest.CaptureFixture[str], text_model: Path, tmp_path: Path
) -> None:
    version = latest_version(text_model)
    manifest = text_model / "versions" / version / "manifest.json"
    data = json.loads(manifest.read_text())
    data["example"] = [0.0, 7]
    manifest.write_text(json.dumps(data))
    (tmp_path / "in.csv").write_text("a,plan\n1,x\n")
    code, _, err = run(
        capsys,
        *("--model-uri", str(text_model), "--input", str(tmp_path / "in.csv")),
        *("--output", str(tmp_path / "out")),
    )
    assert code == 1
    assert one_error_line(err) == (
        f"error: the manifest of {version} has an example row its input schema "
        "refuses: features[1] ('plan') must be a string, got 7"
    )


BAD_OUTPUTS = {
    # --output -> the start of the one error line
    "a/../b/x/../../c/y": "error: --output a/../b/x/../../c/y: '..' after a folder "
    "name climbs back out of it, and where that lands depends on folders that may "
    "not exist; write the prefix without it (c/y)",
    "out/./../y": "error: --output out/./../y: '..' after a folder name",
    "out/": "error: --output out/ ends with '/': name the files too, e.g. out/scored",
    "file.txt/scored": "error: --output file.txt/scored: file.txt is a file, not a "
    "folder",
    "file.txt/deeper/scored": "error: --output file.txt/deeper/scored: file.txt is a "
    "file, not a folder",
    "/proc/skserve/scored": "error: --output /proc/skserve/scored: cannot write in "
    "/proc",
    "gs://bucket": "error: --output gs://bucket names a bucket but no file prefix in "
    "it, e.g. gs://bucket/scored",
    "gs://bucket/": "error: --output gs://bucket/ ends with '/': name the files too",
    "gs://Bucket/x": "error: --output gs://Bucket/x: 'Bucket' is not a Cloud Storage "
    "bucket name",
    "gs://ab/x": "error: --output gs://ab/x: 'ab' is not a Cloud Storage bucket name",
    "gs://-bucket/x": "error: --output gs://-bucket/x: '-bucket' is not a Cloud "
    "Storage bucket name",
    "gs://goog-bucket/x": "error: --output gs://goog-bucket/x: 'goog-bucket' is not "
    "a Cloud Storage bucket name",
    "gs:///x": "error: --output gs:///x: '' is not a Cloud Storage bucket name",
    "s3://my_bucket/x": "error: --output s3://my_bucket/x: 'my_bucket' is not an S3 "
    "bucket name",
    "s3://my..bucket/x": "error: --output s3://my..bucket/x: 'my..bucket' is not an "
    "S3 bucket name",
    "s3://192.168.1.1/x": "error: --output s3://192.168.1.1/x: '192.168.1.1' is not "
    "an S3 bucket name",
    "s3://bucket/a/../b": "error: --output s3://bucket/a/../b: object names keep "
    "'..' as it is written",
    "s3://bucket/a//b": "error: --output s3://bucket/a//b: object names keep '//' as "
    "it is written",
    "gs://bucket/./b": "error: --output gs://bucket/./b: object names keep '.' as it "
    "is written",
    "nofs://bucket/x": "error: --output nofs://bucket/x: no filesystem for nofs://",
}


@pytest.mark.parametrize("output", list(BAD_OUTPUTS))
def test_an_output_prefix_that_cannot_work_fails_before_the_model_or_input_is_read(
    capsys: pytest.CaptureFixture[str],
    named_model: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    output: str,
) -> None:
    (tmp_path / "in.csv").write_text("a,b\n1,2\n")
    (tmp_path / "file.txt").write_text("not a folder\n")
    monkeypatch.chdir(tmp_path)
    before = sorted(tmp_path.rglob("*"))

    def never(*args: object, **kwargs: object) -> None:
        pytest.fail("the launcher went on after a bad --output")

    monkeypatch.setattr(batch.cli, "verify_at_launch", never)
    monkeypatch.setattr(batch.cli, "_plan_input", never)
    code, out, err = run(
        capsys,
        *("--model-uri", str(named_model), "--input", str(tmp_path / "in.csv")),
        *("--output", output),
    )

    assert code == 2 and out == ""
    assert one_error_line(err).startswith(BAD_OUTPUTS[output]), err
    assert sorted(tmp_path.rglob("*")) == before  # no folder made, no probe left


@pytest.mark.parametrize(
    "output",
    ["scored", "../up/scored", "./out/scored", "new/deep/folder/scored"],
)
def test_an_output_prefix_in_a_folder_that_can_be_made_passes_and_writes_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, output: str
) -> None:
    from batch.location import check_output

    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    check_output(output)
    check_output("gs://my-bucket.example_1/out/scored")
    check_output("s3://my-bucket.example-1/scored")
    assert list(tmp_path.rglob("*")) == [work]


def test_max_line_chars_must_be_a_positive_number(
    capsys: pytest.CaptureFixture[str], named_model: Path, tmp_path: Path
) -> None:
    args = ["--model-uri", str(named_model), "--input", "x", "--output", "y"]
    with pytest.raises(SystemExit) as stop:
        main([*args, "--max-line-chars", "0"])
    assert stop.value.code == 2
    assert "--max-line-chars: must be a positive integer" in capsys.readouterr().err


def test_a_header_line_beyond_the_bound_fails_at_launch(
    capsys: pytest.CaptureFixture[str], named_model: Path, tmp_path: Path
) -> None:
    (tmp_path / "in.csv").write_text("a,b," + "c" * 100 + "\n1,2\n")
    code, _, err = run(
        capsys,
        *("--model-uri", str(named_model), "--input", str(tmp_path / "in.csv")),
        *("--output", str(tmp_path / "out"), "--max-line-chars", "50"),
    )
    assert code == 2
    assert one_error_line(err) == (
        f"error: cannot read the header of {tmp_path}/in.csv: line 1 has 104 "
        "characters, more than the 50 a line may have (--max-line-chars)"
    )
