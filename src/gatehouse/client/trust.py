"""Following the trust an auth pushes (wire.trust.TrustSnapshot), for nodes and proxies.

Every change on the auth arrives as a new snapshot within moments. While the
auth is unreachable the last snapshot stays in force (the CA cache); a disable
or removal always arrives as a new snapshot, so a cached CA never outlives one.
"""

from __future__ import annotations

import asyncio
import logging
import random

from gatehouse.errors import GatehouseError
from gatehouse.wire.authapi import AuthAPI
from gatehouse.wire.trust import TrustSnapshot

__all__ = ["TrustWatcher"]

log = logging.getLogger(__name__)


class TrustWatcher:
    def __init__(self, api: AuthAPI) -> None:
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
                async for snapshot in self._api.watch_trust():
                    self.snapshot = snapshot
                    self.ready.set()
                    for event in self._subscribers:
                        event.set()
                    delay = 0.2
            except GatehouseError as exc:
                log.warning("trust stream from auth lost (%s); keeping last snapshot", exc)
            await asyncio.sleep(delay * random.uniform(0.5, 1.5))
            delay = min(delay * 2, 10.0)
