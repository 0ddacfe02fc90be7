"""The accepting end of reverse tunnels (a proxy): who may connect, and routing.

A leaf proxy connects with its host certificate; it is accepted only if that
certificate is a proxy certificate signed by the host CA the leaf registered
when it joined. A leaf's newest tunnel serves; an older one stays until its agent
closes it (held.py: an agent dialing through a load balancer may land here twice).

A tunnel-mode node of this proxy's own cluster connects with its node certificate
(signed by this cluster's host CA). Its tunnel stays pending, never routed to, until
the auth admits it (``OwnNodes.report``: only a registered node's tunnel); the auth's
answer to every later report may still refuse it (the node was removed), and the
proxy then closes it. As for a leaf, a node's newest admitted tunnel serves.

Each agent is told the proxies of this cluster online now (``announce``), on a
"proxies" stream: when its tunnel comes up (a node's: once admitted) and whenever that
set changes, so that it keeps one tunnel to each of them.

Liveness costs almost nothing per idle tunnel (see liveness.py): the kernel's TCP
keepalive notices a dead peer, and one task pings, in batches, only the tunnels it
has not heard from for a while, and reports the leaves held to the auth in one
call, at once (coalesced) when a tunnel comes or goes, and every few seconds anyway.
Those timings read an injected monotonic clock; certificates are checked on the wall
clock. ``run`` owns the server's work: when it stops, every tunnel is closed and its
stream handlers awaited.

A leaf may have MAX_STREAMS_FROM_LEAF streams open on its tunnel at once, and each of
its event batches must arrive within MESSAGE_DEADLINE (limits.py): one leaf makes the
root hold a few batches at most, for a bounded time.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import datetime as dt
import json
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from cryptography import x509 as cx509

from gatehouse import metrics
from gatehouse.clock import Clock, Monotonic, wait_for
from gatehouse.errors import AccessDenied, BadParameter, ConnectionProblem, GatehouseError
from gatehouse.pki import x509
from gatehouse.pki.tls import peer_der
from gatehouse.tunnel.frames import FrameType
from gatehouse.tunnel.held import HeldTunnels
from gatehouse.tunnel.limits import (
    MAX_EVENT_BATCH,
    MAX_INVENTORY,
    MAX_REPLY,
    MAX_STREAMS_FROM_LEAF,
    MAX_TUNNELS_PER_PEER,
    MESSAGE_DEADLINE,
)
from gatehouse.tunnel.liveness import (
    PING_STEPS,
    SWEEP_INTERVAL,
    ReportSchedule,
    set_keepalive,
    sweep,
)
from gatehouse.tunnel.mux import MuxSession, MuxStream, read_all
from gatehouse.tunnel.needs import APICall, OwnNodes

__all__ = ["TunnelServer"]

log = logging.getLogger(__name__)

ANNOUNCE_BATCH = 64  # tunnels told of the proxies at once
ANNOUNCE_TIMEOUT = 10.0  # seconds an agent has to take the news
# Seconds between reports that have the auth check every node tunnel held, not only
# those just offered (a change of trust, such as a removal, has it check them at once).
VERIFY_ALL_INTERVAL = 60.0


Report = Callable[[list[str]], Awaitable[None]]  # every leaf whose tunnel this proxy holds
StoreEvents = Callable[[str, Any], Awaitable[dict[str, Any]]]  # (leaf, batch) -> ack
StoreInventory = Callable[[str, bytes], None]  # (leaf, its inventory as JSON)


class _TunnelConnection(MuxSession):
    """One leaf's or node's tunnel: authenticated in connection_made, before any frame
    is read."""

    def __init__(self, server: TunnelServer) -> None:
        super().__init__(dialer=False, clock=server._timer, on_open=self._incoming_stream,
                         max_peer_streams=MAX_STREAMS_FROM_LEAF)
        self._server = server
        self.leaf = ""
        self.node = ""  # the host id of a node's tunnel
        self.pinged: float | None = None  # when our last heartbeat ping went out

    async def _incoming_stream(self, stream: MuxStream) -> None:
        """Streams the leaf opens: its audit events, for the root's unified log, and its
        inventory (a node opens none)."""
        kind = stream.meta.get("kind")
        if kind not in ("events", "inventory") or not self.leaf:
            stream.refuse("the root accepts only event and inventory streams from a leaf")
            return
        stream.accept()
        if kind == "inventory":
            await self._inventory(stream)
            return
        try:
            body = await read_all(stream, MAX_EVENT_BATCH)
        except (ConnectionProblem, BadParameter) as exc:  # stalled, reset, or too large
            log.warning("event stream dropped leaf=%s stream=%d reason=%r", self.leaf,
                        stream.id, str(exc))
            return
        try:
            batch = json.loads(body)
            reply = await self._server._store_events(self.leaf, batch)
        except (ValueError, BadParameter) as exc:
            log.warning("malformed events from leaf %s: %s", self.leaf, exc)
            reply = {"stored": 0, "rejected": -1, "error": str(exc)}
        except GatehouseError as exc:
            reply = {"stored": 0, "rejected": 0, "error": str(exc)}
        await stream.write(json.dumps(reply).encode())
        stream.write_eof()

    async def _inventory(self, stream: MuxStream) -> None:
        try:
            body = await read_all(stream, MAX_INVENTORY)
        except (ConnectionProblem, BadParameter) as exc:  # stalled, reset, or too large
            log.warning("inventory stream dropped leaf=%s reason=%r", self.leaf, str(exc))
            return
        reply: dict[str, Any] = {}
        try:
            self._server._store_inventory(self.leaf, body)
        except (ValueError, BadParameter) as exc:  # ValueError: malformed (pydantic)
            log.warning("malformed inventory from leaf %s: %s", self.leaf,
                        str(exc).splitlines()[0])
            reply = {"error": str(exc)[:500]}
        await stream.write(json.dumps(reply).encode())
        stream.write_eof()

    def _who(self) -> str:
        return self.leaf or (f"node {self.node}" if self.node else super()._who())

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        peer = transport.get_extra_info("peername")
        try:
            kind, name = self._server._authenticate(transport)
        except (AccessDenied, BadParameter, ValueError) as exc:
            log.warning("tunnel refused remote=%s reason=%r", peer, str(exc))
            self.close(f"tunnel refused: {exc}")
            return
        set_keepalive(transport.get_extra_info("socket"))
        if kind == "node":
            self.node = name
            self._server._offer_node(self)
        else:
            self.leaf = name
            self._server._register(self)

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        self._server._unregister(self)
        self._server._ended.put_nowait(self)

    def heartbeat(self) -> None:
        """Ask the leaf for a sign of life; its PONG (as any frame) moves ``last_seen``
        past ``pinged``. Not awaited: the sweep checks for the answer."""
        self.pinged = self._clock.monotonic()
        self._send(FrameType.PING, 0, b"beat----")


class TunnelServer:
    def __init__(self, leaf_cas: Callable[[], dict[str, str]], report: Report,
                 store_events: StoreEvents, clock: Clock, timer: Monotonic, *,
                 own_nodes: OwnNodes | None = None,
                 leaf_up: Callable[[str], None] | None = None,
                 store_inventory: StoreInventory | None = None) -> None:
        self._leaf_up = leaf_up  # told of each leaf tunnel that comes up
        # (leaf, body): what a leaf pushed of its nodes (None: refused, as a node's events)
        self._keep_inventory = store_inventory
        self._leaf_cas = leaf_cas  # leaf cluster -> its host CA (TLS PEM)
        self._report = report
        self._store_events = store_events
        self._clock = clock
        self._timer = timer
        self._own = own_nodes  # None: no node tunnels accepted
        self._sessions: HeldTunnels[_TunnelConnection] = HeldTunnels(  # by leaf
            MAX_TUNNELS_PER_PEER)
        self._nodes: HeldTunnels[_TunnelConnection] = HeldTunnels(  # admitted, by host id
            MAX_TUNNELS_PER_PEER)
        self._proxies: dict[str, str] = {}  # this cluster's proxies online: host id -> address
        self._as_of: dt.datetime | None = None  # when the registry listed them
        self._to_tell: asyncio.Queue[_TunnelConnection] = asyncio.Queue()  # of the proxies
        metrics.TUNNELS.labels("leaf").set_function(lambda: len(self._sessions.names()))
        metrics.TUNNELS.labels("node").set_function(lambda: len(self._nodes.names()))
        self._pending: set[_TunnelConnection] = set()  # node tunnels the auth has not admitted
        self._nodes_idle_reported = False
        self._verify_all_at = 0.0  # when a report next has the auth check every node tunnel
        self._ended: asyncio.Queue[_TunnelConnection] = asyncio.Queue()  # for _reap
        self._schedule = ReportSchedule(timer.monotonic())
        self._wake = asyncio.Event()
        self._idle_reported = False  # the auth knows we hold no tunnel: no need to repeat it

    def protocol(self) -> asyncio.Protocol:
        return _TunnelConnection(self)

    def _authenticate(self, transport: asyncio.BaseTransport) -> tuple[str, str]:
        """("leaf", cluster) or ("node", host id) of the far end's certificate."""
        der = peer_der(transport.get_extra_info("ssl_object"))
        if not der:
            raise AccessDenied("a tunnel needs the leaf proxy's host certificate")
        cert = cx509.load_der_x509_certificate(der)
        ident = x509.identity_of(cert)
        own = self._own
        if own is not None and ident.cluster == own.cluster:
            x509.verify_issued_by(cert, own.host_cas(), self._clock.now())
            if ident.kind != "host" or ident.system_role != "node":
                raise AccessDenied(f"only a node of {own.cluster} may open a node tunnel "
                                   f"(the certificate is a {ident.system_role or ident.kind}'s)")
            return "node", ident.name
        pem = self._leaf_cas().get(ident.cluster)
        if pem is None:
            raise AccessDenied(f"cluster {ident.cluster} is not a leaf of this cluster (removed, "
                               "or never joined): to join again, run `gatectl create -f` on "
                               "the leaf with a new token from this cluster")
        x509.verify_issued_by(cert, [x509.load_cert(pem)], self._clock.now())
        if ident.kind != "host" or ident.system_role != "proxy":
            raise AccessDenied(f"only a proxy of {ident.cluster} may open its tunnel")
        return "leaf", ident.cluster

    def _offer_node(self, session: _TunnelConnection) -> None:
        """A node's tunnel, held back until the auth's next answer admits it."""
        self._pending.add(session)
        log.info("tunnel from node %s offered; asking the auth", session.node)
        self._changed()

    def _admit(self, refused: dict[str, str], offered: list[_TunnelConnection]) -> None:
        """Apply the auth's answer to a report of ``offered``: admit the pending tunnels
        it did not refuse, close every refused one."""
        for session in offered:
            reason = refused.get(session.node)
            if session.closed.done():
                self._pending.discard(session)
            elif reason is not None:
                log.warning("tunnel from node %s refused reason=%r", session.node, reason)
                session.close(f"tunnel refused: {reason}")
            elif session in self._pending:
                self._pending.discard(session)
                _, excess = self._nodes.add(session.node, session)
                _close_excess(excess, f"node {session.node}")
                self._to_tell.put_nowait(session)
                log.info("tunnel from node %s is up", session.node)

    def _register(self, session: _TunnelConnection) -> None:
        first, excess = self._sessions.add(session.leaf, session)
        _close_excess(excess, f"leaf {session.leaf}")
        if first:
            self._changed()
        self._to_tell.put_nowait(session)
        log.info("tunnel from leaf %s is up", session.leaf)
        if self._leaf_up is not None:
            self._leaf_up(session.leaf)

    def _unregister(self, session: _TunnelConnection) -> None:
        self._pending.discard(session)
        reason = session.closed.result() if session.closed.done() else "closed"
        if session.node and self._nodes.discard(session.node, session):
            log.info("tunnel from node %s is down: %s", session.node, reason)
            self._changed()
        if session.leaf and self._sessions.discard(session.leaf, session):
            log.info("tunnel from leaf %s is down: %s", session.leaf, reason)
            self._changed()

    def _store_inventory(self, leaf: str, body: bytes) -> None:
        if self._keep_inventory is None:
            raise BadParameter("this proxy keeps no inventory")
        self._keep_inventory(leaf, body)

    def _changed(self) -> None:
        self._schedule.changed(self._timer.monotonic())
        self._wake.set()

    async def run(self) -> None:
        """Heartbeats to quiet tunnels, and reports of the ones held to the auth, until
        cancelled; then close every tunnel and await what ran on them."""
        try:
            async with asyncio.TaskGroup() as tg:
                tg.create_task(self._heartbeats())
                tg.create_task(self._reports())
                tg.create_task(self._reap())
                tg.create_task(self._tell_proxies())
        finally:
            await asyncio.gather(*(s.aclose("proxy shutting down")
                                   for s in {*self._sessions, *self._nodes, *self._pending}))
            while not self._ended.empty():
                await self._ended.get_nowait().wait_closed()

    async def _heartbeats(self) -> None:
        while True:
            await self.sweep(self._timer.monotonic())

    async def _reports(self) -> None:
        while True:
            now = self._timer.monotonic()
            if self._schedule.wait(now) == 0:
                await self._report_held(now)
                continue
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await wait_for(self._timer, self._wake.wait(), self._schedule.wait(now))

    def announce(self, proxies: Mapping[str, str], as_of: dt.datetime | None = None) -> None:
        """This cluster's proxies online (host id -> address), as the registry listed them
        at ``as_of``: every agent is told when the set changes (and when, so that it
        keeps the registry's newest word, coverage.py)."""
        self._as_of = as_of
        if proxies != self._proxies:
            self._proxies = dict(proxies)
            log.info("proxies of this cluster: %s", ", ".join(
                f"{name} at {addr}" for name, addr in sorted(proxies.items())) or "none")
            for session in (*self._sessions, *self._nodes):
                self._to_tell.put_nowait(session)

    async def _tell_proxies(self) -> None:
        """Tell each queued agent the proxies, a batch at a time (bounded: an agent that
        does not take the news within ANNOUNCE_TIMEOUT hears it with the next change)."""
        while True:
            batch = {await self._to_tell.get()}
            while len(batch) < ANNOUNCE_BATCH and not self._to_tell.empty():
                batch.add(self._to_tell.get_nowait())
            if self._proxies:  # none known yet: the first heartbeat will tell them all
                await asyncio.gather(*(self._tell(s) for s in batch))

    async def _tell(self, session: _TunnelConnection) -> None:
        if session.closed.done():
            return
        try:
            news: dict[str, Any] = {"kind": "proxies", "proxies": self._proxies}
            if self._as_of is not None:
                news["as_of"] = self._as_of.isoformat()
            stream = await session.open(news, timeout=ANNOUNCE_TIMEOUT)
        except ConnectionProblem as exc:  # an agent of a version before several proxies
            log.debug("the proxies not told to %s: %s", session._who(), exc)
            return
        stream.reset("")

    async def _reap(self) -> None:
        """Await the stream handlers of each tunnel that ended (cancelled as it ended):
        one task for all, where a task per tunnel would cost memory per idle tunnel."""
        while True:
            session = await self._ended.get()
            await session.wait_closed()

    async def _report_held(self, now: float) -> None:
        self._schedule.sending(now)
        held = self._sessions.names()
        offered = [*self._nodes, *self._pending]
        try:
            if held or not self._idle_reported:  # a proxy without leaves stays quiet
                await self._report(held)
                self._idle_reported = not held
            if self._own is not None and (offered or not self._nodes_idle_reported):
                every = now >= self._verify_all_at
                verify = None if every else [s.node for s in offered if s in self._pending]
                if every:
                    self._verify_all_at = now + VERIFY_ALL_INTERVAL
                try:
                    refused = await self._own.report([s.node for s in offered], verify)
                except GatehouseError:
                    if every:  # not checked: the next report checks them all
                        self._verify_all_at = 0.0
                    raise
                self._nodes_idle_reported = not offered
                self._admit(refused, offered)
        except GatehouseError as exc:
            log.warning("could not report the tunnels held to the auth: %s", exc)
            self._schedule.failed(self._timer.monotonic())

    def recheck_nodes(self) -> None:
        """Ask the auth about every node tunnel at once (a node may have been removed)."""
        self._verify_all_at = 0.0
        if self._nodes or self._pending:
            self._changed()

    async def sweep(self, now: float, spread: float = SWEEP_INTERVAL) -> None:
        """One round, ``spread`` seconds long: drop the tunnels that left a heartbeat
        unanswered, and ping those not heard from for a while, in up to PING_STEPS
        batches over the round.

        ``now`` is the server's monotonic clock, the clock of ``last_seen`` and ``pinged``. The
        batches are spread because the answers to one burst re-arm the TCP keepalive
        timers of all those tunnels, on both ends, for the same instant, and a burst of
        thousands of keepalive probes overflows the kernel's backlog (on loopback,
        net.core.netdev_max_backlog), which drops them: seen as tunnels timing out.
        """
        ping, dead = sweep(((s, s.last_seen, s.pinged) for s in
                            (*self._sessions, *self._nodes)), now)
        for session in dead:
            log.warning("dropping the tunnel from %s: no answer to a heartbeat",
                        f"leaf {session.leaf}" if session.leaf else f"node {session.node}")
            session.abort()
        steps = max(1, min(PING_STEPS, len(ping)))  # no pings: one sleep, no wake-ups
        for i in range(steps):
            for session in ping[i::steps]:
                session.heartbeat()
            if spread > 0:
                await self._timer.sleep(spread / steps)

    def drop_unknown(self) -> None:
        """Close tunnels of leaves that are no longer trusted (removed on the auth)."""
        known = self._leaf_cas()
        for session in list(self._sessions):
            if session.leaf not in known:
                session.close("this leaf was removed from the root: to join again, run "
                              "`gatectl create -f` on the leaf with a new token from the root")

    def connected(self) -> list[str]:
        return self._sessions.names()

    def connected_nodes(self) -> list[str]:
        """The host ids of the nodes whose admitted tunnels this proxy holds."""
        return self._nodes.names()

    async def open_node(self, host_id: str, meta: dict[str, Any]) -> MuxStream:
        """A stream to node ``host_id``'s own SSH server, over its tunnel (``meta``'s
        target, the name the user gave, names the node in errors)."""
        name = str(meta.get("target") or host_id)[:200]
        session = self._nodes.get(host_id)
        if session is None:
            raise ConnectionProblem(f"node {name} is offline (its tunnel is not connected "
                                    "to this proxy)")
        try:
            return await session.open(meta)
        except ConnectionProblem:
            if not session.closed.done():
                raise
            raise ConnectionProblem(
                f"node {name} is offline ({session.closed.result()})") from None

    async def open(self, leaf: str, meta: dict[str, Any]) -> MuxStream:
        session = self._sessions.get(leaf)
        if session is None:
            if leaf in self._leaf_cas():
                raise ConnectionProblem(f"cluster {leaf} is offline (its tunnel is not connected)")
            raise BadParameter(f"unknown cluster {leaf}")
        try:
            return await session.open(meta)
        except ConnectionProblem:
            if not session.closed.done():  # the leaf refused the stream, or did not answer
                raise
            # The tunnel went while the stream was asked for (a link gone dark is found
            # out only by the kernel's timeouts): the user learns which cluster is away.
            raise ConnectionProblem(
                f"cluster {leaf} is offline ({session.closed.result()})") from None

    async def relay_api(self, leaf: str, call: APICall) -> tuple[int, bytes]:
        """Relay an API call to ``leaf``'s auth over its tunnel."""
        stream = await self.open(leaf, {
            "kind": "api", "method": call.method, "path": call.path, "remote": call.remote,
            "client_cert": base64.b64encode(call.client_der).decode() if call.client_der else "",
        })
        try:  # a leaf that takes the stream and never reads would hold the write for ever
            await wait_for(self._timer, stream.write(call.body), MESSAGE_DEADLINE)
        except TimeoutError:
            reason = f"the leaf did not take the call within {MESSAGE_DEADLINE:g} s"
            stream.reset(reason)
            raise ConnectionProblem(reason) from None
        stream.write_eof()
        reply = json.loads(await read_all(stream, MAX_REPLY))
        return int(reply["status"]), base64.b64decode(reply["body"])


def _close_excess(tunnels: list[_TunnelConnection], peer: str) -> None:
    """Close the oldest tunnels of a peer that holds more than it may (limits.py)."""
    for old in tunnels:
        reason = f"at most {MAX_TUNNELS_PER_PEER} tunnels of one peer on one proxy"
        log.warning("tunnel from %s closed reason=%r", peer, reason)
        old.close(reason)
