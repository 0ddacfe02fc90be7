"""A leaf's audit events, forwarded to a root over its tunnel, in order.

Forwarding starts from the cursor the root last acknowledged (kept by the leaf's
auth, so it survives restarts) and moves it only after the root's ack: a crash in
between sends a page again, and the root stores each event once, under a key of
the leaf's.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging

from gatehouse.clock import Monotonic, wait_for
from gatehouse.errors import ConnectionProblem, GatehouseError
from gatehouse.tunnel.limits import MAX_ACK
from gatehouse.tunnel.mux import MuxSession, read_all
from gatehouse.tunnel.needs import EventExport

__all__ = ["EVENT_POLL", "PAGE_SIZE", "EventSender"]

log = logging.getLogger(__name__)

EVENT_POLL = 1.0  # seconds between looks at the log once it was forwarded to its end
PAGE_SIZE = 500


class EventSender:
    """Sends this cluster's events to the root ``root`` while a tunnel to it is up."""

    def __init__(self, export: EventExport, root: str, clock: Monotonic) -> None:
        self._export = export
        self._root = root
        self._clock = clock

    async def run(self, session: MuxSession) -> None:
        """Forward until the session closes; a failed page is tried again."""
        while not session.closed.done():
            try:
                moved = await self.forward_page(session)
            except (GatehouseError, OSError, ValueError) as exc:
                log.warning("forwarding events to %s: %s; retrying", self._root, exc)
                moved = False
            if not moved:
                with contextlib.suppress(TimeoutError):
                    await wait_for(self._clock, asyncio.shield(session.closed), EVENT_POLL)

    async def forward_page(self, session: MuxSession) -> bool:
        """Forward one page of events; False when there was nothing new."""
        after = await self._export.cursor(self._root)
        page = await self._export.page(after, PAGE_SIZE)
        if page.last == after:
            return False
        if page.events:
            stream = await session.open({"kind": "events"})
            await stream.write(json.dumps({"events": page.events}).encode())
            stream.write_eof()
            ack = json.loads(await read_all(stream, MAX_ACK))
            if not isinstance(ack, dict):
                raise ValueError("the root's ack is not an object")
            if ack.get("error"):
                raise ConnectionProblem(f"the root refused events: {ack['error']}")
        await self._export.move_cursor(self._root, page.last)
        return True
