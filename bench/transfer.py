"""Rows for file transfer: OpenSSH's `scp` of one file to and from a leaf node through
`gsh config` (gsh as its ProxyCommand; the node serves sftp with OpenSSH's
sftp-server as the login), against `scp -J` through our sshd.

The file is sparse (reading it costs no disk); each copy writes a real one, removed
after the run. The rate is the file's size over the whole command, connection
set-up included, for both sides alike. Gatehouse and OpenSSH alternate within each
repeat; between repeats the harness waits for Gatehouse to go quiet (the session's
audit and anything it uploads). CPU per GiB as in bench/stream.py: the client (scp
with ssh, from wait4: unlike the stream rows, it leaves out ssh's ProxyCommand, which
ssh does not wait for) and each process on the path.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable
from dataclasses import replace
from functools import partial
from pathlib import Path

from bench.clusters import LEAF, NODE, Gatehouse
from bench.figures import Figure, median_by_key, ratio_figure
from bench.sampling import process_cpu, settle, wait_child, wait_childless
from bench.sshd import CIPHER, OpenSSH
from bench.stream import GIB, MIN_RATE, UPLOAD_RATE, Run
from gatehouse.process.harness import HarnessError

__all__ = ["measure"]


def copy_rate(argv: list[str], size: int, env: dict[str, str] | None) -> tuple[float, float]:
    """MB/s of one copy of ``size`` bytes (the whole command), and its CPU seconds."""
    start = time.perf_counter()
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, env=env, start_new_session=True)
    assert proc.stderr is not None
    try:
        rc, cpu = wait_child(proc, 30 + size / MIN_RATE)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        raise HarnessError(f"`{' '.join(argv)}` did not finish in time") from None
    finally:
        err = proc.stderr.read().decode(errors="replace").strip()
        proc.stderr.close()
    seconds = time.perf_counter() - start
    if rc != 0:
        raise HarnessError(f"`{' '.join(argv)}` exited {rc}: "
                           f"{(err.splitlines() or ['(no stderr)'])[-1]}")
    return size / seconds / 1e6, cpu


def _copy(argv: list[str], size: int, client: str, daemons: dict[str, tuple[int, bool]],
          after: Callable[[], None], written: Path, env: dict[str, str] | None = None) -> Run:
    before = {name: process_cpu(pid, children=kids) for name, (pid, kids) in daemons.items()}
    rate, client_cpu = copy_rate(argv, size, env)
    after()
    if written.stat().st_size != size:
        raise HarnessError(f"`{' '.join(argv)}` wrote {written.stat().st_size} of {size} bytes")
    written.unlink()
    cpu = {client: client_cpu}
    cpu |= {name: process_cpu(pid, children=kids) - before[name]
            for name, (pid, kids) in daemons.items()}
    return Run(rate, {name: seconds * GIB / size for name, seconds in cpu.items()})


def measure(gh: Gatehouse, sshd: OpenSSH, dir: Path, size: int, repeats: int) -> list[Figure]:
    """scp to the leaf node and back from it, each against `scp -J`."""
    work = dir / "transfer"
    work.mkdir(exist_ok=True)
    source = work / "source.bin"
    with source.open("wb") as f:
        f.truncate(size)  # sparse
    put, got = work / "put.bin", work / "got.bin"
    gatehouse = ["scp", "-q", "-F", str(gh.ssh_config), "-o", "BatchMode=yes",
                 "-o", "GlobalKnownHostsFile=/dev/null", "-o", f"Ciphers={CIPHER}"]
    theirs = ["scp", "-q", "-F", str(sshd.dir / "ssh_config"), "-J",
              f"root@127.0.0.1:{sshd.port}", "-P", str(sshd.port)]
    node, peer = f"root@{NODE}.{LEAF}", "root@127.0.0.2"
    leaf = gh.leaf
    assert gh.root.daemon is not None and leaf.daemon is not None  # started
    path = {"root auth+proxy": (gh.root.daemon.pid, False),
            f"{leaf.name} auth+proxy": (leaf.daemon.pid, False),
            f"{leaf.name} node (with sftp-server)": (leaf.nodes[NODE].pid, True)}
    openssh = {"sshd (both hops, with sftp-server)": (sshd.daemon.pid, True)}
    quiet = partial(settle, gh.quiet_pids(), timeout=20 + size / UPLOAD_RATE)
    reaped = partial(wait_childless, sshd.daemon.pid, 10)
    env = gh.client.env()
    runs: dict[str, list[Run]] = {"put": [], "get": [], "put -J": [], "get -J": []}
    for _ in range(repeats):
        runs["put"].append(_copy([*gatehouse, str(source), f"{node}:{put}"], size,
                                 "scp + ssh + gsh proxy", path, quiet, put, env))
        runs["put -J"].append(_copy([*theirs, str(source), f"{peer}:{put}"], size,
                                    "scp -J client", openssh, reaped, put))
        runs["get"].append(_copy([*gatehouse, f"{node}:{source}", str(got)], size,
                                 "scp + ssh + gsh proxy", path, quiet, got, env))
        runs["get -J"].append(_copy([*theirs, f"{peer}:{source}", str(got)], size,
                                    "scp -J client", openssh, reaped, got))
    source.unlink()
    mib = size >> 20
    figures = []
    for way, name in (("put", f"scp {mib:,} MiB to a leaf node"),
                      ("get", f"scp {mib:,} MiB from a leaf node")):
        figure = ratio_figure(f"scp_leaf_{way}", f"{name}, through `gsh config` vs `scp -J`",
                              [r.rate for r in runs[way]], [r.rate for r in runs[f"{way} -J"]],
                              "MB/s", limit=0.8, better="higher",
                              note="whole command, connection set-up included")
        figures.append(replace(figure, cpu_per_gib=median_by_key(
            [r.cpu_per_gib for r in runs[way] + runs[f"{way} -J"]])))
    return figures
