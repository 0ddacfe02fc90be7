"""The etcd backend: cluster state in an etcd v3 cluster, shared by several processes.

Client: etcd's JSON gateway to its v3 API (``/v3/kv/range``, ``/v3/kv/txn``,
``/v3/watch``) over aiohttp, which Gatehouse already uses. The gateway is served on
every etcd client port since 3.4 (tested with Debian's 3.4.23); the asyncio gRPC
client aetcd would add grpcio and protobuf (native wheels) to speak the same API.

Revisions: etcd gives one revision to a whole transaction, and the contract gives
each change its own. So a change's revision is ``etcd revision * SUB + n``, n being
its place among the changes of its transaction (kept beside the value for a put; a
delete follows the change before it in etcd's watch order, which is the order of
the transaction's operations). Every transaction here changes only keys it read,
guarded by their ``mod_revision``, so each operation is exactly one change.

Expiry follows the injected clock, as in the other backends: ``expires`` is kept
with the value, reads skip expired items, and writes read, decide, then commit on
the condition that nothing changed meanwhile (retrying a bounded number of times).
A put with an expiry also writes an entry of an expiry index, so that a sweep reads
what is due rather than every item (an atomic_write with expiries thus fits 64
writes in etcd's default of 128 operations per transaction).

Watches: one etcd watch per backend over its prefix, resumed after a reconnect from
the revision after the last one delivered, so nothing is missed or repeated; local
watchers get its events through a Fanout.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import logging
import struct
from collections.abc import Callable, Sequence
from typing import Any

from gatehouse.clock import Clock
from gatehouse.errors import (
    AlreadyExists,
    CompareFailed,
    ConnectionProblem,
    GatehouseError,
    NotFound,
)

from ._etcd_gateway import CALL_TIMEOUT, EtcdSettings, Gateway, b64, unb64
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
    prefix_end,
    unmet,
)

__all__ = ["SUB", "EtcdBackend", "EtcdSettings"]

log = logging.getLogger(__name__)

SUB = 1 << 16
"""Revisions per etcd revision: room for the changes of one transaction."""
CHUNK = 128  # etcd's default --max-txn-ops: operations per transaction
ATTEMPTS = 32  # read-decide-commit rounds before a write gives up on a busy key
RETRY_DELAYS = (0.05, 0.1, 0.2, 0.5, 1.0, 2.0)  # between watch reconnects, then the last
# Seconds a watch may stay silent before it is opened again from the last revision seen.
# etcd says nothing on a quiet watch, so silence cannot tell a quiet prefix from a
# connection that hangs (a NAT or firewall that forgot it, a peer that stopped): a fresh
# watch either answers at once (etcd confirms it) or is a broken one, retried.
WATCH_IDLE = 15.0

_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_HEADER = struct.Struct(">BBHq")  # format 1, has expiry, place in its transaction, expiry (us)
_FORMAT = 1
_MICROSECOND = dt.timedelta(microseconds=1)
_INDEX = b"\0expires/"  # + expiry (us, 8 bytes big-endian) + item key: the expiry index

Kv = dict[str, Any]


def _same(raw_key: bytes, kv: Kv | None) -> dict[str, Any]:
    """A transaction condition: raw_key is as it was read (mod_revision 0: absent)."""
    mod = kv["mod_revision"] if kv is not None else "0"
    return {"key": b64(raw_key), "target": "MOD", "result": "EQUAL", "mod_revision": mod}


def _read_op(raw_key: bytes) -> dict[str, Any]:
    return {"request_range": {"key": b64(raw_key)}}


def _delete_op(raw_key: bytes) -> dict[str, Any]:
    return {"request_delete_range": {"key": b64(raw_key)}}


def _read_back(answer: dict[str, Any]) -> list[Kv | None]:
    """The kvs of a transaction's read operations, one (or None) per operation."""
    found: list[Kv | None] = []
    for response in answer.get("responses", []):
        kvs = response.get("response_range", {}).get("kvs", [])
        found.append(kvs[0] if kvs else None)
    return found


def _micros(when: dt.datetime) -> int:
    return (when - _EPOCH) // _MICROSECOND


def _encode(item: Item, place: int) -> bytes:
    expires = 0 if item.expires is None else _micros(item.expires)
    return _HEADER.pack(_FORMAT, item.expires is not None, place, expires) + item.value


class EtcdBackend(Backend):
    """Items under one prefix of an etcd cluster; open with ``EtcdBackend.open``."""

    # A transaction takes CHUNK operations, and an item with an expiry is two: the item
    # and its expiry index entry.
    max_atomic_writes = CHUNK // 2

    def __init__(self, settings: EtcdSettings, gateway: Gateway, revision: int, *,
                 clock: Clock, sweeper: Sweeper) -> None:
        self.settings = settings
        self.clock = clock
        self._gateway = gateway
        self._root = settings.prefix.encode()
        self._seen = revision  # the highest etcd revision an answer has shown
        self._fanout = Fanout()
        self._sweeper = sweeper
        self._follower: asyncio.Task[None] | None = None
        self._delivered = revision  # the etcd revision up to which watchers have events
        self._progress = asyncio.Event()  # set (and replaced) when _delivered grows
        self._orphans: set[asyncio.Task[tuple[bool, dict[str, Any]]]] = set()
        self._closed = False

    @classmethod
    async def open(cls, settings: EtcdSettings, *, clock: Clock,
                   sweep_interval: float = 1.0) -> EtcdBackend:
        """Connect (ConnectionProblem if no peer answers) and start following changes."""
        sweeper = Sweeper(sweep_interval, "etcd-backend-sweep")
        gateway = Gateway(settings)
        try:
            answer = await gateway.call("/v3/kv/range", {
                "key": b64(settings.prefix.encode() + b"/"), "count_only": True})
        except BaseException:
            await gateway.close()
            raise
        revision = int(answer["header"]["revision"])
        backend = cls(settings, gateway, revision, clock=clock, sweeper=sweeper)
        backend._follower = asyncio.create_task(backend._follow(revision + 1),
                                                name="etcd-backend-watch")
        sweeper.start(backend.sweep_expired)
        return backend

    async def get(self, key: bytes) -> Item:
        item = self._live(await self._read(key))
        if item is None:
            raise NotFound(f"key {key!r} not found")
        return item

    async def get_range(self, start: bytes, end: bytes, limit: int = 0, *,
                        reverse: bool = False) -> list[Item]:
        check_limit(limit)
        self._check_open()
        found: list[Item] = []
        lo, hi, revision = start, end, 0
        while lo < hi:  # each round reads at least one key, or stops
            body: dict[str, Any] = {"key": b64(self._root + lo),
                                    "range_end": b64(self._root + hi)}
            if limit:
                body["limit"] = limit - len(found)
            if reverse:
                body |= {"sort_order": "DESCEND", "sort_target": "KEY"}
            if revision:
                body["revision"] = revision  # later pages from the same snapshot
            answer = await self._call("/v3/kv/range", body)
            revision = int(answer["header"]["revision"])
            kvs = answer.get("kvs", [])
            found += [item for item in map(self._live, kvs) if item is not None]
            if not kvs or not answer.get("more") or (limit and len(found) >= limit):
                break
            last = self._key(kvs[-1])
            lo, hi = (lo, last) if reverse else (last + b"\x00", hi)
        return found[:limit or None]

    async def put(self, item: Item) -> Item:
        self._check_open()
        _, answer = await self._txn([], self._put_ops(item, 0))
        return dataclasses.replace(item, revision=int(answer["header"]["revision"]) * SUB)

    async def create(self, item: Item) -> Item:
        def decide(live: Item | None) -> Item:
            if live is not None:
                raise AlreadyExists(f"key {item.key!r} already exists")
            return item

        return await self._change(item, decide)

    async def update(self, item: Item) -> Item:
        def decide(live: Item | None) -> Item:
            if live is None:
                raise NotFound(f"key {item.key!r} not found")
            return item

        return await self._change(item, decide)

    async def compare_and_swap(self, expected: Item, replace_with: Item) -> Item:
        check_swap(expected, replace_with)

        def decide(live: Item | None) -> Item:
            if live is None:
                raise CompareFailed(f"key {expected.key!r} not found")
            if live.value != expected.value:
                raise CompareFailed(f"key {expected.key!r} has changed")
            return replace_with

        return await self._change(replace_with, decide)

    async def atomic_write(self, writes: Sequence[Write]) -> None:
        check_writes(writes, self.max_atomic_writes)
        self._check_open()
        keys = [self._root + w.key for w in writes]
        _, answer = await self._txn([], [_read_op(k) for k in keys])
        current = _read_back(answer)
        for _ in range(ATTEMPTS):
            ops: list[dict[str, Any]] = []  # the changes, then their expiry index entries
            indexed: list[dict[str, Any]] = []
            lives = [self._live(kv) for kv in current]
            for write, live in zip(writes, lives, strict=True):
                if unmet(write, live.revision if live is not None else 0):
                    raise CompareFailed(f"key {write.key!r} is missing or has changed")
            for write, raw, live in zip(writes, keys, lives, strict=True):
                if write.item is not None:
                    put, *index = self._put_ops(write.item, len(ops))
                    ops.append(put)
                    indexed += index
                elif live is not None:
                    ops.append(_delete_op(raw))
            if not ops:
                return
            done, answer = await self._txn(
                [_same(k, kv) for k, kv in zip(keys, current, strict=True)], ops + indexed,
                [_read_op(k) for k in keys])
            if done:
                return
            current = _read_back(answer)
        raise CompareFailed(f"atomic_write: keys kept changing; gave up after {ATTEMPTS} tries")

    async def delete(self, key: bytes) -> None:
        def decide(live: Item | None) -> None:
            if live is None:
                raise NotFound(f"key {key!r} not found")

        await self._change(Item(key, b""), decide)

    async def delete_range(self, start: bytes, end: bytes) -> int:
        now = self.clock.now()
        return await self._remove(start, end, lambda item: not item.expired(now))

    async def sweep_expired(self) -> int:
        """Reads only the expiry index up to now: an entry per put with an expiry, under
        ``<prefix>\\0expires/`` (outside the items' range, so no watch or range sees it).
        An entry whose item was since removed or given another expiry is dropped."""
        self._check_open()
        now = self.clock.now()
        start = self._root + _INDEX
        answer = await self._call("/v3/kv/range", {
            "key": b64(start), "range_end": b64(self._index(now + _MICROSECOND)),
            "keys_only": True})
        entries = [unb64(kv["key"]) for kv in answer.get("kvs", [])]
        removed = 0
        for n in range(0, len(entries), CHUNK // 2):  # an item and its entry per change
            chunk = entries[n:n + CHUNK // 2]
            removed += await self._sweep(chunk, sorted({e[len(start) + 8:] for e in chunk}),
                                         now)
        return removed

    def watch(self, prefixes: Sequence[bytes], *, queue_size: int = WATCH_QUEUE_SIZE) -> Watcher:
        self._check_open()
        # Changes this backend has seen committed are before this call: not for it.
        return self._fanout.watch(prefixes, queue_size, after=(self._seen + 1) * SUB - 1)

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._progress.set()  # no write waits for its event any more
        await self._sweeper.stop()
        if self._orphans:  # each ends within CALL_TIMEOUT
            await asyncio.wait(set(self._orphans))
        if self._follower is not None:
            self._follower.cancel()
            await asyncio.wait({self._follower})
        self._fanout.close()
        await self._gateway.close()

    def _check_open(self) -> None:
        if self._closed:
            raise ConnectionProblem(f"etcd backend {self.settings.prefix} is closed")

    async def _call(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        self._check_open()
        answer = await self._gateway.call(path, body)
        self._seen = max(self._seen, int(answer.get("header", {}).get("revision", 0)))
        return answer

    async def _txn(self, compare: list[dict[str, Any]], success: list[dict[str, Any]],
                   failure: Sequence[dict[str, Any]] = ()) -> tuple[bool, dict[str, Any]]:
        """Run a transaction. One whose caller is cancelled still runs to its end (etcd
        may commit a request its client gave up on), and later ones wait for it: a
        write that follows a cancelled one is committed after it, as with SQLite."""
        if self._orphans:
            await asyncio.wait(set(self._orphans))
        task = asyncio.create_task(self._commit(compare, success, failure))
        try:
            return await asyncio.shield(task)
        except asyncio.CancelledError:
            if not task.done():
                self._orphans.add(task)
                task.add_done_callback(self._orphans.discard)
            raise

    async def _commit(self, compare: list[dict[str, Any]], success: list[dict[str, Any]],
                      failure: Sequence[dict[str, Any]]) -> tuple[bool, dict[str, Any]]:
        answer = await self._call("/v3/kv/txn", {"compare": compare, "success": success,
                                                 "failure": list(failure)})
        done = bool(answer.get("succeeded"))
        if done and self._changes_items(success):
            await self._handed_over(int(answer["header"]["revision"]))
        return done, answer

    def _changes_items(self, ops: list[dict[str, Any]]) -> bool:
        """Whether ops put or delete an item (not only expiry index entries): a change
        the watch will deliver."""
        items = self._root + b"/"
        return any(unb64(op[kind]["key"]).startswith(items) for op in ops
                   for kind in ("request_put", "request_delete_range") if kind in op)

    async def _handed_over(self, revision: int) -> None:
        """Wait (bounded) until the watchers have the changes up to revision, so that
        as in the other backends a write's event is queued when the write returns."""
        # asyncio.timeout, not wait_for: in Python 3.11 wait_for may swallow a
        # cancellation that meets a completion, leaving the sweeper running forever.
        try:
            async with asyncio.timeout(CALL_TIMEOUT):
                while self._delivered < revision and not self._closed:
                    await self._progress.wait()
        except TimeoutError:
            log.warning("etcd watch on %s is behind revision %d; the write stands and its "
                        "event follows", self.settings.prefix, revision)

    async def _read(self, key: bytes) -> Kv | None:
        answer = await self._call("/v3/kv/range", {"key": b64(self._root + key)})
        kvs = answer.get("kvs", [])
        return kvs[0] if kvs else None

    async def _change(self, item: Item, decide: Callable[[Item | None], Item | None]) -> Item:
        """Store what decide makes of the live item at item.key (None: delete it), on
        the condition that the key has not changed since it was read."""
        raw = self._root + item.key
        current = await self._read(item.key)
        for _ in range(ATTEMPTS):
            verdict = decide(self._live(current))
            ops = [_delete_op(raw)] if verdict is None else self._put_ops(verdict, 0)
            done, answer = await self._txn([_same(raw, current)], ops, [_read_op(raw)])
            if done:
                revision = int(answer["header"]["revision"]) * SUB
                return dataclasses.replace(verdict or item, revision=revision)
            [current] = _read_back(answer)
        raise CompareFailed(f"key {item.key!r} kept changing; gave up after {ATTEMPTS} tries")

    async def _remove(self, start: bytes, end: bytes, doomed: Callable[[Item], bool]) -> int:
        """Delete the items in [start, end) that doomed picks, CHUNK per transaction,
        each on the condition that it has not changed since it was read."""
        if start >= end:
            return 0
        self._check_open()
        answer = await self._call("/v3/kv/range", {"key": b64(self._root + start),
                                                   "range_end": b64(self._root + end)})
        picked = [kv for kv in answer.get("kvs", []) if doomed(self._item(kv))]
        removed = 0
        for n in range(0, len(picked), CHUNK):
            chunk = picked[n:n + CHUNK]
            for _ in range(ATTEMPTS):
                raws = [unb64(kv["key"]) for kv in chunk]
                done, answer = await self._txn([_same(r, kv) for r, kv in zip(raws, chunk,
                                                                               strict=True)],
                                               [_delete_op(r) for r in raws],
                                               [_read_op(r) for r in raws])
                if done:
                    removed += len(chunk)
                    break
                chunk = [kv for kv in _read_back(answer)
                         if kv is not None and doomed(self._item(kv))]
                if not chunk:
                    break
            else:
                raise CompareFailed(f"removing keys from {start!r}: they kept changing; "
                                    f"gave up after {ATTEMPTS} tries")
        return removed

    async def _sweep(self, entries: list[bytes], keys: list[bytes], now: dt.datetime) -> int:
        """Remove the expired items among keys, and the index entries naming them, on
        the condition that none of those items changed since it was read."""
        raws = [self._root + key for key in keys]
        _, answer = await self._txn([], [_read_op(raw) for raw in raws])
        current = _read_back(answer)
        for _ in range(ATTEMPTS):
            doomed = [raw for raw, kv in zip(raws, current, strict=True)
                      if kv is not None and self._item(kv).expired(now)]
            done, answer = await self._txn(
                [_same(raw, kv) for raw, kv in zip(raws, current, strict=True)],
                [_delete_op(raw) for raw in doomed + entries], [_read_op(raw) for raw in raws])
            if done:
                return len(doomed)
            current = _read_back(answer)
        raise CompareFailed(f"expired items kept changing; gave up after {ATTEMPTS} tries")

    def _put_ops(self, item: Item, place: int) -> list[dict[str, Any]]:
        """Store item, and index it by expiry if it has one (see sweep_expired)."""
        ops = [{"request_put": {"key": b64(self._root + item.key),
                                "value": b64(_encode(item, place))}}]
        if item.expires is not None:
            ops.append({"request_put": {"key": b64(self._index(item.expires) + item.key),
                                        "value": ""}})
        return ops

    def _index(self, when: dt.datetime) -> bytes:
        """The start of the expiry index keys of items that expire at when."""
        return self._root + _INDEX + struct.pack(">Q", max(0, _micros(when)))

    def _key(self, kv: Kv) -> bytes:
        raw = unb64(kv["key"])
        if not raw.startswith(self._root + b"/"):
            raise GatehouseError(f"etcd answered with key {raw!r}, outside {self._root!r}")
        return raw[len(self._root):]

    def _item(self, kv: Kv) -> Item:
        key, value = self._key(kv), unb64(kv.get("value", ""))
        if len(value) < _HEADER.size or value[0] != _FORMAT:
            raise GatehouseError(f"etcd key {self._root + key!r} holds a value Gatehouse "
                                 "did not write")
        _, has_expiry, place, expires = _HEADER.unpack_from(value)
        return Item(key, value[_HEADER.size:],
                    _EPOCH + expires * _MICROSECOND if has_expiry else None,
                    int(kv["mod_revision"]) * SUB + place)

    def _live(self, kv: Kv | None) -> Item | None:
        if kv is None:
            return None
        item = self._item(kv)
        return None if item.expired(self.clock.now()) else item

    async def _follow(self, start: int) -> None:
        """Hand every change under the prefix from etcd revision start on to the
        watchers, reconnecting after a failure from the revision after the last one
        handed over; runs until close()."""
        watch = {"create_request": {"key": b64(self._root + b"/"),
                                    "range_end": b64(self._root + prefix_end(b"/"))}}
        last = (start - 1, 0)  # etcd revision and place of the last change handed over
        failures = 0
        while True:
            try:
                if last[0] < 0:  # after a compaction: from the current revision on
                    last = (int((await self._call("/v3/kv/range", {
                        "key": b64(self._root + b"/"), "count_only": True}))["header"][
                            "revision"]), 0)
                    self._handed_up_to(last[0])  # what came before is nobody's any more
                watch["create_request"]["start_revision"] = str(last[0] + 1)
                asked = self._gateway.first_peer  # the peer the stream goes to
                async with self._gateway.stream("/v3/watch", watch) as messages:
                    answered = False
                    while last[0] >= 0:
                        try:
                            async with asyncio.timeout(WATCH_IDLE):
                                message = await anext(messages)
                        except TimeoutError:
                            if not answered:  # another peer may answer
                                self._gateway.skip_peer(asked)
                                raise ConnectionProblem(f"no answer to the watch in "
                                                        f"{WATCH_IDLE:g} s") from None
                            break  # quiet, or hung: opened again from after `last`
                        answered = True
                        last = self._deliver(message, last)
                        failures = 0
            except (GatehouseError, KeyError, ValueError) as exc:  # the watch is broken
                delay = RETRY_DELAYS[min(failures, len(RETRY_DELAYS) - 1)]
                failures += 1
                log.warning("etcd watch on %s broke (%s); resuming after revision %d in %ss",
                            self.settings.prefix, exc, last[0], delay)
                await asyncio.sleep(delay)

    def _deliver(self, message: dict[str, Any], last: tuple[int, int]) -> tuple[int, int]:
        """Emit the changes of one watch message; returns the new ``last``."""
        result = message.get("result")
        if not isinstance(result, dict):
            raise ConnectionProblem(f"etcd watch: {message.get('error', message)}")
        if result.get("compact_revision"):
            # The revisions after `last` are gone from etcd's history: the watchers
            # cannot be given what they missed, so they are told to list again. Watchers
            # started from now on get the changes after the current revision (-1: ask).
            self._fanout.fail(f"missed changes: etcd compacted its history past revision "
                              f"{last[0] + 1}")
            return (-1, 0)
        if result.get("canceled"):
            raise ConnectionProblem(f"etcd cancelled the watch: {result.get('cancel_reason')}")
        events: list[Event] = []
        for raw in result.get("events", []):
            kv = raw["kv"]
            revision = int(kv["mod_revision"])
            try:
                if raw.get("type") == "DELETE":
                    place = last[1] + 1 if revision == last[0] else 0
                    event = Event(EventType.DELETE, Item(self._key(kv), b"",
                                                         revision=revision * SUB + place))
                else:
                    event = Event(EventType.PUT, self._item(kv))
                    place = event.item.revision % SUB
            except GatehouseError as exc:
                log.warning("etcd watch: skipped a change at revision %d: %s", revision, exc)
                continue
            events.append(event)
            last = (revision, place)
        if events:
            self._seen = max(self._seen, last[0])
            self._fanout.emit(events)
        self._handed_up_to(last[0])
        return last

    def _handed_up_to(self, revision: int) -> None:
        """Watchers have every change up to revision: wake the writes waiting for it."""
        if revision > self._delivered:
            self._delivered = revision
            self._progress.set()
            self._progress = asyncio.Event()
