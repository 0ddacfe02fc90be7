"""A leaf proxy's reports of its tunnels to roots (proxy/roottunnels.py), on a fake clock:
a change soon, every state again now and then, a root no longer dialed left out."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from gatehouse.clock import FakeMonotonic
from gatehouse.errors import ConnectionProblem
from gatehouse.proxy.roottunnels import RootTunnelReports
from gatehouse.tunnel.liveness import COALESCE, REPORT_INTERVAL, RETRY
from gatehouse.wire.authapi import RootTunnel

TIMEOUT = 5.0  # real seconds for anything to happen


class Auth:
    def __init__(self) -> None:
        self.reports: asyncio.Queue[list[RootTunnel]] = asyncio.Queue()
        self.failures = 0

    async def report(self, roots: list[RootTunnel]) -> None:
        if self.failures:
            self.failures -= 1
            raise ConnectionProblem("the auth is away")
        await self.reports.put(roots)

    async def next(self) -> list[RootTunnel]:
        return await asyncio.wait_for(self.reports.get(), TIMEOUT)


class Proxy:
    def __init__(self) -> None:
        self.timer = FakeMonotonic()
        self.auth = Auth()
        self.roots = {"root-a"}
        self.reports = RootTunnelReports(self.auth.report, lambda: self.roots, self.timer)

    async def advance(self, seconds: float) -> None:
        await asyncio.wait_for(self.timer.until_sleeping(), TIMEOUT)
        self.timer.advance(seconds)


@pytest.fixture
async def proxy() -> AsyncIterator[Proxy]:
    p = Proxy()
    task = asyncio.create_task(p.reports.run())
    yield p
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


def down(root: str, detail: str, *, refused: bool = False) -> RootTunnel:
    return RootTunnel(root=root, up=False, detail=detail, refused=refused)


async def test_a_change_is_reported_soon_and_every_state_again_later(proxy: Proxy) -> None:
    assert await proxy.auth.next() == [down("root-a", "connecting")]  # at once, on start
    proxy.reports.changed(RootTunnel(root="root-a", up=True))
    await proxy.advance(COALESCE)
    assert await proxy.auth.next() == [RootTunnel(root="root-a", up=True)]
    await proxy.advance(REPORT_INTERVAL)
    assert await proxy.auth.next() == [RootTunnel(root="root-a", up=True)]


async def test_a_tunnel_refused_at_once_reads_as_down(proxy: Proxy) -> None:
    await proxy.auth.next()
    proxy.reports.changed(RootTunnel(root="root-a", up=True))
    proxy.reports.changed(down("root-a", "not taken", refused=True))
    await proxy.advance(COALESCE)
    assert await proxy.auth.next() == [down("root-a", "not taken", refused=True)]


async def test_only_the_roots_dialed_now_are_reported(proxy: Proxy) -> None:
    await proxy.auth.next()
    proxy.reports.changed(down("root-a", "cannot reach"))
    proxy.roots = {"root-b"}  # root-a removed or disabled, root-b added
    await proxy.advance(COALESCE)
    assert await proxy.auth.next() == [down("root-b", "connecting")]
    proxy.roots = set()
    await proxy.advance(REPORT_INTERVAL)
    assert await proxy.auth.next() == []  # once: then a proxy without roots stays quiet
    await proxy.advance(REPORT_INTERVAL)
    await asyncio.wait_for(proxy.timer.until_sleeping(), TIMEOUT)
    assert proxy.auth.reports.empty()


async def test_a_failed_report_is_sent_again_soon(proxy: Proxy) -> None:
    await proxy.auth.next()
    proxy.auth.failures = 1
    proxy.reports.changed(RootTunnel(root="root-a", up=True))
    await proxy.advance(COALESCE)  # fails
    await proxy.advance(RETRY)
    assert await proxy.auth.next() == [RootTunnel(root="root-a", up=True)]
