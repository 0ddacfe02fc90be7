"""Items held in memory, kept current by a watch of their prefix: reads that cost a
dict lookup instead of a backend read.

The auth reads the roles of every certificate it issues and of every login it checks,
and the record of every host that calls it (a node's heartbeat read its host record
twice and its name claim once); a backend read each time was the largest share of
that work (SQLite: a hop to its thread; PostgreSQL: a round trip).

Freshness: a read first applies the changes queued for the watch. Every backend has
queued a write's events for this process's watchers by the time the write returns, so
a change made through this process is seen by its next read; one made by another auth
on a shared backend, once the backend delivers it (its NOTIFY or watch: milliseconds).
A watch that fell behind or ended is replaced, and the prefix listed again.
Writes that compare revisions read the backend itself, never these copies.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Generic, TypeVar

from gatehouse.backend import Backend, EventType, Item, Watcher, prefix_end
from gatehouse.clock import Clock
from gatehouse.errors import LimitExceeded, NotFound

from .resources import R, ResourceStore

__all__ = ["CachedResourceStore", "HeldItems"]

log = logging.getLogger(__name__)

T = TypeVar("T")


class HeldItems(Generic[T]):
    """The live items under ``prefix``, each parsed by ``parse`` when first read."""

    def __init__(self, backend: Backend, prefix: bytes, parse: Callable[[Item], T],
                 clock: Clock) -> None:
        self._backend = backend
        self._prefix = prefix
        self._parse = parse
        self._clock = clock
        self._watcher: Watcher | None = None
        self._items: dict[bytes, Item] = {}
        self._parsed: dict[bytes, T] = {}  # of _items, filled as they are read
        self._listing = asyncio.Lock()

    async def get(self, key: bytes) -> T | None:
        item = (await self._current()).get(key)
        if item is None or self._expired(item):
            return None
        return self._value(item)

    async def values(self) -> list[T]:
        """Every live item's value, in key order."""
        items = await self._current()
        return [self._value(items[key]) for key in sorted(items)
                if not self._expired(items[key])]

    def _expired(self, item: Item) -> bool:
        """Expired, though the backend's sweep may not have removed it yet."""
        return item.expires is not None and item.expires <= self._clock.now()

    def _value(self, item: Item) -> T:
        found = self._parsed.get(item.key)
        if found is None:
            found = self._parsed[item.key] = self._parse(item)
        return found

    async def _current(self) -> dict[bytes, Item]:
        """The held items, brought up to date with the changes queued for them."""
        if self._follows():
            return self._items
        async with self._listing:
            if self._follows():  # another reader listed meanwhile
                return self._items
            watcher = self._backend.watch([self._prefix])  # first: no change falls between
            try:
                listed = await self._backend.get_range(self._prefix, prefix_end(self._prefix))
            except BaseException:
                watcher.close()
                raise
            self._items = {item.key: item for item in listed}
            self._parsed.clear()
            self._watcher = watcher  # its events replay changes the listing may hold:
            self._follows()  # applied in order, they end where the backend is
            return self._items

    def _follows(self) -> bool:
        """Apply the queued changes; whether the watch still follows the backend."""
        if self._watcher is None:
            return False
        try:
            events = self._watcher.drain()
        except LimitExceeded as exc:
            log.info("the held %r items list again: %s", self._prefix, exc)
            self._watcher = None
            return False
        for event in events:
            self._parsed.pop(event.item.key, None)
            if event.type is EventType.DELETE:
                self._items.pop(event.item.key, None)
            else:
                self._items[event.item.key] = event.item
        if self._watcher.closed:  # the backend closed or is closing
            self._watcher = None
            return False
        return True


class CachedResourceStore(ResourceStore[R]):
    """A ResourceStore whose get and list are served from memory; writes go to the
    backend as ever."""

    def __init__(self, backend: Backend, kind: str, model: type[R], clock: Clock) -> None:
        super().__init__(backend, kind, model)
        self._held = HeldItems(backend, self._prefix, self._load, clock)

    async def get(self, name: str) -> R:
        found = await self._held.get(self._key(name))
        if found is None:
            raise NotFound(f"{self.kind} {name} not found")
        return found

    async def list(self, limit: int = 0) -> list[R]:
        live = await self._held.values()
        return live[:limit] if limit else live
