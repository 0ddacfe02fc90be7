"""The PostgreSQL backend beyond the compliance suite: several backends (as several auth
processes would) on one database, and a database restarted under writes.

These run against the real server of tests/pgserver.py; the restart test stops it,
so it must not share the server with a test running at the same time (pytest runs
a process's tests one after the other)."""

from __future__ import annotations

import asyncio
import contextlib
import sys
import time
from collections.abc import AsyncIterator
from typing import Literal

import pytest

from gatehouse.backend import Event, EventType, Item, PostgresBackend, Watcher, Write, postgres
from gatehouse.backend.postgres import INLINE_VALUE
from gatehouse.clock import FakeClock
from gatehouse.errors import (
    AlreadyExists,
    BadParameter,
    CompareFailed,
    ConnectionProblem,
    LimitExceeded,
)
from tests.pgserver import PgServer

QUIET = 3600.0  # no background sweep during these tests


@pytest.fixture
async def database(pg_server: PgServer) -> str:
    return await asyncio.to_thread(pg_server.new_database)


@pytest.fixture
async def two(database: str) -> AsyncIterator[tuple[PostgresBackend, PostgresBackend]]:
    clock = FakeClock()
    first = await PostgresBackend.open(database, clock=clock, sweep_interval=QUIET)
    second = await PostgresBackend.open(database, clock=clock, sweep_interval=QUIET)
    yield first, second
    await first.close()
    await second.close()


async def take(watcher: Watcher, n: int, timeout: float = 10.0) -> list[Event]:
    return [await asyncio.wait_for(anext(watcher), timeout) for _ in range(n)]


async def test_two_backends_see_each_others_writes_and_watch_in_revision_order(
        two: tuple[PostgresBackend, PostgresBackend]) -> None:
    first, second = two
    watchers = [first.watch([b"/"]), second.watch([b"/"])]
    stored = await asyncio.gather(*(
        (first if n % 2 else second).put(Item(b"/k/%d" % (n % 5), b"%d" % n))
        for n in range(40)))
    revisions = sorted(i.revision for i in stored)
    assert revisions == list(range(revisions[0], revisions[0] + 40))  # one counter
    expected = sorted(stored, key=lambda i: i.revision)
    for watcher in watchers:  # each sees every write, from either backend, in order
        assert [e.item for e in await take(watcher, 40)] == expected
    latest = {i.key: i for i in expected}
    assert await first.get_range(b"/", b"0") == sorted(latest.values(), key=lambda i: i.key)
    assert await second.get(b"/k/0") == latest[b"/k/0"]


async def test_conditional_writes_from_two_backends_have_one_winner(
        two: tuple[PostgresBackend, PostgresBackend]) -> None:
    first, second = two
    for _round in range(10):
        key = b"/token/%d" % _round
        outcomes = await asyncio.gather(first.create(Item(key, b"a")),
                                        second.create(Item(key, b"b")), return_exceptions=True)
        assert sum(isinstance(o, AlreadyExists) for o in outcomes) == 1, outcomes
        current = await first.get(key)
        swaps = await asyncio.gather(
            first.compare_and_swap(current, Item(key, b"first")),
            second.compare_and_swap(current, Item(key, b"second")), return_exceptions=True)
        assert sum(isinstance(o, CompareFailed) for o in swaps) == 1, swaps
        winner = next(o for o in swaps if isinstance(o, Item))
        assert await second.get(key) == winner


async def test_large_values_reach_the_watchers_that_want_them(
        two: tuple[PostgresBackend, PostgresBackend]) -> None:
    """A value above INLINE_VALUE (a recording's chunk) is read by a watch only for a
    watcher of its key, yet that watcher gets it whole and in order."""
    first, second = two
    big = bytes(range(256)) * (INLINE_VALUE // 256 + 1)
    chunks, other = second.watch([b"/chunks/"]), second.watch([b"/other/"])
    await first.put(Item(b"/chunks/1", big))
    await first.put(Item(b"/other/1", big))
    await first.put(Item(b"/chunks/2", b"small"))
    assert [(e.item.key, e.item.value) for e in await take(chunks, 2)] == [
        (b"/chunks/1", big), (b"/chunks/2", b"small")]
    assert [(e.item.key, e.item.value) for e in await take(other, 1)] == [(b"/other/1", big)]
    assert (await second.get(b"/chunks/1")).value == big


async def test_a_watch_away_longer_than_the_change_table_keeps_is_closed_not_short(
        two: tuple[PostgresBackend, PostgresBackend], monkeypatch: pytest.MonkeyPatch) -> None:
    """A backend whose watch was away while the others pruned the changes it missed
    closes its watchers with LimitExceeded (list again) rather than skip them."""
    first, second = two
    monkeypatch.setattr(postgres, "CHANGES_KEPT", 3)
    watcher = second.watch([b"/"])
    await second.put(Item(b"/k", b"0"))
    assert len(await take(watcher, 1)) == 1
    # The second backend's watch goes away (as in a long partition) ...
    follow = second._follower
    assert follow is not None
    follow.cancel()
    await asyncio.wait({follow})
    for n in range(1, 10):  # ... while the first writes and prunes all but 3 changes.
        await first.put(Item(b"/k", b"%d" % n))
    await first._sweep()
    second._follower = asyncio.create_task(second._follow())  # it comes back
    with pytest.raises(LimitExceeded, match=r"missed changes 2\.\.7"):
        await asyncio.wait_for(anext(watcher), 10)
    fresh = second.watch([b"/"])  # a new watch after listing again works
    await first.put(Item(b"/k", b"new"))
    assert [e.item.value for e in await take(fresh, 1)] == [b"new"]


async def test_a_change_nobody_here_watches_wakes_no_read_of_the_changes(
        two: tuple[PostgresBackend, PostgresBackend], monkeypatch: pytest.MonkeyPatch) -> None:
    """A write's NOTIFY names the areas of its keys: a process whose watchers want none
    of them does not read the change table for it (heartbeats and audit events, most
    writes, cost the other auths nothing); the next change they want is read at once,
    with the ones before it."""
    first, second = two
    monkeypatch.setattr(postgres, "POLL_INTERVAL", 60.0)  # no read but the woken ones
    roles = second.watch([b"/roles/"])
    await first.put(Item(b"/roles/a", b"1"))
    assert [e.item.key for e in await take(roles, 1)] == [b"/roles/a"]
    read = second._delivered
    for n in range(5):
        await first.put(Item(b"/nodes/n%d" % n, b"beat"))
    await first.atomic_write([Write(b"/nodes/n0"),
                              Write(b"/node_index/n0", Item(b"/node_index/n0", b""))])
    await asyncio.sleep(0.5)
    assert second._delivered == read  # not woken: nothing read
    await first.put(Item(b"/roles/b", b"2"))
    assert [e.item.key for e in await take(roles, 1)] == [b"/roles/b"]
    assert second._delivered == read + 8
    # An area a watch prefix lies in (or that lies in one) wakes the watch.
    everything = second.watch([b"/"])
    deep = second.watch([b"/nodes/n3/x"])
    await first.put(Item(b"/nodes/n3/x/y", b"1"))
    assert [e.item.key for e in await take(deep, 1)] == [b"/nodes/n3/x/y"]
    assert [e.item.key for e in await take(everything, 1)] == [b"/nodes/n3/x/y"]


async def test_puts_made_together_are_written_together_in_call_order(
        two: tuple[PostgresBackend, PostgresBackend], monkeypatch: pytest.MonkeyPatch) -> None:
    """Puts that wait for this process's turn to write go in one statement: 50 at once
    take a few round trips, not 50; each caller gets its own item back, revisions follow
    the calls, a key put twice keeps the later value, and a watcher sees every put."""
    first, _ = two
    watcher = first.watch([b"/beats/"])
    statements = 0
    write = first._insert_now

    async def counted(items: list[Item]) -> list[Event]:
        nonlocal statements
        statements += 1
        return await write(items)

    monkeypatch.setattr(first, "_insert_now", counted)
    stored = await asyncio.gather(*(first.put(Item(b"/beats/%d" % (n % 10), b"%d" % n))
                                    for n in range(50)))
    assert statements <= 3
    assert [item.value for item in stored] == [b"%d" % n for n in range(50)]
    revisions = [item.revision for item in stored]
    assert revisions == list(range(revisions[0], revisions[0] + 50))
    for key in range(10):
        assert (await first.get(b"/beats/%d" % key)).value == b"%d" % (40 + key)
    assert [e.item.value for e in await take(watcher, 50)] == [b"%d" % n for n in range(50)]


class _TurnLog(asyncio.Lock):
    """The writers' lock, naming the function that took each turn it gave."""

    def __init__(self) -> None:
        super().__init__()
        self.turns: list[str] = []

    async def acquire(self) -> Literal[True]:
        taker = sys._getframe(2).f_code.co_name  # acquire <- __aenter__ <- the taker
        got = await super().acquire()
        self.turns.append(taker)
        return got


async def test_a_write_behind_a_batch_of_puts_waits_for_one_turn_not_one_a_put(
        two: tuple[PostgresBackend, PostgresBackend], monkeypatch: pytest.MonkeyPatch) -> None:
    """Puts that queue together take one turn of the writers' lock between them. A
    transactional write (a login's) queued behind 50 heartbeats waits for their one
    statement, not for 50 turns, each a pass of a busy event loop."""
    first, _ = two
    lock = _TurnLog()
    monkeypatch.setattr(first, "_write_lock", lock)
    await first.put(Item(b"/logins/a", b"1"))
    lock.turns.clear()
    async with lock:  # another write has the turn: the heartbeats queue
        puts = [asyncio.create_task(first.put(Item(b"/beats/%d" % n, b"x")))
                for n in range(50)]
        await asyncio.sleep(0.05)
        login = asyncio.create_task(first.delete(b"/logins/a"))
        await asyncio.sleep(0.05)
    await asyncio.wait_for(asyncio.gather(login, *puts), 10)
    assert lock.turns[:3] == [
        "test_a_write_behind_a_batch_of_puts_waits_for_one_turn_not_one_a_put",
        "_insert", "_transact"], lock.turns[:6]
    assert len(await first.get_range(b"/beats/", b"/beats0")) == 50


async def test_a_batch_whose_leader_stops_before_its_turn_leaves_no_put_waiting(
        two: tuple[PostgresBackend, PostgresBackend]) -> None:
    first, _ = two
    async with first._write_lock:  # another write has the turn
        leader = asyncio.create_task(first._insert([Item(b"/beats/0", b"x")]))
        await asyncio.sleep(0.01)
        follower = asyncio.create_task(first._insert([Item(b"/beats/1", b"x")]))
        await asyncio.sleep(0.01)
        leader.cancel()  # the loop stopping, say
        with pytest.raises(asyncio.CancelledError):
            await asyncio.wait_for(follower, 5)
    assert (await first.put(Item(b"/beats/2", b"y"))).value == b"y"
    assert [i.key for i in await first.get_range(b"/beats/", b"/beats0")] == [b"/beats/2"]


async def test_a_failed_batch_of_puts_fails_each_of_its_callers(
        two: tuple[PostgresBackend, PostgresBackend], monkeypatch: pytest.MonkeyPatch) -> None:
    """Whatever stops a batch's statement is raised to every put of the batch (none
    waits for ever or loses its items to a batch that left it out); the next put works."""
    first, _ = two
    write = first._insert_now

    async def broken(items: list[Item]) -> list[Event]:
        raise RuntimeError("the statement broke")

    monkeypatch.setattr(first, "_insert_now", broken)
    outcomes = await asyncio.wait_for(asyncio.gather(
        *(first.put(Item(b"/beats/%d" % n, b"x")) for n in range(20)),
        return_exceptions=True), 10)
    assert [str(o) for o in outcomes] == ["the statement broke"] * 20
    monkeypatch.setattr(first, "_insert_now", write)
    assert (await first.put(Item(b"/beats/0", b"y"))).value == b"y"
    assert [i.key for i in await first.get_range(b"/beats/", b"/beats0")] == [b"/beats/0"]


async def test_open_says_what_is_wrong_in_one_line(pg_server: PgServer) -> None:
    clock = FakeClock()
    with pytest.raises(ConnectionProblem, match=r"^cannot reach PostgreSQL at 127\.0\.0\.1:1/x: "):
        await PostgresBackend.open("postgresql://gatehouse@127.0.0.1:1/x", clock=clock)
    missing = pg_server.dsn("no_such_database")
    with pytest.raises(BadParameter, match=r"no_such_database.*does not exist"):
        await PostgresBackend.open(missing, clock=clock)


async def test_restart_under_writes_fails_clearly_applies_nothing_half_and_resumes(
        pg_server: PgServer, database: str) -> None:
    """Pairs of keys written atomically while PostgreSQL stops for a second and comes
    back: writes in the outage fail with ConnectionProblem, no pair is half there,
    both backends recover by themselves, and both watchers see every committed change
    once, in revision order."""
    clock = FakeClock()
    writer = await PostgresBackend.open(database, clock=clock, sweep_interval=QUIET)
    follower = await PostgresBackend.open(database, clock=clock, sweep_interval=QUIET)
    try:
        watchers = [writer.watch([b"/"]), follower.watch([b"/"])]
        applied: set[bytes] = set()  # pairs whose write returned
        failures: dict[bytes, str] = {}  # pairs whose write failed -> the error's line
        done = asyncio.Event()

        async def write_pairs() -> int:
            n = 0
            while not done.is_set() and n < 5000:
                n += 1
                pair = b"/pair/%06d" % n
                try:
                    await writer.atomic_write([Write(pair + b"/a", Item(pair + b"/a", b"x")),
                                               Write(pair + b"/b", Item(pair + b"/b", b"y"))])
                except ConnectionProblem as exc:
                    failures[pair] = str(exc)
                    await asyncio.sleep(0.02)
                else:
                    applied.add(pair)
                    await asyncio.sleep(0.005)
            return n

        task = asyncio.create_task(write_pairs())
        await asyncio.sleep(0.3)
        await asyncio.to_thread(pg_server.restart, 1.0)
        down_until = time.monotonic()
        # Writes succeed again by themselves (a fresh connection from the pool).
        recovered = None
        for _attempt in range(100):
            try:
                recovered = await writer.put(Item(b"/after", b"restart"))
                break
            except ConnectionProblem:
                await asyncio.sleep(0.1)
        assert recovered is not None, "writes did not succeed within 10 s of the restart"
        recovery = time.monotonic() - down_until
        await asyncio.sleep(0.3)
        done.set()
        attempts = await asyncio.wait_for(task, 30)
        marker = await writer.put(Item(b"/marker", b""))

        assert failures, "no write failed while PostgreSQL was down"
        assert len(applied) + len(failures) == attempts
        for line in failures.values():
            assert "\n" not in line
            assert line.startswith(f"PostgreSQL at {writer.where} is unavailable")
            assert line.endswith(("the write was not applied",
                                  "the write may or may not have been applied"))
        keys = {i.key for i in await follower.get_range(b"/", b"0")}
        pairs = {k.rsplit(b"/", 1)[0] for k in keys if k.startswith(b"/pair/")}
        for pair in pairs:  # atomic: both keys of a pair, or neither
            assert {pair + b"/a", pair + b"/b"} <= keys, pair
        assert applied <= pairs
        assert not {p for p, line in failures.items() if line.endswith("not applied")} & pairs

        for watcher in watchers:  # every change once, in order, through the reconnect
            events: list[Event] = []
            for _n in range(2 * attempts + 10):
                events.extend(await take(watcher, 1))
                if events[-1].item == marker:
                    break
            revisions = [e.item.revision for e in events]
            assert revisions == list(range(revisions[0], revisions[0] + len(events)))
            assert all(e.type is EventType.PUT for e in events)
            assert {e.item.key for e in events} == keys
        print(f"{attempts} atomic writes, {len(failures)} failed in the outage, "
              f"writes recovered {recovery:.2f}s after PostgreSQL was back; "
              f"first failure: {next(iter(failures.values()))}")
    finally:
        for backend in (writer, follower):
            with contextlib.suppress(Exception):
                await backend.close()


async def test_reads_in_an_outage_fail_clearly(pg_server: PgServer, database: str) -> None:
    backend = await PostgresBackend.open(database, clock=FakeClock(), sweep_interval=QUIET)
    try:
        await backend.put(Item(b"/a", b"1"))
        await asyncio.to_thread(pg_server.stop)
        try:
            with pytest.raises(ConnectionProblem, match="is unavailable"):
                await backend.get(b"/a")
            with pytest.raises(ConnectionProblem, match="the write was not applied"):
                await backend.put(Item(b"/a", b"2"))
        finally:
            await asyncio.to_thread(pg_server.start_again)
        for _attempt in range(100):
            with contextlib.suppress(ConnectionProblem):
                assert (await backend.get(b"/a")).value == b"1"
                break
            await asyncio.sleep(0.1)
        else:
            raise AssertionError("reads did not succeed within 10 s of the restart")
    finally:
        await backend.close()
