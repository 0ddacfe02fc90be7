"""Injected time: services take a clock so that tests can move time by hand.

Two kinds, for two uses. ``Clock`` is wall time (``now()``), for certificates and
audit. ``Monotonic`` is elapsed time and waiting (``monotonic()``, ``sleep()``), for
timeouts, heartbeats and backoff; ``wait_for`` is ``asyncio.wait_for`` on such a clock.
The fakes move only when told to; ``FakeMonotonic.advance`` wakes the sleepers due.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import heapq
import itertools
import time
from collections.abc import Awaitable
from typing import Protocol, TypeVar

__all__ = [
    "Clock",
    "FakeClock",
    "FakeMonotonic",
    "Monotonic",
    "SystemClock",
    "SystemMonotonic",
    "utc",
    "wait_for",
]

T = TypeVar("T")


def utc(ts: float) -> dt.datetime:
    """A Unix timestamp as an aware UTC datetime."""
    return dt.datetime.fromtimestamp(ts, tz=dt.UTC)


class Clock(Protocol):
    def now(self) -> dt.datetime:
        """The current time, timezone-aware UTC."""
        ...


class SystemClock:
    def now(self) -> dt.datetime:
        return dt.datetime.now(tz=dt.UTC)


class FakeClock:
    """A clock that only moves when told to."""

    def __init__(self, start: dt.datetime | None = None) -> None:
        self._now = start or dt.datetime(2026, 1, 1, tzinfo=dt.UTC)

    def now(self) -> dt.datetime:
        return self._now

    def advance(self, delta: dt.timedelta) -> None:
        self._now += delta


class Monotonic(Protocol):
    """Elapsed time, and waiting for it to pass."""

    def monotonic(self) -> float:
        """Seconds from an arbitrary start; never goes back."""
        ...

    async def sleep(self, seconds: float) -> None:
        """Return once ``seconds`` have passed on this clock."""
        ...


class SystemMonotonic:
    """The event loop's own time (``time.monotonic``)."""

    def monotonic(self) -> float:
        return time.monotonic()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


class FakeMonotonic:
    """Elapsed time that moves only by ``advance``; sleepers wake when it reaches them."""

    def __init__(self, start: float = 1000.0) -> None:
        self._now = start
        self._sleepers: list[tuple[float, int, asyncio.Future[None]]] = []
        self._order = itertools.count()  # ties wake in the order they went to sleep
        self._asleep = asyncio.Event()

    def monotonic(self) -> float:
        return self._now

    async def sleep(self, seconds: float) -> None:
        if seconds <= 0:
            await asyncio.sleep(0)
            return
        fut = asyncio.get_running_loop().create_future()
        heapq.heappush(self._sleepers, (self._now + seconds, next(self._order), fut))
        self._asleep.set()
        try:
            await fut
        finally:
            fut.cancel()  # a no-op once woken; a cancelled sleeper is skipped by advance

    def advance(self, seconds: float) -> None:
        """Move time forward and wake every sleeper now due (they run at the next await)."""
        self._now += seconds
        while self._sleepers and self._sleepers[0][0] <= self._now:
            _, _, fut = heapq.heappop(self._sleepers)
            if not fut.done():
                fut.set_result(None)

    @property
    def sleepers(self) -> int:
        """How many tasks sleep on this clock now."""
        return sum(1 for _, _, fut in self._sleepers if not fut.done())

    async def until_sleeping(self, count: int = 1) -> None:
        """Wait (in real time: wrap it in a timeout) until ``count`` tasks sleep on this
        clock, so that a test advances time only once the code under test waits for it."""
        while self.sleepers < count:
            self._asleep.clear()
            await self._asleep.wait()


async def wait_for(clock: Monotonic, aw: Awaitable[T], timeout: float) -> T:
    """``aw``'s result, or TimeoutError once ``timeout`` seconds of ``clock`` have passed
    (then ``aw`` is cancelled, as by ``asyncio.wait_for``; shield a future to keep it)."""
    inner = asyncio.ensure_future(aw)
    timer = asyncio.ensure_future(clock.sleep(timeout))
    try:
        await asyncio.wait([inner, timer], return_when=asyncio.FIRST_COMPLETED)
    finally:  # done, or cancelled from outside: neither task outlives this call
        for task in (inner, timer):
            task.cancel()
        await asyncio.wait([inner, timer])
    if inner.cancelled() and timer.done() and not timer.cancelled():
        raise TimeoutError
    return inner.result()
