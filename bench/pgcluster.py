"""The PostgreSQL cluster rows: two auths on one PostgreSQL 15 (started by the bench,
as for the issuance row), a proxy of its own, the backend filled with many listed
nodes of which some heartbeat for real, as direct nodes do (every
NODE_HEARTBEAT, an HTTPS call with the node's own host certificate, half of them
to each auth, from ``python -m bench.nodebeats``: a process of its own).

Measured with the heartbeats running: the two auths' CPU over whole heartbeat
periods (as % of one core, summed); the latency of password logins through the proxy
(a fresh TLS connection, the password's argon2 check and the certificates, as `gsh
login` makes them; one every LOGIN_GAP seconds; the full run times 200, so that its
nearest-rank p99 is the third slowest, not the slowest as of the 60 it timed before);
`gsh ls --limit=100` timed from the outside as row 8 is. A quick run heartbeats fewer
nodes, each as much more often as makes the target's rate (1,000 nodes every 2.5 s for
10,000 every 25 s), so that the auths see as many heartbeats a second, batched as
alike, and the CPU is measured, not projected. A linear projection from 1,000 nodes
at the real period overstated it twofold: on one machine, one after another, it read
119 % of a core, 10,000 nodes every 25 s measured 61.5 %, and this way 58.4 % (few
heartbeats at once share few statements: services/_coalesce.py).
"""

from __future__ import annotations

import asyncio
import json
import statistics
import sys
import time
import uuid
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ed25519

from bench.figures import Figure, absolute_figure
from bench.fill import add_nodes
from bench.sampling import cpu_seconds, settle
from gatehouse.auth.server import AuthServer
from gatehouse.backend import open_backend
from gatehouse.client.api import APIClient
from gatehouse.client.authclient import AuthClient
from gatehouse.clock import SystemClock
from gatehouse.pki import sshcert, tls, x509
from gatehouse.process.harness import Client, Cluster, HarnessError, Process, wait_for
from gatehouse.process.pgserver import PgServer
from gatehouse.wire.authapi import LoginRequest
from gatehouse.wire.names import NODE_HEARTBEAT

CLUSTER = "bench-pg.example.com"
USER = "bench"
TARGET_NODES = 100_000
TARGET_BEATING = 10_000
LS_LIMIT = 1.0  # seconds
AUTH_CPU = 50.0  # % of one core, both auths together
LOGIN_P99 = 250.0  # ms
LOGIN_GAP = 0.5  # seconds between two logins
WINDOW = 10.0  # seconds at least of each CPU window: whole heartbeat periods
BATCH = 50  # nodes certified at once
REPO = Path(__file__).resolve().parent.parent


class _BusyCluster(Cluster):
    """The cluster as an operator of a busy entry point configures it: logins from one
    address (the bench's) are not throttled after the default 30 a minute."""

    def settings(self) -> dict[str, Any]:
        data = super().settings()
        data["auth_service"]["limits"].update(attempts_burst=10_000,
                                              attempts_per_minute=100_000)
        return data


async def _fill(dsn: str, listed: int, beating: int, out: Path) -> list[str]:
    """``listed`` nodes listed (no heartbeats), and ``beating`` nodes registered as a
    joined node is (a host certificate each, sharing one key, written to ``out``);
    returns lines ``CERT_FILE HOSTNAME`` for the heartbeat client."""
    out.mkdir(parents=True, exist_ok=True)
    key = ed25519.Ed25519PrivateKey.generate()
    (out / "node-key.pem").write_text(x509.pem_key(key))
    clock = SystemClock()
    backend = await open_backend("postgres", path=None, clock=clock, conn_string=dsn)
    try:
        auth = await AuthServer.open(backend, clock, CLUSTER, None)
        await add_nodes(auth, listed)

        async def certify(i: int) -> str:
            name = f"beat-{i:05d}"
            certs = await auth.certify_host("node", str(uuid.uuid4()), name, key.public_key(),
                                            [f"127.0.0.1:{20_000 + i % 40_000}"], [])
            path = out / f"{name}.pem"
            path.write_text(certs.tls_cert)
            return f"{path} {name}"

        lines: list[str] = []
        for start in range(0, beating, BATCH):
            lines += await asyncio.gather(*(certify(i) for i in
                                            range(start, min(beating, start + BATCH))))
        return lines
    finally:
        await backend.close()


async def _logins(proxy: str, password: str, count: int) -> list[float]:
    """``count`` password logins, LOGIN_GAP apart; each one's seconds."""
    host = proxy.rpartition(":")[0]
    ctx = tls.client_context(None)  # the bench's own cluster: no CA pinned
    public_key = sshcert.public_key_line(ed25519.Ed25519PrivateKey.generate().public_key())
    times = []
    for _ in range(count):
        begun = time.perf_counter()
        async with AuthClient(APIClient(proxy, ctx, server_hostname=host)) as api:
            await api.login(LoginRequest(user=USER, password=password, otp="", ttl=None,
                                         public_key=public_key))
        times.append(time.perf_counter() - begun)
        await asyncio.sleep(LOGIN_GAP)
    return times


def _auth_cpu(pids: list[int], seconds: float) -> float:
    """The auths' CPU over ``seconds``, as % of one core."""
    before = sum(cpu_seconds(p) for p in pids)
    time.sleep(seconds)
    return (sum(cpu_seconds(p) for p in pids) - before) / seconds * 100


def _p99(samples: list[float]) -> float:
    """The nearest-rank 99th percentile."""
    ordered = sorted(samples)
    return ordered[max(0, -(-99 * len(ordered) // 100) - 1)]


def measure(dir: Path, listed: int, beating: int, repeats: int, logins: int) -> list[Figure]:
    server = PgServer()
    try:
        server.start()
        dsn = server.new_database()
        cluster = _BusyCluster(dir / "pg", name=CLUSTER, ssh=False, proxy_apart=True,
                               extra_auths=("auth2",),
                               storage={"type": "postgres", "conn_string": dsn})
        try:
            cluster.start()
            return _measure(cluster, dsn, dir, listed, beating, repeats, logins)
        finally:
            cluster.stop()
    finally:
        server.remove()


def _measure(cluster: Cluster, dsn: str, dir: Path, listed: int, beating: int,
             repeats: int, count: int) -> list[Figure]:
    password = cluster.add_user(USER, roles="access", logins="root")
    home = dir / "pg-home"
    home.mkdir()
    client = Client(home, cluster.proxy)
    client.login(USER, password).ok()
    certs = dir / "pg-beating.txt"
    certs.write_text("\n".join(asyncio.run(_fill(dsn, listed - beating, beating,
                                                 dir / "pg-nodes"))) + "\n")
    assert cluster.daemon is not None  # started
    pids = [cluster.daemon.pid, cluster.auths["auth2"].pid]
    settle(pids, timeout=30)
    period = NODE_HEARTBEAT * beating / TARGET_BEATING  # the target's heartbeats a second
    window = period * max(1, round(WINDOW / period))
    idle = _auth_cpu(pids, window)
    out = dir / "pg-beats.json"
    auths = ",".join([f"127.0.0.1:{cluster.auth_port}",
                      f"127.0.0.1:{cluster.auth_ports['auth2']}"])
    beats = Process("node heartbeats", [
        sys.executable, "-m", "bench.nodebeats", "--auths", auths, "--certs", str(certs),
        "--key", str(dir / "pg-nodes" / "node-key.pem"), "--cluster", CLUSTER,
        "--period", str(period), "--out", str(out)], dir / "pg-beats.log",
        cwd=REPO).start()
    try:
        # Every node has made its first heartbeat (and its TLS connection).
        wait_for("every node's first heartbeat", lambda: out.exists() and json.loads(
            out.read_text())["sent"] >= beating, timeout=period + 120)
        cpu = [_auth_cpu(pids, window) for _ in range(repeats)]
        logins = asyncio.run(_logins(cluster.proxy, password, count))
        listings = []
        for _ in range(repeats):
            res = client.gsh("ls", "--limit=100", timeout=60)
            if res.rc != 0:
                raise HarnessError(f"`gsh ls --limit=100` exited {res.rc}: {res.err.strip()}")
            listings.append(res.seconds)
        status = json.loads(out.read_text())
    finally:
        beats.stop()
    failed = sum(status["errors"].values())
    if failed > status["sent"] / 100:  # not a load the auths carry
        raise HarnessError(f"{failed:,} heartbeats failed ({status['sent']:,} sent): "
                           f"{next(iter(status['errors']))}")
    rate = (f"{beating:,} of them heartbeating every {period:g} s as direct nodes do"
            + (f" (the rate of {TARGET_BEATING:,} every {NODE_HEARTBEAT:g} s)"
               if beating != TARGET_BEATING else ""))
    where = (f"two auths on one PostgreSQL 15 (started by the bench), {listed:,} nodes "
             f"listed, {rate}, half to each auth")
    return [
        absolute_figure(
            "pg_ls_limit", f"`gsh ls --limit=100` on PostgreSQL, {listed:,} nodes",
            listings, "s", limit=LS_LIMIT, better="lower", note=where),
        absolute_figure(
            "pg_heartbeat_cpu",
            f"auths' CPU on PostgreSQL, heartbeats at {TARGET_BEATING:,} nodes' rate",
            cpu, "% of a core", limit=AUTH_CPU, better="lower",
            note=(f"both auths together over {window:g} s windows, {rate}; "
                  f"{idle:.1f}% without them; {status['sent']:,} heartbeats sent, "
                  f"{failed:,} failed"
                  + (f" (first: {next(iter(status['errors']))})" if failed else ""))),
        absolute_figure(
            "pg_login_p99", "password login p99 under that load, on PostgreSQL",
            [_p99(logins) * 1000], "ms", limit=LOGIN_P99, better="lower",
            note=(f"{len(logins)} logins through the proxy, {LOGIN_GAP:g} s apart, each a "
                  f"fresh TLS connection, argon2 and the certificates; median "
                  f"{statistics.median(logins) * 1000:.0f} ms, slowest "
                  f"{max(logins) * 1000:.0f} ms")),
    ]
