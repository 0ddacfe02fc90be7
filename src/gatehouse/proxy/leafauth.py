"""What the tunnel needs from this cluster's auth (tunnel/needs.py), met by the proxy's
ways to it: the typed auth interface (in the proxy's own name) for forwarding events,
a resolver (the auth in-process, or the forwarder) for resolving a node in a user's
name, and the forwarder for relaying a call."""

from __future__ import annotations

from gatehouse.client.forward import AuthForwarder, ForwardedCall, error_body
from gatehouse.tunnel.needs import EventPage, NodeResolver, Root
from gatehouse.types.cluster_access import ClusterAccess
from gatehouse.types.inventory import LeafInventory
from gatehouse.wire.authapi import API_PREFIX, AuthAPI
from gatehouse.wire.dial import NodeRoute
from gatehouse.wire.trust import TrustSnapshot

__all__ = ["LeafAuth", "roots_to_dial"]


class LeafAuth:
    """Implements the tunnel's EventExport, InventorySource, NodeResolver and AuthRelay."""

    def __init__(self, api: AuthAPI, resolver: NodeResolver, forwarder: AuthForwarder) -> None:
        self._api = api
        self._resolver = resolver
        self._forwarder = forwarder

    async def cursor(self, root: str) -> str:
        return await self._api.export_cursor(root)

    async def page(self, after: str, limit: int) -> EventPage:
        page = await self._api.export_events(after, limit)
        return EventPage(events=page.events, last=page.last)

    async def store_access(self, root: str, access: ClusterAccess) -> None:
        await self._api.put_cluster_access(root, access)

    async def inventory(self, root: str) -> LeafInventory:
        return await self._api.leaf_inventory(root)

    async def move_cursor(self, root: str, after: str) -> None:
        await self._api.set_export_cursor(root, after)

    async def resolve_node(self, target: str, client_der: bytes | None,
                           remote: str) -> NodeRoute:
        return await self._resolver.resolve_node(target, client_der, remote)

    async def relay(self, method: str, path: str, body: bytes, client_der: bytes | None,
                    remote: str) -> tuple[int, bytes]:
        if not path.startswith(API_PREFIX):
            return 400, error_body("not an API path")
        return await self._forwarder.call(ForwardedCall(method, path, body, client_der, remote))


def roots_to_dial(trust: TrustSnapshot) -> dict[str, Root]:
    """The enabled roots of a trust snapshot, as the tunnel agent dials them."""
    return {name: Root(name=name, proxy_addr=r.proxy_addr, host_ca_tls=r.host_ca_tls,
                       joined_at=r.joined_at)
            for name, r in trust.roots.items() if r.enabled}
