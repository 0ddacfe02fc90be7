"""Row 7: idle reverse tunnels one root proxy holds: its memory, and its CPU while idle.

The tunnels come from ``bench.tunnelclient``, one per fake leaf cluster that
``bench.fill`` joined to the root (the root keeps one tunnel per leaf, so many
tunnels need many leaves). The root's proxy shares its process with the
root's auth (see bench/clusters.py), so the figures are that process's: VmRSS
from /proc/PID/status, CPU from utime+stime in /proc/PID/stat over an idle
window (cut into one sub-window per repeat). In the full run, each CPU
sub-window with the tunnels spans a whole heartbeat period (the root pings a
quiet tunnel once per HEARTBEAT_INTERVAL, see gatehouse/tunnel/liveness.py),
so that every sample holds one round of heartbeats whatever their phase: the
sub-windows then overlap, each starting ``window / repeats`` after the one
before. The quick run (a minute in all) samples between rounds, over windows
of one report period (the root's periodic work, such as reporting its tunnels
to its auth, recurs every REPORT_INTERVAL): its CPU figure leaves the
heartbeats out, and says so. Both are also read without the tunnels (the
baseline: RSS before them, CPU after them), and at a reduced count the figure is
projected linearly to the target's count: baseline + (with - baseline) x target
/ count.
"""

from __future__ import annotations

import json
import math
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from bench.figures import Figure, absolute_figure
from bench.fill import FakeLeaves
from bench.sampling import cpu_seconds, rss_bytes, settle
from gatehouse.process.harness import HarnessError, Process
from gatehouse.tunnel.liveness import HEARTBEAT_INTERVAL, REPORT_INTERVAL, SWEEP_INTERVAL

TARGET_COUNT = 10_000
TARGET_RSS_MIB = 1024.0
TARGET_CPU_PCT = 5.0
HEARTBEAT_PERIOD = HEARTBEAT_INTERVAL + SWEEP_INTERVAL  # each tunnel is pinged once in this


def _sample(pid: int, window: float, repeats: int,
            span: float = 0.0) -> tuple[list[float], list[float]]:
    """(CPU % of one core, RSS MiB) over ``repeats`` sub-windows of ``window / repeats``
    seconds each or, if ``span`` is longer, of ``span`` seconds each, overlapping."""
    step = window / repeats
    steps = max(1, math.ceil(span / step))  # readings per sub-window
    marks = []  # (time, CPU seconds, RSS MiB) every step
    for i in range(repeats + steps):
        if i:
            time.sleep(step)
        marks.append((time.monotonic(), cpu_seconds(pid), rss_bytes(pid) / 2**20))
    cpu = [100 * (end[1] - start[1]) / (end[0] - start[0])
           for start, end in zip(marks, marks[steps:], strict=False)]
    return cpu, [m[2] for m in marks[steps:]]


def _wait_status(client: Process, out: Path, timeout: float) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while not out.exists():
        if not client.alive():
            raise HarnessError(f"the tunnel client exited: {client.last_line()} "
                             f"(log: {client.log})")
        if time.monotonic() > deadline:
            raise HarnessError(f"the tunnel client did not finish dialing within {timeout:.0f} s")
        time.sleep(0.2)
    return dict(json.loads(out.read_text()))


def measure(root_pid: int, proxy: str, leaves: FakeLeaves, dir: Path, *, window: float,
            baseline: float, heartbeat_rounds: bool, repeats: int,
            shortfall: str = "") -> list[Figure]:
    """The two figures; ``shortfall`` says why fewer leaves than asked were joined (then
    the targets count as not met, whatever the projection says). The full run's
    ``baseline`` is long: the idle root's own periodic work (the backend's expiry
    sweep, watch keepalives) is uneven over a few seconds. The baseline's RSS is read
    before the tunnels; its CPU once they are gone again, when the aftermath of the
    root's restart (just before this row) is over too."""
    count = len(leaves.names)
    settle([root_pid], timeout=15)
    base_rss = rss_bytes(root_pid) / 2**20
    listing = dir / "tunnel-certs.txt"
    listing.write_text("\n".join(str(p) for p in leaves.cert_files) + "\n")
    out = dir / "tunnels.json"
    client = Process("tunnel client", [
        sys.executable, "-m", "bench.tunnelclient", "--proxy", proxy, "--certs", str(listing),
        "--key", str(leaves.key_file), "--out", str(out)], dir / "tunnel-client.log",
        cwd=Path(__file__).parent.parent).start()
    try:
        status = _wait_status(client, out, 60 + count / 20)
        settle([root_pid], timeout=30)  # the burst of "online" reports passes
        cpu, rss = _sample(root_pid, window, repeats,
                           span=HEARTBEAT_PERIOD if heartbeat_rounds else REPORT_INTERVAL)
        held = dict(json.loads(out.read_text()))["up"]
    finally:
        client.stop()
    if held == 0:
        raise HarnessError(f"no tunnel stayed up ({status['failed']} failed: "
                         f"{next(iter(status['errors']), '?')})")
    settle([root_pid], timeout=30)  # the tunnels' "offline" reports pass
    # Over a whole report period too: a shorter window (2 s) read 0.0% where the
    # root's own periodic work shows over 5 s, and the projection multiplied that.
    base_cpu = statistics.median(_sample(root_pid, baseline, 1, span=REPORT_INTERVAL)[0])
    scale = TARGET_COUNT / held
    # Tunnels cannot make the process use less CPU: a window that read below the
    # baseline read noise (quick runs: a fraction of a percent), projected as none.
    proj_cpu = [base_cpu + max(0.0, c - base_cpu) * scale for c in cpu]
    proj_rss = [base_rss + (r - base_rss) * scale for r in rss]
    per_tunnel = (statistics.median(rss) - base_rss) * 1024 / held
    projected = held != TARGET_COUNT
    how = f" (projected from {held:,})" if projected else ""
    note = (f"NOT MET at any projection: {shortfall.rstrip('.')}. " if shortfall else "") + (
            f"{held:,} of {count:,} tunnels held (opened in {status['seconds']:.1f} s"
            f"{', ' + str(status['failed']) + ' failed' if status['failed'] else ''}), "
            f"simulated leaf proxies (TLS + Gatehouse mux, answering heartbeats as the leaf "
            f"agent does); "
            f"the root's auth+proxy process: RSS {base_rss:.0f} MiB before, "
            f"{statistics.median(rss):.0f} MiB with them ({per_tunnel:.0f} KiB per tunnel), "
            f"CPU {base_cpu:.1f}% without them (after they closed), "
            f"{statistics.median(cpu):.1f}% with them, "
            + (f"over idle windows of one heartbeat period ({HEARTBEAT_PERIOD:g} s)"
               if heartbeat_rounds else
               f"over idle windows of one report period ({REPORT_INTERVAL:g} s) between "
               "heartbeat rounds (the quick run leaves the heartbeats out; the full "
               "run's windows hold them)"))
    figures = [
        absolute_figure("tunnels_rss", f"root proxy RSS, {TARGET_COUNT:,} idle tunnels{how}",
                        proj_rss, "MiB", limit=TARGET_RSS_MIB, better="lower", note=note),
        absolute_figure("tunnels_cpu", f"root proxy CPU, {TARGET_COUNT:,} idle tunnels{how}",
                        proj_cpu, "% of a core", limit=TARGET_CPU_PCT, better="lower"),
    ]
    if shortfall or held < count:
        for f in figures:
            f.met = False
    return figures
