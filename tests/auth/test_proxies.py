"""The proxy registry at the auth (memory backend, fake clock): only a proxy registers,
and only itself, at an address it was certified for; the listing says which proxies
heartbeat now, and each heartbeat's reply is the proxies online."""

from __future__ import annotations

import datetime as dt

import pytest

from gatehouse.auth import catalog
from gatehouse.auth.server import AuthServer
from gatehouse.client.authclient import AuthClient
from gatehouse.clock import FakeClock
from gatehouse.errors import AccessDenied, BadParameter, NotFound
from gatehouse.services.proxies import ONLINE_WITHIN
from gatehouse.wire.authapi import ProxyAddr, ProxyHeartbeat
from tests.auth.conftest import API
from tests.auth.samples import certify

SECOND = dt.timedelta(seconds=1)


async def _proxy(server: AuthServer, host_id: str, name: str) -> None:
    await certify(server, host_id, name, [], role="proxy",
                  dns_names=["localhost", "127.0.0.1", f"{name}.example.com"])


async def test_each_heartbeat_answers_the_proxies_online(server: AuthServer,
                                                         clock: FakeClock) -> None:
    await _proxy(server, "hid-a", "pa")
    await _proxy(server, "hid-b", "pb")
    assert [p.metadata.name for p in await server.proxy_heartbeat(
        "hid-a", "pa.example.com:3080", "0.0.0.0:3080", remote_addr="")] == ["hid-a"]
    clock.advance(ONLINE_WITHIN - SECOND)
    online = await server.proxy_heartbeat("hid-b", "127.0.0.1:4080", "127.0.0.1:4080",
                                          remote_addr="")
    assert [(p.metadata.name, p.spec.public_addr) for p in online] == [
        ("hid-a", "pa.example.com:3080"), ("hid-b", "127.0.0.1:4080")]
    clock.advance(2 * SECOND)  # pa's last heartbeat is too old now
    listed = await catalog.get_resources(server, "proxy", "")
    assert [(p.metadata.name, p.status.connection) for p in listed] == [  # type: ignore[attr-defined]
        ("hid-a", "offline"), ("hid-b", "online")]
    assert [p.metadata.name for p in await server.proxies.online(clock.now())] == ["hid-b"]
    by_hostname = await catalog.get_resources(server, "proxy", "pb")
    assert [p.metadata.name for p in by_hostname] == ["hid-b"]


async def test_a_proxy_may_not_claim_an_address_it_was_not_certified_for(
        server: AuthServer) -> None:
    await _proxy(server, "hid-a", "pa")
    with pytest.raises(AccessDenied, match=r"claims address evil\.example\.com:3080"):
        await server.proxy_heartbeat("hid-a", "evil.example.com:3080", "0.0.0.0:3080",
                                     remote_addr="203.0.113.9:1")
    assert await server.proxies.list() == []
    events = (await server.audit.search(types=["access.denied"])).events
    assert events and events[0].fields["resource"] == "proxy"


async def test_only_a_proxy_registers_a_proxy(api: API, server: AuthServer) -> None:
    beat = ProxyHeartbeat(public_addr="127.0.0.1:3080", listen_addr="127.0.0.1:3080")
    proxy = AuthClient(await api.host("proxy", "hid-p", "proxy1", [],
                                        dns_names=["127.0.0.1"]))
    assert (await proxy.proxy_heartbeat(beat)).proxies == [
        ProxyAddr(name="hid-p", addr="127.0.0.1:3080")]
    node = AuthClient(await api.host("node", "hid-n", "node1", ["127.0.0.1:3022"]))
    with pytest.raises(AccessDenied, match="a node may not heartbeat proxy"):
        await node.proxy_heartbeat(beat)
    user = AuthClient(await api.user("mallory", ["editor"]))
    with pytest.raises(AccessDenied, match="only a proxy"):
        await user.proxy_heartbeat(beat)
    assert [p.metadata.name for p in await server.proxies.list()] == ["hid-p"]


async def test_a_proxy_gone_is_removed_by_name_and_may_not_come_back(
        server: AuthServer, clock: FakeClock) -> None:
    await _proxy(server, "hid-a", "pa")
    await _proxy(server, "hid-b", "pb")
    for host_id, addr in (("hid-a", "pa.example.com:3080"), ("hid-b", "pb.example.com:3080")):
        await server.proxy_heartbeat(host_id, addr, "0.0.0.0:3080", remote_addr="")
    with pytest.raises(BadParameter, match=r"proxy pb is online \(last heartbeat 0 s "
                                           r"ago\): stop it first"):
        await server.delete_proxy("pb")
    with pytest.raises(NotFound, match="proxy pz not found"):
        await server.delete_proxy("pz")
    clock.advance(ONLINE_WITHIN + SECOND)  # pb is gone; pa heartbeats on
    await server.proxy_heartbeat("hid-a", "pa.example.com:3080", "0.0.0.0:3080",
                                 remote_addr="")
    await catalog.delete_resource(server, "proxy", "pb", by="admin", remote_addr="")
    assert [p.metadata.name for p in await server.proxies.list()] == ["hid-a"]
    [event] = (await server.audit.search(types=["resource.delete"])).events
    assert event.fields == {"kind": "proxy", "name": "hid-b"}
    with pytest.raises(AccessDenied):  # its registration is revoked: it is not listed again
        await server.proxy_heartbeat("hid-b", "pb.example.com:3080", "0.0.0.0:3080",
                                     remote_addr="")
    assert [p.metadata.name for p in await server.proxy_heartbeat(
        "hid-a", "pa.example.com:3080", "0.0.0.0:3080", remote_addr="")] == ["hid-a"]


async def test_a_proxy_name_two_proxies_hold_is_ambiguous(server: AuthServer,
                                                           clock: FakeClock) -> None:
    await _proxy(server, "hid-a", "pa")
    await _proxy(server, "hid-a2", "pa")
    for host_id in ("hid-a", "hid-a2"):
        await server.proxy_heartbeat(host_id, "pa.example.com:3080", "0.0.0.0:3080",
                                     remote_addr="")
    clock.advance(ONLINE_WITHIN + SECOND)
    with pytest.raises(BadParameter, match="ambiguous"):
        await server.delete_proxy("pa")
    assert await server.delete_proxy("hid-a2") == "hid-a2"
