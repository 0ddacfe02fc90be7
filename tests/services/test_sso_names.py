"""The names SSO users hold: held until their latest certificate ends, never shortened
by an earlier one, free once it has expired."""

from __future__ import annotations

import asyncio
import datetime as dt

from gatehouse.backend import Backend
from gatehouse.clock import FakeClock
from gatehouse.services.sso import SSOStore


async def test_a_name_is_held_until_the_latest_certificate_ends(backend: Backend,
                                                                clock: FakeClock) -> None:
    store = SSOStore(backend)
    now = clock.now()
    assert await store.name_holder("alice") is None
    await store.hold_name("alice", "corp", now + dt.timedelta(hours=8))
    await store.hold_name("alice", "corp", now + dt.timedelta(hours=1))  # shorter: kept 8h
    assert await store.name_holder("alice") == ("corp", now + dt.timedelta(hours=8))
    await store.hold_name("alice", "corp", now + dt.timedelta(hours=9))
    clock.advance(dt.timedelta(hours=8, minutes=30))
    assert await store.name_holder("alice") == ("corp", now + dt.timedelta(hours=9))
    clock.advance(dt.timedelta(hours=1))
    assert await store.name_holder("alice") is None


async def test_concurrent_logins_keep_the_latest_end(backend: Backend,
                                                     clock: FakeClock) -> None:
    store = SSOStore(backend)
    now = clock.now()
    ends = [now + dt.timedelta(minutes=m) for m in (30, 90, 60, 10, 45)]
    await asyncio.gather(*(store.hold_name("bob", "corp", end) for end in ends))
    assert await store.name_holder("bob") == ("corp", max(ends))


async def test_a_name_as_long_as_a_user_s_may_be_is_held(backend: Backend,
                                                        clock: FakeClock) -> None:
    # Names of up to 253 characters; the keys of logins in flight stop at 128.
    store = SSOStore(backend)
    name = "a" * 240 + "@example.com"
    await store.hold_name(name, "corp", clock.now() + dt.timedelta(hours=1))
    assert await store.name_holder(name) == ("corp", clock.now() + dt.timedelta(hours=1))
