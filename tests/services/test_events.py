"""The audit log: an event a host resends is stored once; a search reads newest first, a
bounded page at a time, and still lists events stored under earlier keys."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import re
import sqlite3
import uuid
from pathlib import Path
from typing import Any

import pytest

from gatehouse.backend import Backend, EtcdBackend, Item, open_backend
from gatehouse.clock import FakeClock
from gatehouse.errors import BadParameter, ConnectionProblem
from gatehouse.services import events
from gatehouse.services.events import AuditEvent, AuditLog
from tests.etcdserver import EtcdServer

DAY = dt.timedelta(days=1)


async def test_a_host_event_is_stored_once_per_host_id_until_forgotten(
        backend: Backend, clock: FakeClock) -> None:
    audit = AuditLog(backend, clock, "root.example")

    async def report(host: str, host_event_id: str) -> bool:
        return await audit.store_once(host, host_event_id, audit.new("exec", user=host),
                                      clock.now() + DAY)

    assert await report("hid-1", "ev-1")
    assert not await report("hid-1", "ev-1")  # resent: not stored again
    assert await report("hid-2", "ev-1")  # another host's id
    assert [e.user for e in (await audit.search(types=["exec"])).events] == ["hid-2", "hid-1"]
    clock.advance(DAY)
    assert await report("hid-1", "ev-1")  # forgotten after its time
    assert len((await audit.search(types=["exec"])).events) == 3


async def test_search_pages_newest_first_with_a_cursor(backend: Backend,
                                                       clock: FakeClock) -> None:
    audit = AuditLog(backend, clock, "root.example")
    for i in range(7):
        await audit.emit("exec", user=f"u{i}")
        await audit.emit("user.login", user=f"u{i}")
        clock.advance(dt.timedelta(seconds=1))
    seen: list[str] = []
    page = await audit.search(types=["exec"], limit=3)
    for _ in range(5):  # 7 events, 3 a page
        seen += [e.user for e in page.events]
        if not page.next:
            break
        page = await audit.search(types=["exec"], limit=3, cursor=page.next)
    assert seen == [f"u{i}" for i in reversed(range(7))]
    recent = await audit.search(since=clock.now() - dt.timedelta(seconds=2), types=["exec"])
    assert ([e.user for e in recent.events], recent.next) == (["u6", "u5"], "")


async def test_a_search_reads_a_bounded_number_of_events_per_page(
        backend: Backend, clock: FakeClock, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(events, "MAX_SCAN", 4)
    audit = AuditLog(backend, clock, "root.example")
    for name in ("exec", "user.login", "user.login", "user.login", "user.login", "exec"):
        await audit.emit(name)
    first = await audit.search(types=["exec"])
    assert len(first.events) == 1 and first.next  # read 4 events, found 1: more may follow
    rest = await audit.search(types=["exec"], cursor=first.next)
    assert (len(rest.events), rest.next) == (1, "")


@pytest.mark.parametrize(("query", "message"), [
    ({"limit": 0}, "event limit 0: expected 1 to 10000"),
    ({"limit": 10_001}, "event limit 10001"),
    ({"cursor": "../x"}, "event cursor '../x'"),
    ({"types": ["exec", "sesion.start"]}, "unknown event type 'sesion.start': the types are "
                                          "access.denied, auth, cert.create,"),
])
async def test_a_search_refuses_a_bad_limit_or_cursor(backend: Backend, clock: FakeClock,
                                                      query: dict[str, Any],
                                                      message: str) -> None:
    with pytest.raises(BadParameter, match=re.escape(message)):
        await AuditLog(backend, clock, "root.example").search(**query)


async def test_leaf_events_stored_under_the_leafs_time_are_still_listed(
        backend: Backend, clock: FakeClock) -> None:
    """Before keys were the root's receive time, a leaf's event sat under the leaf's."""
    audit = AuditLog(backend, clock, "root.example")
    session_id = str(uuid.uuid4())
    old = AuditEvent(event="session.end", code="T2004I", time=clock.now(),
                     cluster="leaf.example", session_id=session_id)
    leaf_ts = int((clock.now() - DAY).timestamp() * 1_000_000)
    await backend.put(Item(f"/events/{leaf_ts:020d}/~leaf.example/{old.id}".encode(),
                           json.dumps(old.to_json_obj()).encode()))
    await audit.emit("user.login", user="alice")
    listed = (await audit.search()).events
    assert [(e.event, e.cluster) for e in listed] == [("user.login", "root.example"),
                                                      ("session.end", "leaf.example")]
    await backend.put(Item(f"/events/{leaf_ts + 1:020d}/~leaf.example/x".encode(), b"{"))
    assert [s async for s in audit.other_clusters_sessions()] == [(session_id, "leaf.example")]


async def test_concurrent_events_are_each_committed_when_stored(tmp_path: Path,
                                                                clock: FakeClock) -> None:
    """Events stored at once are written in groups; each store returns only once its
    event is in the database file (read here through a connection of its own)."""
    path = tmp_path / "backend.sqlite"
    backend = await open_backend("sqlite", path=path, clock=clock)
    audit = AuditLog(backend, clock, "root.example")
    reader = sqlite3.connect(path)
    try:
        def in_file(key: str) -> bool:
            return reader.execute("SELECT 1 FROM items WHERE key = ?",
                                  ((b"/events/" + key.encode()),)).fetchone() is not None

        async def store(n: int) -> tuple[str, bool]:
            key = await audit.store(audit.new("cert.create", user=f"u{n}"))
            return key, in_file(key)

        stored = await asyncio.gather(*(store(n) for n in range(50)))
        assert all(there for _, there in stored)
        keys = [key for key, _ in stored]
        assert len(set(keys)) == 50
        found = (await audit.search(types=["cert.create"])).events
        assert [e.user for e in found] == [f"u{n}" for n in reversed(range(50))]
    finally:
        reader.close()
        await backend.close()


async def test_a_burst_of_events_on_etcd_is_stored_whole(etcd: EtcdServer,
                                                         clock: FakeClock) -> None:
    """An auth on etcd alone keeps its audit log there: a burst of events (a leaf's
    sessions all ending, a login storm) is written in transactions etcd takes."""
    async with await EtcdBackend.open(etcd.settings(), clock=clock) as backend:
        audit = AuditLog(backend, clock, "root.example")
        await asyncio.gather(*(audit.emit("cert.create", user=f"u{n}") for n in range(300)))
        found = (await audit.search(types=["cert.create"], limit=500)).events
        assert sorted(e.user for e in found) == sorted(f"u{n}" for n in range(300))


async def test_a_group_that_cannot_be_written_fails_each_of_its_events(
        backend: Backend, clock: FakeClock) -> None:
    audit = AuditLog(backend, clock, "root.example")
    await backend.close()
    results = await asyncio.gather(*(audit.emit("cert.create", user=f"u{n}") for n in range(5)),
                                   return_exceptions=True)
    assert [type(r) for r in results] == [ConnectionProblem] * 5
