"""The ONNX runtime answers as scikit-learn would, and never imports scikit-learn."""

# It serves a version's verified twin (model.onnx) with onnxruntime. The trainer
# publishes a twin only after its parity gate (train/twin/) found it gives
# scikit-learn's labels on every row and its numbers within 1e-6. The twin takes
# one float64 matrix: numbers as they are (NaN: missing), and each string or
# category as its index among the schema's categories (-1: one the model has
# not seen, NaN: missing), so typed rows need neither pandas nor scikit-learn.

from __future__ import annotations

import ctypes
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from skserve.errors import BadRequest, Code, IncompatibleModel
from skserve.logs import clip, log
from skserve.manifest import Manifest
from skserve.runtimes.base import (
    LoadOptions,
    Prediction,
    check_answer,
    known_classes,
)
from skserve.runtimes.onnx_bytes import MalformedModel, external_reference

if TYPE_CHECKING:
    import onnxruntime

    from skserve.rows import Table
    from skserve.schema import InputSchema

_ROLES = ("labels", "probabilities", "values", "scores")


class OnnxRuntime:
    """One version's twin in an onnxruntime session (thread-safe: `run` is)."""

    name: ClassVar[str] = "onnx"
    artifact: ClassVar[str] = "model.onnx"
    requires: ClassVar[tuple[str, ...]] = ("onnxruntime",)

    def __init__(
        self,
        manifest: Manifest,
        session: onnxruntime.InferenceSession,
        *,
        input_name: str,
        outputs: dict[str, str],
        classes: list[Any] | None,
        max_abs: float | None,
    ) -> None:
        self.manifest = manifest
        self.schema = manifest.input_schema
        self._session = session
        self._input = input_name
        self._outputs = outputs  # role -> ONNX output name
        self._classes = classes
        self._max_abs = max_abs
        self._codes = code_lookups(self.schema)
        self._known = known_classes(manifest) if classes is not None else None
        self._integer_labels = manifest.task == "clustering"
        self._wanted = [outputs["labels" if "labels" in outputs else "values"]]
        if classes is not None:
            # Labels are mapped to the manifest's classes, so they keep its JSON
            # types whatever the twin encodes them as (e.g. int64 for floats).
            self._typed = np.asarray(classes)
            self._order = np.argsort(self._typed, kind="stable")
            self._sorted = self._typed[self._order]

    @classmethod
    def load(
        cls, manifest: Manifest, files: Mapping[str, bytes], options: LoadOptions
    ) -> OnnxRuntime:
        """Build the session from `files["model.onnx"]` (already checked against
        the manifest); IncompatibleModel if the twin is absent or unusable."""
        version = manifest.version
        twin = manifest.data.get("twin")
        if not isinstance(twin, dict):
            raise IncompatibleModel(
                f"model {version} has no ONNX twin (its manifest has no twin facts); "
                "serve it with MODEL_RUNTIME=sklearn or republish it with a twin"
            )
        data = files.get(cls.artifact)
        if data is None:
            raise IncompatibleModel(f"model {version}: {cls.artifact} was not loaded")
        input_name, outputs, max_abs, encoding = _interface(twin, version)
        schema = manifest.input_schema
        if not schema.all_numeric and (
            encoding != "codes"
            or any(
                schema.columns[j].categories is None for j in schema.object_positions
            )
        ):
            raise IncompatibleModel(
                f"model {version}: its twin cannot take its string columns (they "
                "need known categories and a twin that takes their codes)"
            )
        classes = manifest.data.get("classes")
        if manifest.task == "classification":
            if not isinstance(classes, list) or not classes or "labels" not in outputs:
                raise IncompatibleModel(
                    f"model {version}: a classifier's twin needs the manifest's "
                    "classes and a labels output"
                )
        elif manifest.task == "clustering":
            if "labels" not in outputs:
                raise IncompatibleModel(f"model {version}: its twin has no labels")
            classes = None
        elif "values" not in outputs:
            raise IncompatibleModel(f"model {version}: its twin has no values output")
        else:
            classes = None
        _refuse_external_data(data, version)
        session = _session(data, version)
        _check_session(session, input_name, outputs, manifest)
        return cls(
            manifest,
            session,
            input_name=input_name,
            outputs=outputs,
            classes=classes,
            max_abs=max_abs,
        )

    @property
    def gives_probabilities(self) -> bool:
        return "probabilities" in self._outputs

    @property
    def gives_scores(self) -> bool:
        return False

    def predict(
        self, table: Table, *, probabilities: bool = False, scores: bool = False
    ) -> Prediction:
        """Predict for rows of numeric features, as scikit-learn would."""
        if probabilities and not self.gives_probabilities:
            raise BadRequest(
                "this model does not give probabilities "
                f'(task: {self.manifest.task}); remove "probabilities"',
                code=Code.PROBABILITIES_UNSUPPORTED,
            )
        if scores:
            raise BadRequest(
                "only outlier detectors give scores "
                f'(task: {self.manifest.task}); remove "scores"',
                code=Code.SCORES_UNSUPPORTED,
            )
        matrix = encode(table, self.schema, self._codes)
        if (
            self._max_abs is not None
            and matrix.size
            # fmax: NaN (a missing value) must not hide a huge one beside it.
            and (np.fmax.reduce(np.abs(matrix), axis=None) > self._max_abs)
        ):
            # scikit-learn's trees cast to float32 and refuse such values.
            raise BadRequest(
                "the model cannot use these values: Input X contains infinity or "
                "a value too large for dtype('float32').",
                code=Code.INVALID_VALUE,
            )
        wanted = self._wanted + (
            [self._outputs["probabilities"]] if probabilities else []
        )
        results = self._session.run(wanted, {self._input: matrix})
        proba = None
        if probabilities:
            proba = np.asarray(results[1], dtype=np.float64)
            if proba.shape != (len(matrix), len(self._classes or ())):
                raise IncompatibleModel(
                    f"model {self.manifest.version}: its twin gave probabilities "
                    f"of shape {proba.shape}"
                )
        if self._integer_labels:  # cluster indices are integers, as scikit-learn's
            labels = np.asarray(results[0]).reshape(-1).astype(np.int64)
        elif self._classes is None:
            labels = np.asarray(results[0], dtype=np.float64).reshape(-1)
        else:
            labels = self._as_classes(np.asarray(results[0]).reshape(-1))
        for output in (labels, proba):
            if (
                output is not None
                and output.dtype.kind == "f"
                and not np.isfinite(output).all()
            ):
                raise BadRequest(
                    "the model's output for these values is not a finite "
                    "number; check their magnitude",
                    code=Code.INVALID_VALUE,
                )
        prediction = Prediction(
            labels=labels,
            probabilities=proba,
            classes=list(self._classes) if probabilities and self._classes else None,
        )
        return check_answer(prediction, len(table), self._known, self.manifest.version)

    def _as_classes(self, raw: np.ndarray) -> np.ndarray:
        """The manifest's class for each label the twin gave (by equality)."""
        if raw.dtype == object:  # onnxruntime returns string tensors as objects
            raw = raw.astype(str)
        if raw.dtype.kind == self._typed.dtype.kind and raw.dtype.kind in "iU":
            # Integer and string labels are the class values themselves (the gate
            # checked them on every row); mapping would cost more than the model.
            return raw
        try:
            position = np.searchsorted(self._sorted, raw)
            index = self._order[position.clip(0, len(self._sorted) - 1)]
            known = self._typed[index] == raw
        except TypeError:  # e.g. integer labels against string classes
            known, index = np.zeros(len(raw), dtype=bool), None
        if index is None or not np.all(known):
            raise IncompatibleModel(
                f"model {self.manifest.version}: its twin predicted a label that is "
                "not one of the manifest's classes; refusing its answers"
            )
        return self._typed[index]


def code_lookups(schema: InputSchema) -> dict[int, dict[Any, int]]:
    """Per string or category column (by position): category -> its index."""
    lookups = {}
    for position in schema.object_positions:
        categories = schema.columns[position].categories or ()
        lookups[position] = {value: index for index, value in enumerate(categories)}
    return lookups


def encode(
    table: Table, schema: InputSchema, lookups: dict[int, dict[Any, int]]
) -> np.ndarray:
    """The twin's input: one float64 matrix in the schema's column order, each
    string or category as its index among the column's categories (-1: unseen,
    NaN: missing)."""
    if schema.all_numeric:
        return np.ascontiguousarray(table.numbers, dtype=np.float64)
    matrix = np.empty((len(table), len(schema.columns)), dtype=np.float64)
    matrix[:, list(schema.numeric_positions)] = table.numbers
    for k, position in enumerate(schema.object_positions):
        lookup = lookups[position]
        matrix[:, position] = [
            np.nan if value is None else lookup.get(value, -1)
            for value in table.objects[:, k]
        ]
    return matrix


def session_options() -> onnxruntime.SessionOptions:
    """Options for serving: see the comment inside for the measurements."""
    import onnxruntime

    options = onnxruntime.SessionOptions()
    # gunicorn already runs THREADS request threads per instance, so each call
    # gets one thread. Seed forest twin, 2 shared (busy) cores, onnxruntime 1.32,
    # session.run, quietest of four runs (scikit-learn: 6.9 ms a row, 116k rows/s):
    #   intra_op 1, no spinning: one row p50 17 us (p99 48), 1000 rows 126k rows/s,
    #                            8 request threads: 35k one-row calls/s
    #   default (2), no spinning: p50 29 us (p99 325), 70k rows/s, 20k calls/s
    #   default, spinning:        p50 19 us (p99 187), 41k rows/s, 14k calls/s
    # Spinning also burns the CPU a serverless instance is billed for, and one
    # thread sums each row's trees in the order the trainer's gate checked.
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.execution_mode = onnxruntime.ExecutionMode.ORT_SEQUENTIAL
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.add_session_config_entry("session.inter_op.allow_spinning", "0")
    return options


def _refuse_external_data(data: bytes, version: str) -> None:
    """IncompatibleModel if the twin refers to data outside its own bytes."""
    try:
        problem = external_reference(data)
    except MalformedModel as exc:
        problem = f"its protobuf encoding is unreadable ({exc})"
    if problem:
        log("ERROR", f"twin of model {version} refused: {problem}")
        raise IncompatibleModel(
            f"the ONNX twin of model {version} refers to data outside its own "
            "bytes; refusing to load it"
        )


def _session(data: bytes, version: str) -> onnxruntime.InferenceSession:
    try:
        import onnxruntime
    except ImportError:
        raise IncompatibleModel(
            f"model {version} has an ONNX twin but onnxruntime is not installed; "
            "add it to requirements.txt or set MODEL_RUNTIME=sklearn"
        ) from None
    try:
        session = onnxruntime.InferenceSession(
            data, sess_options=session_options(), providers=["CPUExecutionProvider"]
        )
    except Exception as exc:  # onnxruntime's errors share no public base class
        log("ERROR", f"cannot load the ONNX twin of model {version}: {exc!r}")
        raise IncompatibleModel(
            f"cannot load the ONNX twin of model {version}: {type(exc).__name__} "
            f"(onnxruntime {onnxruntime.__version__})"
        ) from None
    finally:
        release_freed_memory()
    return session


def release_freed_memory() -> bool:
    """Hand the heap memory freed so far back to the system; False where the C
    library cannot (anything but glibc).

    Building a tree ensemble's session allocates about three times what the
    session keeps (the graph's attributes are copied to vectors, converted to
    an older layout, then to nodes, through a node-id hash map) and frees the
    rest; glibc keeps those freed pages mapped, in the arena of the request
    thread that built the session. Measured on the bench's 1,000-tree forest
    twin (onnxruntime 1.32): the session kept 47.3 MiB of PSS, 15.0 MiB after
    malloc_trim(0), which took 2.5-7 ms. Serverless memory is billed and
    capped at its peak, and the pages would otherwise wait for reuse.
    """
    try:
        trim = ctypes.CDLL(None).malloc_trim  # this process's own C library
    except (OSError, AttributeError):  # musl, macOS: no malloc_trim
        return False
    trim(0)
    return True


def _interface(
    twin: dict[str, Any], version: str
) -> tuple[str, dict[str, str], float | None, str | None]:
    """The input name, role -> output name, the input's magnitude limit, and
    how strings are encoded ("codes", or None: the twin takes numbers only)."""
    try:
        declared = twin["input"]
        input_name = str(declared["name"])
        if declared.get("dtype") != "float64":
            raise ValueError("input dtype is not float64")
        outputs = {str(o["role"]): str(o["name"]) for o in twin["outputs"]}
        max_abs = declared.get("max_abs")
        max_abs = None if max_abs is None else float(max_abs)
        encoding = declared.get("encoding")
        if encoding not in (None, "codes"):
            raise ValueError("unknown input encoding")
    except (KeyError, TypeError, ValueError) as exc:
        # What the manifest holds goes to the log only, cut short.
        log("ERROR", f"twin facts of model {version}: {clip(repr(exc), 200)}")
        raise IncompatibleModel(
            f"model {version}: its manifest's twin facts are malformed"
        ) from None
    unknown = set(outputs) - set(_ROLES)
    if unknown:
        log("ERROR", f"twin of {version}: roles {clip(repr(sorted(unknown)), 200)}")
        raise IncompatibleModel(f"model {version}: unknown twin output roles")
    return input_name, outputs, max_abs, encoding


def _check_session(
    session: onnxruntime.InferenceSession,
    input_name: str,
    outputs: dict[str, str],
    manifest: Manifest,
) -> None:
    """The session takes what the manifest says and gives the outputs it names."""
    inputs = {i.name: i for i in session.get_inputs()}
    declared = inputs.get(input_name)
    problem = None
    if len(inputs) != 1 or declared is None or declared.type != "tensor(double)":
        # Names come from the manifest: not echoed to clients.
        log("ERROR", f"twin of {manifest.version}: input {clip(input_name, 100)!r}")
        problem = "its input is not one float64 matrix named as its facts say"
    elif list(declared.shape)[1:] != [manifest.n_features]:
        problem = (
            f"its input shape {declared.shape} does not take "
            f"{manifest.n_features} features"
        )
    else:
        missing = set(outputs.values()) - {o.name for o in session.get_outputs()}
        if missing:
            log("ERROR", f"twin lacks {clip(repr(sorted(missing)), 200)}")
            problem = "it lacks outputs its facts name"
    if problem:
        raise IncompatibleModel(
            f"the ONNX twin of model {manifest.version} does not match its "
            f"manifest: {problem}"
        )
