"""A fresh Python 3.12 venv (the runtime both platforms run) holding only the
requirements it is given, and an environment with nothing of the dev one."""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
from collections.abc import Mapping
from pathlib import Path

from tests.support import REPO

PIP_CACHE = REPO / ".cache" / "pip"  # gitignored


def _is_python312(candidate: str) -> bool:
    try:
        result = subprocess.run(
            [candidate, "-c", "import sys; print(sys.version_info[:2])"],
            capture_output=True,
            text=True,
            timeout=30,
        )
    except OSError:
        return False
    return result.returncode == 0 and result.stdout.strip() == "(3, 12)"


def find_python312() -> str:
    """python3.12 on PATH if it runs (a pyenv shim may not), else pyenv's 3.12."""
    found = shutil.which("python3.12")
    candidates = [found] if found else []
    candidates += sorted(
        glob.glob(os.path.expanduser("~/.pyenv/versions/3.12*/bin/python3.12")),
        reverse=True,
    )
    for candidate in candidates:
        if _is_python312(candidate):
            return candidate
    raise AssertionError(f"no working python3.12 among {candidates}")


def clean_env(venv: Path, extra: Mapping[str, str]) -> dict[str, str]:
    """Nothing from the dev environment: the venv's PATH and the given settings."""
    return {
        "PATH": f"{venv / 'bin'}:/usr/local/bin:/usr/bin:/bin",
        "HOME": os.environ.get("HOME", "/tmp"),
        "LANG": "C.UTF-8",
        "PYTHONUNBUFFERED": "1",
        **extra,
    }


def install_venv(requirements: Path, folder: Path) -> Path:
    """A fresh Python 3.12 venv in `folder` holding only `requirements`."""
    venv = folder / "venv"
    subprocess.run([find_python312(), "-m", "venv", str(venv)], check=True, timeout=300)
    installed = subprocess.run(
        [
            str(venv / "bin" / "python"),
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            "-r",
            str(requirements),
        ],
        env={**clean_env(venv, {}), "PIP_CACHE_DIR": str(PIP_CACHE)},
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert installed.returncode == 0, installed.stderr[-4000:]
    return venv
