"""`make bench`'s entry point: every server in one run under the same
functions-framework, figures measured alike (the bench package does the work).

Usage: `.venv/bin/python bench/coldstart.py [--runs 3] [--requests 500]
[--duration 10] [--models canonical,hgb,forest400,forest1000] [--json PATH]`,
or `python -m bench` with the same options. The Markdown report goes to stdout,
progress to stderr. See bench/README.md for what each figure means.
"""

from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):
    # Run as a script, Python puts bench/ on the path: the package needs its
    # parent (which also lets spawned children import what they run).
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.cli import main

if __name__ == "__main__":
    sys.exit(main())
