"""The cached resource store (the auth's roles): reads from memory that follow every
write, this process's at once and another process's once its backend delivers it; a
watch that fell behind is replaced by a fresh listing."""

from __future__ import annotations

import asyncio
import datetime as dt

from gatehouse.backend import Backend, Item, PostgresBackend
from gatehouse.backend.base import WATCH_QUEUE_SIZE
from gatehouse.clock import FakeClock
from gatehouse.errors import NotFound
from gatehouse.services.resourcecache import CachedResourceStore
from gatehouse.services.resources import ResourceStore
from gatehouse.types.resource import Metadata
from gatehouse.types.role import Role, RoleSpec
from tests.pgserver import PgServer
from tests.services.reads import CountingReads

QUIET = 3600.0  # no background sweep during these tests


def role(name: str, login: str = "root", expires: dt.datetime | None = None) -> Role:
    return Role(metadata=Metadata(name=name, expires=expires),
                spec=RoleSpec.model_validate({"allow": {"logins": [login]}}))


def logins(found: Role) -> list[str]:
    return list(found.spec.allow.logins)


async def test_reads_follow_this_processs_writes_without_reading_the_backend(
        backend: Backend, clock: FakeClock) -> None:
    counting = CountingReads(backend)
    roles = CachedResourceStore(counting, "role", Role, clock)  # type: ignore[arg-type]
    await roles.create(role("dev"))
    assert logins(await roles.get("dev")) == ["root"]
    listed_once = counting.reads
    for _ in range(50):
        await roles.get("dev")
    assert counting.reads == listed_once  # the first read listed; the rest cost nothing

    await roles.upsert(role("dev", "deploy"))
    await roles.create(role("ops"))
    assert logins(await roles.get("dev")) == ["deploy"]
    assert [r.metadata.name for r in await roles.list()] == ["dev", "ops"]
    assert [r.metadata.name for r in await roles.list(limit=1)] == ["dev"]
    await roles.delete("dev")
    try:
        await roles.get("dev")
        raise AssertionError("a deleted role was still served")
    except NotFound as exc:
        assert str(exc) == "role dev not found"
    assert counting.reads == listed_once


async def test_an_expired_role_is_gone_before_the_sweep_removes_it(
        backend: Backend, clock: FakeClock) -> None:
    roles = CachedResourceStore(backend, "role", Role, clock)
    await roles.create(role("temp", expires=clock.now() + dt.timedelta(minutes=5)))
    assert (await roles.get("temp")).metadata.name == "temp"
    clock.advance(dt.timedelta(minutes=6))
    assert [r.metadata.name for r in await roles.list()] == []
    try:
        await roles.get("temp")
        raise AssertionError("an expired role was served")
    except NotFound:
        pass


async def test_a_watch_that_fell_behind_is_replaced_by_a_fresh_listing(
        backend: Backend, clock: FakeClock) -> None:
    roles = CachedResourceStore(backend, "role", Role, clock)
    plain = ResourceStore(backend, "role", Role)
    await roles.create(role("keep"))
    assert (await roles.get("keep")).metadata.name == "keep"
    # More changes than its watch may queue unread: it is closed; the next read lists.
    for n in range(WATCH_QUEUE_SIZE + 1):
        await plain.upsert(role("busy", f"u{n}"))
    await plain.delete("keep")
    assert logins(await roles.get("busy")) == [f"u{WATCH_QUEUE_SIZE}"]
    assert [r.metadata.name for r in await roles.list()] == ["busy"]
    # ...and it follows the backend again from there.
    await plain.create(role("late"))
    assert [r.metadata.name for r in await roles.list()] == ["busy", "late"]


async def test_another_processs_write_reaches_the_cache_once_delivered(
        pg_server: PgServer) -> None:
    """Two backends on one PostgreSQL, as two auths: a role changed through one is
    served changed by the other's cache, with no read of the other's."""
    database = await asyncio.to_thread(pg_server.new_database)
    clock = FakeClock()
    first = await PostgresBackend.open(database, clock=clock, sweep_interval=QUIET)
    second = await PostgresBackend.open(database, clock=clock, sweep_interval=QUIET)
    try:
        writer = ResourceStore(first, "role", Role)
        await writer.create(role("dev"))
        counting = CountingReads(second)
        cached = CachedResourceStore(counting, "role", Role, clock)  # type: ignore[arg-type]
        assert logins(await cached.get("dev")) == ["root"]
        listed_once = counting.reads
        await writer.upsert(role("dev", "deploy"))
        for _ in range(200):  # 10 s at most
            if logins(await cached.get("dev")) == ["deploy"]:
                break
            await asyncio.sleep(0.05)
        assert logins(await cached.get("dev")) == ["deploy"]
        await writer.delete("dev")
        for _ in range(200):
            if not await cached.list():
                break
            await asyncio.sleep(0.05)
        assert await cached.list() == []
        assert counting.reads == listed_once
        # A put straight to the backend (not through a store) reaches it as well.
        await first.put(Item(b"/roles/raw", role("raw").model_dump_json().encode()))
        for _ in range(200):
            if [r.metadata.name for r in await cached.list()] == ["raw"]:
                break
            await asyncio.sleep(0.05)
        assert [r.metadata.name for r in await cached.list()] == ["raw"]
    finally:
        await first.close()
        await second.close()
