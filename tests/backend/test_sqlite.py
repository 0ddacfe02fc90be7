"""What only the SQLite backend promises: a file that survives restarts and crashes,
and that one process at a time."""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import signal
import sqlite3
import stat
import sys
import textwrap
from pathlib import Path

import pytest

from gatehouse.backend import Item, SQLiteBackend, prefix_end
from gatehouse.clock import FakeClock, SystemClock
from gatehouse.errors import BadParameter


async def test_items_survive_reopening(tmp_path: Path) -> None:
    path = tmp_path / "data" / "backend.db"
    clock = FakeClock()
    async with await SQLiteBackend.open(path, clock=clock) as backend:
        kept = [await backend.put(Item(b"/users/alice", b"a" * 1000)),
                await backend.put(Item(b"/nodes/n1", b"\x00\xff",
                                       expires=clock.now() + dt.timedelta(minutes=5)))]
        await backend.put(Item(b"/tokens/t1", b""))
        await backend.delete(b"/tokens/t1")  # the last revision went to a delete
    async with await SQLiteBackend.open(path, clock=clock) as backend:
        assert await backend.get_range(b"/", prefix_end(b"/")) == sorted(
            kept, key=lambda i: i.key)
        watcher = backend.watch([b"/"])
        after = await backend.put(Item(b"/users/bob", b""))
        assert after.revision == kept[-1].revision + 3
        assert (await anext(watcher)).item == after


async def test_files_are_private(tmp_path: Path) -> None:
    path = tmp_path / "data" / "backend.db"
    async with await SQLiteBackend.open(path, clock=SystemClock()) as backend:
        await backend.put(Item(b"/ca/user", b"private key"))
        assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
        for name in ("backend.db", "backend.db-wal", "backend.db.lock"):
            assert stat.S_IMODE((path.parent / name).stat().st_mode) == 0o600, name


async def test_a_second_opener_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "backend.db"
    backend = await SQLiteBackend.open(path, clock=SystemClock())
    with pytest.raises(BadParameter, match=f"already open in this process \\(pid {os.getpid()}"):
        await SQLiteBackend.open(path, clock=SystemClock())
    await backend.close()
    await (await SQLiteBackend.open(path, clock=SystemClock())).close()


async def test_refuses_a_newer_schema_or_a_foreign_file(tmp_path: Path) -> None:
    newer = tmp_path / "newer.db"
    with sqlite3.connect(newer) as db:
        db.execute("PRAGMA user_version = 99")
    with pytest.raises(BadParameter, match=r"schema version 99.*upgrade gatehouse"):
        await SQLiteBackend.open(newer, clock=SystemClock())
    garbage = tmp_path / "garbage.db"
    garbage.write_bytes(b"not a database, just some bytes" * 100)
    with pytest.raises(BadParameter, match=r"cannot open sqlite database .*garbage\.db"):
        await SQLiteBackend.open(garbage, clock=SystemClock())
    # A failed open leaves the database unlocked.
    with pytest.raises(BadParameter, match="schema version 99"):
        await SQLiteBackend.open(newer, clock=SystemClock())


WRITER = textwrap.dedent("""
    import asyncio, sys
    from pathlib import Path
    from gatehouse.backend import Item, SQLiteBackend
    from gatehouse.clock import SystemClock

    async def main() -> None:
        backend = await SQLiteBackend.open(Path(sys.argv[1]), clock=SystemClock())
        n = 0
        while True:
            await backend.put(Item(b"/k/%08d" % n, b"%d" % n * 100))
            print(n, flush=True)
            n += 1

    asyncio.run(main())
""")


async def test_a_killed_writer_leaves_a_consistent_prefix(tmp_path: Path) -> None:
    path = tmp_path / "backend.db"
    writer = await asyncio.create_subprocess_exec(
        sys.executable, "-c", WRITER, str(path), stdout=asyncio.subprocess.PIPE)
    assert writer.stdout is not None
    try:
        acked = -1
        while acked < 300:
            line = await asyncio.wait_for(writer.stdout.readline(), 20)
            assert line, "the writer exited early"
            acked = int(line)
        with pytest.raises(BadParameter, match=f"another gatehouse process \\(pid {writer.pid}\\)"):
            await SQLiteBackend.open(path, clock=SystemClock())
    finally:
        writer.send_signal(signal.SIGKILL)  # in the middle of the stream of writes
        rest, _ = await writer.communicate()
    acked = max([acked, *map(int, rest.split())])

    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
    async with await SQLiteBackend.open(path, clock=SystemClock()) as backend:
        items = await backend.get_range(b"/k/", prefix_end(b"/k/"))
        assert len(items) in (acked + 1, acked + 2)  # the last write may have committed
        for n, item in enumerate(items):
            assert item == Item(b"/k/%08d" % n, b"%d" % n * 100, None, n + 1)
        assert (await backend.put(Item(b"/after", b""))).revision == len(items) + 1


SCHEMA_1 = """
CREATE TABLE items (key BLOB PRIMARY KEY, value BLOB NOT NULL, expires REAL,
                    revision INTEGER NOT NULL) WITHOUT ROWID;
CREATE INDEX items_expires ON items (expires) WHERE expires IS NOT NULL;
CREATE TABLE meta (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
INSERT INTO meta (name, value) VALUES ('revision', 7);
PRAGMA user_version = 1;
"""


async def test_a_schema_1_database_is_migrated_with_every_item(tmp_path: Path) -> None:
    path = tmp_path / "backend.db"
    clock = FakeClock()
    soon = clock.now() + dt.timedelta(minutes=5)
    with sqlite3.connect(path) as db:
        db.executescript(SCHEMA_1)
        db.executemany("INSERT INTO items VALUES (?, ?, ?, ?)", [
            (b"/users/alice", b"a" * 5000, None, 3),
            (b"/nodes/n1", b"\x00\xff", soon.timestamp(), 7),
            (b"/recordings/x/chunk/000000", b"\x01" * (1 << 20), None, 5)])
    async with await SQLiteBackend.open(path, clock=clock) as backend:
        assert await backend.get_range(b"/", prefix_end(b"/")) == [
            Item(b"/nodes/n1", b"\x00\xff", soon, 7),
            Item(b"/recordings/x/chunk/000000", b"\x01" * (1 << 20), None, 5),
            Item(b"/users/alice", b"a" * 5000, None, 3)]
        assert (await backend.put(Item(b"/users/bob", b""))).revision == 8
        clock.advance(dt.timedelta(minutes=6))
        assert await backend.sweep_expired() == 1  # the expiry index came along
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA user_version").fetchall() == [(2,)]
        assert db.execute("PRAGMA integrity_check").fetchall() == [("ok",)]


def _bytes_read() -> int:
    for line in Path("/proc/self/io").read_text().splitlines():
        if line.startswith("rchar:"):
            return int(line.split()[1])
    raise AssertionError("no rchar in /proc/self/io")


async def test_a_key_lookup_does_not_read_large_values(tmp_path: Path) -> None:
    """Finding a small item must not page in the large values beside it (in schema 1 a
    lookup read the 1 MiB recording chunks then kept in the backend)."""
    path = tmp_path / "backend.db"
    async with await SQLiteBackend.open(path, clock=SystemClock()) as backend:
        for n in range(64):
            await backend.put(Item(b"/recordings/%04d/chunk/000000" % n, b"\x01" * (1 << 20)))
            await backend.put(Item(b"/roles/r%04d" % n, b"r" * 300))
    with sqlite3.connect(path) as db:
        db.execute("PRAGMA mmap_size = 0")  # reads go through read(2), where rchar counts them
        before = _bytes_read()
        for n in range(0, 64, 8):
            for key in (b"/roles/r%04d" % n, b"/recordings/%04d/chunk/000001" % n):
                db.execute("SELECT key, expires FROM items WHERE key = ?", (key,)).fetchall()
        read = _bytes_read() - before
    assert read < 256 << 10, f"16 lookups read {read} bytes"
