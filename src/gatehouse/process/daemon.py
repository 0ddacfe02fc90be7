"""`gatehouse start`: compose the services a config enables into one process.

Services in this process that need a host identity get it from the local auth
directly, and call it in-process through the same authorization as remote callers
(auth.local); otherwise they join with ``gatehouse.join_token`` through
``proxy_server`` (or ``auth_server``), verifying the cluster against the CA pin
inside the token before the token is sent.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import functools
import logging
import os
import socket
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from aiohttp import web
from cryptography.hazmat.primitives.asymmetric import ed25519

from gatehouse._sys import gcsettings
from gatehouse._sys.fdlimit import raise_open_file_limit
from gatehouse._sys.hostport import dial_addr, listen_error, split_host_port
from gatehouse._sys.tlsserver import TLSServer
from gatehouse.auth import leafsweep
from gatehouse.auth.api import make_api_app
from gatehouse.auth.local import LocalAuth
from gatehouse.auth.server import AuthServer
from gatehouse.backend import Backend, EtcdSettings, open_backend
from gatehouse.backend.measured import MeasuredBackend
from gatehouse.client.admin import identity_bundle
from gatehouse.client.api import APIClient
from gatehouse.client.authclient import AuthClient
from gatehouse.client.join import join_cluster
from gatehouse.client.oidcidp import HTTPSIdP
from gatehouse.client.rootjoin import join_root
from gatehouse.clock import Clock, Monotonic, SystemClock, SystemMonotonic
from gatehouse.config import Config
from gatehouse.errors import AccessDenied, BadParameter
from gatehouse.node.service import NodeService
from gatehouse.pki import sshcert, tls
from gatehouse.pki.keystore import StoredIdentity, write_private
from gatehouse.process.diag import Readiness, serving
from gatehouse.process.listeners import check_listen_addrs
from gatehouse.process.renewal import Fresh, Renewal, renewal_due
from gatehouse.proxy.anonymous import AnonymousConnections
from gatehouse.proxy.router import ALPNRouter
from gatehouse.proxy.service import ProxyService
from gatehouse.services import cluster_name
from gatehouse.services.sole_auth import SoleAuth
from gatehouse.wire.authapi import AuthAPI, RenewRequest
from gatehouse.wire.names import ALPN_HTTP

__all__ = ["Started", "check_unlocked", "run"]

log = logging.getLogger(__name__)


@dataclass
class Started:
    """What is up, reported once every enabled service is serving."""

    cluster: str = ""
    addrs: dict[str, str] = field(default_factory=dict)  # service -> address


def _lock(fd: int, data_dir: Path) -> None:
    """Take the data directory's lock on ``fd``; BadParameter naming the process that
    holds it."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.read(fd, 32).decode().strip() or "?"
        raise BadParameter(
            f"data directory {data_dir} is in use by another gatehouse process (pid {holder})"
        ) from None


def _check_can_start(cfg: Config, config_file: Path | None) -> None:
    """What would stop this start, found before anything is created: the data directory
    locked by another process, a listen address that cannot bind."""
    check_unlocked(cfg.data_dir)
    check_listen_addrs(cfg, config_file)


def check_unlocked(data_dir: Path) -> None:
    """BadParameter naming the process if a gatehouse process holds data_dir's lock."""
    try:
        fd = os.open(data_dir / "gatehouse.pid", os.O_RDWR)
    except FileNotFoundError:
        return
    try:
        _lock(fd, data_dir)
    finally:
        os.close(fd)


@contextlib.contextmanager
def _lock_data_dir(data_dir: Path) -> Iterator[Path]:
    data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    path = data_dir / "gatehouse.pid"
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        _lock(fd, data_dir)
    except BadParameter:
        os.close(fd)
        raise
    os.ftruncate(fd, 0)
    os.write(fd, str(os.getpid()).encode())
    try:
        yield path
    finally:
        os.close(fd)


def _proxy_names(cfg: Config) -> list[str]:
    names = ["localhost", "127.0.0.1"]
    for addr in (cfg.proxy_service.public_addr, cfg.proxy_service.listen_addr):
        if addr:
            host = split_host_port(addr)[0]
            if host in ("0.0.0.0", "::"):
                names.append(socket.gethostname())
            else:
                names.append(host)
    return names


async def _save_local(auth: AuthServer, store: StoredIdentity, role: str, nodename: str,
                      addrs: list[str], dns_names: list[str], host_id: str = "") -> None:
    key = ed25519.Ed25519PrivateKey.generate()
    certs = await auth.certify_host(role, host_id or str(uuid.uuid4()), nodename,
                                    key.public_key(), addrs, dns_names)
    cas = auth.cas["host"].tls_cert_pem + auth.cas["user"].tls_cert_pem
    store.save(key, certs.tls_cert, cas, certs.ssh_cert)


def _renew_with(api: AuthAPI) -> Callable[[StoredIdentity], Awaitable[Fresh]]:
    """Renewal through the typed API, in the host's own name."""
    async def renew(store: StoredIdentity) -> Fresh:
        public = sshcert.public_key_line(store.key().public_key())
        certs = await api.renew(RenewRequest(public_key=public))
        return Fresh(certs.tls_cert, certs.ssh_cert)
    return renew


def _admin_current(auth: AuthServer, admin: StoredIdentity, clock: Clock) -> str:
    """The id of the admin credentials in ``admin`` if they can be kept, else ""."""
    if not admin.exists():
        return ""
    ident = admin.identity()
    cert = admin.tls_cert()
    if ident.system_role != "admin" or ident.cluster != auth.cluster or \
            clock.now() >= renewal_due(cert.not_valid_before_utc, cert.not_valid_after_utc):
        return ""
    return ident.name


async def _admin_credentials(auth: AuthServer, admin: StoredIdentity, clock: Clock) -> None:
    """Keep the admin credentials while valid and registered; otherwise issue new ones
    (revoking the ones they replace)."""
    kept = _admin_current(auth, admin, clock)
    if kept:
        with contextlib.suppress(AccessDenied):
            await auth.hosts.get(kept)
            return
    old = admin.identity().name if admin.exists() else ""
    key = ed25519.Ed25519PrivateKey.generate()
    certs = await auth.issue_admin_certs(key.public_key(), replaces=old)
    admin.save(key, certs.tls_cert, auth.cas["host"].tls_cert_pem)
    write_private(admin.directory / "identity.pem", identity_bundle(admin))


def _admin_renewal(auth: AuthServer, admin: StoredIdentity, clock: Clock,
                   timer: Monotonic) -> Renewal:
    async def renew(store: StoredIdentity) -> Fresh:
        certs = await auth.issue_admin_certs(store.key().public_key(),
                                             replaces=store.identity().name)
        return Fresh(certs.tls_cert, None)

    renewal = Renewal("admin", admin, renew, clock, timer)
    renewal.on_renewed(lambda: write_private(admin.directory / "identity.pem",
                                             identity_bundle(admin)))
    return renewal


async def _start_auth(cfg: Config, auth: AuthServer, stack: contextlib.AsyncExitStack,
                      clock: Clock, timer: Monotonic) -> list[Renewal]:
    """Serve the auth's API; returns the renewals of its own and the admin credentials."""
    data_dir = cfg.data_dir
    host, port = split_host_port(cfg.auth_service.listen_addr)
    store = StoredIdentity(data_dir / "auth")
    names = ["localhost", "127.0.0.1", host]
    await _save_local(auth, store, "auth", "auth", [], names, host_id="auth")
    admin = StoredIdentity(data_dir / "admin")
    await _admin_credentials(auth, admin, clock)
    ctx = tls.server_context(store.tls_cert_file, store.key_pem_file,
                             auth.cas["host"].tls_cert_pem + auth.cas["user"].tls_cert_pem,
                             alpn=[ALPN_HTTP])
    limits = cfg.auth_service.limits
    runner = web.AppRunner(make_api_app(auth), access_log=None, shutdown_timeout=2.0,
                           keepalive_timeout=limits.idle_timeout.total_seconds())
    await runner.setup()
    stack.push_async_callback(runner.cleanup)
    web_server = runner.server
    assert web_server is not None

    async def refused(remote: str, reason: str) -> None:
        await auth.failures.emit("client_cert.denied", remote_addr=remote, message=(
            f"the auth refused the client certificate in the TLS handshake: {reason}"))

    # Strangers' connections counted as on the proxy's port: one ALPN, the same router.
    anonymous = AnonymousConnections(limits.anonymous_per_source, limits.anonymous_total,
                                     timer)
    server = TLSServer(ctx, lambda: ALPNRouter({ALPN_HTTP: web_server}, ALPN_HTTP, anonymous),
                       on_refused=refused, what="the auth's port",
                       handshake_timeout=limits.handshake_timeout.total_seconds())
    try:
        await server.start(host, port)
    except OSError as exc:  # taken since the check at start
        raise listen_error("auth_service.listen_addr", cfg.auth_service.listen_addr,
                           exc) from None
    stack.push_async_callback(server.close)

    async def renew_own(own: StoredIdentity) -> Fresh:
        certs = await auth.renew_host("auth", own.key().public_key())
        return Fresh(certs.tls_cert, certs.ssh_cert)

    own = Renewal("auth", store, renew_own, clock, timer)
    own.reload_context(ctx)
    return [own, _admin_renewal(auth, admin, clock, timer)]


def _in_process(auth: AuthServer | None, store: StoredIdentity) -> LocalAuth | None:
    """The auth of this process, if it is the one that certified ``store``'s host."""
    return LocalAuth(auth) if auth is not None and auth.cluster == store.identity().cluster \
        else None


async def _host_api(
    name: str, store: StoredIdentity, auth: AuthServer | None, auth_addrs: list[str],
    server_name: str, clients: contextlib.AsyncExitStack, clock: Clock, timer: Monotonic,
) -> tuple[AuthAPI, LocalAuth | None, Renewal]:
    """A host's typed API (in-process if its auth is here) and its certificates' renewal."""
    local = _in_process(auth, store)
    if local is not None:
        own = local.as_host(store.identity())
        return own, local, Renewal(name, store, _renew_with(own), clock, timer)
    ctx = tls.client_context(store.cas_pem(), cert_file=store.tls_cert_file,
                             key_file=store.key_pem_file)
    remote = await clients.enter_async_context(
        AuthClient(APIClient(auth_addrs, ctx, server_hostname=server_name)))
    renewal = Renewal(name, store, _renew_with(remote), clock, timer)
    renewal.reload_context(ctx)
    return remote, None, renewal


async def _open_storage(cfg: Config, clock: Clock, stack: contextlib.AsyncExitStack
                        ) -> tuple[Backend, Backend | None]:
    """The auth's backend and, on etcd with storage.audit_conn_string, the PostgreSQL one
    of its audit log and recordings; closed by stack. On etcd without a shared audit
    store, only while this is the one auth on its prefix (services.sole_auth)."""
    storage = cfg.gatehouse.storage
    etcd = None
    if storage.type == "etcd":
        etcd = EtcdSettings(
            peers=storage.peers,
            prefix=storage.prefix or f"/gatehouse/{cfg.auth_service.cluster_name}",
            tls_ca_file=storage.tls_ca_file, tls_cert_file=storage.tls_cert_file,
            tls_key_file=storage.tls_key_file)
    backend = MeasuredBackend(await open_backend(
        storage.type, path=Path(storage.path or cfg.data_dir / "backend.sqlite"),
        conn_string=storage.conn_string, clock=clock, etcd=etcd))
    stack.push_async_callback(backend.close)
    if storage.type != "etcd":
        return backend, None
    if storage.audit_conn_string is None:
        holder = f"{cfg.gatehouse.nodename}:{cfg.data_dir.resolve()}"
        stack.push_async_callback((await SoleAuth.claim(backend, holder, clock)).release)
        return backend, None
    audit = MeasuredBackend(await open_backend("postgres", path=None, clock=clock,
                                               conn_string=storage.audit_conn_string))
    stack.push_async_callback(audit.close)
    return backend, audit


@contextlib.asynccontextmanager
async def _diag(cfg: Config, readiness: Readiness) -> AsyncIterator[None]:
    """The diag endpoints while the daemon runs, if ``gatehouse.diag_addr`` is set."""
    if not cfg.gatehouse.diag_addr:
        yield
        return
    async with serving(cfg.gatehouse.diag_addr, readiness):
        yield


@contextlib.asynccontextmanager
async def _services(cfg: Config, clock: Clock, timer: Monotonic) -> AsyncIterator[
        tuple[AuthServer | None, str, list[str], list[Renewal]]]:
    """Open the auth (if enabled); yield (auth, cluster name, the auth API's addresses,
    the renewals of the auth's own credentials)."""
    async with contextlib.AsyncExitStack() as stack:
        auth: AuthServer | None = None
        if cfg.auth_service.enabled:
            backend, audit = await _open_storage(cfg, clock, stack)
            # Auths that share a PostgreSQL database share no directory: the recordings'
            # chunks go to the database with the rest (or with the audit log, on etcd).
            shared = cfg.gatehouse.storage.type == "postgres" or audit is not None
            recordings = None if shared else cfg.data_dir / "recordings"
            auth = await AuthServer.open(backend, clock, cfg.auth_service.cluster_name,
                                         recordings,
                                         cfg.auth_service.session_recording, join_root,
                                         cfg.auth_service.node_address_networks,
                                         audit_retention=cfg.auth_service.audit_retention,
                                         limits=cfg.auth_service.limits, idp=HTTPSIdP(),
                                         audit_backend=audit,
                                         connector_files=Path(
                                             cfg.auth_service.connector_files_dir))
            renewals = await _start_auth(cfg, auth, stack, clock, timer)
            yield auth, auth.cluster, [dial_addr(cfg.auth_service.listen_addr)], renewals
        else:
            yield None, "", cfg.gatehouse.auth_addrs(), []


async def run(
    cfg: Config, on_started: Callable[[Started], None], clock: Clock | None = None,
    timer: Monotonic | None = None, config_file: Path | None = None,
) -> None:
    """Run every enabled service until cancelled (``config_file``: where ``cfg`` came
    from, for messages). A start that cannot listen fails before it creates anything."""
    clock = clock or SystemClock()
    timer = timer or SystemMonotonic()
    data_dir = cfg.data_dir
    _check_can_start(cfg, config_file)
    log.debug("open-file limit %d", raise_open_file_limit())
    readiness = Readiness()
    with _lock_data_dir(data_dir):
        async with (
            _diag(cfg, readiness),
            _services(cfg, clock, timer) as (auth, cluster, auth_addrs, renewals),
            contextlib.AsyncExitStack() as clients,
            asyncio.TaskGroup() as tg,
        ):
            started = Started(cluster=cluster)
            if auth is not None:
                started.addrs["auth"] = cfg.auth_service.listen_addr
                tg.create_task(auth.failures.run(timer))
                readiness.add("auth", functools.partial(cluster_name.stored, auth.backend))
                if cfg.gatehouse.storage.audit_conn_string:  # an auth that cannot audit
                    readiness.add("audit", auth.audit.newest)  # refuses what it would audit
                tg.create_task(leafsweep.run(auth, cfg.auth_service.remote_cluster_offline_ttl,
                                             timer))
            waiting: list[asyncio.Event] = []

            def watcher(name: str) -> Callable[[str], None]:
                event = asyncio.Event()
                waiting.append(event)

                def done(addr: str) -> None:
                    started.addrs[name] = addr
                    event.set()

                return done

            nodename = cfg.gatehouse.nodename
            via_proxy = auth is None and not (cfg.gatehouse.auth_server
                                              or cfg.gatehouse.auth_servers)
            if cfg.proxy_service.enabled:
                store = StoredIdentity(data_dir / "proxy")
                if not store.exists():
                    if auth is not None:
                        await _save_local(auth, store, "proxy", nodename, [],
                                          _proxy_names(cfg))
                    else:
                        await join_cluster(cfg.gatehouse, auth_addrs, "proxy", nodename, [],
                                           _proxy_names(cfg), store)
                cluster = store.identity().cluster
                api, local, renewal = await _host_api("proxy", store, auth, auth_addrs,
                                                      f"auth.{cluster}", clients, clock, timer)
                proxy = ProxyService(cfg.proxy_service, store, api, auth_addrs, clock, timer,
                                     data_dir, local)
                if local is None:
                    readiness.add("proxy", api.ping)
                renewal.on_renewed(proxy.reload_identity)
                renewals.append(renewal)
                tg.create_task(proxy.run(watcher("proxy")))
            if cfg.ssh_service.enabled:
                store = StoredIdentity(data_dir / "node")
                tunnel_to = cfg.node_tunnel()  # a node on a tunnel claims no address
                addrs = [] if tunnel_to else [cfg.ssh_service.advertised_addr()]
                if not store.exists():
                    if auth is not None:
                        await _save_local(auth, store, "node", nodename, addrs, [])
                    else:
                        await join_cluster(cfg.gatehouse, auth_addrs, "node", nodename, addrs, [],
                                           store)
                cluster = store.identity().cluster
                server_name = f"proxy.{cluster}" if via_proxy else f"auth.{cluster}"
                api, local, renewal = await _host_api("node", store, auth, auth_addrs,
                                                      server_name, clients, clock, timer)
                if local is None:
                    readiness.add("ssh", api.ping)
                node = NodeService(cfg.ssh_service, nodename, store, api, clock, data_dir,
                                   timer=timer, tunnel_to=tunnel_to)
                renewal.on_renewed(node.reload_identity)
                renewals.append(renewal)
                tg.create_task(node.run(watcher("ssh")))
            for event in waiting:
                await event.wait()
            for renewal in renewals:
                tg.create_task(renewal.run())
            started.cluster = cluster
            gcsettings.settle()
            readiness.started = True
            on_started(started)
            # Serve until cancelled. A failing service's task cancels this wait, and the
            # group raises its error.
            await asyncio.Event().wait()
