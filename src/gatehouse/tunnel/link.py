"""Reverse tunnels to one cluster, kept up: one to each of its proxies.

The one implementation for both dialing ends: a leaf proxy's tunnels to a root, and a
tunnel-mode node's tunnels to its own cluster's proxies. Each tunnel dials a proxy's
single TLS port (ALPN ``gatehouse-tunnel/1``) with the host certificate and verifies
the far end by the host CA pinned at join; the far end must be a proxy of that cluster
(relaycheck.check_root_proxy), checked before any frame is read: only that cluster's
proxies may open streams here. Its certificate names the proxy reached.

The proxies tell which proxies are online ("proxies" streams, tunnel/server.py), and
the link runs one dial loop per proxy (coverage.py decides where each dials and which
tunnel is redundant): so a user who lands on any proxy finds this cluster or node
online. While a tunnel is up it serves the streams its proxy opens (a leaf: serve.py,
one StreamServer per root; a node: its SSH server); ``while_up`` (a leaf forwards its
events, eventsend.py) runs on one tunnel at a time. The proxy sends the heartbeats and
this end answers them (see liveness.py); a proxy silent for ROOT_SILENT_AFTER is
redialed. Redials back off exponentially with jitter; time and randomness are injected.
A leaf is told each change of state (``on_state``): up while any tunnel is up (once it
has outlived a refusal, REFUSED_WITHIN), else down with the reason.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import random
import ssl
from collections.abc import Callable, Coroutine
from typing import Any

from gatehouse._sys.hostport import split_host_port
from gatehouse._sys.tasks import TaskOwner
from gatehouse._sys.tlsfailure import verify_failure
from gatehouse.clock import Monotonic, wait_for
from gatehouse.errors import AccessDenied, BadParameter
from gatehouse.pki import tls
from gatehouse.pki.keystore import StoredIdentity
from gatehouse.pki.tls import peer_der
from gatehouse.tunnel.coverage import Coverage, Redial, parse_announcement
from gatehouse.tunnel.liveness import ROOT_SILENT_AFTER, set_keepalive
from gatehouse.tunnel.mux import MuxSession, MuxStream, OnOpen
from gatehouse.tunnel.needs import Root, TunnelState
from gatehouse.tunnel.relaycheck import check_root_proxy
from gatehouse.wire.authapi import RootTunnel
from gatehouse.wire.names import ALPN_TUNNEL

__all__ = ["DIAL_TIMEOUT", "TunnelLink", "WhileUp"]

log = logging.getLogger(__name__)

DIAL_TIMEOUT = 15.0  # seconds for TCP and TLS
# A tunnel the root closes sooner than this after TLS, saying nothing, was refused in the
# handshake's last step: TLS 1.3 checks the client's certificate after the client is done.
REFUSED_WITHIN = 2.0
_NOT_TAKEN = ("the root's proxy closed the tunnel as it opened, without a word: it does not "
              "take this cluster's certificate (did the root remove this leaf? then, to join "
              "again, run `gatectl create -f` here with a new token from the root)")


class _RootTunnel(MuxSession):
    """The dialing end of a tunnel to ``root``: closed unread unless the far end showed a
    proxy certificate of that root (``refused`` says why)."""

    def __init__(self, root: str, *, clock: Monotonic, on_open: OnOpen) -> None:
        super().__init__(dialer=True, clock=clock, on_open=on_open)
        self._root = root
        self.refused = ""
        self.proxy = ""  # the host id of the proxy reached

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        try:
            self.proxy = check_root_proxy(peer_der(transport.get_extra_info("ssl_object")),
                                          self._root)
        except AccessDenied as exc:
            self.refused = str(exc)
            self.close(f"refused: {exc}")

    def data_received(self, data: bytes) -> None:
        if not self.refused:
            super().data_received(data)


WhileUp = Callable[[MuxSession], Coroutine[Any, Any, None]]  # runs while a tunnel is up


class TunnelLink:
    """Keeps a tunnel to each of ``root``'s proxies up until cancelled; nothing of it runs
    after that. ``what`` names the far end in the log ("root NAME", "proxy of NAME")."""

    def __init__(self, root: Root, identity: StoredIdentity, *, serve: OnOpen,
                 while_up: WhileUp | None, clock: Monotonic, rng: random.Random,
                 what: str, on_state: TunnelState | None) -> None:
        self._root = root
        self._on_state = on_state
        self._identity = identity
        self._serve = serve
        self._while_up = while_up
        self._clock = clock
        self._rng = rng
        self._what = what
        self._coverage = Coverage(root.proxy_addr)
        self._loops = TaskOwner(f"the tunnels to {what}")
        self._idle: set[asyncio.Task[None]] = set()  # loops that hold no tunnel now
        self._wake = asyncio.Event()  # the proxies announced, or those held, changed
        self._settled: set[str] = set()  # proxies whose tunnel outlived a refusal
        self._one_at_a_time = asyncio.Lock()  # for while_up

    async def run(self) -> None:
        self._tell(RootTunnel(root=self._root.name, up=False, detail="connecting"))
        try:
            while True:
                await self._reconcile()
                self._wake.clear()
                await self._wake.wait()
        finally:
            await self._loops.close()

    async def _reconcile(self) -> None:
        """As many dial loops as the coverage wants: new ones, or idle ones stopped."""
        surplus = len(self._loops) - self._coverage.loops()
        if surplus > 0:
            await self._loops.stop(list(self._idle)[:surplus])
        for _ in range(-surplus):
            self._loops.spawn(self._loop())

    async def _loop(self) -> None:
        """Dial, hold the tunnel if it reached a proxy not held yet, back off, again."""
        me = asyncio.current_task()
        assert me is not None
        redial = Redial(self._rng)
        try:
            while True:
                self._idle.add(me)
                started = self._clock.monotonic()
                session = await self._dial(self._coverage.address(redial.misses))
                kept = session is not None and self._coverage.take(session.proxy)
                if session is not None and kept:
                    log.info("tunnel to %s is up (proxy %s)", self._what, session.proxy)
                    self._idle.discard(me)
                    try:
                        await self._hold(session)
                    finally:
                        self._coverage.lost(session.proxy)
                        self._wake.set()
                elif session is not None:
                    log.info("tunnel to %s reached proxy %s again: closing the extra one",
                             self._what, session.proxy)
                    await session.aclose("redundant: this agent holds a tunnel to this proxy")
                await self._clock.sleep(redial.after(started, self._clock.monotonic(),
                                                     kept=kept))
        finally:
            self._idle.discard(me)

    def _context(self) -> ssl.SSLContext:
        ident = self._identity
        return tls.client_context(self._root.host_ca_tls, cert_file=ident.tls_cert_file,
                                  key_file=ident.key_pem_file, alpn=[ALPN_TUNNEL])

    async def _on_open(self, stream: MuxStream) -> None:
        """A stream the proxy opened: news of the proxies, or one to serve."""
        if stream.meta.get("kind") != "proxies":
            await self._serve(stream)
            return
        try:
            news = parse_announcement(stream.meta)
        except BadParameter as exc:
            log.warning("ignoring an announcement of proxies from %s: %s", self._what, exc)
            stream.refuse(str(exc))
            return
        stream.accept()
        if self._coverage.announce(news):
            self._wake.set()
        else:
            log.info("ignoring a stale announcement of proxies from %s (as of %s)",
                     self._what, news.as_of)

    async def _dial(self, addr: str) -> _RootTunnel | None:
        """A new tunnel, or None (logged) if no proxy can be reached at ``addr``."""
        root = self._root
        host, port = split_host_port(addr)
        loop = asyncio.get_running_loop()
        try:
            transport, session = await wait_for(self._clock, loop.create_connection(
                lambda: _RootTunnel(root.name, clock=self._clock, on_open=self._on_open),
                host, port, ssl=self._context(), server_hostname=host), DIAL_TIMEOUT)
        except (OSError, ssl.SSLError) as exc:  # TimeoutError is an OSError
            reason = (f"no answer within {DIAL_TIMEOUT:.0f} s" if isinstance(exc, TimeoutError)
                      else verify_failure(exc, dt.datetime.now(dt.UTC))
                      if isinstance(exc, ssl.SSLCertVerificationError)
                      else str(exc) or type(exc).__name__)
            log.warning("cannot reach %s at %s: %s", self._what, addr, reason)
            self._tell(RootTunnel(root=root.name, up=False, detail=(
                f"cannot reach the root's proxy at {addr}: {reason}")))
            return None
        if session.refused:
            log.warning("tunnel to %s at %s refused reason=%r", self._what, addr,
                        session.refused)
            self._tell(RootTunnel(root=root.name, up=False,
                                  detail=f"refused: {session.refused}"))
            return None
        set_keepalive(transport.get_extra_info("socket"))
        log.info("tunnel to %s at %s reached proxy %s", self._what, addr, session.proxy)
        return session

    async def _hold(self, session: _RootTunnel) -> None:
        """Run ``while_up`` until the tunnel closes or the proxy goes silent."""
        opened = self._clock.monotonic()
        try:
            async with asyncio.TaskGroup() as tg:
                work = tg.create_task(self._work(session)) if self._while_up else None
                settled = tg.create_task(self._up_once_settled(session.proxy))
                await self._watch(session)
                if work is not None:
                    work.cancel()
                settled.cancel()
        finally:
            self._settled.discard(session.proxy)
            await session.aclose("tunnel agent stopping")
        reason = session.closed.result()
        log.warning("tunnel to %s closed: %s (proxy %s)", self._what, reason, session.proxy)
        name = self._root.name
        if session.goodbye:
            state = RootTunnel(root=name, up=False, detail=f"the root closed it: {session.goodbye}")
        elif self._clock.monotonic() - opened < REFUSED_WITHIN:
            state = RootTunnel(root=name, up=False, detail=_NOT_TAKEN, refused=True)
        else:
            state = RootTunnel(root=name, up=False, detail=f"closed: {reason}")
        self._tell(state)

    async def _work(self, session: MuxSession) -> None:
        """``while_up`` on this tunnel, once no other tunnel runs it (a leaf forwards its
        events over one tunnel at a time)."""
        assert self._while_up is not None
        async with self._one_at_a_time:
            if not session.closed.done():
                await self._while_up(session)

    async def _up_once_settled(self, proxy: str) -> None:
        """Tell that a tunnel is up once it has outlived a refusal (REFUSED_WITHIN)."""
        await self._clock.sleep(REFUSED_WITHIN)
        self._settled.add(proxy)
        self._tell(RootTunnel(root=self._root.name, up=True))

    def _tell(self, state: RootTunnel) -> None:
        """Report a state; a tunnel down, or a dial failed, says nothing while another
        tunnel is up."""
        if self._on_state is not None and (state.up or not self._settled):
            self._on_state(state)

    async def _watch(self, session: MuxSession) -> None:
        """Return when the tunnel closes, or close a tunnel on which the root went silent:
        it pings a quiet tunnel every HEARTBEAT_INTERVAL, and the session answers (a dead
        peer is the kernel's keepalive's to find)."""
        while not session.closed.done():
            quiet = self._clock.monotonic() - session.last_seen
            if quiet >= ROOT_SILENT_AFTER:
                session.close("no heartbeat from the root")
                return
            with contextlib.suppress(TimeoutError):
                await wait_for(self._clock, asyncio.shield(session.closed),
                               ROOT_SILENT_AFTER - quiet)
