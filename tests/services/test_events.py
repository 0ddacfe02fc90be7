"""The audit log's memory of hosts' event ids: an event resent is stored once."""

from __future__ import annotations

import datetime as dt

from gatehouse.backend import Backend
from gatehouse.clock import FakeClock
from gatehouse.services.events import AuditLog

DAY = dt.timedelta(days=1)


async def test_a_host_event_id_is_new_once_per_host_until_forgotten(backend: Backend,
                                                                   clock: FakeClock) -> None:
    audit = AuditLog(backend, clock, "root.example")
    assert await audit.first_sighting("hid-1", "ev-1", clock.now() + DAY)
    assert not await audit.first_sighting("hid-1", "ev-1", clock.now() + DAY)
    assert await audit.first_sighting("hid-2", "ev-1", clock.now() + DAY)  # another host
    clock.advance(DAY)
    assert await audit.first_sighting("hid-1", "ev-1", clock.now() + DAY)
