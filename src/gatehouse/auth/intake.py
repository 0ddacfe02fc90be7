"""Audit events that arrive from elsewhere: a host's own (node, proxy), and a leaf's
forwarded by the root proxy. The checks are pure; the writes are the audit log's."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import logging
from typing import Any

from gatehouse.auth.server import AuthServer
from gatehouse.errors import AccessDenied, BadParameter, NotFound
from gatehouse.services.events import CODES, AuditEvent
from gatehouse.wire.authapi import EventsStored

__all__ = ["HOST_EVENTS", "MAX_BATCH", "admit_host_event", "store_host_events",
           "store_leaf_events"]

log = logging.getLogger(__name__)

EVENT_SKEW = dt.timedelta(minutes=5)
MAX_BATCH = 1000
SEEN_FOR = dt.timedelta(days=7)
MAX_MESSAGE = 2000
MAX_FIELDS = 8192
# What each kind of host may report; the auth stamps time, id, cluster and node itself.
HOST_EVENTS = {
    "node": frozenset({"session.start", "session.end", "session.abort", "session.rejected",
                       "exec", "auth", "port_forward", "port_forward.denied"}),
    "proxy": frozenset({"proxy.dial.denied"}),
}


def admit_host_event(raw: object, system_role: str,
                     now: dt.datetime) -> tuple[AuditEvent, dt.datetime]:
    """The event a host reported and the time to file it at; BadParameter says why not.

    The host's clock counts only within EVENT_SKEW of ours.
    """
    ev = AuditEvent.from_json_obj(raw if isinstance(raw, dict) else {})
    if ev.event not in HOST_EVENTS.get(system_role, frozenset()):
        raise BadParameter(f"a {system_role} may not emit {ev.event!r}")
    texts = (ev.user, ev.login, ev.remote_addr, ev.session_id, ev.correlation_id, ev.message)
    if not all(isinstance(t, str) for t in texts) or not isinstance(ev.fields, dict):
        raise BadParameter("event fields have the wrong types")
    if len(ev.message) > MAX_MESSAGE or len(json.dumps(ev.fields)) > MAX_FIELDS:
        raise BadParameter("event too large")
    return ev, ev.time if abs(ev.time - now) <= EVENT_SKEW else now


async def store_host_events(server: AuthServer, host_id: str, system_role: str,
                            raw_events: list[Any]) -> EventsStored:
    """File a host's events as this auth's own: the auth, not the host, says which
    cluster and node an event comes from, and gives it its id. One bad event is
    rejected alone; an event resent is stored once."""
    try:
        node = (await server.nodes.get(host_id)).spec.hostname
    except NotFound:
        node = host_id
    now = server.clock.now()
    stored = 0
    rejected = max(0, len(raw_events) - MAX_BATCH)
    for raw in raw_events[:MAX_BATCH]:
        try:
            ev, when = admit_host_event(raw, system_role, now)
        except (BadParameter, TypeError, ValueError) as exc:
            log.warning("rejected audit event from host %s: %s", host_id, exc)
            rejected += 1
            continue
        fixed = server.audit.new(
            ev.event, user=ev.user, login=ev.login, node=node,
            remote_addr=ev.remote_addr, session_id=ev.session_id,
            correlation_id=ev.correlation_id, message=ev.message,
            fields={**ev.fields, "server_id": host_id},
        )
        fixed = dataclasses.replace(fixed, time=when)
        if system_role == "proxy" and not fixed.user:
            # A dial without a valid certificate: a stranger's, its repeats counted.
            await server.failures.record(fixed)
        else:
            await server.audit.store_once(host_id, ev.id, fixed, now + SEEN_FOR)
        stored += 1  # stored now, or before: either way the host may forget it
    return EventsStored(stored=stored, rejected=rejected)


async def store_leaf_events(server: AuthServer, leaf: str, items: list[Any]) -> EventsStored:
    """A root stores a leaf's events, relayed by its proxy from the leaf's tunnel. The
    leaf's name comes from the tunnel's authenticated identity, never from the events:
    a leaf cannot write another cluster's events."""
    try:
        await server.trust.remotes.get(leaf)
    except (NotFound, BadParameter):
        raise AccessDenied(f"cluster {leaf} is not a leaf of this cluster") from None
    stored = rejected = 0
    for raw in items[:MAX_BATCH]:
        try:
            ev = AuditEvent.from_json_obj(raw["event"])
            if ev.event not in CODES or len(json.dumps(raw["event"])) > MAX_FIELDS * 2:
                raise BadParameter("unknown or oversized event")
            await server.audit.store_remote(str(raw["key"]),
                                            dataclasses.replace(ev, cluster=leaf,
                                                                code=CODES[ev.event]))
            stored += 1
        except (BadParameter, KeyError, TypeError, ValueError) as exc:
            log.warning("rejected an event from leaf %s: %s", leaf, exc)
            rejected += 1
    rejected += max(0, len(items) - MAX_BATCH)
    return EventsStored(stored=stored, rejected=rejected)
