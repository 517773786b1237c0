"""Command line: `python -m train [fit] | publish | list | promote`.

Every failure is one line on stderr and a non-zero exit, never a traceback.
"""

from __future__ import annotations

import argparse
import os
import pickle
import sys
from collections.abc import Sequence
from typing import Any, NoReturn

from skserve.errors import ObjectNotFound, ServingError
from skserve.manifest import LATEST, MANIFEST, Manifest
from skserve.settings import signing_keys
from skserve.storage import Store, join_uri, open_store
from train.artifact import describe, load_estimator
from train.data import DATASETS
from train.estimators import MODEL_KINDS, TASKS
from train.publish import promote_version, publish

DEFAULT_STORE = "model-store"
DEFAULT_NAME = "default"
COMMANDS = ("fit", "publish", "list", "promote")


def _store_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--store",
        default=DEFAULT_STORE,
        help="gs://bucket/prefix, s3://bucket/prefix, file:///path or a folder "
        f"(default: {DEFAULT_STORE})",
    )
    parser.add_argument(
        "--name", default=DEFAULT_NAME, help=f"model name (default: {DEFAULT_NAME})"
    )


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line like every other error."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="python -m train",
        description="Fit, publish, list and promote models in a model store. "
        "Without a command, `fit` runs; without data, it fits the tutorial's model.",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    fit = commands.add_parser("fit", help="fit and publish (the default command)")
    source = fit.add_mutually_exclusive_group()
    source.add_argument("--data", metavar="FILE.csv", help="CSV with a header row")
    source.add_argument("--dataset", choices=DATASETS, help="a bundled demo dataset")
    fit.add_argument("--target", help="the CSV column to predict (with --data)")
    fit.add_argument(
        "--model", default="random-forest", choices=MODEL_KINDS, help="model kind"
    )
    fit.add_argument("--task", choices=TASKS, help="force the task (default: inferred)")
    fit.add_argument("--seed", type=int, default=42, help="split and model seed")
    for sub in (fit, commands.add_parser("publish", help="publish a pickled model")):
        _store_args(sub)
        sub.add_argument(
            "--no-promote", action="store_true", help="publish without moving LATEST"
        )
    commands.choices["publish"].add_argument("file", metavar="FILE.pkl")
    _store_args(commands.add_parser("list", help="versions, newest first"))
    promote = commands.add_parser("promote", help="move LATEST (also rollback)")
    promote.add_argument("version")
    _store_args(promote)
    return parser


def _normalise(argv: list[str]) -> list[str]:
    """`python -m train --store X` means `python -m train fit --store X`."""
    if not argv or argv[0] not in (*COMMANDS, "-h", "--help"):
        return ["fit", *argv]
    return argv


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(
        _normalise(list(sys.argv[1:] if argv is None else argv))
    )
    handlers = {"fit": cmd_fit, "publish": cmd_publish, "list": cmd_list}
    try:
        return {**handlers, "promote": cmd_promote}[args.command](args)
    except ServingError as error:
        print(f"error: {' '.join(error.message.split())}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # e.g. `python -m train list | head`
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


def _model_store(args: argparse.Namespace) -> tuple[str, Store]:
    model_uri = join_uri(args.store, args.name)
    return model_uri, open_store(model_uri)


def _publish(args: argparse.Namespace, artifact: bytes, facts: dict[str, Any]) -> int:
    model_uri, store = _model_store(args)
    keys = signing_keys()
    manifest = publish(
        store,
        artifact,
        facts,
        name=args.name,
        promote=not args.no_promote,
        signing_keys=keys,
    )
    state = "published" if args.no_promote else "published and promoted"
    if keys:
        state = f"signed, {state}"
    print(f"{state} {args.name} version {manifest.version}")
    if manifest.data.get("metrics"):
        print(
            "metrics: "
            + ", ".join(f"{k}={v}" for k, v in manifest.data["metrics"].items())
        )
    print(f"MODEL_URI={model_uri}")
    return 0


def cmd_fit(args: argparse.Namespace) -> int:
    from train.data import DataError, load_bundled, load_csv
    from train.estimators import fit_holdout, infer_task

    if args.data is None and args.dataset is None:
        if args.target or args.task or args.model != "random-forest":
            raise DataError("--target, --task and --model need --data or --dataset")
        from train.seed import fit_seed

        model, facts = fit_seed()
        return _publish(
            args, pickle.dumps(model, protocol=5), {**describe(model), **facts}
        )
    if args.data is not None and not args.target:
        raise DataError("--data needs --target COLUMN (the column to predict)")
    if args.dataset is not None and args.target:
        raise DataError("--target is for --data; a --dataset has its own target")
    data = load_csv(args.data, args.target) if args.data else load_bundled(args.dataset)
    task = args.task or infer_task(data.y)
    model, metrics, training = fit_holdout(data, args.model, task, args.seed)
    facts = {
        **describe(model),
        "feature_names": data.feature_names,
        "target": data.target,
        "metrics": metrics,
        "training": training,
    }
    return _publish(args, pickle.dumps(model, protocol=5), facts)


def cmd_publish(args: argparse.Namespace) -> int:
    model, data = load_estimator(args.file)
    facts = {
        **describe(model),
        "target": None,
        "metrics": {},
        "training": {"source": f"file:{args.file}", "rows": None},
    }
    return _publish(args, data, facts)


def cmd_list(args: argparse.Namespace) -> int:
    model_uri, store = _model_store(args)
    try:
        latest = store.read(LATEST).decode().strip()
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
        manifest = Manifest.from_bytes(store.read(f"versions/{version}/{MANIFEST}"))
        metrics = manifest.data.get("metrics") or {}
        mark = "*" if version == latest else " "
        shown = " ".join(f"{k}={v}" for k, v in metrics.items()) or "-"
        estimator = str(manifest.data.get("estimator", "?")).rsplit(".", 1)[-1]
        created = manifest.data.get("created_at", "?")
        print(f"{mark} {version}  {created}  {estimator}  {shown}")
    print(f"(* = LATEST at {model_uri})")
    return 0


def cmd_promote(args: argparse.Namespace) -> int:
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
