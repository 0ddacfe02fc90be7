"""The dialing end of reverse tunnels: one link to each cluster to dial (a leaf proxy's
enabled roots; a tunnel-mode node's own cluster, which never changes).

The agent follows the trust snapshot: each enabled root gets a task that keeps its
tunnels up, one to each of its proxies (link.py); a root disabled, removed, or moved
to another address or CA has its task cancelled and awaited at once, which drops its
tunnels (a role map edit changes nothing here). When the agent stops, so do all its tunnels.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from typing import Any

from gatehouse._sys.tasks import TaskOwner
from gatehouse.tunnel.needs import Root, RootsToDial

__all__ = ["Link", "TunnelAgent"]

log = logging.getLogger(__name__)

Link = Callable[[Root], Coroutine[Any, Any, None]]  # keep a tunnel to the root until cancelled


class TunnelAgent:
    def __init__(self, roots: RootsToDial, updated: asyncio.Event, link: Link) -> None:
        self._roots = roots
        self._updated = updated  # set when ``roots`` may have changed
        self._link = link
        self._links = TaskOwner("the tunnel agent")
        self._running: dict[str, tuple[Root, asyncio.Task[None]]] = {}

    async def run(self) -> None:
        """Follow the roots to dial until cancelled; then stop every tunnel."""
        try:
            while True:
                await self._reconcile()
                await self._updated.wait()
                self._updated.clear()
        finally:
            self._running.clear()
            await self._links.close()

    async def _reconcile(self) -> None:
        wanted = self._roots()
        gone = [name for name, (root, task) in self._running.items()
                if wanted.get(name) != root or task.done()]
        await self._links.stop(self._running.pop(name)[1] for name in gone)
        for name in gone:
            log.info("tunnel to root %s stopped", name)
        for name, root in wanted.items():
            if name not in self._running:
                self._running[name] = (root, self._links.spawn(self._link(root)))
