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
import logging
import os
import socket
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from aiohttp import web
from cryptography.hazmat.primitives.asymmetric import ed25519

from gatehouse._sys.hostport import dial_addr, split_host_port
from gatehouse.auth.api import make_api_app
from gatehouse.auth.local import LocalAuth
from gatehouse.auth.server import AuthServer
from gatehouse.backend import open_backend
from gatehouse.client.admin import identity_bundle
from gatehouse.client.api import APIClient
from gatehouse.client.authclient import AuthClient
from gatehouse.client.join import join_cluster
from gatehouse.client.rootjoin import join_root
from gatehouse.clock import Clock, SystemClock, SystemMonotonic
from gatehouse.config import Config
from gatehouse.errors import BadParameter
from gatehouse.node.service import NodeService
from gatehouse.pki import tls
from gatehouse.pki.keystore import StoredIdentity, write_private
from gatehouse.proxy.service import ProxyService
from gatehouse.wire.names import ALPN_HTTP

__all__ = ["Started", "run"]

log = logging.getLogger(__name__)


@dataclass
class Started:
    """What is up, reported once every enabled service is serving."""

    cluster: str = ""
    addrs: dict[str, str] = field(default_factory=dict)  # service -> address


@contextlib.contextmanager
def _lock_data_dir(data_dir: Path) -> Iterator[Path]:
    data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    path = data_dir / "gatehouse.pid"
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.read(fd, 32).decode().strip() or "?"
        os.close(fd)
        raise BadParameter(
            f"data directory {data_dir} is in use by another gatehouse process (pid {holder})"
        ) from None
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


async def _start_auth(cfg: Config, auth: AuthServer, stack: contextlib.AsyncExitStack) -> None:
    data_dir = cfg.data_dir
    host, port = split_host_port(cfg.auth_service.listen_addr)
    store = StoredIdentity(data_dir / "auth")
    names = ["localhost", "127.0.0.1", host]
    await _save_local(auth, store, "auth", "auth", [], names, host_id="auth")
    admin = StoredIdentity(data_dir / "admin")
    key = ed25519.Ed25519PrivateKey.generate()
    admin.save(key, auth.issue_admin_certs(key.public_key()).tls_cert,
               auth.cas["host"].tls_cert_pem)
    write_private(admin.directory / "identity.pem", identity_bundle(admin))
    ctx = tls.server_context(store.tls_cert_file, store.key_pem_file,
                             auth.cas["host"].tls_cert_pem + auth.cas["user"].tls_cert_pem,
                             alpn=[ALPN_HTTP])
    runner = web.AppRunner(make_api_app(auth), access_log=None, shutdown_timeout=2.0,
                           keepalive_timeout=cfg.auth_service.limits.idle_timeout.total_seconds())
    await runner.setup()
    stack.push_async_callback(runner.cleanup)
    await web.TCPSite(runner, host, port, ssl_context=ctx, backlog=1024).start()


def _api_for(store: StoredIdentity, addr: str, hostname: str) -> AuthClient:
    ctx = tls.client_context(store.cas_pem(), cert_file=store.tls_cert_file,
                             key_file=store.key_pem_file)
    return AuthClient(APIClient(addr, ctx, server_hostname=hostname))


def _in_process(auth: AuthServer | None, store: StoredIdentity) -> LocalAuth | None:
    """The auth of this process, if it is the one that certified ``store``'s host."""
    return LocalAuth(auth) if auth is not None and auth.cluster == store.identity().cluster \
        else None


@contextlib.asynccontextmanager
async def _services(cfg: Config, clock: Clock) -> AsyncIterator[
        tuple[AuthServer | None, str, str]]:
    """Open the auth (if enabled); yield (auth, cluster name, auth API address + hostname)."""
    async with contextlib.AsyncExitStack() as stack:
        auth: AuthServer | None = None
        if cfg.auth_service.enabled:
            storage = cfg.gatehouse.storage
            backend = await open_backend(
                storage.type, path=Path(storage.path or cfg.data_dir / "backend.sqlite"),
                clock=clock,
            )
            stack.push_async_callback(backend.close)
            auth = await AuthServer.open(backend, clock, cfg.auth_service.cluster_name,
                                         cfg.data_dir / "recordings",
                                         cfg.auth_service.session_recording, join_root,
                                         audit_retention=cfg.auth_service.audit_retention,
                                         limits=cfg.auth_service.limits)
            await _start_auth(cfg, auth, stack)
            yield auth, auth.cluster, dial_addr(cfg.auth_service.listen_addr)
        else:
            yield None, "", cfg.gatehouse.auth_server or cfg.gatehouse.proxy_server or ""


async def run(
    cfg: Config, on_started: Callable[[Started], None], clock: Clock | None = None
) -> None:
    """Run every enabled service until cancelled."""
    clock = clock or SystemClock()
    data_dir = cfg.data_dir
    with _lock_data_dir(data_dir):
        async with (
            _services(cfg, clock) as (auth, cluster, auth_addr),
            contextlib.AsyncExitStack() as clients,
            asyncio.TaskGroup() as tg,
        ):
            started = Started(cluster=cluster)
            if auth is not None:
                started.addrs["auth"] = cfg.auth_service.listen_addr
                tg.create_task(auth.failures.run(SystemMonotonic()))
            waiting: list[asyncio.Event] = []

            def watcher(name: str) -> Callable[[str], None]:
                event = asyncio.Event()
                waiting.append(event)

                def done(addr: str) -> None:
                    started.addrs[name] = addr
                    event.set()

                return done

            nodename = cfg.gatehouse.nodename
            via_proxy = auth is None and not cfg.gatehouse.auth_server
            if cfg.proxy_service.enabled:
                store = StoredIdentity(data_dir / "proxy")
                if not store.exists():
                    if auth is not None:
                        await _save_local(auth, store, "proxy", nodename, [],
                                          _proxy_names(cfg))
                    else:
                        await join_cluster(cfg.gatehouse, auth_addr, "proxy", nodename, [],
                                           _proxy_names(cfg), store)
                cluster = store.identity().cluster
                local = _in_process(auth, store)
                api = local.as_host(store.identity()) if local else \
                    await clients.enter_async_context(
                        _api_for(store, auth_addr, f"auth.{cluster}"))
                tg.create_task(ProxyService(cfg.proxy_service, store, api, auth_addr, clock,
                                            SystemMonotonic(), local)
                               .run(watcher("proxy")))
            if cfg.ssh_service.enabled:
                store = StoredIdentity(data_dir / "node")
                addr = cfg.ssh_service.advertised_addr()
                if not store.exists():
                    if auth is not None:
                        await _save_local(auth, store, "node", nodename, [addr], [])
                    else:
                        await join_cluster(cfg.gatehouse, auth_addr, "node", nodename, [addr], [],
                                           store)
                cluster = store.identity().cluster
                server_name = f"proxy.{cluster}" if via_proxy else f"auth.{cluster}"
                local = _in_process(auth, store)
                api = local.as_host(store.identity()) if local else \
                    await clients.enter_async_context(_api_for(store, auth_addr, server_name))
                tg.create_task(NodeService(cfg.ssh_service, nodename, store, api, clock,
                                           data_dir).run(watcher("ssh")))
            for event in waiting:
                await event.wait()
            started.cluster = cluster
            on_started(started)
            # Serve until cancelled. A failing service's task cancels this wait, and the
            # group raises its error.
            await asyncio.Event().wait()
