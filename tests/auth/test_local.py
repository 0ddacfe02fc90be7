"""The auth in-process (auth.local) and over HTTPS (client.authclient) are one interface:
the same calls give the same answers and the same refusals, because both go through
auth.authz. The HTTPS side runs over real TLS on loopback."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web
from cryptography.hazmat.primitives.asymmetric import ed25519

from gatehouse.auth.local import LocalAuth
from gatehouse.auth.server import AuthServer
from gatehouse.client.authclient import AuthClient
from gatehouse.clock import FakeClock
from gatehouse.errors import AccessDenied, GatehouseError
from gatehouse.pki import tls, x509
from gatehouse.pki.keystore import StoredIdentity
from gatehouse.wire.authapi import AuthAPI, Heartbeat, NodeQuery, TokenRequest
from gatehouse.wire.dial import NodeRoute
from tests.auth.conftest import API
from tests.auth.samples import LOCAL_NODE_ADDR, NODE_ADDR, add_role, certify, der


@pytest.fixture
def clock() -> FakeClock:
    # The TLS handshake checks certificates against the real time, not this clock.
    return FakeClock(dt.datetime.now(dt.UTC).replace(microsecond=0))


async def _both(api: API, server: AuthServer) -> tuple[AuthAPI, AuthAPI]:
    """A node's view of the auth, over HTTPS and in-process, for the same host identity."""
    over_https = AuthClient(await api.host("node", "hid-1", "db1", [LOCAL_NODE_ADDR]))
    certs = await certify(server, "hid-1", "db1", [LOCAL_NODE_ADDR])
    ident = x509.identity_of(x509.load_cert(certs.tls_cert))
    return over_https, LocalAuth(server).as_host(ident)


async def _outcome(call: object) -> object:
    try:
        return await call  # type: ignore[misc]
    except GatehouseError as exc:
        return type(exc), str(exc)


async def test_a_host_gets_the_same_answers_either_way(api: API, server: AuthServer) -> None:
    remote, local = await _both(api, server)
    beat = Heartbeat(hostname="db1", addr=LOCAL_NODE_ADDR, labels={"env": "prod"})
    assert (await remote.heartbeat(beat)).spec == (await local.heartbeat(beat)).spec
    assert await remote.trust() == await local.trust()
    stored = [await api_.post_events([{"event": "exec", "time": dt.datetime.now(dt.UTC)
                                       .isoformat(), "cluster": "", "id": event_id}])
              for api_, event_id in ((remote, "e1"), (local, "e2"))]
    assert stored[0] == stored[1] and stored[0].stored == 1
    assert len((await server.audit.search(types=["exec"])).events) == 2


async def test_a_host_is_refused_the_same_either_way(api: API, server: AuthServer) -> None:
    remote, local = await _both(api, server)
    for call in ("add_token", "list_nodes", "status"):
        outcomes = []
        for side in (remote, local):
            if call == "add_token":
                outcomes.append(await _outcome(side.add_token(TokenRequest(type="node"))))
            elif call == "list_nodes":
                outcomes.append(await _outcome(side.list_nodes(NodeQuery())))
            else:
                outcomes.append(await _outcome(side.status()))
        assert outcomes[0] == outcomes[1], call
        assert outcomes[0][0] is AccessDenied  # type: ignore[index]
    denied = (await server.audit.search(types=["access.denied"])).events
    assert len(denied) == 6  # every refusal audited, whichever way it came


async def test_a_removed_host_loses_its_in_process_standing_too(server: AuthServer) -> None:
    certs = await certify(server, "hid-9", "db9", [NODE_ADDR])
    local = LocalAuth(server).as_host(x509.identity_of(x509.load_cert(certs.tls_cert)))
    await local.trust()
    await server.delete_node("hid-9")
    with pytest.raises(AccessDenied, match="hid-9 is not registered"):
        await local.trust()


async def test_a_relayed_user_is_resolved_only_to_nodes_their_roles_select(
        api: API, server: AuthServer) -> None:
    await certify(server, "hid-1", "db1", [NODE_ADDR])
    await server.heartbeat("hid-1", "db1", NODE_ADDR, {"env": "prod"}, source=None)
    await add_role(server, "dev", allow={"logins": ["dev"], "node_labels": {"env": "dev"}})
    local = LocalAuth(server)
    ops = der(await api.user_cert("olga", ["access"]))
    dev = der(await api.user_cert("dave", ["dev"]))
    assert await local.resolve_node("db1", ops, "10.1.1.1:5000") == NodeRoute(NODE_ADDR,
                                                                               "hid-1")
    with pytest.raises(AccessDenied, match="may not access node db1"):
        await local.resolve_node("db1", dev, "10.1.1.1:5000")
    with pytest.raises(AccessDenied, match="needs a certificate"):
        await local.resolve_node("db1", None, "10.1.1.1:5000")


@pytest.fixture
async def proxy_port(server: AuthServer, tmp_path: Path) -> AsyncIterator[API]:
    """The auth's API as a co-located proxy serves it on its own port (auth.local)."""
    key = ed25519.Ed25519PrivateKey.generate()
    # Served under the auth's TLS name, as the test clients expect; what is under test is
    # the app: every connection's client taken as relayed.
    certs = await server.certify_host("auth", "auth", "auth", key.public_key(), [], [])
    store = StoredIdentity(tmp_path / "proxy")
    store.save(key, certs.tls_cert, server.cas["host"].tls_cert_pem)
    ctx = tls.server_context(store.tls_cert_file, store.key_pem_file,
                             server.cas["host"].tls_cert_pem + server.cas["user"].tls_cert_pem,
                             alpn=["http/1.1"])
    runner = web.AppRunner(LocalAuth(server).api_app(), access_log=None, shutdown_timeout=0.1)
    await runner.setup()
    try:
        await web.TCPSite(runner, "127.0.0.1", 0, ssl_context=ctx).start()
        harness = API(server, f"127.0.0.1:{runner.addresses[0][1]}", tmp_path)
        yield harness
        await harness.close()
    finally:
        await runner.cleanup()


async def test_the_proxy_port_takes_each_client_as_one_it_relays(proxy_port: API) -> None:
    # A user is served; the admin credentials, which a proxy never relays, are refused
    # there (the auth's own port would take them).
    alice = AuthClient(await proxy_port.user("alice", ["editor"]))
    assert (await alice.status()).cluster == proxy_port.server.cluster
    admin = AuthClient(await proxy_port.admin())
    with pytest.raises(AccessDenied, match="may relay only user and node certificates"):
        await admin.status()
