"""What the auth shows and manages for people: its CAs, clusters, status, nodes and
the generic resources (users, roles, tokens, nodes, trust), with the audit of each
change. Callers are authorized first (auth.authz)."""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Callable, Container, Mapping, Sequence
from typing import Any

from gatehouse import rbac
from gatehouse.auth import sso, trustjoin
from gatehouse.auth.server import AuthServer
from gatehouse.errors import AlreadyExists, BadParameter, NotFound
from gatehouse.types.cert_authority import CertAuthority, CertAuthoritySpec
from gatehouse.types.cluster_access import ClusterAccess
from gatehouse.types.inventory import LeafInventory, RoleSelection
from gatehouse.types.node import Node, NodeStatus
from gatehouse.types.oidc import OIDCConnector
from gatehouse.types.remote_cluster import RemoteCluster
from gatehouse.types.resource import Metadata, Resource
from gatehouse.types.role import Role
from gatehouse.types.trusted_cluster import TrustedClusterStatus
from gatehouse.types.user import User
from gatehouse.types.yaml_io import to_json_obj
from gatehouse.wire.authapi import CAStatus, ClusterInfo, ClusterStatus, NodeQuery

__all__ = ["NODE_BY_JOIN", "ca_fields", "clusters", "delete_resource", "get_resources",
           "hidden_leaves", "leaf_inventory", "nodes_json",
           "put_resource", "recording_cluster", "status", "unknown_roles"]

log = logging.getLogger(__name__)


def ca_fields(server: AuthServer) -> dict[str, str]:
    """The cluster and its CAs' public parts, as a ping and every certificate reply carry."""
    host, user = server.cas["host"], server.cas["user"]
    return {"cluster": server.cluster, "host_ca_tls": host.tls_cert_pem,
            "host_ca_ssh": host.ssh_public_line, "user_ca_ssh": user.ssh_public_line,
            "user_ca_tls": user.tls_cert_pem}


async def nodes_json(server: AuthServer, wanted: Callable[[Mapping[str, str]], bool],
                     query: NodeQuery) -> bytes:
    """The wanted nodes as a JSON array, by hostname then name (``query.hostname``: an
    index read of that hostname's nodes only)."""
    limit = max(query.limit, 0)
    if query.hostname is not None:
        named = [n for n in await server.nodes.by_hostname(query.hostname)
                 if wanted(n.metadata.labels)]
        found = [json.dumps(to_json_obj(n), separators=(",", ":")).encode()
                 for n in named[:limit or None]]
    else:
        found = await server.nodes.select(wanted, limit)
    if any(_TUNNEL_MARK in raw for raw in found):
        up = await server.nodes.tunnels_up()
        found = [_with_connection(raw, up) if _TUNNEL_MARK in raw else raw for raw in found]
    return b"[" + b",".join(found) + b"]"


async def leaf_inventory(server: AuthServer, root: str) -> LeafInventory:
    """Every node of this cluster (tunnel nodes with their connection now), the role map
    of the trust in ``root``, and which nodes each role selects: what ``root`` needs to
    show each of its users what this cluster would (gatehouse.inventory.visible)."""
    spec = (await server.trust.trusted.get(root)).spec
    nodes = [Node.model_validate(n) for n in
             json.loads(await nodes_json(server, lambda _: True, NodeQuery()))]
    return LeafInventory(
        nodes=[_as_listed(n) for n in nodes], role_map=list(spec.role_map),
        roles=[RoleSelection(name=r.metadata.name, allow=r.spec.allow.node_labels,
                             deny=r.spec.deny.node_labels)
               for r in await server.roles.list()])


def _as_listed(node: Node) -> Node:
    """``node`` without what changes at each heartbeat (its expiry, last heartbeat): the
    inventory is pushed again only when something a listing shows changed."""
    connection = node.status.connection if node.status else None
    return node.model_copy(update={
        "metadata": node.metadata.model_copy(update={"expires": None}),
        "status": NodeStatus(connection=connection) if connection else None})


# In a node's stored (compact) JSON, only the field itself can read so: inside a string,
# its quotes would be escaped.
_TUNNEL_MARK = b'"tunnel":true'


async def _tunnels_judged(server: AuthServer, nodes: list[Node]) -> list[Resource]:
    """``nodes``, each tunnel node's ``status.connection`` as of now."""
    if not any(n.spec.tunnel for n in nodes):
        return list(nodes)
    up = await server.nodes.tunnels_up()
    return [n.model_copy(update={"status": NodeStatus(
        last_heartbeat=n.status.last_heartbeat if n.status else None,
        connection="online" if n.spec.host_id in up else "offline")}) if n.spec.tunnel else n
        for n in nodes]


def _with_connection(raw: bytes, up: frozenset[str]) -> bytes:
    """A tunnel node's JSON with its ``status.connection`` as of now (only tunnel nodes
    are parsed: listing 100,000 direct nodes parses none)."""
    node = json.loads(raw)
    if node["spec"].get("tunnel") is not True:
        return raw
    status = node.get("status") or {}
    status["connection"] = "online" if node["spec"]["host_id"] in up else "offline"
    node["status"] = status
    return json.dumps(node, separators=(",", ":")).encode()


async def hidden_leaves(server: AuthServer, roles: Sequence[Role]) -> frozenset[str]:
    """The leaves a user of this cluster holding ``roles`` may not see: those their
    cluster_labels do not select (rbac.check_cluster_access, as the proxies decide)."""
    names = [r.metadata.name for r in roles]
    return frozenset(
        rc.metadata.name for rc in await server.trust.remotes.list()
        if not rbac.check_cluster_access(ClusterAccess.of(roles, rc.metadata.labels), names,
                                         rc.metadata.name).allowed)


async def clusters(server: AuthServer, *, with_leaves: bool,
                   hidden: Container[str] = ()) -> list[ClusterInfo]:
    """This cluster and, for its own users, its leaves (but ``hidden``) with status and
    host CAs."""
    out = [ClusterInfo(name=server.cluster, type="root", status="online", last_heartbeat=None,
                       host_ca_ssh=server.cas["host"].ssh_public_line)]
    if with_leaves:
        cas = {ca.cluster: ca for ca in await server.trust.leaf_cas()}
        for rc in await server.trust.remote_clusters():
            if rc.metadata.name in hidden:
                continue
            ca = cas.get(rc.metadata.name)
            beat = rc.status.last_heartbeat
            out.append(ClusterInfo(name=rc.metadata.name, type="leaf",
                                   status=rc.status.connection,
                                   last_heartbeat=beat.isoformat() if beat else None,
                                   host_ca_ssh=ca.ssh if ca else "",
                                   proxy_addr=rc.status.proxy_addr or "",
                                   host_ca_tls=ca.tls if ca else ""))
    return out


async def status(server: AuthServer) -> ClusterStatus:
    return ClusterStatus(
        cluster=server.cluster,
        cas=[CAStatus(type=ca.type, ssh_fingerprint=ca.ssh_fingerprint,
                      tls_fingerprint=ca.tls_fingerprint) for ca in server.cas.values()],
        counts={"users": len(await server.users.list()), "roles": len(await server.roles.list()),
                "nodes": await server.nodes.count(), "tokens": len(await server.tokens.list())},
        trusted_clusters={tc.metadata.name: tc.status or TrustedClusterStatus()
                          for tc in await server.trust.trusted_clusters()},
    )


def _store(server: AuthServer, kind: str) -> Any:
    stores = {"user": server.users, "role": server.roles, "token": server.tokens,
              "node": server.nodes, "trusted_cluster": server.trust.trusted,
              "oidc": server.oidc}
    if kind not in stores:
        raise BadParameter(f"resources of kind {kind!r} cannot be managed here")
    return stores[kind]


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


async def get_resources(server: AuthServer, kind: str, name: str) -> list[Resource]:
    items: list[Resource]
    if kind == "cert_authority":
        items = [ca for ca in _ca_resources(server) if not name or ca.metadata.name == name]
    elif kind == "remote_cluster":
        items = [rc for rc in await server.trust.remote_clusters()
                 if not name or rc.metadata.name == name]
    elif kind == "proxy":
        items = [p for p in await server.proxies.judged(server.clock.now())
                 if not name or name in (p.metadata.name, p.spec.hostname)]
    elif kind == "node":
        nodes = [await server.nodes.get(name)] if name else await server.nodes.list()
        return await _tunnels_judged(server, nodes)
    elif kind == "trusted_cluster":  # the token it joined with stays in the auth
        items = [tc.model_copy(update={"spec": tc.spec.without_token()})
                 for tc in await server.trust.trusted_clusters()
                 if not name or tc.metadata.name == name]
    elif kind == "oidc":  # the client secret stays in the auth
        found = [await server.oidc.get(name)] if name else await server.oidc.list()
        return [c.without_secret() for c in found]
    elif name:
        return [await _store(server, kind).get(name)]
    else:
        return list(await _store(server, kind).list())
    if name and not items:
        raise NotFound(f"{kind} {name} not found")
    return items


NODE_BY_JOIN = ("a node is registered by joining (`gatectl tokens add --type=node`) and "
                "kept by its heartbeats; it cannot be created or updated as a resource")


def unknown_roles(wanted: list[str], known: set[str]) -> str:
    """Why a user may not have the roles ``wanted`` ("" if every one exists): a typo
    would otherwise make a user who can do nothing, silently."""
    missing = [r for r in wanted if r not in known]
    if not missing:
        return ""
    names = ", ".join(repr(r) for r in missing)
    return (f"unknown role{'s' if len(missing) > 1 else ''} {names}: the roles are "
            f"{', '.join(sorted(known))}")


async def put_resource(server: AuthServer, res: Resource, *, upsert: bool, by: str,
                       remote_addr: str) -> bool:
    """Create (or with ``upsert`` replace) a resource; True when it was created."""
    if isinstance(res, RemoteCluster):
        await _label_leaf(server, res, upsert=upsert, by=by, remote_addr=remote_addr)
        return False
    if isinstance(res, Node):
        # Written by hand, a node would skip the join's and heartbeats' checks (its name,
        # its address, its expiry): users would be sent, and the proxy would dial, anywhere.
        log.warning("node resource refused user=%s name=%s reason=%r", by, res.metadata.name,
                    NODE_BY_JOIN)
        raise BadParameter(NODE_BY_JOIN)
    store = _store(server, res.kind)
    if isinstance(res, User):
        problem = unknown_roles(res.spec.roles, {r.metadata.name for r in
                                                 await server.roles.list()})
        if problem:
            raise BadParameter(problem)
        await _check_not_sso(server, res.metadata.name)
    if isinstance(res, OIDCConnector):
        await _check_connector(server, res)
    existed = True
    try:
        await store.get(res.metadata.name)
    except NotFound:
        existed = False
    if upsert:
        await store.upsert(res)
    else:
        await store.create(res)
    if isinstance(res, User) and not existed:
        # Again, after the write: an SSO login holds its name, then looks for a local
        # user; the one of the two that looks last sees the other.
        try:
            await _check_not_sso(server, res.metadata.name)
        except AlreadyExists:
            with contextlib.suppress(NotFound):
                await store.delete(res.metadata.name)
            raise
    event = {"user": "user.update" if existed else "user.create"}.get(
        res.kind, "resource.update" if existed else "resource.create")
    await server.audit.emit(event, user=by, remote_addr=remote_addr,
                            fields={"kind": res.kind, "name": res.metadata.name})
    return not existed


async def _label_leaf(server: AuthServer, rc: RemoteCluster, *, upsert: bool, by: str,
                      remote_addr: str) -> None:
    """A remote_cluster is made by a leaf's join: only its labels are set here (from
    ``metadata.labels``; its status is the tunnel's), and only with ``upsert``."""
    name = rc.metadata.name
    if not upsert:
        try:
            await server.trust.remotes.get(name)
        except NotFound:
            raise BadParameter(f"remote_cluster {name} does not exist: a remote cluster is "
                               "made by a leaf joining this cluster (a trusted_cluster "
                               "resource on the leaf)") from None
        raise AlreadyExists(f"remote_cluster {name} already exists; use `gatectl create -f` "
                            f"or `gatectl update rc/{name} --set-labels=...` to set its labels")
    labels = dict(rc.metadata.labels)
    before = await server.trust.set_leaf_labels(name, labels)
    await server.audit.emit("resource.update", user=by, remote_addr=remote_addr, fields={
        "kind": "remote_cluster", "name": name, "labels": labels, "labels_before": before})


async def _check_not_sso(server: AuthServer, name: str) -> None:
    """A local user may not take the name of an SSO user whose certificate is valid: the
    two would be one name on every node and in the audit (the SSO side refuses a local
    user's name at login)."""
    held = await server.sso.name_holder(name)
    if held is not None:
        connector, until = held
        reason = (f"{name} is the name of an SSO user of connector {connector}, whose "
                  f"certificate is valid until {until:%Y-%m-%d %H:%M:%S} UTC: a local user "
                  "may not take it until then")
        log.warning("local user refused name=%s reason=%r", name, reason)
        raise AlreadyExists(reason)


async def _check_connector(server: AuthServer, connector: OIDCConnector) -> None:
    """A connector that cannot work is refused now, not at its first login: its fixed
    role names exist, its secret is readable, its issuer is discoverable."""
    fixed = [role for rule in connector.spec.claims_to_roles for role in rule.roles
             if "$" not in role]
    problem = unknown_roles(fixed, {r.metadata.name for r in await server.roles.list()})
    if problem:
        raise BadParameter(f"claims_to_roles names an {problem}")
    sso.client_secret(server, connector.spec)
    sso.ca_file(server, connector.spec)
    await sso.discover(server, connector.spec)


async def delete_resource(server: AuthServer, kind: str, name: str, *, by: str,
                          remote_addr: str) -> None:
    if kind == "user":
        await server.delete_user(name)
    elif kind == "node":
        await server.delete_node(name)
    elif kind == "trusted_cluster":
        await trustjoin.delete_trusted_cluster(server, name)
    elif kind == "remote_cluster":
        await trustjoin.delete_remote_cluster(server, name)
    elif kind == "proxy":
        name = await server.delete_proxy(name)
    else:
        await _store(server, kind).delete(name)
    await server.audit.emit("user.delete" if kind == "user" else "resource.delete",
                            user=by, remote_addr=remote_addr, fields={"kind": kind, "name": name})


async def recording_cluster(server: AuthServer, session_id: str) -> str:
    """This cluster if it holds the recording, else the leaf whose session events named
    it (the index of leaf sessions, one read)."""
    try:
        await server.recordings.meta(session_id)
        return server.cluster
    except NotFound:
        pass
    try:
        return await server.recordings.leaf_of(session_id)
    except NotFound:
        raise NotFound(f"recording {session_id} not found in {server.cluster} or its "
                       "leaves") from None
