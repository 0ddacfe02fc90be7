"""Which remote clusters have been offline too long to keep (``auth_service.
remote_cluster_offline_ttl``, Teleport #3871). Pure: the caller reads the clusters and
the clock, and removes (and audits) what this returns."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from gatehouse.types.remote_cluster import RemoteCluster

__all__ = ["Expired", "expired_leaves"]


@dataclass(frozen=True)
class Expired:
    leaf: str
    offline_since: dt.datetime  # its last heartbeat, or its join when it never had one


def expired_leaves(remotes: Iterable[RemoteCluster], joined: Mapping[str, dt.datetime],
                   now: dt.datetime, ttl: dt.timedelta) -> list[Expired]:
    """The offline leaves last heard from (or, never heard from, joined) more than ``ttl``
    before ``now``. A zero ``ttl`` keeps every leaf; an online leaf is always kept, and so
    is one with neither a heartbeat nor a known join time (nothing to count from)."""
    if ttl <= dt.timedelta(0):
        return []
    out = []
    for rc in remotes:
        if rc.status.connection == "online":
            continue
        since = rc.status.last_heartbeat or joined.get(rc.metadata.name)
        if since is not None and now - since > ttl:
            out.append(Expired(rc.metadata.name, since))
    return out
