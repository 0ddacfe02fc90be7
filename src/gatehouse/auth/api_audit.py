"""The auth API's audit routes: hosts' events in, the event log out (to people, and
from a leaf to its root), and session recordings (chunks in, whole ones out).
Parse, call the caller's authorized view of the auth, encode."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import web

from gatehouse._sys.httpbody import read_body
from gatehouse.auth._apiutil import api_of, body_of, json_body
from gatehouse.errors import BadParameter
from gatehouse.wire.authapi import EventQuery, RecordingDone
from gatehouse.wire.names import EVENT_PAGE

__all__ = ["HANDLERS"]


def _list_field(body: dict[str, object], name: str) -> list[object]:
    value = body.get(name)
    if not isinstance(value, list):
        raise BadParameter(f"field {name!r} is missing or not a list")
    return value


async def post_events(request: web.Request) -> web.Response:
    events = _list_field(await json_body(request), "events")
    stored = await (await api_of(request)).post_events(events)  # type: ignore[arg-type]
    return web.json_response(stored.model_dump())


async def export_events(request: web.Request) -> web.Response:
    """A leaf proxy reads this cluster's events in storing order, to forward them."""
    try:
        limit = int(request.query.get("limit", "500"))
    except ValueError:
        raise BadParameter("limit must be a number") from None
    page = await (await api_of(request)).export_events(request.query.get("after", ""), limit)
    return web.json_response(page.model_dump())


async def export_cursor(request: web.Request) -> web.Response:
    """Where forwarding to a root stands."""
    root = request.query.get("root", "")
    return web.json_response({"root": root,
                              "after": await (await api_of(request)).export_cursor(root)})


async def set_export_cursor(request: web.Request) -> web.Response:
    """Move the forwarding cursor (after the root's ack)."""
    body = await json_body(request)
    root, after = body.get("root"), body.get("after")
    if not isinstance(root, str) or not isinstance(after, str):
        raise BadParameter("fields 'root' and 'after' must be strings")
    await (await api_of(request)).set_export_cursor(root, after)
    return web.json_response({"root": root, "after": after})


async def remote_events(request: web.Request) -> web.Response:
    """A root stores a leaf's events, relayed by the root proxy from the leaf's tunnel."""
    events = _list_field(await json_body(request), "events")
    stored = await (await api_of(request)).store_leaf_events(request.match_info["leaf"], events)
    return web.json_response(stored.model_dump())


async def put_recording_chunk(request: web.Request) -> web.Response:
    """A node uploads a finished session's recording, chunk by chunk."""
    try:
        index = int(request.match_info["index"])
    except ValueError:
        raise BadParameter("chunk index must be a number") from None
    api = await api_of(request)
    await api.put_recording_chunk(request.match_info["id"], index, await read_body(request))
    return web.json_response({})


async def complete_recording(request: web.Request) -> web.Response:
    done = await body_of(request, RecordingDone)
    meta = await (await api_of(request)).complete_recording(request.match_info["id"], done)
    return web.json_response(meta)


async def list_recordings(request: web.Request) -> web.Response:
    return web.json_response(await (await api_of(request)).list_recordings())


async def get_recording(request: web.Request) -> web.Response:
    data = await (await api_of(request)).get_recording(request.match_info["id"])
    return web.Response(body=data, content_type="application/octet-stream")


async def recording_cluster(request: web.Request) -> web.Response:
    """Which cluster holds a recording: this one, or the leaf whose sessions name it."""
    cluster = await (await api_of(request)).recording_cluster(request.match_info["id"])
    return web.json_response({"cluster": cluster})


async def search_events(request: web.Request) -> web.Response:
    """Events newest first, a page at a time: ``limit`` and ``cursor`` (a page's ``next``)."""
    q = request.query
    try:
        limit = int(q.get("limit", str(EVENT_PAGE)))
    except ValueError:
        raise BadParameter("limit must be a number") from None
    query = EventQuery(since=q.get("since", ""), types=[t for t in q.get("type", "").split(",")
                                                        if t],
                       user=q.get("user", ""), cluster=q.get("cluster", ""), limit=limit,
                       cursor=q.get("cursor", ""))
    page = await (await api_of(request)).search_events(query)
    return web.json_response(page.model_dump())


HANDLERS: dict[str, Callable[[web.Request], Awaitable[web.StreamResponse]]] = {
    "post_events": post_events, "search_events": search_events,
    "export_events": export_events, "export_cursor": export_cursor,
    "set_export_cursor": set_export_cursor, "store_leaf_events": remote_events,
    "put_recording_chunk": put_recording_chunk, "complete_recording": complete_recording,
    "list_recordings": list_recordings, "get_recording": get_recording,
    "recording_cluster": recording_cluster,
}
