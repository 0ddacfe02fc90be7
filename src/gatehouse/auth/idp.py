"""What the auth's SSO logic asks of an OpenID provider, over the network: handed in
(client.oidcidp implements it with HTTPS), so that the logic makes no network call of
its own and tests can run it against a real IdP or none."""

from __future__ import annotations

from typing import Any, Protocol

from gatehouse.errors import BadParameter

__all__ = ["IdPClient", "NoIdP"]


class IdPClient(Protocol):
    async def get_json(self, url: str, ca_file: str) -> dict[str, Any]:
        """GET ``url`` (a discovery document, a JWKS): its JSON object; ConnectionProblem
        or BadParameter, one line, on failure. ``ca_file``: the IdP's CA ("" = system)."""
        ...

    async def post_form(self, url: str, form: dict[str, str], basic_auth: tuple[str, str],
                        ca_file: str) -> dict[str, Any]:
        """POST a form (the token endpoint) with HTTP Basic client authentication; the
        JSON reply, also on an OAuth error status (``error`` says which)."""
        ...


class NoIdP:
    """An auth without a network edge (unit tests of everything but SSO)."""

    async def get_json(self, url: str, ca_file: str) -> dict[str, Any]:
        raise BadParameter(f"this auth cannot reach identity providers ({url})")

    async def post_form(self, url: str, form: dict[str, str], basic_auth: tuple[str, str],
                        ca_file: str) -> dict[str, Any]:
        raise BadParameter(f"this auth cannot reach identity providers ({url})")
