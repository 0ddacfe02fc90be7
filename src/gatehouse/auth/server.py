"""The Auth Service's decisions: logins, certificates, joins, presence.

Callers (the HTTPS API, or the daemon bootstrapping services in its own
process) have already been authorized for the call; every refusal here is
still audited with its reason.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from gatehouse import metrics, rbac
from gatehouse._sys.hostport import split_host_port
from gatehouse.auth import issuer
from gatehouse.auth.failures import AnonymousFailures
from gatehouse.auth.hostnames import check_host_names
from gatehouse.auth.idp import IdPClient, NoIdP
from gatehouse.auth.nodeaddr import IPNetwork, check_node_addrs, source_ip
from gatehouse.auth.nodetunnel import tunnel_refusal
from gatehouse.auth.passwords import DENIED, Passwords, login_name_shown
from gatehouse.auth.totp import OneTimeCodes
from gatehouse.backend import Backend
from gatehouse.clock import Clock
from gatehouse.config import (
    DEFAULT_AUDIT_RETENTION,
    DEFAULT_CONNECTOR_FILES_DIR,
    AuthLimits,
    SessionRecording,
)
from gatehouse.errors import AccessDenied, AlreadyExists, BadParameter, GatehouseError, NotFound
from gatehouse.pki import sshcert, x509
from gatehouse.pki.jointoken import JoinToken
from gatehouse.ratelimit import RateLimiter
from gatehouse.services import authorities, cluster_name
from gatehouse.services.events import AuditLog
from gatehouse.services.hosts import HostRecord, HostRegistry, name_taken, not_a_node
from gatehouse.services.nodes import NodeStore
from gatehouse.services.passwords import PasswordStore
from gatehouse.services.proxies import ProxyStore
from gatehouse.services.recordings import RecordingStore
from gatehouse.services.resourcecache import CachedResourceStore
from gatehouse.services.resources import ResourceStore
from gatehouse.services.sso import SSOStore
from gatehouse.services.totp import TOTPStore
from gatehouse.services.trust import TrustStore
from gatehouse.types.node import Node, NodeSpec, NodeStatus
from gatehouse.types.oidc import OIDCConnector
from gatehouse.types.problems import describe_problems
from gatehouse.types.proxy import Proxy, ProxySpec
from gatehouse.types.resource import Metadata
from gatehouse.types.role import Role, preset_roles
from gatehouse.types.template import UserTraits
from gatehouse.types.token import Token, TokenMetadata, TokenSpec, TokenType
from gatehouse.types.trusted_cluster import TrustedCluster
from gatehouse.types.user import User
from gatehouse.wire.names import NODE_HEARTBEAT, TUNNEL_NODE_HEARTBEAT
from gatehouse.wire.trust import PublicCA

__all__ = ["DEFAULT_USER_TTL", "HOST_TTL", "NODE_TTL", "TUNNEL_NODE_TTL", "AuthServer",
           "JoinRequest", "JoinRoot"]

log = logging.getLogger(__name__)

DEFAULT_USER_TTL = dt.timedelta(hours=12)
HOST_TTL = dt.timedelta(days=30)  # renewed at two thirds (process.renewal)
# A direct node vanishes from listings after three missed heartbeats (75 s).
NODE_TTL = dt.timedelta(seconds=3 * NODE_HEARTBEAT)
# A node on a tunnel heartbeats rarely (its proxy's tunnel report says whether it is
# online): it stays listed, offline once its tunnel is down, for a few missed heartbeats.
TUNNEL_NODE_TTL = dt.timedelta(seconds=4 * TUNNEL_NODE_HEARTBEAT)
ADMIN_TTL = dt.timedelta(days=30)  # renewed at two thirds, the replaced ones revoked

# The leaf's half of a trusted-cluster join, over the network (client.rootjoin): handed
# in, so that the auth's logic makes no network call of its own.
JoinRoot = Callable[[TrustedCluster, PublicCA], Awaitable[list[PublicCA]]]


async def _no_root_dialer(tc: TrustedCluster, ca: PublicCA) -> list[PublicCA]:
    raise BadParameter(f"this auth cannot dial root {tc.metadata.name}: no root dialer")


@dataclass(frozen=True)
class JoinRequest:
    token: str  # the secret part
    role: str  # node | proxy
    nodename: str
    public_key: str  # OpenSSH line
    addrs: list[str]  # where it can be reached (host:port), for principals
    dns_names: list[str]  # proxies: the names their TLS certificate must carry
    remote_addr: str = ""  # where it called from: its addrs must be there (auth.nodeaddr)


class AuthServer:
    def __init__(
        self,
        backend: Backend,
        clock: Clock,
        cluster: str,
        cas: dict[str, authorities.SigningAuthority],
        recordings: Path | None,
        session_recording: SessionRecording = "node",
        join_root: JoinRoot = _no_root_dialer,
        node_networks: Sequence[IPNetwork] = (),
        *,
        audit_retention: dt.timedelta = DEFAULT_AUDIT_RETENTION,
        limits: AuthLimits | None = None,
        idp: IdPClient | None = None,
        audit_backend: Backend | None = None,
        connector_files: Path = Path(DEFAULT_CONNECTOR_FILES_DIR),
    ) -> None:
        limits = limits or AuthLimits()
        self.idp: IdPClient = idp or NoIdP()  # the network edge of SSO logins (auth.sso)
        self.connector_files = connector_files  # what SSO connectors' files may be in
        self.join_root = join_root  # a leaf's way to a root's proxy (auth.trustjoin)
        # Where nodes may say they are besides where they call from (auth.nodeaddr).
        self.node_networks = tuple(node_networks)
        self.backend = backend
        self.clock = clock
        self.cluster = cluster
        self.cas = cas
        # The audit log and recordings: in audit_backend if given (a PostgreSQL shared by
        # auths whose state is in etcd: storage.audit_conn_string), else with the state.
        self.audit = AuditLog(audit_backend or backend, clock, cluster, audit_retention)
        # Callers without a certificate: their failures' audit, and their budget of
        # attempts per source (the API spends it; on the wall clock, as the password lock).
        self.failures = AnonymousFailures(self.audit, clock, limits.failure_window,
                                          limits.failure_sources)
        self.attempts = RateLimiter(limits.attempts_burst, limits.attempts_per_minute,
                                    limits.tracked_sources)
        self.users = ResourceStore(backend, "user", User)
        self.oidc = ResourceStore(backend, "oidc", OIDCConnector)
        self.sso = SSOStore(backend)
        # Read for every certificate and login: held in memory, following the backend.
        self.roles = CachedResourceStore(backend, "role", Role, clock)
        self.tokens = ResourceStore(backend, "token", Token)
        self.nodes = NodeStore(backend)
        self.proxies = ProxyStore(backend)
        self.passwords = Passwords(PasswordStore(backend), clock)
        self.totp = OneTimeCodes(TOTPStore(backend), clock, issuer=f"Gatehouse {cluster}")
        self.trust = TrustStore(backend, clock)
        self.hosts = HostRegistry(backend, clock)
        self.recordings = RecordingStore(audit_backend or backend, recordings)
        self.session_recording = session_recording  # what the nodes are told to do

    @classmethod
    async def open(cls, backend: Backend, clock: Clock, cluster: str, recordings: Path | None,
                   session_recording: SessionRecording = "node",
                   join_root: JoinRoot = _no_root_dialer,
                   node_networks: Sequence[IPNetwork] = (), *,
                   audit_retention: dt.timedelta = DEFAULT_AUDIT_RETENTION,
                   limits: AuthLimits | None = None,
                   idp: IdPClient | None = None,
                   audit_backend: Backend | None = None,
                   connector_files: Path = Path(DEFAULT_CONNECTOR_FILES_DIR)) -> AuthServer:
        """Load (or on first start create) the cluster's name, CAs and preset roles;
        session recordings' chunks are kept in the directory ``recordings`` (None: in the
        backend, for auths that share it; the audit log's with ``audit_backend`` if given);
        nodes may
        advertise addresses in ``node_networks`` besides the one they call from."""
        stored = await cluster_name.claim(backend, cluster)
        if stored != cluster:
            raise BadParameter(
                f"this data directory belongs to cluster {stored!r}, "
                f"but the config names {cluster!r}"
            )
        cas = await authorities.load_or_create(backend, cluster, clock)
        server = cls(backend, clock, cluster, cas, recordings, session_recording, join_root,
                     node_networks, audit_retention=audit_retention, limits=limits, idp=idp,
                     audit_backend=audit_backend, connector_files=connector_files)
        if moved := await server.recordings.move_from_backend():
            log.info("moved %d session recordings from the backend's old layout to %s", moved,
                     recordings or "chunk items")
        if indexed := await server.recordings.index_leaf_sessions(
                server.audit.other_clusters_sessions()):
            log.info("indexed %d leaf sessions stored by an earlier version", indexed)
        if session_recording == "off":
            log.warning("session recording is off (auth_service.session_recording): the "
                        "cluster's nodes record no session")
        indexed = await server.nodes.index_existing()
        if indexed:
            log.info("indexed %d nodes stored by an earlier version", indexed)
        if entered := await server.trust.index_leaf_names():
            log.info("indexed the names of %d leaves joined under an earlier version", entered)
        if claimed := await server.hosts.claim_stored_names():
            log.info("claimed the names of %d nodes certified by an earlier version", claimed)
        for role in preset_roles():
            # Already there: an admin may have edited it.
            with contextlib.suppress(AlreadyExists):
                await server.roles.create(role)
        return server

    # --- roles and users ------------------------------------------------------------------

    async def roles_named(self, names: list[str] | tuple[str, ...]) -> list[Role]:
        """The roles that exist among ``names`` (a missing role grants nothing)."""
        found = []
        for name in names:
            try:
                found.append(await self.roles.get(name))
            except NotFound:
                log.warning("role %s named by a certificate or user does not exist", name)
        return found

    async def set_password(self, name: str, password: str, *, by: str, remote_addr: str) -> None:
        await self.users.get(name)
        await self.passwords.set(name, password)
        await self.audit.emit("user.password_change", user=by, remote_addr=remote_addr,
                              fields={"target": name})

    async def set_totp(self, name: str, enabled: bool, *, by: str, remote_addr: str) -> str:
        """Enroll a user in one-time codes (the otpauth:// URI of a new secret), or with
        ``enabled`` False remove their second factor ("")."""
        await self.users.get(name)
        uri = ""
        if enabled:
            uri = await self.totp.enroll(name)
        else:
            await self.totp.remove(name)
        await self.audit.emit("user.update", user=by, remote_addr=remote_addr,
                              fields={"target": name, "totp": bool(uri)})
        return uri

    async def delete_user(self, name: str) -> None:
        await self.users.delete(name)
        await self.passwords.delete(name)
        await self.totp.remove(name)

    # --- login ----------------------------------------------------------------------------

    async def login(
        self,
        username: str,
        password: str,
        public_key: str,
        *,
        otp: str = "",
        ttl: dt.timedelta | None = None,
        remote_addr: str = "",
    ) -> issuer.IssuedCerts:
        key = issuer.parse_public_key(public_key)
        try:
            await self.passwords.check(username, password)
            user = await self.users.get(username)
            if await self.totp.enrolled(username):
                if not otp:
                    raise AccessDenied(f"user {username} needs a one-time code "
                                       "(gsh login --otp=CODE)")
                try:
                    await self.totp.check(username, otp)
                except AccessDenied:
                    await self.passwords.record_failure(username)
                    raise
            await self.passwords.clear_failures(username)
        except GatehouseError as exc:
            reason = str(exc) if not isinstance(exc, NotFound) else DENIED
            shown = login_name_shown(username)
            await self.failures.emit("user.login.failure", user=shown,
                                     remote_addr=remote_addr, message=reason)
            log.warning("login denied user=%s remote=%s reason=%r", shown, remote_addr, reason)
            if isinstance(exc, NotFound):
                raise AccessDenied(reason) from None
            raise
        certs = await self.issue_user_certs(user, key, ttl=ttl)
        await self.audit.emit("user.login", user=username, remote_addr=remote_addr,
                              correlation_id=sshcert.correlation_id(username, certs.serial),
                              fields={"method": "password"})
        return certs

    async def issue_user_certs(
        self,
        user: User,
        key: Any,
        *,
        ttl: dt.timedelta | None,
        route_to_cluster: str = "",
        connector: str = "",
    ) -> issuer.IssuedCerts:
        """Sign ``user``'s certificates (``connector``: an SSO user, with no record)."""
        roles = await self.roles_named(user.spec.roles)
        max_ttl = rbac.max_session_ttl(roles) if roles else DEFAULT_USER_TTL
        ttl = min(ttl or DEFAULT_USER_TTL, max_ttl)
        logins = rbac.allowed_logins(roles, UserTraits.of(user.spec.traits,
                                                              sso=bool(connector)))
        traits = dict(user.spec.traits)
        ident = x509.Identity(
            kind="user",
            name=user.metadata.name,
            cluster=self.cluster,
            roles=tuple(user.spec.roles),
            logins=tuple(logins),
            traits=traits,
            route_to_cluster=route_to_cluster or self.cluster,
            connector=connector,
        )
        certs = issuer.issue_user(
            self.cas["user"], key, ident, now=self.clock.now(), ttl=ttl,
            port_forwarding=rbac.allows_port_forwarding(roles),
        )
        metrics.CERTIFICATES.labels("user").inc()
        name = user.metadata.name
        await self.audit.emit("cert.create", user=name,
                              correlation_id=sshcert.correlation_id(name, certs.serial),
                              fields={"logins": logins, "roles": list(user.spec.roles),
                                      "expires": certs.expires.isoformat()})
        return certs

    # --- hosts ----------------------------------------------------------------------------

    async def certify_host(
        self,
        role: str,
        host_id: str,
        nodename: str,
        key: Any,
        addrs: list[str],
        dns_names: list[str],
    ) -> issuer.IssuedCerts:
        """Register a host (what it may claim in heartbeats) and sign its certificates."""
        check_host_names(self.cluster, role, nodename, addrs, dns_names)
        await self.hosts.put(host_id, HostRecord(role=role, nodename=nodename, addrs=addrs,
                                                 dns_names=dns_names))
        return self._issue_host_certs(role, host_id, nodename, key, addrs, dns_names)

    async def renew_host(self, host_id: str, key: Any) -> issuer.IssuedCerts:
        """Fresh certificates for a registered host, exactly as it was certified: a removed
        host has no record, so its certificate, however valid, renews nothing."""
        record = await self.hosts.get(host_id)
        certs = self._issue_host_certs(record.role, host_id, record.nodename, key,
                                       record.addrs, record.dns_names)
        await self.audit.emit("cert.renew", node=record.nodename,
                              fields={"role": record.role, "host_id": host_id,
                                      "expires": certs.expires.isoformat()})
        return certs

    def _issue_host_certs(
        self,
        role: str,
        host_id: str,
        nodename: str,
        key: Any,
        addrs: list[str],
        dns_names: list[str],
    ) -> issuer.IssuedCerts:
        ident = x509.Identity(kind="host", name=host_id, cluster=self.cluster, roles=(role,))
        hosts = [a.rpartition(":")[0].strip("[]") or a for a in addrs]
        principals = [nodename, f"{nodename}.{self.cluster}", host_id, *hosts]
        # Only servers get TLS names (and with them serverAuth): a node never serves TLS.
        names = [] if role == "node" else [f"{role}.{self.cluster}", *dns_names]
        certs = issuer.issue_host(
            self.cas["host"], key, ident, now=self.clock.now(), ttl=HOST_TTL,
            principals=principals, dns_names=names,
        )
        metrics.CERTIFICATES.labels("host").inc()
        return certs

    async def issue_admin_certs(self, key: Any, replaces: str = "") -> issuer.IssuedCerts:
        """The local administrator credentials gatectl -c uses (kept in data_dir, 0600).

        Each issue is registered under a fresh id, like a host; the credentials it
        ``replaces`` (their id) are revoked, however long they had left.
        """
        admin_id = f"admin-{uuid.uuid4().hex[:12]}"
        await self.hosts.put(admin_id, HostRecord(role="admin", nodename="admin"))
        ident = x509.Identity(kind="host", name=admin_id, cluster=self.cluster,
                              roles=("admin",))
        now = self.clock.now()
        tls = x509.issue(self.cas["host"].tls_key, self.cas["host"].tls_cert, key, ident,
                         now=now, ttl=ADMIN_TTL)
        fields = {"host_id": admin_id, "expires": (now + ADMIN_TTL).isoformat()}
        if replaces:
            with contextlib.suppress(NotFound):
                await self.hosts.delete(replaces)
            fields["revoked"] = replaces
        await self.audit.emit("cert.create", user=admin_id, fields=fields)
        return issuer.IssuedCerts(ssh_cert="", tls_cert=x509.pem_cert(tls), expires=now + ADMIN_TTL)

    async def create_token(self, token_type: TokenType, ttl: dt.timedelta) -> JoinToken:
        token = JoinToken.generate(self.cas["host"].tls_fingerprint)
        await self.tokens.create(
            Token(
                metadata=TokenMetadata(name=token.secret, expires=self.clock.now() + ttl),
                spec=TokenSpec(type=token_type),
            )
        )
        expires = (self.clock.now() + ttl).isoformat()
        await self.audit.emit("token.create", fields={"type": token_type, "expires": expires})
        return token

    async def check_token(self, secret: str, token_type: str, joiner: str) -> None:
        """AccessDenied unless ``secret`` is a live token of ``token_type`` (for ``joiner``)."""
        try:
            token = await self.tokens.get(secret)
        except NotFound:
            raise AccessDenied("join token is invalid, expired or already used") from None
        if token.spec.type != token_type:
            raise AccessDenied(f"a {token.spec.type} token cannot join {joiner}")

    async def spend_token(self, secret: str) -> None:
        """Use up a checked single-use token: whoever deletes it first joins."""
        try:
            await self.tokens.delete(secret)
        except NotFound:
            raise AccessDenied("join token is invalid, expired or already used") from None

    async def join(self, req: JoinRequest) -> tuple[str, issuer.IssuedCerts]:
        """Consume a single-use token and certify the host; returns (host id, certs)."""
        try:
            if req.role not in ("node", "proxy"):
                raise BadParameter(f"cannot join as {req.role!r}: expected node or proxy")
            # Everything is checked before the single-use token is spent.
            check_host_names(self.cluster, req.role, req.nodename, req.addrs,
                             req.dns_names if req.role == "proxy" else [])
            check_node_addrs(req.nodename, req.addrs, source_ip(req.remote_addr),
                             self.node_networks)
            key = issuer.parse_public_key(req.public_key)
            await self.check_token(req.token, req.role, f"a {req.role}")
            if req.role == "node" and (holder := await self.hosts.name_holder(req.nodename)):
                raise AlreadyExists(name_taken(req.nodename, holder))
            await self.spend_token(req.token)
        except GatehouseError as exc:
            await self.failures.emit("join.failure", node=req.nodename,
                                     remote_addr=req.remote_addr, message=str(exc),
                                     fields={"role": req.role})
            log.warning("join refused node=%s remote=%s reason=%r", req.nodename,
                        req.remote_addr, str(exc))
            raise
        host_id = str(uuid.uuid4())
        certs = await self.certify_host(req.role, host_id, req.nodename, key, req.addrs,
                                        req.dns_names if req.role == "proxy" else [])
        await self.audit.emit("join", node=req.nodename, remote_addr=req.remote_addr,
                              fields={"role": req.role, "host_id": host_id})
        return host_id, certs

    async def heartbeat(self, host_id: str, hostname: str, addr: str, labels: dict[str, str],
                        *, tunnel: bool = False, source: str | None) -> Node:
        """Register a node's presence: only under the name it holds and an address it was
        certified with and calls from (``source``; None: a node in this auth's process,
        certified from this auth's own config), or the proxy could be pointed at any
        address (an open relay). A node on a tunnel (``tunnel``) claims no address: the
        proxy reaches it only over its own tunnel. Refusals are audited."""
        try:
            record = await self.hosts.get(host_id)
            if tunnel and addr:
                raise AccessDenied(f"node {host_id} on a tunnel claims an address ({addr})")
            if hostname != record.nodename or not (tunnel or addr in record.addrs):
                raise AccessDenied(
                    f"node {host_id} was certified as {record.nodename} at "
                    f"{', '.join(record.addrs) or 'no address'}, not {hostname} at {addr}")
            if (holder := await self.hosts.name_holder(hostname)) != host_id:
                raise AccessDenied(name_taken(hostname, holder))
            if source is not None and not tunnel:
                check_node_addrs(hostname, [addr], source_ip(source), self.node_networks)
        except AccessDenied as exc:
            log.warning("heartbeat refused host=%s node=%s addr=%s remote=%s reason=%r",
                        host_id, hostname[:256], addr[:256], source, str(exc))
            await self.audit.emit("access.denied", user=host_id, remote_addr=source or "",
                                  message=str(exc), fields={"resource": "node",
                                                            "verb": "heartbeat",
                                                            "host_id": host_id})
            raise
        now = self.clock.now()
        try:
            node = Node(
                metadata=Metadata(name=host_id, labels=labels,
                                  expires=now + (TUNNEL_NODE_TTL if tunnel else NODE_TTL)),
                spec=NodeSpec(hostname=hostname, addr=addr, cluster=self.cluster,
                              host_id=host_id, tunnel=tunnel),
                status=NodeStatus(last_heartbeat=now),
            )
        except ValidationError as exc:
            raise BadParameter(f"bad heartbeat: {describe_problems(exc)}") from None
        return await self.nodes.upsert(node)

    async def proxy_heartbeat(self, host_id: str, public_addr: str, listen_addr: str,
                              *, remote_addr: str) -> list[Proxy]:
        """Register a proxy's presence under the name it holds, at addresses its
        certificate names (a proxy cannot send tunnel agents anywhere else); returns the
        proxies online now, itself included. Refusals are logged and audited."""
        try:
            record = await self.hosts.get(host_id)
            if record.role != "proxy":
                raise AccessDenied(f"host {host_id} is a {record.role}, not a proxy")
            if split_host_port(public_addr)[0] not in record.dns_names:
                raise AccessDenied(
                    f"proxy {host_id} claims address {public_addr[:256]}, but was certified "
                    f"for {', '.join(record.dns_names) or 'no name'}")
            proxy = Proxy(metadata=Metadata(name=host_id), spec=ProxySpec(
                hostname=record.nodename, public_addr=public_addr, listen_addr=listen_addr))
        except ValidationError as exc:
            raise BadParameter(f"bad proxy heartbeat: {describe_problems(exc)}") from None
        except AccessDenied as exc:
            log.warning("proxy heartbeat refused host=%s remote=%s reason=%r", host_id,
                        remote_addr, str(exc))
            await self.audit.emit("access.denied", user=host_id, remote_addr=remote_addr,
                                  message=str(exc), fields={"resource": "proxy",
                                                            "verb": "heartbeat"})
            raise
        now = self.clock.now()
        await self.proxies.heartbeat(proxy, now)
        return await self.proxies.online(now)

    async def node_tunnels_held(self, proxy: str, host_ids: list[str], *,
                                verify: list[str] | None = None,
                                remote_addr: str) -> dict[str, str]:
        """Record the node tunnels ``proxy`` holds, of those it may keep; returns the
        others, each with why it must close (logged and audited). Only those of
        ``verify`` (None: all) are checked: the proxy asks for all of them whenever the
        trust changed (a removal is such a change) and every so often."""
        refused: dict[str, str] = {}
        checked = host_ids if verify is None else [h for h in verify if h in set(host_ids)]
        for host_id in dict.fromkeys(checked):
            try:
                record: HostRecord | None = await self.hosts.get(host_id)
            except AccessDenied:
                record = None
            reason = tunnel_refusal(host_id, record)
            if reason:
                refused[host_id] = reason
                log.warning("node tunnel refused host=%s proxy=%s reason=%r", host_id[:80],
                            proxy, reason)
                await self.audit.emit("access.denied", user=host_id[:80], remote_addr=remote_addr,
                                      message=reason, fields={"resource": "node",
                                                              "verb": "tunnel", "proxy": proxy})
        await self.nodes.tunnels_held(proxy, [h for h in host_ids if h not in refused],
                                      self.clock.now())
        return refused

    async def delete_node(self, host_id: str) -> None:
        """Revoke a node's registration (its heartbeats and API calls are refused from now)
        and forget its listing; works for offline nodes. Only a node: a proxy is removed
        by delete_proxy, and the admin credentials by issuing new ones."""
        found = False
        with contextlib.suppress(AccessDenied):  # not registered: maybe still listed
            role = (await self.hosts.get(host_id)).role
            if problem := not_a_node(host_id, role):
                log.warning("node removal refused host_id=%s role=%s reason=%r", host_id,
                            role, problem)
                raise BadParameter(problem)
        with contextlib.suppress(NotFound):
            await self.hosts.delete(host_id)
            found = True
        with contextlib.suppress(NotFound):
            await self.nodes.delete(host_id)
            found = True
        if not found:
            raise NotFound(f"node {host_id} not found")

    async def delete_proxy(self, name: str) -> str:
        """Remove a proxy that is gone, by host id or hostname, from the registry and
        revoke its registration: should it come back, its heartbeats are refused, so it
        is never announced to the tunnel agents again (a proxy gone for good otherwise
        stays listed for PROXY_KEPT). A proxy online is refused: it serves (maybe this
        auth's own users), and would register again. Returns its host id."""
        found = [p for p in await self.proxies.judged(self.clock.now())
                 if name in (p.metadata.name, p.spec.hostname)]
        if not found:
            raise NotFound(f"proxy {name} not found (see `gatectl get proxies`)")
        if len(found) > 1:
            raise BadParameter(f"proxy name {name} is ambiguous ({len(found)} proxies); use "
                               "its host id (see `gatectl get proxies`)")
        proxy = found[0]
        host_id = proxy.metadata.name
        if proxy.status.connection == "online":
            beat = proxy.status.last_heartbeat
            ago = f" (last heartbeat {(self.clock.now() - beat).total_seconds():.0f} s ago)" \
                if beat else ""
            raise BadParameter(f"proxy {name} is online{ago}: stop it first (a running "
                               "proxy registers itself again)")
        with contextlib.suppress(NotFound):
            await self.hosts.delete(host_id)
        with contextlib.suppress(NotFound):  # removed meanwhile
            await self.proxies.delete(host_id)
        return host_id

    async def resolve_node(self, target: str) -> Node:
        """A registered node by host id, hostname or advertised address; never anything else.

        Index reads: every session pays for this, whatever the number of nodes.
        """
        # Tunnel nodes advertise no address: "" must not find them.
        found = {n.metadata.name: n for n in await self.nodes.by_addr(target)} if target else {}
        with contextlib.suppress(NotFound, BadParameter):  # BadParameter: not a name
            found.setdefault(target, await self.nodes.get(target))
        matches = list(found.values()) or await self.nodes.by_hostname(target)
        if not matches:
            raise NotFound(f"node {target} is not registered in cluster {self.cluster}")
        if len(matches) > 1:
            raise BadParameter(
                f"node name {target} is ambiguous ({len(matches)} nodes); use its host id"
            )
        return matches[0]
