"""The auth as the services in its own process reach it: no TLS, no HTTP, the same
authorization (auth.authz). A co-located proxy or node calls it in its own host
name; a co-located proxy also relays its clients to it, by the certificate each
presented to the proxy, verified as the HTTPS API verifies a relaying proxy's header.
"""

from __future__ import annotations

from aiohttp import web

from gatehouse.auth.api import make_api_app
from gatehouse.auth.authz import AuthWithRoles
from gatehouse.auth.identify import Caller, relayed
from gatehouse.auth.server import AuthServer
from gatehouse.pki import x509
from gatehouse.wire.dial import NodeRoute

__all__ = ["LocalAuth"]


class LocalAuth:
    def __init__(self, server: AuthServer) -> None:
        self._server = server

    def as_host(self, identity: x509.Identity) -> AuthWithRoles:
        """The typed API in a co-located host's own name (its certificate's identity)."""
        return AuthWithRoles(self._server, Caller(identity, "in-process", in_process=True))

    async def resolve_node(self, target: str, client_der: bytes | None,
                           remote: str) -> NodeRoute:
        """Where the node a relayed user asks for is, and which host (their roles must
        select it)."""
        caller = await relayed(self._server, client_der, remote)
        node = await AuthWithRoles(self._server, caller).resolve_node(target)
        return NodeRoute(node.spec.addr, node.spec.host_id, node.spec.tunnel)

    def api_app(self) -> web.Application:
        """The HTTPS API for a proxy's port: each connection's client relayed as above."""
        return make_api_app(self._server, relayed=True)
