"""A light client that holds many idle reverse tunnels to a root proxy (run as
``python -m bench.tunnelclient``), each as a different leaf cluster or, with
``--kind=node``, as a different tunnel-mode node of the root's cluster.

Each tunnel is what a leaf proxy's agent opens: TLS with ALPN
``gatehouse-tunnel/1`` and that leaf's proxy certificate, then Gatehouse's
multiplexer (``MuxSession``), which answers the root's heartbeat pings; like
the agent, it sets the same TCP keepalive options on its socket, and closes a
tunnel on which the root stayed silent for ``ROOT_SILENT_AFTER``. It opens no
streams; of the root's, it takes the proxies' news and confirms the root's cluster
labels as a leaf does (the root sends them again until a leaf confirms), and refuses
the rest. (It does not check the root's certificate: it stands in for the leaves, and
is not what is being measured.) With ``--inventory=N``, each leaf pushes an inventory
of N nodes once its tunnel is up, as a leaf's proxy does (tunnel/inventorysend.py): its
role map gives the root's ``access`` role the leaf's ``access``, which sees every node.

A node's tunnel is what a node's agent opens (the same TLS, ALPN and multiplexer, with
the node's host certificate); of the proxy's streams it takes the proxies' news and
refuses the rest (it serves no SSH: it is idle). Each node also sends the presence
heartbeats a tunnel-mode node sends its auth (bench/nodebeats.py); SIGUSR1 pauses
and resumes them (the proxy's idle CPU is read without them).

It writes ``{"up", "failed", "errors", "seconds", "heartbeats"}`` to ``--out`` once every
tunnel was tried, then again every second ("up" = tunnels still open), and
holds them until SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal
import ssl
import time
from collections import Counter
from pathlib import Path
from typing import Any

from bench.nodebeats import NodeBeats
from gatehouse.clock import SystemMonotonic
from gatehouse.errors import GatehouseError
from gatehouse.pki import tls, x509
from gatehouse.tunnel.limits import MAX_ACK, MAX_CALL
from gatehouse.tunnel.liveness import ROOT_SILENT_AFTER, set_keepalive
from gatehouse.tunnel.mux import MuxSession, MuxStream, read_all
from gatehouse.types.inventory import LeafInventory, RoleSelection
from gatehouse.types.node import Node, NodeSpec
from gatehouse.types.resource import Metadata, split_host_port
from gatehouse.types.trusted_cluster import RoleMapping
from gatehouse.wire.names import ALPN_TUNNEL

HANDSHAKES_AT_ONCE = 32
ATTEMPTS = 5
SETTLED = 0.5  # a tunnel still open this long after connecting was accepted


# What a leaf answers when it kept the root's cluster labels (tunnel/serve.py).
KEPT = json.dumps({"ok": True, "leaf": {"session_recording": "node", "version": "bench"}})


async def _answer_as_node(stream: MuxStream) -> None:
    """A stream the proxy opened, answered as an idle node's agent answers it."""
    if stream.meta.get("kind") == "proxies":  # the agent takes the news (tunnel/link.py)
        stream.accept()
        return
    stream.refuse("a simulated node serves nothing")


async def _answer(stream: MuxStream) -> None:
    """A stream the root opened, answered as a leaf's agent answers it."""
    kind = stream.meta.get("kind")
    if kind == "proxies":  # the agent takes the news (tunnel/link.py)
        stream.accept()
        return
    if kind != "access":
        stream.refuse("a simulated leaf serves nothing")
        return
    stream.accept()
    await read_all(stream, MAX_CALL)
    await stream.write(KEPT.encode())
    stream.write_eof()


def inventory_of(leaf: str, nodes: int) -> bytes:
    """What a leaf with ``nodes`` nodes pushes (labels: env, and a rack per ten)."""
    return LeafInventory(
        nodes=[Node(metadata=Metadata(name=f"{leaf}-n{i}",
                                      labels={"env": "prod", "rack": f"r{i // 10}"}),
                    spec=NodeSpec(hostname=f"node{i}", addr=f"10.0.{i // 250}.{i % 250}:3022",
                                  cluster=leaf, host_id=f"{leaf}-n{i}"))
               for i in range(nodes)],
        role_map=[RoleMapping(remote="access", local=["access"])],
        roles=[RoleSelection(name="access", allow={"*": "*"})]).model_dump_json().encode()


async def push_inventory(session: MuxSession, body: bytes) -> None:
    stream = await session.open({"kind": "inventory"})
    await stream.write(body)
    stream.write_eof()
    ack = json.loads(await read_all(stream, MAX_ACK))
    if ack.get("error"):
        raise ConnectionError(f"the root refused the inventory: {ack['error']}")


def _context(cert: Path, key: Path) -> ssl.SSLContext:
    """The leaf proxy's client side, unverified (the root's CA is not the point here)."""
    return tls.client_context(None, cert_file=cert, key_file=key, alpn=[ALPN_TUNNEL])


class Tunnels:
    def __init__(self, proxy: str, certs: list[Path], key: Path, *, node: bool = False,
                 inventory: int = 0) -> None:
        self.host, self.port = split_host_port(proxy)
        self.answer = _answer_as_node if node else _answer
        self.inventory = inventory  # nodes each leaf pushes (0: no inventory)
        self.certs = certs
        self.key = key
        self.sessions: list[MuxSession] = []
        self.errors: Counter[str] = Counter()
        self.clock = SystemMonotonic()

    async def connect(self, cert: Path) -> MuxSession:
        loop = asyncio.get_running_loop()
        transport, session = await asyncio.wait_for(loop.create_connection(
            lambda: MuxSession(dialer=True, clock=self.clock, on_open=self.answer),
            self.host, self.port,
            ssl=_context(cert, self.key), server_hostname=self.host), 15)
        set_keepalive(transport.get_extra_info("socket"))
        return session

    @staticmethod
    async def accepted(session: MuxSession) -> MuxSession:
        """The session, once it outlived SETTLED (the root closes a refused one at once)."""
        done, _ = await asyncio.wait([session.closed], timeout=SETTLED)
        if done:
            raise ConnectionError(f"closed by the root: {session.closed.result()}")
        return session

    async def dial(self, cert: Path) -> MuxSession:
        return await self.accepted(await self.connect(cert))

    async def dial_retrying(self, cert: Path, slots: asyncio.Semaphore) -> None:
        for attempt in range(ATTEMPTS):
            try:
                async with slots:  # only the handshake takes a slot
                    session = await self.connect(cert)
                self.sessions.append(await self.accepted(session))
                break
            except (OSError, TimeoutError, ConnectionError) as exc:
                if attempt == ATTEMPTS - 1:
                    self.errors[f"{type(exc).__name__}: {exc}"[:200]] += 1
                    return
                await asyncio.sleep(0.2 * 2**attempt)
        if self.inventory:
            leaf = x509.identity_of(x509.load_cert(cert.read_bytes())).cluster
            try:
                await push_inventory(session, inventory_of(leaf, self.inventory))
            except (OSError, ValueError, GatehouseError, ConnectionError) as exc:
                self.errors[f"inventory: {type(exc).__name__}: {exc}"[:200]] += 1

    async def probe(self, timeout: float) -> None:
        """Wait until the root accepts the first leaf (it learns the leaves from its auth)."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                (await self.dial(self.certs[0])).close("probe done")
                return
            except (OSError, TimeoutError, ConnectionError):
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.3)

    async def keepalive(self) -> None:
        """Close the tunnels the root stopped pinging, as the leaf's ``TunnelLink`` does
        (one watchdog for all of them: this process is not what is measured)."""
        while True:
            now = time.monotonic()
            for s in self.sessions:
                if not s.closed.done() and now - s.last_seen >= ROOT_SILENT_AFTER:
                    s.close("no heartbeat from the root")
            await asyncio.sleep(1.0)

    def status(self, started: float) -> dict[str, Any]:
        return {"up": sum(1 for s in self.sessions if not s.closed.done()),
                "failed": sum(self.errors.values()), "errors": dict(self.errors),
                "seconds": time.monotonic() - started}


def _write(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data))
    tmp.replace(path)


async def hold(tunnels: Tunnels, out: Path, probe_timeout: float,
               beats: NodeBeats | None = None) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    if beats is not None:
        loop.add_signal_handler(signal.SIGUSR1, _toggle, beats)
    started = time.monotonic()
    await tunnels.probe(probe_timeout)
    slots = asyncio.Semaphore(HANDSHAKES_AT_ONCE)
    await asyncio.gather(*(tunnels.dial_retrying(c, slots) for c in tunnels.certs))
    watchdog = asyncio.create_task(tunnels.keepalive())
    beating = asyncio.create_task(beats.run()) if beats is not None else None
    while not stop.is_set():
        status = tunnels.status(started)
        if beats is not None:
            status["heartbeats"] = beats.sent
            status["errors"].update(beats.errors)
        _write(out, status)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), 1.0)
    watchdog.cancel()
    if beating is not None:
        beating.cancel()
    for s in tunnels.sessions:
        s.close("bench done")
    await asyncio.sleep(0.2)


def _toggle(beats: NodeBeats) -> None:
    beats.paused = not beats.paused


def main() -> None:
    p = argparse.ArgumentParser(prog="python -m bench.tunnelclient", description=__doc__)
    p.add_argument("--proxy", required=True, help="root proxy host:port")
    p.add_argument("--certs", type=Path, required=True,
                   help="file listing cert paths (with --kind=node: path and hostname a line)")
    p.add_argument("--kind", choices=("leaf", "node"), default="leaf")
    p.add_argument("--cluster", default="", help="with --kind=node: the nodes' cluster")
    p.add_argument("--key", type=Path, required=True)
    p.add_argument("--probe-timeout", type=float, default=30.0)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--inventory", type=int, default=0, metavar="N",
                   help="nodes each leaf pushes in its inventory (default: none)")
    args = p.parse_args()
    lines = [line.split() for line in args.certs.read_text().splitlines() if line.strip()]
    certs = [Path(line[0]) for line in lines]
    tunnels = Tunnels(args.proxy, certs, args.key, node=args.kind == "node",
                      inventory=args.inventory)
    beats = None
    if args.kind == "node":
        beats = NodeBeats([(tunnels.host, tunnels.port)], args.cluster,
                          {line[1]: Path(line[0]) for line in lines}, args.key)
    asyncio.run(hold(tunnels, args.out, args.probe_timeout, beats))


if __name__ == "__main__":
    main()
