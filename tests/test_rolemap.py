"""Role mapping: exact, glob, regex with $1, all matches add up, deny when nothing maps."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gatehouse.errors import AccessDenied, BadParameter
from gatehouse.rolemap import expand, map_roles, require_mapped, resolve_roles
from gatehouse.types.trusted_cluster import RoleMapping
from gatehouse.types.yaml_io import parse_resources

LEAF_ROLES = {"access", "auditor", "visitor", "team-payments", "team-search", "ops"}

SEED_MAP = [
    RoleMapping(remote="admin", local=["access", "auditor"]),
    RoleMapping(remote="^dev-(.*)$", local=["team-$1"]),
    RoleMapping(remote="*", local=["visitor"]),
]


def test_exact_regex_and_glob_add_up() -> None:
    mapped = map_roles(SEED_MAP, ["admin", "dev-payments"], LEAF_ROLES)
    assert mapped.roles == ("access", "auditor", "visitor", "team-payments")
    assert mapped.missing == ()


def test_regex_group_naming_a_missing_role_is_skipped_and_reported() -> None:
    mapped = map_roles(SEED_MAP, ["dev-unknown"], LEAF_ROLES)
    assert mapped.roles == ("visitor",)
    assert mapped.missing == ("team-unknown",)


def test_exact_match_is_not_a_prefix_match() -> None:
    rules = [RoleMapping(remote="admin", local=["ops"])]
    assert map_roles(rules, ["admins", "xadmin"], LEAF_ROLES).roles == ()
    assert map_roles(rules, ["admin"], LEAF_ROLES).roles == ("ops",)


def test_glob_inside_a_string() -> None:
    rules = [RoleMapping(remote="dev-*-ro", local=["auditor"])]
    assert map_roles(rules, ["dev-search-ro"], LEAF_ROLES).roles == ("auditor",)
    assert map_roles(rules, ["dev-search-rw"], LEAF_ROLES).roles == ()


def test_regex_is_a_full_match_and_empty_expansion_is_dropped() -> None:
    rules = [RoleMapping(remote="^team-(.*)$", local=["$1", "${1}"])]
    # "team-" captures "", so both expansions are empty and dropped.
    assert map_roles(rules, ["team-"], LEAF_ROLES) .roles == ()
    assert map_roles(rules, ["xteam-ops"], LEAF_ROLES).roles == ()
    assert map_roles(rules, ["team-ops"], LEAF_ROLES).roles == ("ops",)


def test_nothing_mapped_is_denied_with_a_reason() -> None:
    rules = [RoleMapping(remote="admin", local=["access"])]
    mapped = map_roles(rules, ["dev"], LEAF_ROLES)
    reason = "no roles mapped for remote user alice from cluster sso.example.com"
    with pytest.raises(AccessDenied, match=re.escape(reason)):
        require_mapped(mapped, "alice", "sso.example.com")


def test_expand_groups() -> None:
    assert expand("team-$1-$2", ["all", "a", "b"]) == "team-a-b"
    assert expand("x${1}y$3", ["all", "1"]) == "x1y"
    assert expand("plain", ["all"]) == "plain"


def test_role_map_parsed_from_yaml_rejects_bad_regex() -> None:
    text = """
kind: trusted_cluster
version: v1
metadata: {name: sso.example.com}
spec:
  token: abc
  proxy_addr: sso.example.com:3080
  role_map:
    - {remote: "^dev-(.*$", local: [x]}
"""
    with pytest.raises(BadParameter, match="regular expression"):
        parse_resources(text)


_names = st.text(alphabet="abcdefgh-", min_size=1, max_size=12)


@settings(max_examples=100, deadline=None)
@given(remote=st.lists(_names, max_size=6), existing=st.sets(_names, max_size=6))
def test_star_maps_every_role_and_only_existing_roles_come_out(
    remote: list[str], existing: set[str]
) -> None:
    rules = [RoleMapping(remote="*", local=sorted(existing) or ["nothing-here"])]
    mapped = map_roles(rules, remote, existing)
    assert set(mapped.roles) <= existing
    if remote and existing:
        assert set(mapped.roles) == existing
    if not remote:
        assert mapped.roles == ()


@settings(max_examples=100, deadline=None)
@given(remote=st.lists(_names, max_size=6))
def test_mapping_is_monotonic_in_rules(remote: list[str]) -> None:
    """Adding a rule never takes a role away (all matches add up)."""
    base = [RoleMapping(remote="^a(.*)$", local=["team-$1"])]
    more = [*base, RoleMapping(remote="b*", local=["ops"])]
    existing = {f"team-{r[1:]}" for r in remote} | {"ops"}
    assert set(map_roles(base, remote, existing).roles) <= set(
        map_roles(more, remote, existing).roles)


@settings(max_examples=50, deadline=None)
@given(value=st.text(max_size=200))
def test_hostile_role_names_never_raise(value: str) -> None:
    rules = [RoleMapping(remote="^(a+)+$", local=["$1"]), *SEED_MAP]
    map_roles(rules, [value, "a" * 5000 + "!"], LEAF_ROLES)


# --- resolve_roles: the one rule the auth and the nodes both decide with -------------------


@dataclass(frozen=True)
class _Root:
    enabled: bool
    role_map: tuple[RoleMapping, ...]
    refusal: str = ""  # what the root's cluster labels say of this user here

    def cluster_refusal(self, cert_roles: Iterable[str], cluster: str) -> str:
        assert cluster == "leaf"  # asked about this cluster
        return self.refusal


_ADMIN_TO_ACCESS = (RoleMapping(remote="admin", local=["access"]),)


def _resolve(cluster: str, *, exists: bool = True, root: _Root | None = None,
             roles: tuple[str, ...] = ("admin",)) -> tuple[str, ...]:
    return resolve_roles(user="alice", user_cluster=cluster, cert_roles=roles,
                         local_cluster="leaf", user_exists=exists, root=root,
                         existing={"access", "auditor"})


def test_a_local_user_keeps_the_certificates_roles_while_they_exist() -> None:
    assert _resolve("leaf", roles=("access", "ghost")) == ("access", "ghost")
    with pytest.raises(AccessDenied, match="user alice no longer exists"):
        _resolve("leaf", exists=False)


def test_a_root_user_is_mapped_only_through_an_enabled_trust() -> None:
    assert _resolve("root", root=_Root(True, _ADMIN_TO_ACCESS)) == ("access",)
    with pytest.raises(AccessDenied, match="cluster root is not trusted here"):
        _resolve("root", root=None)
    with pytest.raises(AccessDenied, match="trust in cluster root is disabled"):
        _resolve("root", root=_Root(False, _ADMIN_TO_ACCESS))


def test_a_root_user_whom_no_rule_maps_is_denied_with_the_reason() -> None:
    with pytest.raises(AccessDenied, match="no roles mapped for remote user alice"):
        _resolve("root", root=_Root(True, _ADMIN_TO_ACCESS), roles=("dev",))
    missing = (RoleMapping(remote="admin", local=["nope"]),)
    with pytest.raises(AccessDenied, match="nope, which do not exist here"):
        _resolve("root", root=_Root(True, missing))


def test_the_roots_cluster_labels_keep_a_root_user_off_this_cluster_before_any_map() -> None:
    with pytest.raises(AccessDenied) as info:
        _resolve("root", root=_Root(True, _ADMIN_TO_ACCESS, refusal="not a prod leaf"))
    assert str(info.value) == ("root user alice from cluster root may not use this cluster: "
                               "not a prod leaf")


def test_a_user_exists_flag_does_not_let_a_root_user_skip_the_map() -> None:
    # The root's name never counts as this cluster's, whatever the certificate says.
    with pytest.raises(AccessDenied):
        _resolve("root", exists=True, root=None, roles=("access",))
