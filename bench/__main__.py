"""`python -m bench`: the same run as `bench/coldstart.py`."""

from __future__ import annotations

import sys

from bench.cli import main

sys.exit(main())
