"""Fuzzing role maps (rolemap.py, types/trusted_cluster.py): any rule a trusted cluster
validates maps any remote roles without raising; what comes out are stripped, non-empty
names, split into those the leaf has and those it lacks; only AccessDenied refuses."""

from __future__ import annotations

import contextlib
from collections.abc import Iterable

import pydantic
from hypothesis import example, given
from hypothesis import strategies as st

from gatehouse import rolemap
from gatehouse.errors import AccessDenied
from gatehouse.types.trusted_cluster import RoleMapping
from tests.fuzz.budget import fuzz

_roles = st.text(st.characters(exclude_categories=()), max_size=10)
_remotes = st.sampled_from(["*", "dev-*", "^dev-(.*)$", "^(a+)(b*)$", "^(?P<x>.)$", "^(.)$",
                            "admin", "^[$", "^(.*)-(.*)$"]) | _roles
_locals = st.sampled_from(["$1", "${2}", "team-$1", "$0", "$10", "$" + "9" * 5000, "x$1y",
                           "${" + "1" * 30 + "}"]) | _roles


@st.composite
def role_maps(draw: st.DrawFn) -> list[RoleMapping]:
    rules = []
    for _ in range(draw(st.integers(0, 4))):
        raw = {"remote": draw(_remotes), "local": draw(st.lists(_locals, max_size=3))}
        # What a trusted cluster refuses to store never reaches map_roles.
        with contextlib.suppress(pydantic.ValidationError):
            rules.append(RoleMapping.model_validate(raw))
    return rules


@fuzz(300)
@given(role_maps(), st.lists(_roles | st.sampled_from(["dev-a", "ab", "a-b", "x"]),
                             max_size=4), st.sets(_roles | st.sampled_from(["a", "team-a"])))
@example([RoleMapping(remote="^(.*)$", local=["$" + "9" * 5000])], ["x"], {"x"})
def test_any_role_map_maps_without_raising(
        rules: list[RoleMapping], remote: list[str], existing: set[str]) -> None:
    mapped = rolemap.map_roles(rules, remote, existing)
    assert set(mapped.roles) <= existing and not set(mapped.missing) & existing
    assert all(name and name == name.strip() for name in mapped.roles + mapped.missing)
    try:
        names = rolemap.resolve_roles(
            user="u", user_cluster="root", cert_roles=remote, local_cluster="leaf",
            user_exists=False, root=_Trust(rules), existing=existing)
    except AccessDenied:
        assert not mapped.roles
    else:
        assert names == mapped.roles


class _Trust:
    enabled = True

    def __init__(self, role_map: list[RoleMapping]) -> None:
        self.role_map = role_map

    def cluster_refusal(self, cert_roles: Iterable[str], cluster: str) -> str:
        return ""  # no cluster labels: the role map alone decides


@fuzz(200)
@given(_locals, st.lists(_roles, max_size=4))
def test_expand_never_raises(template: str, groups: list[str]) -> None:
    out = rolemap.expand(template, groups)
    if "$" not in template:
        assert out == template
