"""ID token claims to roles (rolemap.map_claims): role_map's matching over a claim's
values, deny by default with a reason a person can act on."""

from __future__ import annotations

import pytest

from gatehouse.errors import AccessDenied
from gatehouse.rolemap import claim_values, map_claims, require_claims_mapped
from gatehouse.types.oidc import ClaimMapping

RULES = [
    ClaimMapping(claim="groups", value="admins", roles=["admin"]),
    ClaimMapping(claim="groups", value="^dev-(.*)$", roles=["dev-$1", "access"]),
    ClaimMapping(claim="email", value="*@example.com", roles=["access"]),
]
EXISTING = {"admin", "access", "dev-payments"}


def test_exact_regex_and_glob_rules_add_up() -> None:
    claims = {"groups": ["dev-payments", "admins"], "email": "alice@example.com"}
    mapped = map_claims(RULES, claims, EXISTING)
    assert mapped.roles == ("admin", "dev-payments", "access")
    assert mapped.missing == ()


def test_roles_that_do_not_exist_are_reported_not_granted() -> None:
    mapped = map_claims(RULES, {"groups": ["dev-search"]}, EXISTING)
    assert mapped.roles == ("access",) and mapped.missing == ("dev-search",)


@pytest.mark.parametrize("claims", [
    {}, {"groups": []}, {"groups": ["staff"]}, {"groups": "ADMINS"},
    {"groups": [1, None, {"x": "admins"}]}, {"email": "alice@example.org"},
    {"groups": ["xadmins", "admins "]},
])
def test_no_match_means_no_roles(claims: dict[str, object]) -> None:
    mapped = map_claims(RULES, claims, EXISTING)
    assert mapped.roles == ()
    with pytest.raises(AccessDenied) as caught:
        require_claims_mapped(mapped, "bob@example.com", "corp")
    assert str(caught.value).startswith("no roles mapped for bob@example.com from connector corp")


def test_refusal_names_missing_roles() -> None:
    rules = [ClaimMapping(claim="groups", value="^dev-(.*)$", roles=["dev-$1"])]
    with pytest.raises(AccessDenied, match="names dev-search, which do not exist"):
        require_claims_mapped(map_claims(rules, {"groups": ["dev-search"]}, EXISTING),
                              "carol", "corp")


def test_claim_values() -> None:
    assert claim_values({"a": "x"}, "a") == ["x"]
    assert claim_values({"a": ["x", 2, "y"]}, "a") == ["x", "y"]
    assert claim_values({"a": True}, "a") == [] and claim_values({}, "a") == []
