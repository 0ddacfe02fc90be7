"""A root proxy's inventory of its leaves' nodes: what each leaf pushed over its tunnel
(tunnel/inventorysend.py), held in memory while that tunnel is up (each root proxy holds
every leaf's tunnel, so each holds every inventory), and the query `gsh ls --all` and
gsh's node look-up make of it: one request, answered without asking any leaf.

A user sees a leaf's node only if the root's cluster labels let them reach the leaf
(the routing check, rbac.check_cluster_access) and the leaf's role map and roles let
them see the node there (gatehouse.inventory.visible, the leaf's own rule)."""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable, Iterable

from aiohttp import web

from gatehouse import inventory
from gatehouse.client.forward import error_body
from gatehouse.errors import AccessDenied, BadParameter, GatehouseError
from gatehouse.pki import x509
from gatehouse.pki.tls import peer_der
from gatehouse.types.inventory import LeafInventory
from gatehouse.types.node import Node
from gatehouse.types.yaml_io import to_json_obj

__all__ = ["Inventories", "inventory_handler"]

log = logging.getLogger(__name__)

Authenticate = Callable[[bytes], x509.Identity]  # a client certificate (DER) -> its user
Refusal = Callable[[x509.Identity, str], str]  # (user, leaf) -> why not ("": may reach)


class Inventories:
    """What each leaf whose tunnel is up last said of its nodes."""

    def __init__(self, connected: Callable[[], Iterable[str]]) -> None:
        self._connected = connected  # the leaves whose tunnels this proxy holds now
        self._by_leaf: dict[str, LeafInventory] = {}

    def put(self, leaf: str, body: bytes) -> None:
        """Keep what ``leaf`` pushed (ValueError when malformed, BadParameter when it
        names a node of another cluster)."""
        pushed = LeafInventory.model_validate_json(body)
        strangers = {n.spec.cluster for n in pushed.nodes} - {leaf}
        if strangers:
            raise BadParameter(f"leaf {leaf} may push only its own nodes, not those of "
                               f"{', '.join(sorted(strangers))}")
        self._by_leaf[leaf] = pushed

    def leaves(self) -> list[str]:
        """The leaves held (their tunnels up), forgetting those whose tunnels are gone."""
        held = set(self._connected())
        for gone in self._by_leaf.keys() - held:
            del self._by_leaf[gone]
        return sorted(self._by_leaf)

    def find(self, user: x509.Identity, refusal: Refusal, search: str,
             labels: dict[str, str]) -> list[Node]:
        """The nodes of every leaf ``user`` may reach and see there, matching the query."""
        found: list[Node] = []
        for leaf in self.leaves():
            if refusal(user, leaf):
                continue
            found += [n for n in inventory.visible(self._by_leaf[leaf], user.roles)
                      if inventory.matches(n, search, labels)]
        return found


def _query(request: web.Request) -> tuple[str, dict[str, str]]:
    search = request.query.get("search", "")[:256]
    try:
        labels = json.loads(request.query.get("labels", "{}") or "{}")
    except ValueError:
        labels = None
    if not isinstance(labels, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in labels.items()):
        raise BadParameter("labels is a JSON object of strings")
    return search, labels


def inventory_handler(held: Inventories, authenticate: Authenticate,
                      refusal: Refusal) -> Callable[[web.Request], Awaitable[web.Response]]:
    """The proxy's GET wire.names.INVENTORY_PATH: the matching nodes of the leaves, as list_nodes
    shapes them (a JSON array of node resources), for the caller's user certificate."""

    async def handle(request: web.Request) -> web.Response:
        transport = request.transport
        der = peer_der(transport.get_extra_info("ssl_object") if transport else None)
        try:
            user = authenticate(der or b"")
            search, labels = _query(request)
        except GatehouseError as exc:
            if isinstance(exc, AccessDenied):
                log.warning("inventory refused remote=%s reason=%r", request.remote, str(exc))
            return web.Response(status=exc.status, body=error_body(str(exc)),
                                content_type="application/json")
        nodes = held.find(user, refusal, search, labels)
        return web.json_response([to_json_obj(n) for n in nodes])

    return handle
