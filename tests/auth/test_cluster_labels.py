"""The root's side of cluster labels, on an auth with a memory backend: a leaf's labels
are set with `create -f` of a remote_cluster (what `gatectl update rc/NAME
--set-labels` sends), audited; a user sees in `gsh clusters` and the audit log only the
leaves their roles' cluster_labels select; the trust snapshot carries the labels that
the root proxy routes by and pushes to each leaf."""

from __future__ import annotations

import datetime as dt
import uuid

import pytest

from gatehouse.auth import intake, trustjoin
from gatehouse.auth.authz import AuthWithRoles
from gatehouse.auth.identify import Caller
from gatehouse.auth.server import AuthServer
from gatehouse.auth.trustview import build_snapshot
from gatehouse.client.authclient import AuthClient
from gatehouse.errors import AccessDenied, AlreadyExists, BadParameter, NotFound
from gatehouse.pki import x509
from gatehouse.services.events import AuditEvent
from gatehouse.services.hosts import HostRecord
from gatehouse.types.cluster_access import ClusterAccess, ClusterRule
from gatehouse.types.remote_cluster import RemoteCluster
from gatehouse.types.resource import Metadata
from gatehouse.types.trusted_cluster import TrustedCluster
from gatehouse.types.user import User, UserSpec
from gatehouse.wire.authapi import EventQuery, LeafInfo
from tests.auth.conftest import API
from tests.auth.samples import CLUSTER, add_role, leaf_host_ca

PROD, STAGING = "us-east-1a", "us-east-1b"


def _caller(name: str, *roles: str, kind: str = "user") -> Caller:
    return Caller(x509.Identity(kind=kind, name=name, cluster=CLUSTER, roles=roles), "10.0.0.1:1")


def _labelled(name: str, **labels: str) -> RemoteCluster:
    return RemoteCluster(metadata=Metadata(name=name, labels=labels))


@pytest.fixture
async def root(server: AuthServer) -> AuthServer:
    """Two joined leaves labelled env=prod and env=staging, an event from each, and a
    user pat whose one role selects prod leaves."""
    admin = AuthWithRoles(server, _caller("admin-1", "admin", kind="host"))
    await server.hosts.put("admin-1", HostRecord(role="admin", nodename="admin"))
    for leaf, env in ((PROD, "prod"), (STAGING, "staging")):
        token = await server.create_token("trusted_cluster", dt.timedelta(hours=1))
        await trustjoin.accept_leaf(server, token.secret, leaf_host_ca(leaf), "10.0.0.9")
        assert await admin.put_resource(_labelled(leaf, env=env), upsert=True) is False
        event = AuditEvent(event="session.start", time=server.clock.now(), cluster=leaf,
                           id=str(uuid.uuid4()), user="pat", session_id=str(uuid.uuid4()))
        key = f"{int(server.clock.now().timestamp() * 1e6):020d}/{event.id}"
        stored = await intake.store_leaf_events(server, leaf, [
            {"key": key, "event": event.to_json_obj()}])
        assert stored.stored == 1
    await add_role(server, "prod-only", allow={
        "cluster_labels": {"env": "prod"},
        "rules": [{"resources": ["event"], "verbs": ["list"]}]})
    await server.users.create(User(metadata=Metadata(name="pat"),
                                   spec=UserSpec(roles=["prod-only"])))
    return server


def _admin(server: AuthServer) -> AuthWithRoles:
    return AuthWithRoles(server, _caller("admin-1", "admin", kind="host"))


async def test_a_user_sees_only_the_leaves_their_cluster_labels_select(root: AuthServer
                                                                       ) -> None:
    pat = AuthWithRoles(root, _caller("pat", "prod-only"))
    assert [c.name for c in await pat.clusters()] == [CLUSTER, PROD]
    assert sorted(c.name for c in await _admin(root).clusters()) == [CLUSTER, PROD, STAGING]
    await root.users.create(User(metadata=Metadata(name="alice"),
                                 spec=UserSpec(roles=["access"])))
    alice = AuthWithRoles(root, _caller("alice", "access"))  # says nothing: every leaf
    assert sorted(c.name for c in await alice.clusters()) == [CLUSTER, PROD, STAGING]


async def test_the_audit_log_hides_the_other_leaves_events(root: AuthServer) -> None:
    pat = AuthWithRoles(root, _caller("pat", "prod-only"))
    listed = await pat.search_events(EventQuery(types=["session.start"]))
    assert [e["cluster"] for e in listed.events] == [PROD]
    assert [e["cluster"] for e in (await pat.search_events(EventQuery(cluster=PROD))).events
            ] == [PROD]
    with pytest.raises(AccessDenied) as info:
        await pat.search_events(EventQuery(cluster=STAGING))
    assert str(info.value) == (f"user pat may not see cluster {STAGING}: their roles' "
                               "cluster_labels do not select it")
    [denied] = (await root.audit.search(types=["access.denied"])).events
    assert (denied.user, denied.fields["cluster"]) == ("pat", STAGING)


async def test_labels_are_set_whole_and_audited_and_a_remote_cluster_is_never_made(
        root: AuthServer) -> None:
    admin = _admin(root)
    await admin.put_resource(_labelled(PROD, customer="acme"), upsert=True)  # env removed
    [rc] = await admin.get_resources("remote_cluster", PROD)
    assert rc.metadata.labels == {"customer": "acme"}
    [event] = [e for e in (await root.audit.search(types=["resource.update"])).events
               if e.fields.get("labels") == {"customer": "acme"}]
    assert event.fields["labels_before"] == {"env": "prod"}
    with pytest.raises(AlreadyExists, match="use `gatectl create -f` or `gatectl update"):
        await admin.put_resource(_labelled(PROD), upsert=False)
    with pytest.raises(BadParameter, match="is made by a leaf joining this cluster"):
        await admin.put_resource(_labelled("us-west-2"), upsert=False)
    with pytest.raises(NotFound):
        await admin.put_resource(_labelled("us-west-2"), upsert=True)
    pat = AuthWithRoles(root, _caller("pat", "prod-only"))
    with pytest.raises(AccessDenied):  # a rule on remote_cluster is needed
        await pat.put_resource(_labelled(STAGING, env="prod"), upsert=True)


async def test_the_snapshot_carries_what_the_root_routes_by_and_pushes(root: AuthServer
                                                                     ) -> None:
    snapshot = await build_snapshot(root)
    assert snapshot.leaf_labels == {PROD: {"env": "prod"}, STAGING: {"env": "staging"}}
    assert snapshot.leaf_refusal(["prod-only"], PROD) == ""
    assert snapshot.leaf_refusal(["prod-only"], STAGING) == (
        f"roles prod-only do not select cluster {STAGING} (labels env=staging)")
    assert snapshot.leaf_refusal(["prod-only"], "not-a-leaf") == ""  # unknown: said elsewhere
    pushed = snapshot.cluster_access(STAGING)
    assert pushed.labels == {"env": "staging"}
    assert pushed.roles["prod-only"].allow == {"env": "prod"}
    assert pushed.roles["access"].allow == {"*": "*"}


async def test_over_https_a_proxy_hands_on_its_roots_word_and_reports_what_leaves_say(
        api: API, server: AuthServer) -> None:
    """The two calls the tunnel's new messages end in, through AuthClient and the API
    handlers (a proxy in its auth's process makes them in-process: the integration)."""
    proxy = AuthClient(await api.host("proxy", "proxy-hid", "proxy1", []))
    root = TrustedCluster.model_validate({"metadata": {"name": "root.example.com"}, "spec": {
        "token": "t", "proxy_addr": "root.example.com:3080"}})
    await server.trust.store_root(root, [])
    said = ClusterAccess(labels={"env": "prod"},
                         roles={"ops": ClusterRule(allow={"env": "prod"})})
    await proxy.put_cluster_access("root.example.com", said)
    assert await server.trust.root_access("root.example.com") == said
    with pytest.raises(NotFound):
        await proxy.put_cluster_access("elsewhere.example.com", said)

    token = await server.create_token("trusted_cluster", dt.timedelta(hours=1))
    await trustjoin.accept_leaf(server, token.secret, leaf_host_ca(PROD), "10.0.0.9")
    await proxy.report_tunnels([PROD], {PROD: LeafInfo(session_recording="off",
                                                        version="9.9")})
    [rc] = await server.trust.remote_clusters()
    assert (rc.status.connection, rc.status.session_recording, rc.status.version) == (
        "online", "off", "9.9")
    with pytest.raises(BadParameter, match="version"):
        await proxy.report_tunnels([PROD], {PROD: LeafInfo.model_construct(
            session_recording="off", version="x" * 65)})
