"""How a figure reads in a cell: separators, ratios as `0.07x`, n/a when missing."""

from __future__ import annotations


def fmt(value: float | None, digits: int = 1) -> str:
    """`value` with `digits` decimals and thousands separators, or n/a."""
    return "n/a" if value is None else f"{value:,.{digits}f}"


def ratio(value: float | None, basis: float | None) -> float | None:
    """value / basis, or None when either is missing or the basis is 0."""
    if value is None or not basis:
        return None
    return value / basis


def times(ratio: float | None) -> str:
    """A ratio as `12.3x` / `0.07x` / `0.0043x` (two significant digits below
    0.1, so no ratio reads as zero), or n/a."""
    if ratio is None:
        return "n/a"
    if ratio >= 10:
        return f"{ratio:.1f}x"
    return f"{ratio:.2f}x" if ratio >= 0.1 else f"{ratio:.2g}x"


def mb(size: int | None) -> str:
    return "n/a" if size is None else f"{size / 1e6:,.2f}"
