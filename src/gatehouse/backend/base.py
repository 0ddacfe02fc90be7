"""The key-value interface every storage backend implements, and the parts they share.

Keys are ``/``-separated byte paths (``b"/users/alice"``) kept in byte order; values
are opaque bytes. Each write gets a revision from one counter per backend, so
revisions order every change the backend ever made. Services (users, roles, ...)
turn resources into items; only they know what the bytes mean.

One compliance suite (``tests/backend/test_compliance.py``) holds every
implementation to the contract written in the docstrings below.
"""

from __future__ import annotations

import abc
import asyncio
import datetime as dt
import enum
import logging
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Self

from gatehouse.clock import Clock
from gatehouse.errors import BadParameter, LimitExceeded

__all__ = [
    "WATCH_QUEUE_SIZE",
    "Backend",
    "Event",
    "EventType",
    "Fanout",
    "Item",
    "Sweeper",
    "Watcher",
    "Write",
    "prefix_end",
]

log = logging.getLogger(__name__)

WATCH_QUEUE_SIZE = 4096
"""Events a watcher may hold unread before it is closed with LimitExceeded."""


@dataclass(frozen=True)
class Item:
    """One stored key and value; ``revision`` is set by the backend, ignored on writes."""

    key: bytes
    value: bytes
    expires: dt.datetime | None = None  # aware; at or after this instant the item is gone
    revision: int = 0

    def __post_init__(self) -> None:
        if not isinstance(self.key, bytes) or not self.key.startswith(b"/"):
            raise BadParameter(f"item key {self.key!r}: expected bytes starting with b'/'")
        if not isinstance(self.value, bytes):
            raise BadParameter(f"item {self.key!r}: value is {type(self.value).__name__}, "
                               "expected bytes")
        if self.expires is not None and self.expires.utcoffset() is None:
            raise BadParameter(f"item {self.key!r}: expires {self.expires} has no timezone")
        if self.revision < 0:
            raise BadParameter(f"item {self.key!r}: revision {self.revision} is negative")

    def expired(self, now: dt.datetime) -> bool:
        return self.expires is not None and self.expires <= now


@dataclass(frozen=True)
class Write:
    """One key's part of an ``atomic_write``: a condition on the key, then a change.

    ``expect_revision``: None, whatever is there; 0, no live item; n, the live item
    has revision n. ``item``: the item to store at key, or None to remove whatever
    live item is there (nothing there is fine, and changes nothing).
    """

    key: bytes
    item: Item | None = None
    expect_revision: int | None = None

    def __post_init__(self) -> None:
        if self.item is not None and self.item.key != self.key:
            raise BadParameter(f"write to {self.key!r} carries an item for {self.item.key!r}")
        if self.expect_revision is not None and self.expect_revision < 0:
            raise BadParameter(f"write to {self.key!r}: expected revision "
                               f"{self.expect_revision} is negative")


class EventType(enum.Enum):
    PUT = "put"
    DELETE = "delete"


@dataclass(frozen=True)
class Event:
    """A committed change. A DELETE's item has the key, ``value=b""`` and the
    revision of the deletion itself, so that a watcher sees revisions only grow."""

    type: EventType
    item: Item


def prefix_end(prefix: bytes) -> bytes:
    """The end key of the range ``[prefix, end)`` holding every key that starts with prefix."""
    stripped = prefix.rstrip(b"\xff")
    if not stripped:
        raise BadParameter(f"prefix {prefix!r} has no end key (empty or only 0xff bytes)")
    return stripped[:-1] + bytes([stripped[-1] + 1])


class Backend(abc.ABC):
    """Ordered key-value storage with expiry, revisions, compare-and-swap and watches.

    An item whose ``expires <= clock.now()`` is invisible: reads skip it, writes
    treat it as absent. ``sweep_expired`` removes such items and announces each as
    a DELETE; implementations run it in a background task that ``close()`` stops.
    Every write gets a new revision, higher than any before it in this backend.
    """

    clock: Clock
    # The most writes one atomic_write takes, each of them an item with an expiry (the
    # costliest kind); callers that batch size their batches by it. One more is refused
    # whole with BadParameter.
    max_atomic_writes: int = 1024

    @abc.abstractmethod
    async def get(self, key: bytes) -> Item:
        """The live item at key; NotFound if there is none."""

    @abc.abstractmethod
    async def get_range(self, start: bytes, end: bytes, limit: int = 0, *,
                        reverse: bool = False) -> list[Item]:
        """Live items with ``start <= key < end`` in key order, or from the last key
        down with ``reverse``; at most limit (0 = all), the first ones in that order."""

    @abc.abstractmethod
    async def put(self, item: Item) -> Item:
        """Store item whether or not its key exists; returns it with its new revision."""

    @abc.abstractmethod
    async def create(self, item: Item) -> Item:
        """Store item only if no live item has its key, else AlreadyExists."""

    @abc.abstractmethod
    async def update(self, item: Item) -> Item:
        """Replace the live item at item.key, else NotFound."""

    @abc.abstractmethod
    async def compare_and_swap(self, expected: Item, replace_with: Item) -> Item:
        """Replace the item only if its current value is ``expected.value``, else
        CompareFailed (also when the item is missing); keys must match (BadParameter)."""

    @abc.abstractmethod
    async def atomic_write(self, writes: Sequence[Write]) -> None:
        """Apply every write, or none: CompareFailed if some write's expectation does
        not hold. Each change gets its own revision and event, in the order given;
        the keys must differ (BadParameter)."""

    @abc.abstractmethod
    async def delete(self, key: bytes) -> None:
        """Remove the live item at key, else NotFound."""

    @abc.abstractmethod
    async def delete_range(self, start: bytes, end: bytes) -> int:
        """Remove every live item with ``start <= key < end``; returns how many."""

    @abc.abstractmethod
    async def sweep_expired(self) -> int:
        """Remove expired items, announcing each as a DELETE; returns how many."""

    @abc.abstractmethod
    def watch(self, prefixes: Sequence[bytes], *, queue_size: int = WATCH_QUEUE_SIZE) -> Watcher:
        """A watcher that receives, in revision order and exactly once, every change
        committed after this call returns to a key starting with one of prefixes."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Stop background work, end every watcher and release storage. Idempotent."""

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()


def check_limit(limit: int) -> None:
    if limit < 0:
        raise BadParameter(f"range limit {limit}: expected 0 (no limit) or more")


def check_writes(writes: Sequence[Write], most: int) -> None:
    if len(writes) > most:
        raise BadParameter(f"atomic_write of {len(writes)} keys: this backend takes at most "
                           f"{most} in one write")
    keys = {w.key for w in writes}
    if len(keys) != len(writes):
        raise BadParameter("atomic_write: a key appears more than once")


def unmet(write: Write, revision: int) -> bool:
    """Whether the live item at write.key (its revision; 0 if none) fails write's expectation."""
    return write.expect_revision is not None and revision != write.expect_revision


def check_swap(expected: Item, replace_with: Item) -> None:
    if expected.key != replace_with.key:
        raise BadParameter(f"compare_and_swap: keys differ ({expected.key!r} expected, "
                           f"{replace_with.key!r} to write)")


class Watcher:
    """An async iterator of Events for a set of key prefixes.

    Events queue up until read. A watcher that lets more than ``queue_size``
    events pile up is closed and its iteration raises LimitExceeded: it missed
    nothing silently, and its owner should list again and start a new watch.
    ``close()`` ends the iteration (StopAsyncIteration), as does closing the backend.
    """

    def __init__(self, prefixes: Sequence[bytes], *, queue_size: int,
                 on_close: Callable[[Watcher], None]) -> None:
        if isinstance(prefixes, bytes | str):
            raise BadParameter("watch prefixes: expected a sequence of bytes, got one value")
        if not prefixes:
            raise BadParameter("watch needs at least one prefix (b'/' watches every key)")
        if queue_size < 1:
            raise BadParameter(f"watch queue_size {queue_size}: expected 1 or more")
        self.prefixes = tuple(prefixes)
        self._queue_size = queue_size
        self._on_close = on_close
        self._events: deque[Event] = deque()
        self._ready = asyncio.Event()
        self._closed = False
        self._error: LimitExceeded | None = None

    @property
    def closed(self) -> bool:
        return self._closed

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._events.clear()
        self._ready.set()
        self._on_close(self)

    def _offer(self, events: Sequence[Event]) -> None:
        """Queue the events this watcher wants; called by the backend after a commit."""
        if self._closed:
            return
        for event in events:
            if not event.item.key.startswith(self.prefixes):
                continue
            if len(self._events) >= self._queue_size:
                self._fail(f"fell more than {self._queue_size} events behind")
                return
            self._events.append(event)
            self._ready.set()

    def _fail(self, why: str) -> None:
        """Close with LimitExceeded: events were lost to this watcher (why), so it ends."""
        if self._closed:
            return
        self._error = LimitExceeded(f"watcher on {list(self.prefixes)} {why} and was closed; "
                                    "list again and start a new watch")
        self.close()

    def drain(self) -> list[Event]:
        """The events queued now, without waiting; LimitExceeded if the watcher fell
        behind, [] once it is closed."""
        if self._error is not None:
            error, self._error = self._error, None
            raise error
        events = list(self._events)
        self._events.clear()
        return events

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> Event:
        while True:
            if self._error is not None:
                error, self._error = self._error, None
                raise error
            if self._closed:
                raise StopAsyncIteration
            if self._events:
                return self._events.popleft()
            self._ready.clear()
            await self._ready.wait()

    # close() is synchronous, so both `with` and `async with` close the watcher.
    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class Fanout:
    """Hands committed events to in-process watchers.

    The backend calls ``emit`` right after each commit, while it still holds
    whatever serializes its writes, so every watcher sees revision order. A
    backend that emits later (one that learns of commits from its database) names
    the last revision committed before a watch began (``after``); that watcher gets
    only later events.
    """

    def __init__(self) -> None:
        # Each watcher, with the revision after which it wants events; a dict keeps
        # registration order.
        self._watchers: dict[Watcher, int] = {}

    def watch(self, prefixes: Sequence[bytes], queue_size: int, *, after: int = 0) -> Watcher:
        """A new watcher; ``after``: a backend whose events may arrive after the watch
        starts (etcd's) skips those of changes it had seen committed before."""
        watcher = Watcher(prefixes, queue_size=queue_size, on_close=self._forget)
        self._watchers[watcher] = after
        return watcher

    def emit(self, events: Sequence[Event]) -> None:
        if events:
            for watcher, after in list(self._watchers.items()):
                if events[0].item.revision > after:
                    watcher._offer(events)
                elif events[-1].item.revision > after:
                    watcher._offer([e for e in events if e.item.revision > after])

    def wants(self, key: bytes) -> bool:
        """Whether some open watcher watches key."""
        return any(key.startswith(watcher.prefixes) for watcher in self._watchers)

    def may_want(self, area: bytes) -> bool:
        """Whether some open watcher may watch a key that starts with ``area``: one of
        its prefixes starts with area, or area with it."""
        return any(prefix.startswith(area) or area.startswith(prefix)
                   for watcher in self._watchers for prefix in watcher.prefixes)

    def fail(self, why: str) -> None:
        """End every watcher with LimitExceeded: events were lost to them (why)."""
        for watcher in list(self._watchers):
            watcher._fail(why)

    def close(self) -> None:
        for watcher in list(self._watchers):
            watcher.close()

    def _forget(self, watcher: Watcher) -> None:
        self._watchers.pop(watcher, None)


class Sweeper:
    """Owns the task that calls a sweep every ``interval`` seconds of real time."""

    def __init__(self, interval: float, name: str) -> None:
        if interval <= 0:
            raise BadParameter(f"sweep interval {interval}: expected seconds above 0")
        self._interval = interval
        self._name = name
        self._task: asyncio.Task[None] | None = None

    def start(self, sweep: Callable[[], Awaitable[int]]) -> None:
        self._task = asyncio.create_task(self._run(sweep), name=self._name)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            # wait() returns when the task is done without raising its CancelledError,
            # yet a cancellation of stop() itself still propagates.
            await asyncio.wait({self._task})

    async def _run(self, sweep: Callable[[], Awaitable[int]]) -> None:
        while True:
            await asyncio.sleep(self._interval)
            try:
                await sweep()
            except Exception:
                log.exception("expiry sweep failed; retrying in %ss", self._interval)
