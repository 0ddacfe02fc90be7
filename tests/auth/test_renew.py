"""Host certificates renew as they were certified; removed hosts and replaced admin
credentials get nothing (issue: certificates that look after themselves)."""

from __future__ import annotations

import datetime as dt

import pytest
from cryptography import x509 as cx509
from cryptography.hazmat.primitives.asymmetric import ed25519

from gatehouse.auth.authz import AuthWithRoles, authorize
from gatehouse.auth.identify import Caller
from gatehouse.auth.server import HOST_TTL, AuthServer
from gatehouse.client.authclient import AuthClient
from gatehouse.clock import FakeClock
from gatehouse.errors import AccessDenied
from gatehouse.pki import sshcert, x509
from gatehouse.wire.authapi import RenewRequest
from tests.auth.conftest import API
from tests.auth.samples import CLUSTER


def public_line(key: ed25519.Ed25519PrivateKey) -> str:
    return sshcert.public_key_line(key.public_key())


def ssh_cert(line: str) -> sshcert.Certificate:
    return sshcert.decode(sshcert.from_openssh_line(line))


def dns_names(tls_cert: str) -> list[str]:
    san = x509.load_cert(tls_cert).extensions.get_extension_for_class(
        cx509.SubjectAlternativeName).value
    return list(san.get_values_for_type(cx509.DNSName))


def as_host(server: AuthServer, tls_cert: str) -> AuthWithRoles:
    return AuthWithRoles(server, Caller(x509.identity_of(x509.load_cert(tls_cert)), "10.0.0.5"))


async def test_a_host_renews_exactly_what_it_was_certified_with(
        server: AuthServer, clock: FakeClock) -> None:
    key = ed25519.Ed25519PrivateKey.generate()
    first = await server.certify_host("proxy", "hid-p", "proxy1", key.public_key(),
                                      ["10.0.0.5:3080"], ["sso.example.com"])
    clock.advance(HOST_TTL * 2 / 3)
    renewed = await as_host(server, first.tls_cert).renew(RenewRequest(public_key=public_line(key)))
    assert renewed.expires == clock.now() + HOST_TTL > first.expires
    old, new = ssh_cert(first.ssh_cert), ssh_cert(renewed.ssh_cert)
    assert new.principals == old.principals == ("proxy1", f"proxy1.{CLUSTER}", "hid-p",
                                                "10.0.0.5")
    assert new.host_role == "proxy"
    assert dns_names(renewed.tls_cert) == dns_names(first.tls_cert) == [
        f"proxy.{CLUSTER}", "sso.example.com"]
    ident = x509.identity_of(x509.load_cert(renewed.tls_cert))
    assert (ident.name, ident.system_role, ident.cluster) == ("hid-p", "proxy", CLUSTER)
    renewal = (await server.audit.search(types=["cert.renew"])).events
    assert [(e.node, e.fields["host_id"]) for e in renewal] == [("proxy1", "hid-p")]


async def test_a_removed_host_cannot_renew_with_its_old_certificate(
        server: AuthServer) -> None:
    key = ed25519.Ed25519PrivateKey.generate()
    certs = await server.certify_host("node", "hid-n", "node1", key.public_key(),
                                      ["10.0.0.6:3022"], [])
    await server.delete_node("hid-n")
    # The certificate itself is still valid: only the registration decides.
    assert x509.load_cert(certs.tls_cert).not_valid_after_utc > server.clock.now()
    with pytest.raises(AccessDenied, match="hid-n is not registered"):
        await as_host(server, certs.tls_cert).renew(RenewRequest(public_key=public_line(key)))
    denied = (await server.audit.search(types=["access.denied"])).events
    assert denied and denied[0].fields == {"resource": "host", "verb": "renew"}


async def test_only_hosts_renew_host_certificates(api: API) -> None:
    user = AuthClient(await api.user("alice", ["access"]))
    key = ed25519.Ed25519PrivateKey.generate()
    with pytest.raises(AccessDenied):
        await user.renew(RenewRequest(public_key=public_line(key)))


async def test_a_node_renews_over_the_https_api(api: API) -> None:
    node = AuthClient(await api.host("node", "hid-1", "node1", ["10.0.0.7:3022"]))
    key = ed25519.Ed25519PrivateKey.generate()
    renewed = await node.renew(RenewRequest(public_key=public_line(key)))
    cert = ssh_cert(renewed.ssh_cert)
    assert cert.principals == ("node1", f"node1.{CLUSTER}", "hid-1", "10.0.0.7")
    assert cert.public_key == key.public_key()


async def test_replaced_admin_credentials_are_revoked(server: AuthServer) -> None:
    def caller(tls_cert: str) -> Caller:
        return Caller(x509.identity_of(x509.load_cert(tls_cert)), "local")

    first = await server.issue_admin_certs(ed25519.Ed25519PrivateKey.generate().public_key())
    assert await authorize(server, caller(first.tls_cert), "user", "create")
    old_id = x509.identity_of(x509.load_cert(first.tls_cert)).name
    second = await server.issue_admin_certs(ed25519.Ed25519PrivateKey.generate().public_key(),
                                            replaces=old_id)
    with pytest.raises(AccessDenied, match=f"{old_id} is not registered"):
        await authorize(server, caller(first.tls_cert), "user", "create")
    assert await authorize(server, caller(second.tls_cert), "user", "create")
    created = [e.fields for e in (await server.audit.search(types=["cert.create"])).events]
    assert created[0]["revoked"] == old_id


def test_host_certificates_are_short_lived() -> None:
    assert dt.timedelta(days=7) <= HOST_TTL <= dt.timedelta(days=30)
