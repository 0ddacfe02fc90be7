"""What a node may claim when it joins and heartbeats (no open relay, ARCHITECTURE §4):
an address it is reached at is the address it called from, unless it lies in
``auth_service.node_address_networks``; a node name belongs to one node of the cluster."""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import re
from pathlib import Path

import pytest

from gatehouse.auth.nodeaddr import check_node_addrs, source_ip
from gatehouse.auth.server import AuthServer, JoinRequest
from gatehouse.backend import Backend, Item
from gatehouse.clock import FakeClock
from gatehouse.errors import AccessDenied, AlreadyExists
from gatehouse.pki import sshcert
from gatehouse.services.events import AuditEvent
from tests.auth.samples import CLUSTER, NODE_ADDR, certify, new_key

NODE_IP = NODE_ADDR.partition(":")[0]  # where the node of these tests calls from
METADATA = "169.254.169.254:80"  # a cloud's metadata service: never a node of ours


def join_request(secret: str, addrs: list[str], *, remote: str = NODE_IP,
                 nodename: str = "db1") -> JoinRequest:
    return JoinRequest(token=secret, role="node", nodename=nodename,
                       public_key=sshcert.public_key_line(new_key()), addrs=addrs,
                       dns_names=[], remote_addr=remote)


async def token(server: AuthServer) -> str:
    return (await server.create_token("node", dt.timedelta(minutes=15))).secret


async def events(server: AuthServer, event: str) -> list[AuditEvent]:
    return (await server.audit.search(types=[event])).events


def nets(*cidrs: str) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    return [ipaddress.ip_network(c) for c in cidrs]


# --- the decision (pure) ------------------------------------------------------------------


@pytest.mark.parametrize(("remote", "expected"), [
    ("10.0.0.7", "10.0.0.7"), ("10.0.0.7:40000", "10.0.0.7"), ("::1", "::1"),
    ("[2001:db8::7]:40000", "2001:db8::7"), ("::ffff:10.0.0.7", "10.0.0.7"),
])
def test_the_source_is_the_callers_ip(remote: str, expected: str) -> None:
    assert source_ip(remote) == ipaddress.ip_address(expected)


@pytest.mark.parametrize("remote", ["", "in-process", "db1:3022", "10.0.0.7:x"])
def test_a_source_that_is_not_an_ip_is_none(remote: str) -> None:
    assert source_ip(remote) is None


@pytest.mark.parametrize(("addr", "remote"), [
    ("10.0.0.7:3022", "10.0.0.7"),
    ("127.0.0.1:3022", "127.0.0.1"),  # every test cluster: all on loopback
    ("[2001:db8::7]:22", "2001:db8::7"),
    ("10.0.0.7:22", "::ffff:10.0.0.7"),  # a dual-stack listener's view of an IPv4 caller
])
def test_a_node_may_advertise_the_address_it_calls_from(addr: str, remote: str) -> None:
    check_node_addrs("db1", [addr], source_ip(remote), [])


@pytest.mark.parametrize("addr", [METADATA, "10.0.0.8:3022", "127.0.0.1:3022", "0.0.0.0:22"])
def test_any_other_address_is_refused(addr: str) -> None:
    with pytest.raises(AccessDenied, match=f"may not advertise {addr}: it called from "
                                           f"{NODE_IP}") as exc:
        check_node_addrs("db1", [NODE_ADDR, addr], source_ip(NODE_IP), [])
    # What the node's admin can do about it, in the same line.
    assert "ssh_service.public_addr" in str(exc.value)
    assert "auth_service.node_address_networks" in str(exc.value)


def test_the_refusal_says_which_public_addr_would_do() -> None:
    """A node listening on 0.0.0.0 advertises 127.0.0.1 (ARCHITECTURE §7): fine on the
    auth's host, wrong anywhere else."""
    with pytest.raises(AccessDenied, match=f"set ssh_service.public_addr to {NODE_IP}:3022"):
        check_node_addrs("db1", ["127.0.0.1:3022"], source_ip(NODE_IP), [])


@pytest.mark.parametrize("addr", ["192.168.5.5:22", "10.1.255.255:3022", "[fd00::5]:22"])
def test_an_allowed_network_admits_nodes_behind_nat(addr: str) -> None:
    check_node_addrs("db1", [addr], source_ip("203.0.113.5"),
                     nets("192.168.0.0/16", "10.1.0.0/16", "fd00::/8"))


def test_an_allowed_network_admits_only_itself() -> None:
    with pytest.raises(AccessDenied, match=re.escape("may not advertise 10.2.0.1:22")):
        check_node_addrs("db1", ["10.2.0.1:22"], source_ip("203.0.113.5"), nets("10.1.0.0/16"))


def test_an_unknown_source_is_refused_unless_allowed() -> None:
    with pytest.raises(AccessDenied, match="its source address is unknown"):
        check_node_addrs("db1", [NODE_ADDR], None, [])
    check_node_addrs("db1", [NODE_ADDR], None, nets("10.0.0.0/8"))


@pytest.mark.parametrize("addr", ["db1.internal.example:22", "localhost:3022"])
def test_a_host_name_is_refused(addr: str) -> None:
    """The proxy would resolve the name anew on each dial: only an IP can be checked."""
    with pytest.raises(AccessDenied, match=f"may not advertise {addr}: a name.*an IP address"):
        check_node_addrs("db1", [addr], source_ip(NODE_IP), nets("0.0.0.0/0"))


# --- join: addresses ----------------------------------------------------------------------


async def test_a_join_may_not_point_the_proxy_at_an_address_it_does_not_own(
        server: AuthServer) -> None:
    secret = await token(server)
    with pytest.raises(AccessDenied, match=f"may not advertise {METADATA}"):
        await server.join(join_request(secret, [METADATA]))
    [failure] = await events(server, "join.failure")
    assert (failure.node, failure.remote_addr) == ("db1", NODE_IP)
    assert f"may not advertise {METADATA}" in failure.message
    assert await events(server, "join") == []
    # The token was not spent: the node joins once it advertises where it is.
    await server.join(join_request(secret, [NODE_ADDR]))


async def test_a_join_from_loopback_may_advertise_loopback(server: AuthServer) -> None:
    await server.join(join_request(await token(server), ["127.0.0.1:3022"], remote="127.0.0.1"))


async def test_an_allowed_network_admits_a_join(backend: Backend, clock: FakeClock,
                                                tmp_path: Path) -> None:
    server = await AuthServer.open(backend, clock, CLUSTER, tmp_path / "recordings",
                                   node_networks=nets("192.168.0.0/16"))
    await server.join(join_request(await token(server), ["192.168.5.5:22"],
                                   remote="203.0.113.5"))


# --- heartbeats: addresses ----------------------------------------------------------------


async def test_a_heartbeat_must_come_from_the_address_it_claims(server: AuthServer) -> None:
    await certify(server, "hid-1", "db1", [NODE_ADDR])
    with pytest.raises(AccessDenied, match=f"may not advertise {NODE_ADDR}: it called from "
                                           "10.0.0.99"):
        await server.heartbeat("hid-1", "db1", NODE_ADDR, {}, source="10.0.0.99")
    assert await server.nodes.list() == []
    [denied] = await events(server, "access.denied")
    assert denied.remote_addr == "10.0.0.99"
    assert denied.fields == {"resource": "node", "verb": "heartbeat", "host_id": "hid-1"}
    await server.heartbeat("hid-1", "db1", NODE_ADDR, {}, source=NODE_IP)


async def test_a_heartbeat_in_the_auths_own_process_is_not_checked(server: AuthServer
                                                                   ) -> None:
    """The auth certified that node itself, from its own config (process/daemon.py)."""
    await certify(server, "hid-1", "db1", ["10.9.9.9:22"])
    await server.heartbeat("hid-1", "db1", "10.9.9.9:22", {}, source=None)


async def test_a_network_no_longer_allowed_stops_the_heartbeats(
        backend: Backend, clock: FakeClock, tmp_path: Path) -> None:
    allowing = await AuthServer.open(backend, clock, CLUSTER, tmp_path / "recordings",
                                     node_networks=nets("192.168.0.0/16"))
    host_id, _ = await allowing.join(join_request(await token(allowing), ["192.168.5.5:22"],
                                                  remote="203.0.113.5"))
    again = await AuthServer.open(backend, clock, CLUSTER, tmp_path / "recordings")
    with pytest.raises(AccessDenied, match=re.escape("may not advertise 192.168.5.5:22")):
        await again.heartbeat(host_id, "db1", "192.168.5.5:22", {}, source="203.0.113.5")


# --- names --------------------------------------------------------------------------------


async def test_a_second_node_may_not_take_a_joined_nodes_name(server: AuthServer) -> None:
    first, _ = await server.join(join_request(await token(server), [NODE_ADDR]))
    secret = await token(server)
    with pytest.raises(AlreadyExists, match=f"node name db1 is taken by host {first}") as exc:
        await server.join(join_request(secret, ["10.0.0.8:3022"], remote="10.0.0.8"))
    assert f"`gatectl rm node/{first}`" in str(exc.value)
    [failure] = await events(server, "join.failure")
    assert failure.remote_addr == "10.0.0.8" and "is taken by host" in failure.message
    assert len(await events(server, "join")) == 1
    assert await server.tokens.get(secret)  # not spent


async def test_a_taken_name_is_refused_to_the_auths_own_node_too(server: AuthServer) -> None:
    await certify(server, "hid-1", "db1")
    with pytest.raises(AlreadyExists, match="node name db1 is taken by host hid-1"):
        await certify(server, "hid-2", "db1", ["10.0.0.8:3022"])
    with pytest.raises(AccessDenied, match="hid-2 is not registered"):
        await server.hosts.get("hid-2")


async def test_a_host_may_be_certified_again_under_its_name(server: AuthServer) -> None:
    await certify(server, "hid-1", "db1")
    await certify(server, "hid-1", "db1", [NODE_ADDR, "10.0.0.8:3022"])
    assert (await server.hosts.get("hid-1")).addrs == [NODE_ADDR, "10.0.0.8:3022"]


async def test_a_host_certified_under_a_new_name_frees_the_old_one(server: AuthServer) -> None:
    await certify(server, "hid-1", "db1")
    await certify(server, "hid-1", "db2")
    await certify(server, "hid-2", "db1", ["10.0.0.8:3022"])


async def test_a_removed_nodes_name_is_free_again(server: AuthServer) -> None:
    first, _ = await server.join(join_request(await token(server), [NODE_ADDR]))
    await server.delete_node(first)
    second, _ = await server.join(join_request(await token(server), ["10.0.0.8:3022"],
                                               remote="10.0.0.8"))
    assert (await server.hosts.get(second)).nodename == "db1"


async def test_a_proxy_may_share_its_nodes_name(server: AuthServer) -> None:
    """One `gatehouse start` runs its proxy and its ssh service under one nodename."""
    await certify(server, "hid-1", "node1")
    await certify(server, "hid-2", "node1", [], role="proxy")
    await certify(server, "hid-3", "node1", [], role="proxy")


async def test_names_held_before_this_version_are_claimed_on_open(
        backend: Backend, clock: FakeClock, tmp_path: Path) -> None:
    """An earlier version stored host records without the name index: the first record
    keeps the name; a later duplicate may no longer heartbeat under it."""
    for host_id in ("hid-1", "hid-2"):
        record = {"role": "node", "nodename": "db1", "addrs": [NODE_ADDR]}
        await backend.put(Item(f"/hosts/{host_id}".encode(), json.dumps(record).encode()))
    server = await AuthServer.open(backend, clock, CLUSTER, tmp_path / "recordings")
    with pytest.raises(AlreadyExists, match="node name db1 is taken by host hid-1"):
        await certify(server, "hid-3", "db1")
    await server.heartbeat("hid-1", "db1", NODE_ADDR, {}, source=NODE_IP)
    with pytest.raises(AccessDenied, match="node name db1 is taken by host hid-1"):
        await server.heartbeat("hid-2", "db1", NODE_ADDR, {}, source=NODE_IP)
