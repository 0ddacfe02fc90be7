"""A session-rate load generator (run as ``python -m bench.loadgen``; one of several
processes, so that the load is spread over the cores like the servers' work).

Closed loop: ``--workers`` sessions run at once, each worker starting its
next session as soon as the last one ended, for ``--seconds``; the rate they
sustain is the server's capacity at that concurrency, and the setup latency
is what a user waits at that load. A session is: connect, authenticate, open
an exec channel for `true` (its *setup* ends here), wait for the exit
status, close.

- ``gatehouse``: through the root proxy to a leaf node with Gatehouse's own
  client pieces (``ProxyTunnel`` + asyncssh, as `gsh ssh` connects) and the
  profile of `gsh login` (``GATEHOUSE_HOME``).
- ``openssh``: asyncssh to sshd through one sshd jump (as `ssh -J`).

Writes JSON: ``samples`` as [start offset, setup s, total s] (nulls for a
session that failed or did not finish), ``errors`` by message, and the
process's own CPU seconds.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import asyncssh

CIPHERS = ["aes128-gcm@openssh.com"]
Session = Callable[[], Awaitable[float]]  # runs one session; returns its setup instant


async def _exec_true(conn: asyncssh.SSHClientConnection) -> float:
    async with conn:
        proc = await conn.create_process("true", encoding=None)
        setup = time.monotonic()
        await proc.wait(check=False, timeout=30)
    return setup


def gatehouse_session(node: str, cluster: str, login: str) -> Session:
    from gatehouse.client.dialer import ProxyTunnel
    from gatehouse.client.profile import Profile
    from gatehouse.wire.dial import DialRequest
    from gatehouse.wire.names import ALPN_SSH

    profile = Profile.load()
    ident = profile.identity
    key = asyncssh.import_private_key(ident.key_file.read_bytes())
    cert = asyncssh.import_certificate(ident.ssh_cert_line())
    host_ca = asyncssh.import_public_key(profile.host_ca(cluster))
    ctx = profile.ssl_context([ALPN_SSH])

    async def session() -> float:
        tunnel = ProxyTunnel(profile.proxy, ctx, profile.server_name,
                             DialRequest(target=node, cluster=cluster))
        conn = await asyncssh.connect(
            node, 22, tunnel=tunnel, username=login, client_keys=[(key, cert)],
            known_hosts=([], [host_ca], []), agent_path=None, config=None,
            preferred_auth=["publickey"], connect_timeout=30, encryption_algs=CIPHERS)
        return await _exec_true(conn)

    return session


def openssh_session(port: int, key_file: Path, host_key_file: Path, login: str) -> Session:
    key = asyncssh.read_private_key(key_file)
    host_key = asyncssh.read_public_key(host_key_file)
    opts: dict[str, Any] = dict(
        port=port, username=login, client_keys=[key], known_hosts=([host_key], [], []),
        agent_path=None, config=None, preferred_auth=["publickey"], connect_timeout=30,
        encryption_algs=CIPHERS)

    async def session() -> float:
        async with await asyncssh.connect("127.0.0.1", **opts) as jump:
            # 127.0.0.2: the same sshd, as `ssh -J` reaches it (see bench/sshd.py).
            seconds: float = await _exec_true(
                await asyncssh.connect("127.0.0.2", tunnel=jump, **opts))
        return seconds

    return session


async def generate(session: Session, *, workers: int, seconds: float, start_at: float,
                   grace: float) -> dict[str, Any]:
    """Run ``workers`` session loops for ``seconds`` from wall-clock ``start_at``."""
    errors: Counter[str] = Counter()
    samples: list[list[float | None]] = []
    t0 = time.monotonic() + (start_at - time.time())  # the same instant in every process
    await asyncio.sleep(max(0.0, t0 - time.monotonic()))
    end = t0 + seconds

    async def worker() -> None:
        while (begin := time.monotonic()) < end:
            sample: list[float | None] = [begin - t0, None, None]
            samples.append(sample)
            try:
                setup = await session()
                sample[1:] = [setup - begin, time.monotonic() - begin]
            except Exception as exc:  # counted and reported, the load goes on
                errors[f"{type(exc).__name__}: {exc}"[:200]] += 1
                await asyncio.sleep(0.05)  # a refusal must not become a busy loop

    tasks = [asyncio.create_task(worker()) for _ in range(workers)]
    await asyncio.wait(tasks, timeout=seconds + grace)
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    cpu = os.times()
    return {"samples": samples, "errors": dict(errors), "cpu": cpu.user + cpu.system}


def main() -> None:
    p = argparse.ArgumentParser(prog="python -m bench.loadgen", description=__doc__)
    p.add_argument("side", choices=["gatehouse", "openssh"])
    p.add_argument("--workers", type=int, required=True, help="sessions at once")
    p.add_argument("--seconds", type=float, required=True)
    p.add_argument("--start-at", type=float, default=0.0, help="Unix time to start at")
    p.add_argument("--grace", type=float, default=5.0, help="wait for stragglers (s)")
    p.add_argument("--login", default="root")
    p.add_argument("--node", default="node1")
    p.add_argument("--cluster", default="")
    p.add_argument("--port", type=int, default=22)
    p.add_argument("--key", type=Path)
    p.add_argument("--host-key", type=Path)
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args()
    if args.side == "gatehouse":
        session = gatehouse_session(args.node, args.cluster, args.login)
    else:
        session = openssh_session(args.port, args.key, args.host_key, args.login)
    result = asyncio.run(generate(session, workers=args.workers, seconds=args.seconds,
                                  start_at=args.start_at, grace=args.grace))
    args.out.write_text(json.dumps(result))


if __name__ == "__main__":
    main()
