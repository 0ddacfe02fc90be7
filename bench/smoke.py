"""CI's smoke check of a benchmark run: `python -m bench.smoke FILE`.

Exit 0 when FILE (written by `bench/run --json FILE`) parses and holds every row
of the table, measured, with the fields issue 5 names; else 1, one line per
problem. A row that could not be measured (no value, min or max) fails the
check with the run's note on why: a run where every figure is null is no run.
Whether a figure meets its target never fails it: CI's smoke check is that the
harness measures every row, not a judgement of the figures. ``openssh`` and
``ratio`` may be null (rows without an OpenSSH counterpart).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from bench.main import ROWS

MEASURED = ("value", "min", "max")  # numbers in every row
OPTIONAL = ("openssh", "ratio")  # numbers, or null in rows without an OpenSSH counterpart
TEXT = ("name", "unit", "target")


def _number(x: object) -> bool:
    return isinstance(x, int | float) and not isinstance(x, bool)


def row_problems(id: str, figure: dict[str, object]) -> list[str]:
    """What is wrong with one row's figure (nothing for a measured, well-formed row)."""
    if figure.get("value") is None:
        return [f"row {id} was not measured: {figure.get('note') or 'no note'}"]
    bad = [f for f in MEASURED if not _number(figure.get(f))]
    bad += [f for f in OPTIONAL if figure.get(f) is not None and not _number(figure.get(f))]
    bad += [f for f in TEXT if not isinstance(figure.get(f), str)]
    bad += [] if isinstance(figure.get("met"), bool) else ["met"]
    return [f"row {id}: field {f} is {figure.get(f)!r}" for f in bad]


def problems(path: Path) -> list[str]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        return [f"{path}: not readable as JSON: {exc}"]
    if not isinstance(data, dict) or data.get("mode") not in ("quick", "full") \
            or not isinstance(data.get("figures"), list):
        return [f"{path}: expected {{\"mode\": \"quick\"|\"full\", \"figures\": [...]}}"]
    found: list[str] = []
    by_id = {f.get("id"): f for f in data["figures"] if isinstance(f, dict)}
    for id, *_ in (row for rows in ROWS.values() for row in rows):
        figure = by_id.get(id)
        found += [f"row {id} is missing"] if figure is None else row_problems(id, figure)
    return found


def main() -> int:
    if len(sys.argv) != 2:
        print("usage: python -m bench.smoke FILE", file=sys.stderr)
        return 2
    found = problems(Path(sys.argv[1]))
    for line in found:
        print(f"bench smoke: {line}", file=sys.stderr)
    if not found:
        print(f"bench smoke: {sys.argv[1]} holds all {sum(map(len, ROWS.values()))} rows")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
