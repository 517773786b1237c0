"""The deploy sizes the docs state are the sizes the deploy tests measure, within
a tolerance: past it, the docs say the new figure (the failure prints it)."""

from __future__ import annotations

import re

from tests.support import REPO

PROFILES = REPO / "docs" / "deploy" / "profiles.md"
# A pin bump moves a size by a fraction of a percent; a new dependency or a
# dropped slim pattern moves it by more, and the docs must then be updated.
TOLERANCE = 0.02
_MB = re.compile(r"(\d+(?:\.\d+)?) MB")


def documented_mb(row: str) -> list[float]:
    """The MB figures of the profiles table's row whose first cell is `row`,
    in order (full, then slim; unzipped before zipped)."""
    (line,) = [
        line
        for line in PROFILES.read_text().splitlines()
        if line.startswith(f"| {row} |")
    ]
    return [float(value) for value in _MB.findall(line)]


def mentioned_mb(page: str, pattern: str) -> float:
    """One figure stated in another page's prose (`pattern` has one group)."""
    text = " ".join((REPO / "docs" / page).read_text().split())
    (value,) = re.findall(pattern, text)
    return float(value)


def assert_documented(what: str, measured_bytes: int, documented: float) -> None:
    measured = measured_bytes / 1e6
    assert abs(measured - documented) <= TOLERANCE * documented, (
        f"{what}: measured {measured:.1f} MB, docs/deploy/profiles.md says "
        f"{documented} MB (more than {TOLERANCE:.0%} apart): update the docs "
        "(profiles.md and the pages repeating the figure)"
    )
