"""The in-memory backend: a dict and a sorted key list, for tests and throwaway clusters.

No method awaits between reading and writing its state, so each one is atomic
on the event loop and needs no lock.
"""

from __future__ import annotations

import bisect
import dataclasses
from collections.abc import Sequence

from gatehouse.clock import Clock
from gatehouse.errors import AlreadyExists, CompareFailed, ConnectionProblem, NotFound

from .base import (
    WATCH_QUEUE_SIZE,
    Backend,
    Event,
    EventType,
    Fanout,
    Item,
    Sweeper,
    Watcher,
    Write,
    check_limit,
    check_swap,
    check_writes,
    unmet,
)

__all__ = ["MemoryBackend"]


class MemoryBackend(Backend):
    """Items held in this process only; ``open`` starts its expiry sweeper."""

    def __init__(self, *, clock: Clock, sweeper: Sweeper) -> None:
        self.clock = clock
        self._items: dict[bytes, Item] = {}
        self._keys: list[bytes] = []  # sorted, for ranges
        self._revision = 0
        self._fanout = Fanout()
        self._sweeper = sweeper
        self._closed = False

    @classmethod
    async def open(cls, *, clock: Clock, sweep_interval: float = 1.0) -> MemoryBackend:
        backend = cls(clock=clock, sweeper=Sweeper(sweep_interval, "memory-backend-sweep"))
        backend._sweeper.start(backend.sweep_expired)
        return backend

    async def get(self, key: bytes) -> Item:
        self._check_open()
        item = self._live(key)
        if item is None:
            raise NotFound(f"key {key!r} not found")
        return item

    async def get_range(self, start: bytes, end: bytes, limit: int = 0, *,
                        reverse: bool = False) -> list[Item]:
        self._check_open()
        check_limit(limit)
        now = self.clock.now()
        found: list[Item] = []
        first, last = bisect.bisect_left(self._keys, start), bisect.bisect_left(self._keys, end)
        for i in range(last - 1, first - 1, -1) if reverse else range(first, last):
            if limit and len(found) >= limit:
                break
            item = self._items[self._keys[i]]
            if not item.expired(now):
                found.append(item)
        return found

    async def put(self, item: Item) -> Item:
        self._check_open()
        return self._store(item)

    async def create(self, item: Item) -> Item:
        self._check_open()
        if self._live(item.key) is not None:
            raise AlreadyExists(f"key {item.key!r} already exists")
        return self._store(item)

    async def update(self, item: Item) -> Item:
        self._check_open()
        if self._live(item.key) is None:
            raise NotFound(f"key {item.key!r} not found")
        return self._store(item)

    async def compare_and_swap(self, expected: Item, replace_with: Item) -> Item:
        self._check_open()
        check_swap(expected, replace_with)
        current = self._live(expected.key)
        if current is None:
            raise CompareFailed(f"key {expected.key!r} not found")
        if current.value != expected.value:
            raise CompareFailed(f"key {expected.key!r} has changed")
        return self._store(replace_with)

    async def atomic_write(self, writes: Sequence[Write]) -> None:
        self._check_open()
        check_writes(writes, self.max_atomic_writes)
        for write in writes:
            current = self._live(write.key)
            if unmet(write, current.revision if current is not None else 0):
                raise CompareFailed(f"key {write.key!r} is missing or has changed")
        for write in writes:
            if write.item is not None:
                self._store(write.item)
            elif self._live(write.key) is not None:
                self._remove([write.key])

    async def delete(self, key: bytes) -> None:
        self._check_open()
        if self._live(key) is None:
            raise NotFound(f"key {key!r} not found")
        self._remove([key])

    async def delete_range(self, start: bytes, end: bytes) -> int:
        self._check_open()
        now = self.clock.now()
        lo = bisect.bisect_left(self._keys, start)
        hi = bisect.bisect_left(self._keys, end, lo=lo)
        doomed = [key for key in self._keys[lo:hi] if not self._items[key].expired(now)]
        self._remove(doomed)
        return len(doomed)

    async def sweep_expired(self) -> int:
        self._check_open()
        now = self.clock.now()
        doomed = [key for key in self._keys if self._items[key].expired(now)]
        self._remove(doomed)
        return len(doomed)

    def watch(self, prefixes: Sequence[bytes], *, queue_size: int = WATCH_QUEUE_SIZE) -> Watcher:
        self._check_open()
        return self._fanout.watch(prefixes, queue_size)

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        await self._sweeper.stop()
        self._fanout.close()
        self._items.clear()
        self._keys.clear()

    def _check_open(self) -> None:
        if self._closed:
            raise ConnectionProblem("memory backend is closed")

    def _live(self, key: bytes) -> Item | None:
        item = self._items.get(key)
        if item is None or item.expired(self.clock.now()):
            return None
        return item

    def _store(self, item: Item) -> Item:
        self._revision += 1
        stored = dataclasses.replace(item, revision=self._revision)
        if stored.key not in self._items:
            bisect.insort(self._keys, stored.key)
        self._items[stored.key] = stored
        self._fanout.emit([Event(EventType.PUT, stored)])
        return stored

    def _remove(self, keys: Sequence[bytes]) -> None:
        """Delete keys (in key order), each with its own revision and DELETE event."""
        events = []
        for key in keys:
            del self._items[key]
            del self._keys[bisect.bisect_left(self._keys, key)]
            self._revision += 1
            events.append(Event(EventType.DELETE, Item(key, b"", revision=self._revision)))
        self._fanout.emit(events)
