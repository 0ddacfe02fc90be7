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
from gatehouse.services.events import CODES, SESSION_EVENTS, AuditEvent
from gatehouse.wire.authapi import EventsStored
from gatehouse.wire.eventsize import MAX_FIELDS, bound_event
from gatehouse.wire.recording import is_session_id

__all__ = ["HOST_EVENTS", "MAX_BATCH", "admit_host_event", "admit_leaf_event",
           "store_host_events", "store_leaf_events"]

log = logging.getLogger(__name__)

EVENT_SKEW = dt.timedelta(minutes=5)
MAX_BATCH = 1000
SEEN_FOR = dt.timedelta(days=7)
# What each kind of host may report; the auth stamps time, id, cluster and node itself.
HOST_EVENTS = {
    "node": frozenset({"session.start", "session.end", "session.abort", "session.rejected",
                       "session.recording.failure", "session.upload.failure",
                       "exec", "auth", "port_forward", "port_forward.denied", "sftp",
                       "sftp.denied"}),
    "proxy": frozenset({"proxy.dial.denied", "client_cert.denied"}),
}


def admit_host_event(raw: object, system_role: str,
                     now: dt.datetime) -> tuple[AuditEvent, dt.datetime]:
    """The event a host reported and the time to file it at; BadParameter says why not.

    The host's clock counts only within EVENT_SKEW of ours. A message or fields past
    their bound are cut to fit (wire.eventsize), never a reason to drop the event.
    """
    ev = AuditEvent.from_json_obj(bound_event(raw) if isinstance(raw, dict) else {})
    if ev.event not in HOST_EVENTS.get(system_role, frozenset()):
        raise BadParameter(f"a {system_role} may not emit {ev.event!r}")
    _check_texts(ev)
    return ev, ev.time if abs(ev.time - now) <= EVENT_SKEW else now


def admit_leaf_event(raw: object, leaf: str, now: dt.datetime) -> AuditEvent:
    """A leaf's forwarded event (``{"key", "event"}``) as its root files it; BadParameter
    says why not. The leaf's name is the tunnel's, never the event's; the root's clock
    (``now``) is the event's time, and the leaf's own time is kept as ``leaf_time``: a
    leaf does not choose where its events sort. Its message and fields are cut to fit
    as a host's are; past that, an event is refused for its size."""
    item = raw if isinstance(raw, dict) else {}
    body = bound_event(item["event"]) if isinstance(item.get("event"), dict) else {}
    ev = AuditEvent.from_json_obj(body)
    if ev.event not in CODES or len(json.dumps(body)) > MAX_FIELDS * 2:
        raise BadParameter("unknown or oversized event")
    _check_texts(ev)
    ts, _, event_id = str(item.get("key", "")).partition("/")
    if not (len(ts) == 20 and ts.isdigit()) or event_id != ev.id or not is_session_id(ev.id):
        raise BadParameter(f"malformed event key {str(item.get('key'))[:80]!r}")
    return dataclasses.replace(ev, cluster=leaf, code=CODES[ev.event], time=now,
                               leaf_time=ev.time)


def _check_texts(ev: AuditEvent) -> None:
    texts = (ev.id, ev.user, ev.login, ev.node, ev.remote_addr, ev.session_id,
             ev.correlation_id, ev.message)
    if not all(isinstance(t, str) for t in texts) or not isinstance(ev.fields, dict):
        raise BadParameter("event fields have the wrong types")


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
            # A dial without a valid certificate, or a certificate refused in the TLS
            # handshake: a stranger's, its repeats counted.
            await server.failures.record(fixed)
        else:
            await server.audit.store_once(host_id, ev.id, fixed, now + SEEN_FOR)
        stored += 1  # stored now, or before: either way the host may forget it
    return EventsStored(stored=stored, rejected=rejected)


async def store_leaf_events(server: AuthServer, leaf: str, items: list[Any]) -> EventsStored:
    """A root stores a leaf's events, relayed by its proxy from the leaf's tunnel, in the
    order it receives them; an event resent is stored once. A session's id is indexed
    before its event is stored, so an event the leaf need not resend is indexed."""
    try:
        await server.trust.remotes.get(leaf)
    except (NotFound, BadParameter):
        raise AccessDenied(f"cluster {leaf} is not a leaf of this cluster") from None
    now = server.clock.now()
    stored = 0
    rejected = max(0, len(items) - MAX_BATCH)
    for raw in items[:MAX_BATCH]:
        try:
            ev = admit_leaf_event(raw, leaf, now)
        except (BadParameter, TypeError, ValueError) as exc:
            log.warning("rejected an event from leaf %s: %s", leaf, exc)
            rejected += 1
            continue
        if ev.event in SESSION_EVENTS:
            await server.recordings.add_leaf_session(ev.session_id, leaf)
        await server.audit.store_once(f"~{leaf}", ev.id, ev, now + SEEN_FOR)
        stored += 1  # stored now, or before: either way the leaf may forget it
    return EventsStored(stored=stored, rejected=rejected)
