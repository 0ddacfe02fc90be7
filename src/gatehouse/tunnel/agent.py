"""The dialing end of reverse tunnels (a leaf proxy): keep one tunnel to each root.

The leaf needs no inbound port: its proxy dials the root proxy's single TLS
port (ALPN ``gatehouse-tunnel/1``) with its host certificate, verifies the root
by the root's host CA stored at join, and serves the streams the root opens:
SSH to a registered node of this cluster (never any other address), or an API
call relayed to this cluster's auth. It follows the trust snapshot: a disabled
or removed trust closes the tunnel at once. Reconnects back off exponentially
with jitter. The root sends the heartbeats; this end answers them (see liveness.py).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import logging
import random
import ssl
import time
from collections.abc import Awaitable, Callable
from typing import Any

from gatehouse._sys.hostport import split_host_port
from gatehouse.client.forward import AuthForwarder, ForwardedCall
from gatehouse.errors import ConnectionProblem, GatehouseError
from gatehouse.pki import tls
from gatehouse.pki.keystore import StoredIdentity
from gatehouse.tunnel.liveness import ROOT_SILENT_AFTER, set_keepalive
from gatehouse.tunnel.mux import MuxSession, MuxStream, splice
from gatehouse.tunnel.server import read_all
from gatehouse.wire.authapi import AuthAPI
from gatehouse.wire.names import ALPN_TUNNEL
from gatehouse.wire.trust import RootCluster, TrustSnapshot

__all__ = ["TunnelAgent"]

log = logging.getLogger(__name__)

Audit = Callable[[str, dict[str, Any]], Awaitable[None]]

MAX_BACKOFF = 10.0
EVENT_POLL = 1.0
HEALTHY_AFTER = 5.0


def _where(root: RootCluster) -> tuple[str, str]:
    return root.proxy_addr, root.host_ca_tls


class TunnelAgent:
    def __init__(
        self,
        identity: StoredIdentity,
        trust: Callable[[], TrustSnapshot],
        updated: asyncio.Event,
        forwarder: AuthForwarder,
        api: AuthAPI,
        audit: Audit,
    ) -> None:
        self._api = api
        self._identity = identity
        self._trust = trust
        self._updated = updated
        self._forwarder = forwarder
        self._audit = audit
        self._running: dict[str, tuple[RootCluster, asyncio.Task[None]]] = {}

    async def run(self) -> None:
        """Follow the trust snapshot: one maintained tunnel per enabled root."""
        try:
            while True:
                self._reconcile()
                await self._updated.wait()
                self._updated.clear()
        finally:
            for _, task in self._running.values():
                task.cancel()

    def _reconcile(self) -> None:
        wanted = {name: root for name, root in self._trust().roots.items() if root.enabled}
        for name, (root, task) in list(self._running.items()):
            new = wanted.get(name)
            # A role_map edit changes nothing here; a new address or CA means redial.
            if new is None or _where(new) != _where(root) or task.done():
                task.cancel()  # disabled, removed or changed: drop the tunnel now
                del self._running[name]
                log.info("tunnel to root %s stopped", name)
        for name, root in wanted.items():
            if name not in self._running:
                self._running[name] = (root, asyncio.create_task(self._maintain(root)))

    def _context(self, root: RootCluster) -> ssl.SSLContext:
        ident = self._identity
        return tls.client_context(root.host_ca_tls, cert_file=ident.tls_cert_file,
                                  key_file=ident.key_pem_file, alpn=[ALPN_TUNNEL])

    async def _maintain(self, root: RootCluster) -> None:
        delay = 0.2
        host, port = split_host_port(root.proxy_addr)
        loop = asyncio.get_running_loop()
        while True:
            started = time.monotonic()
            try:
                transport, session = await asyncio.wait_for(loop.create_connection(
                    lambda: MuxSession(dialer=True, on_open=self._serve), host, port,
                    ssl=self._context(root), server_hostname=host), 15)
                set_keepalive(transport.get_extra_info("socket"))
            except (OSError, TimeoutError, ssl.SSLError) as exc:
                log.warning("cannot reach root %s at %s: %s", root.name, root.proxy_addr,
                            exc or type(exc).__name__)
            else:
                log.info("tunnel to root %s at %s is up", root.name, root.proxy_addr)
                try:
                    async with asyncio.TaskGroup() as tg:
                        sender = tg.create_task(self._forward_events(root.name, session))
                        await self._keepalive(session)
                        sender.cancel()
                finally:
                    session.close("leaf agent stopping")
                reason = session.closed.result() if session.closed.done() else "stopped"
                log.warning("tunnel to root %s closed: %s", root.name, reason)
            if time.monotonic() - started > HEALTHY_AFTER:
                delay = 0.2
            await asyncio.sleep(delay * random.uniform(0.5, 1.5))
            delay = min(delay * 2, MAX_BACKOFF)

    async def _forward_events(self, root: str, session: MuxSession) -> None:
        """Send this cluster's audit events to the root, in order, from the acknowledged
        cursor (kept by the auth, so it survives restarts); the root stores each event
        under a key of the leaf's, so a batch sent twice is stored once."""
        while not session.closed.done():
            try:
                moved = await self._forward_page(root, session)
            except (GatehouseError, OSError, ValueError) as exc:
                log.warning("forwarding events to %s: %s; retrying", root, exc)
                moved = False
            if not moved:
                await asyncio.wait([session.closed], timeout=EVENT_POLL)

    async def _forward_page(self, root: str, session: MuxSession) -> bool:
        """Forward one page of events; False when there was nothing new."""
        after = await self._api.export_cursor(root)
        page = await self._api.export_events(after, 500)
        if page.last == after:
            return False
        if page.events:
            stream = await session.open({"kind": "events"})
            await stream.write(json.dumps({"events": page.events}).encode())
            stream.write_eof()
            ack = json.loads(await read_all(stream, 1 << 20))
            if ack.get("error"):
                raise ConnectionProblem(f"the root refused events: {ack['error']}")
        # Only after the root acknowledged: a crash before this re-sends the page, and
        # the root stores each event once (keys of the leaf's).
        await self._api.set_export_cursor(root, page.last)
        return True

    async def _keepalive(self, session: MuxSession) -> None:
        """Redial a root gone silent: it pings a quiet tunnel every HEARTBEAT_INTERVAL,
        and the MuxSession answers (a dead peer is the kernel's keepalive's to find)."""
        while not session.closed.done():
            quiet = time.monotonic() - session.last_seen
            if quiet >= ROOT_SILENT_AFTER:
                session.close("no heartbeat from the root")
                return
            await asyncio.wait([session.closed], timeout=ROOT_SILENT_AFTER - quiet)

    async def _serve(self, stream: MuxStream) -> None:
        kind = stream.meta.get("kind")
        if kind == "ssh":
            await self._serve_ssh(stream)
        elif kind == "api":
            await self._serve_api(stream)
        else:
            stream.refuse(f"unknown stream kind {kind!r}")

    async def _serve_ssh(self, stream: MuxStream) -> None:
        target = str(stream.meta.get("target", ""))
        user = str(stream.meta.get("user", ""))
        try:
            der = base64.b64decode(str(stream.meta.get("client_cert", "")), validate=True)
            # Asked as the root user: the leaf's auth answers only for its own registered
            # nodes that the user's mapped roles select (no open relay).
            addr = await self._forwarder.resolve_node(target, der or None,
                                                      str(stream.meta.get("remote", "")))
            host, port = split_host_port(addr)
            reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), 10)
        except (GatehouseError, OSError, TimeoutError, binascii.Error) as exc:
            reason = str(exc) or f"node {target} is unreachable"
            log.warning("tunnel dial refused user=%s target=%s reason=%r", user, target, reason)
            await self._audit("proxy.dial.denied", {"user": user, "message": reason,
                                                    "fields": {"target": target}})
            stream.refuse(reason)
            return
        stream.accept()
        await splice(stream, reader, writer)

    async def _serve_api(self, stream: MuxStream) -> None:
        meta = stream.meta
        try:
            der = base64.b64decode(str(meta.get("client_cert", "")), validate=True)
        except binascii.Error:
            stream.refuse("malformed client certificate")
            return
        stream.accept()
        body = await read_all(stream, 1 << 20)
        call = ForwardedCall(str(meta.get("method", "GET")), str(meta.get("path", "/")), body,
                             der or None, str(meta.get("remote", "")))
        if not call.path.startswith("/v1/"):
            status, reply = 400, b'{"error": "not an API path"}'
        else:
            status, reply = await self._forwarder.call(call)
        await stream.write(json.dumps(
            {"status": status, "body": base64.b64encode(reply).decode()}).encode())
        stream.write_eof()
