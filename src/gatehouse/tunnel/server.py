"""The accepting end of reverse tunnels (a root proxy): who may connect, and routing.

A leaf proxy connects with its host certificate; it is accepted only if that
certificate is a proxy certificate signed by the host CA the leaf registered
when it joined. One tunnel per leaf: a new one replaces the old. The root
pings each tunnel and reports the leaf online to its auth while pings return;
a lost tunnel is reported offline at once.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from cryptography import x509 as cx509

from gatehouse import x509
from gatehouse.clock import Clock
from gatehouse.errors import AccessDenied, BadParameter, ConnectionProblem, GatehouseError
from gatehouse.proxy.web import ForwardedCall
from gatehouse.tls import peer_der
from gatehouse.tunnel.mux import MuxSession, MuxStream

__all__ = ["ALPN_TUNNEL", "PING_INTERVAL", "TunnelServer", "read_all"]

log = logging.getLogger(__name__)

ALPN_TUNNEL = "gatehouse-tunnel/1"
PING_INTERVAL = 2.0
PING_TIMEOUT = 6.0

Report = Callable[[str, bool], Awaitable[None]]  # (leaf, online)
StoreEvents = Callable[[str, Any], Awaitable[dict[str, Any]]]  # (leaf, batch) -> ack
MAX_EVENT_BATCH = 4 << 20


async def read_all(stream: MuxStream, limit: int = 64 << 20) -> bytes:
    out = bytearray()
    while data := await stream.read():
        out += data
        if len(out) > limit:
            raise BadParameter("tunnel message too large")
    return bytes(out)


class _TunnelConnection(MuxSession):
    """One leaf's tunnel: authenticated in connection_made, before any frame is read."""

    def __init__(self, server: TunnelServer) -> None:
        super().__init__(dialer=False, on_open=self._incoming_stream)
        self._server = server
        self.leaf = ""

    async def _incoming_stream(self, stream: MuxStream) -> None:
        """Streams the leaf opens: its audit events, for the root's unified log."""
        if stream.meta.get("kind") != "events" or not self.leaf:
            stream.refuse("the root accepts only event streams from a leaf")
            return
        stream.accept()
        try:
            batch = json.loads(await read_all(stream, MAX_EVENT_BATCH))
            reply = await self._server._store_events(self.leaf, batch)
        except (ValueError, BadParameter) as exc:
            log.warning("malformed events from leaf %s: %s", self.leaf, exc)
            reply = {"stored": 0, "rejected": -1, "error": str(exc)}
        except GatehouseError as exc:
            reply = {"stored": 0, "rejected": 0, "error": str(exc)}
        await stream.write(json.dumps(reply).encode())
        stream.write_eof()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        peer = transport.get_extra_info("peername")
        try:
            self.leaf = self._server._authenticate(transport)
        except (AccessDenied, BadParameter, ValueError) as exc:
            log.warning("tunnel refused remote=%s reason=%r", peer, str(exc))
            self.close(f"tunnel refused: {exc}")
            return
        self._server._register(self)


class TunnelServer:
    def __init__(self, leaf_cas: Callable[[], dict[str, str]], report: Report,
                 store_events: StoreEvents, clock: Clock) -> None:
        self._leaf_cas = leaf_cas  # leaf cluster -> its host CA (TLS PEM)
        self._report = report
        self._store_events = store_events
        self._clock = clock
        self._sessions: dict[str, _TunnelConnection] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    def protocol(self) -> asyncio.BaseProtocol:
        return _TunnelConnection(self)

    def _authenticate(self, transport: asyncio.BaseTransport) -> str:
        der = peer_der(transport.get_extra_info("ssl_object"))
        if not der:
            raise AccessDenied("a tunnel needs the leaf proxy's host certificate")
        cert = cx509.load_der_x509_certificate(der)
        ident = x509.identity_of(cert)
        pem = self._leaf_cas().get(ident.cluster)
        if pem is None:
            raise AccessDenied(f"cluster {ident.cluster} is not a leaf of this cluster")
        x509.verify_issued_by(cert, [x509.load_cert(pem)], self._clock.now())
        if ident.kind != "host" or ident.system_role != "proxy":
            raise AccessDenied(f"only a proxy of {ident.cluster} may open its tunnel")
        return ident.cluster

    def _register(self, session: _TunnelConnection) -> None:
        old = self._sessions.get(session.leaf)
        self._sessions[session.leaf] = session
        if old is not None:
            old.close("replaced by a newer tunnel")
        log.info("tunnel from leaf %s is up", session.leaf)
        self._spawn(self._watch(session))

    def _spawn(self, coro: Awaitable[None]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _watch(self, session: _TunnelConnection) -> None:
        """Ping while it lives; report online/offline to the auth."""
        leaf = session.leaf
        try:
            await self._report(leaf, True)
            while not session.closed.done():
                try:
                    await session.ping(PING_TIMEOUT)
                except (ConnectionProblem, TimeoutError):
                    session.close("ping timed out")
                    break
                await self._report(leaf, True)
                await asyncio.wait([session.closed], timeout=PING_INTERVAL)
        except GatehouseError as exc:
            log.warning("could not report tunnel status of %s: %s", leaf, exc)
        finally:
            if self._sessions.get(leaf) is session:
                del self._sessions[leaf]
                log.info("tunnel from leaf %s is down", leaf)
                try:
                    await self._report(leaf, False)
                except GatehouseError as exc:
                    log.warning("could not report %s offline: %s", leaf, exc)

    def drop_unknown(self) -> None:
        """Close tunnels of leaves that are no longer trusted (removed on the auth)."""
        known = self._leaf_cas()
        for leaf, session in list(self._sessions.items()):
            if leaf not in known:
                session.close("this leaf was removed from the root")

    def connected(self) -> list[str]:
        return sorted(self._sessions)

    async def open(self, leaf: str, meta: dict[str, Any]) -> MuxStream:
        session = self._sessions.get(leaf)
        if session is None:
            if leaf in self._leaf_cas():
                raise ConnectionProblem(f"cluster {leaf} is offline (its tunnel is not connected)")
            raise BadParameter(f"unknown cluster {leaf}")
        return await session.open(meta)

    async def relay_api(self, leaf: str, call: ForwardedCall) -> tuple[int, bytes]:
        """Relay an API call to ``leaf``'s auth over its tunnel."""
        stream = await self.open(leaf, {
            "kind": "api", "method": call.method, "path": call.path, "remote": call.remote,
            "client_cert": base64.b64encode(call.client_der).decode() if call.client_der else "",
        })
        await stream.write(call.body)
        stream.write_eof()
        reply = json.loads(await read_all(stream))
        return int(reply["status"]), base64.b64decode(reply["body"])

    def close(self) -> None:
        for session in list(self._sessions.values()):
            session.close("root proxy shutting down")
        for task in self._tasks:
            task.cancel()
