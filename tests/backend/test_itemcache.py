"""The SQLite backend's item cache: bounded in bytes, large values not kept, and a
committed change (its events) replaces or drops what was kept. Its coherence with
the file is the compliance suite's (tests/backend/test_compliance.py), run on SQLite."""

from __future__ import annotations

from gatehouse.backend import Event, EventType, Item
from gatehouse.backend._itemcache import ItemCache


def _item(key: str, size: int, revision: int = 1) -> Item:
    return Item(key=key.encode(), value=b"v" * size, revision=revision)


def test_the_least_recently_used_items_go_past_the_bound() -> None:
    cache = ItemCache(max_bytes=3 * (2 + 10), max_value=100)
    for key in ("/a", "/b", "/c"):
        cache.put(_item(key, 10))
    assert cache.get(b"/a") is not None  # now the most recently used
    cache.put(_item("/d", 10))
    assert [cache.get(k) is not None for k in (b"/a", b"/b", b"/c", b"/d")] == [
        True, False, True, True]


def test_a_large_value_is_not_kept_and_drops_what_was() -> None:
    cache = ItemCache(max_bytes=1000, max_value=100)
    cache.put(_item("/a", 10))
    cache.put(_item("/a", 101, revision=2))
    assert cache.get(b"/a") is None


def test_committed_events_replace_and_drop() -> None:
    cache = ItemCache()
    cache.put(_item("/a", 1))
    cache.put(_item("/b", 1))
    cache.apply([Event(EventType.PUT, _item("/a", 2, revision=3)),
                 Event(EventType.DELETE, Item(b"/b", b"", revision=4))])
    assert cache.get(b"/a") == _item("/a", 2, revision=3)
    assert cache.get(b"/b") is None
