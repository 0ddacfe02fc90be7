"""Role mapping (ARCHITECTURE §5): what a root cluster's roles mean on a leaf, and
which roles an SSO user's ID token claims give (the same rules, a claim's values
standing for the remote roles). Pure.

Every rule is tried against every remote role and all matches add up. A rule's
``remote`` is exact text, a ``*`` glob, or a ``^regex$`` (RE2, full match) whose
groups ``$1``, ``${2}``... expand into the ``local`` names. An expansion that
yields an empty name is dropped; a local role the leaf does not have is skipped
and reported. Nothing mapped means access denied.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Container, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from gatehouse.errors import AccessDenied
from gatehouse.types.oidc import ClaimMapping
from gatehouse.types.pattern import full_match, is_regex, match_pattern
from gatehouse.types.trusted_cluster import RoleMapping

__all__ = ["MappedRoles", "Trust", "claim_values", "expand", "holder_cluster", "map_claims",
           "map_roles", "require_claims_mapped", "require_mapped", "resolve_roles"]

log = logging.getLogger(__name__)

_GROUP = re.compile(r"\$(?:(\d+)|\{(\d+)\})")


@dataclass(frozen=True)
class MappedRoles:
    roles: tuple[str, ...]  # local roles that exist, in first-mapped order
    missing: tuple[str, ...]  # local names a rule produced that the leaf does not have


def expand(template: str, groups: Sequence[str]) -> str:
    """``template`` with $N / ${N} replaced by group N (an absent group expands to "")."""

    def sub(m: re.Match[str]) -> str:
        digits = (m.group(1) or m.group(2)).lstrip("0") or "0"
        # More digits than any group count: absent (and int() refuses 4300 and more).
        return groups[int(digits)] if len(digits) <= 6 and int(digits) < len(groups) else ""

    return _GROUP.sub(sub, template)


def _locals_for(rule: RoleMapping, remote_role: str) -> list[str]:
    if is_regex(rule.remote):
        match = full_match(rule.remote, remote_role)
        if match is None:
            return []
        groups = [remote_role, *(g or "" for g in match.groups())]
        return [expand(local, groups) for local in rule.local]
    if match_pattern(rule.remote, remote_role):
        return list(rule.local)
    return []


def map_roles(
    role_map: Iterable[RoleMapping], remote_roles: Iterable[str], existing: Container[str]
) -> MappedRoles:
    rules = list(role_map)
    roles: dict[str, None] = {}
    missing: dict[str, None] = {}
    for remote_role in remote_roles:
        for rule in rules:
            for name in _locals_for(rule, remote_role):
                name = name.strip()
                if not name:
                    continue
                if name in existing:
                    roles[name] = None
                else:
                    missing[name] = None
    return MappedRoles(tuple(roles), tuple(missing))


def require_mapped(mapped: MappedRoles, user: str, cluster: str) -> tuple[str, ...]:
    """The mapped roles, or AccessDenied with the reason a person can act on."""
    if mapped.roles:
        return mapped.roles
    reason = f"no roles mapped for remote user {user} from cluster {cluster}"
    if mapped.missing:
        reason += f" (the role map names {', '.join(mapped.missing)}, which do not exist here)"
    raise AccessDenied(reason)


def claim_values(claims: Mapping[str, object], name: str) -> list[str]:
    """A claim's values: a string, or the strings of a list (other values are ignored)."""
    value = claims.get(name)
    if isinstance(value, str):
        return [value]
    if isinstance(value, list):
        return [v for v in value if isinstance(v, str)]
    return []


def map_claims(rules: Iterable[ClaimMapping], claims: Mapping[str, object],
               existing: Container[str]) -> MappedRoles:
    """The roles an ID token's ``claims`` get by a connector's claims_to_roles."""
    roles: dict[str, None] = {}
    missing: dict[str, None] = {}
    for rule in rules:
        mapped = map_roles([rule.as_role_mapping()], claim_values(claims, rule.claim), existing)
        roles.update(dict.fromkeys(mapped.roles))
        missing.update(dict.fromkeys(mapped.missing))
    return MappedRoles(tuple(roles), tuple(missing))


def require_claims_mapped(mapped: MappedRoles, user: str, connector: str) -> tuple[str, ...]:
    """The mapped roles, or AccessDenied: "no roles mapped for USER from connector NAME"."""
    if mapped.roles:
        return mapped.roles
    reason = f"no roles mapped for {user} from connector {connector}"
    if mapped.missing:
        reason += f" (claims_to_roles names {', '.join(mapped.missing)}, which do not exist)"
    raise AccessDenied(reason)


class Trust(Protocol):
    """What a leaf knows of a root it trusts, for resolving that root's users."""

    @property
    def enabled(self) -> bool: ...
    @property
    def role_map(self) -> Sequence[RoleMapping]: ...
    def cluster_refusal(self, cert_roles: Iterable[str], cluster: str) -> str:
        """Why the root's cluster labels keep a holder of ``cert_roles`` off ``cluster``
        ("" if they do not)."""
        ...


def holder_cluster(signer: str, origin: str, local_cluster: str) -> str:
    """The cluster whose user holds a certificate that ``signer``'s user CA signed, with
    ``origin`` its origin extension: a leaf-local login's certificate (signed here, for a
    user of root ``origin``) speaks for that root's user, and stands or falls with the
    trust in it, as a root-signed one does. Only this cluster may certify another's
    user; AccessDenied otherwise."""
    if not origin:
        return signer
    if signer != local_cluster:
        raise AccessDenied(f"a certificate of cluster {signer} names origin {origin[:80]!r}: "
                           "only the cluster it is used on may certify another's user")
    if origin == local_cluster:
        raise AccessDenied(f"a certificate names this cluster ({local_cluster}) as its origin")
    return origin


def resolve_roles(
    *,
    user: str,
    user_cluster: str,
    cert_roles: Iterable[str],
    local_cluster: str,
    user_exists: bool,
    root: Trust | None,
    existing: Container[str],
) -> tuple[str, ...]:
    """The names of a certificate holder's roles on this cluster (the one rule, for the
    auth and the nodes alike): a local user's own roles while the user exists; a root
    user's roles mapped by that root's role map while the trust is enabled. AccessDenied
    says why not, as it does when the root's cluster labels keep the user off this
    cluster. ``root`` is the trust in ``user_cluster`` (None: not trusted here)."""
    if user_cluster == local_cluster:
        if not user_exists:
            raise AccessDenied(f"user {user} no longer exists")
        return tuple(cert_roles)
    if root is None:
        raise AccessDenied(f"cluster {user_cluster} is not trusted here")
    if not root.enabled:
        raise AccessDenied(f"trust in cluster {user_cluster} is disabled")
    cert_roles = tuple(cert_roles)
    if refusal := root.cluster_refusal(cert_roles, local_cluster):
        raise AccessDenied(f"root user {user} from cluster {user_cluster} may not use this "
                           f"cluster: {refusal}")
    mapped = map_roles(root.role_map, cert_roles, existing)
    if mapped.missing:
        log.warning("role map of %s names missing roles: %s", user_cluster,
                    ", ".join(mapped.missing))
    return require_mapped(mapped, user, user_cluster)
