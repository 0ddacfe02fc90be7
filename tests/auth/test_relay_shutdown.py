"""A proxy's API front stops at once, even while it relays a node's trust watch.

The relayed stream lasts as long as the auth's; without ending it on shutdown,
the proxy's web runner would wait out its whole grace period (here 30 s).
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from aiohttp import web
from cryptography.hazmat.primitives.asymmetric import ed25519

from gatehouse.client.api import APIClient
from gatehouse.client.forward import AuthForwarder, ForwardedCall
from gatehouse.pki import tls, x509
from gatehouse.pki.keystore import StoredIdentity
from gatehouse.proxy.web import make_web_app
from tests.auth.conftest import API
from tests.auth.samples import CLUSTER

GRACE = 30.0


async def _identity(api: API, directory: Path, role: str, name: str) -> StoredIdentity:
    key = ed25519.Ed25519PrivateKey.generate()
    certs = await api.server.certify_host(role, f"{name}-hid", name, key.public_key(),
                                          ["127.0.0.1:3022"], ["localhost"])
    store = StoredIdentity(directory / name)
    store.save(key, certs.tls_cert, api.server.cas["host"].tls_cert_pem)
    return store


async def _no_leaves(leaf: str, call: ForwardedCall) -> tuple[int, bytes]:
    raise AssertionError("no leaf in this test")


def _no_users(der: bytes) -> x509.Identity:
    raise AssertionError("no request for a leaf in this test")


async def test_a_relayed_watch_does_not_hold_the_proxys_shutdown(api: API,
                                                                  tmp_path: Path) -> None:
    proxy = await _identity(api, tmp_path, "proxy", "proxy1")
    node = await _identity(api, tmp_path, "node", "node1")
    forwarder = AuthForwarder(api.addr, tls.client_context(
        proxy.cas_pem(), cert_file=proxy.tls_cert_file, key_file=proxy.key_pem_file),
        f"auth.{CLUSTER}")
    runner = web.AppRunner(make_web_app(forwarder, CLUSTER, _no_leaves, _no_users), access_log=None,
                           shutdown_timeout=GRACE)
    await runner.setup()
    ca_pems = api.server.cas["host"].tls_cert_pem + api.server.cas["user"].tls_cert_pem
    await web.TCPSite(runner, "127.0.0.1", 0, ssl_context=tls.server_context(
        proxy.tls_cert_file, proxy.key_pem_file, ca_pems, alpn=["http/1.1"])).start()
    port = runner.addresses[0][1]
    client = APIClient(f"127.0.0.1:{port}", tls.client_context(
        node.cas_pem(), cert_file=node.tls_cert_file, key_file=node.key_pem_file),
        server_hostname="localhost")
    try:
        watch = client.lines("/v1/trust", watch="1")
        assert b"user_cas" in await anext(watch)  # the first snapshot, relayed
        # The relayed stream is live; shutting down must end it, not wait for it.
        await asyncio.wait_for(runner.cleanup(), GRACE / 3)
        await watch.aclose()
    finally:
        await client.close()
