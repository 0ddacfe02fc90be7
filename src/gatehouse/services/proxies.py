"""The proxies of this cluster in storage: each one's last heartbeat, kept for a while.

A proxy heartbeats every PROXY_HEARTBEAT_INTERVAL (proxy/presence.py); its record is
``/proxies/<host id>``, expiring PROXY_KEPT after the last
heartbeat, so a proxy gone for good leaves the listing by itself. It is ``online``
while its last heartbeat is at most ONLINE_WITHIN old: the proxies the tunnel agents
are told to hold a tunnel to (``online``).
"""

from __future__ import annotations

import datetime as dt

from gatehouse.backend import Backend
from gatehouse.services.resources import ResourceStore
from gatehouse.types.proxy import Proxy, ProxyStatus

__all__ = ["ONLINE_WITHIN", "PROXY_KEPT", "ProxyStore"]

# A proxy heartbeats every 5 s; this spans a few missed heartbeats.
ONLINE_WITHIN = dt.timedelta(seconds=15)
PROXY_KEPT = dt.timedelta(hours=1)  # an offline proxy stays listed this long


class ProxyStore(ResourceStore[Proxy]):
    def __init__(self, backend: Backend) -> None:
        super().__init__(backend, "proxy", Proxy)

    async def heartbeat(self, proxy: Proxy, now: dt.datetime) -> None:
        """Record that ``proxy`` is alive at ``now``."""
        proxy = proxy.model_copy(update={
            "metadata": proxy.metadata.model_copy(update={"expires": now + PROXY_KEPT}),
            "status": ProxyStatus(connection="online", last_heartbeat=now)})
        await self.upsert(proxy)

    async def judged(self, now: dt.datetime) -> list[Proxy]:
        """Every proxy listed, each ``status.connection`` as of ``now``."""
        return [_judge(p, now) for p in await self.list()]

    async def online(self, now: dt.datetime) -> list[Proxy]:
        """The proxies heartbeating now, by name."""
        return [p for p in await self.judged(now) if p.status.connection == "online"]


def _judge(proxy: Proxy, now: dt.datetime) -> Proxy:
    beat = proxy.status.last_heartbeat
    fresh = beat is not None and now - beat <= ONLINE_WITHIN
    return proxy.model_copy(update={"status": ProxyStatus(
        connection="online" if fresh else "offline", last_heartbeat=beat)})
