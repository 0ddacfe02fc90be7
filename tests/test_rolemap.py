"""Role mapping: exact, glob, regex with $1, all matches add up, deny when nothing maps."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gatehouse.errors import AccessDenied, BadParameter
from gatehouse.rolemap import expand, map_roles, require_mapped
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
