"""What a report must say about where it was measured: the commit and any
uncommitted changes, the interpreter, the machine and the package versions."""

from __future__ import annotations

import os
import platform
import shlex
import subprocess
import sys
from importlib import metadata
from typing import Any

from bench.common import ROOT
from bench.load import wrk_version

PACKAGES = (
    "scikit-learn",
    "numpy",
    "onnxruntime",
    "functions-framework",
    "gunicorn",
    "flask",
)


def git_state() -> str:
    """The checked-out commit, and whether what was measured differs from it."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "function", "train", "bench"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return "unknown (not a git checkout?)"
    folders = sorted({line[3:].split("/", 1)[0] for line in dirty.splitlines()})
    if not folders:
        return head
    return f"{head} (plus uncommitted changes in {', '.join(folders)})"


def loads() -> list[float]:
    """The load average over 1, 5 and 15 minutes, rounded."""
    return [round(load, 2) for load in os.getloadavg()]


def environment() -> dict[str, Any]:
    """Command line, interpreter, machine and package versions of this run."""
    versions = {}
    for package in PACKAGES:
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = "not installed"
    return {
        "command": shlex.join(sys.orig_argv),
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "usable_cpus": len(os.sched_getaffinity(0)),
        "threads": 4 * (os.cpu_count() or 1),  # functions-framework's default
        "load_at_end": loads(),
        "packages": versions,
        "wrk": wrk_version(),
    }
