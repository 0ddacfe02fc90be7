"""OIDC connectors: an OpenID provider whose users log in through the proxy (SSO), and
how their ID token's claims map to roles (role_map's matching, ARCHITECTURE §5).

The client secret is stored with the connector (as a join token's secret is) and never
shown: ``without_secret`` is what every read returns.
"""

from __future__ import annotations

import ipaddress
import urllib.parse
from typing import Annotated, Any, Literal, Self

from pydantic import (
    AfterValidator,
    Field,
    SerializerFunctionWrapHandler,
    StringConstraints,
    model_serializer,
    model_validator,
)

from gatehouse.types.pattern import Pattern
from gatehouse.types.resource import Model, Resource, invalid
from gatehouse.types.trusted_cluster import RoleMapping

__all__ = ["ClaimMapping", "OIDCConnector", "OIDCSpec", "is_loopback_host"]

_Role = Annotated[str, StringConstraints(min_length=1, pattern=r"^\S+$")]
_Text = Annotated[str, StringConstraints(min_length=1, max_length=1024, pattern=r"^\S+$")]


def is_loopback_host(host: str) -> bool:
    """Whether ``host`` names this machine only (localhost, 127.0.0.0/8, ::1)."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _check_issuer(url: str) -> str:
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise invalid(f"issuer_url {url!r}: expected https://HOST[:PORT][/PATH]")
    if parts.query or parts.fragment:
        raise invalid(f"issuer_url {url!r}: an issuer has no query or fragment")
    if parts.scheme == "http" and not is_loopback_host(parts.hostname):
        raise invalid(f"issuer_url {url!r}: http:// is allowed only for a loopback host "
                      "(localhost, 127.0.0.1, ::1); use https://")
    return url.rstrip("/") if parts.path in ("", "/") else url


def _check_redirect(url: str) -> str:
    parts = urllib.parse.urlsplit(url)
    if parts.scheme != "https" or not parts.hostname:
        raise invalid(f"redirect_url {url!r}: expected https://PROXY/v1/sso/oidc/callback")
    return url


class ClaimMapping(Model):
    """Users whose ID token claim ``claim`` has a value matching ``value`` (exact, ``*``
    glob or ``^regex$`` with $1...) get ``roles``."""

    claim: _Text
    value: Pattern = Field(min_length=1)
    roles: list[_Role] = Field(min_length=1)

    def as_role_mapping(self) -> RoleMapping:
        """The same rule in role_map's terms (claim values stand for remote roles)."""
        return RoleMapping(remote=self.value, local=self.roles)


class OIDCSpec(Model):
    issuer_url: Annotated[str, AfterValidator(_check_issuer)]
    client_id: _Text
    client_secret: str = ""
    client_secret_file: str = ""
    ca_file: str = ""  # PEM CA(s) of a private IdP's TLS certificate
    redirect_url: Annotated[str, AfterValidator(_check_redirect)] | Literal[""] = ""
    scope: list[_Text] = Field(default_factory=lambda: ["openid", "email", "profile"])
    username_claim: str = ""  # "": email, else sub
    claims_to_roles: list[ClaimMapping] = Field(min_length=1)

    @model_validator(mode="after")
    def _check(self) -> Self:
        if "openid" not in self.scope:
            raise invalid("scope must include openid")
        if self.client_secret and self.client_secret_file:
            raise invalid("give client_secret or client_secret_file, not both")
        return self

    @model_serializer(mode="wrap")
    def _drop_empty(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        data: dict[str, Any] = handler(self)
        return {k: v for k, v in data.items() if v != "" or k == "issuer_url"}

    def without_secret(self) -> OIDCSpec:
        return self.model_copy(update={"client_secret": ""})


class OIDCConnector(Resource):
    kind: Literal["oidc"] = "oidc"
    spec: OIDCSpec
    status: None = None

    def without_secret(self) -> OIDCConnector:
        return self.model_copy(update={"spec": self.spec.without_secret()})
