"""Certified hosts: what each host id was certified as, so that it cannot claim more.

A node's heartbeat is accepted only under the name and addresses recorded
here; removing the record (``gatectl rm node/HOST_ID``) revokes the host's
standing with the auth even though its certificate has not expired.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field

from gatehouse.backend import Backend, Item
from gatehouse.errors import AccessDenied, NotFound

__all__ = ["HostRecord", "HostRegistry"]


@dataclass(frozen=True)
class HostRecord:
    role: str
    nodename: str
    addrs: list[str] = field(default_factory=list)
    dns_names: list[str] = field(default_factory=list)  # a server's TLS names


class HostRegistry:
    def __init__(self, backend: Backend) -> None:
        self._backend = backend

    @staticmethod
    def _key(host_id: str) -> bytes:
        return f"/hosts/{host_id}".encode()

    async def put(self, host_id: str, record: HostRecord) -> None:
        await self._backend.put(Item(key=self._key(host_id),
                                     value=json.dumps(asdict(record)).encode()))

    async def get(self, host_id: str) -> HostRecord:
        """The record, or AccessDenied: an unknown host id has no standing here."""
        try:
            raw = json.loads((await self._backend.get(self._key(host_id))).value)
        except NotFound:
            raise AccessDenied(f"host {host_id} is not registered (removed?)") from None
        return HostRecord(**raw)

    async def delete(self, host_id: str) -> None:
        try:
            await self._backend.delete(self._key(host_id))
        except NotFound:
            raise NotFound(f"host {host_id} not found") from None
