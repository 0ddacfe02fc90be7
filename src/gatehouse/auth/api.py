"""The auth service's HTTPS API: every handler authorizes its caller before acting."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from aiohttp import web

from gatehouse import rbac
from gatehouse.auth import api_audit
from gatehouse.auth._apiutil import (
    SERVER,
    authorized,
    caller_of,
    json_body,
    required,
    server_of,
)
from gatehouse.auth.identify import caller_roles
from gatehouse.auth.server import AuthServer, JoinRequest
from gatehouse.errors import AccessDenied, BadParameter, GatehouseError, NotFound
from gatehouse.types.cert_authority import CertAuthority, CertAuthoritySpec
from gatehouse.types.resource import Metadata, Resource, parse_duration
from gatehouse.types.trusted_cluster import TrustedCluster
from gatehouse.types.yaml_io import canonical_kind, from_json_obj, to_json_obj
from gatehouse.wire.names import RECORDING_CHUNK
from gatehouse.wire.trust import PublicCA

__all__ = ["make_api_app"]

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
# The tasks serving watch streams: they end only when told to (see _end_watches).
_WATCHES: web.AppKey[set[asyncio.Task[Any]]] = web.AppKey("watches", set)
KEEPALIVE = 15.0
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


# --- anonymous ----------------------------------------------------------------------------


def _ca_resources(server: AuthServer) -> list[CertAuthority]:
    return [
        CertAuthority(
            metadata=Metadata(name=f"{server.cluster}-{ca.type}"),
            spec=CertAuthoritySpec(
                cluster_name=server.cluster, type=ca.type,  # type: ignore[arg-type]
                ssh_public_keys=[ca.ssh_public_line], tls_certs=[ca.tls_cert_pem],
            ),
        )
        for ca in server.cas.values()
    ]


async def ping(request: web.Request) -> web.Response:
    server = server_of(request)
    return web.json_response(
        {
            "cluster": server.cluster,
            "host_ca_tls": server.cas["host"].tls_cert_pem,
            "host_ca_ssh": server.cas["host"].ssh_public_line,
            "user_ca_ssh": server.cas["user"].ssh_public_line,
            "user_ca_tls": server.cas["user"].tls_cert_pem,
        }
    )


def _certs_json(server: AuthServer, certs: Any) -> dict[str, Any]:
    return {
        "cluster": server.cluster,
        "ssh_cert": certs.ssh_cert,
        "tls_cert": certs.tls_cert,
        "expires": certs.expires.isoformat(),
        "host_ca_tls": server.cas["host"].tls_cert_pem,
        "host_ca_ssh": server.cas["host"].ssh_public_line,
        "user_ca_tls": server.cas["user"].tls_cert_pem,
        "user_ca_ssh": server.cas["user"].ssh_public_line,
    }


async def login(request: web.Request) -> web.Response:
    server = server_of(request)
    caller = await caller_of(request)
    body = await json_body(request)
    ttl = parse_duration(str(body["ttl"])) if body.get("ttl") else None
    certs = await server.login(
        required(body, "user"), required(body, "password"), required(body, "public_key"),
        otp=str(body.get("otp") or ""), ttl=ttl,
        remote_addr=caller.remote_addr if caller else (request.remote or ""),
    )
    return web.json_response(_certs_json(server, certs))


async def join(request: web.Request) -> web.Response:
    server = server_of(request)
    caller = await caller_of(request)
    body = await json_body(request)
    req = JoinRequest(
        token=required(body, "token"),
        role=required(body, "role"),
        nodename=required(body, "nodename"),
        public_key=required(body, "public_key"),
        addrs=[str(a) for a in required(body, "addrs", list)],
        dns_names=[str(a) for a in required(body, "dns_names", list)],
        remote_addr=caller.remote_addr if caller else (request.remote or ""),
    )
    host_id, certs = await server.join(req)
    return web.json_response({**_certs_json(server, certs), "host_id": host_id})


async def join_leaf(request: web.Request) -> web.Response:
    """Root side of a trusted-cluster join (anonymous: the token is the credential)."""
    server = server_of(request)
    caller = await caller_of(request)
    body = await json_body(request)
    leaf_ca = PublicCA.from_json(body.get("ca"))
    cas = await server.accept_leaf(required(body, "token"), leaf_ca,
                                   caller.remote_addr if caller else (request.remote or ""))
    return web.json_response({"cluster": server.cluster, "cas": [c.to_json() for c in cas]})


# --- hosts --------------------------------------------------------------------------------


async def heartbeat(request: web.Request) -> web.Response:
    caller = await authorized(request, "node", "heartbeat")
    body = await json_body(request)
    labels = body.get("labels") or {}
    if not isinstance(labels, dict):
        raise BadParameter("labels must be an object")
    node = await server_of(request).heartbeat(
        caller.identity.name, required(body, "hostname"), required(body, "addr"),
        {str(k): str(v) for k, v in labels.items()},
    )
    return web.json_response(to_json_obj(node))


async def resolve(request: web.Request) -> web.Response:
    """The node a user asks a proxy to dial: registered here, and selected by their roles.

    Reaching a node is SSH access (logins and node_labels), not an API rule: a role
    that grants logins on some nodes needs no `rules` for this.
    """
    caller = await authorized(request, "node", None)
    if caller.identity.kind != "user":
        raise AccessDenied("only users are resolved to nodes")
    server = server_of(request)
    target = request.query.get("target", "")
    node = await server.resolve_node(target)
    if caller.identity.kind == "user":
        roles = await caller_roles(server, caller.identity)
        if not rbac.can_see_node(roles, node.metadata.labels):
            await server.audit.emit("access.denied", user=caller.identity.name,
                                    remote_addr=caller.remote_addr,
                                    message=f"no role selects node {target}")
            raise AccessDenied(f"user {caller.identity.name} may not access node {target}")
    return web.json_response(to_json_obj(node))


async def _trust_snapshot(server: AuthServer) -> dict[str, Any]:
    """Everything nodes and proxies decide with; pushed again on every change."""
    trusted = await server.trust.trusted_user_cas()
    roots = []
    for tc in await server.trust.trusted.list():
        host = (await server.trust.root_cas(tc.metadata.name)).get("host")
        roots.append({"name": tc.metadata.name, "enabled": tc.spec.enabled,
                      "proxy_addr": tc.spec.proxy_addr,
                      "role_map": [m.model_dump() for m in tc.spec.role_map],
                      "host_ca_tls": host.tls if host else ""})
    return {
        "cluster": server.cluster,
        "user_cas": [server.cas["user"].public().to_json(),
                     *(ca.to_json() for _, ca in trusted)],
        "trusted_clusters": roots,
        "leaf_host_cas": [ca.to_json() for ca in await server.trust.leaf_cas()],
        "roles": [to_json_obj(r) for r in await server.roles.list()],
        "users": [u.metadata.name for u in await server.users.list()],
        "session_recording": server.session_recording,
    }


async def trust(request: web.Request) -> web.StreamResponse:
    """What a node needs to decide (CAs, roles, users); ?watch=1 streams a new line per change."""
    await authorized(request, "trust", "read")
    server = server_of(request)
    if request.query.get("watch") != "1":
        return web.json_response(await _trust_snapshot(server))
    response = web.StreamResponse(headers={"Content-Type": "application/x-ndjson"})
    await response.prepare(request)
    prefixes = [b"/roles/", b"/users/", b"/authorities/", b"/trusted_clusters/"]
    task = asyncio.current_task()
    assert task is not None
    request.app[_WATCHES].add(task)
    async with contextlib.AsyncExitStack() as stack:
        stack.callback(request.app[_WATCHES].discard, task)
        watcher = await stack.enter_async_context(server.backend.watch(prefixes))
        await response.write(json.dumps(await _trust_snapshot(server)).encode() + b"\n")
        changes = aiter(watcher)
        while True:
            try:
                async with asyncio.timeout(KEEPALIVE):
                    await anext(changes)
            except TimeoutError:
                await response.write(b"\n")  # keepalive: a vanished client is noticed here
                continue
            except StopAsyncIteration:
                break
            # Coalesce a burst of changes into one snapshot.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(0.05):
                    async for _ in watcher:
                        pass
            await response.write(json.dumps(await _trust_snapshot(server)).encode() + b"\n")
    return response


async def remote_heartbeat(request: web.Request) -> web.Response:
    """A root proxy's report of every leaf whose tunnel it holds (one call for all)."""
    caller = await authorized(request, "remote_cluster", "heartbeat")
    if caller.identity.kind != "host" or caller.identity.system_role != "proxy":
        raise AccessDenied("only a proxy of this cluster reports the tunnels it holds")
    leaves = required(await json_body(request), "leaves", list)
    if not all(isinstance(leaf, str) for leaf in leaves):
        raise BadParameter("field 'leaves' must be a list of cluster names")
    await server_of(request).trust.tunnels_held(caller.identity.name, leaves)
    return web.json_response({})


# --- users and admins ---------------------------------------------------------------------


async def list_nodes(request: web.Request) -> web.Response:
    """The nodes the caller may see, by hostname then name: a JSON array of resources.

    The store hands back each node's stored JSON, which is already the resource's
    JSON shape, so no node is parsed into a model here (100,000 nodes, issue 5).
    ``hostname=NAME`` lists only the nodes of that hostname (an index read).
    """
    caller = await authorized(request, "node", "list")
    server = server_of(request)
    try:
        selector = json.loads(request.query.get("labels", "{}") or "{}")
        limit = int(request.query.get("limit", "0") or 0)
        if not isinstance(selector, dict):
            raise ValueError("labels must be an object")
    except ValueError as exc:
        raise BadParameter(f"bad node query: {exc}") from None
    ident = caller.identity
    # A user sees the nodes their roles select; a host or the admin sees every node.
    roles = await caller_roles(server, ident) if ident.kind == "user" else None

    def wanted(labels: Mapping[str, str]) -> bool:
        if roles is not None and not rbac.can_see_node(roles, labels):
            return False
        return all(labels.get(k) == v for k, v in selector.items())

    hostname = request.query.get("hostname")
    if hostname is not None:
        named = [n for n in await server.nodes.by_hostname(hostname) if wanted(n.metadata.labels)]
        return web.json_response([to_json_obj(n) for n in named[:max(limit, 0) or None]])
    nodes = await server.nodes.select(wanted, max(limit, 0))
    return web.Response(body=b"[" + b",".join(nodes) + b"]", content_type="application/json")


async def clusters(request: web.Request) -> web.Response:
    """This cluster and its leaves, with status and host CAs (for gsh's known_hosts)."""
    caller = await authorized(request, "cluster", None)
    server = server_of(request)
    out: list[dict[str, str | None]] = [
        {"name": server.cluster, "type": "root", "status": "online", "last_heartbeat": None,
         "host_ca_ssh": server.cas["host"].ssh_public_line}]
    if caller.identity.cluster == server.cluster:
        cas = {ca.cluster: ca for ca in await server.trust.leaf_cas()}
        for rc in await server.trust.remote_clusters():
            ca = cas.get(rc.metadata.name)
            out.append({"name": rc.metadata.name, "type": "leaf",
                        "status": rc.status.connection,
                        "last_heartbeat": rc.status.last_heartbeat.isoformat()
                        if rc.status.last_heartbeat else None,
                        "host_ca_ssh": ca.ssh if ca else ""})
    return web.json_response(out)


async def status(request: web.Request) -> web.Response:
    await authorized(request, "cluster_name", "read")
    server = server_of(request)
    return web.json_response(
        {
            "cluster": server.cluster,
            "cas": [
                {"type": ca.type, "ssh_fingerprint": ca.ssh_fingerprint,
                 "tls_fingerprint": ca.tls_fingerprint}
                for ca in server.cas.values()
            ],
            "counts": {
                "users": len(await server.users.list()),
                "roles": len(await server.roles.list()),
                "nodes": await server.nodes.count(),
                "tokens": len(await server.tokens.list()),
            },
        }
    )


async def set_password(request: web.Request) -> web.Response:
    caller = await authorized(request, "user", "update")
    await authorized(request, "role", "update")  # or a password reset takes over an editor
    server = server_of(request)
    name = request.match_info["name"]
    await server.users.get(name)
    await server.passwords.set(name, required(await json_body(request), "password"))
    await server.audit.emit("user.password_change", user=caller.identity.name,
                            remote_addr=caller.remote_addr, fields={"target": name})
    return web.json_response({"user": name})


async def set_totp(request: web.Request) -> web.Response:
    """Enroll (a new secret) or, with {"enabled": false}, remove a user's second factor."""
    caller = await authorized(request, "user", "update")
    await authorized(request, "role", "update")
    server = server_of(request)
    name = request.match_info["name"]
    await server.users.get(name)
    body = await json_body(request)
    uri = ""
    if body.get("enabled", True):
        uri = await server.totp.enroll(name)
    else:
        await server.totp.remove(name)
    await server.audit.emit("user.update", user=caller.identity.name,
                            remote_addr=caller.remote_addr,
                            fields={"target": name, "totp": bool(uri)})
    return web.json_response({"user": name, "otpauth_uri": uri})


async def add_token(request: web.Request) -> web.Response:
    await authorized(request, "token", "create")
    body = await json_body(request)
    token_type = required(body, "type")
    if token_type not in ("node", "proxy", "trusted_cluster"):
        raise BadParameter(f"unknown token type {token_type!r}: expected node, proxy or "
                           "trusted_cluster")
    ttl = parse_duration(body.get("ttl") or "30m")
    server = server_of(request)
    token = await server.create_token(token_type, ttl)
    expires = server.clock.now() + ttl
    return web.json_response({"token": str(token), "type": token_type,
                              "expires": expires.isoformat()})


# --- generic resources --------------------------------------------------------------------


def _store(server: AuthServer, kind: str) -> Any:
    stores = {"user": server.users, "role": server.roles, "token": server.tokens,
              "node": server.nodes, "trusted_cluster": server.trust.trusted}
    if kind not in stores:
        raise BadParameter(f"resources of kind {kind!r} cannot be managed here")
    return stores[kind]


async def get_resources(request: web.Request) -> web.Response:
    kind = canonical_kind(request.match_info["kind"])
    name = request.match_info.get("name", "")
    await authorized(request, kind, "read" if name else "list")
    server = server_of(request)
    items: list[Resource]
    if kind == "cert_authority":
        items = [ca for ca in _ca_resources(server) if not name or ca.metadata.name == name]
        if name and not items:
            raise NotFound(f"cert_authority {name} not found")
    elif kind == "remote_cluster":
        items = [rc for rc in await server.trust.remote_clusters()
                 if not name or rc.metadata.name == name]
        if name and not items:
            raise NotFound(f"remote_cluster {name} not found")
    elif name:
        items = [await _store(server, kind).get(name)]
    else:
        items = await _store(server, kind).list()
    return web.json_response([to_json_obj(r) for r in items])


async def put_resource(request: web.Request) -> web.Response:
    server = server_of(request)
    res = from_json_obj(await json_body(request))
    upsert = request.query.get("upsert") == "1"
    caller = await authorized(request, res.kind, "update" if upsert else "create")
    if res.kind == "user":  # granting roles is as powerful as editing them
        await authorized(request, "role", "update")
    if isinstance(res, TrustedCluster):
        joined = await server.upsert_trusted_cluster(res, force=upsert)
        return web.json_response(to_json_obj(res), status=201 if joined else 200)
    store = _store(server, res.kind)
    existed = True
    try:
        await store.get(res.metadata.name)
    except NotFound:
        existed = False
    if upsert:
        await store.upsert(res)
    else:
        await store.create(res)
    event = {"user": "user.update" if existed else "user.create"}.get(
        res.kind, "resource.update" if existed else "resource.create")
    await server.audit.emit(event, user=caller.identity.name, remote_addr=caller.remote_addr,
                            fields={"kind": res.kind, "name": res.metadata.name})
    return web.json_response(to_json_obj(res), status=200 if existed else 201)


async def delete_resource(request: web.Request) -> web.Response:
    kind = canonical_kind(request.match_info["kind"])
    name = request.match_info["name"]
    caller = await authorized(request, kind, "delete")
    server = server_of(request)
    if kind == "user":
        await server.delete_user(name)
    elif kind == "node":
        await server.delete_node(name)
    elif kind == "trusted_cluster":
        await server.delete_trusted_cluster(name)
    elif kind == "remote_cluster":
        await server.delete_remote_cluster(name)
    else:
        await _store(server, kind).delete(name)
    await server.audit.emit("user.delete" if kind == "user" else "resource.delete",
                            user=caller.identity.name, remote_addr=caller.remote_addr,
                            fields={"kind": kind, "name": name})
    return web.json_response({"deleted": f"{kind}/{name}"})


async def _end_watches(app: web.Application) -> None:
    """On shutdown: a watch stream waits for changes that will not come, and would hold
    the shutdown for its whole grace period."""
    for task in app[_WATCHES]:
        task.cancel()


def make_api_app(server: AuthServer) -> web.Application:
    app = web.Application(middlewares=[_errors], client_max_size=RECORDING_CHUNK + 4096)
    app[SERVER] = server
    app[_WATCHES] = set()
    app.on_shutdown.append(_end_watches)
    r = app.router
    r.add_get("/v1/ping", ping)
    r.add_post("/v1/login", login)
    r.add_post("/v1/join", join)
    r.add_post("/v1/trusted_clusters/join", join_leaf)
    r.add_get("/v1/clusters", clusters)
    r.add_post("/v1/remote_clusters/heartbeat", remote_heartbeat)
    r.add_get("/v1/status", status)
    r.add_post("/v1/nodes/heartbeat", heartbeat)
    r.add_get("/v1/nodes/resolve", resolve)
    r.add_get("/v1/nodes", list_nodes)
    r.add_get("/v1/trust", trust)
    api_audit.add_routes(r)
    r.add_post("/v1/users/{name}/password", set_password)
    r.add_post("/v1/users/{name}/totp", set_totp)
    r.add_post("/v1/tokens", add_token)
    r.add_get("/v1/resources/{kind}", get_resources)
    r.add_get("/v1/resources/{kind}/{name}", get_resources)
    r.add_post("/v1/resources", put_resource)
    r.add_delete("/v1/resources/{kind}/{name}", delete_resource)
    return app
