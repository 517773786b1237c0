"""Each row read is counted once more, as scored or rejected, in exactly one output."""

# The job: read -> reshuffle -> validate -> RunInference -> write.

from __future__ import annotations

import itertools
import sys
import threading
import time
from dataclasses import dataclass
from typing import Any, NamedTuple

import apache_beam as beam
from apache_beam.io import fileio
from apache_beam.metrics import Metrics
from apache_beam.metrics.metric import MetricsFilter
from apache_beam.ml.inference.base import (
    KeyedModelHandler,
    PredictionResult,
    RunInference,
)
from apache_beam.runners.runner import PipelineResult

from batch.handler import (
    BLOCK_ROWS,
    MAX_BATCH_ROWS,
    ModelSource,
    Refused,
    SkserveModelHandler,
)
from batch.io import (
    MAX_LINE_CHARS,
    RecordProblem,
    csv_line,
    csv_lines,
    csv_records,
    header_columns,
    jsonl_line,
    jsonl_records,
    looks_like_header,
    output_columns,
    text_lines,
    text_stream,
)
from batch.validate import (
    BlockKey,
    CsvRows,
    Layout,
    Rejection,
    check_records,
    row_values,
)
from skserve.schema import InputSchema

NAMESPACE = "skserve"  # Beam counters' namespace, as the Dataflow UI groups them
COUNTERS = ("read", "scored", "rejected")
REJECTED = "rejected"
# Records per element between reading and validation (and so rows per block):
# files are read whole by one worker; chunks are what the reshuffle spreads.
CHUNK_ROWS = BLOCK_ROWS


@dataclass(frozen=True)
class Job:
    """One scoring job, fixed at launch (the model version included)."""

    input: str
    output: str
    input_format: str  # csv | jsonl
    output_format: str  # csv | jsonl
    header: str  # CSV: yes, no, or auto (each file's first record decides)
    layout: Layout
    source: ModelSource
    classes: list[Any] | None
    probabilities: bool = False
    scores: bool = False  # an outlier detector's decision_function
    progress_seconds: float = 10.0
    max_batch_rows: int = MAX_BATCH_ROWS
    max_line_chars: int = MAX_LINE_CHARS

    @property
    def columns(self) -> list[str]:
        return output_columns(
            self.layout.keep, self.classes, self.probabilities, self.scores
        )


class Chunk(NamedTuple):
    """Consecutive records of one file, with that file's header (if any)."""

    file: str
    columns: tuple[str, ...] | None
    records: list[tuple[int, Any]]


class HeaderError(ValueError):
    """A file's header line cannot be split: none of its rows can be mapped."""


class ReadFiles(beam.DoFn):
    """Each file -> chunks of (line number, record); counts every row as read."""

    def __init__(
        self,
        input_format: str,
        header: str,
        schema: InputSchema,
        max_line_chars: int = MAX_LINE_CHARS,
    ) -> None:
        self.input_format = input_format
        self.header = header
        self.schema = schema
        self.max_line_chars = max_line_chars
        self.read = Metrics.counter(NAMESPACE, "read")

    def process(self, readable: fileio.ReadableFile) -> Any:
        path = readable.metadata.path
        with readable.open() as raw:
            lines = text_lines(text_stream(raw), self.max_line_chars)
            if self.input_format == "jsonl":
                records: Any = jsonl_records(lines)
            else:
                records = csv_records(lines, self.max_line_chars)
            columns = None
            if self.input_format == "csv" and self.header != "no":
                first = next(records, None)
                if first is None:
                    return
                if isinstance(first[1], RecordProblem):
                    raise HeaderError(f"{path}: {first[1].message} (the header)")
                if self.header == "yes" or looks_like_header(first[1], self.schema):
                    columns = header_columns(first[1])
                else:
                    # A file without the header the others have: its first row
                    # is data, judged (and counted) like the rest.
                    records = itertools.chain([first], records)
            chunk: list[tuple[int, Any]] = []
            for record in records:
                chunk.append(record)
                if len(chunk) == CHUNK_ROWS:
                    self.read.inc(len(chunk))
                    yield Chunk(path, columns, chunk)
                    chunk = []
            if chunk:
                self.read.inc(len(chunk))
                yield Chunk(path, columns, chunk)


class Validate(beam.DoFn):
    """Chunks -> (BlockKey, Table of the valid rows), and Rejections on the
    `rejected` tag."""

    def __init__(self, layout: Layout, input_format: str) -> None:
        self.layout = layout
        self.input_format = input_format
        self.rejected = Metrics.counter(NAMESPACE, "rejected")

    def process(self, chunk: Chunk) -> Any:
        rows = (
            CsvRows(self.layout, chunk.columns) if self.input_format == "csv" else None
        )
        key, block, rejected = check_records(
            chunk.file, chunk.records, self.layout, rows
        )
        for rejection in rejected:
            yield beam.pvalue.TaggedOutput(REJECTED, rejection)
        self.rejected.inc(len(rejected))
        if key.lines:
            yield key, block


class Progress:
    """Rows scored in this process, printed to stderr every `interval` seconds."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.count = 0
        self.start = 0.0
        self.last = 0.0

    def add(self, rows: int, interval: float) -> None:
        now = time.monotonic()
        with self._lock:
            if not self.count:
                self.start = self.last = now
            self.count += rows
            if interval <= 0 or now - self.last < interval:
                return
            self.last = now
            count, elapsed = self.count, now - self.start
        rate = count / elapsed if elapsed > 0 else 0.0
        print(
            f"batch: scored {count:,} rows ({rate:,.0f} rows/s)",
            file=sys.stderr,
            flush=True,
        )


PROGRESS = Progress()  # one per worker process, shared by its threads


class Emit(beam.DoFn):
    """(BlockKey, PredictionResult of its block) -> the block's output lines
    as one string, and a Rejection for each row the model refused."""

    def __init__(self, job: Job) -> None:
        self.columns = job.columns
        self.schema = job.layout.schema
        self.jsonl = job.output_format == "jsonl"
        self.interval = job.progress_seconds
        self.scored = Metrics.counter(NAMESPACE, "scored")
        self.rejected = Metrics.counter(NAMESPACE, "rejected")

    def process(self, element: tuple[BlockKey, PredictionResult]) -> Any:
        key, result = element
        version = result.model_id
        rows = []
        outcomes = zip(key.lines, key.kept, result.inference, strict=True)
        for i, (line, kept, outcome) in enumerate(outcomes):
            if isinstance(outcome, Refused):
                self.rejected.inc()
                row = row_values(result.example, i, self.schema)
                yield beam.pvalue.TaggedOutput(
                    REJECTED,
                    Rejection(key.file, line, outcome.code, outcome.message, row),
                )
                continue
            rows.append([*kept, *outcome.values, version])
        if rows:
            # One element per block: the text sink writes it, then a newline.
            if self.jsonl:
                yield "\n".join(jsonl_line(self.columns, row) for row in rows)
            else:
                yield csv_lines(rows)
            self.scored.inc(len(rows))
            PROGRESS.add(len(rows), self.interval)


def build(pipeline: beam.Pipeline, job: Job) -> None:
    """Add the job's transforms to `pipeline`."""
    chunks = (
        pipeline
        | "Match" >> fileio.MatchFiles(job.input)
        | "Open" >> fileio.ReadMatches()
        | "Read"
        >> beam.ParDo(
            ReadFiles(
                job.input_format, job.header, job.layout.schema, job.max_line_chars
            )
        )
        | "Spread" >> beam.Reshuffle()
    )
    checked = chunks | "Validate" >> beam.ParDo(
        Validate(job.layout, job.input_format)
    ).with_outputs(REJECTED, main="rows")
    handler = SkserveModelHandler(
        job.source,
        probabilities=job.probabilities,
        scores=job.scores,
        max_batch_rows=job.max_batch_rows,
    )
    emitted = (
        checked.rows
        | "Score" >> RunInference(KeyedModelHandler(handler))
        | "Emit" >> beam.ParDo(Emit(job)).with_outputs(REJECTED, main="lines")
    )
    suffix = f".{job.output_format}"
    header = csv_line(job.columns) if job.output_format == "csv" else None
    _ = emitted.lines | "WriteScored" >> beam.io.WriteToText(
        job.output, file_name_suffix=suffix, header=header, skip_if_empty=True
    )
    _ = (
        (checked[REJECTED], emitted[REJECTED])
        | "Rejected" >> beam.Flatten()
        | "AsJson" >> beam.Map(Rejection.to_json)
        | "WriteRejected"
        >> beam.io.WriteToText(
            job.output + "-errors", file_name_suffix=".jsonl", skip_if_empty=True
        )
    )


def counts(result: PipelineResult) -> dict[str, int]:
    """read, scored and rejected, summed over steps, from the job's metrics."""
    totals = dict.fromkeys(COUNTERS, 0)
    found = result.metrics().query(MetricsFilter().with_namespace(NAMESPACE))
    for counter in found["counters"]:
        name = counter.key.metric.name
        if name in totals:
            value = counter.committed
            totals[name] += counter.attempted if value is None else value
    return totals
