"""Command line: `python -m train [fit] | publish | list | promote`.

Every failure is one line on stderr and a non-zero exit, never a traceback.
"""

from __future__ import annotations

import argparse
import pickle
import sys
from collections.abc import Sequence
from typing import Any

from skserve.errors import ServingError
from skserve.storage import join_uri, open_store
from train.publish import publish

DEFAULT_STORE = "model-store"
DEFAULT_NAME = "default"
COMMANDS = ("fit",)


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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m train",
        description="Fit a model and publish it to a model store. Without a command, "
        "`fit` runs.",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    fit = commands.add_parser("fit", help="fit and publish (the default command)")
    _store_args(fit)
    fit.add_argument(
        "--no-promote", action="store_true", help="publish without moving LATEST"
    )
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
    try:
        return {"fit": cmd_fit}[args.command](args)
    except ServingError as error:
        print(f"error: {error.message}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130


def _publish(args: argparse.Namespace, model: Any, facts: dict[str, Any]) -> int:
    model_uri = join_uri(args.store, args.name)
    store = open_store(model_uri)
    artifact = pickle.dumps(model, protocol=pickle.HIGHEST_PROTOCOL)
    manifest = publish(
        store,
        artifact,
        {**describe(model), **facts},
        name=args.name,
        promote=not args.no_promote,
    )
    state = "published" if args.no_promote else "published and promoted"
    print(f"{state} {args.name} version {manifest.version}")
    print(f"MODEL_URI={model_uri}")
    return 0


def describe(model: Any) -> dict[str, Any]:
    """Manifest facts introspected from a fitted estimator."""
    import numpy as np

    classes = getattr(model, "classes_", None)
    names = getattr(model, "feature_names_in_", None)
    return {
        "task": "classification" if classes is not None else "regression",
        "estimator": f"{type(model).__module__}.{type(model).__qualname__}",
        "n_features": int(model.n_features_in_),
        "feature_names": None if names is None else [str(n) for n in names],
        "classes": None if classes is None else np.asarray(classes).tolist(),
    }


def cmd_fit(args: argparse.Namespace) -> int:
    from train.seed import fit_seed

    model, facts = fit_seed()
    return _publish(args, model, facts)
