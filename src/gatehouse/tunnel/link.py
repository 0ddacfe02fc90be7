"""One reverse tunnel, kept up: dial, hold until it closes, back off, redial.

The one implementation for both dialing ends: a leaf proxy's tunnel to a root, and a
tunnel-mode node's tunnel to its own cluster's proxy. The dialer dials the proxy's
single TLS port (ALPN ``gatehouse-tunnel/1``) with its host certificate and verifies
the far end by the host CA it pinned at join; the far end must be a proxy of that
cluster (relaycheck.check_root_proxy), checked before any frame is read: only that
cluster's proxy may open streams here. While the tunnel is up it serves the streams
the proxy opens (a leaf: serve.py, one StreamServer per root; a node: its SSH server)
and runs ``while_up`` (a leaf forwards its events, eventsend.py). The proxy sends the
heartbeats and this end answers them (see liveness.py); a proxy silent for
ROOT_SILENT_AFTER is redialed. Redials back off exponentially with jitter; time and
randomness are injected. A leaf is told each change of state (``on_state``): down with
the reason, or up once the tunnel has outlived a refusal (REFUSED_WITHIN).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import ssl
from collections.abc import Callable, Coroutine
from typing import Any

from gatehouse._sys.hostport import split_host_port
from gatehouse.clock import Monotonic, wait_for
from gatehouse.errors import AccessDenied
from gatehouse.pki import tls
from gatehouse.pki.keystore import StoredIdentity
from gatehouse.pki.tls import peer_der
from gatehouse.tunnel.liveness import ROOT_SILENT_AFTER, set_keepalive
from gatehouse.tunnel.mux import MuxSession, OnOpen
from gatehouse.tunnel.needs import Root, TunnelState
from gatehouse.tunnel.relaycheck import check_root_proxy
from gatehouse.wire.authapi import RootTunnel
from gatehouse.wire.names import ALPN_TUNNEL

__all__ = ["DIAL_TIMEOUT", "FIRST_BACKOFF", "HEALTHY_AFTER", "MAX_BACKOFF", "Backoff",
           "TunnelLink", "WhileUp"]

log = logging.getLogger(__name__)

DIAL_TIMEOUT = 15.0  # seconds for TCP and TLS
FIRST_BACKOFF = 0.2
MAX_BACKOFF = 10.0
# A dial and the tunnel it made that lasted this long together start the backoff over:
# a dial that waited out DIAL_TIMEOUT (a root silently cut off) is no burst of redials,
# so the next follows it at once.
HEALTHY_AFTER = 5.0
# A tunnel the root closes sooner than this after TLS, saying nothing, was refused in the
# handshake's last step: TLS 1.3 checks the client's certificate after the client is done.
REFUSED_WITHIN = 2.0
_NOT_TAKEN = ("the root's proxy closed the tunnel as it opened, without a word: it does not "
              "take this cluster's certificate (did the root remove this leaf? then, to join "
              "again, run `gatectl create -f` here with a new token from the root)")


class Backoff:
    """Delays between redials: FIRST_BACKOFF doubling up to MAX_BACKOFF, each scaled by
    a random factor in [0.5, 1.5) so that leaves cut off together do not redial together."""

    def __init__(self, rng: random.Random) -> None:
        self._rng = rng
        self._base = FIRST_BACKOFF

    def next(self) -> float:
        delay = self._base * self._rng.uniform(0.5, 1.5)
        self._base = min(self._base * 2, MAX_BACKOFF)
        return delay

    def reset(self) -> None:
        self._base = FIRST_BACKOFF


class _RootTunnel(MuxSession):
    """The dialing end of a tunnel to ``root``: closed unread unless the far end showed a
    proxy certificate of that root (``refused`` says why)."""

    def __init__(self, root: str, *, clock: Monotonic, on_open: OnOpen) -> None:
        super().__init__(dialer=True, clock=clock, on_open=on_open)
        self._root = root
        self.refused = ""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        try:
            check_root_proxy(peer_der(transport.get_extra_info("ssl_object")), self._root)
        except AccessDenied as exc:
            self.refused = str(exc)
            self.close(f"refused: {exc}")

    def data_received(self, data: bytes) -> None:
        if not self.refused:
            super().data_received(data)


WhileUp = Callable[[MuxSession], Coroutine[Any, Any, None]]  # runs while a tunnel is up


class TunnelLink:
    """Keeps a tunnel to ``root``'s proxy up until cancelled; nothing of it runs after
    that. ``what`` names the far end in the log ("root NAME", "proxy of NAME")."""

    def __init__(self, root: Root, identity: StoredIdentity, *, serve: OnOpen,
                 while_up: WhileUp | None, clock: Monotonic, rng: random.Random,
                 what: str, on_state: TunnelState | None) -> None:
        self._root = root
        self._on_state = on_state
        self._identity = identity
        self._serve = serve
        self._while_up = while_up
        self._clock = clock
        self._backoff = Backoff(rng)
        self._what = what

    async def run(self) -> None:
        self._tell(RootTunnel(root=self._root.name, up=False, detail="connecting"))
        while True:
            started = self._clock.monotonic()
            session = await self._dial()
            if session is not None:
                await self._hold(session)
            if self._clock.monotonic() - started > HEALTHY_AFTER:
                self._backoff.reset()
            await self._clock.sleep(self._backoff.next())

    def _context(self) -> ssl.SSLContext:
        ident = self._identity
        return tls.client_context(self._root.host_ca_tls, cert_file=ident.tls_cert_file,
                                  key_file=ident.key_pem_file, alpn=[ALPN_TUNNEL])

    async def _dial(self) -> MuxSession | None:
        """A new tunnel, or None (logged) if the root cannot be reached."""
        root = self._root
        host, port = split_host_port(root.proxy_addr)
        loop = asyncio.get_running_loop()
        try:
            transport, session = await wait_for(self._clock, loop.create_connection(
                lambda: _RootTunnel(root.name, clock=self._clock, on_open=self._serve),
                host, port, ssl=self._context(), server_hostname=host), DIAL_TIMEOUT)
        except (OSError, ssl.SSLError) as exc:  # TimeoutError is an OSError
            reason = (f"no answer within {DIAL_TIMEOUT:.0f} s" if isinstance(exc, TimeoutError)
                      else str(exc) or type(exc).__name__)
            log.warning("cannot reach %s at %s: %s", self._what, root.proxy_addr, reason)
            self._tell(RootTunnel(root=root.name, up=False, detail=(
                f"cannot reach the root's proxy at {root.proxy_addr}: {reason}")))
            return None
        if session.refused:
            log.warning("tunnel to %s at %s refused reason=%r", self._what,
                        root.proxy_addr, session.refused)
            self._tell(RootTunnel(root=root.name, up=False,
                                  detail=f"refused: {session.refused}"))
            return None
        set_keepalive(transport.get_extra_info("socket"))
        log.info("tunnel to %s at %s is up", self._what, root.proxy_addr)
        return session

    async def _hold(self, session: MuxSession) -> None:
        """Run ``while_up`` until the tunnel closes or the proxy goes silent."""
        opened = self._clock.monotonic()
        try:
            async with asyncio.TaskGroup() as tg:
                work = tg.create_task(self._while_up(session)) if self._while_up else None
                settled = tg.create_task(self._up_once_settled())
                await self._watch(session)
                if work is not None:
                    work.cancel()
                settled.cancel()
        finally:
            await session.aclose("tunnel agent stopping")
        reason = session.closed.result()
        log.warning("tunnel to %s closed: %s", self._what, reason)
        name = self._root.name
        if session.goodbye:
            state = RootTunnel(root=name, up=False, detail=f"the root closed it: {session.goodbye}")
        elif self._clock.monotonic() - opened < REFUSED_WITHIN:
            state = RootTunnel(root=name, up=False, detail=_NOT_TAKEN, refused=True)
        else:
            state = RootTunnel(root=name, up=False, detail=f"closed: {reason}")
        self._tell(state)

    async def _up_once_settled(self) -> None:
        """Tell that the tunnel is up once it has outlived a refusal (REFUSED_WITHIN)."""
        await self._clock.sleep(REFUSED_WITHIN)
        self._tell(RootTunnel(root=self._root.name, up=True))

    def _tell(self, state: RootTunnel) -> None:
        if self._on_state is not None:
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
