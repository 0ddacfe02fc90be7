"""Injected time: services take a Clock so that tests can move time by hand."""

from __future__ import annotations

import datetime as dt
from typing import Protocol

__all__ = ["Clock", "FakeClock", "SystemClock", "utc"]


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
