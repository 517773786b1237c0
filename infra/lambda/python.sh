#!/bin/sh
# The Python that serverless-python-requirements runs pip with (`pythonBin` in
# serverless.yml) to install function/requirements-lambda.txt into the artifact.
#
# 1. Lambda runs python3.12, so pip (and the .pyc it compiles) must be 3.12:
#    $PYTHON312, else python3.12 on PATH, else pyenv's 3.12. Each is checked,
#    since a pyenv shim can exist while its version is not active.
# 2. SOURCE_DATE_EPOCH makes Python compile hash-checked .pyc. serverless zips
#    every file with a fixed 1980 timestamp, which makes ordinary (mtime-checked)
#    .pyc stale on Lambda: every cold start would recompile ~1400 modules.
set -eu
for candidate in "${PYTHON312:-}" python3.12 "$HOME"/.pyenv/versions/3.12*/bin/python3.12; do
  [ -n "$candidate" ] || continue
  if "$candidate" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 12))' 2>/dev/null; then
    export SOURCE_DATE_EPOCH="${SOURCE_DATE_EPOCH:-315532800}"
    exec "$candidate" "$@"
  fi
done
echo "python3.12: command not found; install it or set PYTHON312=/path/to/python3.12" >&2
exit 127
