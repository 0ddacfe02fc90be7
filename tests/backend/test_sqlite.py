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
