"""`bench/run [--quick] [--rows=ROW,...] [--json FILE]`: start everything, measure every
row (or the rows named), stop it all.

Exit status 0 when the run completed (whether or not targets were met: a row
that could not be measured is reported as such, with why); 2 with one line on
stderr when the harness itself cannot run (setup failed); 130 when interrupted.
Every process it starts is stopped at the end, however the run ends.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

from bench import (
    inventory,
    issuance,
    latency,
    listing,
    load,
    pgcluster,
    pgissuance,
    stream,
    transfer,
    tunnels,
)
from bench.clusters import ROOT, Gatehouse, start_gatehouse
from bench.fakenodes import add_tunnel_nodes
from bench.figures import REFERENCE, Figure, counted, missing_figure, table, write_json
from bench.fill import FakeLeaves, fill, restore, save
from bench.sampling import settle
from bench.sshd import OpenSSH, find_sshd, start_sshd
from gatehouse.process.harness import HarnessError, stop_all


@dataclass(frozen=True)
class Sizes:
    repeats: int  # rows 1-3, 4, 8, 9
    connect_repeats: int  # rows 1-3 (short and noisy: more of them)
    stream_bytes: int
    load_seconds: float  # per side
    tunnels: int
    tunnel_window: float  # seconds of idle measurement
    tunnel_baseline: float  # seconds of the idle root without tunnels (after them)
    heartbeat_rounds: bool  # each idle sample spans a whole heartbeat period (~2 min)
    nodes: int
    issue_seconds: float  # per repeat
    tunnel_nodes: int  # idle tunnel-mode nodes (their row shares the tunnels' windows)
    pg_windows: int  # PostgreSQL cluster: CPU windows (two heartbeat periods each)
    pg_logins: int  # PostgreSQL cluster: logins timed for the p99 (the 3rd slowest of 200)


QUICK = Sizes(repeats=3, connect_repeats=3, stream_bytes=64 << 20, load_seconds=5.0,
              tunnels=1_000, tunnel_window=1.5, tunnel_baseline=5.0, heartbeat_rounds=False,
              nodes=10_000, issue_seconds=0.5, tunnel_nodes=1_000, pg_windows=1,
              pg_logins=20)
FULL = Sizes(repeats=5, connect_repeats=10, stream_bytes=1 << 30, load_seconds=30.0,
             tunnels=10_000, tunnel_window=20.0, tunnel_baseline=30.0, heartbeat_rounds=True,
             nodes=100_000, issue_seconds=3.0, tunnel_nodes=10_000, pg_windows=3,
             pg_logins=200)

FALLBACK_LEAVES = 1_000  # when the root cannot start with as many leaves as asked

# Every row, for when a group of rows cannot be measured: (id, name, unit, target).
ROWS = {
    "latency": [("connect_direct", "`gsh ssh node true`, direct node via proxy", "ms",
                 "≤ 1x OpenSSH"),
                ("connect_leaf", "`gsh ssh` to a leaf node (tunnel) vs `ssh -J`", "ms",
                 "≤ 1x OpenSSH"),
                ("connect_tunnel_node", "`gsh ssh` to a tunnel-mode node vs a direct node",
                 "ms", "≤ 1.05x a direct node"),
                ("connect_openssh_config",
                 "`ssh -F <gsh config> root@node.leaf true` vs `ssh -J`", "ms",
                 "≤ 1.2x OpenSSH")],
    "stream": [("stream_leaf", "stream from a leaf node vs `ssh -J`", "MB/s", "≥ 0.8x OpenSSH"),
               ("stream_openssh_config",
                "stream from a leaf node, `ssh -F <gsh config>` vs `ssh -J`", "MB/s",
                "≥ 0.8x OpenSSH"),
               ("stream_recording", "the same stream, recording on vs off", "x",
                "≥ 0.95x of recording off"),
               ("stream_tunnel_node", "stream from a root tunnel-mode node vs `ssh -J`",
                "MB/s", "≥ 0.8x OpenSSH"),
               ("stream_c_relays", "stream over the `ssh -F` path's hops as C relays vs "
                "`ssh -J`", "MB/s", REFERENCE)],
    "transfer": [("scp_leaf_put", "scp to a leaf node, through `gsh config` vs `scp -J`",
                  "MB/s", "≥ 0.8x OpenSSH"),
                 ("scp_leaf_get", "scp from a leaf node, through `gsh config` vs `scp -J`",
                  "MB/s", "≥ 0.8x OpenSSH")],
    "load": [("session_rate", "new sessions/s via root proxy → leaf node", "sessions/s",
              "≥ 1.75x OpenSSH"),
             ("session_p99", "p99 session setup latency at that load", "ms",
              "≤ 1x OpenSSH"),
             ("cpu_per_session", "leaf auth+proxy CPU per session", "ms", "≤ 8 ms")],
    "tunnels": [("tunnels_rss", "root proxy RSS, 10,000 idle tunnels", "MiB", "≤ 1024 MiB"),
                ("tunnels_cpu", "root proxy CPU, 10,000 idle tunnels", "% of a core", "≤ 5")],
    "tunnel_nodes": [
        ("tnodes_rss", "root proxy RSS, 10,000 idle tunnel nodes", "MiB", "≤ 1024 MiB"),
        ("tnodes_cpu", "root proxy CPU, 10,000 idle tunnel nodes", "% of a core", "≤ 5"),
        ("tnodes_auth_cpu", "root auth CPU for the heartbeats of 10,000 tunnel nodes",
         "% of a core", "≤ 20")],
    "listing": [("ls_limit", "`gsh ls --limit=100`, 100,000 nodes", "s", "≤ 1 s"),
                ("ls_json", "`gsh ls --format=json`, 100,000 nodes", "s", "≤ 3 s")],
    "inventory": [("inventory_ls_all", "`gsh ls --all`, 1,000 leaves x 10 nodes", "s",
                   "≤ 2 s"),
                  ("inventory_cpu", "root CPU idle, 1,000 leaves' inventories held",
                   "% of a core", "≤ 5")],
    "issuance": [("cert_issuance", "user certificates issued per second (one auth)",
                  "certs/s", "≥ 2000 certs/s")],
    "postgres": [("pg_issuance_two_auths",
                  "user certificates issued per second, two auths on one PostgreSQL vs one",
                  "certs/s", "≥ 1.6x one auth")],
    "pg_cluster": [("pg_ls_limit", "`gsh ls --limit=100` on PostgreSQL, 100,000 nodes", "s",
                    "≤ 1 s"),
                   ("pg_heartbeat_cpu",
                    "auths' CPU on PostgreSQL, heartbeats at 10,000 nodes' rate",
                    "% of a core", "≤ 50"),
                   ("pg_login_p99", "password login p99 under that load, on PostgreSQL", "ms",
                    "≤ 250 ms")],
}


# The rows that need the clusters up.
CLUSTER_ROWS = ("latency", "stream", "transfer", "load", "tunnels", "tunnel_nodes", "listing",
                "inventory")


def parse_rows(text: str) -> list[str]:
    """The rows ``--rows`` names (comma-separated), in the run's order; ValueError with
    one line naming what is unknown, and the known ones."""
    names = [name.strip() for name in text.split(",") if name.strip()]
    unknown = [name for name in names if name not in ROWS]
    if unknown or not names:
        what = f"unknown row{'s' * (len(unknown) > 1)} {', '.join(unknown)}" if unknown \
            else "no row named"
        raise ValueError(f"--rows: {what}: the rows are {', '.join(ROWS)}")
    return [name for name in ROWS if name in names]


def say(text: str) -> None:
    print(f"bench: {text}", file=sys.stderr, flush=True)


class Run:
    """The figures of one run, group by group; a group that fails is reported, not fatal."""

    def __init__(self) -> None:
        self.figures: list[Figure] = []

    def group(self, name: str, measure: Callable[[], list[Figure]]) -> None:
        say(f"measuring {name}")
        start = time.monotonic()
        try:
            self.figures += measure()
        except HarnessError as exc:
            say(f"{name}: not measured: {exc}")
            self.figures += [missing_figure(id, row, unit, target, f"not measured: {exc}")
                             for id, row, unit, target in ROWS[name]]
        say(f"{name} took {time.monotonic() - start:.1f} s")


def _clusters_rows(run: Run, gh: Gatehouse, sshd: OpenSSH, dir: Path, sizes: Sizes,
                   rows: list[str]) -> None:
    """Those of ``rows`` that need the clusters running, in an order that keeps rows apart."""
    base: dict[str, list[float]] = {}

    def baseline() -> list[Figure]:
        base.update(listing.time_listings(gh, max(2, sizes.repeats // 2)))
        return []

    if "listing" in rows:
        run.group("listing", baseline)
    if "latency" in rows:
        run.group("latency", lambda: latency.measure(gh, sshd, sizes.connect_repeats))
    if "stream" in rows:
        run.group("stream", lambda: stream.measure(gh, sshd, sizes.stream_bytes, sizes.repeats))

    if "transfer" in rows:
        run.group("transfer", lambda: transfer.measure(gh, sshd, dir, sizes.stream_bytes,
                                                       sizes.repeats))

    def session_load() -> list[Figure]:
        settle(gh.quiet_pids(), timeout=60)  # the last stream's recording may still be uploading
        return load.measure(gh, sshd, dir, seconds=sizes.load_seconds, windows=sizes.repeats)

    if "load" in rows:
        run.group("load", session_load)
    if {"tunnels", "listing", "inventory"} & set(rows):
        _leaves_rows(run, gh, dir, sizes, rows, base)
    if "tunnel_nodes" in rows:
        run.group("tunnel_nodes", lambda: _tunnel_nodes(gh, dir, sizes))


def _tunnel_nodes(gh: Gatehouse, dir: Path, sizes: Sizes) -> list[Figure]:
    """Register the tunnel nodes with the root (its auth stopped meanwhile), then measure
    the root holding their tunnels and taking their heartbeats."""
    say(f"registering {sizes.tunnel_nodes:,} tunnel nodes with the root (offline)")
    root = gh.root.daemon
    assert root is not None  # started by start_gatehouse
    root.stop()
    nodes = add_tunnel_nodes(gh.root.data_dir / "backend.sqlite", ROOT, sizes.tunnel_nodes,
                             dir / "fake-nodes")
    gh.root.restart()
    root = gh.root.daemon
    assert root is not None
    return tunnels.measure(root.pid, gh.root.proxy, nodes, dir, window=sizes.tunnel_window,
                           baseline=sizes.tunnel_baseline,
                           heartbeat_rounds=sizes.heartbeat_rounds, repeats=sizes.repeats,
                           kind=tunnels.NODES, cluster=ROOT)


def _leaves_rows(run: Run, gh: Gatehouse, dir: Path, sizes: Sizes, rows: list[str],
                 base: dict[str, list[float]]) -> None:
    """The rows that need the root filled with leaves and nodes: tunnels, listing,
    inventory."""
    leaves, shortfall = _fill_root(gh, dir, sizes, rows)
    root = gh.root.daemon
    assert root is not None  # started by start_gatehouse
    if "tunnels" in rows:
        run.group("tunnels", lambda: tunnels.measure(
            root.pid, gh.root.proxy, leaves, dir,
            window=sizes.tunnel_window, baseline=sizes.tunnel_baseline,
            heartbeat_rounds=sizes.heartbeat_rounds, repeats=sizes.repeats,
            shortfall=shortfall))
    if "inventory" in rows:
        run.group("inventory", lambda: inventory.measure(
            gh, root.pid, leaves, dir, window=sizes.tunnel_window, repeats=sizes.repeats))
    if base:
        run.group("listing", lambda: listing.measure(gh, base, sizes.nodes, sizes.repeats))


def _start_all(dir: Path, keys: Path) -> tuple[OpenSSH, Gatehouse]:
    """sshd and the clusters, side by side (sshd in a thread: it mostly waits)."""
    find_sshd()  # fail at once, not after the clusters started
    found: list[OpenSSH] = []
    errors: list[HarnessError] = []

    def sshd() -> None:
        try:
            found.append(start_sshd(dir / "sshd", keys))
        except HarnessError as exc:
            errors.append(exc)

    thread = threading.Thread(target=sshd, daemon=True)
    thread.start()
    try:
        gh = start_gatehouse(dir / "gatehouse")
    finally:
        thread.join()
    if errors:
        raise errors[0]
    return found[0], gh


def _fill_root(gh: Gatehouse, dir: Path, sizes: Sizes,
               rows: list[str]) -> tuple[FakeLeaves, str]:
    """Stop the root's auth, fill its backend, start it again. If it cannot start with
    that many leaves, fall back to the first FALLBACK_LEAVES (the backend as it was
    before the rest were added); returns (leaves, why fewer)."""
    nodes = sizes.nodes if "listing" in rows else 0  # the inventory row lists the root's too
    say(f"filling the root with {nodes:,} nodes and {sizes.tunnels:,} leaves (offline)")
    start = time.monotonic()
    root = gh.root.daemon
    assert root is not None  # started by start_gatehouse
    path, out = gh.root.data_dir / "backend.sqlite", dir / "fake-leaves"
    root.stop()
    first = min(sizes.tunnels, FALLBACK_LEAVES)
    leaves = fill(path, ROOT, nodes=nodes, leaves=range(first), out=out)
    if sizes.tunnels > first:
        save(path, dir / "backend-saved")
        leaves += fill(path, ROOT, nodes=0, leaves=range(first, sizes.tunnels), out=out)
    say(f"filled in {time.monotonic() - start:.1f} s")
    try:
        gh.root.restart()
        return leaves, ""
    except HarnessError as exc:
        if sizes.tunnels <= first:
            raise
        why = re.sub(r"\s*\(log: [^)]*\)$", "", str(exc))  # the log goes with the run
        shortfall = f"the root's auth+proxy did not start with {sizes.tunnels:,} leaves: {why}"
    say(f"{shortfall}; trying again with {first}")
    root.stop()
    restore(path, dir / "backend-saved")
    gh.root.restart()
    return FakeLeaves(leaves.names[:first], leaves.cert_files[:first], leaves.key_file), shortfall


def _order(figures: list[Figure]) -> list[Figure]:
    """Rows in the issue's order, whatever order they were measured in."""
    order = [id for rows in ROWS.values() for id, *_ in rows]
    return sorted(figures, key=lambda f: order.index(f.id) if f.id in order else len(order))


def _on_term(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    try:
        return _main(argv)
    except Exception as exc:  # a bug here, or something unforeseen: one line, not a trace
        print(f"bench: cannot run: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 2


def _main(argv: list[str] | None) -> int:
    p = argparse.ArgumentParser(prog="bench/run", description=(
        "Measure Gatehouse against OpenSSH on this machine (issue 5): starts sshd, a root "
        "and a leaf cluster on loopback, prints a table, stops everything."))
    p.add_argument("--quick", action="store_true",
                   help="reduced sizes, about a minute (CI's smoke check)")
    p.add_argument("--rows", metavar="ROW,...", default=",".join(ROWS),
                   help=f"only these rows (comma-separated), of: {', '.join(ROWS)}; "
                        "default: all")
    p.add_argument("--json", type=Path, metavar="FILE", help="also write the figures as JSON")
    p.add_argument("--keep", action="store_true", help="keep the work directory (logs)")
    args = p.parse_args(argv)
    try:
        rows = parse_rows(args.rows)
    except ValueError as exc:
        print(f"bench: {exc}", file=sys.stderr)
        return 2
    sizes, mode = (QUICK, "quick") if args.quick else (FULL, "full")
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):  # SIGINT too: a shell may
        signal.signal(sig, _on_term)  # have started us with it ignored (a background job)
    dir = Path(tempfile.mkdtemp(prefix="gatehouse-bench-"))
    keys = Path(tempfile.mkdtemp(prefix="gatehouse-bench-keys-"))  # see start_sshd
    started = time.monotonic()
    run = Run()
    keep = args.keep
    try:
        say(f"{mode} run of {', '.join(rows)}; work directory {dir}")
        if any(row in CLUSTER_ROWS for row in rows):
            try:
                sshd, gh = _start_all(dir, keys)
            except HarnessError as exc:
                keep = True
                print(f"bench: cannot run: {exc} (logs in {dir})", file=sys.stderr)
                return 2
            say(f"sshd and both clusters up in {time.monotonic() - started:.1f} s")
            try:
                _clusters_rows(run, gh, sshd, dir, sizes, rows)
            except HarnessError as exc:  # the fill or the restart: the rest is still reported
                keep = True
                say(f"stopped early: {exc} (logs in {dir})")
            finally:
                stop_all()
        if "issuance" in rows:
            run.group("issuance", lambda: issuance.measure(sizes.issue_seconds, sizes.repeats))
        if "postgres" in rows:
            run.group("postgres", lambda: pgissuance.measure(sizes.issue_seconds,
                                                             sizes.repeats))
        if "pg_cluster" in rows:
            run.group("pg_cluster", lambda: pgcluster.measure(
                dir, sizes.nodes, sizes.tunnel_nodes, sizes.pg_windows, sizes.pg_logins))
    except KeyboardInterrupt:
        print(f"bench: interrupted; every process it started is stopped (logs in {dir})",
              file=sys.stderr)
        keep = True
        return 130
    except Exception:
        keep = True
        (dir / "error.txt").write_text(traceback.format_exc())
        say(f"the traceback is in {dir / 'error.txt'}")
        raise
    finally:
        stop_all(final=True)
        shutil.rmtree(keys, ignore_errors=True)
        if not keep:
            shutil.rmtree(dir, ignore_errors=True)
    present = {f.id for f in run.figures}
    for row in rows:
        run.figures += [missing_figure(id, name, unit, target, "not measured: the run "
                                       "stopped before this row (see above)")
                        for id, name, unit, target in ROWS[row] if id not in present]
    figures = _order(run.figures)
    print(table(figures))
    met, targets = counted(figures)
    print(f"\n{mode} run: {time.monotonic() - started:.0f} s on {os.cpu_count()} cores; "
          f"{met} of {targets} targets met")
    if args.json:
        write_json(args.json, mode, figures)
    return 0

