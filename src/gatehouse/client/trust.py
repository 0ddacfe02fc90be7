"""What nodes and proxies trust, pushed by their auth over a watch.

The snapshot holds the user CAs to accept (the cluster's own and each enabled
trusted root's), the role maps, the roots a leaf proxy must dial, the leaves'
host CAs a root proxy accepts tunnels from, and the roles and users. Every
change on the auth arrives as a new snapshot within moments. While the auth is
unreachable the last snapshot stays in force (the CA cache); a disable or
removal always arrives as a new snapshot, so a cached CA never outlives one.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
from dataclasses import dataclass, field
from typing import Any

from gatehouse.client.api import APIClient
from gatehouse.errors import GatehouseError
from gatehouse.types.role import Role
from gatehouse.types.trusted_cluster import RoleMapping
from gatehouse.types.yaml_io import from_json_obj

__all__ = ["RootCluster", "TrustSnapshot", "TrustWatcher"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RootCluster:
    """A root this (leaf) cluster trusts."""

    name: str
    enabled: bool
    proxy_addr: str
    role_map: tuple[RoleMapping, ...]
    host_ca_tls: str


@dataclass(frozen=True)
class TrustSnapshot:
    cluster: str = ""
    user_ca_lines: dict[str, str] = field(default_factory=dict)  # "ssh-ed25519 AAAA" -> cluster
    roots: dict[str, RootCluster] = field(default_factory=dict)
    leaf_host_cas: dict[str, str] = field(default_factory=dict)  # leaf cluster -> TLS CA PEM
    roles: dict[str, Role] = field(default_factory=dict)
    users: frozenset[str] = frozenset()
    record_sessions: bool = True  # False only when the auth says session_recording: off

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> TrustSnapshot:
        roles: dict[str, Role] = {}
        for obj in raw.get("roles", []):
            res = from_json_obj(obj)
            if isinstance(res, Role):
                roles[res.metadata.name] = res
        cas = {" ".join(ca["ssh"].split()[:2]): ca["cluster"] for ca in raw.get("user_cas", [])}
        roots = {
            r["name"]: RootCluster(
                name=r["name"], enabled=bool(r["enabled"]), proxy_addr=r["proxy_addr"],
                role_map=tuple(RoleMapping.model_validate(m) for m in r["role_map"]),
                host_ca_tls=r["host_ca_tls"],
            )
            for r in raw.get("trusted_clusters", [])
        }
        return cls(
            cluster=str(raw.get("cluster", "")),
            user_ca_lines=cas,
            roots=roots,
            leaf_host_cas={ca["cluster"]: ca["tls"] for ca in raw.get("leaf_host_cas", [])},
            roles=roles,
            users=frozenset(raw.get("users", [])),
            record_sessions=raw.get("session_recording") != "off",
        )


class TrustWatcher:
    def __init__(self, api: APIClient) -> None:
        self._api = api
        self.snapshot = TrustSnapshot()
        self.ready = asyncio.Event()
        self._subscribers: list[asyncio.Event] = []

    def subscribe(self) -> asyncio.Event:
        """An event set on every new snapshot (the subscriber clears it)."""
        event = asyncio.Event()
        event.set()
        self._subscribers.append(event)
        return event

    def current(self) -> TrustSnapshot:
        return self.snapshot

    async def run(self) -> None:
        """Follow the auth's trust stream forever (cancel to stop)."""
        delay = 0.2
        while True:
            try:
                async for line in self._api.lines("/v1/trust", watch="1"):
                    if line.strip():
                        self.snapshot = TrustSnapshot.from_json(json.loads(line))
                        self.ready.set()
                        for event in self._subscribers:
                            event.set()
                        delay = 0.2
            except (GatehouseError, ValueError, KeyError) as exc:
                log.warning("trust stream from auth lost (%s); keeping last snapshot", exc)
            await asyncio.sleep(delay * random.uniform(0.5, 1.5))
            delay = min(delay * 2, 10.0)
