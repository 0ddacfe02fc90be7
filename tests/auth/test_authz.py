"""Tests for gatehouse.auth.authz through its calls (in-process, memory backend): what
only hosts do stays theirs whatever a user's rules say, and what grants roles needs
the privilege of granting them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from gatehouse.auth.authz import AuthWithRoles
from gatehouse.auth.identify import Caller
from gatehouse.auth.server import AuthServer
from gatehouse.backend import Backend
from gatehouse.clock import FakeClock
from gatehouse.errors import AccessDenied, BadParameter, NotFound
from gatehouse.pki import x509
from gatehouse.services.events import AuditEvent
from gatehouse.types.oidc import OIDCConnector
from gatehouse.types.remote_cluster import RemoteCluster
from gatehouse.types.resource import Metadata
from gatehouse.types.trusted_cluster import TrustedCluster
from gatehouse.types.user import User, UserSpec
from gatehouse.wire.authapi import RecordingDone, TokenRequest
from gatehouse.wire.trust import PublicCA
from tests.auth.samples import CLUSTER, add_role, certify

ROOT = "root.example.com"
SESSION = "0b5c4b0e-4c0a-4a8e-9d2f-6c1d7b9e2a11"
ISSUER = "https://idp.example.com"


class DiscoverableIdP:
    """An issuer whose discovery document names the endpoints a login needs."""

    async def get_json(self, url: str, ca_file: str) -> dict[str, Any]:
        assert url == f"{ISSUER}/.well-known/openid-configuration"
        return {"issuer": ISSUER, "authorization_endpoint": f"{ISSUER}/auth",
                "token_endpoint": f"{ISSUER}/token", "jwks_uri": f"{ISSUER}/jwks"}

    async def post_form(self, url: str, form: dict[str, str], basic_auth: tuple[str, str],
                        ca_file: str) -> dict[str, Any]:
        raise AssertionError("no login here")


async def root_accepts(tc: TrustedCluster, leaf_ca: PublicCA) -> list[PublicCA]:
    """The root's side of a trusted-cluster join: every join succeeds."""
    return [PublicCA(ROOT, t, f"ssh-{t}", f"pem-{t}") for t in ("user", "host")]


@pytest.fixture
async def server(backend: Backend, clock: FakeClock, tmp_path: Path) -> AuthServer:
    return await AuthServer.open(backend, clock, CLUSTER, tmp_path / "recordings",
                                 join_root=root_accepts, idp=DiscoverableIdP())


async def as_user(server: AuthServer, name: str, rules: list[dict[str, list[str]]],
                  roles: tuple[str, ...] = ()) -> AuthWithRoles:
    """The API for a local user holding a role ``<name>-role`` with ``rules`` (and ``roles``)."""
    await add_role(server, f"{name}-role", allow={"rules": rules})
    held = (f"{name}-role", *roles)
    await server.users.create(User(metadata=Metadata(name=name),
                                   spec=UserSpec(roles=list(held))))
    ident = x509.Identity(kind="user", name=name, cluster=CLUSTER, roles=held, logins=(),
                          traits={}, route_to_cluster=CLUSTER)
    return AuthWithRoles(server, Caller(ident, "10.9.9.9"))


async def as_host(server: AuthServer, role: str, host_id: str) -> AuthWithRoles:
    await certify(server, host_id, f"{role}1", role=role)
    ident = x509.Identity(kind="host", name=host_id, cluster=CLUSTER, roles=(role,))
    return AuthWithRoles(server, Caller(ident, "10.0.0.7"))


async def denials(server: AuthServer) -> list[AuditEvent]:
    return (await server.audit.search(types=["access.denied"])).events


# --- calls only hosts make ----------------------------------------------------------------


async def test_a_user_with_every_event_verb_may_not_export_or_forge_events(
        server: AuthServer) -> None:
    eve = await as_user(server, "eve", [{"resources": ["event"], "verbs": ["*"]}])
    await server.audit.emit("user.login", user="u1")
    with pytest.raises(AccessDenied, match="only a proxy of this cluster may export event"):
        await eve.set_export_cursor(ROOT, "99999999999999999999/zzz")
    with pytest.raises(AccessDenied, match="only a proxy"):
        await eve.export_cursor(ROOT)
    with pytest.raises(AccessDenied, match="only a proxy"):
        await eve.export_events("", 10)
    with pytest.raises(AccessDenied, match="only a proxy"):
        await eve.store_leaf_events("leaf-a", [])
    assert await server.audit.cursor(ROOT) == ""
    assert len(await denials(server)) == 4


async def test_a_user_with_every_verb_on_everything_may_not_upload_recordings(
        server: AuthServer) -> None:
    eve = await as_user(server, "eve", [{"resources": ["*"], "verbs": ["*"]}])
    with pytest.raises(AccessDenied, match="only a node of this cluster may upload recording"):
        await eve.put_recording_chunk(SESSION, 0, b"forged")
    with pytest.raises(AccessDenied, match="only a node"):
        await eve.complete_recording(SESSION, RecordingDone(user="eve"))
    assert await server.recordings.list() == []


async def test_the_editor_preset_reaches_no_host_call(server: AuthServer) -> None:
    """The editor's ``*`` rules stand for what a role may name, not the hosts' own calls."""
    ed = await as_user(server, "ed", [], roles=("editor",))
    with pytest.raises(AccessDenied, match="only a proxy"):
        await ed.set_export_cursor(ROOT, "x")
    with pytest.raises(AccessDenied, match="only a node"):
        await ed.put_recording_chunk(SESSION, 0, b"x")


async def test_only_the_right_kind_of_host_makes_a_host_call(server: AuthServer) -> None:
    node = await as_host(server, "node", "hid-1")
    with pytest.raises(AccessDenied, match="a node may not export event"):
        await node.set_export_cursor(ROOT, "x")
    proxy = await as_host(server, "proxy", "proxy-hid")
    with pytest.raises(AccessDenied, match="a proxy may not upload recording"):
        await proxy.put_recording_chunk(SESSION, 0, b"x")
    await proxy.set_export_cursor(ROOT, "5/a")
    assert await proxy.export_cursor(ROOT) == "5/a"



async def test_a_removed_host_may_not_list_clusters(server: AuthServer) -> None:
    """Calls any caller may make still need a registered host (verb None)."""
    node = await as_host(server, "node", "hid-1")
    assert [c.name for c in await node.clusters()] == [CLUSTER]
    await server.delete_node("hid-1")
    with pytest.raises(AccessDenied, match="host hid-1 is not registered"):
        await node.clusters()


# --- what grants roles needs the privilege of granting them -------------------------------


def connector(name: str = "corp2") -> OIDCConnector:
    """A connector mapping every subject to editor."""
    return OIDCConnector.model_validate({
        "kind": "oidc", "metadata": {"name": name},
        "spec": {"issuer_url": ISSUER, "client_id": "gatehouse", "client_secret": "s",
                 "claims_to_roles": [{"claim": "sub", "value": "*", "roles": ["editor"]}]}})


def root_trust() -> TrustedCluster:
    """A trust mapping every root user to editor here."""
    return TrustedCluster.model_validate({
        "metadata": {"name": ROOT},
        "spec": {"token": "t" * 20, "proxy_addr": f"{ROOT}:3080",
                 "role_map": [{"remote": "*", "local": ["editor"]}]}})


@pytest.mark.parametrize("upsert", [False, True])
async def test_an_oidc_connector_needs_the_role_privilege(server: AuthServer,
                                                          upsert: bool) -> None:
    mallory = await as_user(server, "mallory", [{"resources": ["oidc"],
                                                 "verbs": ["create", "update"]}])
    with pytest.raises(AccessDenied, match=r"an oidc connector grants roles .* needs the `role` "
                                           r'privilege \("update" on "role"\)'):
        await mallory.put_resource(connector(), upsert=upsert)
    with pytest.raises(NotFound):
        await server.oidc.get("corp2")
    assert "oidc connector grants roles" in (await denials(server))[-1].message


async def test_a_trusted_cluster_needs_the_role_privilege(server: AuthServer) -> None:
    mallory = await as_user(server, "mallory", [{"resources": ["trusted_cluster"],
                                                 "verbs": ["create", "update"]}])
    for upsert in (False, True):
        with pytest.raises(AccessDenied, match=r"a trusted_cluster grants roles .* needs the "
                                               r"`role` privilege"):
            await mallory.put_resource(root_trust(), upsert=upsert)
    assert await server.trust.trusted_clusters() == []


async def test_a_proxy_token_needs_the_role_privilege(server: AuthServer) -> None:
    mallory = await as_user(server, "mallory", [{"resources": ["token"], "verbs": ["create"]}])
    with pytest.raises(AccessDenied, match=r"a proxy token .* needs the `role` privilege"):
        await mallory.add_token(TokenRequest(type="proxy"))
    assert [t.spec.type for t in await server.tokens.list()] == []
    assert (await mallory.add_token(TokenRequest(type="node"))).type == "node"


async def test_an_editor_still_grants_roles_these_ways(server: AuthServer) -> None:
    ed = await as_user(server, "ed", [], roles=("editor",))
    assert await ed.put_resource(connector(), upsert=False)
    assert await ed.put_resource(root_trust(), upsert=False)
    assert (await ed.add_token(TokenRequest(type="proxy"))).type == "proxy"
    assert [tc.metadata.name for tc in await server.trust.trusted_clusters()] == [ROOT]


async def test_a_token_ttl_past_the_last_date_is_a_bad_parameter(server: AuthServer) -> None:
    # Before, now + 99999999d overflowed: a 500 with a traceback in the auth's log.
    ed = await as_user(server, "ed", [], roles=("editor",))
    with pytest.raises(BadParameter, match=r"^ttl: '99999999d' is further ahead than "
                                           r"9999-12-31, the last date there is$"):
        await ed.add_token(TokenRequest(type="node", ttl="99999999d"))
    assert await server.tokens.list() == []
    assert (await ed.add_token(TokenRequest(type="node", ttl="8760h"))).type == "node"


async def test_a_remote_cluster_s_labels_need_the_role_privilege(server: AuthServer) -> None:
    """A leaf's labels decide which root users reach it (roles' cluster_labels): setting
    them widens access as a role grant does."""
    relabel = RemoteCluster(metadata=Metadata(name="us-east-1a", labels={"env": "dev"}))
    mallory = await as_user(server, "mallory", [{"resources": ["remote_cluster"],
                                                 "verbs": ["create", "update"]}])
    with pytest.raises(AccessDenied, match=r"labels .* needs the `role` privilege"):
        await mallory.put_resource(relabel, upsert=True)
    ed = await as_user(server, "ed", [], roles=("editor",))
    with pytest.raises(NotFound, match="remote_cluster us-east-1a not found"):
        await ed.put_resource(relabel, upsert=True)  # authorized; there is no such leaf
