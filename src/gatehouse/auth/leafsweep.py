"""The root removes remote clusters offline longer than ``auth_service.
remote_cluster_offline_ttl`` (the decision: auth.leafexpiry), each removal audited as
``remote_cluster.expire``: what ``gatectl rm rc/NAME`` would do, unattended."""

from __future__ import annotations

import datetime as dt
import logging

from gatehouse.auth.leafexpiry import expired_leaves
from gatehouse.auth.server import AuthServer
from gatehouse.clock import Monotonic
from gatehouse.errors import GatehouseError, NotFound
from gatehouse.types.resource import format_duration

__all__ = ["SWEEP_EVERY", "remove_expired_leaves", "run"]

log = logging.getLogger(__name__)

SWEEP_EVERY = 60.0  # seconds between sweeps: a TTL is hours or days


async def remove_expired_leaves(server: AuthServer, ttl: dt.timedelta) -> list[str]:
    """Remove (and audit) every leaf offline longer than ``ttl`` now; their names."""
    if ttl <= dt.timedelta(0):
        return []
    now = server.clock.now()
    removed = []
    for gone in expired_leaves(await server.trust.remote_clusters(),
                               await server.trust.leaves_joined(), now, ttl):
        try:
            await server.trust.remove_leaf(gone.leaf)
        except NotFound:  # removed meanwhile (gatectl rm, another auth's sweep)
            continue
        removed.append(gone.leaf)
        message = (f"remote cluster {gone.leaf} removed: offline since "
                   f"{gone.offline_since.isoformat()}, longer than "
                   f"auth_service.remote_cluster_offline_ttl ({format_duration(ttl)})")
        log.warning("remote cluster expired leaf=%s offline_since=%s ttl=%s", gone.leaf,
                    gone.offline_since.isoformat(), format_duration(ttl))
        await server.audit.emit("remote_cluster.expire", message=message, fields={
            "leaf": gone.leaf, "offline_since": gone.offline_since.isoformat(),
            "ttl": format_duration(ttl)})
    return removed


async def run(server: AuthServer, ttl: dt.timedelta, timer: Monotonic) -> None:
    """Sweep every SWEEP_EVERY seconds until cancelled (nothing to do for a zero TTL)."""
    if ttl <= dt.timedelta(0):
        return
    while True:
        try:
            await remove_expired_leaves(server, ttl)
        except GatehouseError as exc:
            log.warning("could not remove expired remote clusters: %s", exc)
        await timer.sleep(SWEEP_EVERY)
