"""The `python -m train` commands: fit, publish, list and promote.

Each returns an exit code; failures raise ServingError for `cli.main` to print.
"""

from __future__ import annotations

import argparse
import pickle
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from skserve.errors import ObjectNotFound
from skserve.loader import LATEST_MAX_BYTES, parse_pointer
from skserve.manifest import LATEST, MANIFEST, MAX_MANIFEST_BYTES, Manifest
from skserve.rows import Table
from skserve.schema import InputSchema
from skserve.settings import signing_keys
from skserve.storage import Store, join_uri, open_store
from train.artifact import describe, load_estimator
from train.publish import promote_version, publish
from train.schema import describe_schema

if TYPE_CHECKING:
    from train.twin import Twin


def _model_store(args: argparse.Namespace) -> tuple[str, Store]:
    model_uri = join_uri(args.store, args.name)
    return model_uri, open_store(model_uri)


def _schema(
    args: argparse.Namespace,
    model: Any,
    frame: Any,
    names: list[str] | None = None,
) -> tuple[InputSchema, dict[str, Any]]:
    """The model's input schema (inferred from it and `frame`, corrected by
    --schema, proved on the model), and its manifest facts."""
    from train.schema import (
        correct,
        example_row,
        infer_schema,
        read_schema_file,
        settle,
    )

    schema = infer_schema(model, frame, names)
    if args.schema:
        corrections = read_schema_file(args.schema)
        corrected = correct(schema, corrections, args.schema)
        schema = settle(model, corrected, frame, fixed_format="format" in corrections)
    facts = {"input_schema": schema.to_json(), "example": example_row(schema, frame)}
    return schema, facts


def _twin(
    args: argparse.Namespace,
    model: Any,
    reference: np.ndarray | Table | None,
    source: str,
    schema: InputSchema,
) -> Twin | None:
    """The model's verified ONNX twin, or None with one line saying why not."""
    from train.twin import NoTwin, build_twin

    if args.no_twin:
        print("no ONNX twin: --no-twin")
        return None
    twin = build_twin(model, reference, seed=args.seed, schema=schema)
    if isinstance(twin, NoTwin):
        print(f"no ONNX twin: {twin.reason}")
        print(
            "note: a slim deployment (Lambda's default) cannot serve this version; "
            "deploy the full profile to serve it"
        )
        return None
    twin.facts["parity"]["reference"] = source
    return twin


def _publish(
    args: argparse.Namespace,
    artifact: bytes,
    facts: dict[str, Any],
    twin: Twin | None,
) -> int:
    model_uri, store = _model_store(args)
    keys = signing_keys()
    manifest = publish(
        store,
        artifact,
        facts,
        name=args.name,
        promote=not args.no_promote,
        signing_keys=keys,
        twin=twin,
    )
    state = "published" if args.no_promote else "published and promoted"
    if keys:
        state = f"signed, {state}"
    print(f"{state} {args.name} version {manifest.version}")
    if twin is not None:
        parity = twin.facts["parity"]
        print(
            f"with ONNX twin {twin.facts['file']}: parity on "
            f"{parity['rows_checked']} rows, max difference "
            f"{parity['max_abs_difference']:.1e}"
        )
    if manifest.data.get("metrics"):
        print(
            "metrics: "
            + ", ".join(f"{k}={v}" for k, v in manifest.data["metrics"].items())
        )
    for line in describe_schema(manifest.input_schema):
        print(line)
    print(f"MODEL_URI={model_uri}")
    return 0


def cmd_fit(args: argparse.Namespace) -> int:
    """Fit the tutorial's model, a CSV or a bundled dataset, then publish it."""
    from train.data import DataError, load_bundled, load_csv
    from train.estimators import fit_holdout, infer_task

    if args.data is None and args.dataset is None:
        if args.target or args.task or args.model != "random-forest":
            raise DataError("--target, --task and --model need --data or --dataset")
        from sklearn.datasets import make_classification

        from train.seed import SEED_DATA, fit_seed

        model, facts = fit_seed()
        X = make_classification(**SEED_DATA)[0]
        # The rows it was fitted on, under the names the function gives them:
        # the manifest's example row (the demo page's first form) is typical.
        frame = _frame(X, [f"x{j}" for j in range(X.shape[1])])
        schema, typed = _schema(args, model, frame)
        twin = _twin(args, model, X, "training rows", schema)
        return _publish(
            args,
            pickle.dumps(model, protocol=5),
            {**describe(model), **facts, **typed},
            twin,
        )
    if args.data is not None and not args.target:
        raise DataError("--data needs --target COLUMN (the column to predict)")
    if args.dataset is not None and args.target:
        raise DataError("--target is for --data; a --dataset has its own target")
    data = load_csv(args.data, args.target) if args.data else load_bundled(args.dataset)
    task = args.task or infer_task(data.y)
    try:
        model, metrics, training, rows = fit_holdout(data, args.model, task, args.seed)
    except ValueError as exc:  # scikit-learn refusing the data (e.g. float32 range)
        reason = str(exc).splitlines()[0][:200]
        raise DataError(f"cannot fit {args.model} on {data.source}: {reason}") from None
    frame = rows if data.tabular else _frame(rows, data.feature_names)
    schema, typed = _schema(args, model, frame, data.feature_names)
    facts = {
        **describe(model),
        "feature_names": data.feature_names,
        "target": data.target,
        "metrics": metrics,
        "training": training,
        **typed,
    }
    twin = _twin(args, model, _reference(frame, schema), "training rows", schema)
    return _publish(args, pickle.dumps(model, protocol=5), facts, twin)


def cmd_publish(args: argparse.Namespace) -> int:
    """Publish a fitted estimator someone else pickled, byte for byte."""
    from train.data import load_frame
    from train.twin import model_reference

    model, data = load_estimator(args.file)
    described = describe(model)
    frame = None
    if args.holdout:
        frame = load_frame(
            args.holdout, described["feature_names"], described["n_features"]
        )
    schema, typed = _schema(args, model, frame)
    if frame is not None:
        reference = _reference(frame, schema)
        source = f"holdout file:{Path(args.holdout).name}"
    else:
        reference = model_reference(model, described["n_features"], seed=args.seed)
        source = "rows made from the model's own scales and splits (no --holdout)"
    twin = _twin(args, model, reference, source, schema)
    facts = {
        **described,
        "target": None,
        "metrics": {},
        # The file's name only: the publisher's own paths are not the world's.
        "training": {"source": f"file:{Path(args.file).name}", "rows": None},
        **typed,
    }
    return _publish(args, data, facts, twin)


def _frame(X: np.ndarray, names: list[str]) -> Any:
    """A float array's rows as a DataFrame with the CSV's column names."""
    import pandas as pd

    return pd.DataFrame(X, columns=names)


def _reference(frame: Any, schema: InputSchema) -> Table | None:
    """The data's rows the schema accepts, typed as the function would hold
    them: the twin's parity gate starts from them."""
    from train.schema import accepted_rows, to_table

    rows = accepted_rows(frame, schema)
    return to_table(rows, schema) if rows else None


def cmd_list(args: argparse.Namespace) -> int:
    """Versions newest first, with metrics; `*` marks the one LATEST names."""
    model_uri, store = _model_store(args)
    try:
        latest = parse_pointer(store.read(LATEST, max_bytes=LATEST_MAX_BYTES)).version
    except ObjectNotFound:
        latest = None
    versions = sorted(
        {
            key.split("/")[1]
            for key in store.list("versions/")
            if key.endswith(MANIFEST)
        },
        reverse=True,
    )
    if not versions:
        print(f"error: no versions published at {model_uri}", file=sys.stderr)
        return 1
    for version in versions:
        raw = store.read(f"versions/{version}/{MANIFEST}", max_bytes=MAX_MANIFEST_BYTES)
        manifest = Manifest.from_bytes(raw)
        metrics = manifest.data.get("metrics") or {}
        mark = "*" if version == latest else " "
        shown = " ".join(f"{k}={v}" for k, v in metrics.items()) or "-"
        estimator = str(manifest.data.get("estimator", "?")).rsplit(".", 1)[-1]
        created = manifest.data.get("created_at", "?")
        print(f"{mark} {version}  {created}  {estimator}  {shown}")
    print(f"(* = LATEST at {model_uri})")
    return 0


def cmd_promote(args: argparse.Namespace) -> int:
    """Point LATEST at a version: a rollout, or a rollback to an older one."""
    model_uri, store = _model_store(args)
    try:
        previous = promote_version(store, args.version, signing_keys=signing_keys())
    except ObjectNotFound:
        raise ObjectNotFound(
            f"version {args.version} does not exist at {model_uri}; "
            "see `python -m train list`"
        ) from None
    print(f"promoted {args.name} version {args.version} (was {previous or 'none'})")
    print(f"MODEL_URI={model_uri}")
    return 0
