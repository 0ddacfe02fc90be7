"""Trait templates in role logins: ``{{internal.logins}}``, ``{{external.groups}}``.

A template expands to the values of one trait of the user, optionally with a
literal prefix and suffix (``"{{internal.logins}}-admin"``). A string without
braces is a literal. The namespace says where the trait comes from: ``internal``
from the user's record (what an admin wrote), ``external`` from an IdP's ID token
(what the IdP says of an SSO user). Each reads only its own: a claim named
``logins`` never fills ``{{internal.logins}}``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

from gatehouse.errors import BadParameter

__all__ = ["Template", "Traits", "UserTraits", "parse_template"]

Traits = Mapping[str, Sequence[str]]

_TEMPLATE_RE = re.compile(
    r"(?P<prefix>[^{}]*)\{\{\s*(?P<namespace>internal|external)\."
    r"(?P<trait>[A-Za-z0-9_.:/-]+)\s*\}\}(?P<suffix>[^{}]*)"
)


@dataclass(frozen=True)
class UserTraits:
    """A user's traits by namespace: ``internal`` (a user record's), ``external`` (an SSO
    user's claims). A user has one or the other: a certificate carries one mapping, and
    its connector (set for an SSO user) says which."""

    internal: Traits = field(default_factory=dict)
    external: Traits = field(default_factory=dict)

    @classmethod
    def of(cls, traits: Traits, *, sso: bool) -> UserTraits:
        """The traits of a certificate or user: an SSO user's (``sso``) are external."""
        return cls(external=traits) if sso else cls(internal=traits)


@dataclass(frozen=True)
class Template:
    namespace: Literal["internal", "external"]
    trait: str
    prefix: str = ""
    suffix: str = ""

    def expand(self, traits: UserTraits) -> list[str]:
        """One string per value of the trait in its namespace; a missing trait expands to
        nothing."""
        values = traits.internal if self.namespace == "internal" else traits.external
        return [f"{self.prefix}{value}{self.suffix}" for value in values.get(self.trait, ())]


def parse_template(value: str) -> Template | None:
    """The template in ``value``, None for a literal; BadParameter if the braces are malformed."""
    if "{" not in value and "}" not in value:
        return None
    match = _TEMPLATE_RE.fullmatch(value)
    if match is None:
        raise BadParameter(
            f"malformed template {value!r}: expected {{{{internal.NAME}}}} or {{{{external.NAME}}}}"
        )
    namespace: Literal["internal", "external"] = (
        "internal" if match["namespace"] == "internal" else "external"
    )
    return Template(namespace, match["trait"], match["prefix"], match["suffix"])
