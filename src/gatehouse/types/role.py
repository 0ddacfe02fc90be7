"""Roles: which logins on which nodes, and which API calls (ARCHITECTURE §7), plus presets.

Deny conditions beat allow conditions; the decisions themselves live in
``gatehouse.rbac``.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Literal

from pydantic import AfterValidator, BeforeValidator, Field, field_validator, model_validator

from gatehouse.errors import BadParameter
from gatehouse.types.pattern import compile_pattern
from gatehouse.types.resource import Duration, Metadata, Model, Resource, invalid
from gatehouse.types.template import parse_template

__all__ = [
    "RULE_RESOURCES",
    "RULE_VERBS",
    "WILDCARD",
    "RecordMode",
    "RecordSession",
    "Role",
    "RoleConditions",
    "RoleOptions",
    "RoleSpec",
    "Rule",
    "SelectorValue",
    "access_role",
    "auditor_role",
    "editor_role",
    "preset_roles",
]

WILDCARD = "*"
RULE_RESOURCES = (
    "user",
    "role",
    "token",
    "node",
    "trusted_cluster",
    "remote_cluster",
    "cert_authority",
    "cluster_name",
    "proxy",
    "event",
    "session",
    "oidc",
)
RULE_VERBS = ("list", "read", "create", "update", "delete")


def _one_of(allowed: tuple[str, ...], what: str) -> AfterValidator:
    def check(value: str) -> str:
        if value != WILDCARD and value not in allowed:
            raise invalid(f"unknown {what} {value!r}: expected one of {', '.join(allowed)} or *")
        return value

    return AfterValidator(check)


class Rule(Model):
    """API permissions: each verb on each resource kind (``*`` for all)."""

    resources: list[Annotated[str, _one_of(RULE_RESOURCES, "resource")]] = Field(min_length=1)
    verbs: list[Annotated[str, _one_of(RULE_VERBS, "verb")]] = Field(min_length=1)


def _check_login(value: str) -> str:
    if not value:
        raise invalid("a login cannot be empty")
    try:
        parse_template(value)
    except BadParameter as exc:
        raise invalid(str(exc)) from None
    return value


def _check_selector_value(value: object) -> object:
    """A label selector value: a string or a non-empty list of strings, each a valid pattern."""
    items = value if isinstance(value, list) else [value]
    if not items or not all(isinstance(item, str) for item in items):
        raise invalid(f"expected a label value or a list of them, got {value!r}")
    for item in items:
        try:
            compile_pattern(item)
        except BadParameter as exc:
            raise invalid(str(exc)) from None
    return value


Login = Annotated[str, AfterValidator(_check_login)]
SelectorValue = Annotated[str | list[str], BeforeValidator(_check_selector_value)]


class RoleConditions(Model):
    """One side of a role (``allow`` or ``deny``)."""

    logins: list[Login] = Field(default_factory=list)
    # Every key must match the node's label; values are exact, "*" globs, ^regex$,
    # or a list of those (any of). {"*": "*"} selects every node; {} selects none.
    node_labels: dict[str, SelectorValue] = Field(default_factory=dict)
    # The leaf clusters (by their labels at the root) a root user may see and reach, with
    # node_labels' matching. In ``allow`` it defaults to {"*": "*"} (RoleSpec says why).
    cluster_labels: dict[str, SelectorValue] = Field(default_factory=dict)
    rules: list[Rule] = Field(default_factory=list)

    @field_validator("node_labels", "cluster_labels")
    @classmethod
    def _check_wildcard_key(
        cls, selector: dict[str, str | list[str]]
    ) -> dict[str, str | list[str]]:
        if WILDCARD in selector and selector[WILDCARD] not in (WILDCARD, [WILDCARD]):
            raise invalid(f"the '*' key only goes with the value '*', got {selector[WILDCARD]!r}")
        return selector


RecordMode = Literal["best_effort", "strict"]


class RecordSession(Model):
    """What a session whose recording cannot be written does, where the cluster records
    sessions (Teleport's option of the same name): ``best_effort`` goes on unrecorded
    (audited, the user told); ``strict`` is refused if its recording cannot start, and
    ended if it fails. ``ssh`` left out is ``default``'s (filled in, so that a stored
    role says what it means)."""

    default: RecordMode = "best_effort"
    ssh: RecordMode = "best_effort"

    @model_validator(mode="before")
    @classmethod
    def _ssh_follows_default(cls, data: object) -> object:
        if isinstance(data, dict) and "ssh" not in data and "default" in data:
            return {**data, "ssh": data["default"]}
        return data


class RoleOptions(Model):
    max_session_ttl: Duration = dt.timedelta(hours=12)
    port_forwarding: bool = False
    file_transfer: bool = True  # sftp (and scp, which uses it); false in any role refuses it
    record_session: RecordSession = Field(default_factory=RecordSession)


class RoleSpec(Model):
    options: RoleOptions = Field(default_factory=RoleOptions)
    allow: RoleConditions = Field(
        default_factory=lambda: RoleConditions(cluster_labels={WILDCARD: WILDCARD}))
    deny: RoleConditions = Field(default_factory=RoleConditions)

    @field_validator("allow", mode="before")
    @classmethod
    def _every_cluster_unless_said(cls, allow: object) -> object:
        """``allow.cluster_labels`` left out is ``{"*": "*"}``, written into the role (so
        ``gatectl get role`` shows it): a role made before cluster labels, or one that
        does not care, keeps reaching every leaf. Each leaf's role map still decides
        what the role means there (unmapped: nothing), deny.cluster_labels always wins,
        and a role that sets allow.cluster_labels narrows (``{}``: no leaf at all)."""
        if isinstance(allow, RoleConditions):
            if "cluster_labels" in allow.model_fields_set:
                return allow
            return allow.model_copy(update={"cluster_labels": {WILDCARD: WILDCARD}})
        if isinstance(allow, dict) and "cluster_labels" not in allow:
            return {**allow, "cluster_labels": {WILDCARD: WILDCARD}}
        return allow


class Role(Resource):
    kind: Literal["role"] = "role"
    spec: RoleSpec = Field(default_factory=RoleSpec)
    status: None = None


# --- presets ------------------------------------------------------------------------------


def access_role() -> Role:
    """SSH to every node as the user's own logins (trait ``logins``); see nodes."""
    return Role(
        metadata=Metadata(name="access", description="SSH access to every node"),
        spec=RoleSpec(
            allow=RoleConditions(
                logins=["{{internal.logins}}"],
                node_labels={WILDCARD: WILDCARD},
                rules=[Rule(resources=["node"], verbs=["list", "read"])],
            )
        ),
    )


def editor_role() -> Role:
    """Every API call on every resource; no SSH logins."""
    return Role(
        metadata=Metadata(name="editor", description="Edit cluster configuration"),
        spec=RoleSpec(allow=RoleConditions(rules=[Rule(resources=[WILDCARD], verbs=[WILDCARD])])),
    )


def auditor_role() -> Role:
    """Read the audit log and session recordings."""
    return Role(
        metadata=Metadata(name="auditor", description="Read audit events and recordings"),
        spec=RoleSpec(
            allow=RoleConditions(
                rules=[Rule(resources=["event", "session"], verbs=["list", "read"])]
            )
        ),
    )


def preset_roles() -> list[Role]:
    """The roles every new cluster starts with."""
    return [access_role(), editor_role(), auditor_role()]
