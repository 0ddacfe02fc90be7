"""Row 9: user certificates issued per second by one auth, measured in-process.

`/v1/login` is dominated by the argon2 password check (deliberately slow), so
this measures issuance itself: ``AuthServer.issue_user_certs`` (role lookup,
an SSH and an X.509 certificate, the cert.create audit event, committed before
it returns) on the SQLite backend in a fresh data directory (the default
storage, opened as `gatehouse start` opens it), for a fixed time, CONCURRENCY
issuances at once in one event loop: an auth issues to many users at a time,
and one at a time the figure is the inverse of one issuance's latency, not the
auth's rate (each waits for its own commit, alone).
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric import ed25519

from bench.figures import Figure, absolute_figure
from gatehouse.auth.server import AuthServer
from gatehouse.backend import open_backend
from gatehouse.clock import SystemClock
from gatehouse.types.resource import Metadata
from gatehouse.types.user import User, UserSpec

TARGET = 2000.0
CONCURRENCY = 8  # issuances at once (logins of as many users), as the load row's sessions


async def issue_for(auth: AuthServer, user: User, key: ed25519.Ed25519PublicKey,
                    seconds: float, concurrency: int) -> tuple[int, float, float]:
    """Issue ``user``'s certificates, ``concurrency`` at once, for ``seconds``; returns
    (certificates, this process's CPU seconds, seconds)."""

    async def issuer(until: float) -> int:
        count = 0
        while time.perf_counter() < until:
            await auth.issue_user_certs(user, key, ttl=None)
            count += 1
        return count

    cpu, begun = time.process_time(), time.perf_counter()
    counts = await asyncio.gather(*(issuer(begun + seconds) for _ in range(concurrency)))
    return sum(counts), time.process_time() - cpu, time.perf_counter() - begun


async def _rates(seconds: float, repeats: int, data: Path, concurrency: int) -> list[float]:
    clock = SystemClock()
    backend = await open_backend("sqlite", path=data / "backend.sqlite", clock=clock)
    try:
        auth = await AuthServer.open(backend, clock, "bench-issuance", data / "recordings")
        user = User(metadata=Metadata(name="bench"),
                    spec=UserSpec(roles=["access"], traits={"logins": ["root"]}))
        await auth.users.create(user)
        key = ed25519.Ed25519PrivateKey.generate().public_key()
        await auth.issue_user_certs(user, key, ttl=None)  # warm-up

        rates = []
        for _ in range(repeats):
            count, _cpu, elapsed = await issue_for(auth, user, key, seconds, concurrency)
            rates.append(count / elapsed)
        return rates
    finally:
        await backend.close()


def measure(seconds: float, repeats: int, concurrency: int = CONCURRENCY) -> list[Figure]:
    with tempfile.TemporaryDirectory(prefix="gatehouse-bench-issuance-") as data:
        rates = asyncio.run(_rates(seconds, repeats, Path(data), concurrency))
    return [absolute_figure(
        "cert_issuance", "user certificates issued per second (one auth)", rates, "certs/s",
        limit=TARGET, better="higher",
        note=f"in-process AuthServer.issue_user_certs on SQLite (the default), {concurrency} at "
             f"once, {seconds:g} s per repeat (SSH + X.509 certificate and its audit event, "
             "committed; login's argon2 excluded)")]
