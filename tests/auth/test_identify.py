"""Tests for gatehouse.auth.identify: who calls the auth API, and may they (deny by default)."""

from __future__ import annotations

import base64
import datetime as dt
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization

from gatehouse.auth.authz import HOST_PERMISSIONS, AuthWithRoles, authorize
from gatehouse.auth.identify import Caller, caller_roles, identify
from gatehouse.auth.server import AuthServer
from gatehouse.backend import open_backend
from gatehouse.clock import FakeClock
from gatehouse.errors import AccessDenied, NotFound
from gatehouse.pki import x509
from gatehouse.types.cluster_access import ClusterAccess
from gatehouse.types.resource import Metadata
from gatehouse.types.role import RULE_RESOURCES, RULE_VERBS, Role, RoleSpec
from gatehouse.types.trusted_cluster import TrustedCluster
from gatehouse.types.user import User, UserSpec
from tests.auth.samples import CLUSTER, der, new_key

PEER = "10.0.0.2:50000"
CLIENT = "192.0.2.1:40000"


@pytest.fixture
async def foreign(clock: FakeClock, tmp_path: Path) -> AsyncIterator[AuthServer]:
    """Another cluster's auth with the same name, so the same CA names but other keys."""
    backend = await open_backend("memory", path=None, clock=clock)
    yield await AuthServer.open(backend, clock, CLUSTER, tmp_path / "recordings")
    await backend.close()


async def user_der(server: AuthServer, name: str = "alice", roles: tuple[str, ...] = ("access",),
                   create: bool = True) -> bytes:
    user = User(metadata=Metadata(name=name),
                spec=UserSpec(roles=list(roles), traits={"logins": [name]}))
    if create:
        await server.users.create(user)
    certs = await server.issue_user_certs(user, new_key(), ttl=None)
    return der(certs.tls_cert)


async def host_der(server: AuthServer, role: str, host_id: str = "hid-1") -> bytes:
    certs = await server.certify_host(role, host_id, f"{role}1", new_key(), [], [])
    return der(certs.tls_cert)


async def admin_der(server: AuthServer) -> bytes:
    return der((await server.issue_admin_certs(new_key())).tls_cert)


async def caller_of(server: AuthServer, peer: bytes) -> Caller:
    caller = await identify(server, peer, None, PEER, None)
    assert caller is not None
    return caller


async def denials(server: AuthServer) -> list[tuple[str, str, str, str]]:
    """(user, resource, verb, remote) of each access.denied event, sorted: events of one
    instant are not stored in emission order."""
    return sorted((e.user, e.fields["resource"], e.fields["verb"], e.remote_addr)
                  for e in (await server.audit.search(types=["access.denied"])).events)


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
    caller = await identify(server, await host_der(server, role), None, PEER, None)
    assert caller is not None
    assert (caller.identity.kind, caller.identity.name, caller.identity.system_role) == (
        "host", "hid-1", role)


async def test_admin_certificate(server: AuthServer) -> None:
    caller = await identify(server, await admin_der(server), None, PEER, None)
    assert caller is not None
    assert caller.identity.system_role == "admin"
    assert caller.identity.name.startswith("admin-")


async def test_a_foreign_cas_certificates_are_denied(server: AuthServer, foreign: AuthServer
                                                     ) -> None:
    peers = (await user_der(foreign), await host_der(foreign, "proxy"), await admin_der(foreign))
    for peer in peers:
        with pytest.raises(AccessDenied, match="not signed by a trusted"):
            await identify(server, peer, None, PEER, None)


async def test_another_clusters_certificate_is_denied(server: AuthServer, clock: FakeClock,
                                                      tmp_path: Path) -> None:
    backend = await open_backend("memory", path=None, clock=clock)
    try:
        other = await AuthServer.open(backend, clock, "leaf.example.com", tmp_path / "recordings")
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
    caller = await identify(server, await host_der(server, "proxy"), forwarded, PEER, CLIENT)
    assert caller is not None
    assert (caller.identity.kind, caller.identity.name) == ("user", "alice")
    assert caller.remote_addr == CLIENT


async def test_a_forwarded_certificate_without_address_keeps_the_peers(server: AuthServer
                                                                       ) -> None:
    forwarded = base64.b64encode(await user_der(server)).decode()
    caller = await identify(server, await host_der(server, "proxy"), forwarded, PEER, None)
    assert caller is not None
    assert caller.remote_addr == PEER


async def test_an_empty_forwarded_header_is_an_anonymous_client(server: AuthServer) -> None:
    caller = await identify(server, await host_der(server, "proxy"), "", PEER, CLIENT)
    assert caller is not None
    assert caller.identity.name == ""
    assert caller.identity.roles == ()
    assert caller.remote_addr == CLIENT


@pytest.mark.parametrize("role", ["node", "auth"])
async def test_only_a_proxy_may_forward(server: AuthServer, role: str) -> None:
    forwarded = base64.b64encode(await user_der(server)).decode()
    with pytest.raises(AccessDenied, match="only a proxy"):
        await identify(server, await host_der(server, role), forwarded, PEER, CLIENT)


async def test_neither_a_user_nor_the_admin_may_forward(server: AuthServer) -> None:
    forwarded = base64.b64encode(await user_der(server, "bob")).decode()
    for peer in (await user_der(server), await admin_der(server)):
        with pytest.raises(AccessDenied, match="only a proxy"):
            await identify(server, peer, forwarded, PEER, CLIENT)
        with pytest.raises(AccessDenied, match="only a proxy"):
            await identify(server, peer, "", PEER, CLIENT)


@pytest.mark.parametrize("forwarded", ["not base64!", "AAAA", "====",
                                       base64.b64encode(b"garbage").decode()])
async def test_a_malformed_forwarded_certificate_is_denied(server: AuthServer, forwarded: str
                                                           ) -> None:
    with pytest.raises(AccessDenied, match="malformed"):
        await identify(server, await host_der(server, "proxy"), forwarded, PEER, CLIENT)


async def test_a_forwarded_certificate_is_verified_too(server: AuthServer, foreign: AuthServer,
                                                       clock: FakeClock) -> None:
    proxy = await host_der(server, "proxy")
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
        await identify(server, await host_der(foreign, "proxy"), forwarded, PEER, CLIENT)


# --- authorize ----------------------------------------------------------------------------


EVERY_CALL = sorted({(r, v) for r in RULE_RESOURCES for v in RULE_VERBS}.union(
    *HOST_PERMISSIONS.values()))


async def test_no_caller_is_denied_and_audited(server: AuthServer) -> None:
    with pytest.raises(AccessDenied, match="needs a certificate"):
        await authorize(server, None, "node", "list")
    assert await denials(server) == [("", "node", "list", "")]


async def test_an_anonymous_forwarded_client_is_denied(server: AuthServer) -> None:
    caller = await identify(server, await host_der(server, "proxy"), "", PEER, CLIENT)
    with pytest.raises(AccessDenied, match="needs a certificate"):
        await authorize(server, caller, "node", "list")
    assert await denials(server) == [("", "node", "list", CLIENT)]


async def test_the_admin_may_do_everything(server: AuthServer) -> None:
    caller = await caller_of(server, await admin_der(server))
    for resource, verb in EVERY_CALL:
        assert await authorize(server, caller, resource, verb) is caller
    assert await denials(server) == []


@pytest.mark.parametrize("role", ["node", "proxy"])
async def test_a_host_may_do_its_permissions_only(server: AuthServer, role: str) -> None:
    caller = await caller_of(server, await host_der(server, role))
    for resource, verb in EVERY_CALL:
        if (resource, verb) in HOST_PERMISSIONS[role]:
            assert await authorize(server, caller, resource, verb) is caller
        else:
            with pytest.raises(AccessDenied, match=f"a {role} may not {verb} {resource}"):
                await authorize(server, caller, resource, verb)
    denied = len(EVERY_CALL) - len(HOST_PERMISSIONS[role])
    assert len(await denials(server)) == denied


async def test_a_node_may_heartbeat_but_not_list_or_edit(server: AuthServer) -> None:
    caller = await caller_of(server, await host_der(server, "node"))
    await authorize(server, caller, "node", "heartbeat")
    await authorize(server, caller, "trust", "read")
    for resource, verb in [("node", "list"), ("node", "read"), ("user", "create"),
                           ("token", "create"), ("event", "list")]:
        with pytest.raises(AccessDenied):
            await authorize(server, caller, resource, verb)


async def test_the_auth_host_identity_has_no_api_permissions(server: AuthServer) -> None:
    caller = await caller_of(server, await host_der(server, "auth"))
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
    caller = await identify(server, await host_der(server, "proxy"), forwarded, PEER, CLIENT)
    await authorize(server, caller, "node", "read")  # what resolving a node asks
    with pytest.raises(AccessDenied):
        await authorize(server, caller, "user", "create")
    assert await denials(server) == [("alice", "user", "create", CLIENT)]


async def test_a_proxy_may_not_resolve_nodes_in_its_own_name(server: AuthServer) -> None:
    """Only a user's roles decide which node a proxy dials for them."""
    caller = await caller_of(server, await host_der(server, "proxy"))
    with pytest.raises(AccessDenied, match="a proxy may not read node"):
        await authorize(server, caller, "node", "read")


async def test_a_denial_is_audited_with_its_reason(server: AuthServer) -> None:
    caller = await caller_of(server, await user_der(server, roles=("access",)))
    with pytest.raises(AccessDenied) as info:
        await authorize(server, caller, "user", "create")
    [event] = (await server.audit.search(types=["access.denied"])).events
    assert event.code == "TA001W"
    assert event.cluster == CLUSTER
    assert event.user == "alice"
    assert event.remote_addr == PEER
    assert event.message == str(info.value)
    assert event.fields == {"resource": "user", "verb": "create"}


# --- revocation ---------------------------------------------------------------------------


@pytest.mark.parametrize("role", ["node", "proxy"])
async def test_a_host_whose_record_is_gone_has_no_standing(server: AuthServer, role: str
                                                           ) -> None:
    caller = await caller_of(server, await host_der(server, role))
    await server.hosts.delete("hid-1")  # what delete_node does to a host's registration
    with pytest.raises(AccessDenied, match="host hid-1 is not registered"):
        await authorize(server, caller, "trust", "read")


async def test_a_removed_proxy_may_not_relay(server: AuthServer) -> None:
    proxy = await host_der(server, "proxy")
    forwarded = base64.b64encode(await user_der(server)).decode()
    await server.hosts.delete("hid-1")
    with pytest.raises(AccessDenied):
        await identify(server, proxy, forwarded, PEER, CLIENT)


# --- what a proxy may relay ---------------------------------------------------------------

ROOT = "root.example.com"


@pytest.fixture
async def root(clock: FakeClock, tmp_path: Path) -> AsyncIterator[AuthServer]:
    """A root cluster this one (the leaf) may trust."""
    backend = await open_backend("memory", path=None, clock=clock)
    yield await AuthServer.open(backend, clock, ROOT, tmp_path / "recordings")
    await backend.close()


def trusted_cluster(enabled: bool = True,
                    role_map: tuple[tuple[str, str], ...] = (("admin", "access"),)
                    ) -> TrustedCluster:
    return TrustedCluster.model_validate({
        "metadata": {"name": ROOT},
        "spec": {"enabled": enabled, "token": "secret", "proxy_addr": f"{ROOT}:3080",
                 "role_map": [{"remote": r, "local": [local]} for r, local in role_map]},
    })


ADMIN = Role(metadata=Metadata(name="admin"))  # a root role that says nothing of leaves


async def trust(server: AuthServer, root: AuthServer, tc: TrustedCluster | None = None) -> None:
    """The end of a completed trusted-cluster join: the leaf holds the root's public CAs,
    and what the root pushed over the tunnel of its cluster labels (none; every role)."""
    await server.trust.store_root(tc or trusted_cluster(),
                                  [root.cas["user"].public(), root.cas["host"].public()])
    await server.trust.store_root_access(ROOT, await root_access(root, {}))


async def root_access(root: AuthServer, labels: dict[str, str],
                      *extra: Role) -> ClusterAccess:
    return ClusterAccess.of([*await root.roles.list(), ADMIN, *extra], labels)


async def relayed(server: AuthServer, forwarded: bytes) -> Caller:
    caller = await identify(server, await host_der(server, "proxy"),
                            base64.b64encode(forwarded).decode(), PEER, CLIENT)
    assert caller is not None
    return caller


@pytest.mark.parametrize("kind", ["proxy", "admin"])
async def test_a_proxy_relays_no_proxy_or_admin_certificate(server: AuthServer,
                                                             kind: str) -> None:
    if kind == "admin":
        forwarded = await admin_der(server)
    else:
        forwarded = await host_der(server, kind, "hid-2")
    with pytest.raises(AccessDenied, match="may relay only user and node certificates"):
        await relayed(server, forwarded)


async def test_a_proxy_relays_a_node_that_joined_through_it(server: AuthServer) -> None:
    caller = await relayed(server, await host_der(server, "node", "hid-2"))
    assert (caller.identity.kind, caller.identity.system_role) == ("host", "node")


async def test_a_proxy_relays_a_trusted_root_user(server: AuthServer, root: AuthServer) -> None:
    await trust(server, root)
    caller = await relayed(server, await user_der(root, roles=("admin",)))
    assert (caller.identity.kind, caller.identity.name, caller.identity.cluster) == (
        "user", "alice", ROOT)


async def test_a_root_user_may_not_call_a_leaf_directly(server: AuthServer, root: AuthServer
                                                        ) -> None:
    await trust(server, root)
    with pytest.raises(AccessDenied, match="not signed by a trusted"):
        await identify(server, await user_der(root, roles=("admin",)), None, PEER, None)


async def test_a_root_may_not_mint_users_of_the_leaf(server: AuthServer, root: AuthServer
                                                     ) -> None:
    """A root's user CA vouches for the root's users only, never for this cluster's."""
    await trust(server, root)
    ident = x509.Identity(kind="user", name="alice", cluster=CLUSTER, roles=("editor",))
    with pytest.raises(AccessDenied):
        await relayed(server, _signed(root, "user", ident))


async def test_a_disabled_trusted_cluster_is_not_trusted(server: AuthServer, root: AuthServer
                                                         ) -> None:
    await trust(server, root, trusted_cluster(enabled=False))
    with pytest.raises(AccessDenied, match="not signed by a trusted"):
        await relayed(server, await user_der(root, roles=("admin",)))


async def test_a_root_users_roles_map_through_the_role_map(server: AuthServer,
                                                           root: AuthServer) -> None:
    await trust(server, root)
    caller = await relayed(server, await user_der(root, roles=("admin", "auditor")))
    assert [r.name for r in await caller_roles(server, caller.identity)] == ["access"]


async def test_a_root_user_with_no_mapped_role_is_denied(server: AuthServer, root: AuthServer
                                                         ) -> None:
    """Role names do not carry over: the root's editor is nothing here unless mapped."""
    await trust(server, root)
    caller = await relayed(server, await user_der(root, roles=("editor",)))
    with pytest.raises(AccessDenied,
                       match=f"no roles mapped for remote user alice from cluster {ROOT}"):
        await caller_roles(server, caller.identity)


async def test_disabling_trust_denies_a_root_user_already_identified(
    server: AuthServer, root: AuthServer
) -> None:
    await trust(server, root)
    caller = await relayed(server, await user_der(root, roles=("admin",)))
    await server.trust.trusted.upsert(trusted_cluster(enabled=False))
    with pytest.raises(AccessDenied, match=f"trust in cluster {ROOT} is disabled"):
        await authorize(server, caller, "node", "list")


async def test_the_roots_cluster_labels_are_enforced_by_the_leaf(
    server: AuthServer, root: AuthServer
) -> None:
    """A root certificate presented here (relayed by this cluster's proxy: the leaf's own
    proxy, or a root's stream over the tunnel) is held to the root's cluster labels as
    the root last pushed them; without any word from the root, denied."""
    await trust(server, root)
    prod_admin = Role.model_validate({"metadata": {"name": "admin"}, "spec": {
        "allow": {"cluster_labels": {"env": "prod"}}}})
    caller = await relayed(server, await user_der(root, roles=("admin",)))
    await server.trust.store_root_access(ROOT, await root_access(root, {"env": "staging"},
                                                                 prod_admin))
    with pytest.raises(AccessDenied) as info:
        await authorize(server, caller, "node", "list")
    assert str(info.value) == (
        f"root user alice from cluster {ROOT} may not use this cluster: roles admin do not "
        f"select cluster {CLUSTER} (labels env=staging)")
    await server.trust.store_root_access(ROOT, await root_access(root, {"env": "prod"},
                                                                 prod_admin))
    await authorize(server, caller, "node", "list")
    await server.trust.remove_root(ROOT)  # a new join starts with no word from the root
    await server.trust.store_root(trusted_cluster(), [root.cas["user"].public()])
    with pytest.raises(AccessDenied, match="has not yet received its root's cluster labels"):
        await caller_roles(server, caller.identity)


async def test_only_a_proxy_hands_on_what_a_trusted_root_says(server: AuthServer,
                                                              root: AuthServer) -> None:
    await trust(server, root)
    access = await root_access(root, {"env": "prod"})
    as_node = AuthWithRoles(server, await caller_of(server, await host_der(server, "node")))
    with pytest.raises(AccessDenied, match="a node may not access trusted_cluster"):
        await as_node.put_cluster_access(ROOT, access)
    as_proxy = AuthWithRoles(server, await caller_of(server, await host_der(server, "proxy")))
    with pytest.raises(NotFound):
        await as_proxy.put_cluster_access("not-a-root.example.com", access)
    await as_proxy.put_cluster_access(ROOT, access)
    assert await server.trust.root_access(ROOT) == access


async def test_a_mapped_root_user_is_authorized_by_the_mapped_roles(
    server: AuthServer, root: AuthServer
) -> None:
    await trust(server, root)
    caller = await relayed(server, await user_der(root, roles=("admin",)))
    await authorize(server, caller, "node", "list")  # access allows it
    with pytest.raises(AccessDenied, match="not allowed by roles access"):
        await authorize(server, caller, "user", "create")


# --- verified certificates are remembered, never beyond their validity or their auth ------


async def test_a_remembered_certificate_still_expires(server: AuthServer,
                                                     clock: FakeClock) -> None:
    alice = await user_der(server)
    assert (await caller_of(server, alice)).identity.name == "alice"  # verified, remembered
    clock.advance(dt.timedelta(hours=13))  # past the user certificate's 12 h
    with pytest.raises(AccessDenied, match="expired"):
        await identify(server, alice, None, PEER, None)


async def test_a_certificate_remembered_by_one_auth_is_not_taken_by_another(
        server: AuthServer, foreign: AuthServer) -> None:
    # Same cluster name, other keys: what one auth verified means nothing to the other.
    alice = await user_der(server)
    await caller_of(server, alice)
    with pytest.raises(AccessDenied):
        await identify(foreign, alice, None, PEER, None)
    relayed_der = base64.b64encode(alice).decode()
    proxy = await host_der(foreign, "proxy", "proxy-hid")
    with pytest.raises(AccessDenied):
        await identify(foreign, proxy, relayed_der, PEER, CLIENT)


async def test_a_root_user_verified_before_is_refused_once_the_trust_is_disabled(
        server: AuthServer, root: AuthServer) -> None:
    await trust(server, root)
    alice = await user_der(root, roles=("admin",))
    assert (await relayed(server, alice)).identity.cluster == ROOT  # verified, remembered
    await server.trust.trusted.upsert(trusted_cluster(enabled=False))
    with pytest.raises(AccessDenied, match="not signed by a trusted"):
        await relayed(server, alice)


async def test_every_node_of_a_large_cluster_is_verified_once(
    server: AuthServer, clock: FakeClock, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Nodes heartbeat in turn, each with its own certificate: a cache smaller than the
    nodes (4,096 before) missed on every call, and checked every signature again."""
    ca = server.cas["host"]
    key = new_key()
    ders = [x509.issue(ca.tls_key, ca.tls_cert, key,
                       x509.Identity(kind="host", name=f"hid-{i}", cluster=CLUSTER,
                                     roles=("node",)),
                       now=clock.now(), ttl=dt.timedelta(hours=1)
                       ).public_bytes(serialization.Encoding.DER)
            for i in range(6_000)]
    checked: list[object] = []
    verify = x509.verify_issued_by

    def counting(*args: Any, **kwargs: Any) -> Any:
        checked.append(args[0])
        return verify(*args, **kwargs)

    monkeypatch.setattr(x509, "verify_issued_by", counting)
    for _ in range(2):
        for i, peer in enumerate(ders):
            assert (await caller_of(server, peer)).identity.name == f"hid-{i}"
    assert len(checked) == len(ders)
