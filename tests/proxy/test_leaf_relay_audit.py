"""A root proxy refuses to relay a user's request to a leaf their cluster labels do not
select, and the refusal is audited (not only logged), as a refused SSH dial is."""

from __future__ import annotations

import ssl
from typing import Any

import aiohttp
from aiohttp import web

from gatehouse.client.forward import AuthForwarder, ForwardedCall
from gatehouse.errors import AccessDenied
from gatehouse.pki import x509
from gatehouse.proxy.web import make_web_app
from gatehouse.wire.authapi import SSOCallback, SSORedirect
from gatehouse.wire.names import CLUSTER_HEADER

ROOT = "root.example.com"


async def _relay(leaf: str, call: ForwardedCall) -> tuple[int, bytes]:
    raise AssertionError("a refused request must not reach the leaf")


async def _sso(callback: SSOCallback) -> SSORedirect:
    raise AccessDenied("no SSO here")


def _alice(der: bytes) -> x509.Identity:
    return x509.Identity(kind="user", name="alice", cluster=ROOT, roles=("dev",))


def _staging_only(user: x509.Identity, leaf: str) -> None:
    raise AccessDenied(f"user {user.name} may not reach cluster {leaf}: no role selects it")


async def test_a_relay_the_cluster_labels_refuse_is_audited() -> None:
    audited: list[tuple[str, dict[str, Any]]] = []

    async def audit(event: str, fields: dict[str, Any]) -> None:
        audited.append((event, fields))

    forwarder = AuthForwarder(["127.0.0.1:1"], ssl.create_default_context(), "auth")
    app = make_web_app(forwarder, ROOT, _relay, _alice, _staging_only, _sso, audit=audit)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        async with aiohttp.ClientSession() as http, http.post(
                f"http://127.0.0.1:{port}/v1/leaf_login", json={},
                headers={CLUSTER_HEADER: "prod-leaf"}) as resp:
            assert resp.status == 403
            assert "may not reach cluster prod-leaf" in (await resp.json())["error"]
    finally:
        await runner.cleanup()
    assert [(e, f["user"], f["fields"]["leaf"]) for e, f in audited] == [
        ("proxy.dial.denied", "alice", "prod-leaf")]
    assert "POST /v1/leaf_login" in audited[0][1]["message"]
