"""The one authorization layer: every call of the auth API, checked for its caller, then
handed to the auth's logic (as Teleport's ServerWithRoles wraps auth.Server).

``AuthWithRoles(server, caller)`` implements wire.authapi.AuthAPI. The HTTPS handlers
make one per request for the caller its certificate proves; a proxy or node that
shares a process with its auth holds one for its own host identity. Both go through
the same checks, so nothing reaches the logic around them. Deny by default: a host
may do what HOST_PERMISSIONS lists, a user what their roles' rules allow, and every
refusal is logged and audited with its reason. A host's own calls (heartbeats, its
events, exports, recording uploads) are made only by the hosts listed for them: no
user's rule reaches them, and neither do the admin credentials.
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import AsyncGenerator, AsyncIterator, Mapping
from typing import Any, cast

from gatehouse import rbac
from gatehouse.auth import catalog, intake, leaflogin, sso, ssodevice, trustjoin, trustview
from gatehouse.auth.identify import Caller, caller_roles
from gatehouse.auth.issuer import IssuedCerts, parse_public_key
from gatehouse.auth.server import AuthServer
from gatehouse.auth.server import JoinRequest as HostJoin
from gatehouse.errors import AccessDenied, BadParameter, NotFound
from gatehouse.types.cluster_access import ClusterAccess
from gatehouse.types.inventory import LeafInventory
from gatehouse.types.node import Node
from gatehouse.types.resource import Resource, parse_duration, time_after, time_before
from gatehouse.types.role import Role
from gatehouse.types.token import TokenType
from gatehouse.types.trusted_cluster import TrustedCluster
from gatehouse.wire.authapi import (
    Certs,
    ClusterInfo,
    ClusterStatus,
    DeviceBegin,
    DeviceBeginReply,
    DevicePoll,
    DevicePollReply,
    EventList,
    EventPage,
    EventQuery,
    EventsStored,
    Heartbeat,
    JoinReply,
    JoinRequest,
    LeafInfo,
    LeafJoinReply,
    LeafJoinRequest,
    LeafLoginRequest,
    LoginRequest,
    NodeQuery,
    NodeTunnels,
    NodeTunnelVerdict,
    Ping,
    ProxyAddr,
    ProxyHeartbeat,
    ProxySet,
    RecordingDone,
    RenewRequest,
    RootTunnel,
    SSOBegin,
    SSOBeginReply,
    SSOCallback,
    SSOCerts,
    SSOComplete,
    SSORedirect,
    TokenReply,
    TokenRequest,
)
from gatehouse.wire.recording import check_session_id
from gatehouse.wire.trust import TrustSnapshot

__all__ = ["HOST_PERMISSIONS", "AuthWithRoles", "authorize", "authorized_roles"]

log = logging.getLogger(__name__)

# What each kind of host may do through the API, beyond which everything is denied.
# Each pair is a host's own call (AuthWithRoles._host) but ("node", "list"), which users
# may be granted too.
HOST_PERMISSIONS: dict[str, frozenset[tuple[str, str]]] = {
    "node": frozenset({("node", "heartbeat"), ("trust", "read"), ("event", "create"),
                       ("recording", "upload"), ("host", "renew")}),
    "proxy": frozenset({("node", "list"), ("event", "create"), ("trust", "read"),
                        ("host", "renew"),
                        ("remote_cluster", "heartbeat"), ("trusted_cluster", "heartbeat"),
                        ("trusted_cluster", "access"), ("inventory", "read"),
                        ("event", "export"), ("node_tunnel", "report"), ("proxy", "heartbeat"),
                        ("remote_event", "create")}),
}


async def authorize(
    server: AuthServer, caller: Caller | None, resource: str, verb: str | None, *,
    host_only: bool = False, because: str = "",
) -> Caller:
    """Allow or raise AccessDenied (logged and audited) with the reason.

    ``verb`` None asks only that the caller be who they claim and still exist
    (calls every user may make, such as listing the clusters they can reach).
    ``host_only``: a host's own call, made only by the hosts HOST_PERMISSIONS lets do
    ``verb`` on ``resource``; no user's rules and not the admin reach it. ``because``:
    why the call needs this permission, said first in a refusal.
    """
    await authorized_roles(server, caller, resource, verb, host_only=host_only,
                           because=because)
    assert caller is not None
    return caller


async def authorized_roles(
    server: AuthServer, caller: Caller | None, resource: str, verb: str | None, *,
    host_only: bool = False, because: str = "",
) -> list[Role]:
    """As :func:`authorize`; returns a user's roles on this cluster ([] for a host), so
    that a call deciding more by them need not resolve them again."""
    try:
        if caller is None or not caller.identity.name:
            raise AccessDenied("this call needs a certificate: run `gsh login` or use gatectl -c")
        ident = caller.identity
        if ident.kind == "host":
            role = ident.system_role
            if role in HOST_PERMISSIONS or role == "admin":
                # A removed host, or replaced admin credentials, have no standing: not
                # even for the calls any caller may make (verb None).
                await server.hosts.get(ident.name)
            if verb is None:
                return []
            if (resource, verb) in HOST_PERMISSIONS.get(role, frozenset()):
                return []
            if role == "admin" and not host_only:
                return []
            if role == "admin":
                raise AccessDenied(_hosts_only(resource, verb, "the admin credentials are"))
            raise AccessDenied(f"a {role} may not {verb} {resource}")
        if host_only:
            raise AccessDenied(_hosts_only(resource, verb or "", f"user {ident.name} is"))
        roles = await caller_roles(server, ident)
        if verb is not None:
            decision = rbac.check_rule(roles, resource=resource, verb=verb)
            if not decision.allowed:
                raise AccessDenied(decision.reason)
        return roles
    except AccessDenied as exc:
        who = caller.identity.name if caller else ""
        reason = f"{because}: {exc}" if because else str(exc)
        log.warning("api access denied user=%s resource=%s verb=%s reason=%r",
                    who, resource, verb, reason)
        # A caller without a certificate is a stranger: its repeats are counted, not each kept.
        audit = server.audit if who else server.failures
        await audit.emit(
            "access.denied", user=who, remote_addr=caller.remote_addr if caller else "",
            message=reason, fields={"resource": resource, "verb": verb},
        )
        if because:
            raise AccessDenied(reason) from None
        raise


# What grants roles (so is as powerful as editing them) besides a role itself: each needs
# "update" on "role" too, as its reason says.
_GRANTS_ROLES = {
    "user": "a user record grants roles (spec.roles)",
    "oidc": "an oidc connector grants roles (claims_to_roles: to whoever its issuer vouches "
            "for)",
    "trusted_cluster": "a trusted_cluster grants roles (role_map: to the root's users, here)",
    "remote_cluster": "a remote cluster's labels grant access (roles' cluster_labels: which "
                      "users reach the leaf)",
}
_PROXY_TOKEN = ("a proxy token grants a proxy's powers (relaying every user's certificate, "
               "handing on what roots and leaves say)")
_RESET = "a password or second-factor reset takes over a user, and with them their roles"


def _hosts_only(resource: str, verb: str, who: str) -> str:
    """Why ``who`` may not make a host's own call: which hosts make it."""
    makers = " or ".join(r for r, allowed in HOST_PERMISSIONS.items()
                         if (resource, verb) in allowed) or "host"
    return (f"only a {makers} of this cluster may {verb} {resource}: {who} not one "
            "(no role rule reaches a host's own calls)")


class AuthWithRoles:
    """The auth API for one caller (None: anonymous, who may ping, log in and join)."""

    def __init__(self, server: AuthServer, caller: Caller | None, remote_addr: str = "") -> None:
        self._server = server
        self._caller = caller
        self._remote = caller.remote_addr if caller else remote_addr

    async def _check(self, resource: str, verb: str | None) -> Caller:
        return await authorize(self._server, self._caller, resource, verb)

    async def _host(self, resource: str, verb: str) -> Caller:
        """A host's own call: only a host HOST_PERMISSIONS lets do it, never a user."""
        return await authorize(self._server, self._caller, resource, verb, host_only=True)

    # anonymous: the credential is in the request ------------------------------------------

    async def ping(self) -> Ping:
        return Ping.model_validate(catalog.ca_fields(self._server))

    def _certs(self, certs: IssuedCerts) -> dict[str, Any]:
        return {**catalog.ca_fields(self._server), "ssh_cert": certs.ssh_cert,
                "tls_cert": certs.tls_cert, "expires": certs.expires}

    async def login(self, req: LoginRequest) -> Certs:
        ttl = parse_duration(req.ttl) if req.ttl else None
        certs = await self._server.login(req.user, req.password, req.public_key, otp=req.otp,
                                         ttl=ttl, remote_addr=self._remote)
        return Certs.model_validate(self._certs(certs))

    async def leaf_login(self, req: LeafLoginRequest) -> Certs:
        """A root user's leaf-local login: decided (and audited) by auth/leaflogin.py,
        which needs the root's certificate rather than roles already mapped here."""
        certs = await leaflogin.leaf_login(self._server, self._caller, req.public_key)
        return Certs.model_validate(self._certs(certs))

    async def sso_begin(self, req: SSOBegin) -> SSOBeginReply:
        return await sso.begin(self._server, req, self._remote)

    async def sso_finish(self, callback: SSOCallback) -> SSORedirect:
        """The IdP's redirect, as the proxy relays it: ``state`` is the credential. The
        browser's address is believed only of a proxy of this cluster."""
        caller = self._caller
        is_proxy = caller is not None and caller.identity.kind == "host" \
            and caller.identity.system_role == "proxy"
        remote = callback.remote_addr if is_proxy and callback.remote_addr else self._remote
        return await sso.finish(self._server, callback, remote)

    async def sso_complete(self, req: SSOComplete) -> SSOCerts:
        done = await sso.complete(self._server, req, self._remote)
        return SSOCerts.model_validate({**catalog.ca_fields(self._server), **done})

    async def sso_device_begin(self, req: DeviceBegin) -> DeviceBeginReply:
        return await ssodevice.begin(self._server, req, self._remote)

    async def sso_device_poll(self, req: DevicePoll) -> DevicePollReply:
        done, interval = await ssodevice.poll(self._server, req, self._remote)
        if done is None:
            return DevicePollReply(pending=True, interval=interval)
        certs = SSOCerts.model_validate({**catalog.ca_fields(self._server), **done})
        return DevicePollReply(pending=False, certs=certs)

    async def join(self, req: JoinRequest) -> JoinReply:
        host_id, certs = await self._server.join(HostJoin(
            token=req.token, role=req.role, nodename=req.nodename, public_key=req.public_key,
            addrs=req.addrs, dns_names=req.dns_names, remote_addr=self._remote))
        return JoinReply.model_validate({**self._certs(certs), "host_id": host_id})

    async def join_leaf(self, req: LeafJoinRequest) -> LeafJoinReply:
        cas = await trustjoin.accept_leaf(self._server, req.token, req.ca, self._remote)
        return LeafJoinReply(cluster=self._server.cluster, cas=cas)

    # hosts ---------------------------------------------------------------------------------

    async def heartbeat(self, beat: Heartbeat) -> Node:
        caller = await self._host("node", "heartbeat")
        return await self._server.heartbeat(
            caller.identity.name, beat.hostname, beat.addr, dict(beat.labels),
            tunnel=beat.tunnel, source=None if caller.in_process else caller.remote_addr)

    async def renew(self, req: RenewRequest) -> Certs:
        caller = await self._host("host", "renew")
        key = parse_public_key(req.public_key)
        return Certs.model_validate(self._certs(
            await self._server.renew_host(caller.identity.name, key)))

    async def trust(self) -> TrustSnapshot:
        await self._host("trust", "read")
        return await trustview.build_snapshot(self._server)

    async def watch_trust(self) -> AsyncIterator[TrustSnapshot]:
        async for snapshot in self.watch_trust_with_keepalives():
            if snapshot is not None:
                yield snapshot

    async def watch_trust_with_keepalives(self) -> AsyncGenerator[TrustSnapshot | None]:
        """As watch_trust, with a None after each quiet WATCH_KEEPALIVE (for the HTTPS stream)."""
        await self._host("trust", "read")
        async with contextlib.aclosing(trustview.snapshots(self._server)) as stream:
            async for snapshot in stream:
                yield snapshot

    async def report_tunnels(self, leaves: list[str],
                             info: dict[str, LeafInfo] | None = None) -> None:
        caller = await self._host("remote_cluster", "heartbeat")
        await self._server.trust.tunnels_held(caller.identity.name, leaves, info or {})

    async def report_node_tunnels(self, report: NodeTunnels) -> NodeTunnelVerdict:
        caller = await self._host("node_tunnel", "report")
        refused = await self._server.node_tunnels_held(caller.identity.name, report.host_ids,
                                                       verify=report.verify,
                                                       remote_addr=caller.remote_addr)
        return NodeTunnelVerdict(refused=refused)

    async def proxy_heartbeat(self, beat: ProxyHeartbeat) -> ProxySet:
        """Only a proxy registers a proxy, and only itself."""
        caller = await self._host("proxy", "heartbeat")
        online = await self._server.proxy_heartbeat(
            caller.identity.name, beat.public_addr, beat.listen_addr,
            remote_addr=caller.remote_addr)
        return ProxySet(proxies=[ProxyAddr(name=p.metadata.name, addr=p.spec.public_addr)
                                 for p in online], as_of=self._server.clock.now())

    async def report_root_tunnels(self, roots: list[RootTunnel]) -> None:
        caller = await self._host("trusted_cluster", "heartbeat")
        await self._server.trust.root_tunnels_reported(caller.identity.name, roots)

    async def put_cluster_access(self, root: str, access: ClusterAccess) -> None:
        await self._host("trusted_cluster", "access")
        if await self._server.trust.store_root_access(root, access):
            log.info("cluster labels from root %s: this cluster has labels %s; %d root roles",
                     root, access.labels, len(access.roles))

    async def leaf_inventory(self, root: str) -> LeafInventory:
        """What a leaf proxy pushes to its root ``root``: this cluster's nodes, that
        root's role map and the roles' node_labels (proxies only)."""
        await self._host("inventory", "read")
        return await catalog.leaf_inventory(self._server, root)

    async def post_events(self, events: list[dict[str, Any]]) -> EventsStored:
        caller = await self._host("event", "create")
        return await intake.store_host_events(self._server, caller.identity.name,
                                              caller.identity.system_role, events)

    async def export_events(self, after: str, limit: int) -> EventPage:
        await self._host("event", "export")
        events, last = await self._server.audit.export(after, max(1, min(limit, 1000)))
        return EventPage(events=[{"key": k, "event": e.to_json_obj()} for k, e in events],
                         last=last)

    async def export_cursor(self, root: str) -> str:
        await self._host("event", "export")
        return await self._server.audit.cursor(root)

    async def set_export_cursor(self, root: str, after: str) -> None:
        await self._host("event", "export")
        await self._server.audit.set_cursor(root, after)

    async def store_leaf_events(self, leaf: str, events: list[Any]) -> EventsStored:
        await self._host("remote_event", "create")
        return await intake.store_leaf_events(self._server, leaf, events)

    async def put_recording_chunk(self, session_id: str, index: int, data: bytes) -> None:
        await self._host("recording", "upload")
        await self._server.recordings.put_chunk(session_id, index, data)

    async def complete_recording(self, session_id: str, done: RecordingDone) -> dict[str, Any]:
        caller = await self._host("recording", "upload")
        session_id = check_session_id(session_id)
        try:
            node = (await self._server.nodes.get(caller.identity.name)).spec.hostname
        except NotFound:
            node = caller.identity.name
        meta = {"session_id": session_id, "cluster": self._server.cluster, "node": node,
                **done.model_dump(exclude={"tail", "tail_index"})}
        await self._server.recordings.complete(session_id, meta, done.tail_chunk())
        return meta

    # users and admins ----------------------------------------------------------------------

    async def resolve_node(self, target: str) -> Node:
        """The node a user asks a proxy to dial: registered here, and selected by their
        roles. Reaching a node is SSH access (logins and node_labels), not an API rule:
        a role that grants logins on some nodes needs no `rules` for this."""
        roles = await authorized_roles(self._server, self._caller, "node", None)
        caller = self._caller
        assert caller is not None
        if caller.identity.kind != "user":
            raise AccessDenied("only users are resolved to nodes")
        node = await self._server.resolve_node(target)
        if not rbac.can_see_node(roles, node.metadata.labels):
            await self._server.audit.emit("access.denied", user=caller.identity.name,
                                          remote_addr=caller.remote_addr,
                                          message=f"no role selects node {target}")
            raise AccessDenied(f"user {caller.identity.name} may not access node {target}")
        return node

    async def list_nodes_json(self, query: NodeQuery) -> bytes:
        """The nodes the caller may see, as a JSON array (stored JSON, unparsed: listing
        100,000 nodes parses none of them into models)."""
        roles: list[Role] | None = await authorized_roles(self._server, self._caller, "node",
                                                          "list")
        assert self._caller is not None
        # A user sees the nodes their roles select; a host or the admin sees every node.
        if self._caller.identity.kind != "user":
            roles = None

        def wanted(labels: Mapping[str, str]) -> bool:
            if roles is not None and not rbac.can_see_node(roles, labels):
                return False
            return all(labels.get(k) == v for k, v in query.labels.items())

        return await catalog.nodes_json(self._server, wanted, query)

    async def list_nodes(self, query: NodeQuery) -> list[dict[str, Any]]:
        return list(json.loads(await self.list_nodes_json(query)))

    async def _hidden_leaves(self, roles: list[Role]) -> frozenset[str]:
        """The leaves a user of this cluster may not see (a host or the admin: none)."""
        caller = self._caller
        assert caller is not None
        if caller.identity.kind != "user" or caller.identity.cluster != self._server.cluster:
            return frozenset()
        return await catalog.hidden_leaves(self._server, roles)

    async def clusters(self) -> list[ClusterInfo]:
        roles = await authorized_roles(self._server, self._caller, "cluster", None)
        assert self._caller is not None
        return await catalog.clusters(
            self._server, with_leaves=self._caller.identity.cluster == self._server.cluster,
            hidden=await self._hidden_leaves(roles))

    async def status(self) -> ClusterStatus:
        await self._check("cluster_name", "read")
        return await catalog.status(self._server)

    async def _grants_roles(self, what: str) -> None:
        """``what`` grants roles: it needs "update" on "role", as editing roles does."""
        await authorize(self._server, self._caller, "role", "update",
                        because=f'{what}, so it needs the `role` privilege ("update" on "role")')

    async def _user_admin(self) -> Caller:
        caller = await self._check("user", "update")
        await self._grants_roles(_RESET)
        return caller

    async def set_password(self, name: str, password: str) -> None:
        caller = await self._user_admin()
        await self._server.set_password(name, password, by=caller.identity.name,
                                        remote_addr=caller.remote_addr)

    async def set_totp(self, name: str, enabled: bool) -> str:
        caller = await self._user_admin()
        return await self._server.set_totp(name, enabled, by=caller.identity.name,
                                           remote_addr=caller.remote_addr)

    async def add_token(self, req: TokenRequest) -> TokenReply:
        await self._check("token", "create")
        if req.type not in ("node", "proxy", "trusted_cluster"):
            raise BadParameter(f"unknown token type {req.type!r}: expected node, proxy or "
                               "trusted_cluster")
        if req.type == "proxy":
            await self._grants_roles(_PROXY_TOKEN)
        now = self._server.clock.now()
        expires = time_after(now, req.ttl or "30m", "ttl")
        token = await self._server.create_token(cast(TokenType, req.type), expires - now)
        return TokenReply(token=str(token), type=req.type, expires=expires.isoformat())

    async def get_resources(self, kind: str, name: str = "") -> list[Resource]:
        await self._check(kind, "read" if name else "list")
        return await catalog.get_resources(self._server, kind, name)

    async def put_resource(self, res: Resource, *, upsert: bool) -> bool:
        caller = await self._check(res.kind, "update" if upsert else "create")
        if res.kind in _GRANTS_ROLES:
            await self._grants_roles(_GRANTS_ROLES[res.kind])
        if isinstance(res, TrustedCluster):
            return await trustjoin.upsert_trusted_cluster(self._server, res, force=upsert)
        return await catalog.put_resource(self._server, res, upsert=upsert,
                                          by=caller.identity.name, remote_addr=caller.remote_addr)

    async def delete_resource(self, kind: str, name: str) -> None:
        caller = await self._check(kind, "delete")
        await catalog.delete_resource(self._server, kind, name, by=caller.identity.name,
                                      remote_addr=caller.remote_addr)

    async def search_events(self, query: EventQuery) -> EventList:
        """The events asked for, but none of a leaf the caller's cluster_labels hide."""
        roles = await authorized_roles(self._server, self._caller, "event", "list")
        hidden = await self._hidden_leaves(roles)
        if query.cluster in hidden:
            assert self._caller is not None
            who = self._caller.identity.name
            reason = (f"user {who} may not see cluster {query.cluster}: their roles' "
                      "cluster_labels do not select it")
            log.warning("events denied user=%s cluster=%s reason=%r", who, query.cluster,
                        reason)
            await self._server.audit.emit("access.denied", user=who, message=reason,
                                          remote_addr=self._caller.remote_addr,
                                          fields={"resource": "event", "verb": "list",
                                                  "cluster": query.cluster})
            raise AccessDenied(reason)
        since = (time_before(self._server.clock.now(), query.since, "since") if query.since
                 else None)
        page = await self._server.audit.search(since=since, types=query.types,
                                               user=query.user, cluster=query.cluster,
                                               hidden=hidden, limit=query.limit,
                                               cursor=query.cursor)
        return EventList(events=[e.to_json_obj() for e in page.events], next=page.next)

    async def list_recordings(self) -> list[dict[str, Any]]:
        hidden = await self._hidden_leaves(
            await authorized_roles(self._server, self._caller, "session", "list"))
        return [r for r in await self._server.recordings.list() if r.get("cluster") not in hidden]

    async def get_recording(self, session_id: str) -> bytes:
        await self._check("session", "read")
        return await self._server.recordings.read(session_id)

    async def recording_cluster(self, session_id: str) -> str:
        """Which cluster holds a recording: this one, or the leaf whose sessions name it."""
        await self._check("session", "read")
        return await catalog.recording_cluster(self._server, check_session_id(session_id))
