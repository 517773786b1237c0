"""`python -m batch` judges rows a block at once, yet every row gets what it gets
alone: the API's verdict and message for `{"features": row}`, its prediction."""

from __future__ import annotations

import csv
import io
import json
import os
import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from batch.io import spreadsheet_text
from tests.e2e.batch_support import counts, csv_rows, jsonl_rows, run_batch, shards
from tests.support import call, published_model, run_train

pytestmark = pytest.mark.e2e

FEATURES = ["income", "age", "plan", "region"]
PLANS = ["basic", "standard", "premium"]
REGIONS = ["n", "s"]
MAX_LINE = 120  # --max-line-chars, so a line of a few hundred is refused
GOOD_ROWS = 2_600  # three blocks of 1,000 rows, the odd rows among them


def training_frame() -> tuple[pd.DataFrame, pd.Series]:
    rng = np.random.default_rng(3)
    n = 400
    frame = pd.DataFrame(
        {
            "income": rng.normal(50, 10, n).round(2),
            "age": rng.integers(18, 80, n),
            "plan": rng.choice(PLANS, n),
            "region": rng.choice(REGIONS, n),
        }
    )
    frame.loc[::7, "income"] = np.nan  # only income may be missing
    target = ((frame.income.fillna(50) > 50) ^ (frame.region == "s")).astype(int)
    return frame, target


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A forest behind a ColumnTransformer (an imputed income, an integer age,
    an open plan and a closed region), published by `python -m train publish`
    with its training frame as the holdout, so the trainer infers the schema
    (and builds the twin) as for any user."""
    from sklearn.compose import ColumnTransformer
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder

    frame, target = training_frame()
    model = make_pipeline(
        ColumnTransformer(
            [
                ("income", SimpleImputer(), ["income"]),
                ("age", "passthrough", ["age"]),
                ("plan", OneHotEncoder(handle_unknown="ignore"), ["plan"]),
                ("region", OneHotEncoder(handle_unknown="error"), ["region"]),
            ]
        ),
        RandomForestClassifier(n_estimators=20, random_state=0),
    ).fit(frame, target)
    root = tmp_path_factory.mktemp("bulk")
    holdout = root / "holdout.csv"
    frame.to_csv(holdout, index=False)
    (root / "model.pkl").write_bytes(pickle.dumps(model))
    # Ages are whole years: the schema file says so (the trainer reads any
    # number column as a number).
    corrections = root / "schema.json"
    corrections.write_text(json.dumps({"columns": {"age": {"kind": "integer"}}}))
    published = run_train(
        "publish", str(root / "model.pkl"), "--holdout", str(holdout),
        "--schema", str(corrections),
        "--store", str(root / "store"), "--name", "forest",
    )  # fmt: skip
    assert published.returncode == 0, published.stdout + published.stderr
    return root / "store" / "forest"


@dataclass
class Line:
    """One line of the input as written, and what the job must make of it: a
    row (`features` as the API would be sent them, by the README's reading of
    cells) or a reading problem (`problem`: code, message and shown row)."""

    number: int
    data: bytes
    row_id: str | None = None
    features: dict[str, Any] | None = None
    shown: Any = None  # the dead letter's row when the row is refused
    problem: tuple[str, str, Any] | None = None


def good_rows() -> list[dict[str, Any]]:
    rng = np.random.default_rng(8)
    return [
        {
            "id": f"r{i}",
            "income": f"{rng.normal(50, 12):.2f}",
            "age": str(int(rng.integers(18, 80))),
            "plan": str(rng.choice(PLANS)),
            "region": str(rng.choice(REGIONS)),
        }
        for i in range(GOOD_ROWS)
    ]


# Odd CSV rows: id, income, age, plan, region (cells as written). The API
# decides each one's fate; the comments say what it is.
ODD_CSV: list[list[str]] = [
    ["gap", "", "40", "basic", "n"],  # a missing income: allowed
    ["no-age", "52", "", "basic", "n"],  # a missing age: refused
    ["west", "52", "40", "basic", "west"],  # a region never seen: refused
    ["gold", "52", "40", "gold", "s"],  # a plan never seen: allowed
    ["text", "abc", "40", "basic", "n"],  # no number
    ["nan", "nan", "40", "basic", "n"],  # a number, but not finite
    ["half", "52", "40.5", "basic", "n"],  # no integer
    ["type", "52", "true", "basic", "n"],  # a boolean where a number goes
    ["huge", "1e39", "40", "basic", "s"],  # beyond float32: the forest refuses it
    ["=1+2", "48", "33", " basic", "s"],  # a formula id; a plan with a space
    ["semi;colon", "1_000", " 7 ", "premium", "n"],  # Python's number forms
    ["comma", "61", "50", "basic, premium", "s"],  # quoted: the exact reader
    ["multi\nline", "61", "50", "standard", "n"],  # a field over two lines
]


def cells_line(cells: list[str], ending: str = "\n") -> bytes:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator=ending).writerow(cells)
    return buffer.getvalue().encode()


def too_long(number: int, text: str) -> tuple[str, str, str]:
    """The dead letter of a line over --max-line-chars: its first characters."""
    message = (
        f"line {number} has {len(text):,} characters, more than the {MAX_LINE} "
        "a line may have (--max-line-chars)"
    )
    return "payload_too_large", message, text[:MAX_LINE] + "…"


def not_utf8(number: int, raw: bytes, byte: int, text: str) -> tuple[str, str, str]:
    """The dead letter of a line with a byte that is not UTF-8 (after ASCII)."""
    at = raw.index(bytes([byte])) + 1
    message = (
        f"line {number} is not UTF-8: byte 0x{byte:02X} at character {at} (save "
        "the file as UTF-8)"
    )
    return "invalid_request", message, text


def features_of(cells: list[str], kinds: dict[str, str]) -> dict[str, Any]:
    """A CSV row's features as the README reads its cells: empty is missing,
    a number column's cell the number it spells (else its text), other cells
    their text as written."""
    features: dict[str, Any] = {}
    for name, cell in zip(FEATURES, cells[1:], strict=False):
        if cell == "":
            features[name] = None
        elif kinds[name] in ("number", "integer"):
            try:
                features[name] = float(cell)
            except ValueError:
                features[name] = cell
        else:
            features[name] = cell
    return features


def csv_input(kinds: dict[str, str]) -> list[Line]:
    """The good rows with the odd ones among them, CRLF and blank lines, a
    short and a wide row, a line too long and lines that are not UTF-8."""
    rows = good_rows()
    data: list[tuple[bytes, dict[str, Any]]] = []
    for row in rows:
        cells = [row["id"], *(row[name] for name in FEATURES)]
        data.append((cells_line(cells), {"cells": cells}))
    odd = {cells[0]: (cells_line(cells), {"cells": cells}) for cells in ODD_CSV}
    crlf = ["crlf", "50", "30", "basic", "s"]
    odd |= {
        "crlf": (cells_line(crlf, "\r\n"), {"cells": crlf}),
        "blank": (b"\r\n", {}),  # no row
        "short": (b"short,50\n", {"cells": ["short", "50"]}),
        "wide": (
            b"wide,50,40,basic,n,x\n",
            {"wide": ["wide", "50", "40", "basic", "n", "x"]},
        ),
        "long": (b"long," + b"9" * 300 + b",40,basic,n\n", {"long": True}),
        "latin": (b"caf\xe9,50,40,basic,n\n", {"latin": 0xE9}),
        "bytes": (b"bytes,50,40,b\xffsic,n\n", {"latin": 0xFF}),
    }
    # Where each odd row goes among the good ones: a block whose incomes are
    # all numbers but "nan" and "1e39" (read a column at a time), a block
    # with an empty and a text income (read cell by cell), and a block of
    # lines with quotes or that cannot be read (read record by record).
    blocks = [
        ["nan", "huge", "semi;colon", "half", "type", "=1+2", "west", "gold"],
        ["no-age", "crlf", "blank", "short", "wide"],
        ["gap", "text"],
        ["comma", "multi\nline", "long", "latin", "bytes"],
    ]
    starts = [100, 700, 1500, 2300]
    for block, start in reversed(list(zip(blocks, starts, strict=True))):
        for k, name in reversed(list(enumerate(block))):
            data.insert(start + 7 * k, odd.pop(name))
    assert not odd
    lines = [Line(1, b"id,income,age,plan,region\n")]
    number = 2
    for raw, what in data:
        line = Line(number, raw)
        number += raw.count(b"\n") or 1
        lines.append(line)
        text = raw.decode("utf-8", "backslashreplace").rstrip("\r\n")
        if "cells" in what:
            cells = what["cells"]
            line.row_id, line.shown = cells[0], cells
            line.features = features_of(cells, kinds)
        elif "wide" in what:
            message = "line has 6 cells, but the header has 5 columns"
            line.problem = ("invalid_request", message, what["wide"])
        elif "long" in what:
            line.problem = too_long(line.number, text)
        elif "latin" in what:
            line.problem = not_utf8(line.number, raw, what["latin"], text)
    return lines


ODD_JSON: list[str] = [
    '{"id": "j-gap", "income": null, "age": 40, "plan": "basic", "region": "n"}',
    '{"id": "j-str", "income": "52", "age": 40, "plan": "basic", "region": "n"}',
    '{"id": "j-bool", "income": 52, "age": true, "plan": "basic", "region": "n"}',
    '{"id": "j-num", "income": 52, "age": 40, "plan": 3, "region": "n"}',
    '{"id": "j-null", "income": 52, "age": 40, "plan": "basic", "region": null}',
    '{"id": "j-west", "income": 52, "age": 40, "plan": "basic", "region": "west"}',
    '{"id": "j-huge", "income": 1e39, "age": 40, "plan": "basic", "region": "n"}',
    '{"id": "j-list", "income": 52, "age": 40, "plan": ["basic"], "region": "n"}',
    '[52.5, 40, "premium", "s"]',
    '{"id": "j-short", "income": 52}',
]


def jsonl_input() -> list[Line]:
    """The good rows as JSON objects with numbers, the odd rows among them,
    a malformed line, a line too long and a line that is not UTF-8."""
    data: list[bytes] = []
    for row in good_rows():
        values = {
            "id": row["id"],
            "income": float(row["income"]),
            "age": int(row["age"]),
            "plan": row["plan"],
            "region": row["region"],
        }
        data.append(json.dumps(values).encode() + b"\n")
    odd = [text.encode() + b"\n" for text in ODD_JSON]
    odd += [
        b'{"id": "j-bad", "income": \n',
        b'{"id": "j-long", "plan": "' + b"x" * 300 + b'"}\n',
        b'{"id": "na\xefve", "income": 1, "age": 2, "plan": "basic", "region": "n"}\n',
    ]
    places = [3, 998, 999, 1000, 1500, 2001, 2100, 2200, 2300, 2400, 2450, 2500, 2550]
    for place, raw in zip(sorted(places, reverse=True), reversed(odd), strict=True):
        data.insert(place, raw)
    lines = []
    for number, raw in enumerate(data, start=1):
        line = Line(number, raw)
        lines.append(line)
        text = raw.decode("utf-8", "backslashreplace").rstrip("\n")
        if raw.startswith(b'{"id": "j-bad"'):
            try:
                json.loads(text)
            except json.JSONDecodeError as exc:
                message = f"malformed JSON: {exc.msg} (column {exc.colno})"
            line.problem = ("invalid_json", message, text)
        elif b'"j-long"' in raw:
            line.problem = too_long(number, text)
        elif b"\xef" in raw:
            line.problem = not_utf8(number, raw, 0xEF, text)
        else:
            value = json.loads(raw)
            line.shown = text
            if isinstance(value, list):
                line.features = value  # type: ignore[assignment]
            else:
                line.row_id = value["id"]
                line.features = {k: value[k] for k in FEATURES if k in value}
    return lines


def api(features: Any) -> tuple[int, dict[str, Any]]:
    """`POST /predict` of `{"features": row}`, row by row."""
    answer = call(json={"features": features, "probabilities": True})
    return answer.status_code, answer.get_json()


@pytest.mark.parametrize("input_format", ["csv", "jsonl"])
def test_mixed_rows_get_the_dead_letters_and_predictions_of_row_by_row_checks(
    model_dir: Path, tmp_path: Path, input_format: str
) -> None:
    version = (model_dir / "LATEST").read_text().strip()
    manifest = json.loads(
        (model_dir / "versions" / version / "manifest.json").read_text()
    )
    kinds = {c["name"]: c["kind"] for c in manifest["input_schema"]["columns"]}
    schema = {c["name"]: c for c in manifest["input_schema"]["columns"]}
    # What the rows below were chosen to meet: the trainer's schema.
    assert [kinds[name] for name in FEATURES[:3]] == ["number", "integer", "string"]
    assert schema["income"]["nullable"] and not schema["age"]["nullable"]
    assert schema["plan"]["unknown"] and not schema["region"]["unknown"]
    assert schema["region"]["categories"] == REGIONS

    lines = csv_input(kinds) if input_format == "csv" else jsonl_input()
    data = tmp_path / f"rows.{input_format}"
    data.write_bytes(b"".join(line.data for line in lines))
    result = run_batch(
        *("--model-uri", str(model_dir), "--input", str(data)),
        *("--output", str(tmp_path / "out" / "p"), "--keep", "id"),
        *("--probabilities", "--max-line-chars", str(MAX_LINE)),
    )
    assert result.returncode == 0, result.stderr

    # Row by row: the API's verdict for each row, the reading problems.
    os.environ["MODEL_URI"] = str(model_dir)
    expected_errors = []
    expected_scores: dict[str, dict[str, Any]] = {}
    accepted: list[Line] = []
    for line in lines[1 if input_format == "csv" else 0 :]:
        if line.problem is not None:
            code, message, shown = line.problem
            expected_errors.append((str(data), line.number, code, message, shown))
            continue
        if line.features is None:
            continue  # a blank line is no row
        status, answer = api(line.features)
        if status == 200:
            accepted.append(line)
            expected_scores[line.row_id or f"line {line.number}"] = answer
            continue
        error = answer["error"]
        shown = line.shown
        if error["message"].startswith("the model cannot use these values"):
            shown = [line.features.get(name) for name in FEATURES]  # type: ignore[union-attr]
        expected_errors.append(
            (str(data), line.number, error["code"], error["message"], shown)
        )
    errors = jsonl_rows([p.read_text() for p in shards(tmp_path / "out", "p-errors")])
    got_errors = [
        (e["file"], e["line"], e["code"], e["error"], e["row"]) for e in errors
    ]
    by_line = sorted(got_errors, key=lambda error: error[1])
    assert by_line == sorted(expected_errors, key=lambda error: error[1])
    # Every kind of refusal the rows were written to meet.
    messages = " | ".join(e[3] for e in expected_errors)
    for part in (
        "may not be missing",
        'must be one of "n", "s"',
        "must be a finite number",
        "cannot use these values",
        "a line may have (--max-line-chars)",
        "is not UTF-8",
    ):
        assert part in messages

    read, scored, rejected = counts(result)
    assert (read, scored, rejected) == (
        len(accepted) + len(expected_errors),
        len(accepted),
        len(expected_errors),
    )
    texts = [p.read_text() for p in shards(tmp_path / "out", "p")]
    out = csv_rows(texts)
    by_id = {row["id"]: row for row in out}
    assert len(by_id) == len(out) == scored
    classes = [str(c) for c in manifest["classes"]]
    for line in accepted:
        answer = expected_scores[line.row_id or f"line {line.number}"]
        got = by_id[spreadsheet_text(line.row_id or "")]
        assert int(got["prediction"]) == answer["prediction"], line.row_id
        np.testing.assert_allclose(
            [float(got[f"probability_{c}"]) for c in classes],
            answer["probabilities"],
            atol=1e-9,
        )

    # And the model's own predict on the accepted rows, with training dtypes.
    model = published_model(model_dir)
    named = [line for line in accepted if isinstance(line.features, dict)]
    frame = pd.DataFrame(
        {
            "income": np.array(
                [np.nan if f["income"] is None else f["income"] for f in feats(named)],
                dtype=np.float64,
            ),
            "age": np.array([f["age"] for f in feats(named)], dtype=np.float64),
            "plan": np.array([f["plan"] for f in feats(named)], dtype=object),
            "region": np.array([f["region"] for f in feats(named)], dtype=object),
        }
    )
    labels = model.predict(frame).tolist()
    got = [
        int(by_id[spreadsheet_text(line.row_id or "")]["prediction"]) for line in named
    ]
    assert got == labels


def feats(lines: list[Line]) -> list[dict[str, Any]]:
    return [line.features for line in lines]  # type: ignore[misc]
