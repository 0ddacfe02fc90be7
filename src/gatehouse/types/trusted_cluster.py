"""A leaf's trust in a root cluster (ARCHITECTURE §3), with the role map of §5.

Teleport's ``trusted_cluster`` files load too (``version: v2``): its ``web_proxy_addr``
is our ``proxy_addr``, and its ``tunnel_addr`` is accepted without a use of its own (a
Gatehouse root serves tunnels on the proxy's one port); such a file is stored as ``v1``.
Its fields Gatehouse does not implement (``spec.roles``, the pre-role_map way) are
refused with a line naming them, as any unknown field is.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import (
    Field,
    SerializerFunctionWrapHandler,
    StringConstraints,
    model_serializer,
    model_validator,
)

from gatehouse._sys.hostport import split_host_port
from gatehouse.errors import BadParameter
from gatehouse.types.pattern import Pattern
from gatehouse.types.resource import HostPort, Model, Resource, invalid

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


def _check_addr(field: str, value: object) -> None:
    if not isinstance(value, str):
        raise invalid(f"{field}: expected host:port, got {value!r}")
    try:
        split_host_port(value)
    except BadParameter as exc:
        raise invalid(f"{field}: {exc}") from None


class TrustedCluster(Resource):
    kind: Literal["trusted_cluster"] = "trusted_cluster"
    spec: TrustedClusterSpec
    status: TrustedClusterStatus | None = None

    @model_validator(mode="before")
    @classmethod
    def _from_teleport(cls, data: Any) -> Any:
        """A Teleport ``version: v2`` resource, as ours (v1): see the module's docstring."""
        if not isinstance(data, dict) or data.get("version") != "v2":
            return data
        spec = data.get("spec")
        if not isinstance(spec, dict):
            return {**data, "version": "v1"}
        spec = dict(spec)
        if "roles" in spec:
            raise invalid("spec.roles: Teleport's older way to map roles is not implemented: "
                          "write the mapping as spec.role_map (remote -> local roles)")
        web, tunnel = spec.pop("web_proxy_addr", None), spec.pop("tunnel_addr", None)
        if "proxy_addr" in spec and (web or tunnel):
            raise invalid("spec: give proxy_addr or Teleport's web_proxy_addr/tunnel_addr, "
                          "not both")
        if tunnel is not None:
            _check_addr("spec.tunnel_addr", tunnel)
        if "proxy_addr" not in spec and (web or tunnel):
            # Our root proxy serves its API and tunnels on one port: the web address,
            # or the tunnel address when it is the only one given.
            spec["proxy_addr"] = web or tunnel
        return {**data, "version": "v1", "spec": spec}
