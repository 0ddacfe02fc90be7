"""Row 8: `gsh ls --limit=100` and `gsh ls --format=json` (all) over many nodes.

Timed from the outside like rows 1-3 (process start-up included), before the
fill (the baseline: the cluster's own node) and after it. At a reduced count
the figure is projected linearly to the target's count: baseline +
(after - baseline) x target / count.
"""

from __future__ import annotations

import json

from bench.clusters import Gatehouse
from bench.figures import Figure, absolute_figure
from bench.procs import BenchError

TARGET_COUNT = 100_000
COMMANDS = {"limit": ["ls", "--limit=100"], "json": ["ls", "--format=json"]}
LIMITS = {"limit": 1.0, "json": 3.0}  # seconds
TIMEOUT = 300.0


def time_listings(gh: Gatehouse, repeats: int, *, expect: int = 0) -> dict[str, list[float]]:
    """Seconds per run of each command (interleaved); checks the JSON lists ``expect``."""
    times: dict[str, list[float]] = {k: [] for k in COMMANDS}
    for _ in range(repeats):
        for key, args in COMMANDS.items():
            res = gh.gsh(*args, timeout=TIMEOUT)
            if res.rc != 0:
                raise BenchError(f"`gsh {' '.join(args)}` exited {res.rc}: "
                                 f"{(res.err.strip().splitlines() or ['?'])[-1]}")
            if key == "json":
                try:
                    listed = len(json.loads(res.out))
                except ValueError as exc:
                    raise BenchError(f"`gsh ls --format=json` printed {len(res.out)} "
                                     f"characters that are not JSON: {exc}") from None
                if listed < expect:
                    raise BenchError(f"`gsh ls` listed {listed} nodes, expected at least "
                                     f"{expect}")
            times[key].append(res.seconds)
    return times


def measure(gh: Gatehouse, base: dict[str, list[float]], count: int,
            repeats: int) -> list[Figure]:
    after = time_listings(gh, repeats, expect=count)
    scale = TARGET_COUNT / count
    figures = []
    for key, name in (("limit", "`gsh ls --limit=100`"), ("json", "`gsh ls --format=json`")):
        t0 = min(base[key])
        projected = [t0 + (t - t0) * scale for t in after[key]]
        how = f" (projected from {count:,})" if count != TARGET_COUNT else ""
        figures.append(absolute_figure(
            f"ls_{key}", f"{name}, {TARGET_COUNT:,} nodes{how}", projected, "s",
            limit=LIMITS[key], better="lower",
            note=(f"measured {sorted(after[key])[len(after[key]) // 2]:.2f} s over "
                  f"{count:,} nodes, {t0:.2f} s over the cluster's own node") if count !=
            TARGET_COUNT else ""))
    return figures
