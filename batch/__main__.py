"""`python -m batch`: the command line entry point; see batch/cli.py."""

import sys

try:
    from batch.cli import configure_logging, main
except ModuleNotFoundError as missing:  # the optional part not installed
    if (missing.name or "").split(".")[0] != "apache_beam":
        raise
    print(
        "error: python -m batch needs Apache Beam, which is not installed here; "
        "run `make batch-setup` (pip install -r batch/requirements.txt)",
        file=sys.stderr,
    )
    sys.exit(2)

configure_logging()
sys.exit(main())
