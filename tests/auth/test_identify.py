"""Tests for gatehouse.auth.identify: who calls the auth API, and may they (deny by default)."""

from __future__ import annotations

import base64
import datetime as dt
from collections.abc import AsyncIterator

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from gatehouse import x509
from gatehouse.auth.identify import HOST_PERMISSIONS, Caller, authorize, identify
from gatehouse.auth.server import AuthServer
from gatehouse.backend import Backend, open_backend
from gatehouse.clock import FakeClock
from gatehouse.errors import AccessDenied
from gatehouse.types.resource import Metadata
from gatehouse.types.role import RULE_RESOURCES, RULE_VERBS, Role, RoleSpec
from gatehouse.types.user import User, UserSpec

CLUSTER = "sso.example.com"
PEER = "10.0.0.2:50000"
CLIENT = "192.0.2.1:40000"


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def backend(clock: FakeClock) -> AsyncIterator[Backend]:
    backend = await open_backend("memory", path=None, clock=clock)
    yield backend
    await backend.close()


@pytest.fixture
async def server(backend: Backend, clock: FakeClock) -> AuthServer:
    return await AuthServer.open(backend, clock, CLUSTER)


@pytest.fixture
async def foreign(clock: FakeClock) -> AsyncIterator[AuthServer]:
    """Another cluster's auth with the same name, so the same CA names but other keys."""
    backend = await open_backend("memory", path=None, clock=clock)
    yield await AuthServer.open(backend, clock, CLUSTER)
    await backend.close()


def new_key() -> ed25519.Ed25519PublicKey:
    return ed25519.Ed25519PrivateKey.generate().public_key()


def der(pem: str) -> bytes:
    return x509.load_cert(pem).public_bytes(serialization.Encoding.DER)


async def user_der(server: AuthServer, name: str = "alice", roles: tuple[str, ...] = ("access",),
                   create: bool = True) -> bytes:
    user = User(metadata=Metadata(name=name),
                spec=UserSpec(roles=list(roles), traits={"logins": [name]}))
    if create:
        await server.users.create(user)
    certs = await server.issue_user_certs(user, new_key(), ttl=None)
    return der(certs.tls_cert)


def host_der(server: AuthServer, role: str, host_id: str = "hid-1") -> bytes:
    certs = server.issue_host_certs(role, host_id, f"{role}1", new_key(), [], [])
    return der(certs.tls_cert)


def admin_der(server: AuthServer) -> bytes:
    return der(server.issue_admin_certs(new_key()).tls_cert)


async def caller_of(server: AuthServer, peer: bytes) -> Caller:
    caller = await identify(server, peer, None, PEER, None)
    assert caller is not None
    return caller


async def denials(server: AuthServer) -> list[tuple[str, str, str, str]]:
    """(user, resource, verb, remote) of each access.denied event, sorted: events of one
    instant are not stored in emission order."""
    return sorted((e.user, e.fields["resource"], e.fields["verb"], e.remote_addr)
                  for e in await server.audit.search(types=["access.denied"]))


# --- identify -----------------------------------------------------------------------------


@pytest.mark.parametrize("peer", [None, b""])
async def test_no_certificate_is_anonymous(server: AuthServer, peer: bytes | None) -> None:
    assert await identify(server, peer, None, PEER, None) is None


async def test_user_certificate(server: AuthServer, clock: FakeClock) -> None:
    caller = await identify(server, await user_der(server), None, PEER, CLIENT)
    assert caller is not None
    assert caller.remote_addr == PEER  # a forwarded address counts only with a forwarded cert
    ident = caller.identity
    assert (ident.kind, ident.name, ident.cluster, ident.roles, ident.logins) == (
        "user", "alice", CLUSTER, ("access",), ("alice",))
    assert ident.expires == clock.now() + dt.timedelta(hours=12)


@pytest.mark.parametrize("role", ["node", "proxy", "auth"])
async def test_host_certificate(server: AuthServer, role: str) -> None:
    caller = await identify(server, host_der(server, role), None, PEER, None)
    assert caller is not None
    assert (caller.identity.kind, caller.identity.name, caller.identity.system_role) == (
        "host", "hid-1", role)


async def test_admin_certificate(server: AuthServer) -> None:
    caller = await identify(server, admin_der(server), None, PEER, None)
    assert caller is not None
    assert (caller.identity.name, caller.identity.system_role) == ("admin", "admin")


async def test_a_foreign_cas_certificates_are_denied(server: AuthServer, foreign: AuthServer
                                                     ) -> None:
    for peer in (await user_der(foreign), host_der(foreign, "proxy"), admin_der(foreign)):
        with pytest.raises(AccessDenied, match="not signed by a trusted"):
            await identify(server, peer, None, PEER, None)


async def test_another_clusters_certificate_is_denied(server: AuthServer, clock: FakeClock
                                                      ) -> None:
    backend = await open_backend("memory", path=None, clock=clock)
    try:
        other = await AuthServer.open(backend, clock, "leaf.example.com")
        with pytest.raises(AccessDenied):
            await identify(server, await user_der(other), None, PEER, None)
    finally:
        await backend.close()


async def test_an_expired_certificate_is_denied(server: AuthServer, clock: FakeClock) -> None:
    peer = await user_der(server)
    clock.advance(dt.timedelta(hours=12, seconds=1))
    with pytest.raises(AccessDenied, match="expired"):
        await identify(server, peer, None, PEER, None)


@pytest.mark.parametrize("peer", [b"\x00", b"not a certificate", b"0\x03\x02\x01\x00"])
async def test_a_malformed_certificate_is_denied(server: AuthServer, peer: bytes) -> None:
    with pytest.raises(AccessDenied, match="malformed"):
        await identify(server, peer, None, PEER, None)


def _signed(server: AuthServer, ca_type: str, ident: x509.Identity) -> bytes:
    ca = server.cas[ca_type]
    cert = x509.issue(ca.tls_key, ca.tls_cert, new_key(), ident, now=server.clock.now(),
                      ttl=dt.timedelta(hours=1))
    return cert.public_bytes(serialization.Encoding.DER)


@pytest.mark.parametrize(
    ("ca_type", "ident"),
    [
        ("user", x509.Identity(kind="host", name="admin", cluster=CLUSTER, roles=("admin",))),
        ("host", x509.Identity(kind="user", name="alice", cluster=CLUSTER, roles=("editor",))),
        ("user", x509.Identity(kind="user", name="alice", cluster="leaf.example.com")),
        ("host", x509.Identity(kind="host", name="hid", cluster="leaf.example.com",
                               roles=("proxy",))),
    ],
)
async def test_an_identity_must_match_its_issuing_ca(server: AuthServer, ca_type: str,
                                               ident: x509.Identity) -> None:
    with pytest.raises(AccessDenied, match="does not match its issuing authority"):
        await identify(server, _signed(server, ca_type, ident), None, PEER, None)


async def test_a_proxy_may_forward_its_clients_certificate(server: AuthServer) -> None:
    forwarded = base64.b64encode(await user_der(server)).decode()
    caller = await identify(server, host_der(server, "proxy"), forwarded, PEER, CLIENT)
    assert caller is not None
    assert (caller.identity.kind, caller.identity.name) == ("user", "alice")
    assert caller.remote_addr == CLIENT


async def test_a_forwarded_certificate_without_address_keeps_the_peers(server: AuthServer
                                                                       ) -> None:
    forwarded = base64.b64encode(await user_der(server)).decode()
    caller = await identify(server, host_der(server, "proxy"), forwarded, PEER, None)
    assert caller is not None
    assert caller.remote_addr == PEER


async def test_an_empty_forwarded_header_is_an_anonymous_client(server: AuthServer) -> None:
    caller = await identify(server, host_der(server, "proxy"), "", PEER, CLIENT)
    assert caller is not None
    assert caller.identity.name == ""
    assert caller.identity.roles == ()
    assert caller.remote_addr == CLIENT


@pytest.mark.parametrize("role", ["node", "auth"])
async def test_only_a_proxy_may_forward(server: AuthServer, role: str) -> None:
    forwarded = base64.b64encode(await user_der(server)).decode()
    with pytest.raises(AccessDenied, match="only a proxy"):
        await identify(server, host_der(server, role), forwarded, PEER, CLIENT)


async def test_neither_a_user_nor_the_admin_may_forward(server: AuthServer) -> None:
    forwarded = base64.b64encode(await user_der(server, "bob")).decode()
    for peer in (await user_der(server), admin_der(server)):
        with pytest.raises(AccessDenied, match="only a proxy"):
            await identify(server, peer, forwarded, PEER, CLIENT)
        with pytest.raises(AccessDenied, match="only a proxy"):
            await identify(server, peer, "", PEER, CLIENT)


@pytest.mark.parametrize("forwarded", ["not base64!", "AAAA", "====",
                                       base64.b64encode(b"garbage").decode()])
async def test_a_malformed_forwarded_certificate_is_denied(server: AuthServer, forwarded: str
                                                           ) -> None:
    with pytest.raises(AccessDenied, match="malformed"):
        await identify(server, host_der(server, "proxy"), forwarded, PEER, CLIENT)


async def test_a_forwarded_certificate_is_verified_too(server: AuthServer, foreign: AuthServer,
                                                       clock: FakeClock) -> None:
    proxy = host_der(server, "proxy")
    with pytest.raises(AccessDenied, match="not signed by a trusted"):
        await identify(server, proxy, base64.b64encode(await user_der(foreign)).decode(), PEER,
                 CLIENT)
    forwarded = base64.b64encode(await user_der(server)).decode()
    clock.advance(dt.timedelta(hours=13))  # the proxy's year-long cert is still valid
    with pytest.raises(AccessDenied):
        await identify(server, proxy, forwarded, PEER, CLIENT)


async def test_a_foreign_proxy_may_not_forward(server: AuthServer, foreign: AuthServer) -> None:
    forwarded = base64.b64encode(await user_der(server)).decode()
    with pytest.raises(AccessDenied, match="not signed by a trusted"):
        await identify(server, host_der(foreign, "proxy"), forwarded, PEER, CLIENT)


# --- authorize ----------------------------------------------------------------------------


EVERY_CALL = sorted({(r, v) for r in RULE_RESOURCES for v in RULE_VERBS}.union(
    *HOST_PERMISSIONS.values()))


async def test_no_caller_is_denied_and_audited(server: AuthServer) -> None:
    with pytest.raises(AccessDenied, match="needs a certificate"):
        await authorize(server, None, "node", "list")
    assert await denials(server) == [("", "node", "list", "")]


async def test_an_anonymous_forwarded_client_is_denied(server: AuthServer) -> None:
    caller = await identify(server, host_der(server, "proxy"), "", PEER, CLIENT)
    with pytest.raises(AccessDenied, match="needs a certificate"):
        await authorize(server, caller, "node", "list")
    assert await denials(server) == [("", "node", "list", CLIENT)]


async def test_the_admin_may_do_everything(server: AuthServer) -> None:
    caller = await caller_of(server, admin_der(server))
    for resource, verb in EVERY_CALL:
        assert await authorize(server, caller, resource, verb) is caller
    assert await denials(server) == []


@pytest.mark.parametrize("role", ["node", "proxy"])
async def test_a_host_may_do_its_permissions_only(server: AuthServer, role: str) -> None:
    caller = await caller_of(server, host_der(server, role))
    for resource, verb in EVERY_CALL:
        if (resource, verb) in HOST_PERMISSIONS[role]:
            assert await authorize(server, caller, resource, verb) is caller
        else:
            with pytest.raises(AccessDenied, match=f"a {role} may not {verb} {resource}"):
                await authorize(server, caller, resource, verb)
    denied = len(EVERY_CALL) - len(HOST_PERMISSIONS[role])
    assert len(await denials(server)) == denied


async def test_a_node_may_heartbeat_but_not_list_or_edit(server: AuthServer) -> None:
    caller = await caller_of(server, host_der(server, "node"))
    await authorize(server, caller, "node", "heartbeat")
    await authorize(server, caller, "trust", "read")
    for resource, verb in [("node", "list"), ("node", "resolve"), ("user", "create"),
                           ("token", "create"), ("event", "list")]:
        with pytest.raises(AccessDenied):
            await authorize(server, caller, resource, verb)


async def test_the_auth_host_identity_has_no_api_permissions(server: AuthServer) -> None:
    caller = await caller_of(server, host_der(server, "auth"))
    with pytest.raises(AccessDenied, match="a auth may not list node"):
        await authorize(server, caller, "node", "list")


@pytest.mark.parametrize(
    ("roles", "allowed", "denied"),
    [
        (("editor",), [("user", "create"), ("role", "delete"), ("token", "create"),
                       ("event", "list")], []),
        (("access",), [("node", "list"), ("node", "read")],
         [("user", "create"), ("role", "update"), ("token", "create"), ("event", "list"),
          ("node", "delete")]),
        (("auditor",), [("event", "list"), ("session", "read")],
         [("user", "create"), ("node", "list")]),
        (("access", "auditor"), [("node", "list"), ("event", "list")], [("user", "create")]),
        (("ghost",), [], [("node", "list"), ("user", "create")]),
    ],
)
async def test_a_user_may_do_what_the_roles_rules_allow(
    server: AuthServer, roles: tuple[str, ...], allowed: list[tuple[str, str]],
    denied: list[tuple[str, str]],
) -> None:
    caller = await caller_of(server, await user_der(server, roles=roles))
    for resource, verb in allowed:
        assert await authorize(server, caller, resource, verb) is caller
    for resource, verb in denied:
        with pytest.raises(AccessDenied, match=f'"{verb}" on "{resource}" is not allowed'):
            await authorize(server, caller, resource, verb)
    assert await denials(server) == sorted(("alice", r, v, PEER) for r, v in denied)


async def test_a_deny_rule_beats_editor(server: AuthServer) -> None:
    await server.roles.create(Role(
        metadata=Metadata(name="no-tokens"),
        spec=RoleSpec.model_validate({"deny": {"rules": [
            {"resources": ["token"], "verbs": ["*"]}]}}),
    ))
    caller = await caller_of(server, await user_der(server, roles=("editor", "no-tokens")))
    await authorize(server, caller, "user", "create")
    with pytest.raises(AccessDenied, match="denied by role no-tokens"):
        await authorize(server, caller, "token", "create")


async def test_a_deleted_user_is_refused(server: AuthServer) -> None:
    caller = await caller_of(server, await user_der(server, roles=("editor",)))
    await authorize(server, caller, "user", "list")
    await server.delete_user("alice")
    with pytest.raises(AccessDenied, match="user alice no longer exists"):
        await authorize(server, caller, "user", "list")
    assert await denials(server) == [("alice", "user", "list", PEER)]


async def test_a_user_certified_but_never_created_is_refused(server: AuthServer) -> None:
    caller = await caller_of(server, await user_der(server, "ghost", ("editor",), create=False))
    with pytest.raises(AccessDenied, match="no longer exists"):
        await authorize(server, caller, "user", "list")


async def test_a_forwarded_user_is_authorized_as_the_user(server: AuthServer) -> None:
    forwarded = base64.b64encode(await user_der(server, roles=("access",))).decode()
    caller = await identify(server, host_der(server, "proxy"), forwarded, PEER, CLIENT)
    await authorize(server, caller, "node", "list")
    # The proxy itself may resolve nodes; the user it speaks for may not.
    with pytest.raises(AccessDenied):
        await authorize(server, caller, "node", "resolve")
    assert await denials(server) == [("alice", "node", "resolve", CLIENT)]


async def test_a_denial_is_audited_with_its_reason(server: AuthServer) -> None:
    caller = await caller_of(server, await user_der(server, roles=("access",)))
    with pytest.raises(AccessDenied) as info:
        await authorize(server, caller, "user", "create")
    [event] = await server.audit.search(types=["access.denied"])
    assert event.code == "TA001W"
    assert event.cluster == CLUSTER
    assert event.user == "alice"
    assert event.remote_addr == PEER
    assert event.message == str(info.value)
    assert event.fields == {"resource": "user", "verb": "create"}
