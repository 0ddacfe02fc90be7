"""The PostgreSQL backend: one database shared by several auth processes.

Items live in ``gatehouse_items``. Every write transaction first locks the one row
of ``gatehouse_meta`` that holds the revision counter, so writes from every
process are serialized: revisions are consecutive, and a transaction that sees
revision n sees every revision before it. Unconditional puts (audit events,
heartbeats: most writes) are a single statement, so that the lock is held for no
round trip of the client's. Each change is also a row of
``gatehouse_changes`` (revision, key, value), written in the same transaction, and
the commit sends a NOTIFY that names the areas of the keys written (see _areas).
Watches read that table in revision order, from the last revision this process
delivered, woken by a NOTIFY of an area some watcher here may want (or every
POLL_INTERVAL seconds): a watcher sees every change from every process once, in
order, and after the database comes back from an outage it resumes where it was.
Changes nobody here watches (node heartbeats, audit events: most of them) wake no
process; they are read in bulk by the next read of the table.
The table keeps the last CHANGES_KEPT changes; a watcher whose backend was away
for longer is closed with LimitExceeded (list again), never silently short. Large
values (recording chunks) are read back only for the watchers that watch their
keys, and kept in the table for fewer changes (INLINE_VALUE, LARGE_CHANGES_KEPT).

A write is one transaction: during an outage it fails with ConnectionProblem and
nothing of it is applied. (If the connection breaks while the COMMIT itself is on
the wire, PostgreSQL may or may not have committed it, and the error says so.)
The pool opens new connections as the database comes back, so the backend
recovers by itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime as dt
import logging
import urllib.parse
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any

import asyncpg

from gatehouse.clock import Clock
from gatehouse.errors import (
    AlreadyExists,
    BadParameter,
    CompareFailed,
    ConnectionProblem,
    GatehouseError,
    NotFound,
)

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

__all__ = ["CHANGES_KEPT", "INLINE_VALUE", "LARGE_CHANGES_KEPT", "POLL_INTERVAL",
           "PostgresBackend"]

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1
CHANGES_KEPT = 100_000
# A change's value longer than INLINE_VALUE bytes (a recording's chunk) is read by a
# watch only if one of its watchers wants that key, and dropped from the change table
# after LARGE_CHANGES_KEPT changes: every auth need not read every recording twice.
INLINE_VALUE = 64 << 10
LARGE_CHANGES_KEPT = 1_000
POLL_INTERVAL = 2.0  # seconds between reads of the change table without a NOTIFY
CONNECT_TIMEOUT = 5.0
COMMAND_TIMEOUT = 30.0
DELIVERY_WAIT = 5.0  # seconds a write waits for its events to reach this process's watchers
POOL_SIZE = 10
_CHANNEL = "gatehouse_changes"
_BATCH = 1000  # changes read at once by a watch
MAX_AREAS = 16  # areas a NOTIFY names; a write of more names none (every watch reads)
_RETRY = (0.05, 2.0)  # the first and the longest wait before a watch reconnects

_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS gatehouse_meta (name text PRIMARY KEY, value bigint NOT NULL);
INSERT INTO gatehouse_meta (name, value) VALUES ('revision', 0), ('schema', {SCHEMA_VERSION})
    ON CONFLICT (name) DO NOTHING;
CREATE TABLE IF NOT EXISTS gatehouse_items (
    key bytea PRIMARY KEY,
    value bytea NOT NULL,
    expires timestamptz,        -- NULL: never
    revision bigint NOT NULL
);
CREATE INDEX IF NOT EXISTS gatehouse_items_expires ON gatehouse_items (expires)
    WHERE expires IS NOT NULL;
CREATE TABLE IF NOT EXISTS gatehouse_changes (
    revision bigint PRIMARY KEY,
    deleted boolean NOT NULL,
    key bytea NOT NULL,
    value bytea,                -- NULL once a large value is dropped (LARGE_CHANGES_KEPT)
    large boolean NOT NULL,     -- value longer than INLINE_VALUE bytes
    expires timestamptz
);
CREATE INDEX IF NOT EXISTS gatehouse_changes_large ON gatehouse_changes (revision)
    WHERE large AND value IS NOT NULL;
"""

_LIVE = "(expires IS NULL OR expires > $1)"  # in reads and deletes, $1 is the clock's now
_COLUMNS = "key, value, expires, revision"
# In item writes, $1..$4 are the key, value, expires and revision; $5 the clock's now.
_UPSERT = ("INSERT INTO gatehouse_items AS i (key, value, expires, revision) "
           "VALUES ($1, $2, $3, $4) ON CONFLICT (key) DO UPDATE SET value = excluded.value, "
           "expires = excluded.expires, revision = excluded.revision")
_SET = ("UPDATE gatehouse_items SET value = $2, expires = $3, revision = $4 "
        "WHERE key = $1 AND (expires IS NULL OR expires > $5)")
# Several items in one statement, not one per item: $1..$4 are arrays of the keys,
# values, expiries and revisions.
_UPSERT_MANY = ("INSERT INTO gatehouse_items AS i (key, value, expires, revision) "
                "SELECT * FROM unnest($1::bytea[], $2::bytea[], $3::timestamptz[], "
                "$4::bigint[]) ON CONFLICT (key) DO UPDATE SET value = excluded.value, "
                "expires = excluded.expires, revision = excluded.revision")
# Unconditional puts ($1..$3: arrays of keys, values and expiries; $4: the NOTIFY's
# areas) in one statement, a transaction of its own: the counter moves by their number
# (its row lock held until the commit, as in every write), then the items (of a key put
# twice, the later), their changes (each) and the wake-up; the last revision before
# them comes back.
_PUT_ALL = ("WITH counter AS (UPDATE gatehouse_meta SET value = value + cardinality($1::bytea[]) "
            "WHERE name = 'revision' RETURNING value - cardinality($1::bytea[]) AS last), "
            "puts AS (SELECT k, v, e, last + n AS r FROM counter, "
            "unnest($1::bytea[], $2::bytea[], $3::timestamptz[]) WITH ORDINALITY "
            "AS t(k, v, e, n)), "
            "stored AS (INSERT INTO gatehouse_items AS i (key, value, expires, revision) "
            "SELECT DISTINCT ON (k) k, v, e, r FROM puts ORDER BY k, r DESC "
            "ON CONFLICT (key) DO UPDATE SET value = "
            "excluded.value, expires = excluded.expires, revision = excluded.revision), "
            "logged AS (INSERT INTO gatehouse_changes "
            "(revision, deleted, key, value, expires, large) "
            f"SELECT r, false, k, v, e, octet_length(v) > {INLINE_VALUE} FROM puts) "
            f"SELECT last, pg_notify('{_CHANNEL}', $4) FROM counter")
# A transaction's changes ($1..$5: arrays of revisions, deleted flags, keys, values and
# expiries), the revision counter ($6) and the watchers' wake-up ($7: the areas), in one
# statement: a round trip each would hold the writers' lock that much longer.
_LOG = ("WITH logged AS (INSERT INTO gatehouse_changes "
        "(revision, deleted, key, value, expires, large) "
        f"SELECT r, d, k, v, e, octet_length(v) > {INLINE_VALUE} FROM unnest("
        "$1::bigint[], $2::boolean[], $3::bytea[], $4::bytea[], $5::timestamptz[]) "
        "AS t(r, d, k, v, e)), "
        "counted AS (UPDATE gatehouse_meta SET value = $6 WHERE name = 'revision') "
        f"SELECT pg_notify('{_CHANNEL}', $7)")

if TYPE_CHECKING:  # asyncpg's classes take no type arguments at run time
    from asyncpg.pool import PoolConnectionProxy

    _Conn = PoolConnectionProxy[asyncpg.Record]
    _Body = Callable[[_Conn, int], Awaitable[list[Event]]]
# What a database that is down, restarting or unreachable raises.
# (InternalClientError: a connection that the server left in the middle of an operation.)
_UNAVAILABLE = (OSError, TimeoutError, asyncpg.PostgresConnectionError, asyncpg.InterfaceError,
                asyncpg.exceptions.OperatorInterventionError,
                asyncpg.exceptions.InternalClientError)


@dataclasses.dataclass
class _Attempt:
    """How far a write got: once ``sent``, a broken connection leaves it unknown."""

    sent: bool = False


class PostgresBackend(Backend):
    """Items in a PostgreSQL database; open it with ``PostgresBackend.open(conn_string,
    clock=...)``. Any number of processes may open the same database."""

    def __init__(self, conn_string: str, pool: asyncpg.Pool[asyncpg.Record], revision: int,
                 *, clock: Clock, sweeper: Sweeper) -> None:
        self.clock = clock
        self.where = describe(conn_string)
        self._conn_string = conn_string
        self._pool = pool
        self._delivered = revision  # the last revision handed to the watchers
        self._committed = revision  # the last revision this process committed
        self._fanout = Fanout()
        self._sweeper = sweeper
        self._wake = asyncio.Event()
        self._progress = asyncio.Condition()  # notified when _delivered grows or the watch
        self._watching = True  # drops; False from a lost watch connection to its successor
        # Writes from this process go one at a time, in the order they were called (as
        # in the other backends); the counter's row lock orders them with other processes'.
        self._write_lock = asyncio.Lock()
        self._queued_puts: list[tuple[Sequence[Item], asyncio.Future[list[Event]]]] = []
        self._follower: asyncio.Task[None] | None = None
        self._sweep_failing = False
        self._closed = False

    @classmethod
    async def open(cls, conn_string: str, *, clock: Clock, sweep_interval: float = 1.0
                   ) -> PostgresBackend:
        """Connect, create the tables if needed, and start following the changes."""
        where = describe(conn_string)
        sweeper = Sweeper(sweep_interval, "postgres-backend-sweep")
        try:
            # min_size 0: connections open on demand, and asyncpg's pool does not log a
            # traceback each time it fails to reopen idle ones while the database is down.
            pool = await asyncpg.create_pool(conn_string, min_size=0, max_size=POOL_SIZE,
                                             timeout=CONNECT_TIMEOUT,
                                             command_timeout=COMMAND_TIMEOUT,
                                             reset=_keep_session)
        except _UNAVAILABLE as exc:
            raise ConnectionProblem(f"cannot reach PostgreSQL at {where}: {_reason(exc)}") \
                from exc
        except (asyncpg.PostgresError, ValueError) as exc:  # refused login, bad string
            raise BadParameter(f"cannot open PostgreSQL database {where}: {_reason(exc)}") \
                from exc
        try:
            revision = await _prepare(pool, where)
        except BaseException:
            pool.terminate()
            raise
        backend = cls(conn_string, pool, revision, clock=clock, sweeper=sweeper)
        backend._follower = asyncio.create_task(backend._follow(), name="postgres-backend-watch")
        sweeper.start(backend._sweep)
        return backend

    async def get(self, key: bytes) -> Item:
        items = await self._read(f"SELECT {_COLUMNS} FROM gatehouse_items "
                                 f"WHERE key = $2 AND {_LIVE}", key)
        if not items:
            raise NotFound(f"key {key!r} not found")
        return items[0]

    async def get_range(self, start: bytes, end: bytes, limit: int = 0, *,
                        reverse: bool = False) -> list[Item]:
        check_limit(limit)
        return await self._read(
            f"SELECT {_COLUMNS} FROM gatehouse_items WHERE key >= $2 AND key < $3 AND {_LIVE} "
            f"ORDER BY key {'DESC' if reverse else 'ASC'} LIMIT $4", start, end, limit or None)

    async def put(self, item: Item) -> Item:
        return (await self._put_all([item]))[0].item

    async def create(self, item: Item) -> Item:
        # An expired row is overwritten; a live one makes the upsert change nothing.
        return await self._store(_UPSERT + " WHERE i.expires <= $5", item, now=True,
                                 missing=AlreadyExists(f"key {item.key!r} already exists"))

    async def update(self, item: Item) -> Item:
        return await self._store(_SET, item, now=True,
                                 missing=NotFound(f"key {item.key!r} not found"))

    async def compare_and_swap(self, expected: Item, replace_with: Item) -> Item:
        check_swap(expected, replace_with)
        return await self._store(
            _SET + " AND value = $6", replace_with, expected.value, now=True,
            missing=CompareFailed(f"key {expected.key!r} is missing or has changed"))

    async def atomic_write(self, writes: Sequence[Write]) -> None:
        check_writes(writes, self.max_atomic_writes)
        if writes and all(w.item is not None and w.expect_revision is None for w in writes):
            await self._put_all([w.item for w in writes if w.item is not None])
            return

        async def body(conn: _Conn, last: int) -> list[Event]:
            now = self.clock.now()
            for write in writes:
                if write.expect_revision is not None:
                    current = await conn.fetchval(
                        f"SELECT revision FROM gatehouse_items WHERE key = $2 AND {_LIVE}",
                        now, write.key)
                    if unmet(write, current or 0):
                        raise CompareFailed(f"key {write.key!r} is missing or has changed")
            # Keys differ, so the statements commute: deletes first (which of them
            # removed something decides the revisions), then every put.
            removed = set()
            for write in writes:
                if write.item is None and await conn.fetchval(
                        f"DELETE FROM gatehouse_items WHERE key = $2 AND {_LIVE} RETURNING key",
                        now, write.key) is not None:
                    removed.add(write.key)
            events: list[Event] = []
            for write in writes:
                revision = last + len(events) + 1
                if write.item is not None:
                    events.append(Event(EventType.PUT,
                                        dataclasses.replace(write.item, revision=revision)))
                elif write.key in removed:
                    events.append(Event(EventType.DELETE, Item(write.key, b"", revision=revision)))
            puts = [e.item for e in events if e.type is EventType.PUT]
            if puts:
                await conn.execute(_UPSERT_MANY, [i.key for i in puts], [i.value for i in puts],
                                   [i.expires for i in puts], [i.revision for i in puts])
            return events

        await self._write(body)

    async def delete(self, key: bytes) -> None:
        await self._remove(f"DELETE FROM gatehouse_items WHERE key = $2 AND {_LIVE} RETURNING key",
                           key, missing=NotFound(f"key {key!r} not found"))

    async def delete_range(self, start: bytes, end: bytes) -> int:
        return await self._remove(
            f"DELETE FROM gatehouse_items WHERE key >= $2 AND key < $3 AND {_LIVE} RETURNING key",
            start, end)

    async def sweep_expired(self) -> int:
        # Every auth sweeps: look first, without taking the writers' lock.
        if not await self._read("SELECT key, ''::bytea, expires, revision FROM gatehouse_items "
                                "WHERE expires <= $1 LIMIT 1"):
            return 0
        return await self._remove("DELETE FROM gatehouse_items WHERE expires <= $1 RETURNING key")

    def watch(self, prefixes: Sequence[bytes], *, queue_size: int = WATCH_QUEUE_SIZE) -> Watcher:
        self._check_open()
        return self._fanout.watch(prefixes, queue_size,
                                  after=max(self._delivered, self._committed))

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        await self._sweeper.stop()
        if self._follower is not None:
            self._follower.cancel()
            await asyncio.wait({self._follower})
        async with self._progress:  # writes waiting for their events return now
            self._progress.notify_all()
        self._fanout.close()
        try:  # lets a write in progress finish
            await asyncio.wait_for(self._pool.close(), COMMAND_TIMEOUT)
        except TimeoutError:
            self._pool.terminate()

    def _check_open(self) -> None:
        if self._closed:
            raise ConnectionProblem(f"postgres backend {self.where} is closed")

    async def _read(self, sql: str, *args: Any) -> list[Item]:
        self._check_open()
        try:
            async with self._connection() as conn:
                rows = await conn.fetch(sql, self.clock.now(), *args)
        except _UNAVAILABLE as exc:
            raise ConnectionProblem(f"PostgreSQL at {self.where} is unavailable: "
                                    f"{_reason(exc)}") from exc
        except asyncpg.PostgresError as exc:
            raise GatehouseError(f"PostgreSQL at {self.where}: {_reason(exc)}") from exc
        return [_item(row) for row in rows]

    @contextlib.asynccontextmanager
    async def _connection(self) -> AsyncIterator[_Conn]:
        """A pooled connection; one that an error left in an unknown state (the server
        went away mid-statement) is dropped, not pooled: its transaction rolls back."""
        async with self._pool.acquire() as conn:
            try:
                yield conn
            except GatehouseError:
                raise
            except BaseException:
                conn.terminate()
                raise

    async def _store(self, sql: str, item: Item, expected: bytes | None = None, *,
                     now: bool = False, missing: GatehouseError | None = None) -> Item:
        """Write item with the next revision (sql takes the clock's now as $5 if ``now``,
        ``expected`` as $6); raise ``missing`` if sql changed no row."""

        async def body(conn: _Conn, last: int) -> list[Event]:
            stored = dataclasses.replace(item, revision=last + 1)
            extra: list[Any] = [self.clock.now()] if now else []
            if expected is not None:
                extra.append(expected)
            status = await conn.execute(sql, *_row(stored), *extra)
            if missing is not None and status.endswith(" 0"):
                raise missing
            return [Event(EventType.PUT, stored)]

        events = await self._write(body)
        return events[0].item

    async def _remove(self, sql: str, *args: Any, missing: GatehouseError | None = None) -> int:
        """Delete the rows sql returns, a revision and a DELETE event each, in key order."""

        async def body(conn: _Conn, last: int) -> list[Event]:
            rows = await conn.fetch(sql, self.clock.now(), *args)
            keys = sorted(bytes(row[0]) for row in rows)
            if missing is not None and not keys:
                raise missing
            return [Event(EventType.DELETE, Item(key, b"", revision=last + n))
                    for n, key in enumerate(keys, 1)]

        return len(await self._write(body))

    async def _write(self, body: _Body) -> list[Event]:
        # Shielded: a write that has started runs to its end even if its caller is
        # cancelled, so that a connection is never returned mid-transaction.
        return await self._delivered_to_watchers(await asyncio.shield(self._transact(body)))

    async def _put_all(self, items: Sequence[Item]) -> list[Event]:
        """Unconditional puts (the most frequent write: audit events, heartbeats) in one
        statement. A transaction of several round trips holds the writers' lock for all
        of them, and more: an auth whose event loop is busy signing reads each answer
        late. With two auths issuing certificates, that lock was their limit."""
        # Shielded, as _write's transaction is.
        return await self._delivered_to_watchers(await asyncio.shield(self._insert(items)))

    async def _insert(self, items: Sequence[Item]) -> list[Event]:
        """Puts called while another write of this process has its turn wait together:
        the first of them leads the batch, takes one turn and writes them all in one
        statement (in the order called), and the others only wait for its answer. Under
        load many heartbeats cost one round trip, and a write queued behind them (a
        login's) waits for one turn, not for one per heartbeat (each a pass of a busy
        event loop)."""
        mine: asyncio.Future[list[Event]] = asyncio.get_running_loop().create_future()
        self._queued_puts.append((items, mine))
        if len(self._queued_puts) > 1:
            # A leader waits for the turn and writes these too. Shielded: a follower
            # stopped (the loop closing) must not cancel the answer its leader sets.
            return await asyncio.shield(mine)
        try:
            async with self._write_lock:
                queued, self._queued_puts = self._queued_puts, []
                try:
                    results = await self._insert_now([i for its, _ in queued for i in its])
                except Exception as exc:  # each caller of the batch raises it
                    for _its, future in queued:
                        future.set_exception(exc)
                        future.exception()  # retrieved: a follower stopped meanwhile
                else:
                    first = 0
                    for its, future in queued:
                        future.set_result(results[first:first + len(its)])
                        first += len(its)
                finally:  # interrupted (the loop stopping): none is left waiting
                    for _its, future in queued:
                        if not future.done():
                            future.cancel()
        except asyncio.CancelledError:
            # Stopped before its turn: nobody would lead the batch it was to write.
            if self._queued_puts and self._queued_puts[0][1] is mine:
                queued, self._queued_puts = self._queued_puts, []
                for _its, future in queued:
                    future.cancel()
            raise
        return mine.result()

    async def _insert_now(self, items: Sequence[Item]) -> list[Event]:
        async with self._writing() as (conn, attempt):
            attempt.sent = True
            keys = [i.key for i in items]
            last = await conn.fetchval(_PUT_ALL, keys, [i.value for i in items],
                                       [i.expires for i in items], _areas(keys))
        events = [Event(EventType.PUT, dataclasses.replace(item, revision=last + n))
                  for n, item in enumerate(items, 1)]
        self._mark_committed(events)
        return events

    @contextlib.asynccontextmanager
    async def _writing(self) -> AsyncIterator[tuple[_Conn, _Attempt]]:
        """A connection for one write, its caller holding the writers' turn (_write_lock);
        the database's failures as one line that says whether the write may have been
        applied (once ``attempt.sent``: its last statement or COMMIT was on the wire)."""
        self._check_open()
        attempt = _Attempt()
        try:
            async with self._connection() as conn:
                yield conn, attempt
        except _UNAVAILABLE as exc:
            outcome = ("the connection broke during the write: the write may or may not "
                       "have been applied") if attempt.sent else "the write was not applied"
            raise ConnectionProblem(f"PostgreSQL at {self.where} is unavailable "
                                    f"({_reason(exc)}); {outcome}") from exc
        except asyncpg.PostgresError as exc:
            raise GatehouseError(f"PostgreSQL at {self.where}: {_reason(exc)}; the write was "
                                 "not applied") from exc

    def _mark_committed(self, events: list[Event]) -> None:
        """Events just committed here: the watch reads them now if a watcher here wants
        them, or if it was waiting to reconnect (the database is back)."""
        if events:
            self._committed = max(self._committed, events[-1].item.revision)
            if not self._watching or any(self._fanout.wants(e.item.key) for e in events):
                self._wake.set()

    def _notified(self, _conn: object, _pid: int, _channel: str, payload: object) -> None:
        """A NOTIFY: wake the watch if a watcher here may want a key of the areas it
        names (or it names none)."""
        try:
            areas = [bytes.fromhex(area) for area in str(payload).split(",")] if payload else []
        except ValueError:
            areas = []
        if not areas or any(self._fanout.may_want(area) for area in areas):
            self._wake.set()

    async def _delivered_to_watchers(self, events: list[Event]) -> list[Event]:
        """``events``, once this process's watchers that want them hold them."""
        if any(self._fanout.wants(e.item.key) for e in events):
            # As in the other backends, this process's watchers hold a write's events
            # by the time it returns (unless the watch is reconnecting: then later, and
            # the write returns at once rather than wait out the database's absence).
            # A write no watcher here wants (an audit event, mostly) need not wait.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(DELIVERY_WAIT), self._progress:
                    await self._progress.wait_for(
                        lambda: self._delivered >= events[-1].item.revision or self._closed
                        or not self._watching)
        return events

    async def _transact(self, body: _Body) -> list[Event]:
        async with self._write_lock, self._writing() as (conn, attempt):
            transaction = conn.transaction()
            await transaction.start()
            try:
                # The counter's row lock serializes the writers of every process.
                last = await conn.fetchval(
                    "SELECT value FROM gatehouse_meta WHERE name = 'revision' FOR UPDATE")
                events = await body(conn, last)
                if events:
                    items = [e.item for e in events]
                    await conn.execute(
                        _LOG, [i.revision for i in items],
                        [e.type is EventType.DELETE for e in events], [i.key for i in items],
                        [i.value for i in items], [i.expires for i in items],
                        items[-1].revision, _areas(i.key for i in items))
            except GatehouseError:  # the body's verdict: NotFound, CompareFailed, ...
                await transaction.rollback()
                raise
            attempt.sent = True
            await transaction.commit()
        self._mark_committed(events)
        return events

    async def _sweep(self) -> int:
        """The sweeper's round: expired items, then changes older than the last
        CHANGES_KEPT. While the database is away it says so once, not every round."""
        try:
            swept = await self.sweep_expired()
            newest = max(self._delivered, self._committed)  # known committed
            async with self._connection() as conn:
                await conn.execute("DELETE FROM gatehouse_changes WHERE revision <= $1",
                                   newest - CHANGES_KEPT)
                await conn.execute("UPDATE gatehouse_changes SET value = NULL WHERE large "
                                   "AND value IS NOT NULL AND revision <= $1",
                                   newest - LARGE_CHANGES_KEPT)
        except _UNAVAILABLE as exc:
            if not self._sweep_failing:
                log.warning("postgres backend %s: expiry sweep cannot reach the database (%s); "
                            "retrying", self.where, _reason(exc))
            self._sweep_failing = True
            return 0
        except ConnectionProblem as exc:
            if not self._sweep_failing:
                log.warning("%s; the expiry sweep retries", exc)
            self._sweep_failing = True
            return 0
        self._sweep_failing = False
        return swept

    async def _pause(self, seconds: float) -> None:
        """Wait before reconnecting the watch: seconds, or less if a write succeeds meanwhile
        (the database is back)."""
        self._wake.clear()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await self._wake.wait()

    async def _follow(self) -> None:
        """Deliver the change table to the watchers, reconnecting whenever it must."""
        retry = _RETRY[0]
        lost = ""  # why the watch is reconnecting; "" while it is connected
        while True:
            try:
                conn = await asyncpg.connect(self._conn_string, timeout=CONNECT_TIMEOUT,
                                             command_timeout=COMMAND_TIMEOUT)
            except (*_UNAVAILABLE, asyncpg.PostgresError) as exc:
                if not lost:
                    lost = _reason(exc)
                    log.warning("postgres backend %s: watch cannot connect (%s); retrying",
                                self.where, lost)
                await self._pause(retry)
                retry = min(retry * 2, _RETRY[1])
                continue
            try:
                conn.add_termination_listener(lambda _conn: self._wake.set())
                await conn.add_listener(_CHANNEL, self._notified)
                if lost:
                    log.info("postgres backend %s: watch reconnected, resuming after "
                             "revision %d", self.where, self._delivered)
                lost, retry, self._watching = "", _RETRY[0], True
                while not conn.is_closed():
                    self._wake.clear()
                    await self._catch_up(conn)
                    # asyncio.timeout, not wait_for: on 3.11 wait_for may swallow a
                    # cancellation that comes as the wake-up does, and close() would hang.
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(POLL_INTERVAL):
                            await self._wake.wait()
                lost = "the server closed the connection"
            except (*_UNAVAILABLE, asyncpg.PostgresError) as exc:
                lost = _reason(exc)
            except Exception as exc:
                log.exception("postgres backend %s: watch failed", self.where)
                lost = _reason(exc)
            finally:
                conn.terminate()
            self._watching = False
            async with self._progress:  # writes waiting for their events return now
                self._progress.notify_all()
            log.warning("postgres backend %s: watch lost its connection (%s); reconnecting",
                        self.where, lost)
            await self._pause(retry)
            retry = min(retry * 2, _RETRY[1])

    async def _catch_up(self, conn: asyncpg.Connection[asyncpg.Record]) -> None:
        """Hand every change after the last delivered one to the watchers, in order."""
        while True:
            rows = await conn.fetch(
                "SELECT revision, deleted, key, CASE WHEN large THEN NULL ELSE value END "
                "AS value, large, expires FROM gatehouse_changes "
                "WHERE revision > $1 ORDER BY revision LIMIT $2", self._delivered, _BATCH)
            if not rows:
                return
            if rows[0]["revision"] != self._delivered + 1:
                self._fanout.fail(f"missed changes {self._delivered + 1}.."
                                  f"{rows[0]['revision'] - 1} (the backend was away while "
                                  "more than CHANGES_KEPT changes were made)")
            values = await self._large_values(conn, rows)
            self._delivered = rows[-1]["revision"]
            # Events only for keys a watcher here wants: most changes (other auths'
            # heartbeats, audit events) are nobody's here, and would be dropped anyway.
            wants = self._fanout.wants
            self._fanout.emit([_event(row, values.get(row["revision"], row["value"]))
                               for row in rows if wants(row["key"])])
            async with self._progress:
                self._progress.notify_all()
            if len(rows) < _BATCH:
                return


    async def _large_values(self, conn: asyncpg.Connection[asyncpg.Record],
                            rows: Sequence[asyncpg.Record]) -> dict[int, bytes]:
        """The large values among rows that a watcher of this process wants (by
        revision); the others stay in the database. Asked again after each read, so
        that a watch begun meanwhile gets its values too."""
        values: dict[int, bytes] = {}
        for _round in range(len(rows) + 1):
            wanted = [row["revision"] for row in rows
                      if row["large"] and row["revision"] not in values
                      and self._fanout.wants(bytes(row["key"]))]
            if not wanted:
                break
            found = {int(row["revision"]): bytes(row["value"]) for row in await conn.fetch(
                "SELECT revision, value FROM gatehouse_changes WHERE revision = ANY($1) "
                "AND value IS NOT NULL", wanted)}
            if len(found) < len(wanted):
                self._fanout.fail("missed the value of a large change (the backend was away "
                                  "while more than LARGE_CHANGES_KEPT changes were made)")
            values.update(dict.fromkeys(wanted, b""))  # lost ones: their watchers were failed
            values.update(found)
        return values

async def _keep_session(_conn: asyncpg.Connection[asyncpg.Record]) -> None:
    """What the pool does to a connection handed back, besides rolling back a transaction
    left open: nothing. This backend sets no session state on pooled connections (no SET,
    LISTEN, advisory lock or cursor; the watch has a connection of its own), so asyncpg's
    default (CLOSE ALL, UNLISTEN *, RESET ALL, ...: a statement per release) undoes
    nothing and cost PostgreSQL about a fifth of its CPU per issued certificate."""


async def _prepare(pool: asyncpg.Pool[asyncpg.Record], where: str) -> int:
    """Create or check the tables; returns the last revision."""
    try:
        async with pool.acquire() as conn, conn.transaction():
            # Auths that start together create the tables one after the other.
            await conn.execute("SELECT pg_advisory_xact_lock(hashtext('gatehouse_schema'))")
            await conn.execute(_SCHEMA)
            version = await conn.fetchval(
                "SELECT value FROM gatehouse_meta WHERE name = 'schema'")
            if version > SCHEMA_VERSION:
                raise BadParameter(f"PostgreSQL database {where} has schema version {version}, "
                                   f"this gatehouse knows up to {SCHEMA_VERSION}: upgrade "
                                   "gatehouse")
            return int(await conn.fetchval(
                "SELECT value FROM gatehouse_meta WHERE name = 'revision'"))
    except _UNAVAILABLE as exc:
        raise ConnectionProblem(f"cannot reach PostgreSQL at {where}: {_reason(exc)}") from exc
    except asyncpg.PostgresError as exc:
        raise BadParameter(f"cannot set up PostgreSQL database {where}: {_reason(exc)}") \
            from exc


def describe(conn_string: str) -> str:
    """host:port/database of a connection string, for messages (never its password)."""
    try:
        url = urllib.parse.urlsplit(conn_string)
        host = url.hostname or "localhost"
        port = url.port or 5432
    except ValueError:
        return "(unreadable conn_string)"
    return f"{host}:{port}{url.path or '/'}"


def _reason(exc: BaseException) -> str:
    if isinstance(exc, asyncpg.exceptions.InternalClientError):
        return "the server broke the connection in the middle of an operation"
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


def _areas(keys: Iterable[bytes]) -> str:
    """A NOTIFY's payload: the areas of ``keys`` (each key up to its second '/', as
    b"/nodes/"; at most 64 bytes of a key with none), hex, comma-separated; "" if there
    are more than MAX_AREAS. A key under a watch prefix has an area that starts that
    prefix or that the prefix starts."""
    areas = {key[:end + 1] if (end := key.find(b"/", 1)) > 0 else key[:64] for key in keys}
    return "" if len(areas) > MAX_AREAS else ",".join(sorted(area.hex() for area in areas))


def _row(item: Item) -> tuple[bytes, bytes, dt.datetime | None, int]:
    return item.key, item.value, item.expires, item.revision


def _item(row: asyncpg.Record) -> Item:
    key, value, expires, revision = row
    return Item(bytes(key), bytes(value), expires, revision)


def _event(row: asyncpg.Record, value: bytes | None) -> Event:
    if row["deleted"]:
        return Event(EventType.DELETE, Item(bytes(row["key"]), b"", revision=row["revision"]))
    return Event(EventType.PUT, Item(bytes(row["key"]), bytes(value or b""), row["expires"],
                                     row["revision"]))
