"""The presence heartbeats of simulated nodes: tunnel-mode ones for
``bench.tunnelclient``, direct ones for the PostgreSQL cluster rows (run as
`python -m bench.nodebeats`, a process of its own).

A tunnel-mode node heartbeats its auth through its proxy's single TLS port: an HTTPS
``heartbeat`` call (wire/authapi.py's route), with its host certificate, every
``TUNNEL_NODE_HEARTBEAT`` (wire/names.py, node/service.py); a direct node, every
``NODE_HEARTBEAT``, to an auth of its ``auth_servers``. Its HTTP client keeps a
connection for KEEPALIVE seconds (client/api.py): a heartbeat sooner than that
reuses it, a later one opens a new one. Here each simulated node does the same with
a minimal HTTP/1.1 client (10,000 aiohttp sessions would cost this process more than
it measures), its first heartbeat at a random point of the first period, so that the
heartbeats spread evenly as those of nodes started at different times do, and the next
ones on the schedule real nodes keep (wire/cadence.py).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import signal
import ssl
import time
from collections import Counter
from pathlib import Path

from gatehouse._sys import gcsettings
from gatehouse.client.api import KEEPALIVE
from gatehouse.pki import tls
from gatehouse.wire.authapi import ROUTES, Heartbeat
from gatehouse.wire.cadence import heartbeat_pause
from gatehouse.wire.names import ALPN_HTTP, TUNNEL_NODE_HEARTBEAT

REPLY_TIMEOUT = 30.0


class NodeBeats:
    """Heartbeats as each of the nodes named in ``nodes`` (hostname -> cert file), to
    ``targets`` (host, port) in turn (node i to target i mod their number), every
    ``period`` seconds: tunnel-mode nodes (through a proxy) or direct ones (an address
    each, to an auth)."""

    def __init__(self, targets: list[tuple[str, int]], cluster: str, nodes: dict[str, Path],
                 key: Path, *, period: float = TUNNEL_NODE_HEARTBEAT,
                 tunnel: bool = True) -> None:
        self.targets = targets
        self.server_name = f"proxy.{cluster}"  # as a node that reaches its auth via a proxy
        self.nodes = nodes
        self.key = key
        self.period = period
        self.tunnel = tunnel
        self.paused = False
        self.rng = random.Random()
        self.sent = 0
        self.errors: Counter[str] = Counter()

    async def run(self) -> None:
        """Every node's heartbeats until cancelled."""
        await asyncio.gather(*(self._node(i, name, cert)
                               for i, (name, cert) in enumerate(self.nodes.items())))

    async def _node(self, index: int, name: str, cert: Path) -> None:
        host, port = self.targets[index % len(self.targets)]
        ctx = tls.client_context(None, cert_file=cert, key_file=self.key, alpn=[ALPN_HTTP])
        # A direct node says where the proxy reaches it: the address it calls from.
        addr = "" if self.tunnel else f"127.0.0.1:{20_000 + index % 40_000}"
        body = Heartbeat(hostname=name, addr=addr, labels={"env": "bench"},
                         tunnel=self.tunnel).model_dump_json().encode()
        method, path = ROUTES["heartbeat"]
        request = (f"{method} {path} HTTP/1.1\r\nHost: {self.server_name}\r\n"
                   f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
                   ).encode() + body
        conn: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None
        used = 0.0
        await asyncio.sleep(self.rng.uniform(0, self.period))
        while True:
            began = time.monotonic()
            if not self.paused:
                if conn is not None and time.monotonic() - used > KEEPALIVE:
                    conn[1].close()
                    conn = None
                try:
                    if conn is None:
                        conn = await asyncio.wait_for(asyncio.open_connection(
                            host, port, ssl=ctx, server_hostname=self.server_name),
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
            await asyncio.sleep(heartbeat_pause(self.period, began=began, now=time.monotonic(),
                                                rng=self.rng))

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


async def _beat_for(beats: NodeBeats, out: Path) -> None:
    """Run the heartbeats; write ``{"sent", "errors"}`` to ``out`` every second, until
    SIGTERM."""
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    task = asyncio.create_task(beats.run())
    try:
        while not stop.is_set():
            # Whole or not at all: the bench reads it meanwhile.
            out.with_suffix(".tmp").write_text(
                json.dumps({"sent": beats.sent, "errors": dict(beats.errors)}))
            out.with_suffix(".tmp").replace(out)
            try:
                async with asyncio.timeout(1.0):
                    await stop.wait()
            except TimeoutError:
                pass
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


def main() -> None:
    p = argparse.ArgumentParser(prog="python -m bench.nodebeats",
                                description="Heartbeat as many direct nodes, until SIGTERM.")
    p.add_argument("--auths", required=True, help="HOST:PORT,... the nodes' auths")
    p.add_argument("--certs", type=Path, required=True, help="lines of CERT_FILE HOSTNAME")
    p.add_argument("--key", type=Path, required=True)
    p.add_argument("--cluster", required=True)
    p.add_argument("--period", type=float, required=True, help="seconds between heartbeats")
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args()
    targets = [(h, int(port)) for h, _, port in (a.rpartition(":") for a in args.auths.split(","))]
    lines = [line.split() for line in args.certs.read_text().splitlines() if line.strip()]
    beats = NodeBeats(targets, args.cluster, {name: Path(cert) for cert, name in lines},
                      args.key, period=args.period, tunnel=False)
    # Nodes are processes of their own: one collector's pauses here would send the
    # heartbeats of thousands of them in a burst, which no real fleet does.
    gcsettings.settle()
    asyncio.run(_beat_for(beats, args.out))


if __name__ == "__main__":
    main()
