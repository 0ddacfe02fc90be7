"""The auth API's audit routes: hosts' events in, the event log out (to people, and
from a leaf to its root), and session recordings (chunks in, whole ones out)."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import logging

from aiohttp import web

from gatehouse.auth._apiutil import authorized, json_body, required, server_of
from gatehouse.backend import Item
from gatehouse.errors import AccessDenied, AlreadyExists, BadParameter, NotFound
from gatehouse.services.events import CODES, AuditEvent
from gatehouse.types.resource import parse_duration
from gatehouse.wire.recording import check_session_id

__all__ = ["add_routes"]

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


async def post_events(request: web.Request) -> web.Response:
    caller = await authorized(request, "event", "create")
    server = server_of(request)
    body = await json_body(request)
    raw_events = required(body, "events", list)
    host_id = caller.identity.name
    try:
        node = (await server.nodes.get(host_id)).spec.hostname
    except NotFound:
        node = host_id
    allowed = HOST_EVENTS.get(caller.identity.system_role, frozenset())
    stored = 0
    now = server.clock.now()
    rejected = max(0, len(raw_events) - MAX_BATCH)
    for raw in raw_events[:MAX_BATCH]:
        try:
            ev = AuditEvent.from_json_obj(raw if isinstance(raw, dict) else {})
            if ev.event not in allowed:
                raise BadParameter(f"a {caller.identity.system_role} may not emit {ev.event!r}")
            texts = (ev.user, ev.login, ev.remote_addr, ev.session_id, ev.correlation_id,
                     ev.message)
            if not all(isinstance(t, str) for t in texts) or not isinstance(ev.fields, dict):
                raise BadParameter("event fields have the wrong types")
            if len(ev.message) > MAX_MESSAGE or len(json.dumps(ev.fields)) > MAX_FIELDS:
                raise BadParameter("event too large")
            # The host's clock counts only within a few minutes of ours.
            when = ev.time if abs(ev.time - now) <= EVENT_SKEW else now
        except (BadParameter, TypeError, ValueError) as exc:  # one bad event, not the batch
            log.warning("rejected audit event from host %s: %s", host_id, exc)
            rejected += 1
            continue
        # A host resends what it is not sure arrived: its event id, once per host.
        try:
            await server.backend.create(Item(key=f"/event_seen/{host_id}/{ev.id}".encode(),
                                             value=b"", expires=now + SEEN_FOR))
        except AlreadyExists:
            stored += 1
            continue
        # The auth, not the host, says which cluster and node an event comes from, and
        # gives it its id.
        fixed = server.audit.new(
            ev.event, user=ev.user, login=ev.login, node=node,
            remote_addr=ev.remote_addr, session_id=ev.session_id,
            correlation_id=ev.correlation_id, message=ev.message,
            fields={**ev.fields, "server_id": host_id},
        )
        await server.audit.store(dataclasses.replace(fixed, time=when))
        stored += 1
    return web.json_response({"stored": stored, "rejected": rejected})


async def export_events(request: web.Request) -> web.Response:
    """A leaf proxy reads this cluster's events in storing order, to forward them."""
    await authorized(request, "event", "export")
    try:
        limit = min(int(request.query.get("limit", "500")), 1000)
    except ValueError:
        raise BadParameter("limit must be a number") from None
    events, last = await server_of(request).audit.export(request.query.get("after", ""), limit)
    return web.json_response({"events": [{"key": k, "event": e.to_json_obj()} for k, e in events],
                              "last": last})


async def export_cursor(request: web.Request) -> web.Response:
    """Where forwarding to a root stands: GET reads it, POST moves it (after the root's ack)."""
    await authorized(request, "event", "export")
    audit = server_of(request).audit
    if request.method == "POST":
        body = await json_body(request)
        root = required(body, "root")
        await audit.set_cursor(root, required(body, "after"))
    else:
        root = request.query.get("root", "")
    return web.json_response({"root": root, "after": await audit.cursor(root)})


async def remote_events(request: web.Request) -> web.Response:
    """A root stores a leaf's events, relayed by the root proxy from the leaf's tunnel.

    The leaf's name comes from the tunnel's authenticated identity (the URL the root
    proxy built), never from the events: a leaf cannot write another cluster's events.
    """
    await authorized(request, "remote_event", "create")
    server = server_of(request)
    leaf = request.match_info["leaf"]
    try:
        await server.trust.remotes.get(leaf)
    except NotFound:
        raise AccessDenied(f"cluster {leaf} is not a leaf of this cluster") from None
    items = required(await json_body(request), "events", list)
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
    return web.json_response({"stored": stored, "rejected": rejected})


async def put_recording_chunk(request: web.Request) -> web.Response:
    """A node uploads a finished session's recording, chunk by chunk."""
    await authorized(request, "recording", "upload")
    try:
        index = int(request.match_info["index"])
    except ValueError:
        raise BadParameter("chunk index must be a number") from None
    await server_of(request).recordings.put_chunk(request.match_info["id"], index,
                                                await request.read())
    return web.json_response({})


async def complete_recording(request: web.Request) -> web.Response:
    caller = await authorized(request, "recording", "upload")
    server = server_of(request)
    session_id = check_session_id(request.match_info["id"])
    body = await json_body(request)
    try:
        node = (await server.nodes.get(caller.identity.name)).spec.hostname
    except NotFound:
        node = caller.identity.name
    meta = {
        "session_id": session_id, "cluster": server.cluster, "node": node,
        **{k: str(body.get(k, "")) for k in ("user", "login", "start", "end", "command")},
        "truncated": bool(body.get("truncated", False)),
    }
    await server.recordings.complete(session_id, meta)
    return web.json_response(meta)


async def list_recordings(request: web.Request) -> web.Response:
    await authorized(request, "session", "list")
    return web.json_response(await server_of(request).recordings.list())


async def get_recording(request: web.Request) -> web.Response:
    await authorized(request, "session", "read")
    data = await server_of(request).recordings.read(request.match_info["id"])
    return web.Response(body=data, content_type="application/octet-stream")


async def recording_cluster(request: web.Request) -> web.Response:
    """Which cluster holds a recording: this one, or the leaf whose audit names it."""
    await authorized(request, "session", "read")
    server = server_of(request)
    session_id = check_session_id(request.match_info["id"])
    try:
        await server.recordings.meta(session_id)
        return web.json_response({"cluster": server.cluster})
    except NotFound:
        pass
    for ev in await server.audit.search(types=["session.end"]):
        if ev.session_id == session_id:
            return web.json_response({"cluster": ev.cluster})
    raise NotFound(f"recording {session_id} not found in {server.cluster} or its leaves")


# --- people: the event log ------------------------------------------------------------------


async def get_events(request: web.Request) -> web.Response:
    await authorized(request, "event", "list")
    q = request.query
    since = None
    if q.get("since"):
        since = server_of(request).clock.now() - parse_duration(q["since"])
    events = await server_of(request).audit.search(
        since=since,
        types=[t for t in q.get("type", "").split(",") if t],
        user=q.get("user", ""),
        cluster=q.get("cluster", ""),
    )
    return web.json_response([e.to_json_obj() for e in events])


def add_routes(r: web.UrlDispatcher) -> None:
    r.add_post("/v1/events", post_events)
    r.add_get("/v1/events", get_events)
    r.add_get("/v1/events/export", export_events)
    r.add_route("*", "/v1/events/export/cursor", export_cursor)
    r.add_post("/v1/remote_events/{leaf}", remote_events)
    r.add_put("/v1/recordings/{id}/chunks/{index}", put_recording_chunk)
    r.add_post("/v1/recordings/{id}/complete", complete_recording)
    r.add_get("/v1/recordings", list_recordings)
    r.add_get("/v1/recordings/{id}", get_recording)
    r.add_get("/v1/recordings/{id}/cluster", recording_cluster)
