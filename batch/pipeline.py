"""Each row read is counted once more, as scored or rejected, in exactly one output."""

# The job: read -> (reshuffle, on more than one worker) -> validate ->
# RunInference -> write.

from __future__ import annotations

import itertools
import sys
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import apache_beam as beam
from apache_beam.io import fileio
from apache_beam.metrics import Metrics
from apache_beam.metrics.metric import MetricsFilter
from apache_beam.ml.inference.base import PredictionResult, RunInference
from apache_beam.options.pipeline_options import (
    DirectOptions,
    PipelineOptions,
    StandardOptions,
)
from apache_beam.runners.runner import PipelineResult

from batch.handler import (
    BLOCK_ROWS,
    MAX_BATCH_ROWS,
    BlockKeyedHandler,
    ModelSource,
    Outcomes,
    SkserveModelHandler,
)
from batch.io import (
    MAX_LINE_CHARS,
    CsvItem,
    PlainLines,
    RecordProblem,
    csv_block,
    csv_items,
    csv_line,
    first_record,
    header_columns,
    jsonl_line,
    jsonl_records,
    line_runs,
    looks_like_header,
    output_columns,
    record_count,
    text_stream,
)
from batch.validate import (
    BlockKey,
    CsvRows,
    Layout,
    Rejection,
    check_lines,
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
    """Consecutive records of one file, with that file's header (if any): as
    (line number, record) pairs, or, for plain CSV lines (batch.io.PlainLines),
    as the lines themselves, numbered from `start`, to be split a block at
    once where they are validated."""

    file: str
    columns: tuple[str, ...] | None
    records: list[tuple[int, Any]]
    start: int = 0
    lines: list[str] | None = None


class HeaderError(ValueError):
    """A file's header line cannot be split: none of its rows can be mapped."""


class ReadFiles(beam.DoFn):
    """Each file -> chunks of (line number, record) or of plain lines; counts
    every row as read."""

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
            runs = line_runs(text_stream(raw), self.max_line_chars)
            if self.input_format == "jsonl":
                lines = itertools.chain.from_iterable(runs)
                yield from self._chunks(path, None, jsonl_records(lines))
                return
            items: Any = csv_items(runs, self.max_line_chars)
            columns = None
            if self.header != "no":
                first, after, whole = first_record(items)
                if first is None:
                    return
                if isinstance(first[1], RecordProblem):
                    raise HeaderError(f"{path}: {first[1].message} (the header)")
                if self.header == "yes" or looks_like_header(first[1], self.schema):
                    columns = header_columns(first[1])
                    items = after
                else:
                    # A file without the header the others have: its first row
                    # is data, judged (and counted) like the rest.
                    items = whole
            yield from self._chunks(path, columns, items)

    def _chunks(
        self, path: str, columns: tuple[str, ...] | None, items: Iterable[CsvItem]
    ) -> Iterator[Chunk]:
        """Items -> chunks of at most CHUNK_ROWS records (or lines)."""
        records: list[tuple[int, Any]] = []
        lines: list[str] = []
        start = 0  # the line number of lines[0]
        for item in items:
            if isinstance(item, PlainLines):
                if records:
                    yield self._records(path, columns, records)
                    records = []
                if not lines:
                    start = item.start
                lines.extend(item.lines)
                while len(lines) >= CHUNK_ROWS:
                    yield from self._lines(path, columns, start, lines[:CHUNK_ROWS])
                    del lines[:CHUNK_ROWS]
                    start += CHUNK_ROWS
                continue
            if lines:
                yield from self._lines(path, columns, start, lines)
                lines = []
            records.append(item)
            if len(records) == CHUNK_ROWS:
                yield self._records(path, columns, records)
                records = []
        if lines:
            yield from self._lines(path, columns, start, lines)
        if records:
            yield self._records(path, columns, records)

    def _records(
        self, path: str, columns: tuple[str, ...] | None, records: list[Any]
    ) -> Chunk:
        self.read.inc(len(records))
        return Chunk(path, columns, records)

    def _lines(
        self, path: str, columns: tuple[str, ...] | None, start: int, lines: list[str]
    ) -> Iterator[Chunk]:
        count = record_count(lines)
        if count:  # blank lines alone are no rows
            self.read.inc(count)
            yield Chunk(path, columns, [], start, lines)


class Validate(beam.DoFn):
    """Chunks -> (BlockKey, Table of the valid rows), and Rejections on the
    `rejected` tag."""

    def __init__(self, layout: Layout, input_format: str) -> None:
        self.layout = layout
        self.input_format = input_format
        self.rejected = Metrics.counter(NAMESPACE, "rejected")

    def process(self, chunk: Chunk) -> Any:
        if chunk.lines is not None:
            rows = CsvRows(self.layout, chunk.columns)
            key, block, rejected = check_lines(
                chunk.file, chunk.start, chunk.lines, self.layout, rows
            )
        else:
            parser = (
                CsvRows(self.layout, chunk.columns)
                if self.input_format == "csv"
                else None
            )
            key, block, rejected = check_records(
                chunk.file, chunk.records, self.layout, parser
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
        self.keep = len(job.layout.keep)
        self.schema = job.layout.schema
        self.jsonl = job.output_format == "jsonl"
        self.interval = job.progress_seconds
        self.scored = Metrics.counter(NAMESPACE, "scored")
        self.rejected = Metrics.counter(NAMESPACE, "rejected")

    def process(self, element: tuple[BlockKey, PredictionResult]) -> Any:
        key, result = element
        outcomes: Outcomes = result.inference
        if len(outcomes) != len(key.lines):
            raise ValueError(
                f"{len(outcomes)} outcomes for the {len(key.lines)} rows of a block"
            )
        kept = key.kept
        if outcomes.refused:
            for i, outcome in sorted(outcomes.refused.items()):
                self.rejected.inc()
                row = row_values(result.example, i, self.schema)
                yield beam.pvalue.TaggedOutput(
                    REJECTED,
                    Rejection(
                        key.file, key.lines[i], outcome.code, outcome.message, row
                    ),
                )
            scored = [i for i in range(len(outcomes)) if i not in outcomes.refused]
            kept = [kept[i] for i in scored]
            outcomes = _taken(outcomes, scored)
        if not kept:
            return
        # The output's columns: kept keys, the label, each class's probability,
        # the score, then the version (the same in every row).
        columns: list[Sequence[Any]] = [*zip(*kept, strict=True)] if self.keep else []
        columns.append(outcomes.labels)
        if outcomes.probabilities is not None:
            columns.extend(outcomes.probabilities.T.tolist())
        if outcomes.scores is not None:
            columns.append(outcomes.scores.tolist())
        # One element per block: the text sink writes it, then a newline.
        if self.jsonl:
            rows = zip(*columns, itertools.repeat(result.model_id))
            yield "\n".join(jsonl_line(self.columns, row) for row in rows)
        else:
            yield csv_block(columns, last=result.model_id)
        self.scored.inc(len(kept))
        PROGRESS.add(len(kept), self.interval)


def _taken(outcomes: Outcomes, rows: list[int]) -> Outcomes:
    """The outcomes of `rows` (none refused)."""
    probabilities, scores = outcomes.probabilities, outcomes.scores
    return Outcomes(
        [outcomes.labels[i] for i in rows],
        None if probabilities is None else probabilities[rows],
        None if scores is None else scores[rows],
    )


def spreads(options: PipelineOptions) -> bool:
    """Whether the job may run on more than one worker: anywhere but the
    DirectRunner with one worker (its default here)."""
    runner = options.view_as(StandardOptions).runner
    name = (
        runner if runner is None or isinstance(runner, str) else type(runner).__name__
    )
    local = (name or "DirectRunner").lower().removesuffix("runner") in _ONE_PROCESS
    return not (local and options.view_as(DirectOptions).direct_num_workers == 1)


# The runners that run a job in this process (Beam's names, case aside).
_ONE_PROCESS = ("direct", "bundlebaseddirect", "switchingdirect")


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
    )
    if spreads(pipeline.options):
        # One worker reads a file whole; without this its chunks would stay on
        # that worker (fused with the read) for validation, scoring and
        # writing. A chunk is its plain lines' text or its records, so the
        # shuffle moves a few strings per 1,000 rows. With one worker there is
        # nothing to spread: the steps fuse and blocks never leave memory.
        chunks = chunks | "Spread" >> beam.Reshuffle()
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
        | "Score" >> RunInference(BlockKeyedHandler(handler))
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
