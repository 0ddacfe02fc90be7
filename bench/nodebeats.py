"""The presence heartbeats of simulated tunnel-mode nodes (for ``bench.tunnelclient``).

A tunnel-mode node heartbeats its auth through its proxy's single TLS port: an HTTPS
``heartbeat`` call (wire/authapi.py's route), with its host certificate, every
``TUNNEL_NODE_HEARTBEAT`` (wire/names.py, node/service.py). Its HTTP client keeps a
connection for KEEPALIVE seconds (aiohttp's default): a heartbeat sooner than that
reuses it, a later one opens a new one. Here each simulated node does the same with
a minimal HTTP/1.1 client (10,000 aiohttp sessions would cost this process more than
it measures), its first heartbeat at a random point of the first period, so that the
heartbeats spread evenly as those of nodes started at different times do.
"""

from __future__ import annotations

import asyncio
import json
import random
import ssl
import time
from collections import Counter
from pathlib import Path

from gatehouse.pki import tls
from gatehouse.wire.authapi import ROUTES, Heartbeat
from gatehouse.wire.names import ALPN_HTTP, TUNNEL_NODE_HEARTBEAT

KEEPALIVE = 15.0  # seconds aiohttp keeps an idle connection
REPLY_TIMEOUT = 30.0


class NodeBeats:
    """Heartbeats as each of the nodes named in ``nodes`` (hostname -> cert file)."""

    def __init__(self, host: str, port: int, cluster: str, nodes: dict[str, Path],
                 key: Path) -> None:
        self.host, self.port = host, port
        self.server_name = f"proxy.{cluster}"  # as a node that reaches its auth via a proxy
        self.nodes = nodes
        self.key = key
        self.paused = False
        self.sent = 0
        self.errors: Counter[str] = Counter()

    async def run(self) -> None:
        """Every node's heartbeats until cancelled."""
        await asyncio.gather(*(self._node(name, cert) for name, cert in self.nodes.items()))

    async def _node(self, name: str, cert: Path) -> None:
        ctx = tls.client_context(None, cert_file=cert, key_file=self.key, alpn=[ALPN_HTTP])
        body = Heartbeat(hostname=name, addr="", labels={"env": "bench"},
                         tunnel=True).model_dump_json().encode()
        method, path = ROUTES["heartbeat"]
        request = (f"{method} {path} HTTP/1.1\r\nHost: {self.server_name}\r\n"
                   f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
                   ).encode() + body
        conn: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None
        used = 0.0
        await asyncio.sleep(random.uniform(0, TUNNEL_NODE_HEARTBEAT))
        while True:
            if not self.paused:
                if conn is not None and time.monotonic() - used > KEEPALIVE:
                    conn[1].close()
                    conn = None
                try:
                    if conn is None:
                        conn = await asyncio.wait_for(asyncio.open_connection(
                            self.host, self.port, ssl=ctx, server_hostname=self.server_name),
                            REPLY_TIMEOUT)
                    await asyncio.wait_for(self._beat(conn, request), REPLY_TIMEOUT)
                    self.sent += 1
                except (OSError, TimeoutError, ssl.SSLError, ValueError,
                        asyncio.IncompleteReadError) as exc:
                    self.errors[f"heartbeat: {type(exc).__name__}: {exc}"[:200]] += 1
                    if conn is not None:
                        conn[1].close()
                    conn = None
                used = time.monotonic()
            await asyncio.sleep(TUNNEL_NODE_HEARTBEAT)

    @staticmethod
    async def _beat(conn: tuple[asyncio.StreamReader, asyncio.StreamWriter],
                    request: bytes) -> None:
        reader, writer = conn
        writer.write(request)
        status = (await reader.readline()).split(b" ", 2)
        length = 0
        while (line := await reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        reply = await reader.readexactly(length)
        if len(status) < 2 or status[1] != b"200":
            raise ValueError(f"HTTP {status[1:2]!r}: {json.loads(reply or b'{}')}")
