"""The inventory rows: `gsh ls --all` over 1,000 leaves of 10 nodes each, answered from
the root proxy's inventory, and the root's CPU while it holds those inventories, idle.

The leaves are ``bench.fill``'s fake leaves, each held by ``bench.tunnelclient``, which
pushes 10 nodes per leaf over its tunnel as a leaf's proxy does. `gsh ls --all` is timed
from the outside (process start-up included), the root's own nodes listed too; the CPU
is the root's auth+proxy process over idle windows of one report period, as the tunnels
row reads it (bench/tunnels.py).
"""

from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path

from bench.clusters import Gatehouse
from bench.figures import Figure, absolute_figure
from bench.fill import FakeLeaves
from bench.sampling import settle
from bench.tunnels import _sample, _wait_status
from gatehouse.process.harness import HarnessError, Process, wait_for
from gatehouse.tunnel.liveness import REPORT_INTERVAL

LEAVES = 1_000
NODES = 10  # per leaf
LIMIT_SECONDS = 2.0
LIMIT_CPU_PCT = 5.0
TIMEOUT = 120.0


def _listed(gh: Gatehouse) -> tuple[int, float]:
    res = gh.client.gsh("ls", "--all", "--format=json", timeout=TIMEOUT)
    if res.rc != 0:
        raise HarnessError(f"`gsh ls --all` exited {res.rc}: "
                           f"{(res.err.strip().splitlines() or ['?'])[-1]}")
    return sum(n["spec"]["cluster"] != gh.root.name for n in json.loads(res.out)), res.seconds


def measure(gh: Gatehouse, root_pid: int, leaves: FakeLeaves, dir: Path, *,
            window: float, repeats: int) -> list[Figure]:
    held = FakeLeaves(leaves.names[:LEAVES], leaves.cert_files[:LEAVES], leaves.key_file)
    listing = dir / "inventory-certs.txt"
    listing.write_text("\n".join(str(p) for p in held.cert_files) + "\n")
    out = dir / "inventory.json"
    client = Process("inventory client", [
        sys.executable, "-m", "bench.tunnelclient", "--proxy", gh.root.proxy, "--certs",
        str(listing), "--key", str(held.key_file), "--out", str(out),
        f"--inventory={NODES}"], dir / "inventory-client.log",
        cwd=Path(__file__).parent.parent).start()
    try:
        status = _wait_status(client, out, 60 + len(held.names) / 20)
        want = (len(held.names) - status["failed"]) * NODES
        wait_for(f"{want:,} leaf nodes in `gsh ls --all`",
                 lambda: _listed(gh)[0] >= want, timeout=TIMEOUT, interval=1.0)
        times = [_listed(gh)[1] for _ in range(repeats)]
        settle([root_pid], timeout=30)
        cpu, _ = _sample(root_pid, window, repeats, span=REPORT_INTERVAL)
    finally:
        client.stop()
    note = (f"{want // NODES:,} simulated leaves of {NODES} nodes each pushed over their "
            f"tunnels ({status['failed']} failed); the root's own nodes listed too; CPU of "
            f"the root's auth+proxy process over idle windows of {REPORT_INTERVAL:g} s, "
            f"median {statistics.median(cpu):.1f}%")
    figures = [
        absolute_figure("inventory_ls_all",
                        f"`gsh ls --all`, {LEAVES:,} leaves x {NODES} nodes", times, "s",
                        limit=LIMIT_SECONDS, better="lower", note=note),
        absolute_figure("inventory_cpu",
                        f"root CPU idle, {LEAVES:,} leaves' inventories held", cpu,
                        "% of a core", limit=LIMIT_CPU_PCT, better="lower"),
    ]
    if want < LEAVES * NODES:
        for f in figures:
            f.met = False
    return figures
