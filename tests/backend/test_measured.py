"""backend.measured times each operation under its name (the compliance suite shows it
changes nothing else)."""

from __future__ import annotations

import contextlib

from gatehouse import metrics
from gatehouse.backend import Item, MemoryBackend
from gatehouse.backend.measured import MeasuredBackend
from gatehouse.clock import FakeClock
from gatehouse.errors import NotFound


def _count(operation: str) -> float:
    return metrics.REGISTRY.get_sample_value("gatehouse_backend_operation_seconds_count",
                                             {"operation": operation}) or 0


async def test_each_operation_is_observed_even_when_it_fails() -> None:
    before = {op: _count(op) for op in ("put", "get", "delete")}
    async with MeasuredBackend(await MemoryBackend.open(clock=FakeClock())) as backend:
        await backend.put(Item(key=b"/a", value=b"1"))
        assert (await backend.get(b"/a")).value == b"1"
        await backend.delete(b"/a")
        with contextlib.suppress(NotFound):
            await backend.get(b"/a")
    assert {op: _count(op) - before[op] for op in before} == {"put": 1, "get": 2, "delete": 1}
