"""The audit log's memory of hosts' event ids: an event resent is stored once."""

from __future__ import annotations

import datetime as dt

from gatehouse.backend import Backend
from gatehouse.clock import FakeClock
from gatehouse.services.events import AuditLog

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
    assert [e.user for e in await audit.search(types=["exec"])] == ["hid-1", "hid-2"]
    clock.advance(DAY)
    assert await report("hid-1", "ev-1")  # forgotten after its time
    assert len(await audit.search(types=["exec"])) == 3
