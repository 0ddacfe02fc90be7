"""Rows 4-5: throughput of one stream from a leaf node, against `ssh -J` (and from a
root node in tunnel mode, and from the leaf node with OpenSSH's client through `gsh
config`, against the same `ssh -J` runs). A reference row runs the `ssh -F` path's
hops with every relay in C (bench/relays.py): what the design carries here.

The node runs `head -c N /dev/zero`; the client's stdout is a pipe that this
process drains and counts (what `| wc -c` does). The rate is taken from the
first byte to the last, so that connection set-up (rows 1-3) does not dilute
it. Between repeats the harness waits for the Gatehouse processes to go quiet
(the node uploads each session's recording to its auth when it ends).

Each run also counts the CPU seconds per GiB of every process that carries the
stream: the client (gsh or ssh, from wait4 when it exits), and from
/proc/PID/stat before and after: the root's and the leaf's auth+proxy and the
leaf's node (until they are quiet again: the recording's upload counts), or
sshd with the connections it reaped (both hops of `-J`, and the command's own
`head`, which a node runs as a child that its figure leaves out).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import select
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from functools import partial

from bench.clusters import LEAF, LEAF_UNRECORDED, NODE, ROOT, TUNNEL_NODE, Gatehouse
from bench.figures import (
    REFERENCE,
    Figure,
    absolute_figure,
    median_by_key,
    missing_figure,
    paired_ratios,
    ratio_figure,
    reference_figure,
)
from bench.relays import Relays, start_relays
from bench.sampling import (
    adopting_orphans,
    descendants,
    process_cpu,
    settle,
    wait_adopted,
    wait_child,
    wait_childless,
)
from bench.sshd import CIPHER, OpenSSH
from gatehouse.process.harness import GSH, Cluster, HarnessError, in_parallel, stop_all

F_SETPIPE_SZ = 1031  # fcntl.F_SETPIPE_SZ (Linux), not exported before Python 3.13
PIPE_SIZE = 1 << 20
CHUNK = 1 << 20
MIN_RATE = 2e6  # bytes/s: slower than this and the stream is given up on
UPLOAD_RATE = 10e6  # bytes/s: the least we wait for, for the recording to leave the node
GIB = 1 << 30


@dataclass(frozen=True)
class Run:
    rate: float  # MB/s
    cpu_per_gib: dict[str, float]  # CPU seconds per GiB streamed, by process


def stream_rate(argv: list[str], size: int, env: dict[str, str] | None = None
                ) -> tuple[float, float]:
    """MB/s (10^6 bytes) from first to last byte of ``size`` bytes on argv's stdout,
    and the CPU seconds the command used, with its descendants at the first byte (ssh's
    ProxyCommand: this process adopts them, see sampling.adopting_orphans). On failure
    the command's process group (its helpers with it) is killed."""
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=env, start_new_session=True)
    assert proc.stdout is not None and proc.stderr is not None
    fd = proc.stdout.fileno()
    try:
        fcntl.fcntl(fd, F_SETPIPE_SZ, PIPE_SIZE)
        deadline = time.monotonic() + 30 + size / MIN_RATE
        got, first_len, first_at, helpers = 0, 0, 0.0, []
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise HarnessError(f"`{' '.join(argv)}` streamed {got} of {size} bytes in time")
            if not select.select([fd], [], [], left)[0]:
                continue
            data = os.read(fd, CHUNK)
            if not data:
                break
            if not got:
                first_at, first_len = time.perf_counter(), len(data)
                helpers = descendants(proc.pid)
            got += len(data)
        last_at = time.perf_counter()
        rc, cpu = wait_child(proc, 10)
        cpu += wait_adopted(helpers, 10)
    except BaseException:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)  # its own session: ssh and its helpers
        with contextlib.suppress(HarnessError):
            wait_adopted(helpers, 5)
        raise
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        err = proc.stderr.read().decode(errors="replace").strip()
        proc.stdout.close()
        proc.stderr.close()
    if rc != 0 or got != size:
        raise HarnessError(f"`{' '.join(argv)}` exited {rc} after {got} of {size} bytes: "
                         f"{(err.splitlines() or ['(no stderr)'])[-1]}")
    return (got - first_len) / (last_at - first_at) / 1e6, cpu


def run_stream(argv: list[str], size: int, client: str, daemons: dict[str, tuple[int, bool]],
               after: Callable[[], None], env: dict[str, str] | None = None) -> Run:
    """One stream, and the CPU per GiB of the client and of ``daemons`` (name: pid,
    whether its reaped children count), read before it and once ``after`` returns."""
    before = {name: process_cpu(pid, children=kids) for name, (pid, kids) in daemons.items()}
    rate, client_cpu = stream_rate(argv, size, env)
    after()
    cpu = {client: client_cpu}
    cpu |= {name: process_cpu(pid, children=kids) - before[name]
            for name, (pid, kids) in daemons.items()}
    return Run(rate, {name: seconds * GIB / size for name, seconds in cpu.items()})


def _last_recorded(cluster: Cluster) -> bool | None:
    """Whether the cluster's last session.start says the session was recorded."""
    res = cluster.gatectl("events", "--type=session.start", "--since=10m", "--format=json")
    events = json.loads(res.out) if res.rc == 0 else []
    return events[0]["fields"].get("recorded") if events else None  # newest first


def measure(gh: Gatehouse, sshd: OpenSSH, size: int, repeats: int) -> list[Figure]:
    """Row 4 from the leaf node (recorded, the default), against `ssh -J`; row 5 from
    the node of a second leaf set up the same way but with session_recording: off.
    The three alternate, so that each repeat sees the machine in the same state."""
    command = f"head -c {size} /dev/zero"

    def gsh(cluster: str, node: str = NODE) -> list[str]:
        return [str(GSH), "ssh", f"--cluster={cluster}", f"root@{node}", command]

    upload = 20 + size / UPLOAD_RATE
    quiet = partial(settle, gh.quiet_pids(), timeout=upload)

    def path(leaf: Cluster) -> dict[str, tuple[int, bool]]:
        node = leaf.nodes[NODE]
        assert gh.root.daemon is not None and leaf.daemon is not None  # started
        return {"root auth+proxy": (gh.root.daemon.pid, False),
                f"{leaf.name} auth+proxy": (leaf.daemon.pid, False),
                f"{leaf.name} node": (node.pid, False)}

    def tunnel_path() -> dict[str, tuple[int, bool]]:
        assert gh.root.daemon is not None  # started
        return {"root auth+proxy": (gh.root.daemon.pid, False),
                f"{ROOT} tunnel node": (gh.root.nodes[TUNNEL_NODE].pid, False)}

    # OpenSSH's client through `gsh config`: gsh is its ProxyCommand (counted with ssh,
    # as `-J`'s second ssh is).
    via_config = ["ssh", "-F", str(gh.ssh_config), "-o", "BatchMode=yes",
                  "-o", "GlobalKnownHostsFile=/dev/null", "-o", f"Ciphers={CIPHER}",
                  f"root@{NODE}.{LEAF}", command]
    openssh = {"sshd (both hops, with the command)": (sshd.daemon.pid, True)}
    sshd_idle = partial(wait_childless, sshd.daemon.pid, 10)
    # The reference row is not judged: if it cannot run, the judged rows still do.
    relays: Relays | None = None
    unrelayed = ""  # why the reference row was not measured
    try:
        relays = start_relays(sshd.dir.parent / "relays", sshd)
    except HarnessError as exc:
        unrelayed = str(exc)
    recorded, theirs, unrecorded, tunneled, configured, relayed = [], [], [], [], [], []
    try:
        with adopting_orphans():  # ssh's ProxyCommand counts with ssh
            for _ in range(repeats):
                tunneled.append(run_stream(gsh(ROOT, TUNNEL_NODE), size, "gsh", tunnel_path(),
                                           quiet, gh.client.env()))
                recorded.append(run_stream(gsh(LEAF), size, "gsh", path(gh.leaf), quiet,
                                           gh.client.env()))
                theirs.append(run_stream(sshd.ssh(command, jump=True), size, "ssh -J client",
                                         openssh, sshd_idle))
                unrecorded.append(run_stream(gsh(LEAF_UNRECORDED), size, "gsh",
                                             path(gh.unrecorded), quiet, gh.client.env()))
                configured.append(run_stream(via_config, size, "ssh + gsh proxy",
                                             path(gh.leaf), quiet, gh.client.env()))
                if relays is not None and not unrelayed:
                    try:
                        relayed.append(run_stream(relays.ssh(command), size, "ssh",
                                                  relays.pids(), sshd_idle))
                    except HarnessError as exc:
                        unrelayed = str(exc)
    finally:
        if relays is not None:
            stop_all(relays.processes.values())

    def check(cluster: Cluster, expected: bool) -> None:
        if _last_recorded(cluster) is not expected:
            raise HarnessError(f"{cluster.name}'s node did not record as configured "
                             f"(session_recording: {cluster.session_recording})")

    in_parallel(partial(check, gh.leaf, True), partial(check, gh.unrecorded, False))
    mib = size >> 20
    on, off = [r.rate for r in recorded], [r.rate for r in unrecorded]
    leaf = ratio_figure("stream_leaf", f"stream {mib:,} MiB from a leaf node vs `ssh -J`",
                        on, [r.rate for r in theirs], "MB/s", limit=0.8, better="higher",
                        note="recorded on the leaf node, as every session is by default")
    recording = absolute_figure(
        "stream_recording", "the same stream, recording on vs off", paired_ratios(on, off),
        "x", limit=0.95, better="higher", target="≥ 0.95x of recording off",
        note=f"each recorded run over the unrecorded run of its repeat; "
             f"{sorted(off)[len(off) // 2]:.0f} MB/s from a second leaf's node, set up the "
             "same way but with auth_service.session_recording: off (that node audits its "
             "sessions as not recorded)")
    tunnel = ratio_figure("stream_tunnel_node",
                          f"stream {mib:,} MiB from a root tunnel-mode node vs `ssh -J`",
                          [r.rate for r in tunneled], [r.rate for r in theirs], "MB/s",
                          limit=0.8, better="higher",
                          note="gsh -> root proxy -> the node's reverse tunnel -> node; "
                               "recorded, as every session is by default")
    config = ratio_figure("stream_openssh_config",
                          f"stream {mib:,} MiB from a leaf node, `ssh -F <gsh config>` vs "
                          "`ssh -J`", [r.rate for r in configured], [r.rate for r in theirs],
                          "MB/s", limit=0.8, better="higher",
                          note="OpenSSH's client with `gsh proxy ssh` as its ProxyCommand; "
                               "recorded on the leaf node")
    floor_name = (f"stream {mib:,} MiB over the `ssh -F` path's hops as C relays vs "
                  "`ssh -J`")
    floor = missing_figure("stream_c_relays", floor_name, "MB/s", REFERENCE,
                           f"not measured: {unrelayed}") if unrelayed else reference_figure(
        "stream_c_relays", floor_name, [r.rate for r in relayed], [r.rate for r in theirs],
        "MB/s",
        note="OpenSSH's client -> HAProxy (OpenSSL, TLS 1.3) in place of gsh proxy, the root "
             "proxy and the leaf proxy -> sshd in place of the node, not recorded: the same "
             "hops and encryptions with every relay in C (bench/relays.py)")
    return [replace(leaf, cpu_per_gib=median_by_key([r.cpu_per_gib
                                                     for r in recorded + theirs])),
            replace(config, cpu_per_gib=median_by_key([r.cpu_per_gib for r in configured])),
            replace(tunnel, cpu_per_gib=median_by_key([r.cpu_per_gib for r in tunneled])),
            replace(recording, cpu_per_gib=median_by_key([r.cpu_per_gib
                                                          for r in unrecorded])),
            replace(floor, cpu_per_gib=median_by_key([r.cpu_per_gib for r in relayed]))]
