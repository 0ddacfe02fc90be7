"""Access decisions over a user's roles: SSH logins on nodes, leaf clusters, and API
calls. Pure.

Every decision denies by default, and a matching deny condition in any role beats
every allow. A ``Decision`` carries a sentence saying why, for the audit log and
for the user.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from gatehouse.errors import BadParameter
from gatehouse.types.cluster_access import ClusterAccess
from gatehouse.types.pattern import match_pattern
from gatehouse.types.role import RULE_RESOURCES, RULE_VERBS, WILDCARD, Role, RoleConditions
from gatehouse.types.template import UserTraits, parse_template

__all__ = [
    "Decision",
    "allowed_logins",
    "allows_port_forwarding",
    "can_see_node",
    "check_cluster_access",
    "check_file_transfer",
    "check_rule",
    "check_ssh_access",
    "interpolate",
    "labels_match",
    "max_session_ttl",
    "recording_required",
]


@dataclass(frozen=True)
class Decision:
    allowed: bool
    reason: str


def interpolate(values: Iterable[str], traits: UserTraits) -> list[str]:
    """``values`` with trait templates expanded; malformed templates and empty results dropped."""
    result: list[str] = []
    for value in values:
        try:
            template = parse_template(value)
        except BadParameter:
            continue
        expanded = [value] if template is None else template.expand(traits)
        result.extend(item for item in expanded if item and item not in result)
    return result


def labels_match(selector: Mapping[str, str | Sequence[str]], labels: Mapping[str, str]) -> bool:
    """Whether a node with ``labels`` is selected: every key of ``selector`` must match.

    Values are exact, ``*`` globs, ``^regex$`` (full match, RE2) or lists of those
    (any of). ``{"*": "*"}`` selects every node; an empty selector selects none.
    """
    if not selector:
        return False
    for key, wanted in selector.items():
        patterns = [wanted] if isinstance(wanted, str) else list(wanted)
        if key == WILDCARD:
            if WILDCARD not in patterns:  # roles reject this; fail closed if one slips by
                return False
            continue
        value = labels.get(key)
        if value is None or not any(match_pattern(p, value) for p in patterns):
            return False
    return True


def check_ssh_access(
    roles: Sequence[Role], *, login: str, node_labels: Mapping[str, str],
    traits: UserTraits
) -> Decision:
    """May a user holding ``roles`` (and ``traits``) log in as ``login`` on this node?"""
    if not roles:
        return Decision(False, "the user has no roles")
    if not login:
        return Decision(False, "no login given")
    for role in roles:
        deny = role.spec.deny
        if login in interpolate(deny.logins, traits):
            return Decision(False, f'denied by role {role.name}: login "{login}"')
        if labels_match(deny.node_labels, node_labels):
            return Decision(
                False, f"denied by role {role.name}: node labels {_show_labels(node_labels)}"
            )
    with_login = [role for role in roles if login in interpolate(role.spec.allow.logins, traits)]
    if not with_login:
        return Decision(False, f'login "{login}" is not allowed by roles {_names(roles)}')
    for role in with_login:
        if labels_match(role.spec.allow.node_labels, node_labels):
            return Decision(True, f'login "{login}" allowed by role {role.name}')
    return Decision(
        False,
        f'roles {_names(with_login)} allow login "{login}" but not on a node with labels '
        f"{_show_labels(node_labels)}",
    )


def can_see_node(roles: Sequence[Role], node_labels: Mapping[str, str]) -> bool:
    """Whether a node belongs in the user's listing: some role selects it and none denies it."""
    return not any(labels_match(r.spec.deny.node_labels, node_labels) for r in roles) and any(
        labels_match(r.spec.allow.node_labels, node_labels) for r in roles
    )


def check_cluster_access(access: ClusterAccess | None, roles: Iterable[str],
                         cluster: str) -> Decision:
    """May a root user holding the root roles ``roles`` see and reach leaf ``cluster``,
    whose labels and the root roles' cluster_labels ``access`` holds? The root decides so
    for its listings and routing, and the leaf again for a root certificate presented to
    it (None: it has no word from its root yet: denied). A deny that matches beats any
    allow; a role the root does not have grants nothing."""
    if access is None:
        return Decision(False, f"cluster {cluster} has not yet received its root's cluster "
                               "labels and roles (they come over its tunnel to the root)")
    names = list(dict.fromkeys(roles))
    held = [(name, access.roles[name]) for name in names if name in access.roles]
    if not held:
        return Decision(False, f"cluster {cluster}: none of the roles "
                               f"{', '.join(names) or '(none)'} exists at the root")
    labels = _show_labels(access.labels)
    for name, rule in held:
        if labels_match(rule.deny, access.labels):
            return Decision(False, f"denied by role {name}: cluster {cluster} has labels "
                                   f"{labels}")
    for name, rule in held:
        if labels_match(rule.allow, access.labels):
            return Decision(True, f"cluster {cluster} allowed by role {name}")
    return Decision(False, f"roles {', '.join(n for n, _ in held)} do not select cluster "
                           f"{cluster} (labels {labels})")


def check_rule(roles: Sequence[Role], *, resource: str, verb: str) -> Decision:
    """May a user holding ``roles`` do ``verb`` on resources of kind ``resource``?"""
    for role in roles:
        if _rules_match(role.spec.deny, resource, verb):
            return Decision(False, f'denied by role {role.name}: "{verb}" on "{resource}"')
    for role in roles:
        if _rules_match(role.spec.allow, resource, verb):
            return Decision(True, f'"{verb}" on "{resource}" allowed by role {role.name}')
    if not roles:
        return Decision(False, f'"{verb}" on "{resource}" is not allowed: the user has no roles')
    return Decision(False, f'"{verb}" on "{resource}" is not allowed by roles {_names(roles)}')


def max_session_ttl(roles: Sequence[Role]) -> dt.timedelta:
    """The shortest ``max_session_ttl`` of ``roles``; zero without roles (deny by default)."""
    return min((role.spec.options.max_session_ttl for role in roles), default=dt.timedelta(0))


def allows_port_forwarding(roles: Sequence[Role]) -> bool:
    """Whether some role enables port forwarding."""
    return any(role.spec.options.port_forwarding for role in roles)


def check_file_transfer(roles: Sequence[Role]) -> Decision:
    """May a user holding ``roles`` transfer files (the sftp subsystem)? Every role must
    allow it (``options.file_transfer``, true by default); no roles, no transfer."""
    if not roles:
        return Decision(False, "file transfer is not allowed: the user has no roles")
    for role in roles:
        if not role.spec.options.file_transfer:
            return Decision(False, f"file transfer is not allowed: role {role.name} sets "
                                   "options.file_transfer: false")
    return Decision(True, f"file transfer allowed by roles {_names(roles)}")


def recording_required(roles: Sequence[Role]) -> str | None:
    """Why every SSH session of a user holding ``roles`` must be recorded (the first role
    with ``options.record_session.ssh: strict``), or None: each goes on unrecorded if its
    recording cannot be written."""
    for role in roles:
        if role.spec.options.record_session.ssh == "strict":
            return (f"role {role.name} requires every session recorded "
                    "(options.record_session.ssh: strict)")
    return None


def allowed_logins(roles: Sequence[Role], traits: UserTraits) -> list[str]:
    """Logins some role allows and none denies, sorted: the principals of a user certificate."""
    allowed = {login for role in roles for login in interpolate(role.spec.allow.logins, traits)}
    denied = {login for role in roles for login in interpolate(role.spec.deny.logins, traits)}
    return sorted(allowed - denied)


def _rules_match(conditions: RoleConditions, resource: str, verb: str) -> bool:
    """Whether a rule names ``verb`` on ``resource``. A ``*`` stands for what a role may
    name (RULE_RESOURCES, RULE_VERBS), never for the hosts' own calls (exporting events,
    uploading recordings, heartbeats): no rule reaches those."""
    return any(
        (resource in rule.resources or (WILDCARD in rule.resources and resource in RULE_RESOURCES))
        and (verb in rule.verbs or (WILDCARD in rule.verbs and verb in RULE_VERBS))
        for rule in conditions.rules
    )


def _names(roles: Iterable[Role]) -> str:
    return ", ".join(role.name for role in roles)


def _show_labels(labels: Mapping[str, str]) -> str:
    if not labels:
        return "(none)"
    return ", ".join(f"{key}={value}" for key, value in sorted(labels.items()))
