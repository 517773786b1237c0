"""Workers score with exactly the model version the launcher verified, via skserve."""

# The launcher resolves the version (a pinned one, else LATEST read once) and
# verifies it with fetch_model, recording the SHA-256 of the manifest bytes it
# verified. Each worker loads the same version through fetch_model behind a
# store that refuses any other manifest bytes, so a version changed or tampered
# with after launch fails the job before a pickle is opened, and no signing key
# has to travel inside the job graph.

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple, overload

import numpy as np
from apache_beam.ml.inference.base import (
    KeyedModelHandler,
    ModelHandler,
    PredictionResult,
)

from skserve.errors import BadRequest, IntegrityError
from skserve.loader import LoadedModel, fetch_model
from skserve.manifest import MANIFEST, version_key
from skserve.rows import Table
from skserve.runtimes import LoadOptions
from skserve.settings import signing_keys
from skserve.storage import Store, open_store
from skserve.storage.base import Precondition

# Rows per RunInference batch: examples are blocks of rows, batched by their row
# count; large enough that numpy and onnxruntime amortise their per-call cost,
# small enough to bound a worker's memory per batch.
MAX_BATCH_ROWS = 4_000
# By runtime, measured on the seed forest (CPU per 200,000 rows, 2 shared
# cores): onnxruntime costs the same from 1,000 to 100,000 rows a call (1.06 s);
# scikit-learn pays for each call (joblib, each tree) and costs 0.91 s in calls
# of 4,000 rows, 0.79 s of 16,000, 0.71 s of 32,000, 0.68 s of 100,000.
BATCH_ROWS = {"onnx": MAX_BATCH_ROWS, "sklearn": 32_000}
# The most rows a block (one RunInference example) holds. It is also the
# smallest batch: BatchElements emits an empty batch when the first element
# outweighs its target, so the target may never fall below one block.
BLOCK_ROWS = 1_000


class Scored(NamedTuple):
    """A prediction in the model's JSON types (as the HTTP API answers it)."""

    label: Any
    probabilities: list[float] | None
    score: float | None = None  # an outlier detector's decision_function

    @property
    def values(self) -> list[Any]:
        """The output's cells: the label, then the probabilities and the score
        that were asked for."""
        cells = [self.label, *(self.probabilities or ())]
        if self.score is not None:
            cells.append(self.score)
        return cells


class Refused(NamedTuple):
    """A row the model itself refused (e.g. a value beyond float32 for trees)."""

    code: str
    message: str


class Outcomes(Sequence[Scored | Refused]):
    """Each row's outcome in one block, kept as the runtime's arrays (a row's
    Scored or Refused is built only when asked for): labels as JSON values,
    probabilities (rows, classes) and scores as float64 (None when not asked
    for), and the rows the model refused, by index (their label is None)."""

    def __init__(
        self,
        labels: list[Any],
        probabilities: np.ndarray | None = None,
        scores: np.ndarray | None = None,
        refused: dict[int, Refused] | None = None,
    ) -> None:
        self.labels = labels
        self.probabilities = probabilities
        self.scores = scores
        self.refused = refused or {}

    @classmethod
    def of_refusal(cls, refusal: Refused) -> Outcomes:
        return cls([None], refused={0: refusal})

    @classmethod
    def concat(cls, parts: Sequence[Outcomes]) -> Outcomes:
        if len(parts) == 1:
            return parts[0]
        refused, start = {}, 0
        for part in parts:
            refused.update({start + i: r for i, r in part.refused.items()})
            start += len(part)
        return cls(
            [label for part in parts for label in part.labels],
            _stacked([p.probabilities for p in parts], [len(p) for p in parts]),
            _stacked([p.scores for p in parts], [len(p) for p in parts]),
            refused,
        )

    def rows(self, start: int, stop: int) -> Outcomes:
        return Outcomes(
            self.labels[start:stop],
            None if self.probabilities is None else self.probabilities[start:stop],
            None if self.scores is None else self.scores[start:stop],
            {i - start: r for i, r in self.refused.items() if start <= i < stop},
        )

    def __len__(self) -> int:
        return len(self.labels)

    @overload
    def __getitem__(self, index: int) -> Scored | Refused: ...
    @overload
    def __getitem__(self, index: slice) -> list[Scored | Refused]: ...
    def __getitem__(self, index: int | slice) -> Any:
        if isinstance(index, slice):
            return [self[i] for i in range(len(self))[index]]
        i = range(len(self))[index]  # IndexError beyond the rows
        if i in self.refused:
            return self.refused[i]
        probabilities = self.probabilities
        scores = self.scores
        return Scored(
            self.labels[i],
            None if probabilities is None else probabilities[i].tolist(),
            None if scores is None else scores[i].item(),
        )

    def __add__(self, other: Sequence[Scored | Refused]) -> list[Scored | Refused]:
        return [*self, *other]


def _stacked(
    parts: Sequence[np.ndarray | None], sizes: Sequence[int]
) -> np.ndarray | None:
    """Arrays of consecutive rows as one; a part without one (rows the model
    refused) is NaN."""
    shapes = [part.shape[1:] for part in parts if part is not None]
    if not shapes:
        return None
    filled = [
        np.full((size, *shapes[0]), np.nan) if part is None else part
        for part, size in zip(parts, sizes, strict=True)
    ]
    return np.concatenate(filled)


class PinnedStore(Store):
    """A read-only view of a store that checks the manifest of `version`.

    With `expected` None it records the SHA-256 of the manifest it reads (the
    launcher); otherwise it refuses manifest bytes with another digest (workers).
    """

    def __init__(self, inner: Store, version: str, expected: str | None) -> None:
        self.inner = inner
        self.uri = inner.uri
        self.manifest_key = version_key(version, MANIFEST)
        self.version = version
        self.expected = expected
        self.seen: str | None = None

    def read(self, key: str, *, max_bytes: int | None = None) -> bytes:
        data = self.inner.read(key, max_bytes=max_bytes)
        if key == self.manifest_key:
            digest = hashlib.sha256(data).hexdigest()
            if self.expected is not None and digest != self.expected:
                raise IntegrityError(
                    f"the manifest of version {self.version} changed after the job "
                    "was launched; versions are immutable, so it was tampered with "
                    "or republished: launch the job again"
                )
            self.seen = digest
        return data

    def read_token(
        self, key: str, *, max_bytes: int | None = None
    ) -> tuple[bytes, str]:
        return self.inner.read_token(key, max_bytes=max_bytes)

    def _put(self, key: str, data: bytes, when: Precondition) -> None:
        raise IntegrityError("batch scoring never writes to the model store")

    def list(self, prefix: str) -> list[str]:
        return self.inner.list(prefix)


@dataclass(frozen=True)
class ModelSource:
    """Everything a worker needs to load the launcher's version: plain strings
    and numbers, so it pickles into the job graph without secrets."""

    root: str  # <store>/<name>
    name: str
    version: str
    manifest_sha256: str
    runtime: str  # MODEL_RUNTIME: auto, sklearn or onnx
    max_model_bytes: int
    allow_version_mismatch: bool = False

    def fetch(self, keys: Sequence[str] = ()) -> LoadedModel:
        """The verified model; IntegrityError if its manifest is not the pinned one."""
        store = PinnedStore(open_store(self.root), self.version, self.manifest_sha256)
        return fetch_model(
            store,
            self.version,
            name=self.name,
            runtime=self.runtime,
            options=LoadOptions(allow_version_mismatch=self.allow_version_mismatch),
            signing_keys=keys,
            max_model_bytes=self.max_model_bytes,
        )


def verify_at_launch(
    root: str,
    name: str,
    version: str,
    *,
    runtime: str,
    max_model_bytes: int,
    allow_version_mismatch: bool,
    keys: Sequence[str],
) -> tuple[ModelSource, LoadedModel]:
    """Fetch and verify `version` once (signature included when keys are set)
    and pin the manifest bytes that passed, for the workers to load."""
    store = PinnedStore(open_store(root), version, None)
    model = fetch_model(
        store,
        version,
        name=name,
        runtime=runtime,
        options=LoadOptions(allow_version_mismatch=allow_version_mismatch),
        signing_keys=keys,
        max_model_bytes=max_model_bytes,
    )
    assert store.seen is not None  # fetch_model reads the manifest first
    source = ModelSource(
        root=root,
        name=name,
        version=version,
        manifest_sha256=store.seen,
        runtime=runtime,
        max_model_bytes=max_model_bytes,
        allow_version_mismatch=allow_version_mismatch,
    )
    return source, model


def block_rows(element: Any) -> int:
    """BatchElements' weight of an element: the rows of its block (the element
    is `(keys, block)` under KeyedModelHandler, the block alone otherwise)."""
    block = element[1] if isinstance(element, tuple) else element
    return len(block)


class SkserveModelHandler(ModelHandler[Table, PredictionResult, LoadedModel]):
    """RunInference's handler: one verified model per worker process; examples
    are blocks of validated rows (`skserve.rows.Table`s), batched by row count
    and predicted by the version's runtime (the ONNX twin when it has one and
    MODEL_RUNTIME allows it, else scikit-learn)."""

    def __init__(
        self,
        source: ModelSource,
        *,
        probabilities: bool,
        scores: bool = False,
        max_batch_rows: int = MAX_BATCH_ROWS,
    ) -> None:
        super().__init__(
            min_batch_size=BLOCK_ROWS,
            max_batch_size=max(max_batch_rows, BLOCK_ROWS),
            element_size_fn=block_rows,
        )
        self.source = source
        self.probabilities = probabilities
        self.scores = scores

    def load_model(self) -> LoadedModel:
        # A worker verifies signatures too when it has a key (on the
        # DirectRunner it shares the launcher's environment); on Dataflow the
        # pinned manifest digest carries the launcher's verification.
        return self.source.fetch(signing_keys())

    def run_inference(
        self,
        batch: Sequence[Table],
        model: LoadedModel,
        inference_args: dict[str, Any] | None = None,
    ) -> Iterable[PredictionResult]:
        """One PredictionResult per block; its inference is the block's
        Outcomes, a Scored or Refused per row."""
        outcomes = self._predict(Table.concat(batch), model)
        results, start = [], 0
        for block in batch:
            end = start + len(block)
            part = outcomes.rows(start, end) if len(batch) > 1 else outcomes
            results.append(PredictionResult(block, part, model.version))
            start = end
        return results

    def _predict(self, table: Table, model: LoadedModel) -> Outcomes:
        """Each row's outcome. When the model refuses a batch, halve it until the
        rows it refuses are alone: the others are still scored."""
        try:
            result = model.runtime.predict(
                table, probabilities=self.probabilities, scores=self.scores
            )
        except BadRequest as error:
            rows = len(table)
            if rows == 1:
                return Outcomes.of_refusal(Refused(str(error.code), error.message))
            half = rows // 2
            return Outcomes.concat(
                [
                    self._predict(table.rows(0, half), model),
                    self._predict(table.rows(half, rows), model),
                ]
            )
        return Outcomes(
            result.labels.tolist(),
            None
            if result.probabilities is None
            else np.asarray(result.probabilities, dtype=np.float64),
            None if result.scores is None else np.asarray(result.scores, np.float64),
        )

    def get_num_bytes(self, batch: Sequence[Table]) -> int:
        # The default pickles the whole batch just to measure it.
        return sum(block.numbers.nbytes + block.objects.nbytes for block in batch)

    def get_metrics_namespace(self) -> str:
        return "skserve"


class BlockKeyedHandler(KeyedModelHandler):
    """KeyedModelHandler for (BlockKey, block) examples, but for its metric of
    a batch's bytes: Beam's pickles every key of the batch to weigh it; the
    blocks' arrays are weighed here, and a block's key (a line number and the
    kept values of each row) not at all."""

    def get_num_bytes(self, batch: Sequence[tuple[Any, Table]]) -> int:
        return self._unkeyed.get_num_bytes([block for _, block in batch])
