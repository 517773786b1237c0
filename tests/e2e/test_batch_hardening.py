"""`python -m batch` meets hostile files: formulas, huge lines, bad bytes, bad paths."""

from __future__ import annotations

import csv
import io
import pickle
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from batch.io import spreadsheet_text
from tests.e2e.batch_support import (
    counts,
    csv_rows,
    jsonl_rows,
    run_batch,
    run_batch_measured,
    shards,
)
from tests.support import published_model

pytestmark = pytest.mark.e2e

LABELS = ['=HYPERLINK("http://evil.example")', "@SUM(1)", "-1.5"]
PLANS = ["basic", "premium", "standard"]
FORMULA_START = ("=", "+", "-", "@", "\t", "\r", "\0")


def training_frame() -> tuple[pd.DataFrame, np.ndarray]:
    """Income (with gaps) and a text plan; labels that are spreadsheet formulas
    (and one number written as text), by income band."""
    rng = np.random.default_rng(4)
    frame = pd.DataFrame(
        {
            "income": rng.uniform(0, 100, 300).round(2),
            "plan": rng.choice(PLANS, 300).astype(object),
        }
    )
    target = np.array(LABELS)[np.digitize(frame["income"], [35, 70])]
    frame.loc[::10, "income"] = np.nan
    return frame, target


@pytest.fixture(scope="module")
def formula_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The pipeline users deploy (imputer, one-hot text, logistic regression),
    published with the schema and example row the trainer infers."""
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    from skserve.storage import open_store
    from train.artifact import describe
    from train.publish import publish
    from train.schema import example_row, infer_schema

    frame, target = training_frame()
    model = make_pipeline(
        ColumnTransformer(
            [
                ("num", make_pipeline(SimpleImputer(), StandardScaler()), ["income"]),
                ("cat", OneHotEncoder(handle_unknown="ignore"), ["plan"]),
            ]
        ),
        LogisticRegression(max_iter=1000),
    ).fit(frame, target)
    schema = infer_schema(model, frame)
    root = tmp_path_factory.mktemp("formulas") / "store" / "formulas"
    facts = {
        **describe(model),
        "input_schema": schema.to_json(),
        "example": example_row(schema, frame),
    }
    publish(open_store(str(root)), pickle.dumps(model), facts, name=root.name)
    return root


def model_frame(rows: list[list[Any]]) -> pd.DataFrame:
    """Rows of [income, plan] as the model was fitted (None: missing)."""
    frame = pd.DataFrame(rows, columns=["income", "plan"], dtype=object)
    return frame.astype({"income": float})


def write_csv(path: Path, header: list[str], rows: list[list[str]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def errors_of(out: Path, prefix: str) -> list[dict[str, Any]]:
    return jsonl_rows([p.read_text() for p in shards(out, f"{prefix}-errors")])


# Item 3: spreadsheet formulas


FORMULA_ROWS = [
    # id, income, plan
    ["=cmd|' /C calc'!A0", "10", "basic"],
    ["@SUM(1)", "55", '+HYPERLINK("http://evil.example","x")'],
    ["-1.5", "80", "premium"],
    ["-2+3", "-1.5", "=1+1"],
    ["a;=1", "1e-3", "standard"],
    ["\t=1", "", "basic"],
    ["+3", "90", "-plan"],
]


def test_csv_output_defuses_formulas_in_kept_columns_and_labels_not_numbers(
    formula_model: Path, tmp_path: Path
) -> None:
    data = write_csv(
        tmp_path / "in" / "rows.csv", ["id", "income", "plan"], FORMULA_ROWS
    )
    common = ["--model-uri", str(formula_model), "--input", str(data)]
    common += ["--keep", "id", "--keep", "plan", "--probabilities"]
    out = tmp_path / "out"

    as_csv = run_batch(*common, "--output", str(out / "csv"))
    as_jsonl = run_batch(*common, "--output", str(out / "jsonl"), "--format", "jsonl")

    assert as_csv.returncode == 0, as_csv.stderr
    assert as_jsonl.returncode == 0, as_jsonl.stderr
    assert counts(as_csv) == counts(as_jsonl) == (7, 7, 0)
    model = published_model(formula_model)
    frame = model_frame(
        [[float(income) if income else None, plan] for _, income, plan in FORMULA_ROWS]
    )
    expected = dict(
        zip(
            [row[0] for row in FORMULA_ROWS], model.predict(frame).tolist(), strict=True
        )
    )
    assert set(expected.values()) == set(LABELS)  # every label is written

    texts = [p.read_text() for p in shards(out, "csv")]
    cells = [
        cell for text in texts for row in csv.reader(io.StringIO(text)) for cell in row
    ]
    # No cell a spreadsheet would run: each starts with a formula character
    # only when it is a number.
    assert [
        c for c in cells if c.startswith(FORMULA_START) and c != spreadsheet_text(c)
    ] == []
    header = next(csv.reader(io.StringIO(texts[0])))
    assert header == [
        "id",
        "plan",
        "prediction",
        *(f"probability_{c}" for c in model.classes_),
        "model_version",
    ]
    rows = csv_rows(texts)
    raw_id = {spreadsheet_text(row[0]): row[0] for row in FORMULA_ROWS}
    assert sorted(raw_id) == sorted(row["id"] for row in rows)
    by_id = {raw_id[row["id"]]: row for row in rows}
    assert by_id["=cmd|' /C calc'!A0"]["id"] == "'=cmd|' /C calc'!A0"
    assert by_id["\t=1"]["id"] == "'\t=1"
    assert by_id["-1.5"]["id"] == "-1.5"  # text that spells a number: as written
    assert by_id["+3"]["id"] == "+3"
    assert by_id["a;=1"]["id"] == "a;=1"  # quoted, so no locale splits it
    assert by_id["@SUM(1)"]["plan"] == '\'+HYPERLINK("http://evil.example","x")'
    assert by_id["-2+3"]["plan"] == "'=1+1"
    assert by_id["+3"]["plan"] == "'-plan"
    for key, label in expected.items():
        assert by_id[key]["prediction"] == spreadsheet_text(label)
        probabilities = [float(by_id[key][f"probability_{c}"]) for c in model.classes_]
        assert np.isclose(sum(probabilities), 1.0)

    # JSON Lines is data for programs: every value exactly as it came.
    jsonl = jsonl_rows([p.read_text() for p in shards(out, "jsonl")])
    assert sorted((r["id"], r["plan"], r["prediction"]) for r in jsonl) == sorted(
        (key, plan, expected[key]) for key, _, plan in FORMULA_ROWS
    )


# Item 4: lines beyond the bound, bytes that are not UTF-8, rows kept


GOOD = [[f"k{i}", f"{(i * 7) % 100}", PLANS[i % 3]] for i in range(2000)]
LONG = 48_000_000  # characters in each over-long line


def test_lines_of_tens_of_megabytes_are_rejected_without_raising_the_jobs_memory(
    formula_model: Path, tmp_path: Path
) -> None:
    header = "id,income,plan\n"
    lines = [
        "".join(f"{','.join(row)}\n" for row in GOOD[i : i + 1000]) for i in (0, 1000)
    ]
    plain = tmp_path / "plain" / "rows.csv"
    plain.parent.mkdir()
    plain.write_text(header + lines[0] + lines[1])
    huge = tmp_path / "huge" / "rows.csv"
    huge.parent.mkdir()
    with huge.open("w") as handle:
        # One over-long line inside the file, one at its end without a newline.
        handle.write(header + lines[0])
        handle.write("9" * LONG + "\n")
        handle.write(lines[1])
        handle.write("x," * (LONG // 2))

    def job(data: Path, name: str) -> tuple[Any, int]:
        return run_batch_measured(
            "--model-uri", str(formula_model), "--input", str(data),
            "--output", str(tmp_path / "out" / name), "--keep", "id",
        )  # fmt: skip

    baseline, baseline_kib = job(plain, "plain")
    result, peak_kib = job(huge, "huge")

    assert baseline.returncode == 0, baseline.stderr
    assert result.returncode == 0, result.stderr
    assert counts(baseline) == (2000, 2000, 0)
    assert counts(result) == (2002, 2000, 2)
    growth_mib = (peak_kib - baseline_kib) / 1024
    print(
        f"peak RSS {baseline_kib >> 10} MiB; with the long lines {peak_kib >> 10} MiB"
    )
    assert growth_mib < 24, f"the job grew {growth_mib:.0f} MiB for two 48 MB lines"
    errors = errors_of(tmp_path / "out", "huge")
    assert sorted(e["line"] for e in errors) == [1002, 2003]
    for error in errors:
        assert error["code"] == "payload_too_large"
        assert error["error"].endswith(
            "more than the 1,048,576 a line may have (--max-line-chars)"
        )
        assert len(error["row"]) == 201 and error["row"].endswith("…")
    assert sum(p.stat().st_size for p in shards(tmp_path / "out", "huge-errors")) < 4096


def test_bytes_that_are_not_utf8_reject_their_row_instead_of_being_scored(
    formula_model: Path, tmp_path: Path
) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "latin1.csv").write_bytes(
        b"id,income,plan\n"
        b"caf\xe9,12,basic\n"  # the kept column, in Latin-1
        b"ok-1,50,premium\n"
        b"ok-2,60,\xff\xfe\n"  # a feature
    )
    (folder / "rows.jsonl").write_bytes(
        b'{"id": "ok-3", "income": 20, "plan": "basic"}\n'
        b'{"id": "na\xefve", "income": 20, "plan": "basic"}\n'
        b'{"id": "\\ud800", "income": 20, "plan": "basic"}\n'
    )
    out = tmp_path / "out"
    for pattern, name in (("*.csv", "csv"), ("*.jsonl", "jsonl")):
        result = run_batch(
            "--model-uri", str(formula_model), "--input", str(folder / pattern),
            "--output", str(out / name), "--keep", "id",
        )  # fmt: skip
        assert result.returncode == 0, result.stderr

    assert sorted(
        r["id"] for r in csv_rows([p.read_text() for p in shards(out, "csv")])
    ) == ["ok-1"]
    assert [
        r["id"] for r in csv_rows([p.read_text() for p in shards(out, "jsonl")])
    ] == ["ok-3"]
    rejected = sorted(
        (e["line"], e["code"], e["error"], e["row"])
        for e in errors_of(out, "csv") + errors_of(out, "jsonl")
    )
    assert rejected == [
        (
            2,
            "invalid_request",
            "line 2 is not UTF-8: byte 0xE9 at character 4 (save the file as UTF-8)",
            "caf\\xe9,12,basic",
        ),
        (
            2,
            "invalid_request",
            "line 2 is not UTF-8: byte 0xEF at character 11 (save the file as UTF-8)",
            '{"id": "na\\xefve", "income": 20, "plan": "basic"}',
        ),
        (
            3,
            "invalid_json",
            "unusable JSON: a string holds \\ud800, a lone surrogate, which is no "
            "character (UTF-8 cannot encode it)",
            '{"id": "\\ud800", "income": 20, "plan": "basic"}',
        ),
        (
            4,
            "invalid_request",
            "line 4 is not UTF-8: byte 0xFF at character 9 (save the file as UTF-8)",
            "ok-2,60,\\xff\\xfe",
        ),
    ]


def test_every_rejected_row_keeps_its_row_in_the_dead_letter(
    formula_model: Path, tmp_path: Path
) -> None:
    field = "y" * (csv.field_size_limit() + 1)  # within a line, beyond a field
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "a.csv").write_bytes(
        b"id,income,plan\n"
        b"v,abc,basic\n"  # a value the schema refuses
        b"m,12\n"  # a missing cell
        b"x,1,basic,extra\n"  # one cell too many
        + f"f,1,{field}\n".encode()  # a field csv cannot hold
        + b"t,"
        + b"1" * 1_100_000
        + b",basic\n"  # a line beyond the bound
        + b"u,1,b\xe4sic\n"  # not UTF-8
        + b"g,1,basic\n"
    )
    (folder / "b.jsonl").write_bytes(
        b'{"id": "j", "income": "abc", "plan": "basic"}\n'
        b"{not json\n"
        b'"a string"\n'
        b'{"id": "s", "income": 1, "plan": "\\udcff"}\n'
        b'{"id": "u", "income": 1, "plan": "b\xe4sic"}\n'
        + b'{"id": "'
        + b"2" * 1_100_000
        + b'"}\n'
        + b'{"id": "g", "income": 1, "plan": "basic"}\n'
    )
    out, totals = tmp_path / "out", []
    for name in ("csv", "jsonl"):  # a job reads all its files in one format
        result = run_batch(
            "--model-uri", str(formula_model), "--input", str(folder / f"*.{name}"),
            "--output", str(out / name), "--keep", "id",
        )  # fmt: skip
        assert result.returncode == 0, result.stderr
        totals.append(counts(result))

    assert totals == [(7, 1, 6), (7, 1, 6)]
    found = errors_of(out, "csv") + errors_of(out, "jsonl")
    errors = {(Path(e["file"]).name, e["line"]): e for e in found}
    rows = {where: error["row"] for where, error in errors.items()}
    assert None not in rows.values()
    assert rows[("a.csv", 2)] == ["v", "abc", "basic"]
    assert rows[("a.csv", 3)] == ["m", "12"]
    assert rows[("a.csv", 4)] == ["x", "1", "basic", "extra"]
    assert rows[("a.csv", 5)] == f"f,1,{field}"
    assert rows[("a.csv", 6)] == "t," + "1" * 198 + "…"
    assert rows[("a.csv", 7)] == "u,1,b\\xe4sic"
    assert rows[("b.jsonl", 1)] == '{"id": "j", "income": "abc", "plan": "basic"}'
    assert rows[("b.jsonl", 2)] == "{not json"
    assert rows[("b.jsonl", 3)] == '"a string"'
    assert rows[("b.jsonl", 4)] == '{"id": "s", "income": 1, "plan": "\\udcff"}'
    assert rows[("b.jsonl", 5)] == '{"id": "u", "income": 1, "plan": "b\\xe4sic"}'
    assert rows[("b.jsonl", 6)] == '{"id": "' + "2" * 192 + "…"
    assert {where: e["code"] for where, e in errors.items() if where[1] == 6} == {
        ("a.csv", 6): "payload_too_large",
        ("b.jsonl", 6): "payload_too_large",
    }


# Item 5: the output location, checked before anything is read


def bad_prefixes(tmp_path: Path) -> dict[str, tuple[str, str]]:
    """id -> (--output, the error line the launcher prints)."""
    (tmp_path / "file.txt").write_text("a file, not a folder\n")
    climbing = f"{tmp_path}/a/../b/x/../../c/y"
    return {
        "climbs-back": (
            climbing,
            f"error: --output {climbing}: '..' after a folder name climbs back out "
            "of it, and where that lands depends on folders that may not exist; "
            f"write the prefix without it ({tmp_path}/c/y)",
        ),
        "under-a-file": (
            f"{tmp_path}/file.txt/out/scored",
            f"error: --output {tmp_path}/file.txt/out/scored: {tmp_path}/file.txt "
            "is a file, not a folder",
        ),
        "unwritable": (
            "/proc/skserve-batch/scored",
            "error: --output /proc/skserve-batch/scored: cannot write in /proc",
        ),
        "gs-bucket": (
            "gs://Not_A_Bucket/out/scored",
            "error: --output gs://Not_A_Bucket/out/scored: 'Not_A_Bucket' is not a "
            "Cloud Storage bucket name (3-63 lowercase letters, digits, '-', '_' "
            "and '.', starting and ending with a letter or digit)",
        ),
        "s3-bucket": (
            "s3://my..bucket/out/scored",
            "error: --output s3://my..bucket/out/scored: 'my..bucket' is not an S3 "
            "bucket name (3-63 lowercase letters, digits, '-' and '.', starting and "
            "ending with a letter or digit, no '..')",
        ),
    }


@pytest.mark.parametrize(
    "case", ["climbs-back", "under-a-file", "unwritable", "gs-bucket", "s3-bucket"]
)
def test_an_output_that_cannot_be_written_stops_the_job_before_any_row(
    formula_model: Path, tmp_path: Path, case: str
) -> None:
    data = write_csv(tmp_path / "in" / "rows.csv", ["id", "income", "plan"], GOOD[:50])
    prefix, message = bad_prefixes(tmp_path)[case]
    before = sorted(tmp_path.rglob("*"))

    result = run_batch(
        "--model-uri", str(formula_model), "--input", str(data), "--output", prefix
    )

    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(message), result.stderr
    assert result.stdout == ""  # no counts: the job never started
    assert sorted(tmp_path.rglob("*")) == before  # nothing written, no temp folder
