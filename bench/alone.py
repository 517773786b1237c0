"""onnxruntime alone: a published twin loaded with the function's own steps and
run in-process on the batch's float64 matrix, in a fresh process of its own.

It tells how much of a 1,000-row request the model itself takes (the rest is
HTTP, JSON, checking the rows and writing the answer), and what loading a twin
costs piece by piece (imports, reading and verifying the files, the check for
outside data, the session and the memory it keeps).
"""

from __future__ import annotations

import multiprocessing
import time
from pathlib import Path
from typing import Any

from bench.common import TRAIN_TIMEOUT_SECONDS, Alone, BenchError


def measure(uri: str, rows: list[Any], expected: list[Any], repeats: int) -> Alone:
    """`_alone` in a fresh spawned process (nothing imported, nothing cached);
    BenchError unless the session gave `expected`, the model's own labels."""
    context = multiprocessing.get_context("spawn")
    with context.Pool(1, maxtasksperchild=1) as pool:
        try:
            raw, labels = pool.apply_async(_alone, (uri, rows, repeats)).get(
                TRAIN_TIMEOUT_SECONDS
            )
        except multiprocessing.TimeoutError:
            raise BenchError(
                f"onnxruntime alone on {uri} took over {TRAIN_TIMEOUT_SECONDS}s"
            ) from None
    if labels != expected:
        wrong = sum(a != b for a, b in zip(labels, expected, strict=False))
        raise BenchError(
            f"onnxruntime alone on {uri} gave {wrong} of {len(expected)} labels "
            "unlike the model's own: it did not run on the rows the server got"
        )
    return Alone(**raw)


def _pss_mib() -> float | None:
    """This process's PSS, or None where /proc does not tell it."""
    try:
        lines = Path("/proc/self/smaps_rollup").read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        if line.startswith("Pss:"):
            return int(line.split()[1]) / 1024
    return None


def _alone(uri: str, rows: list[Any], repeats: int) -> tuple[dict[str, Any], list[Any]]:
    """Load the latest twin under `uri` as the function does, then time
    `repeats` runs of its labels output on `rows` (after one untimed run, as the
    HTTP batches have): (the figures, the labels it gave)."""
    began = time.perf_counter()
    import onnxruntime

    from skserve.loader import read_latest
    from skserve.manifest import MANIFEST, Manifest, version_key
    from skserve.rows import to_table
    from skserve.runtimes.onnx import (
        code_lookups,
        encode,
        release_freed_memory,
        session_options,
    )
    from skserve.runtimes.onnx_bytes import external_reference
    from skserve.storage import open_store

    imported = time.perf_counter()
    store = open_store(uri)
    version = read_latest(store)
    manifest = Manifest.from_bytes(store.read(version_key(version, MANIFEST)))
    data = store.read(version_key(version, "model.onnx"))
    manifest.verify("model.onnx", data)
    read = time.perf_counter()
    if external_reference(data) is not None:
        raise ValueError(f"the twin under {uri} refers to outside data")
    checked = time.perf_counter()
    before = _pss_mib()
    session = onnxruntime.InferenceSession(
        data, sess_options=session_options(), providers=["CPUExecutionProvider"]
    )
    release_freed_memory()  # as the function does once its session is built
    built = time.perf_counter()
    after = _pss_mib()
    twin = manifest.twin or {}
    input_name = twin["input"]["name"]
    (labels,) = [o["name"] for o in twin["outputs"] if o["role"] == "labels"]
    schema = manifest.input_schema
    matrix = encode(
        to_table(rows, single=False, schema=schema), schema, code_lookups(schema)
    )
    (given,) = session.run([labels], {input_name: matrix})
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        session.run([labels], {input_name: matrix})
        times.append((time.perf_counter() - start) * 1000)
    figures = {
        "import_ms": (imported - began) * 1000,
        "read_ms": (read - imported) * 1000,
        "walk_ms": (checked - read) * 1000,
        "session_ms": (built - checked) * 1000,
        "session_pss_mib": None if None in (before, after) else after - before,
        "run_ms": times,
        "rows_per_s": len(rows) * repeats / (sum(times) / 1000),
    }
    return figures, given.reshape(-1).tolist()
