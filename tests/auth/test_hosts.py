"""Tests for host registration (gatehouse.services.hosts via AuthServer): what a host is
certified as is all it may claim afterwards, and removing it revokes it."""

from __future__ import annotations

import datetime as dt
import re

import pytest
from cryptography import x509 as cx509
from cryptography.x509.oid import ExtendedKeyUsageOID

from gatehouse.auth.server import NODE_TTL, AuthServer, JoinRequest
from gatehouse.clock import FakeClock
from gatehouse.errors import AccessDenied, BadParameter
from gatehouse.pki import sshcert, x509
from gatehouse.services.hosts import HostRecord
from tests.auth.samples import CLUSTER, NODE_ADDR, certify, new_key

OTHER_ADDR = "10.0.0.8:3022"


def tls_names(pem: str) -> list[str]:
    """The DNS and IP names of a TLS certificate, as text."""
    cert = x509.load_cert(pem)
    try:
        san = cert.extensions.get_extension_for_class(cx509.SubjectAlternativeName).value
    except cx509.ExtensionNotFound:
        return []
    return [str(name.value) for name in san]


def usages(pem: str) -> list[cx509.ObjectIdentifier]:
    cert = x509.load_cert(pem)
    return list(cert.extensions.get_extension_for_class(cx509.ExtendedKeyUsage).value)


async def not_registered(server: AuthServer, host_id: str) -> bool:
    try:
        await server.hosts.get(host_id)
    except AccessDenied:
        return True
    return False


# --- certify_host: names ------------------------------------------------------------------


async def test_certify_host_registers_what_the_host_was_certified_as(server: AuthServer
                                                                     ) -> None:
    await certify(server, "hid-1", "db1", [NODE_ADDR, OTHER_ADDR])
    assert await server.hosts.get("hid-1") == HostRecord("node", "db1", [NODE_ADDR, OTHER_ADDR])


async def test_an_unknown_host_id_is_not_registered(server: AuthServer) -> None:
    with pytest.raises(AccessDenied, match="host hid-9 is not registered"):
        await server.hosts.get("hid-9")


@pytest.mark.parametrize("nodename", ["", "*", "db 1", "-db1", ".db1", "db1/x", "db1\n"])
async def test_a_bad_node_name_is_refused_and_not_registered(server: AuthServer,
                                                             nodename: str) -> None:
    with pytest.raises(BadParameter, match="invalid node name"):
        await certify(server, "hid-1", nodename)
    assert await not_registered(server, "hid-1")


@pytest.mark.parametrize("addr", ["*:3022", "*.example.com:3022", "db?.example.com:22",
                                  "db_1:3022", "-db1:3022", "db1.:3022"])
async def test_an_address_must_be_an_ip_or_a_plain_host_name(server: AuthServer,
                                                             addr: str) -> None:
    with pytest.raises(BadParameter, match="expected an IP or a host name"):
        await certify(server, "hid-1", "db1", [addr])
    assert await not_registered(server, "hid-1")


@pytest.mark.parametrize("addr", ["10.0.0.7", "10.0.0.7:0", "db1:ssh", ":3022", "::1:3022"])
async def test_an_address_needs_a_host_and_a_port(server: AuthServer, addr: str) -> None:
    with pytest.raises(BadParameter, match="invalid address"):
        await certify(server, "hid-1", "db1", [addr])


@pytest.mark.parametrize("addr", ["10.0.0.7:3022", "[2001:db8::7]:3022",
                                  "db1.internal.example:22", "localhost:3022"])
async def test_ips_and_host_names_are_fine_addresses(server: AuthServer, addr: str) -> None:
    await certify(server, "hid-1", "db1", [addr])
    assert (await server.hosts.get("hid-1")).addrs == [addr]


@pytest.mark.parametrize("name", ["*", "*.example.com", "proxy*.example.com", "a b.example.com",
                                  "exa_mple.com", f"auth.{CLUSTER}", f"proxy.{CLUSTER}",
                                  f"node1.{CLUSTER}", f"x.y.{CLUSTER}"])
async def test_a_proxy_may_not_claim_wildcards_or_the_clusters_names(server: AuthServer,
                                                                     name: str) -> None:
    with pytest.raises(BadParameter, match=re.escape(f"a proxy may not claim the name '{name}'")):
        await certify(server, "hid-1", "proxy1", [], role="proxy", dns_names=[name])
    assert await not_registered(server, "hid-1")


async def test_a_proxy_may_not_claim_the_clusters_names_in_capitals(server: AuthServer
                                                                    ) -> None:
    with pytest.raises(BadParameter):
        await certify(server, "hid-1", "proxy1", [], role="proxy",
                      dns_names=[f"auth.{CLUSTER}".upper()])


async def test_a_proxy_may_claim_the_cluster_name_and_its_own_names(server: AuthServer
                                                                    ) -> None:
    certs = await certify(server, "hid-1", "proxy1", [], role="proxy",
                          dns_names=[CLUSTER, "gate.example.org", "192.0.2.10"])
    assert tls_names(certs.tls_cert) == [f"proxy.{CLUSTER}", CLUSTER, "gate.example.org",
                                         "192.0.2.10"]


async def test_a_proxy_join_claiming_a_wildcard_keeps_its_token(server: AuthServer) -> None:
    token = await server.create_token("proxy", dt.timedelta(minutes=15))
    req = JoinRequest(token=token.secret, role="proxy", nodename="proxy1",
                      public_key=sshcert.public_key_line(new_key()), addrs=[],
                      dns_names=["*.example.com"])
    with pytest.raises(BadParameter):
        await server.join(req)
    await server.join(JoinRequest(**{**req.__dict__, "dns_names": ["gate.example.org"]}))


# --- certify_host: TLS names --------------------------------------------------------------


async def test_a_node_gets_no_tls_names_even_if_asked(server: AuthServer) -> None:
    certs = await certify(server, "hid-1", "db1", dns_names=["db1.example.com"])
    assert tls_names(certs.tls_cert) == []


async def test_a_node_certificate_is_not_a_tls_server_certificate(server: AuthServer) -> None:
    certs = await certify(server, "hid-1", "db1")
    assert usages(certs.tls_cert) == [ExtendedKeyUsageOID.CLIENT_AUTH]


@pytest.mark.parametrize("role", ["proxy", "auth"])
async def test_servers_get_their_role_name_in_the_cluster(server: AuthServer, role: str
                                                          ) -> None:
    certs = await certify(server, "hid-1", f"{role}1", [], role=role, dns_names=["localhost"])
    assert tls_names(certs.tls_cert) == [f"{role}.{CLUSTER}", "localhost"]


@pytest.mark.parametrize("role", ["proxy", "auth"])
async def test_servers_get_server_auth(server: AuthServer, role: str) -> None:
    certs = await certify(server, "hid-1", f"{role}1", [], role=role)
    assert ExtendedKeyUsageOID.SERVER_AUTH in usages(certs.tls_cert)


# --- heartbeats ---------------------------------------------------------------------------


async def test_an_uncertified_host_may_not_heartbeat(server: AuthServer) -> None:
    with pytest.raises(AccessDenied, match="host hid-1 is not registered"):
        await server.heartbeat("hid-1", "db1", NODE_ADDR, {}, source=None)


@pytest.mark.parametrize(("hostname", "addr"), [
    ("db2", NODE_ADDR),  # another node's name
    ("db1", OTHER_ADDR),  # the open relay: any address the proxy would then dial
    ("db1", "10.0.0.7:22"),  # the certified host on another port
    ("db1", "127.0.0.1:3022"),
    ("", NODE_ADDR),  # malformed fields are uncertified too: AccessDenied, checked first
    ("db1", "nope"),
])
async def test_a_heartbeat_may_claim_only_what_was_certified(server: AuthServer, hostname: str,
                                                             addr: str) -> None:
    await certify(server, "hid-1", "db1", [NODE_ADDR])
    with pytest.raises(AccessDenied, match=f"certified as db1 at {NODE_ADDR}, not"):
        await server.heartbeat("hid-1", hostname, addr, {}, source=None)


async def test_a_refused_heartbeat_registers_nothing(server: AuthServer) -> None:
    await certify(server, "hid-1", "db1", [NODE_ADDR])
    with pytest.raises(AccessDenied):
        await server.heartbeat("hid-1", "db1", OTHER_ADDR, {}, source=None)
    assert await server.nodes.list() == []


async def test_a_host_may_heartbeat_any_of_its_certified_addresses(server: AuthServer) -> None:
    await certify(server, "hid-1", "db1", [NODE_ADDR, OTHER_ADDR])
    node = await server.heartbeat("hid-1", "db1", OTHER_ADDR, {}, source=None)
    assert node.spec.addr == OTHER_ADDR


async def test_a_host_may_not_heartbeat_as_another_certified_host(server: AuthServer) -> None:
    await certify(server, "hid-1", "db1", [NODE_ADDR])
    await certify(server, "hid-2", "web1", [OTHER_ADDR])
    with pytest.raises(AccessDenied):
        await server.heartbeat("hid-1", "web1", OTHER_ADDR, {}, source=None)


# --- removal ------------------------------------------------------------------------------


async def heartbeating(server: AuthServer) -> None:
    await certify(server, "hid-1", "db1", [NODE_ADDR])
    await server.heartbeat("hid-1", "db1", NODE_ADDR, {}, source=None)


async def test_delete_node_removes_it_from_listings(server: AuthServer) -> None:
    await heartbeating(server)
    await server.delete_node("hid-1")
    assert await server.nodes.list() == []


async def test_delete_node_revokes_its_registration(server: AuthServer) -> None:
    await heartbeating(server)
    await server.delete_node("hid-1")
    assert await not_registered(server, "hid-1")


async def test_a_deleted_node_may_not_heartbeat_again(server: AuthServer) -> None:
    await heartbeating(server)
    await server.delete_node("hid-1")
    with pytest.raises(AccessDenied, match="not registered"):
        await server.heartbeat("hid-1", "db1", NODE_ADDR, {}, source=None)


async def test_deleting_one_node_leaves_the_others(server: AuthServer) -> None:
    await heartbeating(server)
    await certify(server, "hid-2", "web1", [OTHER_ADDR])
    await server.delete_node("hid-1")
    node = await server.heartbeat("hid-2", "web1", OTHER_ADDR, {}, source=None)
    assert node.metadata.name == "hid-2"


async def test_an_offline_node_can_be_revoked(server: AuthServer, clock: FakeClock) -> None:
    await heartbeating(server)
    clock.advance(NODE_TTL)  # offline: gone from listings, but still certified
    await server.delete_node("hid-1")
    assert await not_registered(server, "hid-1")
