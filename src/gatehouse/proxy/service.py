"""The Proxy Service: one TLS port; ALPN routes to the web/API front, the SSH proxy,
or the reverse-tunnel server; its presence with its auth (presence.py); and, on a leaf,
the agent that dials its roots."""

from __future__ import annotations

import asyncio
import logging
import random
import ssl
import uuid
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, Protocol

from aiohttp import web

from gatehouse._sys.hostport import dial_addr, listen_error, split_host_port
from gatehouse._sys.tasks import TaskOwner
from gatehouse._sys.tlsserver import TLSServer
from gatehouse.client.auditspool import AuditSpool
from gatehouse.client.forward import AuthForwarder
from gatehouse.client.trust import TrustWatcher
from gatehouse.clock import Clock, Monotonic
from gatehouse.config import ProxySection
from gatehouse.errors import AccessDenied, BadParameter, ConnectionProblem
from gatehouse.pki import tls, x509
from gatehouse.pki.keystore import StoredIdentity
from gatehouse.proxy.anonymous import AnonymousConnections
from gatehouse.proxy.inventory import Inventories, inventory_handler
from gatehouse.proxy.leafauth import LeafAuth, roots_to_dial
from gatehouse.proxy.presence import ProxyPresence
from gatehouse.proxy.roottunnels import RootTunnelReports
from gatehouse.proxy.router import ALPNRouter
from gatehouse.proxy.sshproxy import SSHProxy
from gatehouse.proxy.usercert import authenticate_user
from gatehouse.proxy.web import make_web_app
from gatehouse.tunnel.accesspush import AccessPush
from gatehouse.tunnel.agent import TunnelAgent
from gatehouse.tunnel.eventsend import EventSender
from gatehouse.tunnel.inventorysend import InventorySender
from gatehouse.tunnel.link import TunnelLink
from gatehouse.tunnel.mux import MuxSession
from gatehouse.tunnel.needs import OwnNodes, Root
from gatehouse.tunnel.serve import StreamServer
from gatehouse.tunnel.server import TunnelServer
from gatehouse.wire.authapi import AuthAPI, NodeTunnels, ProxyHeartbeat
from gatehouse.wire.dial import NodeRoute
from gatehouse.wire.names import ALPN_HTTP, ALPN_SSH, ALPN_TUNNEL, INVENTORY_PATH

__all__ = ["ProxyService"]

log = logging.getLogger(__name__)


class InProcessAuth(Protocol):
    """The auth in this proxy's process (auth.local.LocalAuth), as the proxy relays its
    clients to it without a hop."""

    async def resolve_node(self, target: str, client_der: bytes | None,
                           remote: str) -> NodeRoute: ...
    def api_app(self) -> web.Application: ...


class ProxyService:
    def __init__(
        self,
        cfg: ProxySection,
        identity: StoredIdentity,
        api: AuthAPI,
        auth_addrs: list[str],
        clock: Clock,
        timer: Monotonic,
        state: Path,
        local: InProcessAuth | None = None,
    ) -> None:
        self._cfg = cfg
        self._identity = identity
        self._api = api
        self._local = local
        self._auth_addrs = auth_addrs
        self._clock = clock
        self._timer = timer
        self._cluster = identity.identity().cluster
        self._trust = TrustWatcher(api)
        self._spool = AuditSpool(state / "proxy-audit")  # its refusals, while the auth is away
        self._handlers = TaskOwner("the SSH proxy")  # one task per SSH connection
        self._ctx: ssl.SSLContext | None = None
        self._ctx_trusted: tuple[dict[str, str], list[str]] = ({}, [])
        self._auth_ssl: ssl.SSLContext | None = None
        self._push: AccessPush | None = None  # set when it runs

    def _root_user_cas(self) -> list[str]:
        """The user CAs (PEM) of the roots this cluster trusts, enabled ones only: a root's
        user may come straight to this proxy (e.g. while the root is down); this
        cluster's auth then decides, by the role map and the root's cluster labels."""
        return [ca.tls for ca in self._trust.current().user_cas if ca.cluster != self._cluster]

    def _user_cas(self) -> list[Any]:
        """The user CAs among the CAs this proxy trusts (host certificates never open
        sessions): this cluster's and its roots'."""
        pems = [self._identity.cas_pem(), *self._root_user_cas()]
        certs = [x509.load_cert(block) for pem in pems for block in x509.pem_blocks(pem)]
        return [c for c in certs if x509.ca_type(c) == "user"]

    def _server_context(self) -> ssl.SSLContext:
        """Trusts this cluster's CAs, every leaf's host CA and every root's user CA; rebuilt
        when those change."""
        trusted = (dict(self._trust.current().leaf_host_cas), self._root_user_cas())
        if self._ctx is None or trusted != self._ctx_trusted:
            ident = self._identity
            self._ctx = tls.server_context(
                ident.tls_cert_file, ident.key_pem_file,
                ident.cas_pem() + "".join(trusted[0].values()) + "".join(trusted[1]),
                alpn=[ALPN_SSH, ALPN_TUNNEL, ALPN_HTTP],
            )
            self._ctx_trusted = trusted
        return self._ctx

    def reload_identity(self) -> None:
        """Present the renewed certificate from the next handshake on (the tunnels to a
        root read it at each dial)."""
        ident = self._identity
        for ctx in (self._ctx, self._auth_ssl):
            if ctx is not None:
                ctx.load_cert_chain(ident.tls_cert_file, ident.key_pem_file)

    def _sni(self, sslobj: ssl.SSLObject, name: str | None, ctx: ssl.SSLContext) -> None:
        sslobj.context = self._server_context()

    async def _audit(self, event: str, fields: dict[str, Any]) -> None:
        """Spooled, then uploaded in order (the node's way): a refusal made while the auth
        is unreachable, e.g. because it is, reaches the audit log once it is back."""
        self._spool.append({"event": event, "time": self._clock.now().isoformat(),
                            "cluster": "", "id": str(uuid.uuid4()), **fields})

    async def _refused(self, remote: str, reason: str) -> None:
        """A client certificate refused in the TLS handshake: whoever it names, a stranger
        (its repeats are counted by the auth)."""
        await self._audit("client_cert.denied", {
            "remote_addr": remote,
            "message": f"the proxy refused the client certificate in the TLS handshake: "
                       f"{reason}"})

    async def _store_leaf_events(self, leaf: str, batch: Any) -> dict[str, Any]:
        """Hand a leaf's events to this (root) cluster's auth, tagged with the leaf's name."""
        if not isinstance(batch, dict) or not isinstance(batch.get("events"), list):
            raise BadParameter("an event batch is an object with an events list")
        return (await self._api.store_leaf_events(leaf, batch["events"])).model_dump()

    async def _report_tunnels(self, leaves: list[str]) -> None:
        """Tell the auth every leaf whose tunnel this proxy holds (one call for all), with
        what each said of itself."""
        said = self._push.said if self._push is not None else {}
        await self._api.report_tunnels(leaves, {leaf: said[leaf] for leaf in leaves
                                                if leaf in said})

    async def _report_node_tunnels(self, host_ids: list[str],
                                   verify: list[str] | None) -> dict[str, str]:
        """Tell the auth every node tunnel this proxy holds; it refuses some (of
        ``verify``, None: of all)."""
        return (await self._api.report_node_tunnels(NodeTunnels(host_ids=host_ids,
                                                                verify=verify))).refused

    def _host_cas(self) -> list[Any]:
        """This cluster's host CAs, which sign its nodes' certificates."""
        certs = map(x509.load_cert, x509.pem_blocks(self._identity.cas_pem()))
        return [c for c in certs if x509.ca_type(c) == "host"]

    async def _follow_leaves(self, tunnels: TunnelServer, push: AccessPush) -> None:
        """Close the tunnel of a leaf as soon as the root's auth forgets it, ask about
        the node tunnels on every change (a removed host is one), and tell the leaves
        what changed of cluster labels."""
        updated = self._trust.subscribe()
        while True:
            await updated.wait()
            updated.clear()
            tunnels.drop_unknown()
            tunnels.recheck_nodes()
            push.changed()

    def _check_reach(self, user: x509.Identity, leaf: str) -> None:
        """AccessDenied unless the roles of ``user`` (of this cluster) select ``leaf`` by
        its cluster labels: the root's routing check, logged with its reason. A root's
        user, who may come to this proxy, reaches only this cluster through it."""
        if user.cluster != self._cluster:
            reason = f"a user of cluster {user.cluster} reaches only {self._cluster} here"
        else:
            reason = self._trust.current().leaf_refusal(user.roles, leaf)
        if reason:
            log.warning("leaf access denied user=%s cluster=%s reason=%r", user.name, leaf,
                        reason)
            raise AccessDenied(f"user {user.name} may not reach cluster {leaf}: {reason}")

    def _authenticate_user(self, der: bytes) -> x509.Identity:
        return authenticate_user(der, self._user_cas(), self._clock.now())

    def _leaf_refusal(self, user: x509.Identity, leaf: str) -> str:
        """Why ``user`` may not reach ``leaf`` by the cluster labels ("" when they may)."""
        return self._trust.current().leaf_refusal(user.roles, leaf)

    def _access_body(self, leaf: str) -> bytes:
        """What this (root) cluster tells ``leaf`` of its cluster labels, as JSON."""
        return self._trust.current().cluster_access(leaf).model_dump_json().encode()

    def _spawn_handler(self, handler: SSHProxy) -> Callable[[], asyncio.Protocol]:
        def factory() -> asyncio.Protocol:
            reader = asyncio.StreamReader(limit=64 * 1024)

            def on_connect(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
                self._handlers.spawn(handler.handle(r, w))

            return asyncio.StreamReaderProtocol(reader, on_connect)

        return factory

    async def run(self, started: Callable[[str], None]) -> None:
        ident = self._identity
        self._auth_ssl = auth_ssl = tls.client_context(
            ident.cas_pem(), cert_file=ident.tls_cert_file, key_file=ident.key_pem_file)
        forwarder = AuthForwarder(self._auth_addrs, auth_ssl, f"auth.{self._cluster}")
        own = OwnNodes(self._cluster, self._host_cas, self._report_node_tunnels)
        # The push and the tunnel server each tell the other (the names below resolve
        # when called, once both exist).
        self._push = push = AccessPush(lambda leaf, meta: tunnels.open(leaf, meta),
                                       lambda: tunnels.connected(), self._access_body,
                                       self._timer)
        held = Inventories(lambda: tunnels.connected())
        tunnels = TunnelServer(lambda: self._trust.current().leaf_host_cas,
                               self._report_tunnels, self._store_leaf_events, self._clock,
                               self._timer, own_nodes=own, leaf_up=push.tunnel_up,
                               store_inventory=held.put)
        authenticate = self._authenticate_user
        local = self._local
        front = make_web_app(forwarder, self._cluster, tunnels.relay_api, authenticate,
                             self._check_reach, self._api.sso_finish,
                             local.api_app() if local else None, audit=self._audit,
                             own_routes={INVENTORY_PATH: inventory_handler(
                                 held, authenticate, self._leaf_refusal)})
        limits = self._cfg.limits
        # aiohttp's keep-alive timer runs from the handshake and from each response until
        # a request's head is complete: it is the idle timeout and the head's (slowloris).
        runner = web.AppRunner(front, access_log=None, shutdown_timeout=2.0,
                               keepalive_timeout=limits.idle_timeout.total_seconds())
        await runner.setup()
        resolver = local or forwarder
        ssh_proxy = SSHProxy(cluster=self._cluster, user_cas=self._user_cas,
                             resolve=resolver.resolve_node, check_reach=self._check_reach,
                             open_remote=tunnels.open,
                             open_node=tunnels.open_node,
                             audit=self._audit, clock=self._clock,
                             dial_timeout=limits.handshake_timeout.total_seconds())
        web_server = runner.server
        assert web_server is not None
        handlers = {ALPN_SSH: self._spawn_handler(ssh_proxy), ALPN_TUNNEL: tunnels.protocol,
                    ALPN_HTTP: lambda: web_server()}
        leaf_auth = LeafAuth(self._api, resolver, forwarder)
        root_tunnels = RootTunnelReports(self._api.report_root_tunnels,
                                         lambda: roots_to_dial(self._trust.current()),
                                         self._timer)

        def keep_tunnel(root: Root) -> Coroutine[Any, Any, None]:
            serve = StreamServer(root.name, leaf_auth, leaf_auth, self._audit,
                                 trust=self._trust.current, clock=self._clock,
                                 timer=self._timer, open_node=tunnels.open_node,
                                 store_access=leaf_auth.store_access,
                                 proxy_addr=self._cfg.public_addr or "")
            events = EventSender(leaf_auth, root.name, self._timer)
            pushes = InventorySender(leaf_auth, root.name, self._timer)

            async def while_up(session: MuxSession) -> None:
                async with asyncio.TaskGroup() as tg:
                    tg.create_task(events.run(session))
                    tg.create_task(pushes.run(session))

            return TunnelLink(root, ident, serve=serve, while_up=while_up, clock=self._timer,
                              rng=random.Random(), what=f"root {root.name}",
                              on_state=root_tunnels.changed).run()

        cfg = self._cfg
        presence = ProxyPresence(self._api.proxy_heartbeat, ProxyHeartbeat(
            public_addr=cfg.public_addr or dial_addr(cfg.listen_addr),
            listen_addr=cfg.listen_addr), tunnels.announce, self._timer)
        agent = TunnelAgent(lambda: roots_to_dial(self._trust.current()),
                            self._trust.subscribe(), keep_tunnel)
        async with asyncio.TaskGroup() as tg:
            tg.create_task(self._trust.run())
            try:
                await asyncio.wait_for(self._trust.ready.wait(), 30)
            except TimeoutError:
                raise ConnectionProblem(
                    f"the proxy could not fetch its trust from the auth at "
                    f"{', '.join(self._auth_addrs)}"
                ) from None
            ctx = self._server_context()
            ctx.sni_callback = self._sni
            host, port = split_host_port(self._cfg.listen_addr)
            anonymous = AnonymousConnections(limits.anonymous_per_source,
                                             limits.anonymous_total, self._timer)
            server = TLSServer(ctx, lambda: ALPNRouter(handlers, ALPN_HTTP, anonymous),
                               handshake_timeout=limits.handshake_timeout.total_seconds(),
                               on_refused=self._refused, what="the proxy's port")
            try:
                await server.start(host, port)
            except OSError as exc:
                raise listen_error("proxy_service.listen_addr", self._cfg.listen_addr,
                                   exc) from None
            try:
                tg.create_task(self._spool.run(self._api.post_events))
                tg.create_task(agent.run())
                tg.create_task(root_tunnels.run())
                tg.create_task(presence.run())
                tg.create_task(tunnels.run())
                tg.create_task(self._follow_leaves(tunnels, push))
                tg.create_task(push.run())
                started(self._cfg.listen_addr)
                await asyncio.Future()
            finally:
                # The tunnels close as the task group stops tunnels.run and agent.run.
                await server.close()
                await self._handlers.close()
                await runner.cleanup()
