"""The auth service's HTTPS API: each handler parses the request, calls the caller's
authorized view of the auth (auth.authz.AuthWithRoles), and encodes the reply."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web
from pydantic import BaseModel

from gatehouse.auth import api_audit
from gatehouse.auth._apiutil import RELAYED, SERVER, api_of, body_of, json_body, server_of
from gatehouse.auth.api_limits import limit_attempts
from gatehouse.auth.authz import AuthWithRoles
from gatehouse.auth.server import AuthServer
from gatehouse.errors import BadParameter, GatehouseError
from gatehouse.types.cluster_access import ClusterAccess
from gatehouse.types.yaml_io import canonical_kind, from_json_obj, to_json_obj
from gatehouse.wire.authapi import (
    ROUTES,
    DeviceBegin,
    DevicePoll,
    Heartbeat,
    JoinRequest,
    LeafJoinRequest,
    LeafLoginRequest,
    LoginRequest,
    NodeQuery,
    NodeTunnels,
    ProxyHeartbeat,
    RemoteTunnels,
    RenewRequest,
    RootTunnels,
    SSOBegin,
    SSOCallback,
    SSOComplete,
    TokenRequest,
)
from gatehouse.wire.names import RECORDING_CHUNK

__all__ = ["make_api_app"]

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
# The tasks serving watch streams: they end only when told to (see _end_watches).
_WATCHES: web.AppKey[set[asyncio.Task[Any]]] = web.AppKey("watches", set)


@web.middleware
async def _errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except GatehouseError as exc:
        return web.json_response({"error": str(exc)}, status=exc.status)
    except web.HTTPException as exc:
        message = f"no such API call: {request.method} {request.path}" \
            if exc.status in (404, 405) else exc.reason
        return web.json_response({"error": message}, status=exc.status)
    except Exception:
        log.exception("internal error serving %s %s", request.method, request.path)
        return web.json_response({"error": "internal error in the auth service"}, status=500)


def _reply(model: BaseModel, status: int = 200) -> web.Response:
    return web.json_response(model.model_dump(mode="json"), status=status)


async def ping(request: web.Request) -> web.Response:
    """Who this auth is: public, and asked before any certificate is shown (a join's
    pin check, gatectl status of a proxy), so the caller is not identified."""
    return _reply(await AuthWithRoles(server_of(request), None).ping())


async def login(request: web.Request) -> web.Response:
    req = await body_of(request, LoginRequest)
    return _reply(await (await api_of(request)).login(req))


async def leaf_login(request: web.Request) -> web.Response:
    req = await body_of(request, LeafLoginRequest)
    return _reply(await (await api_of(request)).leaf_login(req))


async def sso_begin(request: web.Request) -> web.Response:
    req = await body_of(request, SSOBegin)
    return _reply(await (await api_of(request)).sso_begin(req))


async def sso_finish(request: web.Request) -> web.Response:
    callback = await body_of(request, SSOCallback)
    return _reply(await (await api_of(request)).sso_finish(callback))


async def sso_complete(request: web.Request) -> web.Response:
    req = await body_of(request, SSOComplete)
    return _reply(await (await api_of(request)).sso_complete(req))


async def sso_device_begin(request: web.Request) -> web.Response:
    req = await body_of(request, DeviceBegin)
    return _reply(await (await api_of(request)).sso_device_begin(req))


async def sso_device_poll(request: web.Request) -> web.Response:
    req = await body_of(request, DevicePoll)
    return _reply(await (await api_of(request)).sso_device_poll(req))


async def join(request: web.Request) -> web.Response:
    req = await body_of(request, JoinRequest)
    return _reply(await (await api_of(request)).join(req))


async def join_leaf(request: web.Request) -> web.Response:
    """Root side of a trusted-cluster join (anonymous: the token is the credential)."""
    req = await body_of(request, LeafJoinRequest)
    return _reply(await (await api_of(request)).join_leaf(req))


async def heartbeat(request: web.Request) -> web.Response:
    beat = await body_of(request, Heartbeat)
    return web.json_response(to_json_obj(await (await api_of(request)).heartbeat(beat)))


async def node_tunnels(request: web.Request) -> web.Response:
    """A proxy's report of the node tunnels it holds; the reply refuses some."""
    report = await body_of(request, NodeTunnels)
    return _reply(await (await api_of(request)).report_node_tunnels(report))


async def proxy_heartbeat(request: web.Request) -> web.Response:
    """A proxy's presence; the reply is every proxy online now."""
    beat = await body_of(request, ProxyHeartbeat)
    return _reply(await (await api_of(request)).proxy_heartbeat(beat))


async def renew(request: web.Request) -> web.Response:
    req = await body_of(request, RenewRequest)
    return _reply(await (await api_of(request)).renew(req))


async def resolve(request: web.Request) -> web.Response:
    target = request.query.get("target", "")
    return web.json_response(to_json_obj(await (await api_of(request)).resolve_node(target)))


async def trust(request: web.Request) -> web.StreamResponse:
    """What a node needs to decide (CAs, roles, users); ?watch=1 streams a new line per
    change, and an empty line after each quiet spell (a vanished client shows there)."""
    api = await api_of(request)
    if request.query.get("watch") != "1":
        return web.json_response((await api.trust()).to_json())
    stream = api.watch_trust_with_keepalives()
    first = await anext(stream)  # authorized, and the first snapshot, before any byte
    response = web.StreamResponse(headers={"Content-Type": "application/x-ndjson"})
    await response.prepare(request)
    task = asyncio.current_task()
    assert task is not None
    request.app[_WATCHES].add(task)
    try:
        async with contextlib.aclosing(stream):
            snapshot = first
            while True:
                line = json.dumps(snapshot.to_json()) if snapshot is not None else ""
                try:
                    await response.write(line.encode() + b"\n")
                except ConnectionResetError:  # stopped, killed or moved: what a watch is for
                    log.info("trust watch ended: the client went away path=%s peer=%s",
                             request.path, request.remote)
                    break
                try:
                    snapshot = await anext(stream)
                except StopAsyncIteration:
                    break
    finally:
        request.app[_WATCHES].discard(task)
    return response


async def remote_heartbeat(request: web.Request) -> web.Response:
    """A root proxy's report of every leaf whose tunnel it holds (one call for all), and
    what each leaf said of itself."""
    report = await body_of(request, RemoteTunnels)
    await (await api_of(request)).report_tunnels(report.leaves, report.info)
    return web.json_response({})


async def root_heartbeat(request: web.Request) -> web.Response:
    """A leaf proxy's report of its tunnels to roots, up or down and why."""
    report = await body_of(request, RootTunnels)
    await (await api_of(request)).report_root_tunnels(list(report.roots))
    return web.json_response({})


async def cluster_access(request: web.Request) -> web.Response:
    """A leaf proxy hands on what its root pushed over the tunnel of its cluster labels."""
    access = await body_of(request, ClusterAccess)
    await (await api_of(request)).put_cluster_access(request.match_info["root"], access)
    return web.json_response({})


async def leaf_inventory(request: web.Request) -> web.Response:
    """A leaf proxy's view of this cluster's nodes, to push to its root ``root``."""
    inventory = await (await api_of(request)).leaf_inventory(request.match_info["root"])
    return web.Response(body=inventory.model_dump_json(), content_type="application/json")


async def list_nodes(request: web.Request) -> web.Response:
    """The nodes the caller may see: a JSON array of resources."""
    try:
        query = NodeQuery(labels=json.loads(request.query.get("labels", "{}") or "{}"),
                          limit=int(request.query.get("limit", "0") or 0),
                          hostname=request.query.get("hostname"))
    except ValueError as exc:
        raise BadParameter(f"bad node query: {str(exc).splitlines()[0]}") from None
    body = await (await api_of(request)).list_nodes_json(query)
    return web.Response(body=body, content_type="application/json")


async def clusters(request: web.Request) -> web.Response:
    """This cluster and its leaves, with status and host CAs (for gsh's known_hosts)."""
    found = await (await api_of(request)).clusters()
    return web.json_response([c.model_dump(mode="json") for c in found])


async def status(request: web.Request) -> web.Response:
    return _reply(await (await api_of(request)).status())


async def set_password(request: web.Request) -> web.Response:
    password = (await json_body(request)).get("password")
    if not isinstance(password, str):
        raise BadParameter("field 'password' is missing or not a str")
    name = request.match_info["name"]
    await (await api_of(request)).set_password(name, password)
    return web.json_response({"user": name})


async def set_totp(request: web.Request) -> web.Response:
    """Enroll (a new secret) or, with {"enabled": false}, remove a user's second factor."""
    enabled = bool((await json_body(request)).get("enabled", True))
    name = request.match_info["name"]
    uri = await (await api_of(request)).set_totp(name, enabled)
    return web.json_response({"user": name, "otpauth_uri": uri})


async def add_token(request: web.Request) -> web.Response:
    req = await body_of(request, TokenRequest)
    return _reply(await (await api_of(request)).add_token(req))


async def get_resources(request: web.Request) -> web.Response:
    kind = canonical_kind(request.match_info["kind"])
    found = await (await api_of(request)).get_resources(kind, request.match_info.get("name", ""))
    return web.json_response([to_json_obj(r) for r in found])


async def put_resource(request: web.Request) -> web.Response:
    res = from_json_obj(await json_body(request))
    upsert = request.query.get("upsert") == "1"
    created = await (await api_of(request)).put_resource(res, upsert=upsert)
    return web.json_response(to_json_obj(res), status=201 if created else 200)


async def delete_resource(request: web.Request) -> web.Response:
    kind = canonical_kind(request.match_info["kind"])
    name = request.match_info["name"]
    await (await api_of(request)).delete_resource(kind, name)
    return web.json_response({"deleted": f"{kind}/{name}"})


async def _end_watches(app: web.Application) -> None:
    """On shutdown: a watch stream waits for changes that will not come, and would hold
    the shutdown for its whole grace period."""
    for task in app[_WATCHES]:
        task.cancel()


_HANDLERS: dict[str, Handler] = {
    "ping": ping, "login": login, "join": join, "leaf_login": leaf_login,
    "sso_begin": sso_begin, "sso_finish": sso_finish, "sso_complete": sso_complete,
    "sso_device_begin": sso_device_begin, "sso_device_poll": sso_device_poll,
    "join_leaf": join_leaf, "clusters": clusters,
    "report_tunnels": remote_heartbeat, "report_root_tunnels": root_heartbeat,
    "report_node_tunnels": node_tunnels, "proxy_heartbeat": proxy_heartbeat,
    "put_cluster_access": cluster_access, "leaf_inventory": leaf_inventory,
    "status": status, "heartbeat": heartbeat, "renew": renew,
    "resolve_node": resolve, "list_nodes": list_nodes, "trust": trust,
    "set_password": set_password, "set_totp": set_totp, "add_token": add_token,
    "get_resources": get_resources, "get_resource": get_resources,
    "put_resource": put_resource, "delete_resource": delete_resource,
    **api_audit.HANDLERS,
}


def make_api_app(server: AuthServer, *, relayed: bool = False) -> web.Application:
    """The API app; ``relayed``: served on a co-located proxy's port (auth.local)."""
    # The budget sees each reply as it is sent: after _errors made it.
    app = web.Application(middlewares=[limit_attempts, _errors],
                          client_max_size=RECORDING_CHUNK + 4096)
    app[SERVER] = server
    app[RELAYED] = relayed
    app[_WATCHES] = set()
    app.on_shutdown.append(_end_watches)
    for call, route in ROUTES.items():
        app.router.add_route(route.method, route.path, _HANDLERS[call], name=call)
    return app
