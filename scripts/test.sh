#!/usr/bin/env bash
# Set up (scripts/setup.sh), then lint, type-check and run every test.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
.venv/bin/ruff check src tests bench
.venv/bin/mypy
set +e
.venv/bin/pytest -q -p no:cacheprovider "$@"
rc=$?
set -e
# 5 = no tests collected (e.g. a filter matched nothing): not a failure of the code.
if [ "$rc" -eq 5 ]; then exit 0; fi
exit "$rc"
