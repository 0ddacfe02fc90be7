"""Role mapping (ARCHITECTURE §5): what a root cluster's roles mean on a leaf. Pure.

Every rule is tried against every remote role and all matches add up. A rule's
``remote`` is exact text, a ``*`` glob, or a ``^regex$`` (RE2, full match) whose
groups ``$1``, ``${2}``... expand into the ``local`` names. An expansion that
yields an empty name is dropped; a local role the leaf does not have is skipped
and reported. Nothing mapped means access denied.
"""

from __future__ import annotations

import re
from collections.abc import Container, Iterable, Sequence
from dataclasses import dataclass

from gatehouse.errors import AccessDenied
from gatehouse.types.pattern import compile_pattern, is_regex, match_pattern
from gatehouse.types.trusted_cluster import RoleMapping

__all__ = ["MappedRoles", "expand", "map_roles", "require_mapped"]

_GROUP = re.compile(r"\$(?:(\d+)|\{(\d+)\})")


@dataclass(frozen=True)
class MappedRoles:
    roles: tuple[str, ...]  # local roles that exist, in first-mapped order
    missing: tuple[str, ...]  # local names a rule produced that the leaf does not have


def expand(template: str, groups: Sequence[str]) -> str:
    """``template`` with $N / ${N} replaced by group N (an absent group expands to "")."""

    def sub(m: re.Match[str]) -> str:
        index = int(m.group(1) or m.group(2))
        return groups[index] if index < len(groups) else ""

    return _GROUP.sub(sub, template)


def _locals_for(rule: RoleMapping, remote_role: str) -> list[str]:
    if is_regex(rule.remote):
        match = compile_pattern(rule.remote).fullmatch(remote_role)
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
