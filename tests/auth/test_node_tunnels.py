"""Tunnel-mode nodes at the auth (memory backend, fake clock): their heartbeat claims no
address, only registered nodes may hold a tunnel (refusals audited), and listings say
whether each node's tunnel is up."""

from __future__ import annotations

import datetime as dt
import json

import pytest
from pydantic import ValidationError

from gatehouse.auth import catalog
from gatehouse.auth.nodetunnel import tunnel_refusal
from gatehouse.auth.server import NODE_TTL, TUNNEL_NODE_TTL, AuthServer
from gatehouse.clock import FakeClock
from gatehouse.errors import AccessDenied, NotFound
from gatehouse.services.hosts import HostRecord
from gatehouse.services.nodes import TUNNEL_REPORT_FRESH
from gatehouse.types.node import NodeSpec
from gatehouse.wire.authapi import NodeQuery
from gatehouse.wire.names import TUNNEL_NODE_HEARTBEAT
from tests.auth.samples import CLUSTER, NODE_ADDR, certify

SECOND = dt.timedelta(seconds=1)


def test_only_a_registered_node_may_hold_a_node_tunnel() -> None:
    assert tunnel_refusal("h", HostRecord(role="node", nodename="edge")) == ""
    assert "not a registered node" in tunnel_refusal("h", None)
    assert "a proxy, not a node" in tunnel_refusal("h", HostRecord(role="proxy", nodename="p"))


def test_a_node_is_on_a_tunnel_or_at_an_address() -> None:
    assert NodeSpec(hostname="e", cluster=CLUSTER, host_id="h", tunnel=True).addr == ""
    with pytest.raises(ValidationError, match="addr is required"):
        NodeSpec(hostname="e", cluster=CLUSTER, host_id="h")
    with pytest.raises(ValidationError, match="on a tunnel has no address"):
        NodeSpec(hostname="e", addr=NODE_ADDR, cluster=CLUSTER, host_id="h", tunnel=True)


async def test_a_tunnel_node_heartbeats_without_an_address(server: AuthServer) -> None:
    await certify(server, "hid-1", "edge", [])  # joined in tunnel mode: no address
    node = await server.heartbeat("hid-1", "edge", "", {}, tunnel=True, source="203.0.113.9:1")
    assert (node.spec.addr, node.spec.tunnel) == ("", True)
    assert (await server.resolve_node("edge")).spec.tunnel
    with pytest.raises(NotFound):  # no address: "" finds nothing
        await server.resolve_node("")
    with pytest.raises(AccessDenied, match="claims an address"):
        await server.heartbeat("hid-1", "edge", NODE_ADDR, {}, tunnel=True, source=None)
    with pytest.raises(AccessDenied):  # and out of tunnel mode, it has no address to claim
        await server.heartbeat("hid-1", "edge", NODE_ADDR, {}, source=None)


async def listed(server: AuthServer) -> dict[str, str | None]:
    nodes = json.loads(await catalog.nodes_json(server, lambda labels: True, NodeQuery()))
    return {n["spec"]["hostname"]: (n.get("status") or {}).get("connection") for n in nodes}


async def test_a_tunnel_node_is_online_while_a_fresh_report_lists_it(
        server: AuthServer, clock: FakeClock) -> None:
    await certify(server, "hid-1", "edge", [])
    await certify(server, "hid-2", "db1", [NODE_ADDR])
    await server.heartbeat("hid-1", "edge", "", {}, tunnel=True, source=None)
    await server.heartbeat("hid-2", "db1", NODE_ADDR, {}, source=None)
    assert await listed(server) == {"db1": None, "edge": "offline"}
    assert await server.node_tunnels_held("proxy-1", ["hid-1"], remote_addr="") == {}
    assert await listed(server) == {"db1": None, "edge": "online"}
    [via_get] = [n for n in await catalog.get_resources(server, "node", "hid-1")]
    assert via_get.status is not None and via_get.status.connection == "online"
    await server.node_tunnels_held("proxy-1", [], remote_addr="")  # its tunnel dropped
    assert await listed(server) == {"db1": None, "edge": "offline"}
    await server.node_tunnels_held("proxy-1", ["hid-1"], remote_addr="")
    clock.advance(TUNNEL_REPORT_FRESH - SECOND)
    await server.heartbeat("hid-1", "edge", "", {}, tunnel=True, source=None)
    assert await listed(server) == {"db1": None, "edge": "online"}
    clock.advance(SECOND)  # the proxy stopped reporting
    assert await listed(server) == {"db1": None, "edge": "offline"}


async def test_a_removed_node_may_not_hold_a_tunnel_and_the_refusal_is_audited(
        server: AuthServer) -> None:
    await certify(server, "hid-1", "edge", [])
    await certify(server, "hid-p", "proxy", [], role="proxy")
    await server.heartbeat("hid-1", "edge", "", {}, tunnel=True, source=None)
    assert await server.node_tunnels_held("proxy-1", ["hid-1"], remote_addr="") == {}
    await server.delete_node("hid-1")
    refused = await server.node_tunnels_held("proxy-1", ["hid-1", "hid-p"],
                                             remote_addr="10.0.0.1:5")
    assert set(refused) == {"hid-1", "hid-p"}
    assert "not a registered node" in refused["hid-1"]
    assert await server.nodes.tunnels_up() == frozenset()
    events = (await server.audit.search(types=["access.denied"])).events
    denied = {e.user: e for e in events if e.fields.get("verb") == "tunnel"}
    assert set(denied) == {"hid-1", "hid-p"}
    assert denied["hid-1"].fields["proxy"] == "proxy-1"
    assert denied["hid-1"].message == refused["hid-1"]


async def test_a_direct_nodes_listing_is_passed_through_unparsed(server: AuthServer) -> None:
    """Only tunnel nodes are parsed to add their connection; a label that reads like the
    tunnel field changes nothing."""
    await certify(server, "hid-2", "db1", [NODE_ADDR])
    await server.heartbeat("hid-2", "db1", NODE_ADDR, {"note": '"tunnel":true'}, source=None)
    [stored] = await server.nodes.select(lambda labels: True)
    assert await catalog.nodes_json(server, lambda labels: True, NodeQuery()) == \
        b"[" + stored + b"]"


async def test_a_tunnel_node_stays_listed_for_a_few_of_its_rare_heartbeats(
        server: AuthServer, clock: FakeClock) -> None:
    """Its proxy's report says whether it is online; its own heartbeat (every
    TUNNEL_NODE_HEARTBEAT, not every 10 s: each costs the auth a connection and a write)
    only keeps it listed, offline once no report lists it."""
    await certify(server, "hid-1", "edge", [])
    await server.heartbeat("hid-1", "edge", "", {}, tunnel=True, source=None)
    await server.node_tunnels_held("proxy-1", ["hid-1"], remote_addr="")
    assert TUNNEL_NODE_TTL >= 3 * dt.timedelta(seconds=TUNNEL_NODE_HEARTBEAT) > NODE_TTL
    clock.advance(NODE_TTL)
    assert await listed(server) == {"edge": "offline"}  # no fresh report; still listed
    await server.heartbeat("hid-1", "edge", "", {}, tunnel=True, source=None)
    clock.advance(TUNNEL_NODE_TTL - SECOND)
    assert await listed(server) == {"edge": "offline"}
    clock.advance(SECOND)
    assert await listed(server) == {}
