"""The job's steps, each driven directly: reading counts and chunks every row,
validation and writing keep each row's line, and counts add up."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import apache_beam as beam
import numpy as np
import pytest
from apache_beam.io import fileio
from apache_beam.io.filesystems import FileSystems
from apache_beam.ml.inference.base import PredictionResult
from apache_beam.options.pipeline_options import PipelineOptions

import batch.pipeline
from batch.handler import Outcomes, Refused, verify_at_launch
from batch.io import csv_line, csv_lines, jsonl_line
from batch.pipeline import (
    CHUNK_ROWS,
    REJECTED,
    Chunk,
    Emit,
    HeaderError,
    Job,
    Progress,
    ReadFiles,
    Validate,
    build,
    counts,
    spreads,
)
from batch.validate import BlockKey, Layout, Rejection
from skserve.rows import to_table
from skserve.schema import InputSchema
from tests.support import latest_version, published_model

NAMED = InputSchema.numeric(2, ["a", "b"])
TEXT = InputSchema.from_json(
    {
        "format": "dataframe",
        "columns": [
            {"name": "income", "kind": "number", "nullable": True},
            {"name": "plan", "kind": "string", "nullable": False},
        ],
    },
    named=True,
)


def readable(path: Path) -> fileio.ReadableFile:
    """The file as fileio.ReadMatches hands it to the read step."""
    (metadata,) = FileSystems.match([str(path)])[0].metadata_list
    return fileio.ReadableFile(metadata)


def read(path: Path, header: str = "auto", fmt: str = "csv") -> list[Chunk]:
    return list(ReadFiles(fmt, header, NAMED).process(readable(path)))


def test_plain_lines_travel_in_chunks_of_a_block_numbered_from_their_line(
    tmp_path: Path,
) -> None:
    path = tmp_path / "rows.csv"
    rows = [f"{i},{i + 0.5}\n" for i in range(2 * CHUNK_ROWS + 500)]
    path.write_text("b,a\n" + "".join(rows[:10]) + "\n" + "".join(rows[10:]))
    chunks = read(path)
    assert [len(c.lines or ()) for c in chunks] == [CHUNK_ROWS, CHUNK_ROWS, 501]
    assert [c.start for c in chunks] == [2, 2 + CHUNK_ROWS, 2 + 2 * CHUNK_ROWS]
    assert {c.columns for c in chunks} == {("b", "a")}
    assert all(c.records == [] for c in chunks)
    lines = [line for c in chunks for line in c.lines or ()]
    assert lines == [*rows[:10], "\n", *rows[10:]]  # the blank line: no row


def test_quoted_records_travel_as_records_with_their_first_line(
    tmp_path: Path,
) -> None:
    path = tmp_path / "rows.csv"
    path.write_text('a,b,id\n1,2,"x\ny"\n3,4,plain\n')
    chunks = read(path)
    records = [record for c in chunks for record in c.records]
    assert records == [(2, ["1", "2", "x\ny"]), (4, ["3", "4", "plain"])]
    assert all(c.lines is None for c in chunks)


def test_a_first_row_of_numbers_is_data_under_header_auto(tmp_path: Path) -> None:
    path = tmp_path / "rows.csv"
    path.write_text("1,2\n3,4\n")
    (chunk,) = read(path)  # the first line, unread as a header, stays plain
    assert chunk.columns is None
    assert (chunk.start, chunk.lines) == (1, ["1,2\n", "3,4\n"])


def test_a_header_that_cannot_be_read_fails_its_file(tmp_path: Path) -> None:
    path = tmp_path / "rows.csv"
    path.write_bytes(b"a,\xffb\n1,2\n")
    with pytest.raises(
        HeaderError, match=r"rows.csv: line 1 is not UTF-8.*\(the header\)"
    ):
        read(path, header="yes")


def test_json_lines_travel_as_records_and_an_empty_file_as_nothing(
    tmp_path: Path,
) -> None:
    path = tmp_path / "rows.jsonl"
    path.write_text('{"a": 1, "b": 2}\n\n[3, 4]\n')
    (chunk,) = read(path, header="no", fmt="jsonl")
    assert chunk.records == [(1, '{"a": 1, "b": 2}'), (3, "[3, 4]")]
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    assert read(empty) == []
    blank = tmp_path / "blank.csv"
    blank.write_text("a,b\n\n\r\n")
    assert read(blank) == []  # blank lines alone are no rows


def outputs(results: Any) -> tuple[list[Any], list[Any]]:
    """(main outputs, rejected outputs) of a DoFn's process."""
    main, rejected = [], []
    for result in results:
        if isinstance(result, beam.pvalue.TaggedOutput):
            assert result.tag == REJECTED
            rejected.append(result.value)
        else:
            main.append(result)
    return main, rejected


def test_validate_judges_plain_lines_and_records_alike() -> None:
    layout = Layout(NAMED, ("id",))
    step = Validate(layout, "csv")
    plain = Chunk(
        "f.csv", ("id", "b", "a"), [], 5, ["k1,2,1\n", "k2,x,3\n", "k3,4,3\n"]
    )
    records = Chunk(
        "f.csv",
        ("id", "b", "a"),
        [(5, ["k1", "2", "1"]), (6, ["k2", "x", "3"]), (7, ["k3", "4", "3"])],
    )
    results = [outputs(step.process(chunk)) for chunk in (plain, records)]
    for (key, table), rejected in ((main[0], rej) for main, rej in results):
        assert key == BlockKey("f.csv", [5, 7], [("k1",), ("k3",)])
        assert table.numbers.tolist() == [[1.0, 2.0], [3.0, 4.0]]
        assert rejected == [
            Rejection(
                "f.csv",
                6,
                "invalid_value",
                "features[1] ('b') must be a finite number, got \"x\"",
                ["k2", "x", "3"],
            )
        ]
    jsonl = Validate(layout, "jsonl").process(Chunk("f.jsonl", None, [(1, "[1, 2]")]))
    ((key, table),), _ = outputs(jsonl)
    assert key.lines == [1] and table.numbers.tolist() == [[1.0, 2.0]]


def job(output_format: str, probabilities: bool = True) -> Job:
    return Job(
        input="in.csv",
        output="out",
        input_format="csv",
        output_format=output_format,
        header="auto",
        layout=Layout(TEXT, ("id",)),
        source=None,  # type: ignore[arg-type]  # Emit loads no model
        classes=["no", "yes"] if probabilities else None,
        probabilities=probabilities,
        progress_seconds=0,
    )


def scored_block() -> tuple[BlockKey, PredictionResult]:
    block = to_table(
        [[1.5, "=cmd"], [1e39, "basic"], [None, "a;b"]], single=False, schema=TEXT
    )
    outcomes = Outcomes(
        ["yes", None, "no"],
        np.array([[0.25, 0.75], [np.nan, np.nan], [0.5, 0.5]]),
        None,
        {1: Refused("invalid_value", "the model cannot use these values: float32")},
    )
    key = BlockKey("in.csv", [4, 5, 9], [("@k1",), ("k2",), ("k,3",)])
    return key, PredictionResult(block, outcomes, "v7")


def test_emit_writes_the_scored_rows_and_rejects_what_the_model_refused() -> None:
    step = Emit(job("csv"))
    (text,), rejected = outputs(step.process(scored_block()))
    assert text == csv_lines(
        [["@k1", "yes", 0.25, 0.75, "v7"], ["k,3", "no", 0.5, 0.5, "v7"]]
    )
    assert text.splitlines()[0] == "'@k1,yes,0.25,0.75,v7"  # a formula defused
    assert csv_line(job("csv").columns) == (
        "id,prediction,probability_no,probability_yes,model_version"
    )
    assert rejected == [
        Rejection(
            "in.csv",
            5,
            "invalid_value",
            "the model cannot use these values: float32",
            [1e39, "basic"],
        )
    ]
    (lines,), _ = outputs(Emit(job("jsonl")).process(scored_block()))
    columns = job("jsonl").columns
    assert lines.splitlines() == [
        jsonl_line(columns, ["@k1", "yes", 0.25, 0.75, "v7"]),
        jsonl_line(columns, ["k,3", "no", 0.5, 0.5, "v7"]),
    ]
    assert json.loads(lines.splitlines()[0])["id"] == "@k1"  # JSON is no sheet


def test_emit_refuses_a_result_that_does_not_match_its_rows() -> None:
    key, result = scored_block()
    short = BlockKey(key.file, key.lines[:2], key.kept[:2])
    with pytest.raises(ValueError, match="3 outcomes for the 2 rows of a block"):
        list(Emit(job("csv")).process((short, result)))


def test_emit_writes_nothing_for_a_block_the_model_refused_whole() -> None:
    block = to_table([[1e39, "basic"]], single=False, schema=TEXT)
    outcomes = Outcomes.of_refusal(Refused("invalid_value", "beyond float32"))
    element = (
        BlockKey("in.csv", [2], [("k",)]),
        PredictionResult(block, outcomes, "v"),
    )
    main, rejected = outputs(Emit(job("csv", probabilities=False)).process(element))
    assert main == [] and [r.line for r in rejected] == [2]


def test_progress_reports_rows_and_rate_once_an_interval_has_passed(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    clock = iter([100.0, 100.5, 102.0, 102.1])
    monkeypatch.setattr(batch.pipeline.time, "monotonic", lambda: next(clock))
    progress = Progress()
    for rows in (1_000, 1_000, 2_000, 5):
        progress.add(rows, 1.0)
    assert capsys.readouterr().err.splitlines() == [
        "batch: scored 4,000 rows (2,000 rows/s)"
    ]


@pytest.mark.parametrize(
    ("flags", "spread"),
    [
        ([], False),
        (["--direct_running_mode=multi_threading"], False),
        (["--runner=direct"], False),
        (["--direct_num_workers=2"], True),
        (["--runner=DataflowRunner"], True),
        (["--runner=PrismRunner"], True),
    ],
)
def test_only_a_job_with_workers_to_spread_over_needs_the_reshuffle(
    flags: list[str], spread: bool
) -> None:
    assert spreads(PipelineOptions(flags)) is spread


@pytest.mark.parametrize("workers", [1, 2])
def test_the_read_is_reshuffled_only_where_it_spreads_work(
    model_dir: Path, tmp_path: Path, workers: int
) -> None:
    source, model = verify_at_launch(
        str(model_dir),
        model_dir.name,
        latest_version(model_dir),
        runtime="sklearn",
        max_model_bytes=2**30,
        allow_version_mismatch=False,
        keys=(),
    )
    pipeline = beam.Pipeline(
        options=PipelineOptions([f"--direct_num_workers={workers}"])
    )
    build(
        pipeline,
        Job(
            input=str(tmp_path / "*.csv"),
            output=str(tmp_path / "out"),
            input_format="csv",
            output_format="csv",
            header="auto",
            layout=Layout(model.schema),
            source=source,
            classes=None,
        ),
    )
    steps = [t.full_label for t in pipeline.transforms_stack[0].parts]
    spread = ["Spread"] if workers > 1 else []
    assert steps[: 4 + len(spread)] == ["Match", "Open", "Read", *spread, "Validate"]


def test_counts_add_up_what_the_steps_counted(model_dir: Path, tmp_path: Path) -> None:
    """A real run on the DirectRunner: rows read, scored and rejected, from the
    job's metrics, and the output agrees with the model's own predictions."""
    data = np.random.default_rng(0).normal(size=(1_500, 10)).round(3)
    lines = [f"r{i}," + ",".join(map(str, row)) for i, row in enumerate(data.tolist())]
    lines[7] = "r7,1,2,3"  # too few features
    header = "id," + ",".join(f"x{j}" for j in range(10))
    (tmp_path / "rows.csv").write_text("\n".join([header, *lines]) + "\n")
    source, model = verify_at_launch(
        str(model_dir),
        model_dir.name,
        latest_version(model_dir),
        runtime="onnx",
        max_model_bytes=2**30,
        allow_version_mismatch=False,
        keys=(),
    )
    pipeline = beam.Pipeline(options=PipelineOptions([]))
    build(
        pipeline,
        Job(
            input=str(tmp_path / "rows.csv"),
            output=str(tmp_path / "out" / "p"),
            input_format="csv",
            output_format="csv",
            header="auto",
            layout=Layout(model.schema, ("id",)),
            source=source,
            classes=None,
        ),
    )
    result = pipeline.run()
    result.wait_until_finish()
    assert counts(result) == {"read": 1_500, "scored": 1_499, "rejected": 1}
    (shard,) = (tmp_path / "out").glob("p-*-of-*.csv")
    out = [line.split(",") for line in shard.read_text().splitlines()]
    assert out[0] == ["id", "prediction", "model_version"]
    got = {row_id: int(label) for row_id, label, _ in out[1:]}
    expected = published_model(model_dir).predict(np.delete(data, 7, axis=0))
    ids = [f"r{i}" for i in range(1_500) if i != 7]
    assert got == dict(zip(ids, expected.tolist(), strict=True))
    (errors,) = (tmp_path / "out").glob("p-errors-*.jsonl")
    (error,) = [json.loads(line) for line in errors.read_text().splitlines()]
    assert (error["line"], error["code"]) == (9, "wrong_feature_count")
    assert error["row"] == ["r7", "1", "2", "3"]
