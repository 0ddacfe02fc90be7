"""A leaf's trust in a root cluster (ARCHITECTURE §3), with the role map of §5."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, SerializerFunctionWrapHandler, StringConstraints, model_serializer

from gatehouse.types.pattern import Pattern
from gatehouse.types.resource import HostPort, Model, Resource

__all__ = ["RoleMapping", "TrustedCluster", "TrustedClusterSpec", "TrustedClusterStatus"]

# A local role name, possibly with $1... placeholders for a regex's groups.
_LocalRole = Annotated[str, StringConstraints(min_length=1, pattern=r"^\S+$")]


class RoleMapping(Model):
    """Remote roles matching ``remote`` (exact, ``*`` glob or ``^regex$``) become ``local``."""

    remote: Pattern = Field(min_length=1)
    local: list[_LocalRole] = Field(min_length=1)


class TrustedClusterSpec(Model):
    enabled: bool = True
    # A join token from the root: needed to join, and a new one joins again (after the
    # root removed this leaf). The auth keeps the one used and never shows it: "" here.
    token: str = ""
    proxy_addr: HostPort
    role_map: list[RoleMapping] = Field(default_factory=list)

    @model_serializer(mode="wrap")
    def _drop_empty_token(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        data: dict[str, Any] = handler(self)
        if not data.get("token"):
            data.pop("token", None)
        return data

    def without_token(self) -> TrustedClusterSpec:
        return self.model_copy(update={"token": ""})


class TrustedClusterStatus(Model):
    """The tunnel to the root, as this cluster's proxies last reported it (computed by
    the auth when shown; ignored when a resource is created)."""

    connection: Literal["online", "offline", "disabled"] = "offline"
    detail: str = ""  # why it is not online, in a proxy's words


class TrustedCluster(Resource):
    kind: Literal["trusted_cluster"] = "trusted_cluster"
    spec: TrustedClusterSpec
    status: TrustedClusterStatus | None = None
