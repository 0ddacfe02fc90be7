#!/usr/bin/env bash
# CI's smoke check of the benchmark: a quick run must complete (exit 0) and write
# every row as JSON, measured (a null figure fails it). Whether the figures meet
# their targets is not judged here (see README).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
out=$(mktemp --suffix=.json)
trap 'rm -f "$out"' EXIT
bench/run --quick --json "$out"
.venv/bin/python -m bench.smoke "$out"
