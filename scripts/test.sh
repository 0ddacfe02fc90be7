#!/usr/bin/env bash
# Set up (scripts/setup.sh), then lint, type-check and run every test.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
.venv/bin/ruff check src tests bench
.venv/bin/mypy
# Tests run in parallel (pytest-xdist; pyproject's addopts keep each file in one worker,
# so a module's cluster starts once): most wait on the processes they start, not on the
# CPU, so two workers per core. Arguments come after and win: `scripts/test.sh -n 0` runs in one process.
workers=$(( $(nproc) * 2 ))
set +e
.venv/bin/pytest -q -p no:cacheprovider -n "$workers" "$@"
rc=$?
set -e
# 5 = no tests collected (e.g. a filter matched nothing): not a failure of the code.
if [ "$rc" -eq 5 ]; then exit 0; fi
exit "$rc"
