"""CI's smoke check of a benchmark run: `python -m bench.smoke FILE`.

Exit 0 when FILE (written by `bench/run --json FILE`) parses and holds every row
of the table with the fields issue 5 names; else 1, one line per problem. A row
that could not be measured is reported (a warning line) but does not fail the
check, and whether a figure meets its target never does: CI's smoke check is
that the harness runs through, not a judgement of the figures.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from bench.main import ROWS

NUMBER_OR_NONE = (int, float, type(None))
FIELDS: dict[str, type | tuple[type, ...]] = {
    "name": str, "value": NUMBER_OR_NONE, "min": NUMBER_OR_NONE, "max": NUMBER_OR_NONE,
    "unit": str, "openssh": NUMBER_OR_NONE, "ratio": NUMBER_OR_NONE, "target": str,
    "met": bool}


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
        if figure is None:
            found.append(f"row {id} is missing")
            continue
        for field, kind in FIELDS.items():
            if not isinstance(figure.get(field), kind):
                found.append(f"row {id}: field {field} is {figure.get(field)!r}")
        if figure.get("value") is None:
            print(f"bench smoke: warning: row {id} was not measured: {figure.get('note')}",
                  file=sys.stderr)
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
