"""A proxy's heartbeats to its auth (fake clock): each reply's proxies go to its tunnel
server; a failed beat is tried again at the next interval, a refused one much later
(every refusal is audited)."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Mapping

from gatehouse.clock import FakeMonotonic
from gatehouse.errors import AccessDenied, ConnectionProblem, GatehouseError
from gatehouse.proxy.presence import HEARTBEAT_INTERVAL, REFUSED_INTERVAL, ProxyPresence
from gatehouse.wire.authapi import ProxyAddr, ProxyHeartbeat, ProxySet

TIMEOUT = 5.0
AS_OF = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
ME = ProxyHeartbeat(public_addr="10.0.0.1:3080", listen_addr="0.0.0.0:3080")


async def test_beats_tell_the_proxies_and_back_off_when_refused() -> None:
    clock = FakeMonotonic()
    answers: list[ProxySet | GatehouseError] = [
        ProxySet(proxies=[ProxyAddr(name="p1", addr="10.0.0.1:3080")], as_of=AS_OF),
        ConnectionProblem("the auth is away"),
        AccessDenied("not certified for that address"),
        ProxySet(proxies=[ProxyAddr(name="p1", addr="10.0.0.1:3080"),
                          ProxyAddr(name="p2", addr="10.0.0.2:3080")], as_of=AS_OF),
    ]
    start = clock.monotonic()
    beats: list[float] = []
    told: list[dict[str, str]] = []

    async def beat(me: ProxyHeartbeat) -> ProxySet:
        assert me == ME
        beats.append(clock.monotonic() - start)
        answer = answers.pop(0)
        if isinstance(answer, GatehouseError):
            raise answer
        return answer

    def tell(proxies: Mapping[str, str], as_of: dt.datetime | None) -> None:
        assert as_of == AS_OF
        told.append(dict(proxies))

    task = asyncio.create_task(ProxyPresence(beat, ME, tell, clock).run())
    try:
        for _ in range(3):
            await asyncio.wait_for(clock.until_sleeping(), TIMEOUT)
            clock.advance(HEARTBEAT_INTERVAL)
        await asyncio.wait_for(clock.until_sleeping(), TIMEOUT)
        assert beats == [0.0, HEARTBEAT_INTERVAL, 2 * HEARTBEAT_INTERVAL]
        # Refused at 10 s: not again until 10 s + REFUSED_INTERVAL (the clock is at 15 s).
        clock.advance(REFUSED_INTERVAL - 2 * HEARTBEAT_INTERVAL)
        await asyncio.wait_for(clock.until_sleeping(), TIMEOUT)
        assert len(beats) == 3
        clock.advance(HEARTBEAT_INTERVAL)
        await asyncio.wait_for(clock.until_sleeping(), TIMEOUT)
        assert beats[-1] == 2 * HEARTBEAT_INTERVAL + REFUSED_INTERVAL
        assert told == [{"p1": "10.0.0.1:3080"},
                        {"p1": "10.0.0.1:3080", "p2": "10.0.0.2:3080"}]
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
