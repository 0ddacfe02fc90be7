"""The Proxy Service: one TLS port; ALPN routes to the web/API front or the SSH proxy."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from aiohttp import web

from gatehouse import tls, x509
from gatehouse.client.api import APIClient
from gatehouse.clock import Clock
from gatehouse.config import ProxyService as ProxyConfig
from gatehouse.config import split_hostport
from gatehouse.dialwire import ALPN_SSH, DialRequest
from gatehouse.errors import BadParameter, GatehouseError
from gatehouse.keystore import StoredIdentity
from gatehouse.proxy.router import ALPNRouter
from gatehouse.proxy.sshproxy import SSHProxy
from gatehouse.proxy.web import make_web_app

__all__ = ["ProxyService"]

log = logging.getLogger(__name__)


class ProxyService:
    def __init__(
        self,
        cfg: ProxyConfig,
        identity: StoredIdentity,
        api: APIClient,
        auth_addr: str,
        clock: Clock,
    ) -> None:
        self._cfg = cfg
        self._identity = identity
        self._api = api
        self._auth_addr = auth_addr
        self._clock = clock
        self._cluster = identity.identity().cluster
        self._tasks: set[asyncio.Task[None]] = set()

    def _user_cas(self) -> list[Any]:
        """The user CAs among the CAs this proxy trusts (host certificates never open sessions)."""
        pem = self._identity.cas_pem()
        blocks = [b + "-----END CERTIFICATE-----" for b in pem.split("-----END CERTIFICATE-----")
                  if b.strip()]
        return [c for c in map(x509.load_cert, blocks) if x509.ca_type(c) == "user"]

    async def _resolve(self, req: DialRequest) -> str:
        if req.cluster and req.cluster != self._cluster:
            raise BadParameter(f"cluster {req.cluster} is not known to this proxy")
        node = await self._api.get("/v1/nodes/resolve", target=req.target)
        return str(node["spec"]["addr"])

    async def _audit(self, event: str, fields: dict[str, Any]) -> None:
        record = {"event": event, "time": self._clock.now().isoformat(), "cluster": "", **fields}
        try:
            await self._api.post("/v1/events", {"events": [record]})
        except GatehouseError as exc:
            log.error("could not record %s event: %s", event, exc)

    async def run(self, started: Callable[[str], None]) -> None:
        ident = self._identity
        auth_ssl = tls.client_context(ident.cas_pem(), cert_file=ident.tls_cert_file,
                                      key_file=ident.key_pem_file)
        runner = web.AppRunner(make_web_app(self._auth_addr, auth_ssl, f"auth.{self._cluster}"),
                               access_log=None, shutdown_timeout=2.0)
        await runner.setup()
        ssh_proxy = SSHProxy(user_cas=self._user_cas, resolve=self._resolve,
                             audit=self._audit, clock=self._clock)

        def ssh_protocol() -> asyncio.BaseProtocol:
            reader = asyncio.StreamReader(limit=64 * 1024)

            def on_connect(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
                task = asyncio.ensure_future(ssh_proxy.handle(r, w))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)

            return asyncio.StreamReaderProtocol(reader, on_connect)

        server_ctx = tls.server_context(ident.tls_cert_file, ident.key_pem_file,
                                        ident.cas_pem(), alpn=[ALPN_SSH, "http/1.1"])
        host, port = split_hostport(self._cfg.listen_addr)
        web_server = runner.server
        assert web_server is not None
        handlers = {ALPN_SSH: ssh_protocol, "http/1.1": lambda: web_server()}
        loop = asyncio.get_running_loop()
        server = await loop.create_server(
            lambda: ALPNRouter(handlers, default="http/1.1"), host, port,
            ssl=server_ctx, reuse_address=True, backlog=1024,
        )
        try:
            started(self._cfg.listen_addr)
            await asyncio.Future()
        finally:
            server.close()
            for task in list(self._tasks):
                task.cancel()
            await runner.cleanup()
