"""Trait templates in role logins: ``{{internal.logins}}``, ``{{external.groups}}``.

A template expands to the values of one trait of the user, optionally with a
literal prefix and suffix (``"{{internal.logins}}-admin"``). A string without
braces is a literal.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from gatehouse.errors import BadParameter

__all__ = ["Template", "parse_template"]

_TEMPLATE_RE = re.compile(
    r"(?P<prefix>[^{}]*)\{\{\s*(?P<namespace>internal|external)\."
    r"(?P<trait>[A-Za-z0-9_.:/-]+)\s*\}\}(?P<suffix>[^{}]*)"
)


@dataclass(frozen=True)
class Template:
    namespace: Literal["internal", "external"]
    trait: str
    prefix: str = ""
    suffix: str = ""

    def expand(self, traits: Mapping[str, Sequence[str]]) -> list[str]:
        """One string per value of the trait; a missing trait expands to nothing."""
        return [f"{self.prefix}{value}{self.suffix}" for value in traits.get(self.trait, ())]


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
