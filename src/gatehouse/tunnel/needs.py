"""What the tunnel needs from the rest of its proxy, declared here and handed in.

The leaf's agent follows the roots to dial (``Root``, from the trust snapshot), forwards
this cluster's audit events (``EventExport``), dials a node the root user may reach
(``NodeResolver``), relays an API call to this cluster's auth (``AuthRelay``), hands
on what the root says of its cluster labels (``StoreAccess``) and records what it
refused (``Audit``). The root's server relays a call it is handed
(``APICall``), and a proxy takes its own cluster's node tunnels (``OwnNodes``). The
proxy builds the implementations (proxy/leafauth.py) on its clients of the auth;
nothing in tunnel/ knows the auth's API paths.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from cryptography import x509 as cx509

from gatehouse.tunnel.mux import MuxStream
from gatehouse.types.cluster_access import ClusterAccess
from gatehouse.types.inventory import LeafInventory
from gatehouse.wire.authapi import RootTunnel
from gatehouse.wire.dial import NodeRoute

__all__ = [
    "APICall",
    "Audit",
    "AuthRelay",
    "EventExport",
    "EventPage",
    "InventorySource",
    "NodeResolver",
    "OpenNode",
    "OwnNodes",
    "Root",
    "RootsToDial",
    "StoreAccess",
    "TunnelState",
]


@dataclass(frozen=True)
class Root:
    """A cluster to hold a tunnel to (a leaf's root, or a tunnel-mode node's own cluster):
    its proxy's address, and the host CA (TLS PEM) its certificate must be issued by;
    ``joined_at``: a new join is a new tunnel."""

    name: str
    proxy_addr: str
    host_ca_tls: str
    joined_at: float = 0.0


@dataclass(frozen=True)
class OwnNodes:
    """How a proxy takes the tunnels of its own cluster's tunnel-mode nodes: the host
    CAs their certificates must chain to, and the auth's say on them (``report``: every
    node tunnel held or offered, by host id -> those refused, with why)."""

    cluster: str
    host_cas: Callable[[], list[cx509.Certificate]]
    report: Callable[[list[str]], Awaitable[dict[str, str]]]


# (host id, stream meta) -> a stream to that tunnel node's SSH server (TunnelServer.open_node)
OpenNode = Callable[[str, dict[str, Any]], Awaitable[MuxStream]]

RootsToDial = Callable[[], Mapping[str, Root]]  # the enabled roots, by name, as of now

Audit = Callable[[str, dict[str, Any]], Awaitable[None]]  # (event, fields) to this cluster

# (root, what it says of its cluster labels for this leaf) to this cluster's auth
StoreAccess = Callable[[str, ClusterAccess], Awaitable[None]]

# Told each time a leaf's tunnel to a root comes up or goes down (and why)
TunnelState = Callable[[RootTunnel], None]


@dataclass(frozen=True)
class EventPage:
    """Events in storing order after a cursor, as the auth exports them, and the cursor
    after the last of them (the same cursor when there was nothing new)."""

    events: list[Any]
    last: str


class EventExport(Protocol):
    """This cluster's audit log, read in order to forward it to a root."""

    async def cursor(self, root: str) -> str:
        """Where forwarding to ``root`` stands: the root acknowledged everything before."""
        ...

    async def page(self, after: str, limit: int) -> EventPage:
        """Up to ``limit`` events stored after the cursor ``after``."""
        ...

    async def move_cursor(self, root: str, after: str) -> None:
        """Record that ``root`` acknowledged every event up to ``after``."""
        ...


class InventorySource(Protocol):
    async def inventory(self, root: str) -> LeafInventory:
        """This cluster's nodes and what ``root`` needs to filter them per user."""
        ...


class NodeResolver(Protocol):
    async def resolve_node(self, target: str, client_der: bytes | None,
                           remote: str) -> NodeRoute:
        """Where node ``target`` is and its host id, asked as the user of the certificate
        ``client_der``: only a registered node of this cluster their roles select."""
        ...


class AuthRelay(Protocol):
    async def relay(self, method: str, path: str, body: bytes, client_der: bytes | None,
                    remote: str) -> tuple[int, bytes]:
        """(status, body) of an API call to this cluster's auth, in the name of the user
        of ``client_der``; a call that is not an API call is refused, never sent."""
        ...


class APICall(Protocol):
    """An API call a root relays to a leaf: what the caller asked, and who the caller is."""

    @property
    def method(self) -> str: ...

    @property
    def path(self) -> str: ...

    @property
    def body(self) -> bytes: ...

    @property
    def client_der(self) -> bytes | None: ...

    @property
    def remote(self) -> str: ...
