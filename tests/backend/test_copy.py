"""Copying items between backends (gatectl backend copy): keys, values and expiries as
they are, nothing expired, nothing skipped by the caller."""

from __future__ import annotations

import datetime as dt

from gatehouse.backend import Item, MemoryBackend
from gatehouse.backend.copy import copy_range, is_empty
from gatehouse.clock import FakeClock
from gatehouse.errors import NotFound


async def test_copy_keeps_values_and_expiry_and_drops_what_expired() -> None:
    clock = FakeClock()
    now = clock.now()
    async with await MemoryBackend.open(clock=clock) as src, \
            await MemoryBackend.open(clock=clock) as dst:
        assert await is_empty(dst)
        await src.put(Item(b"/users/alice", b"A"))
        await src.put(Item(b"/tokens/t1", b"T", expires=now + dt.timedelta(minutes=15)))
        await src.put(Item(b"/tokens/gone", b"G", expires=now + dt.timedelta(seconds=1)))
        await src.put(Item(b"/events/1", b"E" * 600_000))  # alone in its group by size
        for n in range(1200):  # more than a page and many groups
            await src.put(Item(b"/nodes/%04d" % n, b"%d" % n))
        clock.advance(dt.timedelta(seconds=2))
        told: list[int] = []

        copied = await copy_range(src, dst, skip=[b"/events/"], copied=told.append)

        assert copied == 1202 == sum(told)
        assert max(told) <= 32
        assert (await dst.get(b"/users/alice")).value == b"A"
        token = await dst.get(b"/tokens/t1")
        assert (token.value, token.expires) == (b"T", now + dt.timedelta(minutes=15))
        assert len(await dst.get_range(b"/nodes/", b"/nodes0")) == 1200
        for absent in (b"/tokens/gone", b"/events/1"):
            try:
                await dst.get(absent)
            except NotFound:
                continue
            raise AssertionError(f"{absent!r} was copied")
        assert await copy_range(src, dst, b"/events/") == 1
        assert len((await dst.get(b"/events/1")).value) == 600_000
        clock.advance(dt.timedelta(minutes=15))  # the copied token expires when it did
        assert not await dst.get_range(b"/tokens/", b"/tokens0")
        assert not await is_empty(dst)
