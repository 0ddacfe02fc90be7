"""Leaf-local logins, the decision (pure): which root users a leaf certifies itself, for
which logins and how long; and how a certificate the leaf signed for a root user is
taken back to that root's trust at every use (rolemap.holder_cluster)."""

from __future__ import annotations

import datetime as dt

import pytest

from gatehouse.auth.leaflogin import decide
from gatehouse.errors import AccessDenied
from gatehouse.pki import x509
from gatehouse.rolemap import holder_cluster
from gatehouse.types.cluster_access import ClusterAccess, ClusterRule
from gatehouse.types.role import Role
from gatehouse.types.trusted_cluster import RoleMapping
from gatehouse.types.yaml_io import parse_resources
from gatehouse.wire.trust import RootCluster

NOW = dt.datetime(2026, 12, 6, 12, 0, tzinfo=dt.UTC)
ROOT, LEAF = "sso.example.com", "us-east-1a"
ROLES_YAML = """kind: role
version: v1
metadata: {name: deployer}
spec:
  options: {max_session_ttl: 30m}
  allow:
    logins: [deploy, "{{internal.logins}}"]
    node_labels: {"*": "*"}
---
kind: role
version: v1
metadata: {name: viewer}
spec:
  allow:
    node_labels: {"*": "*"}
"""


def _roles() -> dict[str, Role]:
    found = [r for r in parse_resources(ROLES_YAML) if isinstance(r, Role)]
    return {r.metadata.name: r for r in found}


# The root's word on this leaf: its roles `access` and `auditor` select every cluster.
EVERY = ClusterAccess(labels={"env": "prod"},
                      roles={name: ClusterRule(allow={"*": "*"})
                             for name in ("access", "auditor")})


def _root(*, enabled: bool = True, access: ClusterAccess | None = EVERY,
          local: str = "deployer") -> RootCluster:
    return RootCluster(name=ROOT, enabled=enabled, proxy_addr="root:3080",
                       role_map=(RoleMapping(remote="access", local=[local]),),
                       host_ca_tls="", access=access)


def _alice(**changes: object) -> x509.Identity:
    fields: dict[str, object] = dict(
        kind="user", name="alice", cluster=ROOT, roles=("access",), logins=("root",),
        traits={"logins": ["root"]}, route_to_cluster=LEAF,
        expires=NOW + dt.timedelta(hours=8))
    fields.update(changes)
    return x509.Identity(**fields)  # type: ignore[arg-type]


def test_the_leaf_roles_give_logins_the_root_never_knew() -> None:
    grant = decide(_alice(), _root(), LEAF, _roles(), NOW)
    ident = grant.identity
    assert ident.logins == ("deploy", "root")
    assert (ident.cluster, ident.origin, ident.name) == (LEAF, ROOT, "alice")
    assert ident.roles == ("access",)  # the root's: the leaf maps them at every use
    assert grant.roles == ("deployer",)


def test_the_lifetime_is_clamped_to_the_root_certificate_and_max_session_ttl() -> None:
    assert decide(_alice(), _root(), LEAF, _roles(), NOW).ttl == dt.timedelta(minutes=30)
    soon = _alice(expires=NOW + dt.timedelta(minutes=5))
    assert decide(soon, _root(), LEAF, _roles(), NOW).ttl == dt.timedelta(minutes=5)
    with pytest.raises(AccessDenied, match="root certificate has expired"):
        decide(_alice(expires=NOW), _root(), LEAF, _roles(), NOW)


@pytest.mark.parametrize(("ident", "root", "reason"), [
    (_alice(), None, "cluster sso.example.com is not trusted here"),
    (_alice(), _root(enabled=False), "trust in cluster sso.example.com is disabled"),
    (_alice(roles=("auditor",)), _root(), "not mapped|no roles"),
    (_alice(), _root(access=None), "not yet received its root's cluster labels"),
    (_alice(origin=ROOT, cluster=LEAF), _root(), "not one this cluster issued"),
    (_alice(cluster=LEAF), _root(), "a user of this cluster"),
    (_alice(kind="host"), _root(), "root cluster user's certificate"),
    (_alice(), _root(local="viewer"), "give user alice no logins"),
    (_alice(traits={}), _root(local="viewer"), "no logins"),
])
def test_anything_else_is_refused_saying_why(ident: x509.Identity, root: RootCluster | None,
                                             reason: str) -> None:
    with pytest.raises(AccessDenied, match=reason):
        decide(ident, root, LEAF, _roles(), NOW)


def test_the_roots_cluster_labels_keep_the_user_off_the_leaf() -> None:
    access = ClusterAccess(labels={"env": "staging"},
                           roles={"access": ClusterRule(allow={"env": "prod"})})
    with pytest.raises(AccessDenied, match="may not use this cluster"):
        decide(_alice(), _root(access=access), LEAF, _roles(), NOW)


def test_a_leaf_signed_certificate_speaks_for_its_origin_only_where_it_was_signed() -> None:
    assert holder_cluster(LEAF, "", LEAF) == LEAF  # a local user
    assert holder_cluster(ROOT, "", LEAF) == ROOT  # a root-signed certificate
    assert holder_cluster(LEAF, ROOT, LEAF) == ROOT  # a leaf-local login: the root's user
    with pytest.raises(AccessDenied, match="only the cluster it is used on"):
        holder_cluster(ROOT, "other", LEAF)  # a root cannot vouch for a third cluster's user
    with pytest.raises(AccessDenied, match="names this cluster"):
        holder_cluster(LEAF, LEAF, LEAF)
