"""The proxy's side of the tunnel's needs: what it refuses before any call to the auth."""

from __future__ import annotations

import json
import ssl

from gatehouse.client.api import APIClient
from gatehouse.client.authclient import AuthClient
from gatehouse.client.forward import AuthForwarder
from gatehouse.proxy.leafauth import LeafAuth, roots_to_dial
from gatehouse.tunnel.needs import Root
from gatehouse.wire.trust import RootCluster, TrustSnapshot


async def test_a_relayed_call_outside_the_api_is_refused_unsent() -> None:
    # Nothing listens at port 1: a call that went out would fail with 502, not 400.
    ctx = ssl.create_default_context()
    forwarder = AuthForwarder("127.0.0.1:1", ctx, "auth.leaf")
    auth = LeafAuth(AuthClient(APIClient("127.0.0.1:1", ctx)), forwarder, forwarder)
    status, body = await auth.relay("GET", "/metrics", b"", None, "")
    assert (status, json.loads(body)) == (400, {"error": "not an API path"})
    await forwarder.close()


def test_only_enabled_roots_are_dialed() -> None:
    def root(name: str, enabled: bool) -> RootCluster:
        return RootCluster(name=name, enabled=enabled, proxy_addr=f"{name}:3080", role_map=(),
                           host_ca_tls=f"CA {name}")

    trust = TrustSnapshot(roots={"on": root("on", True), "off": root("off", False)})
    assert roots_to_dial(trust) == {"on": Root("on", "on:3080", "CA on")}
