"""A proxy's presence with its auth: it heartbeats where it can be reached every
HEARTBEAT_INTERVAL, and hands each reply, the proxies of its cluster online now, to its
tunnel server, which tells its tunnel agents (they keep one tunnel to each proxy)."""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Awaitable, Callable, Mapping

from gatehouse.clock import Monotonic
from gatehouse.errors import AccessDenied, GatehouseError
from gatehouse.wire.authapi import ProxyHeartbeat, ProxySet

__all__ = ["HEARTBEAT_INTERVAL", "REFUSED_INTERVAL", "ProxyPresence"]

log = logging.getLogger(__name__)

HEARTBEAT_INTERVAL = 5.0  # services.proxies.ONLINE_WITHIN spans a few of these
# After a refusal (an address the proxy was not certified for: its config changed since
# it joined), beats go on this far apart: each refusal is audited.
REFUSED_INTERVAL = 60.0

Beat = Callable[[ProxyHeartbeat], Awaitable[ProxySet]]


class ProxyPresence:
    def __init__(self, beat: Beat, me: ProxyHeartbeat,
                 proxies: Callable[[Mapping[str, str], dt.datetime | None], None],
                 timer: Monotonic) -> None:
        self._beat = beat
        self._me = me
        # Told the proxies online (host id -> address) after each beat, and when the
        # auth read them.
        self._proxies = proxies
        self._timer = timer

    async def run(self) -> None:
        """Heartbeat until cancelled; a failed beat is logged and the next one tried."""
        while True:
            wait = HEARTBEAT_INTERVAL
            try:
                online = await self._beat(self._me)
            except AccessDenied as exc:
                log.error("the auth refuses this proxy's heartbeat: %s", exc)
                wait = REFUSED_INTERVAL
            except GatehouseError as exc:
                log.warning("proxy heartbeat failed: %s", exc)
            else:
                self._proxies({p.name: p.addr for p in online.proxies}, online.as_of)
            await self._timer.sleep(wait)
