"""Command line: `python -m train [fit] | publish | list | promote`.

Every failure is one line on stderr and a non-zero exit, never a traceback.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from typing import NoReturn

from skserve.errors import ServingError
from skserve.manifest import TASKS
from train.commands import cmd_fit, cmd_list, cmd_promote, cmd_publish
from train.data import DATASETS
from train.estimators import MODEL_KINDS

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


def _seed(text: str) -> int:
    """A seed scikit-learn accepts: 0 to 2**32 - 1."""
    try:
        value = int(text)
    except ValueError:
        value = -1
    if not 0 <= value < 2**32:
        raise argparse.ArgumentTypeError(f"must be an integer from 0 to {2**32 - 1}")
    return value


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
    fit.add_argument("--seed", type=_seed, default=42, help="split and model seed")
    publish = commands.add_parser("publish", help="publish a pickled model")
    for sub in (fit, publish):
        _store_args(sub)
        sub.add_argument(
            "--no-promote", action="store_true", help="publish without moving LATEST"
        )
        sub.add_argument(
            "--no-twin",
            action="store_true",
            help="publish the pickle alone, without trying an ONNX twin",
        )
        sub.add_argument(
            "--schema",
            metavar="FILE.json",
            help="corrections to the inferred input schema, e.g. "
            '{"columns": {"plan": {"nullable": true}}} (checked on the model)',
        )
    publish.add_argument("file", metavar="FILE.pkl")
    publish.add_argument(
        "--holdout",
        metavar="FILE.csv",
        help="rows (CSV with a header) the ONNX twin's parity gate checks "
        "(default: rows made from the model's own scales and splits)",
    )
    publish.add_argument("--seed", type=_seed, default=42, help="gate rows' seed")
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
