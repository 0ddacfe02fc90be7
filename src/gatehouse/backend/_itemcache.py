"""The SQLite backend's items in memory, by key, most recently used kept.

Sound because one process owns the database file (an exclusive flock) and makes
every change to it through one backend object, which hands this cache each
committed change (its watch events) before anything else runs: a cached item is
what the file holds. Bounded in bytes; large values are not kept.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable

from .base import Event, EventType, Item

__all__ = ["ItemCache"]

MAX_BYTES = 16 << 20  # keys and values kept, in all
MAX_VALUE = 64 << 10  # a larger value is read from the file each time


class ItemCache:
    def __init__(self, max_bytes: int = MAX_BYTES, max_value: int = MAX_VALUE) -> None:
        self._items: OrderedDict[bytes, Item] = OrderedDict()
        self._bytes = 0
        self._max_bytes = max_bytes
        self._max_value = max_value

    def get(self, key: bytes) -> Item | None:
        item = self._items.get(key)
        if item is not None:
            self._items.move_to_end(key)
        return item

    def put(self, item: Item) -> None:
        """Keep ``item`` as the file now holds it (replacing what was kept for its key)."""
        self.drop(item.key)
        if len(item.value) > self._max_value:
            return
        self._items[item.key] = item
        self._bytes += _size(item)
        while self._bytes > self._max_bytes:
            _, oldest = self._items.popitem(last=False)
            self._bytes -= _size(oldest)

    def drop(self, key: bytes) -> None:
        item = self._items.pop(key, None)
        if item is not None:
            self._bytes -= _size(item)

    def apply(self, events: Iterable[Event]) -> None:
        """A committed transaction's changes."""
        for event in events:
            if event.type is EventType.PUT:
                self.put(event.item)
            else:
                self.drop(event.item.key)


def _size(item: Item) -> int:
    return len(item.key) + len(item.value)
