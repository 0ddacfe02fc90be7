"""Copy items between two backends as they are: keys, values and expiries.

For ``gatectl backend copy`` (a cluster moved while it is stopped). Items are read a
page at a time and written in small atomic groups, bounded in count and in bytes so
that every backend takes them (etcd's default allows 128 operations and 1.5 MiB per
transaction). Revisions are the destination's own: each write gets a new one.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from .base import Backend, Item, Write, prefix_end

__all__ = ["copy_range", "is_empty"]

_PAGE = 500  # items read per range request
_GROUP_ITEMS = 32  # items per atomic write
_GROUP_BYTES = 512 << 10  # value bytes per atomic write (a larger item goes alone)


async def is_empty(backend: Backend) -> bool:
    """Whether the backend holds no live item."""
    return not await backend.get_range(b"/", prefix_end(b"/"), limit=1)


async def copy_range(src: Backend, dst: Backend, prefix: bytes = b"/", *,
                     skip: Sequence[bytes] = (),
                     copied: Callable[[int], None] = lambda n: None) -> int:
    """Copy every live item of src whose key starts with prefix, but none starting with
    one of skip, into dst (replacing what is there); returns how many. ``copied(n)`` is
    told of each group of n items written."""
    skipped = tuple(skip)
    start, end, total = prefix, prefix_end(prefix), 0
    while page := await src.get_range(start, end, _PAGE):
        start = page[-1].key + b"\0"
        group: list[Item] = []
        size = 0
        for item in page:
            if skipped and item.key.startswith(skipped):
                continue
            if group and (len(group) == _GROUP_ITEMS or size + len(item.value) > _GROUP_BYTES):
                total += await _write(dst, group, copied)
                group, size = [], 0
            group.append(Item(item.key, item.value, item.expires))
            size += len(item.value)
        if group:
            total += await _write(dst, group, copied)
    return total


async def _write(dst: Backend, group: list[Item], copied: Callable[[int], None]) -> int:
    await dst.atomic_write([Write(item.key, item) for item in group])
    copied(len(group))
    return len(group)
