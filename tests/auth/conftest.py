"""Fixtures of the auth tests (the clock and backend are tests/conftest.py's): an auth server,
cheap password hashing, and that server's HTTPS API with clients of various identities."""

from __future__ import annotations

import base64
import itertools
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any

import aiohttp
import argon2
import pytest
from aiohttp import web
from cryptography.hazmat.primitives.asymmetric import ed25519

from gatehouse.auth import passwords
from gatehouse.auth.api import make_api_app
from gatehouse.auth.server import AuthServer
from gatehouse.backend import Backend
from gatehouse.client.api import APIClient
from gatehouse.clock import FakeClock
from gatehouse.pki import tls
from gatehouse.pki.keystore import StoredIdentity
from gatehouse.types.resource import Metadata
from gatehouse.types.user import User, UserSpec
from gatehouse.wire.names import CLIENT_CERT_HEADER
from tests.auth.samples import CLUSTER, der


@pytest.fixture
async def server(backend: Backend, clock: FakeClock, tmp_path: Path) -> AuthServer:
    return await AuthServer.open(backend, clock, CLUSTER, tmp_path / "recordings")


@pytest.fixture
def fast_hashing(monkeypatch: pytest.MonkeyPatch) -> None:
    """The default argon2 parameters cost ~0.2 s a hash; tests need the logic, not the cost."""
    monkeypatch.setattr(passwords, "_hasher",
                        argon2.PasswordHasher(time_cost=1, memory_cost=8, parallelism=1))


class API:
    """The auth API served over TLS, and clients of it holding various identities."""

    def __init__(self, server: AuthServer, addr: str, directory: Path) -> None:
        self.server = server
        self.addr = addr
        self._directory = directory
        self._names = itertools.count()
        self._clients: list[APIClient] = []

    def _client(self, key: ed25519.Ed25519PrivateKey, tls_cert: str,
                headers: dict[str, str] | None = None) -> APIClient:
        store = StoredIdentity(self._directory / f"id{next(self._names)}")
        store.save(key, tls_cert, self.server.cas["host"].tls_cert_pem)
        ctx = tls.client_context(store.cas_pem(), cert_file=store.tls_cert_file,
                                 key_file=store.key_pem_file)
        client = APIClient(self.addr, ctx, server_hostname=f"auth.{CLUSTER}", headers=headers)
        self._clients.append(client)
        return client

    async def _login(self, name: str, roles: list[str]) -> tuple[ed25519.Ed25519PrivateKey, str]:
        """Create (or update) the user; a fresh key and TLS certificate of theirs."""
        user = User(metadata=Metadata(name=name),
                    spec=UserSpec(roles=roles, traits={"logins": [name]}))
        await self.server.users.upsert(user)
        key = ed25519.Ed25519PrivateKey.generate()
        return key, (await self.server.issue_user_certs(user, key.public_key(), ttl=None)).tls_cert

    async def user_cert(self, name: str, roles: list[str]) -> str:
        return (await self._login(name, roles))[1]

    async def user(self, name: str, roles: list[str]) -> APIClient:
        return self._client(*await self._login(name, roles))

    async def host(self, role: str, host_id: str, nodename: str, addrs: list[str],
                   headers: dict[str, str] | None = None,
                   dns_names: list[str] | None = None) -> APIClient:
        key = ed25519.Ed25519PrivateKey.generate()
        certs = await self.server.certify_host(role, host_id, nodename, key.public_key(), addrs,
                                               dns_names or [])
        return self._client(key, certs.tls_cert, headers)

    async def proxy_relaying(self, user_tls_cert: str) -> APIClient:
        """A proxy forwarding a user's call, as proxy/web.AuthForwarder does."""
        header = base64.b64encode(der(user_tls_cert)).decode()
        return await self.host("proxy", "proxy-hid", "proxy1", [],
                               headers={CLIENT_CERT_HEADER: header})

    async def stranger(self, method: str, path: str, body: object = None, *,
                       raw: bytes | None = None) -> tuple[int, Mapping[str, str], Any]:
        """One request without a client certificate, its body ``body`` as JSON or ``raw``
        as it is: (status, headers, JSON reply)."""
        ctx = tls.client_context(self.server.cas["host"].tls_cert_pem)
        sent: dict[str, Any] = {"json": body} if raw is None else {"data": raw}
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=ctx)) as http, \
                http.request(method, f"https://{self.addr}{path}", **sent,
                             server_hostname=f"auth.{CLUSTER}") as resp:
            return resp.status, resp.headers, await resp.json(content_type=None)

    async def admin(self) -> APIClient:
        key = ed25519.Ed25519PrivateKey.generate()
        certs = await self.server.issue_admin_certs(key.public_key())
        return self._client(key, certs.tls_cert)

    async def close(self) -> None:
        for client in self._clients:
            await client.close()


@pytest.fixture
async def api(server: AuthServer, tmp_path: Path) -> AsyncIterator[API]:
    """The auth API as daemon._start_auth serves it, on a free loopback port."""
    key = ed25519.Ed25519PrivateKey.generate()
    certs = await server.certify_host("auth", "auth", "auth", key.public_key(), [], [])
    store = StoredIdentity(tmp_path / "auth")
    store.save(key, certs.tls_cert, server.cas["host"].tls_cert_pem)
    ctx = tls.server_context(store.tls_cert_file, store.key_pem_file,
                             server.cas["host"].tls_cert_pem + server.cas["user"].tls_cert_pem,
                             alpn=["http/1.1"])
    runner = web.AppRunner(make_api_app(server), access_log=None, shutdown_timeout=0.1)
    await runner.setup()
    try:
        site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=ctx)
        await site.start()
        port = runner.addresses[0][1]
        harness = API(server, f"127.0.0.1:{port}", tmp_path)
        yield harness
        await harness.close()
    finally:
        await runner.cleanup()
