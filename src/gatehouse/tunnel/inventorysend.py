"""A leaf's inventory (its nodes, and what the root needs to filter them per user),
pushed to a root over its tunnel: whole when the tunnel comes up, and again whenever it
changed. The leaf proxy reads it from its own auth every LOOK seconds; the root never
asks, and holds what it was told while the tunnel is up (proxy/inventory.py)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging

from gatehouse.clock import Monotonic, wait_for
from gatehouse.errors import ConnectionProblem, GatehouseError
from gatehouse.tunnel.limits import MAX_ACK
from gatehouse.tunnel.mux import MuxSession, read_all
from gatehouse.tunnel.needs import InventorySource

__all__ = ["LOOK", "InventorySender"]

log = logging.getLogger(__name__)

LOOK = 2.0  # seconds between looks at this cluster's nodes: a joined node is shown this soon


class InventorySender:
    """Pushes this cluster's inventory to the root ``root`` while a tunnel to it is up."""

    def __init__(self, source: InventorySource, root: str, clock: Monotonic) -> None:
        self._source = source
        self._root = root
        self._clock = clock

    async def run(self, session: MuxSession) -> None:
        """Push on this session until it closes; a failed push is tried again."""
        sent = b""
        while not session.closed.done():
            try:
                sent = await self.push(session, sent)
            except (GatehouseError, OSError, ValueError) as exc:
                log.warning("pushing the inventory to %s: %s; retrying", self._root, exc)
            with contextlib.suppress(TimeoutError):
                await wait_for(self._clock, asyncio.shield(session.closed), LOOK)

    async def push(self, session: MuxSession, sent: bytes) -> bytes:
        """Push the inventory unless it is ``sent`` (what the root holds); what it holds now."""
        body = (await self._source.inventory(self._root)).model_dump_json().encode()
        if body == sent:
            return sent
        stream = await session.open({"kind": "inventory"})
        await stream.write(body)
        stream.write_eof()
        ack = json.loads(await read_all(stream, MAX_ACK))
        if not isinstance(ack, dict):
            raise ValueError("the root's ack is not an object")
        if ack.get("error"):
            raise ConnectionProblem(f"the root refused the inventory: {ack['error']}")
        return body
