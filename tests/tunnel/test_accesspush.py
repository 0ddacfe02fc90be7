"""The root's cluster-label push at federation scale: bounded fan-out, quiet retries."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest

from gatehouse.clock import FakeMonotonic
from gatehouse.tunnel.accesspush import CONCURRENCY, AccessPush
from gatehouse.tunnel.mux import MuxStream

LEAVES = [f"leaf-{i:04d}" for i in range(200)]


class Unreachable:
    """Every leaf's stream fails after a moment; counts how many were open at once."""

    def __init__(self) -> None:
        self.open_now = 0
        self.most = 0
        self.calls = 0

    async def __call__(self, leaf: str, meta: dict[str, Any]) -> MuxStream:
        self.calls += 1
        self.open_now += 1
        self.most = max(self.most, self.open_now)
        try:
            for _ in range(3):
                await asyncio.sleep(0)
            raise OSError(f"{leaf}: tunnel gone")
        finally:
            self.open_now -= 1


async def test_a_thousand_leaves_are_told_a_bounded_number_at_a_time() -> None:
    leaves = Unreachable()
    push = AccessPush(leaves, lambda: LEAVES, lambda leaf: b"{}", FakeMonotonic())
    assert await push.push_all() == len(LEAVES)
    assert leaves.calls == len(LEAVES)
    assert 1 < leaves.most <= CONCURRENCY


async def test_a_failing_leaf_is_warned_about_once_not_every_retry(
        caplog: pytest.LogCaptureFixture) -> None:
    leaves = Unreachable()
    push = AccessPush(leaves, lambda: LEAVES[:3], lambda leaf: b"{}", FakeMonotonic())
    with caplog.at_level(logging.DEBUG, logger="gatehouse.tunnel.accesspush"):
        for _ in range(4):
            assert await push.push_all() == 3
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert sorted(r.getMessage().split()[4] for r in warnings) == LEAVES[:3]
    assert len([r for r in caplog.records if r.levelno == logging.DEBUG]) == 9
