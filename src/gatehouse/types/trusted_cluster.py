"""A leaf's trust in a root cluster (ARCHITECTURE §3), with the role map of §5."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, StringConstraints

from gatehouse.types.pattern import Pattern
from gatehouse.types.resource import HostPort, Model, Resource

__all__ = ["RoleMapping", "TrustedCluster", "TrustedClusterSpec"]

# A local role name, possibly with $1... placeholders for a regex's groups.
_LocalRole = Annotated[str, StringConstraints(min_length=1, pattern=r"^\S+$")]


class RoleMapping(Model):
    """Remote roles matching ``remote`` (exact, ``*`` glob or ``^regex$``) become ``local``."""

    remote: Pattern = Field(min_length=1)
    local: list[_LocalRole] = Field(min_length=1)


class TrustedClusterSpec(Model):
    enabled: bool = True
    token: str = Field(min_length=1)
    proxy_addr: HostPort
    role_map: list[RoleMapping] = Field(default_factory=list)


class TrustedCluster(Resource):
    kind: Literal["trusted_cluster"] = "trusted_cluster"
    spec: TrustedClusterSpec
    status: None = None
