"""One suite every backend must pass. To add a backend, add an opener to OPENERS."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gatehouse.backend import (
    Backend,
    Event,
    Item,
    MemoryBackend,
    PostgresBackend,
    SQLiteBackend,
    Watcher,
    Write,
    open_backend,
    prefix_end,
)
from gatehouse.backend.etcd import EtcdBackend
from gatehouse.backend.measured import MeasuredBackend
from gatehouse.clock import Clock, FakeClock
from gatehouse.errors import (
    AlreadyExists,
    BadParameter,
    CompareFailed,
    ConnectionProblem,
    GatehouseError,
    LimitExceeded,
    NotFound,
)
from tests import etcdserver, pgserver

# The background sweeper is slowed down so that tests decide when expiry happens,
# except in the one test about the sweeper itself.
QUIET = 3600.0
Opener = Callable[[Path, Clock, float], Awaitable[Backend]]
OPENERS: dict[str, Opener] = {
    "memory": lambda tmp, clock, every: MemoryBackend.open(clock=clock, sweep_interval=every),
    "sqlite": lambda tmp, clock, every: SQLiteBackend.open(
        tmp / f"{uuid.uuid4().hex}.db", clock=clock, sweep_interval=every),
    "measured": lambda tmp, clock, every: _measured(MemoryBackend.open(
        clock=clock, sweep_interval=every)),
    # A fresh database each, on the test process's PostgreSQL server (tests/pgserver.py).
    "postgres": lambda tmp, clock, every: open_postgres(clock, every),
    "etcd": lambda tmp, clock, every: EtcdBackend.open(
        etcdserver.shared().settings(), clock=clock, sweep_interval=every),
}


async def _measured(opened: Awaitable[Backend]) -> Backend:
    """The daemon's timing wrapper (backend.measured) around a backend: it changes nothing."""
    return MeasuredBackend(await opened)


MakeBackend = Callable[..., Awaitable[Backend]]


async def open_postgres(clock: Clock, sweep_interval: float) -> Backend:
    server = await asyncio.to_thread(pgserver.shared)
    dsn = await asyncio.to_thread(server.new_database)
    return await PostgresBackend.open(dsn, clock=clock, sweep_interval=sweep_interval)


@pytest.fixture(params=sorted(OPENERS))
async def make_backend(request: pytest.FixtureRequest, tmp_path: Path
                       ) -> AsyncIterator[MakeBackend]:
    """Opens fresh backends of one kind; closes whatever is left open at the end."""
    opened: list[Backend] = []

    async def make(clock: Clock, sweep_interval: float = QUIET) -> Backend:
        backend = await OPENERS[request.param](tmp_path, clock, sweep_interval)
        opened.append(backend)
        return backend

    yield make
    for backend in opened:
        await backend.close()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def backend(make_backend: MakeBackend, clock: FakeClock) -> Backend:
    return await make_backend(clock)


async def take(watcher: Watcher, n: int) -> list[Event]:
    return [await asyncio.wait_for(anext(watcher), 5) for _ in range(n)]


def summary(events: list[Event]) -> list[tuple[str, bytes, bytes]]:
    return [(e.type.value, e.item.key, e.item.value) for e in events]


async def test_put_get(backend: Backend, clock: FakeClock) -> None:
    expires = clock.now() + dt.timedelta(minutes=1)
    stored = await backend.put(Item(b"/users/alice", b"spec", expires=expires))
    assert stored == Item(b"/users/alice", b"spec", expires, stored.revision)
    assert stored.revision > 0
    assert await backend.get(b"/users/alice") == stored
    again = await backend.put(Item(b"/users/alice", b""))
    assert again.revision > stored.revision
    assert await backend.get(b"/users/alice") == Item(b"/users/alice", b"", None, again.revision)
    with pytest.raises(NotFound):
        await backend.get(b"/users/bob")


async def test_create_and_update(backend: Backend) -> None:
    with pytest.raises(NotFound):
        await backend.update(Item(b"/a", b"1"))
    created = await backend.create(Item(b"/a", b"1"))
    with pytest.raises(AlreadyExists):
        await backend.create(Item(b"/a", b"2"))
    updated = await backend.update(Item(b"/a", b"3"))
    assert updated.revision > created.revision
    assert (await backend.get(b"/a")).value == b"3"
    await backend.delete(b"/a")
    assert (await backend.create(Item(b"/a", b"4"))).value == b"4"


async def test_compare_and_swap(backend: Backend) -> None:
    with pytest.raises(CompareFailed):
        await backend.compare_and_swap(Item(b"/a", b"1"), Item(b"/a", b"2"))
    first = await backend.put(Item(b"/a", b"1"))
    with pytest.raises(CompareFailed):
        await backend.compare_and_swap(Item(b"/a", b"0"), Item(b"/a", b"2"))
    with pytest.raises(BadParameter):
        await backend.compare_and_swap(Item(b"/a", b"1"), Item(b"/b", b"2"))
    swapped = await backend.compare_and_swap(first, Item(b"/a", b"2"))
    assert swapped.value == b"2" and swapped.revision > first.revision
    assert await backend.get(b"/a") == swapped
    with pytest.raises(CompareFailed):  # the old value no longer matches
        await backend.compare_and_swap(first, Item(b"/a", b"3"))


async def test_atomic_write_applies_every_write_in_order(backend: Backend) -> None:
    before = await backend.put(Item(b"/old", b"x"))
    async with backend.watch([b"/"]) as watcher:
        await backend.atomic_write([Write(b"/n/1", Item(b"/n/1", b"a")), Write(b"/old"),
                                    Write(b"/gone"), Write(b"/i/a", Item(b"/i/a", b"b"))])
        events = await take(watcher, 3)
    assert summary(events) == [("put", b"/n/1", b"a"), ("delete", b"/old", b""),
                               ("put", b"/i/a", b"b")]
    revisions = [e.item.revision for e in events]
    assert before.revision < revisions[0] < revisions[1] < revisions[2]
    assert await backend.get_range(b"/", b"0") == [events[2].item, events[0].item]


async def test_atomic_write_changes_nothing_unless_every_expectation_holds(
        backend: Backend, clock: FakeClock) -> None:
    a = await backend.put(Item(b"/a", b"1"))
    await backend.put(Item(b"/e", b"1", expires=clock.now() + dt.timedelta(seconds=1)))
    clock.advance(dt.timedelta(seconds=1))  # an expired item counts as absent
    async with backend.watch([b"/"]) as watcher:
        for expect in (0, a.revision + 1):
            with pytest.raises(CompareFailed):
                await backend.atomic_write([Write(b"/b", Item(b"/b", b"new")),
                                            Write(b"/a", Item(b"/a", b"2"), expect)])
        with pytest.raises(CompareFailed):
            await backend.atomic_write([Write(b"/a"), Write(b"/c", None, 1)])
        assert await backend.get_range(b"/", b"0") == [a]
        await backend.atomic_write([Write(b"/a", Item(b"/a", b"2"), a.revision),
                                    Write(b"/e", Item(b"/e", b"2"), 0)])
        assert summary(await take(watcher, 2)) == [("put", b"/a", b"2"), ("put", b"/e", b"2")]
    with pytest.raises(BadParameter, match="more than once"):
        await backend.atomic_write([Write(b"/a"), Write(b"/a", Item(b"/a", b""))])
    with pytest.raises(BadParameter, match="carries an item"):
        Write(b"/a", Item(b"/b", b""))
    with pytest.raises(BadParameter, match="negative"):
        Write(b"/a", None, -1)


async def test_atomic_write_takes_as_many_writes_as_the_backend_says(
        backend: Backend, clock: FakeClock) -> None:
    """Callers size their batches by ``max_atomic_writes``: that many writes of expiring
    items (the costliest kind: two etcd operations each) go through; one more is refused
    whole, before anything is written, with a line that names the limit."""
    expires = clock.now() + dt.timedelta(minutes=1)
    most = backend.max_atomic_writes
    assert most >= 32  # what backend.copy and the heartbeat batches count on

    def writes(prefix: bytes, n: int) -> list[Write]:
        return [Write(prefix + b"%05d" % i, Item(prefix + b"%05d" % i, b"v", expires), 0)
                for i in range(n)]

    await backend.atomic_write(writes(b"/ok/", most))
    assert len(await backend.get_range(b"/ok/", b"/ok0")) == most
    with pytest.raises(BadParameter, match=f"at most {most} "):
        await backend.atomic_write(writes(b"/over/", most + 1))
    assert await backend.get_range(b"/over/", b"/over0") == []


async def test_delete(backend: Backend) -> None:
    await backend.put(Item(b"/a", b"1"))
    await backend.delete(b"/a")
    with pytest.raises(NotFound):
        await backend.get(b"/a")
    with pytest.raises(NotFound):
        await backend.delete(b"/a")


async def test_get_range_is_ordered_and_limited(backend: Backend) -> None:
    keys = [b"/b", b"/a/b", b"/a0", b"/a", b"/a/a", b"/a/\xff", b"/ab", b"/a/b/c"]
    for key in keys:
        await backend.put(Item(key, key))
    everything = await backend.get_range(b"/", prefix_end(b"/"))
    assert [i.key for i in everything] == sorted(keys)
    under_a = await backend.get_range(b"/a/", prefix_end(b"/a/"))
    assert [i.key for i in under_a] == [b"/a/a", b"/a/b", b"/a/b/c", b"/a/\xff"]
    assert [i.value for i in under_a] == [i.key for i in under_a]
    assert [i.key for i in await backend.get_range(b"/a/", prefix_end(b"/a/"), limit=2)] == [
        b"/a/a", b"/a/b"]
    assert [i.key for i in await backend.get_range(b"/a0", b"/b")] == [b"/a0", b"/ab"]
    assert await backend.get_range(b"/b", b"/a") == []
    backwards = await backend.get_range(b"/a/", prefix_end(b"/a/"), reverse=True)
    assert backwards == under_a[::-1]
    assert [i.key for i in await backend.get_range(b"/a/", prefix_end(b"/a/"), limit=2,
                                                   reverse=True)] == [b"/a/\xff", b"/a/b/c"]
    assert [i.key for i in await backend.get_range(b"/a0", b"/b", reverse=True)] == [
        b"/ab", b"/a0"]
    assert await backend.get_range(b"/b", b"/a", reverse=True) == []
    with pytest.raises(BadParameter):
        await backend.get_range(b"/", b"0", limit=-1)


async def test_delete_range(backend: Backend) -> None:
    for key in [b"/a", b"/a/1", b"/a/2", b"/a0", b"/b"]:
        await backend.put(Item(key, b""))
    assert await backend.delete_range(b"/a/", prefix_end(b"/a/")) == 2
    assert await backend.delete_range(b"/a/", prefix_end(b"/a/")) == 0
    assert [i.key for i in await backend.get_range(b"/", b"0")] == [b"/a", b"/a0", b"/b"]


def test_prefix_end() -> None:
    assert prefix_end(b"/a/") == b"/a0"
    assert prefix_end(b"/a\xff\xff") == b"/b"
    for bad in (b"", b"\xff\xff"):
        with pytest.raises(BadParameter):
            prefix_end(bad)


def test_items_validate_themselves() -> None:
    with pytest.raises(BadParameter, match="b'/'"):
        Item(b"users/alice", b"")
    with pytest.raises(BadParameter, match="timezone"):
        Item(b"/a", b"", expires=dt.datetime(2030, 1, 1))


async def test_expired_items_are_invisible(backend: Backend, clock: FakeClock) -> None:
    soon = clock.now() + dt.timedelta(seconds=10)
    await backend.put(Item(b"/a", b"old", expires=soon))
    await backend.put(Item(b"/b", b"stays"))
    clock.advance(dt.timedelta(seconds=9))
    assert (await backend.get(b"/a")).value == b"old"
    clock.advance(dt.timedelta(seconds=1))  # expires <= now: gone
    with pytest.raises(NotFound):
        await backend.get(b"/a")
    assert [i.key for i in await backend.get_range(b"/", b"0")] == [b"/b"]
    with pytest.raises(NotFound):
        await backend.update(Item(b"/a", b"x"))
    with pytest.raises(NotFound):
        await backend.delete(b"/a")
    with pytest.raises(CompareFailed):
        await backend.compare_and_swap(Item(b"/a", b"old"), Item(b"/a", b"x"))
    assert await backend.delete_range(b"/a", b"/a0") == 0
    assert (await backend.create(Item(b"/a", b"new"))).value == b"new"
    assert (await backend.get(b"/a")).value == b"new"


async def test_sweep_announces_deletes(backend: Backend, clock: FakeClock) -> None:
    soon = clock.now() + dt.timedelta(seconds=5)
    await backend.put(Item(b"/n/2", b"", expires=soon))
    last = await backend.put(Item(b"/n/1", b"", expires=soon))
    await backend.put(Item(b"/n/3", b"", expires=soon + dt.timedelta(hours=1)))
    async with backend.watch([b"/n/"]) as watcher:
        assert await backend.sweep_expired() == 0
        clock.advance(dt.timedelta(seconds=5))
        assert await backend.sweep_expired() == 2
        assert await backend.sweep_expired() == 0
        events = await take(watcher, 2)
    assert summary(events) == [("delete", b"/n/1", b""), ("delete", b"/n/2", b"")]
    assert last.revision < events[0].item.revision < events[1].item.revision
    assert [i.key for i in await backend.get_range(b"/", b"0")] == [b"/n/3"]


async def test_background_sweeper(make_backend: MakeBackend, clock: FakeClock) -> None:
    backend = await make_backend(clock, 0.05)
    await backend.put(Item(b"/hb/node1", b"", expires=clock.now() + dt.timedelta(seconds=1)))
    watcher = backend.watch([b"/hb/"])
    clock.advance(dt.timedelta(seconds=1))
    assert summary(await take(watcher, 1)) == [("delete", b"/hb/node1", b"")]
    await backend.close()
    assert asyncio.all_tasks() == {asyncio.current_task()}  # the sweeper is gone


async def test_revisions_grow_across_every_write(backend: Backend) -> None:
    watcher = backend.watch([b"/"])
    revisions = [(await backend.put(Item(b"/a", b"1"))).revision,
                 (await backend.create(Item(b"/b", b"1"))).revision,
                 (await backend.update(Item(b"/a", b"2"))).revision]
    await backend.delete(b"/a")
    await backend.delete_range(b"/", b"0")
    revisions.append((await backend.put(Item(b"/a", b"3"))).revision)
    events = await take(watcher, 6)
    seen = [e.item.revision for e in events]
    assert seen == sorted(set(seen))
    assert [seen[0], seen[1], seen[2], seen[5]] == revisions


async def test_watch_filters_by_prefix_and_keeps_order(backend: Backend) -> None:
    users = backend.watch([b"/users/"])
    both = backend.watch([b"/users/", b"/roles/"])
    await backend.put(Item(b"/users/alice", b"1"))
    await backend.put(Item(b"/nodes/n1", b"x"))
    await backend.put(Item(b"/roles/admin", b"r"))
    await backend.put(Item(b"/users/alice", b"2"))
    await backend.delete(b"/users/alice")
    await backend.put(Item(b"/users/bob", b"3"))
    alice = [("put", b"/users/alice", b"1"), ("put", b"/users/alice", b"2"),
             ("delete", b"/users/alice", b"")]
    assert summary(await take(users, 4)) == [*alice, ("put", b"/users/bob", b"3")]
    assert summary(await take(both, 5)) == [alice[0], ("put", b"/roles/admin", b"r"),
                                            *alice[1:], ("put", b"/users/bob", b"3")]
    await backend.put(Item(b"/nodes/n2", b"x"))
    users.close()
    with pytest.raises(StopAsyncIteration):
        await anext(users)  # nothing queued after bob


async def test_watch_is_live_when_it_returns(backend: Backend) -> None:
    await backend.put(Item(b"/a", b"before"))
    watcher = backend.watch([b"/"])
    await backend.put(Item(b"/a", b"after"))
    assert summary(await take(watcher, 1)) == [("put", b"/a", b"after")]


async def test_concurrent_writes_reach_watchers_in_revision_order(backend: Backend) -> None:
    watcher = backend.watch([b"/"])
    stored = await asyncio.gather(*(backend.put(Item(b"/k/%d" % (n % 7), b"%d" % n))
                                    for n in range(40)))
    events = await take(watcher, 40)
    assert [e.item for e in events] == sorted(stored, key=lambda i: i.revision)
    assert len({i.revision for i in stored}) == 40


async def test_cancelled_write_leaves_store_and_watchers_agreeing(backend: Backend) -> None:
    watcher = backend.watch([b"/"])
    for n in range(60):  # cancel at every stage of a write, from queued to committed
        task = asyncio.create_task(backend.put(Item(b"/k/%d" % n, b"")))
        await asyncio.sleep(n * 0.00002)
        task.cancel()
        await asyncio.wait({task})
    marker = await backend.put(Item(b"/z", b""))
    stored = {i.key: i.revision for i in await backend.get_range(b"/", b"0")}
    events: list[Event] = []
    while not events or events[-1].item.key != b"/z":
        events.extend(await take(watcher, 1))
    assert {e.item.key: e.item.revision for e in events} == stored
    assert events[-1].item == marker


async def test_closing_a_watcher_ends_its_iteration(backend: Backend) -> None:
    watcher = backend.watch([b"/"])
    waiting = asyncio.create_task(anext(watcher))
    await asyncio.sleep(0.01)
    watcher.close()
    with pytest.raises(StopAsyncIteration):
        await waiting
    async with backend.watch([b"/"]) as scoped:
        pass
    assert scoped.closed
    with pytest.raises(BadParameter):
        backend.watch([])


async def test_slow_watcher_is_closed_not_skipped(backend: Backend) -> None:
    slow = backend.watch([b"/"], queue_size=8)
    fast = backend.watch([b"/"], queue_size=8)
    for n in range(9):
        await backend.put(Item(b"/k", b"%d" % n))
        if n < 8:
            await take(fast, 1)
    with pytest.raises(LimitExceeded, match="list again"):
        await anext(slow)
    with pytest.raises(StopAsyncIteration):
        await anext(slow)
    assert summary(await take(fast, 1)) == [("put", b"/k", b"8")]


async def test_close_ends_watchers_and_refuses_use(backend: Backend) -> None:
    watcher = backend.watch([b"/"])
    waiting = asyncio.create_task(anext(watcher))
    await asyncio.sleep(0.01)
    await backend.close()
    await backend.close()
    with pytest.raises(StopAsyncIteration):
        await waiting
    with pytest.raises(ConnectionProblem):
        await backend.get(b"/a")
    with pytest.raises(ConnectionProblem):
        await backend.put(Item(b"/a", b""))
    with pytest.raises(ConnectionProblem):
        backend.watch([b"/"])


# A random sequence of operations, checked step by step against a dict.
KEYS = st.sampled_from([b"/a", b"/a/b", b"/a/c", b"/b", b"/b/a", b"/c"])
PREFIXES = st.sampled_from([b"/", b"/a", b"/a/", b"/b/"])
VALUES = st.sampled_from([b"", b"x", b"y"])
TTLS = st.none() | st.integers(1, 3)
OPS = st.lists(st.one_of(
    st.tuples(st.sampled_from(["put", "create", "update"]), KEYS, VALUES, TTLS),
    st.tuples(st.just("cas"), KEYS, VALUES, VALUES, TTLS),
    st.tuples(st.just("atomic"), KEYS, VALUES, TTLS, st.sampled_from(["any", "absent", "same",
                                                                      "other"]), KEYS),
    st.tuples(st.sampled_from(["get", "delete"]), KEYS),
    st.tuples(st.just("range"), PREFIXES, st.integers(0, 3), st.booleans()),
    st.tuples(st.just("delete_range"), PREFIXES),
    st.tuples(st.just("advance"), st.integers(1, 2)),
    st.tuples(st.just("sweep")),
), max_size=30)


async def outcome(call: Awaitable[object]) -> object:
    """What a call returned, or the kind of error it raised."""
    try:
        return await call
    except GatehouseError as exc:
        return type(exc)


class Model:
    """The expected contents, as a dict, and the events a watcher should see."""

    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock
        self.items: dict[bytes, Item] = {}
        self.events: list[tuple[str, bytes, bytes]] = []
        self.revision = 0

    def expires(self, ttl: int | None) -> dt.datetime | None:
        return None if ttl is None else self.clock.now() + dt.timedelta(seconds=ttl)

    def live(self, key: bytes) -> Item | None:
        item = self.items.get(key)
        return None if item is None or item.expired(self.clock.now()) else item

    def live_range(self, prefix: bytes) -> list[Item]:
        return [item for key, item in sorted(self.items.items())
                if key.startswith(prefix) and self.live(key)]

    def stored(self, got: object, item: Item) -> None:
        assert isinstance(got, Item), got
        assert dataclasses.replace(got, revision=0) == item
        assert got.revision > self.revision
        self.revision = got.revision
        self.items[item.key] = got
        self.events.append(("put", item.key, item.value))

    def removed(self, keys: list[bytes]) -> int:
        for key in keys:
            del self.items[key]
            self.events.append(("delete", key, b""))
        return len(keys)


@settings(max_examples=50, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops=OPS)
async def test_matches_a_dict_model(make_backend: MakeBackend, ops: list[tuple[object, ...]]
                                    ) -> None:
    clock = FakeClock()
    backend = await make_backend(clock)
    watcher = backend.watch([b"/"])
    model = Model(clock)
    for op in ops:
        match op:
            case ("put" | "create" | "update" as verb, bytes(key), bytes(value),
                  int() | None as ttl):
                item = Item(key, value, model.expires(ttl))
                got = await outcome(getattr(backend, verb)(item))
                if verb == "create" and model.live(key):
                    assert got is AlreadyExists
                elif verb == "update" and not model.live(key):
                    assert got is NotFound
                else:
                    model.stored(got, item)
            case ("cas", bytes(key), bytes(old), bytes(new), int() | None as ttl):
                item = Item(key, new, model.expires(ttl))
                got = await outcome(backend.compare_and_swap(Item(key, old), item))
                current = model.live(key)
                if current is None or current.value != old:
                    assert got is CompareFailed
                else:
                    model.stored(got, item)
            case ("atomic", bytes(key), bytes(value), int() | None as ttl, str(expect),
                  bytes(doomed)):
                # Put key (on a condition) and delete doomed, together or not at all.
                item, current = Item(key, value, model.expires(ttl)), model.live(key)
                revision = {"any": None, "absent": 0, "other": model.revision + 1,
                            "same": current.revision if current else 0}[expect]
                got = await outcome(backend.atomic_write([Write(key, item, revision),
                                                          Write(doomed)]))
                if key == doomed:
                    assert got is BadParameter
                elif expect == "other" or (expect == "absent" and current):
                    assert got is CompareFailed
                else:
                    assert got is None
                    model.stored(await backend.get(key), item)
                    if model.live(doomed):
                        model.removed([doomed])
            case ("get", bytes(key)):
                assert await outcome(backend.get(key)) == (model.live(key) or NotFound)
            case ("delete", bytes(key)):
                got = await outcome(backend.delete(key))
                if model.live(key):
                    assert got is None
                    model.removed([key])
                else:
                    assert got is NotFound
            case ("range", bytes(prefix), int(limit), bool(reverse)):
                got = await backend.get_range(prefix, prefix_end(prefix), limit,
                                              reverse=reverse)
                ordered = model.live_range(prefix)[::-1 if reverse else 1]
                assert got == ordered[:limit or None]
            case ("delete_range", bytes(prefix)):
                got = await backend.delete_range(prefix, prefix_end(prefix))
                assert got == model.removed([i.key for i in model.live_range(prefix)])
            case ("advance", int(seconds)):
                clock.advance(dt.timedelta(seconds=seconds))
            case ("sweep",):
                got = await backend.sweep_expired()
                assert got == model.removed([k for k in sorted(model.items) if not model.live(k)])
            case _:
                raise AssertionError(f"unknown operation {op}")
    assert await backend.get_range(b"/", b"0") == model.live_range(b"/")
    events = await take(watcher, len(model.events))
    assert summary(events) == model.events
    revisions = [e.item.revision for e in events]
    assert revisions == sorted(set(revisions))
    await backend.close()


async def test_open_backend_by_name(tmp_path: Path) -> None:
    async with await open_backend("memory", path=None, clock=FakeClock()) as memory:
        assert isinstance(memory, MemoryBackend)
    async with await open_backend("sqlite", path=tmp_path / "b.db", clock=FakeClock()) as lite:
        assert isinstance(lite, SQLiteBackend)
    with pytest.raises(BadParameter, match="needs a database path"):
        await open_backend("sqlite", path=None, clock=FakeClock())
    with pytest.raises(BadParameter, match="'mongo': expected one of memory, sqlite"):
        await open_backend("mongo", path=None, clock=FakeClock())
