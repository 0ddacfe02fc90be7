"""The SQLite backend: the embedded default, one database file in the data directory.

One process owns the file (the auth service): an exclusive ``flock`` on
``<path>.lock`` turns a second opener away with the first one's pid. Watches are
therefore an in-process fan-out of events right after each commit. A PostgreSQL
backend, shared by several processes, would deliver the same events through
LISTEN/NOTIFY (and etcd through its own watch).

Durability: WAL journal with ``synchronous=NORMAL``. Each write is its own
transaction, and with FULL every one of them would wait for an fsync of the
WAL; with NORMAL, commits reach the OS at once and fsyncs happen at
checkpoints. A killed or crashed process loses nothing it committed, and the
file is never corrupt; a power cut or kernel crash may roll back the last
commits, leaving an older but consistent state. What the auth writes often
(node and proxy heartbeats) is rewritten within seconds anyway.

A write transaction (its statements, the revision counter, the commit) runs as
one call in the connection's thread: aiosqlite hands each call to that thread
and back, and a statement-by-statement write took three hand-offs (~60 % of the
cost of storing an audit event, measured on the benchmark's issuance row).
A read of one key that this process read or wrote before is answered from
memory (``_itemcache.py``: why that is sound), without a hand-off: every login
and session reads the same roles, users and authorities.
"""

from __future__ import annotations

import asyncio
import dataclasses
import fcntl
import os
import sqlite3
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import aiosqlite

from gatehouse.clock import Clock, utc
from gatehouse.errors import (
    AlreadyExists,
    BadParameter,
    CompareFailed,
    ConnectionProblem,
    GatehouseError,
    NotFound,
)

from ._itemcache import ItemCache
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

__all__ = ["SQLiteBackend"]

SCHEMA_VERSION = 2

# Values live in a rowid table, apart from the index on key. (Schema 1 kept them
# in a WITHOUT ROWID table, where a key lookup that compares against a cell with a
# large value reads the whole value from its overflow pages: beside 1 MiB values,
# each lookup took ~0.3-0.8 ms instead of ~5 us.)
_ITEMS = """
CREATE TABLE items (
    id INTEGER PRIMARY KEY,
    key BLOB NOT NULL UNIQUE,
    value BLOB NOT NULL,
    expires REAL,               -- Unix seconds; NULL: never
    revision INTEGER NOT NULL
);
CREATE INDEX items_expires ON items (expires) WHERE expires IS NOT NULL;
"""

_SCHEMA = f"""
BEGIN;
{_ITEMS}
CREATE TABLE meta (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
INSERT INTO meta (name, value) VALUES ('revision', 0);
PRAGMA user_version = {SCHEMA_VERSION};
COMMIT;
"""

# From schema 1: the same rows, copied into the new table in one transaction.
_MIGRATE_FROM_1 = f"""
BEGIN;
ALTER TABLE items RENAME TO items_v1;
DROP INDEX items_expires;
{_ITEMS}
INSERT INTO items (key, value, expires, revision)
    SELECT key, value, expires, revision FROM items_v1 ORDER BY key;
DROP TABLE items_v1;
PRAGMA user_version = {SCHEMA_VERSION};
COMMIT;
"""

_LIVE = "(expires IS NULL OR expires > :now)"
_COLUMNS = "key, value, expires, revision"
_UPSERT = (f"INSERT INTO items ({_COLUMNS}) VALUES (:key, :value, :expires, :revision) "
           "ON CONFLICT (key) DO UPDATE SET value = excluded.value, "
           "expires = excluded.expires, revision = excluded.revision")
_SET = "UPDATE items SET value = :value, expires = :expires, revision = :revision"

_Params = dict[str, Any]
_Body = Callable[[sqlite3.Connection, int], list[Event]]


class SQLiteBackend(Backend):
    """Items in one SQLite file; open it with ``SQLiteBackend.open(path, clock=...)``."""

    def __init__(self, path: Path, db: aiosqlite.Connection, lock: _ProcessLock,
                 revision: int, *, clock: Clock, sweeper: Sweeper) -> None:
        self.path = path
        self.clock = clock
        self._db = db
        self._process_lock = lock
        self._revision = revision  # the last one committed
        # One connection: the lock keeps a read from seeing another coroutine's
        # uncommitted statements, and makes commits and events happen in order.
        self._lock = asyncio.Lock()
        self._fanout = Fanout()
        self._cache = ItemCache()  # updated with each commit's events, under the lock
        self._sweeper = sweeper
        self._closed = False

    @classmethod
    async def open(cls, path: Path, *, clock: Clock, sweep_interval: float = 1.0
                   ) -> SQLiteBackend:
        """Open (creating if needed, mode 0600) the database at path, and own it."""
        sweeper = Sweeper(sweep_interval, "sqlite-backend-sweep")
        try:
            path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            lock = _ProcessLock(path)
        except OSError as exc:
            raise BadParameter(f"cannot open sqlite database {path}: {exc}") from exc
        db: aiosqlite.Connection | None = None
        try:
            # SQLite gives the -wal and -shm files the database file's mode.
            os.close(os.open(path, os.O_RDWR | os.O_CREAT, 0o600))
            db = await aiosqlite.connect(path)
            revision = await _prepare(db, path)
        except BaseException as exc:
            if db is not None:
                await db.close()
            lock.release()
            if isinstance(exc, sqlite3.Error | OSError):
                raise BadParameter(f"cannot open sqlite database {path}: {exc}") from exc
            raise
        backend = cls(path, db, lock, revision, clock=clock, sweeper=sweeper)
        sweeper.start(backend.sweep_expired)
        return backend

    async def get(self, key: bytes) -> Item:
        async with self._lock:
            self._check_open()
            item = self._cache.get(key)
            if item is None:
                items = await self._select(
                    f"SELECT {_COLUMNS} FROM items WHERE key = :key AND {_LIVE}", {"key": key})
                if items:
                    item = items[0]
                    self._cache.put(item)
        if item is None or item.expired(self.clock.now()):
            raise NotFound(f"key {key!r} not found")
        return item

    async def get_range(self, start: bytes, end: bytes, limit: int = 0, *,
                        reverse: bool = False) -> list[Item]:
        check_limit(limit)
        return await self._read(
            f"SELECT {_COLUMNS} FROM items WHERE key >= :start AND key < :end AND {_LIVE} "
            f"ORDER BY key {'DESC' if reverse else 'ASC'} LIMIT :limit",
            {"start": start, "end": end, "limit": limit or -1})

    async def put(self, item: Item) -> Item:
        return await self._store(_UPSERT, item)

    async def create(self, item: Item) -> Item:
        # An expired row is overwritten; a live one makes the upsert change nothing.
        return await self._store(_UPSERT + " WHERE items.expires <= :now", item,
                                 missing=AlreadyExists(f"key {item.key!r} already exists"))

    async def update(self, item: Item) -> Item:
        return await self._store(f"{_SET} WHERE key = :key AND {_LIVE}", item,
                                 missing=NotFound(f"key {item.key!r} not found"))

    async def compare_and_swap(self, expected: Item, replace_with: Item) -> Item:
        check_swap(expected, replace_with)
        return await self._store(
            f"{_SET} WHERE key = :key AND value = :expected AND {_LIVE}", replace_with,
            {"expected": expected.value},
            missing=CompareFailed(f"key {expected.key!r} is missing or has changed"))

    async def atomic_write(self, writes: Sequence[Write]) -> None:
        check_writes(writes, self.max_atomic_writes)

        def body(db: sqlite3.Connection, last: int) -> list[Event]:
            for write in writes:
                if write.expect_revision is not None:
                    rows = db.execute(
                        f"SELECT revision FROM items WHERE key = :key AND {_LIVE}",
                        self._params({"key": write.key})).fetchall()
                    if unmet(write, rows[0][0] if rows else 0):
                        raise CompareFailed(f"key {write.key!r} is missing or has changed")
            # Keys differ, so the statements commute: deletes first (which of them
            # removed something decides the revisions), then every put in one call.
            removed = set()
            for write in writes:
                if write.item is None:
                    rows = db.execute(
                        f"DELETE FROM items WHERE key = :key AND {_LIVE} RETURNING key",
                        self._params({"key": write.key})).fetchall()
                    if rows:
                        removed.add(write.key)
            events: list[Event] = []
            for write in writes:
                revision = last + len(events) + 1
                if write.item is not None:
                    events.append(Event(EventType.PUT,
                                        dataclasses.replace(write.item, revision=revision)))
                elif write.key in removed:
                    events.append(Event(EventType.DELETE, Item(write.key, b"", revision=revision)))
            puts = [self._params(_row(e.item)) for e in events if e.type is EventType.PUT]
            if puts:
                db.executemany(_UPSERT, puts)
            return events

        await self._write(body)

    async def delete(self, key: bytes) -> None:
        await self._remove(f"DELETE FROM items WHERE key = :key AND {_LIVE} RETURNING key",
                           {"key": key}, missing=NotFound(f"key {key!r} not found"))

    async def delete_range(self, start: bytes, end: bytes) -> int:
        return await self._remove(
            f"DELETE FROM items WHERE key >= :start AND key < :end AND {_LIVE} RETURNING key",
            {"start": start, "end": end})

    async def sweep_expired(self) -> int:
        return await self._remove("DELETE FROM items WHERE expires <= :now RETURNING key", {})

    def watch(self, prefixes: Sequence[bytes], *, queue_size: int = WATCH_QUEUE_SIZE) -> Watcher:
        self._check_open()
        return self._fanout.watch(prefixes, queue_size)

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        await self._sweeper.stop()
        async with self._lock:  # let a write in progress finish
            self._fanout.close()
            await self._db.close()
        self._process_lock.release()

    def _check_open(self) -> None:
        if self._closed:
            raise ConnectionProblem(f"sqlite backend {self.path} is closed")

    def _params(self, params: _Params) -> _Params:
        return {"now": self.clock.now().timestamp(), **params}

    async def _read(self, sql: str, params: _Params) -> list[Item]:
        async with self._lock:
            self._check_open()
            return await self._select(sql, params)

    async def _select(self, sql: str, params: _Params) -> list[Item]:
        """The items sql selects (the caller holds the lock)."""
        try:
            rows = await self._db.execute_fetchall(sql, self._params(params))
        except sqlite3.Error as exc:
            raise GatehouseError(f"sqlite database {self.path}: {exc}") from exc
        return [_item(row) for row in rows]

    async def _store(self, sql: str, item: Item, params: _Params | None = None, *,
                     missing: GatehouseError | None = None) -> Item:
        """Write item with the next revision; raise ``missing`` if sql changed no row."""

        def body(db: sqlite3.Connection, last: int) -> list[Event]:
            stored = dataclasses.replace(item, revision=last + 1)
            cursor = db.execute(sql, self._params({**_row(stored), **(params or {})}))
            if missing is not None and cursor.rowcount == 0:
                raise missing
            return [Event(EventType.PUT, stored)]

        events = await self._write(body)
        return events[0].item

    async def _remove(self, sql: str, params: _Params, *,
                      missing: GatehouseError | None = None) -> int:
        """Delete the rows sql returns, a revision and a DELETE event each, in key order."""

        def body(db: sqlite3.Connection, last: int) -> list[Event]:
            rows: Iterable[Any] = db.execute(sql, self._params(params)).fetchall()
            keys = sorted(bytes(row[0]) for row in rows)
            if missing is not None and not keys:
                raise missing
            return [Event(EventType.DELETE, Item(key, b"", revision=last + n))
                    for n, key in enumerate(keys, 1)]

        return len(await self._write(body))

    async def _write(self, body: _Body) -> list[Event]:
        # Shielded: a write that has started runs to its end (commit, counter,
        # events) even if its caller is cancelled, so that the file, the revision
        # counter and the watchers never disagree. close() waits for it.
        return await asyncio.shield(self._transact(body))

    async def _transact(self, body: _Body) -> list[Event]:
        async with self._lock:
            self._check_open()
            try:
                # aiosqlite's own way to run a call in its connection's thread (its
                # public methods are each one such call); see the module's docstring.
                events: list[Event] = await self._db._execute(  # type: ignore[no-untyped-call]
                    _commit, self._db._conn, body, self._revision)
            except sqlite3.Error as exc:
                raise GatehouseError(f"sqlite database {self.path}: {exc}") from exc
            if events:
                self._revision = events[-1].item.revision
            self._cache.apply(events)
            self._fanout.emit(events)
            return events


def _commit(db: sqlite3.Connection, body: _Body, last: int) -> list[Event]:
    """In the connection's thread: body's statements, the revision counter and the
    commit, as one transaction (rolled back if any of it fails)."""
    try:
        events = body(db, last)
        if events:
            db.execute("UPDATE meta SET value = ? WHERE name = 'revision'",
                       (events[-1].item.revision,))
        db.commit()
    except BaseException:
        db.rollback()
        raise
    return events


async def _prepare(db: aiosqlite.Connection, path: Path) -> int:
    """Set the connection up, create or check the schema; returns the last revision."""
    [(mode,)] = await db.execute_fetchall("PRAGMA journal_mode = WAL")
    if mode != "wal":
        raise BadParameter(f"sqlite database {path}: cannot use WAL journal (got {mode!r})")
    await db.execute("PRAGMA synchronous = NORMAL")
    # Reads through a map of the file and a 64 MiB page cache, not a pread() per page
    # into 2 MiB: every SSH session reads a dozen items. The price (SQLite's mmap
    # notes): a disk read error in the mapped part is a SIGBUS that stops the
    # process, rather than an error to handle.
    await db.execute("PRAGMA cache_size = -65536")
    await db.execute("PRAGMA mmap_size = 268435456")
    [(version,)] = await db.execute_fetchall("PRAGMA user_version")
    if version > SCHEMA_VERSION:
        raise BadParameter(f"sqlite database {path} has schema version {version}, this "
                           f"gatehouse knows up to {SCHEMA_VERSION}: upgrade gatehouse")
    if version == 0:
        await db.executescript(_SCHEMA)
    elif version == 1:
        await db.executescript(_MIGRATE_FROM_1)
    [(revision,)] = await db.execute_fetchall("SELECT value FROM meta WHERE name = 'revision'")
    return int(revision)


def _row(item: Item) -> _Params:
    expires = None if item.expires is None else item.expires.timestamp()
    return {"key": item.key, "value": item.value, "expires": expires, "revision": item.revision}


def _item(row: Sequence[Any]) -> Item:
    key, value, expires, revision = row
    return Item(bytes(key), bytes(value), None if expires is None else utc(expires), revision)


class _ProcessLock:
    """An exclusive flock on ``<database>.lock``, held while the backend is open.

    The kernel drops the lock when the process dies, however it dies, so a stale
    lock file never blocks a restart; the pid inside is only for the message.
    """

    def __init__(self, db_path: Path) -> None:
        self.path = db_path.with_name(db_path.name + ".lock")
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            if not isinstance(exc, BlockingIOError):
                raise BadParameter(f"cannot lock {self.path}: {exc.strerror}") from exc
            if holder == str(os.getpid()):
                raise BadParameter(f"sqlite database {db_path} is already open in this "
                                   f"process (pid {holder})") from None
            raise BadParameter(f"sqlite database {db_path} is in use by another gatehouse "
                               f"process (pid {holder}): stop it, or give this one another "
                               "data_dir") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd: int | None = fd

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the descriptor drops the flock
            self._fd = None
