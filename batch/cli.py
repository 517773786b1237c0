"""`python -m batch`: any failure is one line and a non-zero exit, never a traceback."""

# The launcher verifies the model and the input before the job starts, and a job
# that ends with read != scored + rejected exits non-zero too.

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence
from typing import Any, NoReturn

from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems
from apache_beam.options.pipeline_options import PipelineOptions

from batch.handler import BATCH_ROWS, MAX_BATCH_ROWS, verify_at_launch
from batch.io import (
    FORMATS,
    HEADER_MODES,
    MAX_LINE_CHARS,
    MODEL_VERSION,
    PREDICTION,
    PROBABILITY,
    SCORE,
    RecordProblem,
    csv_items,
    first_record,
    header_columns,
    input_format,
    line_runs,
    looks_like_header,
    text_stream,
)
from batch.location import OutputError, check_output
from batch.pipeline import Job, build, counts
from batch.validate import Layout, header_problems
from skserve.errors import BadRequest, IncompatibleModel, ServingError
from skserve.loader import LoadedModel, read_latest
from skserve.logs import clip
from skserve.rows import Table, to_table
from skserve.runtimes import RUNTIME_CHOICES
from skserve.schema import BOOLEAN, InputSchema
from skserve.settings import Settings
from skserve.storage import open_store

PROG = "python -m batch"


class UsageError(Exception):
    """A flag, the input or the output cannot work: one line, exit 2."""


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line like every other error."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog=PROG,
        allow_abbrev=False,  # an abbreviation could swallow a Beam option
        description="Score CSV or JSON Lines files with a published model on Apache "
        "Beam (DirectRunner here, Dataflow with --runner DataflowRunner). Any other "
        "flag is a Beam pipeline option.",
    )
    parser.add_argument(
        "--model-uri",
        required=True,
        help="<store>/<name> (its LATEST, read once at launch) or "
        "<store>/<name>/versions/<version>",
    )
    parser.add_argument(
        "--input", required=True, help="file pattern: local, gs:// or s3://"
    )
    parser.add_argument(
        "--output",
        required=True,
        help="output prefix: PREFIX-SSSSS-of-NNNNN.csv, rejected rows in "
        "PREFIX-errors-SSSSS-of-NNNNN.jsonl",
    )
    parser.add_argument(
        "--probabilities",
        action="store_true",
        help="add one probability_<class> column per class",
    )
    parser.add_argument(
        "--scores",
        action="store_true",
        help="outlier detectors: add a score column (decision_function; "
        "negative: an outlier)",
    )
    parser.add_argument(
        "--keep",
        action="append",
        default=[],
        metavar="COLUMN",
        help="pass this input column through to the output (repeatable)",
    )
    parser.add_argument(
        "--format", default="csv", choices=FORMATS, help="output format (csv)"
    )
    parser.add_argument(
        "--input-format",
        default="auto",
        choices=("auto", *FORMATS),
        help="auto: .jsonl/.ndjson files are JSON Lines, others CSV",
    )
    parser.add_argument(
        "--header",
        default="auto",
        choices=HEADER_MODES,
        help="CSV: whether each file's first line names its columns; auto: yes "
        "when it names every model feature, or, for a model of numbers, holds "
        "no number, or, for a model with text features, names one of them",
    )
    parser.add_argument(
        "--runtime",
        choices=RUNTIME_CHOICES,
        help="auto (the ONNX twin when the version has one), sklearn or onnx "
        "(default: MODEL_RUNTIME, else auto)",
    )
    parser.add_argument(
        "--batch-rows",
        type=_positive,
        help="most rows per RunInference batch (default: "
        + ", ".join(f"{rows:,} on {name}" for name, rows in BATCH_ROWS.items())
        + ")",
    )
    parser.add_argument(
        "--max-line-chars",
        type=_positive,
        default=MAX_LINE_CHARS,
        metavar="N",
        help="most characters in an input line, and in a CSV record whose quoted "
        f"fields span lines (default {MAX_LINE_CHARS:,}); a longer one is rejected "
        "as it is read, its first characters in the dead letter",
    )
    parser.add_argument(
        "--progress-seconds",
        type=float,
        default=10.0,
        help="print rows scored and the rate to stderr this often (0: never)",
    )
    return parser


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError("must be a positive integer")
    return value


def _pipeline_options(flags: Sequence[str]) -> PipelineOptions:
    """Beam's options from the flags this CLI does not own; a typo is an error,
    not a silently ignored option."""
    options = PipelineOptions(list(flags))
    known = options.get_all_options(retain_unknown_options=False)
    given = options.get_all_options(retain_unknown_options=True)
    unknown = sorted(set(given) - set(known))
    if unknown:
        raise UsageError(
            f"unknown option --{unknown[0]} (neither this command's nor a Beam "
            "pipeline option)"
        )
    return options


def _first_record(path: str, max_chars: int) -> list[str] | RecordProblem | None:
    """The first non-blank CSV record of `path` (read as the job reads it), or
    None if it has none."""
    with FileSystems.open(path, compression_type=CompressionTypes.AUTO) as raw:
        runs = line_runs(text_stream(raw), max_chars)
        first, _, _ = first_record(csv_items(runs, max_chars))
    return None if first is None else first[1]


def _plan_input(
    pattern: str, fmt: str, header_mode: str, layout: Layout, max_chars: int
) -> tuple[str, str]:
    """(input format, header mode), checked against the first matching file."""
    try:
        matched = FileSystems.match([pattern])[0].metadata_list
    except Exception as exc:  # Beam wraps every filesystem's errors differently
        raise UsageError(f"cannot list {pattern}: {_one_line(exc)}") from None
    if not matched:
        raise UsageError(f"no input file matches {pattern}")
    first = sorted(m.path for m in matched)[0]
    fmt = input_format(first) if fmt == "auto" else fmt
    if fmt == "jsonl":
        if header_mode == "yes":
            raise UsageError("--header yes is for CSV; JSON Lines rows name their keys")
        return fmt, "no"
    try:
        cells = _first_record(first, max_chars)
    except Exception as exc:
        raise UsageError(f"cannot read {first}: {_one_line(exc)}") from None
    if isinstance(cells, RecordProblem):
        if header_mode == "no":
            return fmt, header_mode  # a data row: the job rejects it alone
        # The job would fail on it too: a header it cannot read maps no row.
        raise UsageError(f"cannot read the header of {first}: {cells.message}")
    if header_mode == "auto":
        header = cells is not None and looks_like_header(cells, layout.schema)
    else:
        header = header_mode == "yes"
    if not header and layout.keep:
        raise UsageError(
            f"--keep needs a header row, and {first} has none (if its first line "
            "is one, pass --header yes)"
        )
    if header and cells is not None:
        problems = header_problems(
            header_columns(cells), layout, f"the header of {first}"
        )
        if problems:
            hint = " (if it is a data row, pass --header no)"
            raise UsageError(
                "; ".join(problems) + (hint if header_mode == "auto" else "")
            )
    return fmt, header_mode


def _check_keep(
    keep: Sequence[str], classes: Sequence[object] | None, scores: bool
) -> None:
    ours = {PREDICTION, MODEL_VERSION, *(f"{PROBABILITY}{c}" for c in classes or ())}
    if scores:
        ours.add(SCORE)
    clash = [name for name in keep if name in ours]
    if clash:
        raise UsageError(
            f"--keep {clash[0]} would collide with an output column of that name"
        )
    if len(set(keep)) != len(keep):
        raise UsageError("--keep names a column twice")


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return clip(text[0] if text else type(exc).__name__, 500)


def prepare(args: argparse.Namespace, options: PipelineOptions) -> Job:
    """Check the output location, resolve and verify the model, check the
    input, and fix the job."""
    try:
        check_output(args.output)  # before anything is read
    except OutputError as error:
        raise UsageError(str(error)) from None
    FileSystems.set_options(options)  # e.g. --s3_endpoint_url for the checks below
    env = {**os.environ, "MODEL_URI": args.model_uri}
    if args.runtime:
        env["MODEL_RUNTIME"] = args.runtime
    settings = Settings.from_env(env)
    uri = settings.model_uri
    # LATEST is read once, here: every worker scores with this version. With
    # signing keys only a pointer they signed is followed.
    version = uri.pinned or read_latest(
        open_store(uri.root), signing_keys=settings.signing_keys
    )
    source, model = verify_at_launch(
        uri.root,
        uri.name,
        version,
        runtime=settings.runtime,
        max_model_bytes=settings.max_model_bytes,
        allow_version_mismatch=settings.allow_version_mismatch,
        keys=settings.signing_keys,
    )
    # One typical row through the loaded runtime proves it predicts, and
    # refuses --probabilities or --scores for a model without them, before any
    # input is read.
    probe = model.runtime.predict(
        _probe_row(model), probabilities=args.probabilities, scores=args.scores
    )
    classes = probe.classes if args.probabilities else None
    _check_keep(args.keep, classes, args.scores)
    layout = Layout(model.schema, tuple(args.keep))
    fmt, header = _plan_input(
        args.input, args.input_format, args.header, layout, args.max_line_chars
    )
    print(
        f"batch: scoring {args.input} with {uri.root} version {version} "
        f"({model.runtime.name})",
        file=sys.stderr,
        flush=True,
    )
    return Job(
        input=args.input,
        output=args.output,
        input_format=fmt,
        output_format=args.format,
        header=header,
        layout=layout,
        source=source,
        classes=classes,
        probabilities=args.probabilities,
        scores=args.scores,
        progress_seconds=args.progress_seconds,
        max_batch_rows=args.batch_rows
        or BATCH_ROWS.get(model.runtime.name, MAX_BATCH_ROWS),
        max_line_chars=args.max_line_chars,
    )


def _probe_row(model: LoadedModel) -> Table:
    """The manifest's example row, as the schema reads it; without one (a
    manifest published before schemas), zeros, or for a schema of other kinds
    each column's first category, false, 0 or an empty string."""
    schema = model.schema
    example = model.manifest.data.get("example")
    if example is None:
        example = _typical_row(schema)
    try:
        return to_table([example], single=True, schema=schema)
    except BadRequest as error:
        raise IncompatibleModel(
            f"the manifest of {model.version} has an example row its input "
            f"schema refuses: {error.message}"
        ) from None


def _typical_row(schema: InputSchema) -> list[Any]:
    """A row every column of `schema` accepts, for a manifest without an example."""
    row: list[Any] = []
    for column in schema.columns:
        if column.categories:
            row.append(column.categories[0])
        elif column.kind == BOOLEAN:
            row.append(False)
        elif column.numeric:
            row.append(0.0)
        else:
            row.append("")
    return row


def run(job: Job, options: PipelineOptions) -> dict[str, int]:
    """Run the job to completion and return its counts."""
    import apache_beam as beam

    pipeline = beam.Pipeline(options=options)
    build(pipeline, job)
    result = pipeline.run()
    result.wait_until_finish()
    return counts(result)


class _OneLine(logging.Formatter):
    """Beam logs a failing step with its traceback; the terminal gets one line
    per record (the final error says what failed)."""

    def format(self, record: logging.LogRecord) -> str:
        lines = record.getMessage().strip().splitlines() or [""]
        return clip(f"{record.levelname} {record.name}: {lines[0]}", 300)


# Warnings that say nothing is wrong: RunInference's memory probe imports
# `resource` together with torch and warns on each load without torch; an output
# with no rows is skipped on purpose (S3 cannot hold an empty multipart object).
_NOISE = ("Resource module is not available", "No shards found to finalize")


def _noise(record: logging.LogRecord) -> bool:
    return not record.getMessage().startswith(_NOISE)


def configure_logging() -> None:
    """One line per Beam log record on stderr, for the command line (tests that
    call `main` keep their own logging)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_OneLine())
    handler.addFilter(_noise)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.WARNING)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args, rest = parser.parse_known_args(argv)
    try:
        options = _pipeline_options(rest)
        job = prepare(args, options)
    except UsageError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except ServingError as error:
        print(f"error: {error.message}", file=sys.stderr)
        return 1
    try:
        totals = run(job, options)
    except Exception as exc:  # the runner's errors: their first line, no traceback
        print(f"error: the job failed: {_one_line(exc)}", file=sys.stderr)
        return 1
    read, scored, rejected = (totals[k] for k in ("read", "scored", "rejected"))
    print(f"read {read}, scored {scored}, rejected {rejected}")
    if scored:
        print(f"predictions: {job.output}-*.{job.output_format}")
    if rejected:
        print(f"rejected rows: {job.output}-errors-*.jsonl")
    if read != scored + rejected:
        print(
            f"error: {read} rows read but {scored + rejected} scored or rejected",
            file=sys.stderr,
        )
        return 1
    return 0
