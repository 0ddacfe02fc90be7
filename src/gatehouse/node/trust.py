"""What a node trusts, pushed by its auth: user CAs, roles, and which users exist.

The node holds a watch open on the auth; every change arrives as a new
snapshot within moments. While the auth is unreachable the node keeps deciding
with the last snapshot it received (and reconnects with jittered backoff).
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
from gatehouse.types.yaml_io import from_json_obj

__all__ = ["TrustSnapshot", "TrustWatcher"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrustSnapshot:
    cluster: str = ""
    user_ca_lines: dict[str, str] = field(default_factory=dict)  # "ssh-ed25519 AAAA" -> cluster
    roles: dict[str, Role] = field(default_factory=dict)
    users: frozenset[str] = frozenset()

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> TrustSnapshot:
        roles: dict[str, Role] = {}
        for obj in raw.get("roles", []):
            res = from_json_obj(obj)
            if isinstance(res, Role):
                roles[res.metadata.name] = res
        cas = {" ".join(ca["ssh"].split()[:2]): ca["cluster"] for ca in raw.get("user_cas", [])}
        return cls(
            cluster=str(raw.get("cluster", "")),
            user_ca_lines=cas,
            roles=roles,
            users=frozenset(raw.get("users", [])),
        )


class TrustWatcher:
    def __init__(self, api: APIClient) -> None:
        self._api = api
        self.snapshot = TrustSnapshot()
        self.ready = asyncio.Event()

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
                        delay = 0.2
            except (GatehouseError, ValueError, KeyError) as exc:
                log.warning("trust stream from auth lost (%s); keeping last snapshot", exc)
            await asyncio.sleep(delay * random.uniform(0.5, 1.5))
            delay = min(delay * 2, 10.0)
