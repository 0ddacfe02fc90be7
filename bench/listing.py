"""Row 8: `gsh ls --limit=100` and `gsh ls --format=json` (all) over many nodes.

Timed from the outside like rows 1-3 (process start-up included), before the
fill (the baseline: the cluster's own node) and after it. At a reduced count
`--format=json` is projected linearly to the target's count: baseline +
(after - baseline) x target / count; `--limit=100` lists 100 nodes at any
count and is judged as measured (time per node listed, as issue 5 says).
"""

from __future__ import annotations

import json

from bench.clusters import Gatehouse
from bench.figures import Figure, absolute_figure
from gatehouse.process.harness import HarnessError

TARGET_COUNT = 100_000
COMMANDS = {"limit": ["ls", "--limit=100"], "json": ["ls", "--format=json"]}
LIMITS = {"limit": 1.0, "json": 3.0}  # seconds
TIMEOUT = 300.0


def time_listings(gh: Gatehouse, repeats: int, *, expect: int = 0) -> dict[str, list[float]]:
    """Seconds per run of each command (interleaved); checks the JSON lists ``expect``."""
    times: dict[str, list[float]] = {k: [] for k in COMMANDS}
    for _ in range(repeats):
        for key, args in COMMANDS.items():
            res = gh.client.gsh(*args, timeout=TIMEOUT)
            if res.rc != 0:
                raise HarnessError(f"`gsh {' '.join(args)}` exited {res.rc}: "
                                 f"{(res.err.strip().splitlines() or ['?'])[-1]}")
            if key == "json":
                try:
                    listed = len(json.loads(res.out))
                except ValueError as exc:
                    raise HarnessError(f"`gsh ls --format=json` printed {len(res.out)} "
                                     f"characters that are not JSON: {exc}") from None
                if listed < expect:
                    raise HarnessError(f"`gsh ls` listed {listed} nodes, expected at least "
                                     f"{expect}")
            times[key].append(res.seconds)
    return times


def measure(gh: Gatehouse, base: dict[str, list[float]], count: int,
            repeats: int) -> list[Figure]:
    after = time_listings(gh, repeats, expect=count)
    scale = TARGET_COUNT / count
    median = {key: sorted(times)[len(times) // 2] for key, times in after.items()}
    reduced = count != TARGET_COUNT
    t0 = min(base["json"])
    # --limit=100 lists 100 nodes whatever the count (a page of the hostname index), so
    # its time per node listed is judged as measured; --format=json lists them all, so
    # at a reduced count its time above the one-node baseline is scaled to the target.
    return [
        absolute_figure(
            "ls_limit", f"`gsh ls --limit=100`, {count:,} nodes", after["limit"], "s",
            limit=LIMITS["limit"], better="lower",
            note=(f"100 nodes listed out of {count:,} (the target is over "
                  f"{TARGET_COUNT:,}: the same 100 listed); {min(base['limit']):.2f} s over "
                  "the cluster's own node") if reduced else ""),
        absolute_figure(
            "ls_json", f"`gsh ls --format=json`, {TARGET_COUNT:,} nodes"
            + (f" (projected from {count:,})" if reduced else ""),
            [t0 + (t - t0) * scale for t in after["json"]], "s",
            limit=LIMITS["json"], better="lower",
            note=(f"measured {median['json']:.2f} s over {count:,} nodes, {t0:.2f} s over "
                  "the cluster's own node") if reduced else ""),
    ]
