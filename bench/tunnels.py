"""Row 7: idle reverse tunnels one root proxy holds: its memory, and its CPU while idle.

The same for idle tunnel-mode nodes (``NODES``): each also heartbeats its presence to
the auth through the proxy, and the row adds the auth's CPU for those heartbeats.

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
import signal
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from bench.figures import Figure, absolute_figure
from bench.sampling import cpu_seconds, rss_bytes, settle
from gatehouse.process.harness import HarnessError, Process
from gatehouse.tunnel.liveness import HEARTBEAT_INTERVAL, REPORT_INTERVAL, SWEEP_INTERVAL
from gatehouse.wire.names import TUNNEL_NODE_HEARTBEAT

TARGET_COUNT = 10_000
TARGET_RSS_MIB = 1024.0
TARGET_CPU_PCT = 5.0
TARGET_AUTH_CPU_PCT = 20.0  # the auth's, for the heartbeats of tunnel nodes
# Seconds each sample with the nodes' heartbeats spans at least: spread evenly over
# their period, 1,000 nodes send about 70 in that time.
BEATS_SPAN = 20.0
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


class Dialers(Protocol):
    """Who the tunnel client dials as: leaves (bench.fill) or nodes (bench.fakenodes)."""

    @property
    def names(self) -> list[str]: ...
    @property
    def cert_files(self) -> list[Path]: ...
    @property
    def key_file(self) -> Path: ...


@dataclass(frozen=True)
class Kind:
    """What the simulated tunnels are, and the ids and names of their figures."""

    client: str  # the tunnel client's --kind
    id: str  # the figures' id prefix
    what: str  # "idle tunnels", as the figures' names say it
    simulated: str  # how the note describes the simulated dialers


LEAVES = Kind("leaf", "tunnels", "idle tunnels",
              "simulated leaf proxies (TLS + Gatehouse mux, answering heartbeats as the leaf "
              "agent does)")
NODES = Kind("node", "tnodes", "idle tunnel nodes",
             "simulated tunnel-mode nodes (each registered with its own host certificate; "
             "TLS + Gatehouse mux as the node's agent, and the node's presence heartbeat "
             "over HTTPS through the proxy every "
             f"{TUNNEL_NODE_HEARTBEAT:g} s)")


def measure(root_pid: int, proxy: str, leaves: Dialers, dir: Path, *, window: float,
            baseline: float, heartbeat_rounds: bool, repeats: int,
            shortfall: str = "", kind: Kind = LEAVES, cluster: str = "") -> list[Figure]:
    """The figures; ``shortfall`` says why fewer leaves than asked were joined (then
    the targets count as not met, whatever the projection says). The full run's
    ``baseline`` is long: the idle root's own periodic work (the backend's expiry
    sweep, watch keepalives) is uneven over a few seconds. The baseline's RSS is read
    before the tunnels; its CPU once they are gone again, when the aftermath of the
    root's restart (just before this row) is over too. Nodes (``kind``, of ``cluster``)
    heartbeat their auth too: their figures add the auth's CPU for those heartbeats
    (the CPU with them less the CPU with them paused, the proxy's idle figure)."""
    count = len(leaves.names)
    settle([root_pid], timeout=15)
    base_rss = rss_bytes(root_pid) / 2**20
    listing = dir / f"{kind.id}-certs.txt"
    nodes = kind is NODES
    listing.write_text("".join(f"{p} {n}\n" if nodes else f"{p}\n"
                               for p, n in zip(leaves.cert_files, leaves.names, strict=True)))
    out = dir / f"{kind.id}.json"
    client = Process(f"{kind.client} tunnel client", [
        sys.executable, "-m", "bench.tunnelclient", "--proxy", proxy, "--certs", str(listing),
        "--key", str(leaves.key_file), "--out", str(out), "--kind", kind.client,
        "--cluster", cluster], dir / f"{kind.id}-client.log",
        cwd=Path(__file__).parent.parent).start()
    span = HEARTBEAT_PERIOD if heartbeat_rounds else REPORT_INTERVAL
    beats: list[float] = []
    try:
        status = _wait_status(client, out, 60 + count / 20)
        settle([root_pid], timeout=30)  # the burst of "online" reports passes
        if nodes:  # with the nodes' heartbeats, then without (the proxy's idle figure)
            beats, _ = _sample(root_pid, window, repeats, span=max(span, BEATS_SPAN))
            assert client.proc is not None  # started
            client.proc.send_signal(signal.SIGUSR1)
            settle([root_pid], timeout=15)
        cpu, rss = _sample(root_pid, window, repeats, span=span)
        final = dict(json.loads(out.read_text()))
        held = final["up"]
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
            f"{kind.simulated}; "
            f"the root's auth+proxy process: RSS {base_rss:.0f} MiB before, "
            f"{statistics.median(rss):.0f} MiB with them ({per_tunnel:.0f} KiB per tunnel), "
            f"CPU {base_cpu:.1f}% without them (after they closed), "
            f"{statistics.median(cpu):.1f}% with them, "
            + (f"over idle windows of one heartbeat period ({HEARTBEAT_PERIOD:g} s)"
               if heartbeat_rounds else
               f"over idle windows of one report period ({REPORT_INTERVAL:g} s) between "
               "heartbeat rounds (the quick run leaves the heartbeats out; the full "
               "run's windows hold them)"))
    if nodes:
        idle = statistics.median(cpu)
        note += (f"; {final.get('heartbeats', 0):,} node heartbeats sent, "
                 f"CPU {statistics.median(beats):.1f}% while they ran (the auth's share: "
                 f"that less {idle:.1f}% with them paused)")
    name = f"{TARGET_COUNT:,} {kind.what}{how}"
    figures = [
        absolute_figure(f"{kind.id}_rss", f"root proxy RSS, {name}", proj_rss, "MiB",
                        limit=TARGET_RSS_MIB, better="lower", note=note),
        absolute_figure(f"{kind.id}_cpu", f"root proxy CPU, {name}", proj_cpu, "% of a core",
                        limit=TARGET_CPU_PCT, better="lower"),
    ]
    if nodes:
        idle = statistics.median(cpu)
        figures.append(absolute_figure(
            f"{kind.id}_auth_cpu", f"root auth CPU for the heartbeats of {name}",
            [max(0.0, b - idle) * scale for b in beats], "% of a core",
            limit=TARGET_AUTH_CPU_PCT, better="lower"))
    if shortfall or held < count:
        for f in figures:
            f.met = False
    return figures
