"""A backend that times every operation of another, for gatehouse.metrics.

It changes nothing else: results, errors and watches are the wrapped backend's.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from gatehouse import metrics
from gatehouse.backend.base import WATCH_QUEUE_SIZE, Backend, Item, Watcher, Write

__all__ = ["MeasuredBackend"]


class _Timed:
    """A ``with`` block observed under one operation's name (time.perf_counter)."""

    __slots__ = ("_histogram", "_start")

    def __init__(self, operation: str) -> None:
        self._histogram = metrics.BACKEND_SECONDS.labels(operation)
        self._start = 0.0

    def __enter__(self) -> None:
        self._start = time.perf_counter()

    def __exit__(self, *exc: object) -> None:
        self._histogram.observe(time.perf_counter() - self._start)


class MeasuredBackend(Backend):
    def __init__(self, inner: Backend) -> None:
        self.inner = inner
        self.clock = inner.clock
        self.max_atomic_writes = inner.max_atomic_writes

    async def get(self, key: bytes) -> Item:
        with _Timed("get"):
            return await self.inner.get(key)

    async def get_range(self, start: bytes, end: bytes, limit: int = 0, *,
                        reverse: bool = False) -> list[Item]:
        with _Timed("get_range"):
            return await self.inner.get_range(start, end, limit, reverse=reverse)

    async def put(self, item: Item) -> Item:
        with _Timed("put"):
            return await self.inner.put(item)

    async def create(self, item: Item) -> Item:
        with _Timed("create"):
            return await self.inner.create(item)

    async def update(self, item: Item) -> Item:
        with _Timed("update"):
            return await self.inner.update(item)

    async def compare_and_swap(self, expected: Item, replace_with: Item) -> Item:
        with _Timed("compare_and_swap"):
            return await self.inner.compare_and_swap(expected, replace_with)

    async def atomic_write(self, writes: Sequence[Write]) -> None:
        with _Timed("atomic_write"):
            await self.inner.atomic_write(writes)

    async def delete(self, key: bytes) -> None:
        with _Timed("delete"):
            await self.inner.delete(key)

    async def delete_range(self, start: bytes, end: bytes) -> int:
        with _Timed("delete_range"):
            return await self.inner.delete_range(start, end)

    async def sweep_expired(self) -> int:
        with _Timed("sweep_expired"):
            return await self.inner.sweep_expired()

    def watch(self, prefixes: Sequence[bytes], *, queue_size: int = WATCH_QUEUE_SIZE) -> Watcher:
        return self.inner.watch(prefixes, queue_size=queue_size)

    async def close(self) -> None:
        await self.inner.close()
