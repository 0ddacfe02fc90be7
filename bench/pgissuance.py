"""The PostgreSQL issuance row: user certificates issued per second with two auths
on one PostgreSQL 15, against one auth on the same PostgreSQL in the same run.

The bench starts its own PostgreSQL (gatehouse.process.pgserver: unprivileged, a
loopback port picked at run time, a fresh database). Each auth is a process of its
own (as two `gatehouse start` on one `storage.conn_string` would be) that opens the
backend and the AuthServer as the daemon does and calls ``issue_user_certs``
CONCURRENCY at once for a fixed time, as bench/issuance.py does on SQLite (login's
argon2 excluded). Each repeat runs one auth, then two at once; the figure is the
two-auth rate and its ratio to the one-auth rate of the same repeat. The note gives
the CPU of each auth process and of PostgreSQL (the postmaster and its backends)
over the two-auth windows, as % of a core.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric import ed25519

from bench.figures import Figure, paired_ratios, ratio_figure
from bench.issuance import CONCURRENCY, issue_for
from bench.sampling import process_cpu
from gatehouse.auth.server import AuthServer
from gatehouse.backend import open_backend
from gatehouse.clock import SystemClock
from gatehouse.process.harness import HarnessError
from gatehouse.process.pgserver import PgServer
from gatehouse.types.resource import Metadata
from gatehouse.types.user import User, UserSpec

TARGET = 1.6  # two auths' rate / one auth's, on the same PostgreSQL
CLUSTER = "bench-pg-issuance"
USER = "bench"
JOIN = 120  # seconds an auth process may take to open, issue and report
REPO = Path(__file__).resolve().parent.parent


async def _prime(dsn: str) -> None:
    """Create the cluster's CAs and the user once, before any auth races to."""
    clock = SystemClock()
    backend = await open_backend("postgres", path=None, clock=clock, conn_string=dsn)
    try:
        auth = await AuthServer.open(backend, clock, CLUSTER, None)
        await auth.users.create(User(metadata=Metadata(name=USER),
                                     spec=UserSpec(roles=["access"],
                                                   traits={"logins": ["root"]})))
    finally:
        await backend.close()


async def _issue(dsn: str, seconds: float, concurrency: int) -> tuple[int, float, float]:
    """One auth process: open, warm up, say ``ready``, wait for a line on stdin, issue
    for ``seconds``; returns (certificates, CPU seconds, seconds)."""
    clock = SystemClock()
    backend = await open_backend("postgres", path=None, clock=clock, conn_string=dsn)
    try:
        auth = await AuthServer.open(backend, clock, CLUSTER, None)
        user = await auth.users.get(USER)
        key = ed25519.Ed25519PrivateKey.generate().public_key()
        await auth.issue_user_certs(user, key, ttl=None)  # warm-up: connections, caches
        print("ready", flush=True)
        await asyncio.to_thread(sys.stdin.readline)

        return await issue_for(auth, user, key, seconds, concurrency)
    finally:
        await backend.close()


def _postgres_cpu(server: PgServer) -> float:
    """CPU seconds of the postmaster, its live backends and those it reaped."""
    postmaster = int((server.data / "postmaster.pid").read_text().split()[0])
    total = process_cpu(postmaster, children=True)
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            if ppid == postmaster:
                total += process_cpu(int(entry.name))
        except (OSError, ValueError):
            continue  # gone meanwhile
    return total


def _run(server: PgServer, dsn: str, auths: int, seconds: float,
         concurrency: int) -> tuple[float, list[float], float]:
    """One window of ``auths`` auth processes at once: (certs/s, each auth's CPU share
    of a core, PostgreSQL's)."""
    argv = [sys.executable, "-m", "bench.pgissuance", dsn, str(seconds), str(concurrency)]
    procs = [subprocess.Popen(argv, cwd=REPO, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              text=True) for _ in range(auths)]
    try:
        for proc in procs:  # every auth has opened and warmed up
            assert proc.stdout is not None and proc.stdin is not None
            if proc.stdout.readline().strip() != "ready":
                raise HarnessError(f"an auth process did not start (exit {proc.wait(JOIN)})")
        pg_before, begun = _postgres_cpu(server), time.perf_counter()
        for proc in procs:
            assert proc.stdin is not None
            proc.stdin.write("go\n")
            proc.stdin.flush()
        outputs = [proc.communicate(timeout=JOIN)[0] for proc in procs]
        pg = (_postgres_cpu(server) - pg_before) / (time.perf_counter() - begun)
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait(JOIN)
    results = [tuple(map(float, out.split())) for out in outputs]
    rate = sum(count / elapsed for count, _, elapsed in results)
    return rate, [cpu / elapsed for _, cpu, elapsed in results], pg


def measure(seconds: float, repeats: int, concurrency: int = CONCURRENCY) -> list[Figure]:
    server = PgServer()
    try:
        server.start()
        dsn = server.new_database()
        asyncio.run(_prime(dsn))
        ones, twos, shares, pgs = [], [], [], []
        for _ in range(repeats):
            one, _, _ = _run(server, dsn, 1, seconds, concurrency)
            two, share, pg = _run(server, dsn, 2, seconds, concurrency)
            ones.append(one)
            twos.append(two)
            shares.append(share)
            pgs.append(pg)
    finally:
        server.remove()
    cpu = "; ".join(f"{' + '.join(f'{s:.0%}' for s in share)} auths, {pg:.0%} PostgreSQL"
                    for share, pg in zip(shares, pgs, strict=True))
    ratios = paired_ratios(twos, ones)
    return [ratio_figure(
        "pg_issuance_two_auths", "user certificates issued per second, two auths on one "
        "PostgreSQL vs one", twos, ones, "certs/s", limit=TARGET, better="higher",
        peer="one auth",
        note=f"each auth a process calling AuthServer.issue_user_certs, {concurrency} at once, "
             f"{seconds:g} s per repeat, on PostgreSQL 15 started by the bench; per-repeat "
             f"ratios {', '.join(f'{r:.2f}' for r in ratios)}; CPU of a core over the two-auth "
             f"windows: {cpu} (os.cpu_count() = {os.cpu_count()})")]


if __name__ == "__main__":  # one auth process of _run
    count, cpu, elapsed = asyncio.run(_issue(sys.argv[1], float(sys.argv[2]),
                                             int(sys.argv[3])))
    print(count, cpu, elapsed, flush=True)
